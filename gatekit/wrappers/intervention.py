"""InterventionWrapper: route each step's action between the novice and the expert.

The learner calls ``env.step(novice_action)`` as usual. The wrapper asks its criterion who
should act, executes the expert's action when the expert is in control, records the step,
and reports what happened in ``info["gatekit"]`` (the key can be renamed with ``info_key``).

``info["gatekit"]`` on every step (plain values; the key names are the ``K_*`` constants):

============== ========================================================================
key            meaning
============== ========================================================================
intervened     bool: the expert's action was executed (an expert-involved step)
switched       bool: control passed novice -> expert on this step (a *switch*)
handed_back    bool: control passed expert -> novice on this step
expert_queried bool: the expert looked at this step (criterion asked, or it acted)
novice_action  the action the novice proposed (array, or int for Discrete)
executed_action the action sent to the env
expert_action  the expert's action; present only when ``expert_queried``
score          float: the number the criterion decided on (NaN if none)
episode_step   int: index of this step in its episode (0-based)
episode        dict, last step only: ``length``, ``expert_steps``, ``expert_queries``,
               ``switches``, ``takeover_rate`` (= expert_steps / length)
============== ========================================================================

A person as the expert (:mod:`gatekit.experts.keyboard`). Two optional expert methods let a
person move control themselves; experts without them are gated by the criterion alone:

* ``claim_control(obs, *, expert_in_control, watched) -> bool | None``, called on every step
  before the criterion, except while the expert is forced to act (warm-up, ``force_expert``, a
  non-finite novice action); ``watched`` is the criterion's ``human_gated``. True: the expert
  acts (the person takes or keeps control), False: the novice acts (the person hands back),
  None: the criterion decides. A claim replaces the criterion's decision on that step (it is
  not asked; ``score`` is then NaN).
* ``effort()``, whose ``as_dict()`` is copied into ``info["gatekit"]["person"]`` on every step
  (the person's time in control, help requests, response latencies, ...; absent for other
  experts, so not in the table above).

A criterion with ``needs_person = True`` (``human``) refuses an expert without
``claim_control``.

For LeRobot's human-in-the-loop consumers, the top level of ``info`` also carries
``is_intervention`` (= ``intervened``) and, on intervened steps, ``action_intervention`` (the
executed expert action).

Non-finite values. An observation with NaN/inf from the env raises :class:`GatekitError`
(no gate can decide on it). A non-finite novice action is never executed: the expert takes
over for that step (``on_nonfinite="expert"``, the default) or the wrapper raises
(``on_nonfinite="raise"``). An expert that raises or returns a non-finite action raises
:class:`ExpertError` naming the step; everything recorded before it is kept.

Example:
    >>> import numpy as np
    >>> from gatekit.envs.toy import EchoEnv
    >>> from gatekit.criteria.simple import ActionGapCriterion
    >>> from gatekit.experts.classic import EchoExpert
    >>> env = EchoEnv()
    >>> env = InterventionWrapper(env, expert=EchoExpert(env=env, action=[0.0]),
    ...                           criterion=ActionGapCriterion(threshold=0.1))
    >>> obs, info = env.reset(seed=0)
    >>> obs, r, term, trunc, info = env.step(np.array([0.9], dtype=np.float32))
    >>> info["gatekit"]["intervened"], info["gatekit"]["executed_action"].tolist()
    (True, [0.0])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np

from gatekit.criteria.base import Criterion
from gatekit.errors import ExpertError, GatekitError
from gatekit.experts.base import Expert
from gatekit.policies import cast_action, check_spaces
from gatekit.types import Decision, GateContext, Transition, Verdict

K_INTERVENED = "intervened"
K_SWITCHED = "switched"
K_HANDED_BACK = "handed_back"
K_EXPERT_QUERIED = "expert_queried"
K_NOVICE_ACTION = "novice_action"
K_EXECUTED_ACTION = "executed_action"
K_EXPERT_ACTION = "expert_action"
K_SCORE = "score"
K_EPISODE_STEP = "episode_step"
K_EPISODE = "episode"
K_PERSON = "person"  # only with an expert that reports a person's effort (see the docstring)

INFO_KEYS = (K_INTERVENED, K_SWITCHED, K_HANDED_BACK, K_EXPERT_QUERIED, K_NOVICE_ACTION,
             K_EXECUTED_ACTION, K_EXPERT_ACTION, K_SCORE, K_EPISODE_STEP, K_EPISODE)
EPISODE_KEYS = ("length", "expert_steps", "expert_queries", "switches", "takeover_rate")


@dataclass
class Totals:
    """Running counters of a wrapper (across episodes)."""

    steps: int = 0
    expert_steps: int = 0
    expert_queries: int = 0
    switches: int = 0
    episodes: int = 0

    @property
    def takeover_rate(self) -> float:
        return self.expert_steps / self.steps if self.steps else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "takeover_rate": self.takeover_rate}


def is_finite(x: Any) -> bool:
    arr = np.asarray(x)
    return not np.issubdtype(arr.dtype, np.floating) or bool(np.isfinite(arr).all())


def check_obs(obs: Any, step: int, episode: int) -> None:
    """Raise :class:`GatekitError` on an observation with NaN/inf (no gate can decide on it)."""
    if not is_finite(obs):
        raise GatekitError(f"the env returned a non-finite observation at step {step} (episode {episode}); "
                           f"fix the env or wrap it to sanitise observations")


def in_space(action: Any, space: gym.Space) -> bool:
    """Whether a cast action lies in ``space``. Box bounds are not enforced (controllers often
    overshoot and envs clip); discrete and multi-discrete/binary actions must be valid indices."""
    if isinstance(space, gym.spaces.Box):
        return True
    try:
        return bool(space.contains(action))
    except Exception:  # a space that cannot even check the value
        return False


class StepGate:
    """The per-env gate state machine shared by the single and vectorised wrappers."""

    def __init__(self, *, expert: Expert, criterion: Criterion, action_space: gym.Space,
                 on_nonfinite: Literal["expert", "raise"], index: int = 0) -> None:
        self.expert = expert
        self.criterion = criterion
        self.action_space = action_space
        self.on_nonfinite = on_nonfinite
        self.index = index  # which env of a batch this gate serves (records carry it)
        self.expert_in_control = False
        self.episode_step = 0
        self.episode = -1
        self.ep = Totals()
        self.totals = Totals()

    def start_episode(self) -> None:
        self.expert_in_control = False
        self.episode_step = 0
        self.episode += 1
        self.ep = Totals()

    def _expert_action(self, obs: Any) -> Any:
        try:
            action = self.expert.act(obs)
        except GatekitError:
            raise
        except Exception as exc:
            raise ExpertError(
                f"expert {type(self.expert).__name__} raised {type(exc).__name__}: {exc} at step "
                f"{self.totals.steps} (episode {self.episode}); every step before it is saved"
            ) from exc
        try:
            action = cast_action(action, self.action_space)
        except (TypeError, ValueError) as exc:  # not even a number (a SpaceMismatchError says why itself)
            if isinstance(exc, GatekitError):
                raise
            raise ExpertError(f"expert {type(self.expert).__name__} returned an unusable action at step "
                              f"{self.totals.steps} (episode {self.episode}): {type(exc).__name__}: {exc}; every "
                              f"step before it is saved") from exc
        if not is_finite(action):
            raise ExpertError(
                f"expert {type(self.expert).__name__} returned a non-finite action at step "
                f"{self.totals.steps} (episode {self.episode}); every step before it is saved"
            )
        if not in_space(action, self.action_space):
            raise ExpertError(
                f"expert {type(self.expert).__name__} returned action {action!r}, outside the action space "
                f"{self.action_space}, at step {self.totals.steps} (episode {self.episode}); every step before it is saved"
            )
        return action

    def context(self, obs: Any, novice_action: Any) -> GateContext:
        log_prob = self.expert.log_prob if getattr(self.expert, "has_log_prob", False) else None
        return GateContext(obs=obs, novice_action=novice_action, expert_in_control=self.expert_in_control,
                           episode_step=self.episode_step, expert_fn=self._expert_action, log_prob_fn=log_prob)

    def prepare(self, obs: Any, novice_action: Any) -> tuple[GateContext, bool]:
        """Cast the novice's action and build its context; returns (ctx, novice_action_ok)."""
        novice_action = cast_action(novice_action, self.action_space)
        ok = is_finite(novice_action)
        if not ok and self.on_nonfinite == "raise":
            raise GatekitError(f"the novice proposed a non-finite action at step {self.totals.steps}; "
                               f"set on_nonfinite='expert' to let the expert act instead")
        return self.context(obs, novice_action), ok

    def claim(self, obs: Any, *, watched: bool) -> bool | None:
        """A person's own claim on this step: the expert acts (True), the novice acts (False),
        or None, no claim (an expert without ``claim_control`` never claims)."""
        claim_control = getattr(self.expert, "claim_control", None)
        if claim_control is None:
            return None
        return claim_control(obs, expert_in_control=self.expert_in_control, watched=watched)

    def resolve(self, ctx: GateContext, decision: Decision, novice_ok: bool) -> tuple[Any, dict[str, Any]]:
        """Apply a decision: update who is in control and return (executed_action, info)."""
        was_expert = self.expert_in_control
        if isinstance(decision, Verdict):  # a deprecated 0.1-style answer from a custom decide_batch
            decision = decision.to_decision(expert_in_control=was_expert)
        expert_now = bool(decision.expert_acts)
        if not novice_ok:
            expert_now = True  # a NaN action is never executed
        switched = expert_now and not was_expert
        handed_back = was_expert and not expert_now
        executed = ctx.expert_action if expert_now else ctx.novice_action
        self.expert_in_control = expert_now
        info: dict[str, Any] = {
            K_INTERVENED: expert_now,
            K_SWITCHED: switched,
            K_HANDED_BACK: handed_back,
            K_EXPERT_QUERIED: ctx.expert_queried,
            K_NOVICE_ACTION: ctx.novice_action,
            K_EXECUTED_ACTION: executed,
            K_SCORE: float(decision.score),
            K_EPISODE_STEP: self.episode_step,
        }
        if ctx.expert_queried:
            info[K_EXPERT_ACTION] = ctx.expert_action
        return executed, info

    def count(self, info: dict[str, Any]) -> None:
        for t in (self.ep, self.totals):
            t.steps += 1
            t.expert_steps += int(info[K_INTERVENED])
            t.expert_queries += int(info[K_EXPERT_QUERIED])
            t.switches += int(info[K_SWITCHED])
        self.episode_step += 1

    def episode_summary(self) -> dict[str, float]:
        self.totals.episodes += 1
        return {"length": self.ep.steps, "expert_steps": self.ep.expert_steps,
                "expert_queries": self.ep.expert_queries, "switches": self.ep.switches,
                "takeover_rate": self.ep.takeover_rate}

    def record(self, ctx: GateContext, info: dict[str, Any], reward: float, next_obs: Any,
               terminated: bool, truncated: bool) -> Transition:
        return Transition(
            step=self.totals.steps, episode=self.episode, obs=ctx.obs, novice_action=ctx.novice_action,
            expert_action=ctx.expert_action if ctx.expert_queried else None,
            executed_action=info[K_EXECUTED_ACTION], intervened=info[K_INTERVENED],
            expert_queried=ctx.expert_queried, switched=info[K_SWITCHED], reward=float(reward),
            next_obs=next_obs, terminated=bool(terminated), truncated=bool(truncated),
            score=info[K_SCORE], env=self.index,
        )


