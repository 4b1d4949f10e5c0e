"""InterventionWrapper: decision tables, info schema, counters, determinism, env checker."""

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from gatekit.criteria.base import Criterion
from gatekit.criteria.dagger import DAggerCriterion
from gatekit.criteria.simple import (
    ActionGapCriterion,
    AlwaysCriterion,
    ExpertLikelihoodCriterion,
    NeverCriterion,
)
from gatekit.envs.toy import EchoEnv
from gatekit.errors import ExpertError, GatekitError
from gatekit.experts.base import Expert
from gatekit.experts.classic import EchoExpert, PendulumExpert
from gatekit.types import Decision, Verdict
from gatekit.wrappers import INFO_KEYS, InterventionWrapper
from gatekit.wrappers import intervention as iv


def f32(*xs):
    return np.array(xs, dtype=np.float32)


def make(criterion, *, expert_action=(0.0,), n_actions=None, horizon=10, store=None, **kw):
    env = EchoEnv(n_actions=n_actions, horizon=horizon)
    expert = EchoExpert(env=env, action=list(expert_action))
    return InterventionWrapper(env, expert=expert, criterion=criterion, store=store, **kw)


class ListStore(list):
    def append(self, t):  # noqa: D401 - a list is a store
        super().append(t)


def test_action_gap_decision_table_continuous():
    w = make(ActionGapCriterion(threshold=0.1))
    w.reset(seed=0)
    # (novice action, expected intervened, switched, handed_back, executed)
    table = [
        (0.2, False, False, False, 0.2),   # gap 0.04 <= 0.1: novice acts
        (0.9, True, True, False, 0.0),     # gap 0.81 > 0.1: expert takes over, its action runs
        (0.8, True, False, False, 0.0),    # still far: expert keeps control
        (0.3, False, False, True, 0.3),    # gap 0.09 <= 0.1: hand back, novice's action runs
        (-0.5, True, True, False, 0.0),    # second switch
    ]
    for a, interv, sw, hb, executed in table:
        _, _, _, _, info = w.step(f32(a))
        g = info["gatekit"]
        assert (g["intervened"], g["switched"], g["handed_back"]) == (interv, sw, hb), a
        assert g["executed_action"].tolist() == pytest.approx([executed])
        assert g["novice_action"].tolist() == pytest.approx([a])
        assert g["expert_queried"] is True and g["expert_action"].tolist() == [0.0]
        assert g["score"] == pytest.approx(a * a, rel=1e-5)
    assert w.totals.steps == 5 and w.totals.expert_steps == 3 and w.totals.switches == 2
    assert w.totals.expert_queries == 5


def test_action_gap_discrete_any_difference_takes_over():
    w = make(ActionGapCriterion(), expert_action=(1,), n_actions=3)
    w.reset(seed=0)
    rows = [(1, False), (2, True), (2, True), (1, False), (0, True)]
    for a, interv in rows:
        _, _, _, _, info = w.step(a)
        assert info["gatekit"]["intervened"] is interv
        assert info["gatekit"]["executed_action"] == (1 if interv else a)
        assert isinstance(info["gatekit"]["executed_action"], int)


def test_never_does_not_query_and_leaves_trajectory_identical():
    rng = np.random.default_rng(3)
    actions = [rng.uniform(-1, 1, (1,)).astype(np.float32) for _ in range(25)]
    bare = EchoEnv(horizon=25)
    wrapped = make(NeverCriterion(), horizon=25)
    o1, _ = bare.reset(seed=7)
    o2, _ = wrapped.reset(seed=7)
    np.testing.assert_array_equal(o1, o2)
    for a in actions:
        s1 = bare.step(a)
        s2 = wrapped.step(a)
        np.testing.assert_array_equal(s1[0], s2[0])
        assert s1[1:4] == s2[1:4]
        assert s2[4]["gatekit"]["expert_queried"] is False
        assert "expert_action" not in s2[4]["gatekit"]
    assert wrapped.totals.expert_queries == 0 and wrapped.totals.expert_steps == 0


