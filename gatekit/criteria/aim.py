"""AIM: the Adaptive Intervention Mechanism (Cai, Peng, Zhou, ICML 2025), a robot-gated gate.

A proxy intervention value ``Q(s, a)`` learns where the expert would step in: high means "the
expert would take over here". On expert-labelled states ``(s, a_h)``, with ``a_n = pi_n(s)``
recomputed from the *current* novice at every update::

    J_AIM = E[(Q(s, a_h) + 1)^2] + E[1{d(a_n, a_h) > eps} (Q(s, a_n) - 1)^2]

with ``d`` the mean squared difference over action dimensions (Box) or ``a_n != a_h``
(Discrete). With ``td: true`` (the paper; the public release has it off) a reward-free TD term
``E[(Q(s, a) - gamma Q_target(s', a'))^2]`` over every executed transition is added, with a
soft-updated target network and no bootstrap from terminal states. The paper does not say which
``a'``: here it is the current novice's action at ``s'`` (its argmax for Discrete actions), so
the TD term estimates whether the expert will have to step in along the novice's own future
(``td_next: novice``). ``td_next: max`` (Discrete only) bootstraps from ``max_a' Q_target(s',
a')`` instead, as a DQN would; for an *intervention* value that is the worst action's value and
pulls every state towards "the expert would step in".

Thresholds. At the first update (the end of the expert's warm-up) the warm-up's expert data is
split 90/10 by index: Q trains on the 90%, ``eps`` = mean ``d(pi_n(s), a_h)`` over it, and
``beta`` = the ``(1 - delta)`` quantile of ``Q(s, pi_n(s))`` over the held-out 10%. Later,
``Q(s, a_n)`` of each step the novice held when asked is kept; at each episode end with more than
``min_estimates`` of them, ``beta`` becomes their ``(1 - delta)`` quantile, so about a
fraction ``delta`` of novice steps switch to the expert. Two ways to keep them (``beta_update``):

* ``paper``: the Q values are kept and the list is cleared at each update (the values of an
  older Q are not comparable). When the gate switches on most novice steps, labels arrive every
  other step, an update (every K = 25 labels) comes before 25 estimates have gathered, and beta
  is never re-estimated again: the gate locks into switching on every novice step.
* ``rescore``: the novice's (s, a_n) are kept instead, across updates, and scored with the
  *current* Q when beta is re-estimated; the list is cleared after each re-estimation. Same
  intent (beta from the current Q), no lock.

Gate. Novice in control: take over when ``Q(s, a_n) > beta`` (score: Q). Expert in control:
hand back at the first step where ``d(a_n, a_h) <= eps`` (Discrete: ``a_n == a_h``; score: d).
Before the first update there are no thresholds: the expert keeps control (so a run without a
warm-up collects its first K labels from the expert). The gate retrains every K =
``update_every`` new expert labels (25 in the release), on its own schedule: it keeps learning
whatever learner trains the novice, and it re-scores the novice with that learner's
deterministic ``predict_batch``.

Revisit check (``revisits: n``; not in the paper, off by default). The gate also takes over when
the novice, in control, faces an observation this episode has already shown ``n`` times. The
proxy Q alone cannot flag a novice that stalls or loops (pushing into a wall, turning in place):
Q is anchored only on expert-labelled states, a state the gate never flags never gets a label,
and the TD term has nothing to propagate around a self-loop (``Q(s, a) = gamma Q(s, a)``); and
since beta is the ``1 - delta`` quantile of the novice's own recent Q values, a stall that fills
most of an episode can be flagged on at most a fraction ``delta`` of its steps. An exact repeat
of the observation (with a frame stack: of all its frames) is the robot's own evidence that it
makes no progress, and it needs no expert to see it. Observations are compared by their bytes,
so the check fits envs whose observations repeat exactly (grid worlds); with continuous ones it
rarely fires. Its take-overs keep Q as their score, so beta's estimates are unchanged. The
memory is cleared at each episode start and end; behind the vectorised wrapper the envs share
one memory.

Example:
    >>> import gymnasium as gym
    >>> c = AIMCriterion(delta=0.1, hidden=[32])
    >>> c.bind(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)))
    >>> c.ready, c.beta
    (False, inf)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np
import torch

from gatekit.criteria.distances import mean_squared_gap, mean_squared_gaps
from gatekit.criteria.learned import LearnedCriterion, RecentEstimates, check_common, holdout_split
from gatekit.nets import QNet, as_action_tensor, as_obs_tensor, numpy_qnet, soft_update
from gatekit.policies import novice_actions
from gatekit.types import Decision, GateContext, Transition
from gatekit.validate import in_range, layer_sizes, one_of, positive

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import NovicePredictor


class AIMCriterion(LearnedCriterion):
    """AIM's learned, robot-gated intervention criterion.

    Args:
        delta: the intended switch-to-expert rate: ``beta`` is the ``1 - delta`` quantile of
            the novice's recent Q estimates (MetaDrive 0.05, MiniGrid 0.1).
        lr: Adam learning rate of the proxy Q.
        batch_size: minibatch size of each loss term (capped at the data available).
        gamma: discount of the reward-free TD term.
        hidden: hidden layers of the proxy Q (Box: MLP on concat(obs features, action);
            Discrete: one output per action over the features, a CNN for image observations).
        td: add the reward-free TD term (the paper); False is the public release.
        tau: soft-update factor of the TD target network (per gradient step).
        steps_per_update: gradient steps at each later update (every K expert labels).
        first_steps: gradient steps of the first fit (the end of the warm-up).
        min_estimates: beta is re-estimated at an episode end only with more estimates than this.
        holdout: fraction of the warm-up's expert data held out (by index, the last part) to
            set beta at the first update.
        beta_update: ``paper`` (Q estimates, cleared at each update) or ``rescore`` (the
            novice's states and actions, scored by the current Q at each re-estimation); see
            the module docstring.
        td_next: the TD term's next action: ``novice`` (``pi_n(s')``) or ``max`` (Discrete
            only: ``max_a' Q_target(s', a')``); see the module docstring.
        update_every: K, new expert-labelled (intervened) steps between updates.
        revisits: also take over when the novice faces an observation seen ``revisits`` times
            before in this episode (not in the paper); None (the default) is the paper's rule.
            See the module docstring.
    """

    name = "aim"

    def __init__(self, *, delta: float = 0.05, lr: float = 1e-4, batch_size: int = 1024, gamma: float = 0.99,
                 hidden: list[int] | None = None, td: bool = True, tau: float = 0.005,
                 steps_per_update: int = 50, first_steps: int = 500, min_estimates: int = 25,
                 holdout: float = 0.1, beta_update: Literal["paper", "rescore"] = "paper",
                 td_next: Literal["novice", "max"] = "novice", update_every: int = 25,
                 revisits: int | None = None) -> None:
        super().__init__(update_every=update_every, labels="intervened")
        in_range("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
        check_common(lr=lr, batch_size=batch_size, holdout=holdout)
        in_range("gamma", gamma, 0.0, 1.0, high_open=True)
        in_range("tau", tau, 0.0, 1.0, low_open=True)
        for name, value in (("steps_per_update", steps_per_update), ("first_steps", first_steps),
                            ("min_estimates", min_estimates)):
            positive(name, value, allow_zero=True)
        if revisits is not None and (isinstance(revisits, bool) or not isinstance(revisits, int) or revisits < 1):
            raise ValueError(f"revisits must be an integer >= 1, or null for the paper's rule, got {revisits!r}")
        self.delta = float(delta)
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.gamma = float(gamma)
        self.hidden = layer_sizes("hidden", [400, 300] if hidden is None else hidden)
        self.td = bool(td)
        self.td_next = one_of("td_next", td_next, ("novice", "max"))
        self.tau = float(tau)
        self.steps_per_update = int(steps_per_update)
        self.first_steps = int(first_steps)
        self.holdout = float(holdout)
        self.beta_update = one_of("beta_update", beta_update, ("paper", "rescore"))
        self.revisits = revisits
        self._visits: dict[bytes, int] = {}  # this episode's observations (the revisit check)
        self.revisit_takeovers = 0  # take-overs the revisit check added to Q's
        self.eps = math.nan
        self.beta = math.inf
        # rescore keeps the novice's (s, a_n) to score them with the current Q at each re-estimation
        self.estimates = RecentEstimates(("q",), min_estimates=min_estimates, keep_inputs=beta_update == "rescore")
        self.q: QNet | None = None
        self.q_target: QNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._fast_q: Any = None  # a numpy copy of Q for single decisions, rebuilt after each fit

    # -- wiring ---------------------------------------------------------------------------
    def build(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        if not isinstance(action_space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise ValueError(f"action_space must be Box or Discrete for AIM, got {action_space}")
        if not isinstance(observation_space, gym.spaces.Box):
            raise ValueError(f"observation_space must be a Box for AIM, got {observation_space}")
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.td_next == "max" and not self.discrete:
            raise ValueError("td_next 'max' needs a Discrete action space; use td_next: novice")
        self.q = QNet(observation_space, action_space, self.hidden)
        self.q.eval()
        self.q_target = copy.deepcopy(self.q)
        self.q_target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=self.lr)

    def _action_tensor(self, actions: Any) -> torch.Tensor:
        assert self.action_space is not None
        return as_action_tensor(actions, self.action_space)

    @torch.no_grad()
    def q_values(self, obs: Any, actions: Any) -> np.ndarray:
        """Q of a batch of (observation, action) pairs, as float64."""
        if self.q is None:
            raise RuntimeError("AIMCriterion.bind() must be called before use (the wrapper does it)")
        return self.q(as_obs_tensor(obs), self._action_tensor(actions)).double().numpy()

    def _decision_q(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Q of the (observation, action) pairs a decision needs (a few): through a numpy copy of
        Q where it applies (vector observations; ~10x less overhead than torch on small batches)."""
        if self._fast_q is None and self.q is not None:
            self._fast_q = numpy_qnet(self.q) or self.q_values
        return self._fast_q(obs, actions)

    def _single_q(self, obs: Any, action: Any) -> float:
        """Q of one (observation, action) (see :meth:`_decision_q`)."""
        return float(self._decision_q(np.asarray(obs)[None], np.asarray(action)[None])[0])

    # -- the decision ---------------------------------------------------------------------
    def revisited(self, obs: Any) -> bool:
        """Whether ``obs`` was seen at least ``revisits`` times before in this episode (always
        False with the check off)."""
        return self.revisits is not None and self._visits.get(np.asarray(obs).tobytes(), 0) >= self.revisits

    def _novice_decision(self, q: float, obs: Any) -> Decision:
        if q > self.beta:
            return Decision(expert_acts=True, score=q)
        if self.revisited(obs):
            self.revisit_takeovers += 1
            return Decision(expert_acts=True, score=q)
        return Decision(expert_acts=False, score=q)

    def takeover(self, ctx: GateContext) -> Decision:
        return self._novice_decision(self._single_q(ctx.obs, ctx.novice_action), ctx.obs)

    def handback(self, ctx: GateContext) -> Decision:
        gap = mean_squared_gap(ctx.novice_action, ctx.expert_action, self.action_space)
        # Discrete gaps are 0/1 and eps is a mismatch rate: only equal actions hand back.
        close = gap == 0.0 if self.discrete else gap <= self.eps
        return Decision(expert_acts=not close, score=gap)

    def decide_ready_batch(self, ctxs: Sequence[GateContext]) -> list[Decision]:
        """Decide for a batch, with one forward pass of Q for all novice-controlled envs."""
        novice = [i for i, c in enumerate(ctxs) if not c.expert_in_control]
        qs: dict[int, float] = {}
        if novice:
            obs = np.stack([np.asarray(ctxs[i].obs) for i in novice])
            values = self._decision_q(obs, np.stack([np.asarray(ctxs[i].novice_action) for i in novice]))
            qs = {i: float(v) for i, v in zip(novice, values, strict=True)}
        return [self.handback(c) if c.expert_in_control else self._novice_decision(qs[i], c.obs)
                for i, c in enumerate(ctxs)]

    # -- bookkeeping ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None) -> None:
        super().reset(seed=seed)
        self._visits.clear()

    def observe(self, ctx: GateContext, record: Transition) -> None:
        if self.revisits is not None:
            key = np.asarray(ctx.obs).tobytes()
            self._visits[key] = self._visits.get(key, 0) + 1
        # Every step the novice held when the gate was asked, including the ones it lost on
        # that step (as Thrifty-DAgger's loop does): record.score is then Q(s, a_n). Keeping
        # only the steps it kept would censor the sample at beta, and its (1 - delta) quantile
        # would push beta down at every episode end.
        if self.ready and not ctx.expert_in_control and math.isfinite(record.score):
            self.estimates.add(ctx.obs, ctx.novice_action, q=record.score)

    def end_episode(self) -> None:
        self._visits.clear()
        if not self.ready or not self.estimates.enough:
            return
        if self.beta_update == "rescore":
            obs, actions = self.estimates.inputs()
            self.beta = float(np.quantile(self.q_values(obs, actions), 1.0 - self.delta))
            self.estimates.clear()
        else:
            self.beta = float(np.quantile(self.estimates.values("q"), 1.0 - self.delta))

    # -- learning -------------------------------------------------------------------------
    def loss(self, obs_e: torch.Tensor, a_h: torch.Tensor, a_n: torch.Tensor, mask: torch.Tensor,
             td_batch: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """J_AIM on an expert batch, plus J_TD on a transition batch when given.

        Args:
            obs_e: expert-labelled observations.
            a_h: the expert's actions there.
            a_n: the current novice's actions there.
            mask: 1.0 where ``d(a_n, a_h) > eps`` (the novice action is pushed to +1), else 0.
            td_batch: ``obs``, ``action`` (executed), ``next_obs``, ``next_action`` (the
                novice's action at ``next_obs``; unused with ``td_next: max``) and
                ``terminated`` (bool) rows.
        """
        assert self.q is not None and self.q_target is not None
        n = len(obs_e)
        # One forward pass for both action sets: Q(s, a_h) and Q(s, a_n).
        q_both = self.q(torch.cat([obs_e, obs_e]), torch.cat([a_h, a_n]))
        q_h, q_n = q_both[:n], q_both[n:]
        loss_h = ((q_h + 1.0) ** 2).mean()
        loss_n = (mask * (q_n - 1.0) ** 2).mean()
        total = loss_h + loss_n
        info = {"loss_expert": float(loss_h.detach()), "loss_novice": float(loss_n.detach())}
        if td_batch is not None:
            q_sa = self.q(td_batch["obs"], td_batch["action"])
            with torch.no_grad():
                if self.td_next == "max":
                    nxt = self.q_target.all_actions(td_batch["next_obs"]).max(1).values
                else:
                    nxt = self.q_target(td_batch["next_obs"], td_batch["next_action"])
                target = self.gamma * nxt * (~td_batch["terminated"]).float()
            loss_td = ((q_sa - target) ** 2).mean()
            total = total + loss_td
            info["loss_td"] = float(loss_td.detach())
        return total, info

    def fit(self, store: RecordStore, novice: NovicePredictor | None) -> dict[str, float]:
        """Refit Q on the store with the current novice; set eps and beta at the first fit."""
        assert self.q is not None and self.optimizer is not None and self.action_space is not None
        if novice is None:
            raise ValueError("novice must be the current novice (AIM recomputes its actions), got None")
        obs_np, a_h_np = store.expert_labelled(source="intervened")
        n = len(obs_np)
        if n == 0:
            return {}
        a_n_np = novice_actions(novice, obs_np)
        gaps = mean_squared_gaps(a_n_np, a_h_np, self.action_space)
        first = not self.ready
        n_fit = holdout_split(n, self.holdout) if first else n
        if first:  # eps from the training part of the warm-up; beta from the held-out part, below
            self.eps = float(gaps[:n_fit].mean())
        obs_e, a_h, a_n = as_obs_tensor(obs_np), self._action_tensor(a_h_np), self._action_tensor(a_n_np)
        mask = torch.as_tensor(gaps > self.eps, dtype=torch.float32)

        td_data = self._td_data(store, novice, exclude_expert_from=n_fit if first else None) if self.td else None
        steps = self.first_steps if first else self.steps_per_update
        rng = self.np_random
        info: dict[str, float] = {}
        self.q.train()
        for _ in range(steps):
            idx = torch.as_tensor(rng.integers(0, n_fit, size=min(self.batch_size, n_fit)))
            td_batch = None
            if td_data is not None:
                m = len(td_data["obs"])
                j = torch.as_tensor(rng.integers(0, m, size=min(self.batch_size, m)))
                td_batch = {k: v[j] for k, v in td_data.items()}
            loss, info = self.loss(obs_e[idx], a_h[idx], a_n[idx], mask[idx], td_batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if td_data is not None:
                assert self.q_target is not None
                soft_update(self.q, self.q_target, self.tau)
        self.q.eval()
        self._fast_q = None  # Q changed: the numpy copy is rebuilt at the next decision

        if first:
            hold = slice(n_fit, n) if n > n_fit else slice(0, n)
            q_hold = self.q_values(obs_np[hold], a_n_np[hold])
            self.beta = float(np.quantile(q_hold, 1.0 - self.delta))
            self.ready = True
        if self.beta_update == "paper":
            self.estimates.clear()  # values of the old Q (rescore keeps the states instead)
        with torch.no_grad():
            q_n = self.q_values(obs_np, a_n_np)
        out = {**info, "eps": self.eps, "beta": self.beta, "novice_far": float(mask.mean()),
               "q_novice_mean": float(q_n.mean()), "labels": float(n)}
        if self.revisits is not None:
            out["revisit_takeovers"] = float(self.revisit_takeovers)
        return out

    def _td_data(self, store: RecordStore, novice: Any, *, exclude_expert_from: int | None) -> dict[str, torch.Tensor] | None:
        """Every executed transition as tensors (at the first fit, without the held-out part)."""
        if len(store) == 0:
            return None
        obs = np.asarray(store.column("obs"))
        next_obs = np.asarray(store.column("next_obs"))
        actions = np.asarray(store.column("executed_action"))
        terminated = np.asarray(store.column("terminated")).astype(bool)
        keep = np.ones(len(obs), dtype=bool)
        if exclude_expert_from is not None:
            expert_rows = np.flatnonzero(np.asarray(store.column("intervened")).astype(bool))
            keep[expert_rows[exclude_expert_from:]] = False
        if not keep.any():
            return None
        obs, next_obs, actions, terminated = obs[keep], next_obs[keep], actions[keep], terminated[keep]
        data = {"obs": as_obs_tensor(obs), "action": self._action_tensor(actions),
                "next_obs": as_obs_tensor(next_obs), "terminated": torch.as_tensor(terminated)}
        if self.td_next == "novice":
            # The novice is fixed while Q trains: its actions at s' are computed once.
            data["next_action"] = self._action_tensor(novice_actions(novice, next_obs))
        return data

    # -- checkpoints ----------------------------------------------------------------------
    def _net_state(self) -> dict[str, Any]:
        assert self.q is not None and self.q_target is not None and self.optimizer is not None
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "eps": float(self.eps), "beta": float(self.beta),
                "revisit_takeovers": int(self.revisit_takeovers), **self.estimates.state_dict()}

    def _load_net_state(self, state: dict[str, Any]) -> None:
        assert self.q is not None and self.q_target is not None and self.optimizer is not None
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._fast_q = None
        self.eps = float(state["eps"])
        self.beta = float(state["beta"])
        self.revisit_takeovers = int(state.get("revisit_takeovers", 0))
        self.estimates.load_state_dict(state, discrete=self.discrete)

