"""The Criterion interface: who acts on this step, and when a learned gate trains.

A criterion (a *gate*) is asked once per step by :class:`~gatekit.wrappers.InterventionWrapper`
and answers with a :class:`~gatekit.types.Decision`, *who acts on this step* (an absolute
answer, whoever held control before):

* while the novice is in control, :meth:`Criterion.takeover`: ``Decision(expert_acts=True)`` is
  a take-over (a *switch*), and the expert's action is executed on this very step;
* while the expert is in control, :meth:`Criterion.handback`: ``Decision(expert_acts=False)``
  hands control back to the novice, whose action is executed on this step. By default the
  expert keeps control exactly while the take-over condition holds.

The :class:`~gatekit.types.GateContext` computes the expert's action only when read, so a
robot-gated criterion that decides from the novice alone never makes the expert look.

Lifecycle: :meth:`reset` at each episode start, :meth:`observe` after each step,
:meth:`end_episode` when an episode ends (re-estimate thresholds here),
:meth:`state_dict`/:meth:`load_state_dict` for checkpoints (plain Python values, numpy arrays
and torch tensors only). Gates that learn own their schedule: the run loop asks
:meth:`wants_update` after every step, whatever the learner does, and calls :meth:`update` with
the record store and the current novice (anything with a deterministic ``predict_batch``, see
:class:`~gatekit.policies.NovicePredictor`). Learned gates subclass
:class:`~gatekit.criteria.learned.LearnedCriterion`, which brings the schedule.

Example, a custom gate in five lines:
    >>> import numpy as np
    >>> from gatekit.types import Decision, GateContext
    >>> class FarFromZero(Criterion):
    ...     def takeover(self, ctx):
    ...         gap = float(np.abs(ctx.novice_action).max())
    ...         return Decision(expert_acts=gap > 0.5, score=gap)
    >>> ctx = GateContext(obs=None, novice_action=np.array([0.9]), expert_in_control=False,
    ...                   episode_step=0, expert_fn=lambda o: np.zeros(1))
    >>> FarFromZero().decide(ctx)
    Decision(expert_acts=True, score=0.9)
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from gatekit.criteria.distances import mean_squared_gap
from gatekit.types import Decision, GateContext, Transition, Verdict

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import NovicePredictor


class Criterion(ABC):
    """Base class of gates. Subclasses implement :meth:`takeover` and may override the rest.

    Attributes (class defaults; an instance may set its own in ``__init__``):
        name: the registry name.
        needs_log_prob: the criterion calls ``ctx.expert_log_prob`` (the expert must provide it).
        human_gated: the expert watches every step (every step is an expert query).
        needs_person: a person moves control with their own presses (the expert's
            ``claim_control``, see :mod:`gatekit.wrappers.intervention`): the wrapper refuses
            an expert without it.
        learns: the criterion trains on the records (:meth:`update` on its own schedule).
    """

    name: ClassVar[str] = ""
    needs_log_prob: bool = False
    human_gated: bool = False
    needs_person: bool = False
    learns: bool = False

    def __init__(self) -> None:
        self.np_random = np.random.default_rng()
        self.observation_space: gym.Space | None = None
        self.action_space: gym.Space | None = None

    # -- wiring ---------------------------------------------------------------------------
    def bind(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Called once by the wrapper with the env's spaces; check them here."""
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None) -> None:
        """An episode starts. A seed re-seeds :attr:`np_random` (the only randomness source)."""
        if seed is not None:
            self.np_random = np.random.default_rng(seed)

    # -- the decision ---------------------------------------------------------------------
    def decide(self, ctx: GateContext) -> Decision:
        """Dispatch to :meth:`takeover` or :meth:`handback` by who is in control."""
        answer = self.handback(ctx) if ctx.expert_in_control else self.takeover(ctx)
        return _as_decision(self, answer, ctx.expert_in_control)

    def decide_batch(self, ctxs: Sequence[GateContext]) -> list[Decision]:
        """Decide for a batch of envs (the vectorised wrapper). Override to batch networks."""
        return [self.decide(c) for c in ctxs]

    @abstractmethod
    def takeover(self, ctx: GateContext) -> Decision:
        """Novice in control: does the expert act on this step (take over)?"""

    def handback(self, ctx: GateContext) -> Decision:
        """Expert in control: does the expert keep acting on this step?

        Default: the expert keeps control while the take-over condition holds.
        """
        answer = self.takeover(ctx)
        if isinstance(answer, Verdict):  # an 0.1-style takeover: its switch meant "expert acts"
            return Decision(expert_acts=answer.switch, score=answer.score)
        return answer

    # -- bookkeeping hooks ----------------------------------------------------------------
    def observe(self, ctx: GateContext, record: Transition) -> None:
        """After each step, with the step's record."""

    def end_episode(self) -> None:
        """After the last step of an episode."""

    # -- learning -------------------------------------------------------------------------
    def wants_update(self, store: RecordStore) -> bool:
        """Whether :meth:`update` should run now. Gates that do not learn: never."""
        return False

    def update(self, store: RecordStore, novice: NovicePredictor | None) -> dict[str, float]:
        """Train on the records with the current novice; returns metrics to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"np_random": self.np_random.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "np_random" in state:
            self.np_random.bit_generator.state = state["np_random"]


_warned: set[type] = set()


def _as_decision(criterion: Criterion, answer: Any, expert_in_control: bool) -> Decision:
    if isinstance(answer, Decision):
        return answer
    if isinstance(answer, Verdict):
        cls = type(criterion)
        if cls not in _warned:
            _warned.add(cls)
            warnings.warn(f"{cls.__name__} returns Verdict(switch=...), which is deprecated: return "
                          f"Decision(expert_acts=...) (who acts on this step) from takeover and handback",
                          DeprecationWarning, stacklevel=3)
        return answer.to_decision(expert_in_control=expert_in_control)
    raise TypeError(f"{type(criterion).__name__} must return a Decision, got {type(answer).__name__}")


def action_gap(a: Any, b: Any, space: gym.Space | None) -> float:
    """The action distance d used by gates (kept for gatekit 0.1 callers): see
    :func:`gatekit.criteria.distances.mean_squared_gap`."""
    return mean_squared_gap(a, b, space)