def test_always_expert_acts_one_switch_per_episode_and_episode_totals():
    store = ListStore()
    w = make(AlwaysCriterion(), horizon=4, store=store)
    for ep in range(2):
        w.reset(seed=ep)
        for t in range(4):
            _, _, term, trunc, info = w.step(f32(0.7))
            assert info["gatekit"]["intervened"]
            assert info["gatekit"]["switched"] is (t == 0)
        assert trunc
        assert info["gatekit"]["episode"] == {"length": 4, "expert_steps": 4, "expert_queries": 4,
                                              "switches": 1, "takeover_rate": 1.0}
    assert [r.episode for r in store] == [0] * 4 + [1] * 4
    assert [r.step for r in store] == list(range(8))
    assert all(r.intervened and r.expert_queried for r in store)
    np.testing.assert_array_equal(store[1].obs, store[0].next_obs)


def test_info_schema_matches_docstring():
    rules = [m.start() for m in re.finditer(r"^=+ =+$", iv.__doc__, flags=re.M)]
    table = iv.__doc__[rules[1]:rules[2]]  # the rows between the header rule and the last rule
    documented = set(re.findall(r"^(\w+)\s+\S", table, flags=re.M))
    assert documented == set(INFO_KEYS)
    w = make(ActionGapCriterion(threshold=0.1), horizon=2)
    w.reset(seed=0)
    _, _, _, _, info = w.step(f32(0.0))
    assert set(info["gatekit"]) == set(INFO_KEYS) - {"episode"}
    _, _, _, _, info = w.step(f32(0.0))
    assert set(info["gatekit"]) == set(INFO_KEYS)
    assert set(info["gatekit"]["episode"]) == set(iv.EPISODE_KEYS)


def test_info_key_can_be_renamed():
    w = make(NeverCriterion(), info_key="gate")
    w.reset(seed=0)
    _, _, _, _, info = w.step(f32(0.0))
    assert "gate" in info and "gatekit" not in info


def _trace(seed):
    env = gym.make("Pendulum-v1")
    expert = PendulumExpert(env=env, deterministic=False)
    w = InterventionWrapper(env, expert=expert, criterion=DAggerCriterion(schedule="constant", beta=0.5))
    out = []
    obs, _ = w.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(60):
        obs, r, term, trunc, info = w.step(rng.uniform(-2, 2, (1,)).astype(np.float32))
        g = info["gatekit"]
        out.append((obs.tobytes(), r, g["intervened"], g["executed_action"].tobytes()))
    return out


def test_same_seed_twice_gives_identical_trace():
    a, b = _trace(11), _trace(11)
    assert a == b
    assert any(x[2] for x in a) and not all(x[2] for x in a)  # the coin really mixed
    assert _trace(12) != a


def test_check_env_passes_on_wrapped_envs():
    check_env(make(ActionGapCriterion(threshold=0.1)), skip_render_check=True)
    check_env(make(ActionGapCriterion(), expert_action=(1,), n_actions=3), skip_render_check=True)
    env = gym.make("Pendulum-v1")
    check_env(InterventionWrapper(env, expert=PendulumExpert(env=env), criterion=DAggerCriterion()),
              skip_render_check=True)


def test_nonfinite_novice_action_is_never_executed():
    w = make(NeverCriterion())
    w.reset(seed=0)
    _, _, _, _, info = w.step(f32(np.nan))
    assert info["gatekit"]["intervened"] and info["gatekit"]["executed_action"].tolist() == [0.0]
    _, _, _, _, info = w.step(f32(0.5))
    assert info["gatekit"]["handed_back"] and not info["gatekit"]["intervened"]
    strict = make(NeverCriterion(), on_nonfinite="raise")
    strict.reset(seed=0)
    with pytest.raises(GatekitError, match="non-finite action"):
        strict.step(f32(np.inf))


class BrokenExpert(Expert):
    def __init__(self, env, value=None):
        super().__init__(env.observation_space, env.action_space)
        self.value = value

    def act(self, obs):
        if self.value is None:
            raise RuntimeError("joystick unplugged")
        return self.value


