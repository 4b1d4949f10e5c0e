"""The Criterion interface: who should be in control on this step.

A criterion (a *gate*) is asked once per step by :class:`~gatekit.wrappers.InterventionWrapper`:

* while the novice is in control, :meth:`Criterion.takeover` — ``Verdict(switch=True)`` hands
  control to the expert (a *switch*), and the expert's action is executed on this very step;
* while the expert is in control, :meth:`Criterion.handback` — ``Verdict(switch=True)`` hands
  control back to the novice, whose action is executed on this step.

The :class:`~gatekit.types.GateContext` computes the expert's action only when read, so a
robot-gated criterion that decides from the novice alone never makes the expert look.

Lifecycle: :meth:`reset` at each episode start, :meth:`observe` after each step,
:meth:`end_episode` when an episode ends (re-estimate thresholds here), :meth:`update` on the
learner's schedule for gates that learn, :meth:`state_dict`/:meth:`load_state_dict` for
checkpoints (plain Python values, numpy arrays and torch tensors only).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from gatekit.types import GateContext, Transition, Verdict

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import Policy


class Criterion(ABC):
    """Base class of gates. Subclasses implement :meth:`takeover` and may override the rest.

    Class attributes:
        name: the registry name.
        needs_log_prob: the criterion calls ``ctx.expert_log_prob`` (the expert must provide it).
        human_gated: the expert watches every step (every step is an expert query).
    """

    name: ClassVar[str] = ""
    needs_log_prob: ClassVar[bool] = False
    human_gated: ClassVar[bool] = False

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
    def decide(self, ctx: GateContext) -> Verdict:
        """Dispatch to :meth:`takeover` or :meth:`handback` by who is in control."""
        verdict = self.handback(ctx) if ctx.expert_in_control else self.takeover(ctx)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"{type(self).__name__} must return a Verdict, got {type(verdict).__name__}")
        return verdict

    def decide_batch(self, ctxs: Sequence[GateContext]) -> list[Verdict]:
        """Decide for a batch of envs (the vectorised wrapper). Override to batch networks."""
        return [self.decide(c) for c in ctxs]

    @abstractmethod
    def takeover(self, ctx: GateContext) -> Verdict:
        """Novice in control: should the expert take over on this step?"""

    def handback(self, ctx: GateContext) -> Verdict:
        """Expert in control: should the novice get control back on this step?

        Default: hand back when the take-over condition no longer holds.
        """
        v = self.takeover(ctx)
        return Verdict(switch=not v.switch, score=v.score)

    # -- bookkeeping hooks ----------------------------------------------------------------
    def observe(self, ctx: GateContext, record: Transition) -> None:
        """After each step, with the step's record."""

    def end_episode(self) -> None:
        """After the last step of an episode."""

    def update(self, store: RecordStore, novice: Policy | None) -> dict[str, float]:
        """Learned gates train here on the learner's schedule; returns metrics to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"np_random": self.np_random.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "np_random" in state:
            self.np_random.bit_generator.state = state["np_random"]


def action_gap(a: Any, b: Any, space: gym.Space | None) -> float:
    """The action distance d used by gates: mean squared difference over action dimensions
    for continuous actions, 0/1 (equal/different) for discrete ones."""
    if isinstance(space, gym.spaces.Discrete):
        return float(int(a) != int(b))
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(np.mean(diff * diff))
