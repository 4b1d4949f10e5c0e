"""The Learner interface: trains the novice from the records on its own schedule.

The run loop asks the learner for the novice's action each step (:meth:`Learner.act`), hands
it each step's record (:meth:`Learner.observe`, for learners that train every step), and asks
:meth:`Learner.wants_update` after each step; when it says yes, :meth:`Learner.update` trains
on the record store and the criterion's ``update`` follows on the same schedule. After the
expert's warm-up (``budget.warmup_steps``) one update always runs.

:meth:`Learner.policy` returns the deterministic novice used for evaluation; it must be
picklable (evaluation may run in a worker process).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from gatekit.types import Transition

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import Policy



def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise a one-line ValueError naming ``name`` unless ``value`` is > 0 (or >= 0)."""
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and np.isfinite(value)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise a one-line ValueError naming ``name`` unless ``low <= value <= high``."""
    if not (low <= value <= high):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}")

class Learner(ABC):
    """Base class of learner adapters. Constructors are keyword-only and take
    ``observation_space``, ``action_space`` and ``seed`` from gatekit, the rest from the recipe."""

    name: str = ""

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.seed = seed
        self.updates = 0

    @abstractmethod
    def act(self, obs: Any) -> Any:
        """The novice's action during training."""

    @abstractmethod
    def policy(self) -> Policy:
        """The novice as a picklable deterministic :class:`~gatekit.policies.Policy`."""

    def observe(self, record: Transition, store: RecordStore) -> dict[str, float]:
        """Called after every step with its record; per-step learners train here."""
        return {}

    def wants_update(self, store: RecordStore) -> bool:
        """Whether :meth:`update` should run now (e.g. every K new expert-labelled steps)."""
        return False

    @abstractmethod
    def update(self, store: RecordStore) -> dict[str, float]:
        """Train on the store; returns metrics to log."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks, optimisers, RNG, counters."""
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))


class EveryKLabels:
    """Schedule: update once every ``k`` new expert-labelled (intervened) steps.

    Example:
        >>> s = EveryKLabels(k=25)
        >>> s.due(24), s.due(25)
        (False, True)
        >>> s.mark(25); s.due(49), s.due(50)
        (False, True)
    """

    def __init__(self, *, k: int) -> None:
        if k < 1:
            raise ValueError(f"update_every must be >= 1, got {k}")
        self.k = k
        self.last = 0

    def due(self, n_labels: int) -> bool:
        return n_labels - self.last >= self.k

    def mark(self, n_labels: int) -> None:
        self.last = n_labels
