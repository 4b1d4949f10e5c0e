"""HG-DAgger (Kelly et al., ICRA 2019): the expert watches every step and takes over when it
disagrees with the novice.

A person's judgement is simulated by one of the existing human-gated criteria, chosen by
``rule``; this class only selects and delegates (it adds no rule of its own):

* ``likelihood`` -> :class:`~gatekit.criteria.simple.ExpertLikelihoodCriterion` (PVP's rule:
  take over when the expert's density of the novice's action is below ``threshold``, default
  ``1 - free_level = 0.05``; needs an expert with ``log_prob``);
* ``action-gap`` -> :class:`~gatekit.criteria.simple.ActionGapCriterion` (take over when the
  mean squared action gap exceeds ``threshold``, default 0.1; Discrete: on any difference).

The learner of HG-DAgger is behaviour cloning on the take-over data (``bc`` or ``mlp-bc``
with ``labels: intervened``).
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym

from gatekit.criteria.base import Criterion
from gatekit.criteria.simple import ActionGapCriterion, ExpertLikelihoodCriterion
from gatekit.types import Decision, GateContext

DEFAULT_THRESHOLDS = {"likelihood": 0.05, "action-gap": 0.1}


class HGDAggerCriterion(Criterion):
    """Human-gated take-over by ``rule`` (``likelihood`` or ``action-gap``).

    Args:
        rule: which simulated-human rule decides.
        threshold: the rule's threshold; None takes the rule's default (0.05 likelihood,
            0.1 mean squared gap).

    Example:
        >>> import numpy as np, gymnasium as gym
        >>> c = HGDAggerCriterion(rule="action-gap", threshold=0.1)
        >>> c.bind(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (2,)))
        >>> ctx = GateContext(obs=None, novice_action=np.array([0.0, 0.0]), expert_in_control=False,
        ...                   episode_step=0, expert_fn=lambda o: np.array([1.0, 0.0]))
        >>> c.decide(ctx)
        Decision(expert_acts=True, score=0.5)
    """

    name = "hg"
    human_gated = True

    def __init__(self, *, rule: Literal["likelihood", "action-gap"] = "likelihood", threshold: float | None = None) -> None:
        super().__init__()
        if rule not in DEFAULT_THRESHOLDS:
            raise ValueError(f"rule must be 'likelihood' or 'action-gap', got {rule!r}")
        self.rule = rule
        value = DEFAULT_THRESHOLDS[rule] if threshold is None else threshold
        self.inner: Criterion = (ExpertLikelihoodCriterion(threshold=value) if rule == "likelihood"
                                 else ActionGapCriterion(threshold=value))
        self.needs_log_prob = self.inner.needs_log_prob

    @property
    def threshold(self) -> float:
        return float(self.inner.threshold)  # type: ignore[attr-defined]

    def bind(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().bind(observation_space, action_space)
        self.inner.bind(observation_space, action_space)

    def reset(self, *, seed: int | None = None) -> None:
        super().reset(seed=seed)
        self.inner.reset(seed=seed)

    def takeover(self, ctx: GateContext) -> Decision:
        return self.inner.takeover(ctx)

    def handback(self, ctx: GateContext) -> Decision:
        return self.inner.handback(ctx)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "inner" in state:
            self.inner.load_state_dict(state["inner"])
