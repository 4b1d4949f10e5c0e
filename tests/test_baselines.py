"""The baselines' gates on hand-made cases, and each learner adapter on a tiny env.

Gate tests pin the decision rules at their threshold edges (stubbing the learned parts where the
rule, not the training, is under test); adapter tests run a few hundred steps through the real
loop (:func:`gatekit.runs.train`) and check what each adapter promises.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from gatekit.config import load_recipe_dict
from gatekit.criteria.distances import euclidean as distance
from gatekit.criteria.distances import squared_gap
from gatekit.criteria.ensemble import EnsembleCriterion
from gatekit.criteria.hg import HGDAggerCriterion
from gatekit.criteria.learned import ActorEnsemble
from gatekit.criteria.safedagger import SafeDAggerCriterion
from gatekit.criteria.simple import ActionGapCriterion, ExpertLikelihoodCriterion
from gatekit.criteria.thrifty import ThriftyCriterion
from gatekit.data import RecordStore
from gatekit.errors import ConfigError
from gatekit.types import GateContext, Transition
from tests.recipes import needs_imitation

BOX1 = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
BOX2 = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
DISC3 = gym.spaces.Discrete(3)


def ctx(novice, expert, *, obs=None, expert_in_control=False, log_prob=None):
    obs = np.zeros(1, np.float32) if obs is None else obs
    return GateContext(obs=obs, novice_action=novice, expert_in_control=expert_in_control, episode_step=0,
                       expert_fn=lambda o: expert, log_prob_fn=log_prob)


def store_with(obs_space, act_space, rows):
    """A RecordStore of hand-made steps: rows of (obs, novice, expert|None, intervened, reward, term, trunc)."""
    store = RecordStore(obs_space, act_space)
    for i, (o, a_n, a_h, interv, r, term, trunc) in enumerate(rows):
        store.append(Transition(step=i, episode=0, obs=np.asarray(o, np.float32), novice_action=a_n, expert_action=a_h,
                                executed_action=a_h if interv else a_n, intervened=interv,
                                expert_queried=a_h is not None, switched=False, reward=r,
                                next_obs=np.asarray(o, np.float32), terminated=term, truncated=trunc))
    return store


# -- HG-DAgger --------------------------------------------------------------------------------

def test_hg_delegates_to_the_existing_rules():
    gap = HGDAggerCriterion(rule="action-gap", threshold=0.1)
    assert isinstance(gap.inner, ActionGapCriterion) and not gap.needs_log_prob and gap.human_gated
    gap.bind(BOX2, BOX2)
    ref = ActionGapCriterion(threshold=0.1)
    ref.bind(BOX2, BOX2)
    for a in ([0.0, 0.0], [0.3, 0.3], [0.5, 0.0], [0.6, 0.0]):
        c = ctx(np.array(a), np.zeros(2))
        assert gap.decide(c) == ref.decide(ctx(np.array(a), np.zeros(2)))
    # the edge: a mean squared gap equal to the threshold is tolerated
    assert not gap.decide(ctx(np.array([math.sqrt(0.2), 0.0]), np.zeros(2))).expert_acts

    lik = HGDAggerCriterion()  # the paper's default: likelihood, 1 - free_level = 0.05
    assert isinstance(lik.inner, ExpertLikelihoodCriterion) and lik.needs_log_prob
    assert lik.threshold == pytest.approx(0.05)
    lik.bind(BOX1, BOX1)
    logp = lambda o, a: math.log(0.04) if abs(float(a[0])) > 0.5 else math.log(0.06)  # noqa: E731
    assert lik.decide(ctx(np.array([0.9]), np.zeros(1), log_prob=logp)).expert_acts
    assert not lik.decide(ctx(np.array([0.1]), np.zeros(1), log_prob=logp)).expert_acts
    # expert in control: hand back once the novice is likely again
    assert not lik.decide(ctx(np.array([0.1]), np.zeros(1), expert_in_control=True, log_prob=logp)).expert_acts


def test_hg_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rule"):
        HGDAggerCriterion(rule="vibes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        HGDAggerCriterion(rule="action-gap", threshold=-1.0)


# -- Ensemble-DAgger --------------------------------------------------------------------------

def _stub_ensemble(c, action, var):
    c.ready = True
    c.ensemble.predict = lambda obs: (np.asarray([action], np.float32), np.asarray([var]))


def test_ensemble_rule_edges():
    c = EnsembleCriterion(tau=0.5, chi=0.1, members=2, hidden=[4])
    c.bind(BOX1, BOX1)
    untrained = ctx(np.zeros(1), np.zeros(1))
    assert c.decide(untrained).expert_acts  # untrained: the expert acts
    _stub_ensemble(c, [0.0], 0.1)
    assert not c.decide(ctx(np.zeros(1), np.array([0.5]))).expert_acts  # distance == tau, var == chi: novice
    assert c.decide(ctx(np.zeros(1), np.array([0.5001]))).expert_acts  # just past tau
    _stub_ensemble(c, [0.0], 0.1001)
    assert c.decide(ctx(np.zeros(1), np.zeros(1))).expert_acts  # just past chi
    # hand-back: the novice acts again as soon as both conditions hold
    _stub_ensemble(c, [0.0], 0.0)
    assert not c.decide(ctx(np.zeros(1), np.array([0.2]), expert_in_control=True)).expert_acts
    # compare: novice measures the learner's own action instead of the ensemble's
    n = EnsembleCriterion(tau=0.5, chi=0.1, compare="novice", members=2, hidden=[4])
    n.bind(BOX1, BOX1)
    _stub_ensemble(n, [0.0], 0.0)
    assert n.decide(ctx(np.array([0.9]), np.zeros(1))).expert_acts


def test_ensemble_discrete_and_training():
    rng = np.random.default_rng(0)
    ens = ActorEnsemble(BOX2, DISC3, members=3, hidden=[16], lr=1e-2, batch_size=32)
    obs = rng.uniform(-1, 1, (64, 2)).astype(np.float32)
    acts = (obs[:, 0] > 0).astype(np.int64) * 2  # action 0 on the left, 2 on the right
    ens.fit(obs, acts, steps=150, rng=rng)
    action, var = ens.predict(np.array([[0.8, 0.0], [-0.8, 0.0]], np.float32))
    assert action.tolist() == [2, 0] and var.shape == (2,) and np.all(var >= 0)
    assert distance(1, 1, DISC3) == 0.0 and distance(0, 2, DISC3) == 1.0

    c = EnsembleCriterion(tau=0.5, chi=1.0, members=2, hidden=[16], steps_per_update=100)
    c.bind(BOX2, DISC3)
    store = store_with(BOX2, DISC3, [(o, 0, int(a), True, 0.0, False, False) for o, a in zip(obs, acts, strict=True)])
    metrics = c.update(store, None)
    assert c.ready and metrics["labels"] == 64
    assert not c.decide(ctx(1, 2, obs=np.array([0.8, 0.0], np.float32))).expert_acts  # ensemble says 2 = expert
    assert c.decide(ctx(1, 0, obs=np.array([0.8, 0.0], np.float32))).expert_acts


# -- Thrifty-DAgger ---------------------------------------------------------------------------

def _thrifty(space=BOX1, **kw):
    c = ThriftyCriterion(members=2, hidden=[8], q_hidden=[8], steps_per_update=20, q_steps_per_update=20, **kw)
    c.bind(BOX1, space)
    return c


def test_thrifty_rule_edges():
    c = _thrifty(alpha=0.1)
    c.ready = True
    c.novelty_threshold, c.risk_threshold, c.q_median, c.gap_threshold = 0.5, 0.2, 0.6, 0.04
    assert not c.rule_takeover(novelty=0.5, q=0.2)  # both exactly at their thresholds: no switch
    assert c.rule_takeover(novelty=0.5001, q=0.9)  # novel
    assert c.rule_takeover(novelty=0.0, q=0.1999)  # risky
    assert c.rule_handback(gap=0.0399, q=0.61)
    assert not c.rule_handback(gap=0.04, q=0.61)  # the gap must be strictly below the mean discrepancy
    assert not c.rule_handback(gap=0.0, q=0.6)  # Q_risk must be strictly above its median
    assert squared_gap(np.array([0.3, 0.4]), np.zeros(2), BOX2) == pytest.approx(0.25)  # ||.||^2, a sum
    d = _thrifty(DISC3)
    d.q_median = 0.5
    assert d.rule_handback(gap=squared_gap(1, 1, DISC3), q=0.6)  # discrete: the same action
    assert not d.rule_handback(gap=squared_gap(1, 2, DISC3), q=0.6)


def test_thrifty_uncalibrated_keeps_the_expert():
    c = _thrifty()
    assert c.decide(ctx(np.zeros(1), np.zeros(1))).expert_acts
    assert c.decide(ctx(np.zeros(1), np.zeros(1), expert_in_control=True)).expert_acts


def test_thrifty_quantiles_update_at_episode_end_only_with_enough_estimates():
    c = _thrifty(alpha=0.1, min_estimates=25)
    c.ready = True
    c.novelty_threshold, c.risk_threshold, c.q_median = 9.0, -9.0, 0.5
    c.estimate = lambda obs, action: (float(obs[0]), 1.0 - float(obs[0]))  # (novelty, Q_risk) from the state
    for v in np.linspace(0.0, 1.0, 25):
        c.decide(ctx(np.zeros(1), np.zeros(1), obs=np.array([v], np.float32)))
    c.end_episode()  # exactly 25 estimates: not more than 25, thresholds stay
    assert (c.novelty_threshold, c.risk_threshold, c.q_median) == (9.0, -9.0, 0.5)
    c.decide(ctx(np.zeros(1), np.zeros(1), obs=np.array([0.5], np.float32)))
    c.end_episode()  # 26 estimates: re-estimated from them
    nov = c.estimates.values("novelty")
    assert c.novelty_threshold == pytest.approx(np.quantile(nov, 0.9))
    assert c.risk_threshold == pytest.approx(np.quantile(1.0 - nov, 0.1))
    assert c.q_median == pytest.approx(np.median(1.0 - nov))
    # about alpha of the novice's steps now switch, by each test
    assert np.mean(nov > c.novelty_threshold) == pytest.approx(0.1, abs=0.05)
    # only decisions taken while the novice held control are estimates
    n = len(c.estimates)
    c.decide(ctx(np.zeros(1), np.zeros(1), expert_in_control=True))
    assert len(c.estimates) == n


def test_thrifty_update_calibrates_and_learns_success(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(30):  # ten-step episodes; episodes starting right of 0 succeed
        start = rng.uniform(-1, 1)
        for t in range(10):
            last = t == 9
            o = [start]
            rows.append((o, np.array([0.0], np.float32), np.array([start], np.float32), t < 3, 10.0 if last and start > 0 else 0.0,
                         last and start > 0, last and start <= 0))
    store = store_with(BOX1, BOX1, rows)
    c = _thrifty(alpha=0.2, success_reward_above=5.0, gamma=0.9)
    c.q_steps_per_update = 300
    metrics = c.update(store, None)
    assert c.ready and math.isfinite(c.novelty_threshold) and math.isfinite(c.risk_threshold)
    assert metrics["gap_threshold"] >= 0 and len(c.estimates) == 0
    q = c.success_prob(np.array([[0.8], [-0.8]], np.float32), np.zeros((2, 1), np.float32))
    assert q[0] > q[1]  # the critic tells the succeeding side from the failing one
    state = c.state_dict()
    torch.save(state, tmp_path / "thrifty.pt")
    loaded = torch.load(tmp_path / "thrifty.pt", weights_only=True)  # as run.py loads checkpoints
    d = _thrifty(alpha=0.2)
    d.load_state_dict(loaded)
    assert d.ready and d.novelty_threshold == c.novelty_threshold
    assert np.allclose(d.success_prob(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)),
                       c.success_prob(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)))


def test_thrifty_rejects_bad_arguments():
    for kw, name in (({"alpha": 0.0}, "alpha"), ({"members": 1}, "members"), ({"gamma": 1.5}, "gamma"),
                     ({"holdout": 1.0}, "holdout"), ({"first_steps": 0}, "first_steps")):
        with pytest.raises(ValueError, match=name):
            ThriftyCriterion(**kw)


def test_thrifty_release_options_fresh_networks_and_success_share():
    """``fresh``: each retraining starts from new networks (the release re-creates them);
    ``q_success_fraction``: a fixed share of every Q_risk batch is successful last steps."""
    rows = [([i / 400], np.zeros(1, np.float32), np.zeros(1, np.float32), i < 40, 10.0 if i == 399 else 0.0,
             i in (199, 399), False) for i in range(400)]
    store = store_with(BOX1, BOX1, rows)  # one success in 400 steps
    c = _thrifty(alpha=0.1, success_reward_above=5.0, fresh=True, q_success_fraction=0.1, q_batch_size=50)
    c.np_random = np.random.default_rng(0)
    c.update(store, None)
    first_q, first_members = c.q, list(c.ensemble.actors)
    seen = []
    forward = type(c.q).forward

    def spy(self, obs, act):
        if self is c.q and torch.is_grad_enabled():
            seen.append(obs.detach().numpy().ravel().copy())
        return forward(self, obs, act)

    type(c.q).forward = spy
    try:
        c.update(store, None)
    finally:
        type(c.q).forward = forward
    assert c.q is not first_q and all(a is not b for a, b in zip(c.ensemble.actors, first_members, strict=True))
    assert len(seen) == 20  # q_steps_per_update batches, each with its share of the one success
    assert all(len(b) == 50 and np.count_nonzero(np.isclose(b, 399 / 400)) == 1 for b in seen)
    # deterministic: the same generator gives the same new networks
    d = _thrifty(alpha=0.1, success_reward_above=5.0, fresh=True, q_success_fraction=0.1, q_batch_size=50)
    d.np_random = np.random.default_rng(0)
    d.update(store, None)
    d.update(store, None)
    x = np.array([[0.3]], np.float32)
    assert np.array_equal(c.success_prob(x, np.zeros((1, 1), np.float32)), d.success_prob(x, np.zeros((1, 1), np.float32)))
    with pytest.raises(ValueError, match="q_success_fraction"):
        _thrifty(q_success_fraction=1.0)
    with pytest.raises(ValueError, match="fresh"):
        _thrifty(fresh="yes")


# -- SafeDAgger / LazyDAgger ------------------------------------------------------------------

def test_safedagger_classifier_and_lazy_handback():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (200, 1)).astype(np.float32)
    # the novice always says 0; the expert agrees on the left and disagrees on the right
    expert = np.where(obs > 0, 0.8, 0.0).astype(np.float32)
    store = store_with(BOX1, BOX1, [(o, np.zeros(1, np.float32), a, True, 0.0, False, False)
                                    for o, a in zip(obs, expert, strict=True)])
    novice = type("Zero", (), {"predict_batch": staticmethod(lambda o: np.zeros((len(o), 1), np.float32))})()
    c = SafeDAggerCriterion(gap_threshold=0.1, hidden=[16], lr=1e-2, steps_per_update=300)
    c.bind(BOX1, BOX1)
    assert c.decide(ctx(np.zeros(1), np.zeros(1))).expert_acts  # untrained: expert
    metrics = c.update(store, novice)
    assert metrics["unsafe_fraction"] == pytest.approx(np.mean(obs > 0))
    right, left = np.array([0.7], np.float32), np.array([-0.7], np.float32)
    v = c.decide(ctx(np.zeros(1), np.zeros(1), obs=right))
    assert v.expert_acts and v.score > 0.5
    assert not c.decide(ctx(np.zeros(1), np.zeros(1), obs=left)).expert_acts
    # SafeDAgger hands back when the classifier says safe; LazyDAgger on the actual gap
    assert not c.decide(ctx(np.zeros(1), np.zeros(1), obs=left, expert_in_control=True)).expert_acts
    lazy = SafeDAggerCriterion(gap_threshold=0.5, lazy=True, handback_threshold=0.0625, hidden=[4])
    lazy.bind(BOX1, BOX1)
    lazy.ready = True
    assert not lazy.decide(ctx(np.array([0.25]), np.zeros(1), expert_in_control=True)).expert_acts  # gap 0.0625: back
    assert lazy.decide(ctx(np.array([0.26]), np.zeros(1), expert_in_control=True)).expert_acts
    with pytest.raises(ValueError, match="handback_threshold"):
        SafeDAggerCriterion(gap_threshold=0.1, handback_threshold=0.2)


# -- learner adapters through the real loop ---------------------------------------------------

def train_tiny(tmp_path, crit, learner, *, env="cartpole", expert="cartpole-pd", steps=300, warmup=60, seed=0):
    from gatekit.runs import train

    recipe = load_recipe_dict({
        "name": "tiny", "seed": seed, "env": env, "expert": expert, "criterion": crit, "learner": learner,
        "budget": {"total_steps": steps, "warmup_steps": warmup},
        "eval": {"final_episodes": 1, "in_worker": False},
        "log": {"tensorboard": False, "progress": False, "plots": False},
        "data": {"checkpoint_every": 10_000},
    })
    out = tmp_path / f"run-{crit['id']}-{learner['id']}-{seed}"
    res = train(recipe, out=out)
    assert res.status == "finished" and res.total_steps == steps
    return res, out


def _records(out):
    from gatekit.data import read_log

    _, cols, _ = read_log(out / "records.gkr")
    return cols


@needs_imitation
def test_dagger_adapter_rounds_follow_the_gate(tmp_path):
    from gatekit.learners.imitation import ImitationDAggerLearner

    res, out = train_tiny(tmp_path, {"id": "dagger", "rampdown_rounds": 3, "update_every": 60},
                          {"id": "dagger", "update_every": 60, "batches_per_update": 20, "net_arch": [16]},
                          warmup=80)  # >= one BC batch (64), so the first round trains
    cols = _records(out)
    assert cols["expert_queried"].all()  # DAgger labels every visited state
    assert 0 < res.expert_steps < res.total_steps  # beta decays: the novice acts too
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["learner"]["round"] >= 3 and ck["criterion"]["round"] == ck["learner"]["updates"]
    learner = ImitationDAggerLearner(observation_space=gym.spaces.Box(-5, 5, (4,)), action_space=gym.spaces.Discrete(2),
                                     net_arch=[16])
    learner.load_state_dict(ck["learner"])
    assert learner.trainer.round_num == ck["learner"]["round"]


def test_pvp_adapter_discrete_and_box(tmp_path):
    from gatekit.learners.sb3.pvp import PVPDQN, PVPTD3, PVPLearner

    res, out = train_tiny(tmp_path, {"id": "hg", "rule": "action-gap"},
                          {"id": "pvp", "net_arch": [16], "batch_size": 16, "lr": 1e-3})
    assert res.expert_steps >= 60
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    learner = PVPLearner(observation_space=gym.spaces.Box(-5, 5, (4,)), action_space=gym.spaces.Discrete(2),
                         net_arch=[16], batch_size=16)
    assert isinstance(learner.model, PVPDQN)
    learner.load_state_dict(ck["learner"])
    assert learner.steps == 300
    # the first observe after a resume refills both buffers from the records
    from gatekit.data import RecordStore as Store

    store = Store.open(out / "records.gkr", learner.observation_space, learner.action_space)
    rec = Transition(step=0, episode=0, obs=np.zeros(4, np.float32), novice_action=0, expert_action=None,
                     executed_action=0, intervened=False, expert_queried=False, switched=False, reward=1.0,
                     next_obs=np.zeros(4, np.float32), terminated=False, truncated=False)
    learner.observe(rec, store)
    assert learner.model.human_buffer.size_() == res.expert_steps
    assert learner.model.replay_buffer.size_() == 300 - res.expert_steps
    store.close()

    box = PVPLearner(observation_space=gym.spaces.Box(-8, 8, (3,)), action_space=gym.spaces.Box(-2, 2, (1,)),
                     net_arch=[16], batch_size=16, learning_starts=0, lr=3e-3)
    assert isinstance(box.model, PVPTD3)
    rng = np.random.default_rng(0)
    for i in range(40):  # the expert pushes +1.5, the novice's replaced action was -1.5
        o = rng.uniform(-1, 1, 3).astype(np.float32)
        box.observe(Transition(step=i, episode=0, obs=o, novice_action=np.array([-1.5], np.float32),
                               expert_action=np.array([1.5], np.float32), executed_action=np.array([1.5], np.float32),
                               intervened=True, expert_queried=True, switched=False, reward=0.0, next_obs=o,
                               terminated=False, truncated=False), None)  # type: ignore[arg-type]
    box.model.train(gradient_steps=200, batch_size=16)
    o = torch.as_tensor(rng.uniform(-1, 1, (8, 3)).astype(np.float32))
    q_exp = box.model.critic.q1_forward(o, torch.full((8, 1), 0.75))
    q_nov = box.model.critic.q1_forward(o, torch.full((8, 1), -0.75))
    assert (q_exp > q_nov).all()  # proxy values: the expert's action above the replaced one
    assert box.act(np.zeros(3, np.float32)) > 0  # and the actor follows the critic


def test_sb3_offpolicy_adapter(tmp_path):
    res, out = train_tiny(tmp_path, {"id": "never"},
                          {"id": "sb3-offpolicy", "algo": "sac", "net_arch": [16], "learning_starts": 50, "batch_size": 32},
                          env="pendulum", expert="pendulum-pd", steps=200, warmup=0)
    assert res.expert_steps == 0
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["learner"]["n_updates"] == 150  # one gradient step per env step after learning_starts
    with pytest.raises(ConfigError, match="algo"):
        train_tiny(tmp_path / "bad", {"id": "never"}, {"id": "sb3-offpolicy", "algo": "dqn"}, env="pendulum",
                   expert="pendulum-pd")


def test_dqn_offpolicy_on_echo_discrete(tmp_path):
    res, _ = train_tiny(tmp_path, {"id": "never"},
                        {"id": "sb3-offpolicy", "algo": "dqn", "net_arch": [8], "learning_starts": 20, "batch_size": 16,
                         "exploration_steps": 100},
                        env={"id": "echo", "n_actions": 3}, expert={"id": "echo", "action": 0}, steps=150, warmup=0)
    assert res.total_steps == 150


@pytest.mark.parametrize("crit", [
    {"id": "thrifty", "hidden": [16], "q_hidden": [16], "steps_per_update": 20, "q_steps_per_update": 20,
     "success_on_truncation": True, "alpha": 0.1},
    {"id": "ensemble", "hidden": [16], "steps_per_update": 20, "tau": 0.3, "chi": 0.05},
    {"id": "safedagger", "hidden": [16], "steps_per_update": 20, "lazy": True},
])
def test_robot_gates_run_on_echo(tmp_path, crit):
    learner = {"id": "mlp-bc", "hidden": [16], "iterations": 2, "first_iterations": 20, "batch_size": 64, "lr": 1e-3}
    res, out = train_tiny(tmp_path, crit, learner, env="echo", expert={"id": "echo", "action": [0.0]},
                          steps=250, warmup=30)
    cols = _records(out)
    if crit["id"] == "ensemble":
        assert cols["expert_queried"].all()  # Ensemble-DAgger queries every step
    else:
        novice_steps = ~cols["intervened"]
        assert novice_steps.any()
        assert not cols["expert_queried"][novice_steps].all() or crit["id"] == "safedagger"
    # same seed, same trace
    res2, out2 = train_tiny(tmp_path / "again", crit, learner, env="echo", expert={"id": "echo", "action": [0.0]},
                            steps=250, warmup=30)
    assert np.array_equal(_records(out2)["intervened"], cols["intervened"])


def test_sb3_ppo_adapter_updates_every_rollout(tmp_path):
    res, out = train_tiny(tmp_path, {"id": "never"},
                          {"id": "sb3-ppo", "n_steps": 64, "batch_size": 32, "n_epochs": 2, "net_arch": [16]},
                          steps=200, warmup=0)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["learner"]["updates"] == 3 and ck["learner"]["num_timesteps"] == 200  # 200 // 64 rollouts


def test_thrifty_rescore_resets_thresholds_at_update():
    rows = [([v], np.zeros(1, np.float32), np.array([v], np.float32), True, 0.0, False, i == 39)
            for i, v in enumerate(np.linspace(-1, 1, 40))]
    store = store_with(BOX1, BOX1, rows)
    c = _thrifty(alpha=0.1, rescore=True, min_estimates=25)
    c.update(store, None)  # calibrates
    for v in np.linspace(-1, 1, 30):
        c.decide(ctx(np.zeros(1), np.zeros(1), obs=np.array([v], np.float32)))
    c.q_median = 2.0  # stale: no Q can exceed it
    c.update(store, None)
    assert len(c.estimates) == 30  # re-scored, not cleared
    assert c.q_median == pytest.approx(np.median(c.estimates.values("risk"))) and c.q_median < 1.0
    plain = _thrifty(alpha=0.1)
    plain.update(store, None)
    for v in np.linspace(-1, 1, 30):
        plain.decide(ctx(np.zeros(1), np.zeros(1), obs=np.array([v], np.float32)))
    plain.update(store, None)
    assert len(plain.estimates) == 0  # the paper's rule: each update clears the estimates
