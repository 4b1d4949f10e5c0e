"""SafeDAgger (Zhang & Cho, AAAI 2017) and its LazyDAgger hysteresis (Hoque et al., CASE 2021):
a classifier predicts, from the state alone, whether the novice is far from the expert.

The gate owns a *safety classifier* ``p(s)`` = probability that ``d(pi_n(s), a_h) > gap_threshold``
(``d`` = :func:`~gatekit.criteria.distances.mean_squared_gap`: mean squared difference, or 0/1 for
Discrete actions). It is a two-logit :class:`gatekit.nets.Actor` trained by cross-entropy at each of the gate's updates (every
``update_every`` new labels, on its own schedule) on the expert-labelled records, each labelled with the
*current* novice's gap there (the novice changes between updates, so old labels go stale).

Decision rule: take over when ``p(s) > prob_threshold`` (the expert is not queried to decide:
robot-gated). Hand back when ``p(s) <= prob_threshold`` (SafeDAgger) or, with ``lazy``, when the
actual gap, known while the expert acts, falls to ``handback_threshold`` or below (LazyDAgger's
hysteresis, ``handback_threshold < gap_threshold``), which makes interventions longer and fewer.
Until its first update the classifier is untrained and the expert holds control.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from gatekit.criteria.distances import mean_squared_gap, mean_squared_gaps
from gatekit.criteria.learned import LearnedCriterion, labelled
from gatekit.nets import Actor, bc_step
from gatekit.policies import novice_actions
from gatekit.types import Decision, GateContext, Labels
from gatekit.validate import in_range, layer_sizes, one_of, positive

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import NovicePredictor


class SafeDAggerCriterion(LearnedCriterion):
    """A learned classifier of "the novice is far from the expert here".

    Args:
        gap_threshold: a gap above this is "unsafe" (the classifier's positive class).
        prob_threshold: take over when the predicted probability of "unsafe" exceeds this.
        lazy: LazyDAgger's hand-back on the actual gap instead of the classifier.
        handback_threshold: LazyDAgger's hand-back gap (None: ``gap_threshold / 2``).
        hidden: hidden layers of the classifier (default ``[256, 256]``).
        lr: Adam learning rate.
        batch_size: minibatch size.
        steps_per_update: gradient steps at each update.
        labels: which records train the classifier: ``intervened`` or ``queried``.
        update_every: retrain after this many new labels of kind ``labels``.

    Example:
        >>> c = SafeDAggerCriterion(gap_threshold=0.1, lazy=True, handback_threshold=0.01, hidden=[8])
        >>> c.bind(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Box(-1, 1, (1,)))
        >>> c.ready = True
        >>> ctx = GateContext(obs=np.zeros(1, np.float32), novice_action=np.array([0.05]), expert_in_control=True,
        ...                   episode_step=3, expert_fn=lambda o: np.zeros(1))
        >>> c.decide(ctx).expert_acts   # gap 0.0025 <= 0.01: hand back
        False
    """

    name = "safedagger"

    def __init__(self, *, gap_threshold: float = 0.05, prob_threshold: float = 0.5, lazy: bool = False,
                 handback_threshold: float | None = None, hidden: list[int] | None = None, lr: float = 1e-3,
                 batch_size: int = 256, steps_per_update: int = 200, labels: Labels = "intervened",
                 update_every: int = 25) -> None:
        super().__init__(update_every=update_every, labels=one_of("labels", labels, ("intervened", "queried")))
        if not (gap_threshold >= 0 and math.isfinite(gap_threshold)):
            raise ValueError(f"gap_threshold must be a finite number >= 0, got {gap_threshold}")
        in_range("prob_threshold", prob_threshold, 0.0, 1.0, low_open=True, high_open=True)
        hb = gap_threshold / 2 if handback_threshold is None else handback_threshold
        if not (0 <= hb <= gap_threshold):
            raise ValueError(f"handback_threshold must be in [0, gap_threshold], got {handback_threshold}")
        for name, v in (("steps_per_update", steps_per_update), ("batch_size", batch_size), ("lr", lr)):
            positive(name, v)
        self.gap_threshold = float(gap_threshold)
        self.prob_threshold = float(prob_threshold)
        self.lazy = bool(lazy)
        self.handback_threshold = float(hb)
        self.hidden = layer_sizes("hidden", hidden if hidden is not None else [256, 256])
        self.lr, self.batch_size, self.steps_per_update = float(lr), int(batch_size), int(steps_per_update)
        self.classifier: Actor | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def build(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.classifier = Actor(observation_space, gym.spaces.Discrete(2), self.hidden)
        self.optimizer = torch.optim.Adam(self.classifier.parameters(), lr=self.lr)

    @torch.no_grad()
    def unsafe_prob(self, obs: np.ndarray) -> np.ndarray:
        """Predicted probability that the novice is far from the expert, for a batch."""
        self._require_built("unsafe_prob()")
        assert self.classifier is not None
        return torch.softmax(self.classifier(torch.as_tensor(np.asarray(obs))), -1)[:, 1].cpu().numpy()

    def takeover(self, ctx: GateContext) -> Decision:
        p = float(self.unsafe_prob(np.asarray(ctx.obs)[None])[0])
        return Decision(expert_acts=p > self.prob_threshold, score=p)

    def handback(self, ctx: GateContext) -> Decision:
        if self.lazy:
            gap = mean_squared_gap(ctx.novice_action, ctx.expert_action, self.action_space)
            return Decision(expert_acts=gap > self.handback_threshold, score=gap)
        return self.takeover(ctx)

    def fit(self, store: RecordStore, novice: NovicePredictor | None) -> dict[str, float]:
        assert self.classifier is not None and self.optimizer is not None and self.action_space is not None
        obs, acts = labelled(store, self.labels)
        n = len(obs)
        if n == 0 or novice is None:
            return {}
        y = (mean_squared_gaps(novice_actions(novice, obs), acts, self.action_space) > self.gap_threshold).astype(np.int64)
        obs_t, y_t = torch.as_tensor(obs), torch.as_tensor(y)
        loss = math.nan
        for _ in range(self.steps_per_update):
            idx = torch.as_tensor(self.np_random.integers(0, n, size=min(self.batch_size, n)))
            loss = bc_step(self.classifier, self.optimizer, obs_t[idx], y_t[idx])
        self.ready = True
        return {"classifier_loss": loss, "unsafe_fraction": float(y.mean())}

    def _net_state(self) -> dict[str, Any]:
        assert self.classifier is not None and self.optimizer is not None
        return {"classifier": self.classifier.state_dict(), "optimizer": self.optimizer.state_dict()}

    def _load_net_state(self, state: dict[str, Any]) -> None:
        assert self.classifier is not None and self.optimizer is not None
        self.classifier.load_state_dict(state["classifier"])
        self.optimizer.load_state_dict(state["optimizer"])