def check_components(env: gym.Env, expert: Expert, criterion: Criterion) -> None:
    """Check that expert and criterion fit the env (spaces, log_prob) before any step."""
    if not isinstance(criterion, Criterion):
        raise TypeError(f"criterion must be a gatekit Criterion, got {type(criterion).__name__}")
    if not callable(getattr(expert, "act", None)):
        raise TypeError(f"expert must be a gatekit Expert (with act(obs)), got {type(expert).__name__}")
    check_spaces(f"expert {type(expert).__name__}", getattr(expert, "observation_space", None),
                 getattr(expert, "action_space", None), env.observation_space, env.action_space)
    if criterion.needs_person and not callable(getattr(expert, "claim_control", None)):
        raise GatekitError(
            f"criterion '{criterion.name}' is gated by a person, and {type(expert).__name__} has no person "
            f"to claim control; use expert 'keyboard'"
        )
    if criterion.needs_log_prob and not getattr(expert, "has_log_prob", False):
        raise GatekitError(
            f"criterion '{criterion.name}' needs an expert with log_prob(); "
            f"{type(expert).__name__} has none (use criterion 'action-gap' instead)"
        )


class InterventionWrapper(gym.Wrapper):
    """Let a criterion decide, each step, whether the novice's or the expert's action runs.

    Args:
        env: the env to wrap.
        expert: the expert (bound to ``env`` here, so it can read privileged state).
        criterion: the gate.
        store: where each step's :class:`~gatekit.types.Transition` goes
            (anything with ``append``); None keeps no records.
        info_key: the key of the wrapper's entry in ``info``.
        on_nonfinite: what a non-finite novice action does: ``"expert"`` (the expert acts) or
            ``"raise"``.
        warmup_steps: the expert acts on the first N steps (counted by :attr:`totals`) whatever
            the criterion says, and the criterion is not asked (the expert's warm-up).

    Attributes:
        totals: running counters (:class:`Totals`) across episodes.
        expert_in_control: who holds control now.
        force_expert: while True the expert acts whatever the criterion says; the criterion is
            not asked.
        last_record: the :class:`~gatekit.types.Transition` of the last step.
    """

    def __init__(self, env: gym.Env, *, expert: Expert, criterion: Criterion, store: Any | None = None,
                 info_key: str = "gatekit", on_nonfinite: Literal["expert", "raise"] = "expert",
                 warmup_steps: int = 0) -> None:
        super().__init__(env)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        if on_nonfinite not in ("expert", "raise"):
            raise ValueError(f"on_nonfinite must be 'expert' or 'raise', got {on_nonfinite!r}")
        check_components(env, expert, criterion)
        expert.bind(env)
        criterion.bind(env.observation_space, env.action_space)
        self.expert = expert
        self.criterion = criterion
        self.store = store
        self.info_key = info_key
        self.gate = StepGate(expert=expert, criterion=criterion, action_space=env.action_space,
                             on_nonfinite=on_nonfinite)
        self._obs: Any = None
        self._needs_reset = True
        self.force_expert = False
        self.warmup_steps = warmup_steps
        self.last_record: Transition | None = None

    @property
    def spec(self) -> Any:  # type: ignore[override]  # gymnasium declares a plain attribute
        # The gate holds live objects (expert, criterion, store) that no EnvSpec can recreate,
        # so it reports the inner env's spec rather than a spec `gym.make` would fail on.
        return self.env.spec

    @property
    def totals(self) -> Totals:
        return self.gate.totals

    @property
    def expert_in_control(self) -> bool:
        return self.gate.expert_in_control

    @property
    def episode(self) -> int:
        """Index of the current episode (-1 before the first reset)."""
        return self.gate.episode

    def restore(self, totals: Totals, *, episodes: int) -> None:
        """Continue the counters of an earlier session (a resumed run): ``totals`` so far, and
        ``episodes`` episodes begun, so that the next reset starts episode ``episodes``."""
        self.gate.totals = Totals(**{k: getattr(totals, k) for k in ("steps", "expert_steps", "expert_queries",
                                                                     "switches", "episodes")})
        self.gate.episode = episodes - 1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            expert_seed, criterion_seed = np.random.SeedSequence(seed).generate_state(2)
            self.expert.reset(seed=int(expert_seed))
            self.criterion.reset(seed=int(criterion_seed))
        else:
            self.expert.reset()
            self.criterion.reset()
        self._check_obs(obs)
        self.gate.start_episode()
        self._obs = obs
        self._needs_reset = False
        return obs, info

    def _check_obs(self, obs: Any) -> None:
        check_obs(obs, self.gate.totals.steps, self.gate.episode)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise GatekitError("step() called before reset() or after the episode ended; call reset() first")
        gate = self.gate
        ctx, ok = gate.prepare(self._obs, action)
        forced = self.force_expert or gate.totals.steps < self.warmup_steps or not ok
        claim = None if forced else gate.claim(self._obs, watched=self.criterion.human_gated)
        if forced:
            decision = Decision(expert_acts=True)  # the expert takes or keeps control
        elif claim is not None:
            decision = Decision(expert_acts=claim)  # the person moved control themselves
        else:
            decision = self.criterion.decide(ctx)
        executed, ginfo = gate.resolve(ctx, decision, ok)
        obs, reward, terminated, truncated, info = self.env.step(executed)
        record = gate.record(ctx, ginfo, float(reward), obs, terminated, truncated)
        if self.store is not None:
            self.store.append(record)
        self.last_record = record
        gate.count(ginfo)
        self.criterion.observe(ctx, record)
        self._check_obs(obs)
        if terminated or truncated:
            ginfo[K_EPISODE] = gate.episode_summary()
            self.criterion.end_episode()
            self._needs_reset = True
        self._obs = obs
        effort = getattr(self.expert, "effort", None)
        if effort is not None:
            ginfo[K_PERSON] = effort().as_dict()
        info = dict(info)
        info[self.info_key] = ginfo
        info["is_intervention"] = ginfo[K_INTERVENED]
        if ginfo[K_INTERVENED]:
            info["action_intervention"] = executed
        return obs, reward, terminated, truncated, info
