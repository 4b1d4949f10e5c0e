"""Ensemble-DAgger (Menda et al., IROS 2019): the novice acts only when it is close to the expert
and its ensemble is confident.

The expert is queried on every step (the rule compares with its action). With ``a_e`` the
ensemble's action and ``v`` its variance at the state, the novice acts when

    ||a_e - a_h|| <= tau   and   v <= chi,

otherwise the expert acts; control returns to the novice as soon as both hold again.

The ensemble. The gate owns :class:`ActorEnsemble`: ``members`` deterministic actors
(:class:`gatekit.nets.Actor`) trained by behaviour cloning on bootstrap resamples of the
expert-labelled records, retrained (warm start) in :meth:`EnsembleCriterion.update`, i.e. on
the learner's schedule. Owning it keeps the gate independent of the learner, so every method of
a comparison can share one learner (the same novice, different gates). Variance is the mean
over action dimensions of the variance across members (population variance). Discrete
actions: the members' softmax probabilities play the role of actions, the ensemble's action
is the argmax of their mean, the distance is 0 (same action) or 1, and the variance is the
mean over actions of the variance of the probabilities (the members' disagreement).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np
import torch

from gatekit.criteria.base import Criterion
from gatekit.nets import Actor, bc_step
from gatekit.types import GateContext, Verdict

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import Policy


class ActorEnsemble:
    """``members`` BC actors, each trained on its own bootstrap resample of the data.

    Args:
        observation_space: the env's observation space.
        action_space: a Box or Discrete action space.
        members: number of actors.
        hidden: hidden layer sizes of each actor.
        lr: Adam learning rate.
        batch_size: minibatch size of each gradient step.

    Example:
        >>> import gymnasium as gym, numpy as np
        >>> ens = ActorEnsemble(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (1,)),
        ...                     members=3, hidden=[16], lr=1e-2, batch_size=8)
        >>> obs = np.zeros((10, 2), np.float32); acts = np.full((10, 1), 0.5, np.float32)
        >>> _ = ens.fit(obs, acts, steps=50, rng=np.random.default_rng(0))
        >>> action, var = ens.predict(obs[:1])
        >>> action.shape, bool(abs(action[0, 0] - 0.5) < 0.1), var.shape
        ((1, 1), True, (1,))
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, *, members: int,
                 hidden: Sequence[int], lr: float, batch_size: int) -> None:
        if members < 2:
            raise ValueError(f"members must be >= 2 (an ensemble needs two to disagree), got {members}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.actors = [Actor(observation_space, action_space, list(hidden)) for _ in range(members)]
        self.optimizers = [torch.optim.Adam(a.parameters(), lr=lr) for a in self.actors]
        self.batch_size = int(batch_size)

    def fit(self, obs: np.ndarray, actions: np.ndarray, *, steps: int, rng: np.random.Generator) -> float:
        """Train each member ``steps`` minibatches on a fresh bootstrap resample; returns the
        mean final loss."""
        n = len(obs)
        if n == 0 or steps < 1:
            return math.nan
        obs_t = torch.as_tensor(np.asarray(obs))
        act_t = torch.as_tensor(np.asarray(actions))
        losses = []
        for actor, opt in zip(self.actors, self.optimizers, strict=True):
            boot = rng.integers(0, n, size=n)  # this member's resample: what makes members differ
            loss = math.nan
            for _ in range(steps):
                idx = torch.as_tensor(boot[rng.integers(0, n, size=min(self.batch_size, n))])
                loss = bc_step(actor, opt, obs_t[idx], act_t[idx])
            losses.append(loss)
        return float(np.mean(losses))

    @torch.no_grad()
    def outputs(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Members' actions (Box) or action probabilities (Discrete): ``(members, batch, dim)``."""
        x = torch.as_tensor(np.asarray(obs)) if not isinstance(obs, torch.Tensor) else obs
        outs = [a(x) for a in self.actors]
        if self.discrete:
            outs = [torch.softmax(o, dim=-1) for o in outs]
        return torch.stack(outs)

    def predict(self, obs: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The ensemble's action (mean action; Discrete: argmax of the mean probabilities) and its
        variance (mean over dimensions of the across-member variance) for a batch."""
        out = self.outputs(obs)
        mean = out.mean(0)
        var = out.var(0, unbiased=False).mean(-1)
        action = mean.argmax(-1) if self.discrete else mean
        return action.cpu().numpy(), var.cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {"actors": [a.state_dict() for a in self.actors],
                "optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for a, s in zip(self.actors, state["actors"], strict=True):
            a.load_state_dict(s)
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)


def labelled(store: RecordStore, source: Literal["intervened", "queried"]) -> tuple[np.ndarray, np.ndarray]:
    """Observations and expert actions of the expert-labelled records.

    ``intervened``: the steps the expert acted on; ``queried``: every step the expert looked at.
    """
    obs, actions = store.expert_labelled(source=source)
    return np.asarray(obs), np.asarray(actions)


def novice_actions(novice: Any, obs: np.ndarray) -> np.ndarray | None:
    """The novice's actions for a batch of observations, or None without a novice.

    Uses ``novice.predict_batch`` (gatekit's MLP learners) when the learner has it, else calls
    ``novice.act`` (or the novice itself) per observation.
    """
    if novice is None:
        return None
    batch = getattr(novice, "predict_batch", None)
    if callable(batch):
        return np.asarray(batch(obs))
    act = getattr(novice, "act", None)
    fn = act if callable(act) else novice
    return np.asarray([np.asarray(fn(o)) for o in obs])


def distance(a: Any, b: Any, space: gym.Space | None) -> float:
    """Euclidean distance of two actions; 0/1 (same/different) for Discrete actions."""
    if isinstance(space, gym.spaces.Discrete):
        return float(int(np.asarray(a).reshape(())) != int(np.asarray(b).reshape(())))
    diff = np.asarray(a, dtype=np.float64).reshape(-1) - np.asarray(b, dtype=np.float64).reshape(-1)
    return float(np.sqrt(np.sum(diff * diff)))


class EnsembleCriterion(Criterion):
    """Ensemble-DAgger's gate: the novice acts only if ``||a_e - a_h|| <= tau`` and the ensemble
    variance is ``<= chi``. Until its first :meth:`update` the ensemble is untrained and the
    expert acts.

    Args:
        tau: the largest tolerated distance to the expert's action (Euclidean; Discrete: any
            value below 1 means "the same action").
        chi: the largest tolerated ensemble variance.
        compare: ``ensemble`` measures the distance from the ensemble's action (Menda et al.,
            whose novice is the ensemble); ``novice`` from the learner's proposed action.
        members: ensemble size.
        hidden: hidden layers of each member (default ``[256, 256]``).
        lr: Adam learning rate of the members.
        batch_size: minibatch size.
        steps_per_update: gradient steps per member at each update.
        first_steps: gradient steps per member at the first update (None: as later ones).
        labels: which records train the ensemble: ``queried`` (every step the expert labelled,
            Ensemble-DAgger's data) or ``intervened``.

    Example:
        >>> import gymnasium as gym, numpy as np
        >>> c = EnsembleCriterion(tau=0.2, chi=0.01, members=2, hidden=[8])
        >>> c.bind(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Box(-1, 1, (1,)))
        >>> ctx = GateContext(obs=np.zeros(1, np.float32), novice_action=np.zeros(1), expert_in_control=False,
        ...                   episode_step=0, expert_fn=lambda o: np.zeros(1))
        >>> c.decide(ctx).switch   # untrained: the expert acts
        True
    """

    name = "ensemble"
    human_gated = True

    def __init__(self, *, tau: float = 0.3, chi: float = 0.02, compare: Literal["ensemble", "novice"] = "ensemble",
                 members: int = 5, hidden: list[int] | None = None, lr: float = 1e-3, batch_size: int = 256,
                 steps_per_update: int = 200, first_steps: int | None = None, labels: Literal["queried", "intervened"] = "queried") -> None:
        super().__init__()
        if not (tau >= 0 and math.isfinite(tau)):
            raise ValueError(f"tau must be a finite number >= 0, got {tau}")
        if not (chi >= 0 and math.isfinite(chi)):
            raise ValueError(f"chi must be a finite number >= 0, got {chi}")
        if compare not in ("ensemble", "novice"):
            raise ValueError(f"compare must be 'ensemble' or 'novice', got {compare!r}")
        if labels not in ("queried", "intervened"):
            raise ValueError(f"labels must be 'queried' or 'intervened', got {labels!r}")
        if steps_per_update < 1:
            raise ValueError(f"steps_per_update must be >= 1, got {steps_per_update}")
        if first_steps is not None and first_steps < 1:
            raise ValueError(f"first_steps must be >= 1 or null, got {first_steps}")
        if members < 2:
            raise ValueError(f"members must be >= 2, got {members}")
        self.first_steps = None if first_steps is None else int(first_steps)
        self.tau, self.chi = float(tau), float(chi)
        self.compare = compare
        self.members = int(members)
        self.hidden = list(hidden) if hidden is not None else [256, 256]
        self.lr, self.batch_size = float(lr), int(batch_size)
        self.steps_per_update = int(steps_per_update)
        self.labels = labels
        self.ensemble: ActorEnsemble | None = None
        self.trained = False

    def bind(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().bind(observation_space, action_space)
        self.ensemble = ActorEnsemble(observation_space, action_space, members=self.members, hidden=self.hidden,
                                      lr=self.lr, batch_size=self.batch_size)

    def takeover(self, ctx: GateContext) -> Verdict:
        expert = ctx.expert_action  # Ensemble-DAgger compares with the expert on every step
        if not self.trained or self.ensemble is None:
            return Verdict(True)
        action, var = self.ensemble.predict(np.asarray(ctx.obs)[None])
        ours = action[0] if self.compare == "ensemble" else ctx.novice_action
        dist = distance(ours, expert, self.action_space)
        return Verdict(bool(dist > self.tau or float(var[0]) > self.chi), dist)

    def update(self, store: RecordStore, novice: Policy | None) -> dict[str, float]:
        if self.ensemble is None:
            return {}
        obs, acts = labelled(store, self.labels)
        if len(obs) == 0:
            return {}
        steps = self.first_steps if not self.trained and self.first_steps is not None else self.steps_per_update
        loss = self.ensemble.fit(obs, acts, steps=steps, rng=self.np_random)
        self.trained = True
        return {"ensemble_loss": loss, "labels": float(len(obs))}

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "trained": self.trained}
        if self.ensemble is not None:
            state["ensemble"] = self.ensemble.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.trained = bool(state.get("trained", False))
        if self.ensemble is not None and "ensemble" in state:
            self.ensemble.load_state_dict(state["ensemble"])
