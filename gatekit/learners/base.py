"""The Learner interface: trains the novice from the records on its own schedule.

The run loop asks the learner for the novice's action each step (:meth:`Learner.act`, which may
explore), hands it each step's record (:meth:`Learner.observe`, for learners that train every
step), and asks :meth:`Learner.wants_update` after each step; when it says yes,
:meth:`Learner.update` trains on the record store. After the expert's warm-up
(``budget.warmup_steps``) one update always runs. The criterion keeps its own schedule: a
learned gate trains whatever the learner says.

:meth:`Learner.predict_batch` is the novice's *deterministic* action for a batch of
observations (no exploration noise, no RNG drawn): learned gates re-score the novice with it.
:meth:`Learner.policy` returns the deterministic novice used for evaluation; it must be
picklable (evaluation may run in a worker process).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from gatekit.policies import cast_action
from gatekit.schedules import EveryKLabels
from gatekit.types import Transition
from gatekit.validate import in_range, positive

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import Policy



def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise a one-line ValueError naming ``name`` unless ``value`` is > 0 (or >= 0)."""
    positive(name, value, allow_zero=allow_zero)


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise a one-line ValueError naming ``name`` unless ``low <= value <= high``."""
    in_range(name, value, low, high)


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

    def act_batch(self, obs: Sequence[Any]) -> list[Any]:
        """The novice's actions during training for several envs' observations, in order. The
        default calls :meth:`act` on each; learners with a batched forward pass override it
        (one pass for the batch, the same actions as :meth:`act`)."""
        return [self.act(o) for o in obs]

    @abstractmethod
    def policy(self) -> Policy:
        """The novice as a picklable deterministic :class:`~gatekit.policies.Policy`."""

    def predict_batch(self, obs: Any) -> np.ndarray:
        """The novice's deterministic actions for a batch of observations (int indices for
        Discrete actions). The default calls :meth:`policy` on each observation; learners with
        a batched forward pass override it."""
        obs = np.asarray(obs)
        if len(obs) == 0:
            return np.zeros((0,))
        novice = self.policy()
        return np.stack([np.asarray(novice(o)) for o in obs])

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



class GreedyLearner(Learner):
    """A learner whose training actions are its deterministic :meth:`predict_batch` (a BC actor,
    a greedy Q): :meth:`act` and :meth:`act_batch` come from it, the batch in one forward pass
    (one observation: the same array either way, so the actions are the same to the bit)."""

    def act(self, obs: Any) -> Any:
        return cast_action(self.predict_batch(np.asarray(obs)[None])[0], self.action_space)

    def act_batch(self, obs: Sequence[Any]) -> list[Any]:
        if type(self).act is not GreedyLearner.act:  # a subclass's own act: asked on each observation
            return super().act_batch(obs)
        return [cast_action(a, self.action_space) for a in self.predict_batch(np.stack([np.asarray(o) for o in obs]))]


__all__ = ["EveryKLabels", "GreedyLearner", "Learner", "check_positive", "check_range"]
