"""Small shared types: the gate's view of a step, its decision, and the transition record."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Action = Any  # np.ndarray for Box spaces, int for Discrete
Obs = Any
Labels = Literal["intervened", "queried"]
"""Which expert labels: the steps the expert acted on, or every step it labelled."""


class GateContext:
    """What a criterion sees on one step, before the env steps.

    The expert's action is computed lazily: reading :attr:`expert_action` (or calling
    :meth:`expert_log_prob`) is an *expert query*, counted once per step however often it is
    read. Robot-gated criteria that never read it leave the expert idle.

    Attributes:
        obs: the observation the novice acted on.
        novice_action: the action the novice proposed.
        expert_in_control: who held control before this step's decision.
        episode_step: steps taken so far in this episode (0 on the first step).
    """

    __slots__ = (
        "obs",
        "novice_action",
        "expert_in_control",
        "episode_step",
        "_expert_fn",
        "_log_prob_fn",
        "_expert_action",
        "_queried",
    )

    def __init__(
        self,
        *,
        obs: Obs,
        novice_action: Action,
        expert_in_control: bool,
        episode_step: int,
        expert_fn: Callable[[Obs], Action],
        log_prob_fn: Callable[[Obs, Action], float] | None = None,
    ) -> None:
        self.obs = obs
        self.novice_action = novice_action
        self.expert_in_control = expert_in_control
        self.episode_step = episode_step
        self._expert_fn = expert_fn
        self._log_prob_fn = log_prob_fn
        self._expert_action: Action = None
        self._queried = False

    @property
    def expert_action(self) -> Action:
        """The expert's action for :attr:`obs` (computed on first read; counts as a query)."""
        if not self._queried:
            self._expert_action = self._expert_fn(self.obs)
            self._queried = True
        return self._expert_action

    @property
    def expert_queried(self) -> bool:
        """True once the expert had to look at this step."""
        return self._queried

    def expert_log_prob(self, action: Action) -> float:
        """Log-density of ``action`` under the expert's action distribution (a query)."""
        if self._log_prob_fn is None:
            raise TypeError("this expert has no log_prob(); use a criterion that needs only its action")
        _ = self.expert_action  # the expert looked at the state: count the query, cache its action
        return float(self._log_prob_fn(self.obs, action))


@dataclass(frozen=True)
class Decision:
    """A criterion's answer for one step: who acts on it.

    The answer is absolute, whoever holds control: ``expert_acts=True`` means the expert's
    action is executed on this step (a take-over when the novice held control, keeping control
    when the expert held it); False means the novice's action is executed. The wrapper derives
    the switches and hand-backs from the change.

    Attributes:
        expert_acts: the expert acts on this step.
        score: the number the decision was based on (a Q value, a gap, a probability), NaN if
            none; logged in ``info["gatekit"]["score"]``.
    """

    expert_acts: bool
    score: float = math.nan


@dataclass(frozen=True)
class Verdict:
    """Deprecated (use :class:`Decision`): the relative answer of gatekit 0.1.

    ``switch`` meant "hand control to the expert" from ``takeover`` and "hand it back to the
    novice" from ``handback``. A criterion that still returns it keeps working for this
    release (with a ``DeprecationWarning``): :meth:`to_decision` converts it.
    """

    switch: bool
    score: float = math.nan

    def to_decision(self, *, expert_in_control: bool) -> Decision:
        """The absolute :class:`Decision` this verdict meant, given who held control."""
        return Decision(expert_acts=(not self.switch) if expert_in_control else self.switch, score=self.score)


@dataclass(frozen=True)
class Transition:
    """One recorded step. ``expert_action`` is None when the expert was not queried.

    ``intervened`` is True when the expert's action was executed (an expert-involved step);
    such steps are the expert-labelled data and are written durably as they happen. ``env`` is
    the index of the env that made the step when a run steps several (``env.n_envs``).
    """

    step: int
    episode: int
    obs: np.ndarray
    novice_action: Action
    expert_action: Action | None
    executed_action: Action
    intervened: bool
    expert_queried: bool
    switched: bool
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    score: float = math.nan
    env: int = 0
