"""AIM's MiniGrid novice as released: a reward-free, PVP-style DQN over discrete actions.

On expert-labelled steps the expert's action is pushed to +1 and the novice action it replaced
to -1 (where the two differ); every transition gets the reward-free TD target
``gamma * max_a' Q_target(s', a')`` (0 at terminal states). Batches are half expert, half novice
steps; the novice acts greedily. As in the release it trains ``steps_per_env_step`` gradient
steps after every env step (32 there; the warm-up's expert steps included), plus optional extra
steps at the end of the warm-up (``first_steps``) and at each update (``update_steps``, every
``update_every`` new expert labels).

:class:`AIMReleaseDQN` is the network, its loss and its training; :class:`AIMDQNLearner`
(``aim-dqn``) is the learner around it. It is not PVP's SB3 DQN (:mod:`gatekit.learners.sb3.pvp`):
plain torch, the release's batch and loss.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from gatekit.learners.base import GreedyLearner
from gatekit.nets import (
    QNet,
    as_obs_tensor,
    is_image,
    rng_state,
    seeded_init,
    set_rng_state,
    soft_update,
)
from gatekit.policies import Policy, TorchModulePolicy
from gatekit.schedules import EveryKLabels
from gatekit.types import Transition
from gatekit.validate import in_range, layer_sizes, positive

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


class AIMReleaseDQN:
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
            soft_update(self.q, self.q_target, self.tau)
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


class AIMDQNLearner(GreedyLearner):
    """AIM's released MiniGrid novice: :class:`AIMReleaseDQN`, trained every env step.

    Args:
        observation_space: the env's observation space (vector, or a ``(C, H, W)`` image stack).
        action_space: a Discrete space.
        seed: seeds initial weights and minibatches.
        hidden: hidden layers after the encoder (default: none after the CNN of image
            observations, ``[256, 256]`` for vectors).
        batch_size: transitions per gradient step (half expert, half novice).
        lr: Adam learning rate.
        gamma: discount.
        tau: target network soft-update factor.
        steps_per_env_step: gradient steps after each env step (the release: 32).
        first_steps: gradient steps at the end of the warm-up.
        update_steps: gradient steps at each later update (every ``update_every`` labels).
        update_every: new expert-labelled (intervened) steps between updates (AIM's K).
    """

    name = "aim-dqn"

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0,
                 hidden: list[int] | None = None, batch_size: int = 200, lr: float = 1e-4, gamma: float = 0.99,
                 tau: float = 0.005, steps_per_env_step: int = 32, first_steps: int = 0, update_steps: int = 0,
                 update_every: int = 25) -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"aim-dqn needs a Discrete action space, got {action_space}; use the aim (BC) learner")
        positive("batch_size", batch_size)
        positive("lr", lr)
        for name, value in (("steps_per_env_step", steps_per_env_step), ("first_steps", first_steps),
                            ("update_steps", update_steps)):
            positive(name, value, allow_zero=True)
        in_range("gamma", gamma, 0.0, 1.0, high_open=True)
        in_range("tau", tau, 0.0, 1.0, low_open=True)
        default = [] if is_image(observation_space) else [256, 256]
        layers = layer_sizes("hidden", hidden if hidden is not None else default)
        self.dqn = seeded_init(seed, lambda: AIMReleaseDQN(
            observation_space, action_space, hidden=layers, lr=lr, batch_size=batch_size,
            gamma=gamma, tau=tau, rng=np.random.default_rng(seed)))
        self.schedule = EveryKLabels(k=update_every, labels="intervened")
        self.steps_per_env_step = int(steps_per_env_step)
        self.first_steps = int(first_steps)
        self.update_steps = int(update_steps)

    # -- acting ------------------------------------------------------------------------------
    def predict_batch(self, obs: Any) -> np.ndarray:
        """The novice's greedy actions for a batch of observations."""
        return self.dqn.act_batch(obs)

    def policy(self) -> Policy:
        module = AllActionValues(copy.deepcopy(self.dqn.q)).eval()
        return TorchModulePolicy(module, self.observation_space, self.action_space)

    # -- learning ----------------------------------------------------------------------------
    def observe(self, record: Transition, store: RecordStore) -> dict[str, float]:
        return self.dqn.train(store, self.steps_per_env_step)  # PVP trains every env step

    def wants_update(self, store: RecordStore) -> bool:
        return self.schedule.due_in(store)

    def update(self, store: RecordStore) -> dict[str, float]:
        self.schedule.mark_in(store)
        out = self.dqn.train(store, self.first_steps if self.updates == 0 else self.update_steps)
        self.updates += 1
        return out

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.dqn.state_dict(), "schedule_last": self.schedule.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.dqn.load_state_dict(state)
        self.schedule.last = int(state.get("schedule_last", 0))