def test_expert_failures_are_named_with_their_step():
    env = EchoEnv()
    w = InterventionWrapper(env, expert=BrokenExpert(env), criterion=AlwaysCriterion())
    w.reset(seed=0)
    with pytest.raises(ExpertError, match=r"joystick unplugged at step 0 \(episode 0\)"):
        w.step(f32(0.0))
    env = EchoEnv()
    w = InterventionWrapper(env, expert=BrokenExpert(env, f32(np.nan)), criterion=AlwaysCriterion())
    w.reset(seed=0)
    with pytest.raises(ExpertError, match="non-finite"):
        w.step(f32(0.0))


def test_likelihood_gate_needs_log_prob_and_uses_it():
    env = EchoEnv()
    with pytest.raises(GatekitError, match="needs an expert with log_prob"):
        InterventionWrapper(env, expert=EchoExpert(env=env), criterion=ExpertLikelihoodCriterion())
    env = gym.make("Pendulum-v1")
    expert = PendulumExpert(env=env, noise_std=0.3)
    w = InterventionWrapper(env, expert=expert, criterion=ExpertLikelihoodCriterion(threshold=0.05))
    obs, _ = w.reset(seed=0)
    mean = expert.mean(obs)
    _, _, _, _, info = w.step(mean)          # density at the mode: 1/(0.3*sqrt(2pi)) = 1.33 > 0.05
    assert not info["gatekit"]["intervened"]
    obs = w.unwrapped.state  # noqa: F841 - keep the env stepping
    _, _, _, _, info = w.step(np.clip(expert.mean(w.env.unwrapped._get_obs()) + 1.5, -2, 2))
    assert info["gatekit"]["intervened"] and info["gatekit"]["score"] < np.log(0.05)


def test_step_before_reset_is_a_clean_error():
    w = make(NeverCriterion())
    with pytest.raises(GatekitError, match="reset"):
        w.step(f32(0.0))


def test_criterion_must_return_a_decision():
    class Bad(Criterion):
        def takeover(self, ctx):
            return True

    w = make(Bad())
    w.reset(seed=0)
    with pytest.raises(TypeError, match="must return a Decision"):
        w.step(f32(0.0))


def test_old_relative_verdicts_still_work_with_a_deprecation_warning():
    """gatekit 0.1's Verdict(switch) meant "take over" from takeover and "hand back" from
    handback; a criterion written that way behaves exactly like its Decision twin."""

    class Old(Criterion):
        def takeover(self, ctx):
            return Verdict(abs(float(ctx.novice_action[0])) > 0.5)

        def handback(self, ctx):
            return Verdict(abs(float(ctx.novice_action[0])) <= 0.5)

    class OldTakeoverOnly(Criterion):
        def takeover(self, ctx):
            return Verdict(abs(float(ctx.novice_action[0])) > 0.5)

    class New(Criterion):
        def takeover(self, ctx):
            return Decision(expert_acts=abs(float(ctx.novice_action[0])) > 0.5)

    actions = [0.1, 0.9, 0.8, 0.2, 0.3, 0.7, 0.1]
    traces = []
    for crit in (Old(), OldTakeoverOnly(), New()):
        w = make(crit)
        w.reset(seed=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traces.append([w.step(f32(a))[4]["gatekit"]["intervened"] for a in actions])
        assert any(issubclass(c.category, DeprecationWarning) for c in caught) == (not isinstance(crit, New))
    assert traces[0] == traces[1] == traces[2] == [False, True, True, False, False, True, False]


def test_expert_action_computed_once_per_step():
    calls = []

    class Counting(Expert):
        def act(self, obs):
            calls.append(1)
            return f32(0.0)

    class AskTwice(Criterion):
        def takeover(self, ctx):
            _ = ctx.expert_action, ctx.expert_action
            return Verdict(True)

    env = EchoEnv()
    w = InterventionWrapper(env, expert=Counting(env.observation_space, env.action_space), criterion=AskTwice())
    w.reset(seed=0)
    w.step(f32(0.3))
    assert len(calls) == 1 and w.totals.expert_queries == 1
