"""AIM's novice (Cai, Peng, Zhou, ICML 2025), as in the authors' public release.

``novice: bc`` (the default; Box or Discrete actions): behaviour cloning on the expert-labelled
(intervened) steps only, retrained every K = 25 new ones with warm start: 25 iterations x 5
Adam steps, batch 1024, lr 1e-4, each iteration on a bootstrap resample; 200 iterations at the
end of the warm-up. Box actions use a deterministic MLP actor [256, 256], ReLU, ``tanh`` output
(MSE); Discrete ones the same network with logits (cross-entropy), over the MiniGrid CNN for
image observations. This is :class:`~gatekit.learners.mlp.MLPBCLearner` with AIM's defaults.

``novice: dqn`` (Discrete only): the release's PVP-style agent for MiniGrid, a reward-free DQN.
On expert-labelled steps the expert's action is pushed to +1 and the novice action it replaced
to -1 (where the two differ); every transition gets the reward-free TD target
``gamma * max_a' Q_target(s', a')`` (0 at terminal states). Batches are half expert, half
novice steps; the novice acts greedily. As in the release it trains ``dqn_steps_per_env_step``
gradient steps after every env step (32 there; the warm-up's expert steps included), plus
optional extra steps at the end of the warm-up (``dqn_first_steps``) and at each K-label update
(``dqn_update_steps``), when AIM's gate retrains.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from gatekit.learners.base import EveryKLabels, Learner, check_positive
from gatekit.learners.mlp import (
    MLPBCLearner,
    as_obs_tensor,
    check_hidden,
    count_labels,
    seeded_init,
)
from gatekit.nets import QNet, is_image, rng_state, set_rng_state
from gatekit.policies import Policy, TorchModulePolicy, cast_action
from gatekit.types import Transition

if TYPE_CHECKING:
    from gatekit.data import RecordStore


class AllActionValues(nn.Module):
    """A discrete :class:`~gatekit.nets.QNet` as ``obs -> values of every action`` (so that
    :class:`~gatekit.policies.TorchModulePolicy` takes the greedy action)."""

    def __init__(self, qnet: QNet) -> None:
        super().__init__()
        self.qnet = qnet

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.qnet.all_actions(obs)


class PVPDQN:
    """The release's reward-free, PVP-style DQN novice for discrete actions.

    Args:
        observation_space: vector or ``(C, H, W)`` image observations.
        action_space: a Discrete space.
        hidden: hidden layers after the encoder (the release: none after the CNN's 64 tanh units).
        lr: Adam learning rate.
        batch_size: transitions per gradient step, half expert, half novice.
        gamma: discount of the reward-free TD target.
        tau: Polyak factor of the target network's soft update.
        rng: generator of minibatches.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, *, hidden: list[int],
                 lr: float, batch_size: int, gamma: float, tau: float, rng: np.random.Generator) -> None:
        self.q = QNet(observation_space, action_space, hidden)
        self.q.eval()
        self.q_target = copy.deepcopy(self.q)
        self.q_target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=lr)
        self.batch_size = batch_size
        self.gamma = gamma
        self.tau = tau
        self.rng = rng

    def sample(self, store: RecordStore) -> dict[str, torch.Tensor]:
        """A batch of rows of ``store``: half expert-labelled (intervened), half novice steps
        (all from one kind while the other has none)."""
        intervened = store.column("intervened")
        expert_rows, novice_rows = np.flatnonzero(intervened), np.flatnonzero(~intervened)
        if len(expert_rows) == 0 or len(novice_rows) == 0:
            pool = expert_rows if len(expert_rows) else novice_rows
            rows = pool[self.rng.integers(0, len(pool), size=self.batch_size)]
        else:
            half = self.batch_size // 2
            rows = np.concatenate([expert_rows[self.rng.integers(0, len(expert_rows), size=half)],
                                   novice_rows[self.rng.integers(0, len(novice_rows), size=self.batch_size - half)]])
        batch = {"obs": as_obs_tensor(store.column("obs")[rows]),
                 "next_obs": as_obs_tensor(store.column("next_obs")[rows])}
        for name in ("executed_action", "novice_action", "expert_action"):
            batch[name] = torch.as_tensor(store.column(name)[rows].astype(np.int64))
        for name in ("intervened", "terminated"):
            batch[name] = torch.as_tensor(store.column(name)[rows])
        return batch

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Proxy-value loss on the expert rows plus reward-free TD on every row.

        Args:
            batch: ``obs``, ``next_obs``, ``executed_action``, ``novice_action``,
                ``expert_action`` (-1 where the expert was not queried), ``intervened`` and
                ``terminated`` rows.
        """
        values = self.q.all_actions(batch["obs"])
        q_exec = values.gather(1, batch["executed_action"].view(-1, 1)).squeeze(1)
        with torch.no_grad():
            nxt = self.q_target.all_actions(batch["next_obs"]).max(1).values
            target = self.gamma * nxt * (~batch["terminated"]).float()
        td = ((q_exec - target) ** 2).mean()
        a_h, a_n = batch["expert_action"], batch["novice_action"]
        expert = batch["intervened"] & (a_h >= 0)
        q_h = values.gather(1, a_h.clamp(min=0).view(-1, 1)).squeeze(1)
        q_n = values.gather(1, a_n.view(-1, 1)).squeeze(1)
        replaced = (expert & (a_n != a_h)).float()  # the novice action the expert overrode
        n_expert = expert.float().sum().clamp(min=1.0)
        pv = (expert.float() * (q_h - 1.0) ** 2 + replaced * (q_n + 1.0) ** 2).sum() / n_expert
        return pv + td, {"dqn/pv_loss": float(pv.detach()), "dqn/td_loss": float(td.detach())}

    def train(self, store: RecordStore, steps: int) -> dict[str, float]:
        """``steps`` gradient steps on batches of ``store``; returns the last losses."""
        if len(store) == 0 or steps < 1:
            return {}
        self.q.train()
        info: dict[str, float] = {}
        for _ in range(steps):
            loss, info = self.loss(self.sample(store))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                for p, tp in zip(self.q.parameters(), self.q_target.parameters(), strict=True):
                    tp.lerp_(p, self.tau)
        self.q.eval()
        return info

    @torch.no_grad()
    def act_batch(self, obs: Any) -> np.ndarray:
        return self.q.all_actions(as_obs_tensor(obs)).argmax(1).numpy()

    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(self.rng, state["rng"])


class AIMLearner(Learner):
    """AIM's novice: a BC actor (Box or Discrete) or a PVP-style DQN (Discrete).

    Args:
        observation_space: the env's observation space (vector, or a ``(C, H, W)`` image stack).
        action_space: Box or Discrete.
        seed: seeds initial weights, resamples and minibatches.
        novice: ``bc`` (behaviour cloning, the paper) or ``dqn`` (the release's MiniGrid agent;
            Discrete only).
        hidden: hidden layers of the BC actor.
        update_every: K, new expert-labelled steps between updates (the gate retrains with it).
        iterations: bootstrap iterations of each BC retraining.
        first_iterations: BC iterations at the end of the warm-up.
        steps_per_iteration: Adam steps per BC iteration.
        batch_size: BC minibatch size.
        lr: BC learning rate.
        bootstrap: resample the BC data each iteration.
        dqn_hidden: hidden layers of the DQN after the encoder (default: none after the CNN of
            image observations, ``[256, 256]`` for vectors).
        dqn_batch_size: DQN batch (half expert, half novice).
        dqn_lr: DQN learning rate.
        gamma: DQN discount.
        tau: DQN target network soft-update factor.
        dqn_steps_per_env_step: DQN gradient steps after each env step (the release: 32).
        dqn_first_steps: DQN gradient steps at the end of the warm-up.
        dqn_update_steps: DQN gradient steps at each later K-label update.
    """

    name = "aim"

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0,
                 novice: Literal["bc", "dqn"] = "bc", hidden: list[int] | None = None,
                 update_every: int = 25, iterations: int = 25, first_iterations: int = 200,
                 steps_per_iteration: int = 5, batch_size: int = 1024, lr: float = 1e-4,
                 bootstrap: bool = True, dqn_hidden: list[int] | None = None, dqn_batch_size: int = 200,
                 dqn_lr: float = 1e-4, gamma: float = 0.99, tau: float = 0.005,
                 dqn_steps_per_env_step: int = 32, dqn_first_steps: int = 0,
                 dqn_update_steps: int = 0) -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        if novice not in ("bc", "dqn"):
            raise ValueError(f"novice must be 'bc' or 'dqn', got {novice!r}")
        self.novice = novice
        self._bc: MLPBCLearner | None = None
        self._dqn: PVPDQN | None = None
        if novice == "bc":
            self._bc = MLPBCLearner(observation_space=observation_space, action_space=action_space, seed=seed,
                                    hidden=hidden, update_every=update_every, iterations=iterations,
                                    first_iterations=first_iterations, steps_per_iteration=steps_per_iteration,
                                    batch_size=batch_size, lr=lr, bootstrap=bootstrap, labels="intervened")
            return
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"novice 'dqn' needs a Discrete action space, got {action_space}; use novice: bc")
        check_positive("dqn_batch_size", dqn_batch_size)
        check_positive("dqn_lr", dqn_lr)
        check_positive("dqn_steps_per_env_step", dqn_steps_per_env_step, allow_zero=True)
        check_positive("dqn_first_steps", dqn_first_steps, allow_zero=True)
        check_positive("dqn_update_steps", dqn_update_steps, allow_zero=True)
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {gamma}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        default = [] if is_image(observation_space) else [256, 256]
        layers = check_hidden("dqn_hidden", dqn_hidden if dqn_hidden is not None else default)
        self._dqn = seeded_init(seed, lambda: PVPDQN(
            observation_space, action_space, hidden=layers, lr=dqn_lr, batch_size=dqn_batch_size,
            gamma=gamma, tau=tau, rng=np.random.default_rng(seed)))
        self.schedule = EveryKLabels(k=update_every)
        self.dqn_steps_per_env_step = int(dqn_steps_per_env_step)
        self.dqn_first_steps = int(dqn_first_steps)
        self.dqn_update_steps = int(dqn_update_steps)

    # -- acting ------------------------------------------------------------------------------
    def predict_batch(self, obs: Any) -> np.ndarray:
        """The novice's actions for a batch of observations."""
        if self._bc is not None:
            return self._bc.predict_batch(obs)
        assert self._dqn is not None
        return self._dqn.act_batch(obs)

    def act(self, obs: Any) -> Any:
        return cast_action(self.predict_batch(np.asarray(obs)[None])[0], self.action_space)

    def policy(self) -> Policy:
        if self._bc is not None:
            return self._bc.policy()
        assert self._dqn is not None
        module = AllActionValues(copy.deepcopy(self._dqn.q)).eval()
        return TorchModulePolicy(module, self.observation_space, self.action_space)

    # -- learning ----------------------------------------------------------------------------
    def observe(self, record: Transition, store: RecordStore) -> dict[str, float]:
        if self._bc is not None:
            return self._bc.observe(record, store)
        assert self._dqn is not None
        return self._dqn.train(store, self.dqn_steps_per_env_step)  # PVP trains every env step

    def wants_update(self, store: RecordStore) -> bool:
        if self._bc is not None:
            return self._bc.wants_update(store)
        return self.schedule.due(count_labels(store, "intervened"))

    def update(self, store: RecordStore) -> dict[str, float]:
        if self._bc is not None:
            out = self._bc.update(store)
            self.updates = self._bc.updates
            return out
        assert self._dqn is not None
        self.schedule.mark(count_labels(store, "intervened"))
        out = self._dqn.train(store, self.dqn_first_steps if self.updates == 0 else self.dqn_update_steps)
        self.updates += 1
        return out

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self._bc is not None:
            return {**self._bc.state_dict(), "novice": "bc"}
        assert self._dqn is not None
        return {**super().state_dict(), **self._dqn.state_dict(), "novice": "dqn",
                "schedule_last": self.schedule.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("novice", self.novice) != self.novice:
            raise ValueError(f"state: checkpoint of novice '{state.get('novice')}', this learner is '{self.novice}'")
        if self._bc is not None:
            self._bc.load_state_dict(state)
            self.updates = self._bc.updates
            return
        assert self._dqn is not None
        super().load_state_dict(state)
        self._dqn.load_state_dict(state)
        self.schedule.last = int(state.get("schedule_last", 0))
