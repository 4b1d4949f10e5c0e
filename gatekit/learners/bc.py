"""Behaviour cloning of gatekit's own MLP actor (:class:`gatekit.nets.Actor`): ``mlp-bc``, and
AIM's BC novice (``aim``, the same learner with AIM's release defaults).

The schedule is the one of AIM's public release: every ``update_every`` new expert-labelled
steps the actor is retrained, warm-started from its current weights, for ``iterations``
iterations; each iteration draws a bootstrap resample of all expert-labelled steps and takes
``steps_per_iteration`` Adam steps on minibatches of it. The first update (the end of the
expert's warm-up) runs ``first_iterations`` iterations instead. Box actions: MSE to the
expert's action through a ``tanh`` output scaled to the bounds; Discrete: cross-entropy.

:class:`BCTrainer` holds that procedure on its own (the procedure, not the data plumbing), so
that other learners can reuse it.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> learner = MLPBCLearner(observation_space=gym.spaces.Box(-1, 1, (3,)),
    ...                        action_space=gym.spaces.Box(-1, 1, (1,)), hidden=[16])
    >>> learner.predict_batch(np.zeros((4, 3), np.float32)).shape
    (4, 1)
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from gatekit.learners.base import GreedyLearner, check_positive
from gatekit.nets import (
    Actor,
    as_action_tensor,
    as_obs_tensor,
    bc_loss,
    rng_state,
    seeded_init,
    set_rng_state,
)
from gatekit.policies import Policy, TorchModulePolicy
from gatekit.schedules import EveryKLabels
from gatekit.types import Labels
from gatekit.validate import layer_sizes, one_of

if TYPE_CHECKING:
    from gatekit.data import RecordStore


class BCTrainer:
    """Bootstrapped, warm-started behaviour cloning of an :class:`~gatekit.nets.Actor`.

    Args:
        actor: the network to train (in place).
        lr: Adam learning rate.
        batch_size: minibatch size (capped at the number of labelled steps).
        steps_per_iteration: Adam steps per bootstrap resample.
        bootstrap: draw each iteration's data as a bootstrap resample (AIM's release); False
            samples minibatches from all labelled steps.
        rng: the generator of resamples and minibatches.
    """

    def __init__(self, actor: Actor, *, lr: float, batch_size: int, steps_per_iteration: int,
                 bootstrap: bool, rng: np.random.Generator) -> None:
        self.actor = actor
        self.optimizer = torch.optim.Adam(actor.parameters(), lr=lr)
        self.batch_size = batch_size
        self.steps_per_iteration = steps_per_iteration
        self.bootstrap = bootstrap
        self.rng = rng

    def fit(self, obs: torch.Tensor, actions: torch.Tensor, iterations: int) -> float:
        """Train for ``iterations`` iterations on (obs, actions); returns the mean loss of the
        last iteration (NaN without data)."""
        n = len(obs)
        if n == 0 or iterations < 1:
            return float("nan")
        b = min(self.batch_size, n)
        self.actor.train()
        last: list[torch.Tensor] = []
        for _ in range(iterations):
            pool = self.rng.integers(0, n, size=n) if self.bootstrap else None
            last = []  # the loss of the last iteration only
            for _ in range(self.steps_per_iteration):
                pick = self.rng.integers(0, n, size=b)
                idx = torch.as_tensor(pool[pick] if pool is not None else pick)
                loss = bc_loss(self.actor, obs[idx], actions[idx])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                last.append(loss.detach())
        self.actor.eval()
        return float(torch.stack(last).mean())

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(self.rng, state["rng"])


class MLPBCLearner(GreedyLearner):
    """Plain behaviour cloning on :class:`~gatekit.nets.Actor` with AIM's retraining schedule.

    Args:
        observation_space: the env's observation space (vector, or a ``(C, H, W)`` image stack).
        action_space: Box (deterministic ``tanh`` actor, MSE) or Discrete (logits, cross-entropy).
        seed: seeds the initial weights, the resamples and the minibatches.
        hidden: hidden layer sizes of the actor (default ``[256, 256]``, ReLU).
        update_every: retrain after this many new expert-labelled steps (K).
        iterations: bootstrap iterations of each retraining.
        first_iterations: iterations of the first training (end of the warm-up).
        steps_per_iteration: Adam steps per iteration.
        batch_size: minibatch size (capped at the number of labelled steps).
        lr: Adam learning rate.
        bootstrap: resample the data each iteration (AIM's release).
        labels: ``intervened`` trains on the steps the expert acted on (HG-DAgger, AIM);
            ``queried`` on every step the expert labelled (DAgger, Ensemble-DAgger).
    """

    name = "mlp-bc"

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0,
                 hidden: list[int] | None = None, update_every: int = 25, iterations: int = 25,
                 first_iterations: int = 200, steps_per_iteration: int = 5, batch_size: int = 1024,
                 lr: float = 1e-4, bootstrap: bool = True,
                 labels: Labels = "intervened") -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        for name, value in (("iterations", iterations), ("first_iterations", first_iterations)):
            check_positive(name, value, allow_zero=True)
        for name, positive in (("steps_per_iteration", steps_per_iteration), ("batch_size", batch_size), ("lr", lr)):
            check_positive(name, positive)
        one_of("labels", labels, ("intervened", "queried"))
        self.hidden = layer_sizes("hidden", hidden if hidden is not None else [256, 256])
        self.schedule = EveryKLabels(k=update_every, labels=labels)
        self.iterations = int(iterations)
        self.first_iterations = int(first_iterations)
        self.labels = labels
        actor = seeded_init(seed, lambda: Actor(observation_space, action_space, self.hidden))
        actor.eval()
        self.trainer = BCTrainer(actor, lr=lr, batch_size=batch_size, steps_per_iteration=steps_per_iteration,
                                 bootstrap=bootstrap, rng=np.random.default_rng(seed))

    @property
    def actor(self) -> Actor:
        return self.trainer.actor

    # -- acting ------------------------------------------------------------------------------
    def predict_batch(self, obs: Any) -> np.ndarray:
        """The novice's actions for a batch of observations (int64 indices for Discrete)."""
        return self.actor.act_batch(np.asarray(obs))

    def policy(self) -> Policy:
        return TorchModulePolicy(copy.deepcopy(self.actor).eval(), self.observation_space, self.action_space)

    # -- learning ----------------------------------------------------------------------------
    def wants_update(self, store: RecordStore) -> bool:
        return self.schedule.due_in(store)

    def update(self, store: RecordStore) -> dict[str, float]:
        self.schedule.mark_in(store)
        obs, actions = store.expert_labelled(source=self.labels)
        if len(obs) == 0:
            return {}
        iterations = self.first_iterations if self.updates == 0 else self.iterations
        obs_t, act_t = as_obs_tensor(obs), as_action_tensor(actions, self.action_space)
        loss = self.trainer.fit(obs_t, act_t, iterations)
        self.updates += 1
        out = {"bc/loss": loss, "bc/labels": float(len(obs))}
        if self.actor.discrete:
            # How well the novice fits its own labels: an underfit novice (too few Adam steps for
            # its learning rate) shows here long before its test success does.
            with torch.no_grad():
                out["bc/train_accuracy"] = float((self.actor(obs_t).argmax(-1) == act_t).float().mean())
        return out

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.trainer.state_dict(), "schedule_last": self.schedule.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.trainer.load_state_dict(state)
        self.schedule.last = int(state.get("schedule_last", 0))
