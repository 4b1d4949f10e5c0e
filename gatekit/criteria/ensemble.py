"""Ensemble-DAgger (Menda et al., IROS 2019): the novice acts only when it is close to the expert
and its ensemble is confident.

The expert is queried on every step (the rule compares with its action). With ``a_e`` the
ensemble's action and ``v`` its variance at the state, the novice acts when

    ||a_e - a_h|| <= tau   and   v <= chi,

otherwise the expert acts; control returns to the novice as soon as both hold again.

The ensemble. The gate owns an :class:`~gatekit.criteria.learned.ActorEnsemble`: ``members``
deterministic actors (:class:`gatekit.nets.Actor`) trained by behaviour cloning on bootstrap
resamples of the expert-labelled records, retrained (warm start) every ``update_every`` new
labels, on the gate's own schedule. Owning it keeps the gate independent of the learner, so every method of
a comparison can share one learner (the same novice, different gates). Variance is the mean
over action dimensions of the variance across members (population variance). Discrete
actions: the members' softmax probabilities play the role of actions, the ensemble's action
is the argmax of their mean, the distance is 0 (same action) or 1, and the variance is the
mean over actions of the variance of the probabilities (the members' disagreement).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

from gatekit.criteria.distances import euclidean
from gatekit.criteria.learned import ActorEnsemble, LearnedCriterion, labelled
from gatekit.types import Decision, GateContext, Labels
from gatekit.validate import layer_sizes, one_of, positive

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import NovicePredictor


class EnsembleCriterion(LearnedCriterion):
    """Ensemble-DAgger's gate: the novice acts only if ``||a_e - a_h|| <= tau`` and the ensemble
    variance is ``<= chi``. Until its first update the ensemble is untrained and the expert acts.

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
        update_every: retrain after this many new labels of kind ``labels`` (every step is
            labelled with ``queried``: 200 steps by default).

    Example:
        >>> c = EnsembleCriterion(tau=0.2, chi=0.01, members=2, hidden=[8])
        >>> c.bind(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Box(-1, 1, (1,)))
        >>> ctx = GateContext(obs=np.zeros(1, np.float32), novice_action=np.zeros(1), expert_in_control=False,
        ...                   episode_step=0, expert_fn=lambda o: np.zeros(1))
        >>> c.decide(ctx).expert_acts   # untrained: the expert acts
        True
    """

    name = "ensemble"
    human_gated = True

    def __init__(self, *, tau: float = 0.3, chi: float = 0.02, compare: Literal["ensemble", "novice"] = "ensemble",
                 members: int = 5, hidden: list[int] | None = None, lr: float = 1e-3, batch_size: int = 256,
                 steps_per_update: int = 200, first_steps: int | None = None,
                 labels: Labels = "queried", update_every: int = 200) -> None:
        super().__init__(update_every=update_every, labels=one_of("labels", labels, ("queried", "intervened")))
        if not (tau >= 0 and math.isfinite(tau)):
            raise ValueError(f"tau must be a finite number >= 0, got {tau}")
        if not (chi >= 0 and math.isfinite(chi)):
            raise ValueError(f"chi must be a finite number >= 0, got {chi}")
        positive("steps_per_update", steps_per_update)
        if first_steps is not None:
            positive("first_steps", first_steps)
        if members < 2:
            raise ValueError(f"members must be >= 2 (an ensemble needs two to disagree), got {members}")
        positive("lr", lr)
        positive("batch_size", batch_size)
        self.first_steps = None if first_steps is None else int(first_steps)
        self.tau, self.chi = float(tau), float(chi)
        self.compare = one_of("compare", compare, ("ensemble", "novice"))
        self.members = int(members)
        self.hidden = layer_sizes("hidden", hidden if hidden is not None else [256, 256])
        self.lr, self.batch_size = float(lr), int(batch_size)
        self.steps_per_update = int(steps_per_update)
        self.ensemble: ActorEnsemble | None = None

    def build(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.ensemble = ActorEnsemble(observation_space, action_space, members=self.members, hidden=self.hidden,
                                      lr=self.lr, batch_size=self.batch_size)

    def takeover(self, ctx: GateContext) -> Decision:
        assert self.ensemble is not None
        expert = ctx.expert_action  # Ensemble-DAgger compares with the expert on every step
        action, var = self.ensemble.predict(np.asarray(ctx.obs)[None])
        ours = action[0] if self.compare == "ensemble" else ctx.novice_action
        dist = euclidean(ours, expert, self.action_space)
        return Decision(expert_acts=bool(dist > self.tau or float(var[0]) > self.chi), score=dist)

    def fit(self, store: RecordStore, novice: NovicePredictor | None) -> dict[str, float]:
        assert self.ensemble is not None
        obs, acts = labelled(store, self.labels)
        if len(obs) == 0:
            return {}
        steps = self.first_steps if not self.ready and self.first_steps is not None else self.steps_per_update
        loss = self.ensemble.fit(obs, acts, steps=steps, rng=self.np_random)
        self.ready = True
        return {"ensemble_loss": loss, "labels": float(len(obs))}

    def _net_state(self) -> dict[str, Any]:
        assert self.ensemble is not None
        return {"ensemble": self.ensemble.state_dict()}

    def _load_net_state(self, state: dict[str, Any]) -> None:
        assert self.ensemble is not None
        self.ensemble.load_state_dict(state["ensemble"])
