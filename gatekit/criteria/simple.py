"""Gates without learning: ``never``, ``always``, ``action-gap`` and ``expert-likelihood``."""

from __future__ import annotations

import math

import gymnasium as gym

from gatekit.criteria.base import Criterion
from gatekit.criteria.distances import mean_squared_gap
from gatekit.types import Decision, GateContext


class NeverCriterion(Criterion):
    """The novice always acts; the expert is never queried."""

    name = "never"

    def takeover(self, ctx: GateContext) -> Decision:
        return Decision(expert_acts=False)


class AlwaysCriterion(Criterion):
    """The expert always acts (data collection, warm-up, the expert's own evaluation)."""

    name = "always"

    def takeover(self, ctx: GateContext) -> Decision:
        return Decision(expert_acts=True)


class ActionGapCriterion(Criterion):
    """Human-gated (HG-DAgger style): the expert watches every step and takes over when the
    novice's action differs from its own.

    Continuous actions: take over when d(a_n, a_h) = mean over dimensions of the squared
    difference exceeds ``threshold``; hand back when it falls to ``threshold`` or below.
    Discrete actions: take over on any difference.

    Args:
        threshold: the largest tolerated gap (continuous actions only).

    Example:
        >>> import numpy as np, gymnasium as gym
        >>> from gatekit.types import GateContext
        >>> c = ActionGapCriterion(threshold=0.1)
        >>> c.bind(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (2,)))
        >>> ctx = GateContext(obs=None, novice_action=np.array([0.0, 0.0]), expert_in_control=False,
        ...                   episode_step=0, expert_fn=lambda o: np.array([1.0, 0.0]))
        >>> c.decide(ctx)
        Decision(expert_acts=True, score=0.5)
    """

    name = "action-gap"
    human_gated = True

    def __init__(self, *, threshold: float = 0.1) -> None:
        super().__init__()
        if not (threshold >= 0 and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
        self.threshold = float(threshold)

    def takeover(self, ctx: GateContext) -> Decision:
        gap = mean_squared_gap(ctx.novice_action, ctx.expert_action, self.action_space)
        if isinstance(self.action_space, gym.spaces.Discrete):
            return Decision(expert_acts=gap > 0, score=gap)
        return Decision(expert_acts=gap > self.threshold, score=gap)


class ExpertLikelihoodCriterion(Criterion):
    """Human-gated with PVP's rule: take over when the expert finds the novice's action
    unlikely, i.e. when the expert's density (Box) or probability (Discrete) of the novice's
    action is below ``threshold`` (PVP: ``1 - free_level`` with ``free_level = 0.95``).
    Hand back when it is at or above ``threshold``. Needs an expert with ``log_prob``.

    A density threshold is only as tolerant as the expert's std is wide: PVP's 0.05 was set for
    a simulated person with std ``(0.1365, 0.4583)``. MetaDrive's shipped expert is far surer of
    its steering, so its recipes score with the release's std (``metadrive-ppo``'s
    ``log_prob_std``); with the network's own std the person takes over on ~90% of steps.

    Args:
        threshold: the lowest tolerated likelihood of the novice's action.
    """

    name = "expert-likelihood"
    needs_log_prob = True
    human_gated = True

    def __init__(self, *, threshold: float = 0.05) -> None:
        super().__init__()
        if not (threshold > 0 and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number > 0, got {threshold}")
        self.threshold = float(threshold)
        self._log_threshold = math.log(self.threshold)

    def takeover(self, ctx: GateContext) -> Decision:
        logp = ctx.expert_log_prob(ctx.novice_action)
        return Decision(expert_acts=logp < self._log_threshold, score=logp)
