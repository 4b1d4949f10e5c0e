"""What every learned gate does the same way: readiness, its own update schedule, the holdout
split, recent estimates for quantile thresholds, deferred state loading, and the BC ensemble.

* :class:`LearnedCriterion`: the base of ``aim``, ``thrifty``, ``ensemble``, ``safedagger``.
  Until its first update the gate is not *ready* and the expert holds control (a warm-up comes
  for free, so a run without ``budget.warmup_steps`` collects its first labels from the
  expert). It trains every ``update_every`` new expert labels of kind ``labels``
  (:class:`~gatekit.schedules.EveryKLabels`), asked by the run loop after every step whatever
  the learner: :meth:`LearnedCriterion.update` marks the schedule and calls the subclass's
  :meth:`~LearnedCriterion.fit` with the record store and the current novice (its deterministic
  ``predict_batch``). Networks are built from the spaces in :meth:`~LearnedCriterion.build`
  (called by ``bind``); a state loaded before that is applied once they exist.
* :func:`holdout_split`: how many of the first fit's labels train (the rest set thresholds).
* :class:`RecentEstimates`: the estimates a gate keeps between threshold re-estimations (and,
  for re-scoring, the states and actions they were made on).
* :class:`ActorEnsemble`: bootstrapped BC actors (Ensemble- and Thrifty-DAgger's novelty).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from gatekit.criteria.base import Criterion
from gatekit.nets import Actor, bc_step, numpy_actor
from gatekit.schedules import EveryKLabels, EveryNSteps
from gatekit.types import Decision, GateContext, Labels
from gatekit.validate import in_range, layer_sizes, positive

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import NovicePredictor


class LearnedCriterion(Criterion):
    """Base of gates that learn from the records on their own schedule.

    Args:
        update_every: train after this many new expert labels of kind ``labels`` (K).
        labels: which labels the gate counts and trains on: ``intervened`` (the steps the
            expert acted on) or ``queried`` (every step it labelled).

    Subclasses implement :meth:`build` (networks from the spaces), :meth:`fit` (one update),
    :meth:`takeover` and usually :meth:`handback`, and extend :meth:`state_dict` /
    :meth:`load_state_dict` with :meth:`_net_state` / :meth:`_load_net_state`.
    """

    learns = True

    def __init__(self, *, update_every: int = 25, labels: Labels = "intervened") -> None:
        super().__init__()
        self.schedule: EveryKLabels | EveryNSteps = EveryKLabels(k=update_every, labels=labels)
        self.labels: Labels = labels
        self.ready = False
        self.updates = 0
        self._built = False
        self._pending_state: dict[str, Any] | None = None

    # -- wiring ---------------------------------------------------------------------------
    def bind(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().bind(observation_space, action_space)
        self.build(observation_space, action_space)
        self._built = True
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            self.load_state_dict(state)

    @abstractmethod
    def build(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Build the gate's networks and optimisers for these spaces (check them here)."""

    def _require_built(self, what: str) -> None:
        if not self._built:
            raise RuntimeError(f"{type(self).__name__}.bind() must be called before {what} (the wrapper does it)")

    # -- the decision ---------------------------------------------------------------------
    def decide(self, ctx: GateContext) -> Decision:
        """The expert acts until the gate is ready; then the subclass's rule decides."""
        if not self.ready:
            return Decision(expert_acts=True)
        return super().decide(ctx)

    def decide_batch(self, ctxs: Sequence[GateContext]) -> list[Decision]:
        if not self.ready:
            return [Decision(expert_acts=True) for _ in ctxs]
        return self.decide_ready_batch(ctxs)

    def decide_ready_batch(self, ctxs: Sequence[GateContext]) -> list[Decision]:
        """Decide for a batch once ready; override to batch the networks' forward passes."""
        return [Criterion.decide(self, c) for c in ctxs]

    # -- learning -------------------------------------------------------------------------
    def wants_update(self, store: RecordStore) -> bool:
        """Due every ``update_every`` new labels of kind ``labels``."""
        return self.schedule.due_in(store)

    def update(self, store: RecordStore, novice: NovicePredictor | None) -> dict[str, float]:
        """Mark the schedule, then :meth:`fit`; the gate is ready once a fit trained."""
        self._require_built("update()")
        self.schedule.mark_in(store)
        metrics = self.fit(store, novice)
        self.updates += 1
        return metrics

    @abstractmethod
    def fit(self, store: RecordStore, novice: NovicePredictor | None) -> dict[str, float]:
        """Train on the store (set :attr:`ready` when the gate can decide); return metrics."""

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if not self._built:
            if self._pending_state is not None:
                return dict(self._pending_state)
            raise RuntimeError(f"{type(self).__name__}.bind() must be called before state_dict()")
        return {**super().state_dict(), "ready": bool(self.ready), "updates": int(self.updates),
                "schedule_last": int(self.schedule.last), **self._net_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not self._built:
            self._pending_state = dict(state)  # applied by bind(), which builds the networks
            return
        super().load_state_dict(state)
        self.ready = bool(state.get("ready", False))
        self.updates = int(state.get("updates", 0))
        self.schedule.last = int(state.get("schedule_last", 0))
        self._load_net_state(state)

    def _net_state(self) -> dict[str, Any]:
        """The subclass's networks, optimisers and thresholds for :meth:`state_dict`."""
        return {}

    def _load_net_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_net_state` saved (the networks exist)."""


def holdout_split(n: int, fraction: float) -> int:
    """How many of ``n`` labels (in time order) the first fit trains on; the last
    ``n - returned`` set the thresholds. At least one label trains, and at least one is held out
    when ``n > 1``.

    Example:
        >>> holdout_split(200, 0.1), holdout_split(2, 0.1), holdout_split(1, 0.1)
        (180, 1, 1)
    """
    if n <= 1:
        return 1
    return max(1, min(n - 1, int(round(n * (1.0 - fraction)))))


class RecentEstimates:
    """A gate's recent per-step estimates (one or more named values per decision) and,
    optionally, the states and actions they were made on, to re-score them with newer networks.

    Args:
        names: the values kept per decision (e.g. ``("q",)``, ``("novelty", "risk")``).
        min_estimates: :attr:`enough` once more than this many are kept.
        keep_inputs: also keep each decision's observation and action.
        max_inputs: keep only the last this many inputs (None: no limit).

    Example:
        >>> e = RecentEstimates(("q",), min_estimates=2, keep_inputs=True)
        >>> for i in range(3):
        ...     e.add(np.zeros(2), 0, q=float(i))
        >>> e.enough, e.values("q").tolist(), e.inputs()[0].shape
        (True, [0.0, 1.0, 2.0], (3, 2))
    """

    def __init__(self, names: tuple[str, ...], *, min_estimates: int, keep_inputs: bool = False,
                 max_inputs: int | None = None) -> None:
        positive("min_estimates", min_estimates, allow_zero=True)
        if max_inputs is not None:
            positive("max_inputs", max_inputs)
        self.names = tuple(names)
        self.min_estimates = int(min_estimates)
        self.keep_inputs = bool(keep_inputs)
        self.max_inputs = max_inputs
        self._values: dict[str, list[float]] = {n: [] for n in self.names}
        self._inputs: list[tuple[np.ndarray, Any]] = []

    def add(self, obs: Any, action: Any, **values: float) -> None:
        """Keep one decision's values (and its inputs, with ``keep_inputs``)."""
        for name in self.names:
            self._values[name].append(float(values[name]))
        if self.keep_inputs:
            self._inputs.append((np.array(obs), action))
            if self.max_inputs is not None and len(self._inputs) > self.max_inputs:
                del self._inputs[:-self.max_inputs]

    def __len__(self) -> int:
        return len(self._values[self.names[0]])

    @property
    def enough(self) -> bool:
        """More than ``min_estimates`` values are kept."""
        return len(self) > self.min_estimates

    def values(self, name: str) -> np.ndarray:
        return np.asarray(self._values[name])

    def set_values(self, **values: Sequence[float] | np.ndarray) -> None:
        """Replace the kept values (e.g. with re-scored ones)."""
        for name in self.names:
            self._values[name] = [float(x) for x in values[name]]

    def has_inputs(self) -> bool:
        return bool(self._inputs)

    def inputs(self) -> tuple[np.ndarray, list[Any]]:
        """The kept observations (stacked) and actions (a list)."""
        return np.stack([o for o, _ in self._inputs]), [a for _, a in self._inputs]

    def clear(self, *, inputs: bool = True) -> None:
        for name in self.names:
            self._values[name].clear()
        if inputs:
            self._inputs.clear()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {f"estimates_{n}": list(v) for n, v in self._values.items()}
        if self._inputs:
            state["estimates_obs"] = torch.as_tensor(np.stack([o for o, _ in self._inputs]))
            state["estimates_actions"] = torch.as_tensor(np.stack([np.asarray(a) for _, a in self._inputs]))
        return state

    def load_state_dict(self, state: dict[str, Any], *, discrete: bool) -> None:
        for name in self.names:
            self._values[name] = [float(x) for x in state.get(f"estimates_{name}", [])]
        self._inputs = []
        if state.get("estimates_obs") is not None:
            acts = state["estimates_actions"].numpy()
            self._inputs = [(o, int(a) if discrete else a)
                            for o, a in zip(state["estimates_obs"].numpy(), acts, strict=True)]


def labelled(store: RecordStore, labels: Labels) -> tuple[np.ndarray, np.ndarray]:
    """Observations and expert actions of the records carrying labels of kind ``labels``."""
    obs, actions = store.expert_labelled(source=labels)
    return np.asarray(obs), np.asarray(actions)


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
        positive("lr", lr)
        positive("batch_size", batch_size)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.actors = [Actor(observation_space, action_space, layer_sizes("hidden", hidden)) for _ in range(members)]
        self.optimizers = [torch.optim.Adam(a.parameters(), lr=lr) for a in self.actors]
        self.batch_size = int(batch_size)
        self._fast: list[Any] | None = None  # numpy copies of the members for single decisions

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
        self._fast = None
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
        variance (mean over dimensions of the across-member variance) for a batch. One
        observation goes through numpy copies of the members (vector observations)."""
        if not isinstance(obs, torch.Tensor) and len(obs) == 1:
            fast = self._numpy_members()
            if fast is not None:
                outs = np.stack([f(np.asarray(obs)) for f in fast])
                if self.discrete:
                    outs = np.exp(outs - outs.max(-1, keepdims=True))
                    outs /= outs.sum(-1, keepdims=True)
                mean = outs.mean(0)
                var = outs.var(0).mean(-1)
                return (mean.argmax(-1) if self.discrete else mean), var
        out = self.outputs(obs)
        mean = out.mean(0)
        var = out.var(0, unbiased=False).mean(-1)
        action = mean.argmax(-1) if self.discrete else mean
        return action.cpu().numpy(), var.cpu().numpy()

    def _numpy_members(self) -> list[Any] | None:
        if self._fast is None:
            fast = [numpy_actor(a) for a in self.actors]
            self._fast = fast if all(f is not None for f in fast) else []
        return self._fast or None

    def state_dict(self) -> dict[str, Any]:
        return {"actors": [a.state_dict() for a in self.actors],
                "optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for a, s in zip(self.actors, state["actors"], strict=True):
            a.load_state_dict(s)
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        self._fast = None


def check_common(*, lr: float, batch_size: int, holdout: float | None = None) -> None:
    """The checks of the arguments most learned gates share."""
    positive("lr", lr)
    positive("batch_size", batch_size)
    if holdout is not None:
        in_range("holdout", holdout, 0.0, 1.0, low_open=True, high_open=True)
