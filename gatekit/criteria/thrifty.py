"""Thrifty-DAgger (Hoque et al., CoRL 2021): take over on novel or risky states, robot-gated.

The gate owns two learned parts, both trained at each of its updates (every ``update_every``
new expert labels, on its own schedule, whatever the learner):

* **Novelty**: an :class:`~gatekit.criteria.learned.ActorEnsemble` of ``members`` BC actors
  on bootstrap resamples of the expert-labelled (intervened) records. Novelty of a state is
  the mean over action dimensions of the members' variance there. Discrete actions: the
  variance of the members' action probabilities, averaged over actions (their disagreement).
* **Risk**: ``Q_risk(s, a)``, the probability of task success from ``s`` after ``a``, a
  :class:`gatekit.nets.QNet` with a sigmoid output trained by TD on *all* records
  (expert and novice steps): target ``success`` on an episode's last step, else
  ``gamma * Q_target(s', a')`` with ``a'`` the ensemble's action at ``s'`` (the robot
  policy of Thrifty-DAgger is its ensemble) and a Polyak-averaged target network.

Success from the records. Records hold ``reward``, ``terminated`` and ``truncated`` but not the
env's ``info``, so success is read from the reward: an episode ends in success when its last
step is ``terminated`` with ``reward > success_reward_above`` (MetaDrive: ``arrive_dest`` pays
``success_reward`` = 10, every other step much less, so ``success_reward_above: 5``; MiniGrid:
reaching the goal is the only positive reward, so ``0``), or, with ``success_on_truncation``,
when it is truncated (tasks whose success is survival, such as CartPole).

Decision rule (novice in control, ``a_n`` its action):

    take over  if  novelty(s) > novelty_threshold  or  Q_risk(s, a_n) < risk_threshold

and, expert in control,

    hand back  if  ||a_n - a_h||^2 < gap_threshold  and  Q_risk(s, a_n) > q_median

(Discrete: ``a_n == a_h`` instead of the squared gap). ``gap_threshold`` is the mean squared
discrepancy between the novice and the expert on the training data, re-computed at each update.

Thresholds. At the first update the ensemble trains on the first 90% (by index) of the labelled
records and the held-out 10% set ``novelty_threshold`` (its ``1 - alpha`` quantile),
``risk_threshold`` (the ``alpha`` quantile of ``Q_risk(s, a_n)``) and ``q_median``. Every
decision taken while the novice holds control keeps its (novelty, risk) estimate; at each
episode end, with more than ``min_estimates`` of them, the thresholds are re-estimated from
them, so about a fraction ``alpha`` of the novice's steps trigger each test (alpha is the target
switch rate). Each update clears the estimates (the networks changed). Before the first update
nothing is trained and the expert holds control (a natural warm-up).

Schedule. By default the gate retrains, warm-started, every ``update_every`` new expert labels
(AIM's K, so that the comparison's gates share one schedule). Thrifty-DAgger's release works in
*iterations* instead: it collects a fixed number of env steps (``obs_per_iter``, 2000) with its
networks fixed, re-estimating the thresholds at each episode end from that iteration's
estimates, then retrains its networks from scratch. ``iteration_steps: N`` is that schedule:
the gate retrains every N env steps (after the warm-up's first fit), so the thresholds in force
always come from the networks in force; ``fresh: true`` re-initialises the ensemble and
``Q_risk`` before each retraining, as the release does. The release also fills a tenth of each
``Q_risk`` batch with successful last steps ("for better reward propagation":
``q_success_fraction: 0.1``), since a success is one step of a whole episode.

``rescore: true`` (not in Thrifty-DAgger) keeps the states of the last ``max_rescore`` novice
decisions instead, and at each update re-scores them with the new networks and re-sets the
thresholds at once. With the paper's rule, an update during a long intervention leaves
thresholds estimated with the old ``Q_risk`` in force; if the new ``Q_risk`` scores every state
below the old median, the expert never hands back until the episode ends (seen on MetaDrive,
where updates come every 25 expert steps and episodes last up to 1500 steps).
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from gatekit.criteria.distances import squared_gap, squared_gaps
from gatekit.criteria.learned import (
    ActorEnsemble,
    LearnedCriterion,
    RecentEstimates,
    holdout_split,
    labelled,
)
from gatekit.nets import QNet, numpy_qnet, seeded_init, soft_update
from gatekit.policies import novice_actions
from gatekit.schedules import EveryNSteps
from gatekit.types import Decision, GateContext
from gatekit.validate import in_range, layer_sizes, positive

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import NovicePredictor


class ThriftyCriterion(LearnedCriterion):
    """Thrifty-DAgger's gate: ensemble novelty plus a task-success critic.

    Args:
        alpha: the target switch rate (quantile level of both take-over tests).
        members: ensemble size.
        hidden: hidden layers of the ensemble's actors (default ``[256, 256]``).
        lr: Adam learning rate of the actors.
        batch_size: minibatch size of the actors.
        steps_per_update: gradient steps per actor at each update.
        first_steps: gradient steps per actor and of ``Q_risk`` at the first update (the end of
            the expert's warm-up); None: as later updates.
        q_hidden: hidden layers of ``Q_risk`` (default ``[256, 256]``).
        q_lr: Adam learning rate of ``Q_risk``.
        q_batch_size: minibatch size of ``Q_risk``.
        q_steps_per_update: gradient steps of ``Q_risk`` at each update.
        gamma: discount of ``Q_risk`` (Thrifty-DAgger: 0.9999).
        polyak: target-network averaging factor (the target keeps this fraction each step).
        success_reward_above: a terminated last step with a larger reward is a success.
        success_on_truncation: a truncated episode is a success (survival tasks).
        min_estimates: thresholds are re-estimated at an episode end only with more estimates.
        holdout: fraction of the first update's labelled records held out to set thresholds.
        rescore: re-score recent novice states at each update instead of clearing the estimates.
        max_rescore: how many recent novice states ``rescore`` keeps.
        update_every: new expert-labelled (intervened) steps between updates (default 25);
            not with ``iteration_steps``.
        iteration_steps: retrain every this many env steps instead (the release: 2000).
        fresh: re-initialise the ensemble and ``Q_risk`` before each retraining (the release).
        q_success_fraction: the fraction of each ``Q_risk`` batch drawn from successful last
            steps, while there are any (the release: 0.1; 0 draws uniformly).

    Example:
        >>> c = ThriftyCriterion(alpha=0.1, members=2, hidden=[8], q_hidden=[8])
        >>> c.bind(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Box(-1, 1, (1,)))
        >>> c.novelty_threshold, c.risk_threshold = 0.5, 0.2
        >>> c.rule_takeover(novelty=0.6, q=0.9), c.rule_takeover(novelty=0.1, q=0.1), c.rule_takeover(novelty=0.1, q=0.9)
        (True, True, False)
    """

    name = "thrifty"

    def __init__(self, *, alpha: float = 0.05, members: int = 5, hidden: list[int] | None = None, lr: float = 1e-3,
                 batch_size: int = 256, steps_per_update: int = 200, first_steps: int | None = None,
                 q_hidden: list[int] | None = None, q_lr: float = 1e-3, q_batch_size: int = 256,
                 q_steps_per_update: int = 200, gamma: float = 0.9999, polyak: float = 0.995,
                 success_reward_above: float = 0.0, success_on_truncation: bool = False,
                 min_estimates: int = 25, holdout: float = 0.1, rescore: bool = False,
                 max_rescore: int = 5000, update_every: int | None = None, iteration_steps: int | None = None,
                 fresh: bool = False, q_success_fraction: float = 0.0) -> None:
        if update_every is not None and iteration_steps is not None:
            raise ValueError("set update_every (retrain every K labels) or iteration_steps (every N env steps), "
                             "not both")
        super().__init__(update_every=25 if update_every is None else update_every, labels="intervened")
        if iteration_steps is not None:
            self.schedule = EveryNSteps(n=iteration_steps)
        if not isinstance(fresh, bool):
            raise ValueError(f"fresh must be true or false, got {fresh!r}")
        in_range("q_success_fraction", q_success_fraction, 0.0, 1.0, high_open=True)
        self.fresh = fresh
        self.q_success_fraction = float(q_success_fraction)
        in_range("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
        if members < 2:
            raise ValueError(f"members must be >= 2 (an ensemble needs two to disagree), got {members}")
        if first_steps is not None:
            positive("first_steps", first_steps)
        for name, v in (("steps_per_update", steps_per_update), ("q_steps_per_update", q_steps_per_update),
                        ("batch_size", batch_size), ("q_batch_size", q_batch_size), ("lr", lr), ("q_lr", q_lr),
                        ("min_estimates", min_estimates), ("max_rescore", max_rescore)):
            positive(name, v)
        in_range("gamma", gamma, 0.0, 1.0)
        in_range("polyak", polyak, 0.0, 1.0, high_open=True)
        in_range("holdout", holdout, 0.0, 1.0, low_open=True, high_open=True)
        self.alpha = float(alpha)
        self.members = int(members)
        self.hidden = layer_sizes("hidden", hidden if hidden is not None else [256, 256])
        self.q_hidden = layer_sizes("q_hidden", q_hidden if q_hidden is not None else [256, 256])
        self.lr, self.q_lr = float(lr), float(q_lr)
        self.batch_size, self.q_batch_size = int(batch_size), int(q_batch_size)
        self.steps_per_update, self.q_steps_per_update = int(steps_per_update), int(q_steps_per_update)
        self.first_steps = None if first_steps is None else int(first_steps)
        self.gamma, self.polyak = float(gamma), float(polyak)
        self.success_reward_above = float(success_reward_above)
        self.success_on_truncation = bool(success_on_truncation)
        self.holdout = float(holdout)
        self.rescore = bool(rescore)
        self.estimates = RecentEstimates(("novelty", "risk"), min_estimates=min_estimates, keep_inputs=self.rescore,
                                         max_inputs=int(max_rescore))
        self.ensemble: ActorEnsemble | None = None
        self.q: QNet | None = None
        self.q_target: QNet | None = None
        self.q_optimizer: torch.optim.Optimizer | None = None
        self.novelty_threshold = math.inf
        self.risk_threshold = -math.inf
        self.q_median = 0.5
        self.gap_threshold = 0.0
        self._fast_q: Any = None  # a numpy copy of Q_risk, rebuilt after each fit

    # -- wiring ---------------------------------------------------------------------------
    def build(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.ensemble = ActorEnsemble(observation_space, action_space, members=self.members, hidden=self.hidden,
                                      lr=self.lr, batch_size=self.batch_size)
        self.q = QNet(observation_space, action_space, self.q_hidden)
        self.q_target = copy.deepcopy(self.q)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=self.q_lr)

    # -- estimates ------------------------------------------------------------------------
    @torch.no_grad()
    def success_prob(self, obs: np.ndarray, actions: Any) -> np.ndarray:
        """``Q_risk(s, a)`` for a batch."""
        self._require_built("success_prob()")
        assert self.q is not None
        o = torch.as_tensor(np.asarray(obs))
        a = torch.as_tensor(np.asarray(actions))
        return torch.sigmoid(self.q(o, a)).cpu().numpy()

    def estimate(self, obs: Any, action: Any) -> tuple[float, float]:
        """(novelty, Q_risk) of one state and action (through numpy copies of the networks
        where they apply: one decision per step is mostly torch overhead)."""
        self._require_built("estimate()")
        assert self.ensemble is not None and self.q is not None
        o = np.asarray(obs)[None]
        _, var = self.ensemble.predict(o)
        if self._fast_q is None:
            self._fast_q = numpy_qnet(self.q) or False
        if self._fast_q:
            q = 1.0 / (1.0 + np.exp(-self._fast_q(o, np.asarray(action)[None])))
        else:
            q = self.success_prob(o, np.asarray(action)[None])
        return float(var[0]), float(q[0])

    # -- the decision ---------------------------------------------------------------------
    def rule_takeover(self, *, novelty: float, q: float) -> bool:
        """The take-over test on given estimates."""
        return novelty > self.novelty_threshold or q < self.risk_threshold

    def rule_handback(self, *, gap: float, q: float) -> bool:
        """The hand-back test on a given squared gap and ``Q_risk``."""
        if isinstance(self.action_space, gym.spaces.Discrete):
            close = gap == 0.0
        else:
            close = gap < self.gap_threshold
        return close and q > self.q_median

    def takeover(self, ctx: GateContext) -> Decision:
        novelty, q = self.estimate(ctx.obs, ctx.novice_action)
        self.estimates.add(ctx.obs, np.array(ctx.novice_action), novelty=novelty, risk=q)
        return Decision(expert_acts=self.rule_takeover(novelty=novelty, q=q), score=novelty)

    def handback(self, ctx: GateContext) -> Decision:
        gap = squared_gap(ctx.novice_action, ctx.expert_action, self.action_space)
        _, q = self.estimate(ctx.obs, ctx.novice_action)
        return Decision(expert_acts=not self.rule_handback(gap=gap, q=q), score=gap)

    def end_episode(self) -> None:
        if self.estimates.enough:
            self.set_thresholds(self.estimates.values("novelty"), self.estimates.values("risk"))

    def set_thresholds(self, novelty: np.ndarray, q: np.ndarray) -> None:
        """Novelty threshold = ``1 - alpha`` quantile, risk threshold = ``alpha`` quantile,
        ``q_median`` = median of the given estimates."""
        self.novelty_threshold = float(np.quantile(novelty, 1.0 - self.alpha))
        self.risk_threshold = float(np.quantile(q, self.alpha))
        self.q_median = float(np.median(q))

    # -- learning -------------------------------------------------------------------------
    def fit(self, store: RecordStore, novice: NovicePredictor | None) -> dict[str, float]:
        assert self.ensemble is not None and self.action_space is not None
        obs, acts = labelled(store, "intervened")
        n = len(obs)
        if n == 0:
            return {}
        first = not self.ready
        if self.fresh and not first:
            self._rebuild()
        n_train = holdout_split(n, self.holdout) if first else n
        steps = self.first_steps if first and self.first_steps is not None else self.steps_per_update
        q_steps = self.first_steps if first and self.first_steps is not None else self.q_steps_per_update
        ens_loss = self.ensemble.fit(obs[:n_train], acts[:n_train], steps=steps, rng=self.np_random)
        q_loss = self._fit_q(store, q_steps)
        train_novice = self._novice_or_ensemble(novice, obs[:n_train])
        self.gap_threshold = float(np.mean(squared_gaps(train_novice, acts[:n_train], self.action_space)))
        if first:
            held = obs[n_train:] if n_train < n else obs
            _, novelty = self.ensemble.predict(held)
            q = self.success_prob(held, self._novice_or_ensemble(novice, held))
            self.set_thresholds(novelty, q)
            self.ready = True
        self.estimates.clear(inputs=False)  # the networks changed: old values are not comparable
        if self.rescore and self.estimates.has_inputs():
            recent_obs, recent_act = self.estimates.inputs()
            _, novelty_now = self.ensemble.predict(recent_obs)
            q_now = self.success_prob(recent_obs, np.stack(recent_act))
            self.estimates.set_values(novelty=novelty_now, risk=q_now)
            if self.estimates.enough:
                self.set_thresholds(novelty_now, q_now)
        return {"ensemble_loss": ens_loss, "q_risk_loss": q_loss, "novelty_threshold": self.novelty_threshold,
                "risk_threshold": self.risk_threshold, "gap_threshold": self.gap_threshold}

    def _rebuild(self) -> None:
        """New networks and optimisers (initial weights from the gate's own generator)."""
        assert self.observation_space is not None and self.action_space is not None
        seeded_init(int(self.np_random.integers(2**31 - 1)), lambda: self.build(self.observation_space, self.action_space))
        self._fast_q = None

    def _novice_or_ensemble(self, novice: Any, obs: np.ndarray) -> np.ndarray:
        if novice is not None:
            return novice_actions(novice, obs)
        assert self.ensemble is not None
        out, _ = self.ensemble.predict(obs)
        return out

    def _fit_q(self, store: RecordStore, steps: int) -> float:
        """TD on every record: success on an episode's last step, else gamma * Q_target(s', a')."""
        assert self.q is not None and self.q_target is not None and self.q_optimizer is not None
        assert self.ensemble is not None
        n = len(store)
        if n == 0:
            return math.nan
        obs = torch.as_tensor(np.array(store.column("obs")))  # copies: store columns are read-only views
        nxt = torch.as_tensor(np.array(store.column("next_obs")))
        act = torch.as_tensor(np.array(store.column("executed_action")))
        reward = np.asarray(store.column("reward"), dtype=np.float64)
        term = np.asarray(store.column("terminated"), dtype=bool)
        trunc = np.asarray(store.column("truncated"), dtype=bool)
        success = (term & (reward > self.success_reward_above)) | (trunc & self.success_on_truncation)
        done_t = torch.as_tensor(term | trunc, dtype=torch.float32)
        success_t = torch.as_tensor(success, dtype=torch.float32)
        loss_v = math.nan
        wins, others = np.flatnonzero(success), np.flatnonzero(~success)
        n_wins = min(len(wins), int(self.q_batch_size * self.q_success_fraction)) if len(others) else 0
        for _ in range(steps):
            if n_wins:  # the release: a fixed share of successes in every batch
                rows = np.concatenate([self.np_random.choice(wins, size=n_wins, replace=False),
                                       others[self.np_random.integers(0, len(others), size=self.q_batch_size - n_wins)]])
                idx = torch.as_tensor(rows)
            else:
                idx = torch.as_tensor(self.np_random.integers(0, n, size=min(self.q_batch_size, n)))
            with torch.no_grad():
                out = self.ensemble.outputs(nxt[idx]).mean(0)
                a_next = out.argmax(-1) if self.ensemble.discrete else out
                boot = torch.sigmoid(self.q_target(nxt[idx], a_next))
                target = done_t[idx] * success_t[idx] + (1.0 - done_t[idx]) * self.gamma * boot
            pred = torch.sigmoid(self.q(obs[idx], act[idx]))
            loss = torch.nn.functional.mse_loss(pred, target)
            self.q_optimizer.zero_grad()
            loss.backward()
            self.q_optimizer.step()
            soft_update(self.q, self.q_target, 1.0 - self.polyak)
            loss_v = float(loss.detach())
        self._fast_q = None
        return loss_v

    # -- checkpoints ----------------------------------------------------------------------
    def _net_state(self) -> dict[str, Any]:
        assert self.ensemble is not None and self.q is not None and self.q_target is not None
        assert self.q_optimizer is not None
        return {"novelty_threshold": self.novelty_threshold, "risk_threshold": self.risk_threshold,
                "q_median": self.q_median, "gap_threshold": self.gap_threshold,
                "ensemble": self.ensemble.state_dict(), "q": self.q.state_dict(),
                "q_target": self.q_target.state_dict(), "q_optimizer": self.q_optimizer.state_dict(),
                **self.estimates.state_dict()}

    def _load_net_state(self, state: dict[str, Any]) -> None:
        assert self.ensemble is not None and self.q is not None and self.q_target is not None
        assert self.q_optimizer is not None
        self.novelty_threshold = float(state["novelty_threshold"])
        self.risk_threshold = float(state["risk_threshold"])
        self.q_median = float(state["q_median"])
        self.gap_threshold = float(state["gap_threshold"])
        self.ensemble.load_state_dict(state["ensemble"])
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        self._fast_q = None
        self.estimates.load_state_dict(state, discrete=isinstance(self.action_space, gym.spaces.Discrete))
