"""AIM: the proxy-Q gate (loss, thresholds, state machine, TD term, checkpoints) and its
learners (BC actor, PVP-style DQN), plus one small end-to-end run."""

from __future__ import annotations

import csv
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from gatekit.config import load_recipe_dict
from gatekit.criteria.aim import AIMCriterion
from gatekit.criteria.distances import mean_squared_gaps as action_gaps
from gatekit.data import RecordStore
from gatekit.envs.toy import EchoEnv
from gatekit.experts.classic import EchoExpert
from gatekit.learners.aim import aim_learner
from gatekit.learners.aim_dqn import AIMDQNLearner
from gatekit.learners.bc import MLPBCLearner
from gatekit.policies import novice_actions
from gatekit.types import Decision, GateContext, Transition
from gatekit.wrappers.intervention import InterventionWrapper

BOX2 = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
OBS3 = gym.spaces.Box(-2.0, 2.0, (3,), np.float32)


def make_store(obs_space, act_space, rows):
    """A store from (obs, novice_action, expert_action | None, intervened, terminated) rows."""
    store = RecordStore(obs_space, act_space)
    for i, (obs, a_n, a_h, intervened, terminated) in enumerate(rows):
        obs = np.asarray(obs, dtype=np.float32)
        store.append(Transition(
            step=i, episode=0, obs=obs, novice_action=a_n, expert_action=a_h,
            executed_action=a_h if intervened else a_n, intervened=intervened,
            expert_queried=a_h is not None, switched=False, reward=0.0, next_obs=obs + 0.1,
            terminated=terminated, truncated=False))
    return store


class TableNovice:
    """A novice whose actions are looked up by the first observation coordinate (zeros for
    observations not in the table, such as the TD term's next observations)."""

    def __init__(self, table):
        self.table = table

    def predict_batch(self, obs):
        return np.stack([self.table.get(round(float(o[0]), 3), np.zeros(2, np.float32)) for o in obs])


def fitted_criterion(**kw):
    c = AIMCriterion(hidden=[16], **kw)
    c.bind(OBS3, BOX2)
    c.ready, c.beta, c.eps = True, 0.5, 0.25
    return c


# -- the proxy-Q loss ------------------------------------------------------------------------
def test_loss_matches_formula_and_labels_only_far_novice_actions():
    torch.manual_seed(0)
    c = AIMCriterion(hidden=[32, 32], lr=2e-2, td=False)
    c.bind(OBS3, BOX2)
    obs = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    a_h = torch.tensor([[0.5, 0.5], [-0.5, 0.5], [0.0, -0.5], [0.5, -0.5]])
    a_n = torch.tensor([[-0.5, -0.5], [-0.5, 0.52], [0.5, 0.5], [0.48, -0.5]])
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])  # rows 1 and 3: the novice is within eps
    loss, info = c.loss(obs, a_h, a_n, mask)
    with torch.no_grad():
        q_h, q_n = c.q(obs, a_h), c.q(obs, a_n)
    expected = ((q_h + 1) ** 2).mean() + (mask * (q_n - 1) ** 2).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert "loss_td" not in info
    for _ in range(200):
        loss, _ = c.loss(obs, a_h, a_n, mask)
        c.optimizer.zero_grad()
        loss.backward()
        c.optimizer.step()
    with torch.no_grad():
        q_h, q_n = c.q(obs, a_h), c.q(obs, a_n)
    assert (q_h < -0.8).all()  # expert actions pushed to -1
    assert (q_n[mask.bool()] > 0.8).all()  # far novice actions pushed to +1
    assert (q_n[~mask.bool()] < 0).all()  # near ones are not: they sit by the expert's -1


def test_action_gaps_and_novice_actions_fallback():
    assert action_gaps(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), BOX2).tolist() == [0.5]
    assert action_gaps(np.array([1, 2]), np.array([1, 0]), gym.spaces.Discrete(3)).tolist() == [0.0, 1.0]

    def one_by_one(obs):  # a plain policy: asked once per observation
        return np.array([obs[0], 0.0])

    out = novice_actions(one_by_one, np.ones((3, 3), np.float32))
    assert out.shape == (3, 2) and out[:, 0].tolist() == [1.0, 1.0, 1.0]

    class Explorer:  # a learner's exploratory act() is never used to re-score the novice
        def act(self, obs):
            raise AssertionError("act() must not be called")

    with pytest.raises(TypeError, match="predict_batch"):
        novice_actions(Explorer(), np.ones((3, 3), np.float32))


# -- thresholds --------------------------------------------------------------------------------
def test_first_update_sets_eps_and_beta_from_a_90_10_split():
    n = 20
    a_h = np.zeros(2, np.float32)
    table, rows = {}, []
    for i in range(n):
        key = round(i / 100, 3)
        gap = 0.01 * i  # d(a_n, a_h) = mean of the squared differences = gap
        table[key] = np.array([math.sqrt(2 * gap), 0.0], np.float32)
        rows.append(([key, 0.0, 0.0], table[key], a_h, True, False))
    store = make_store(OBS3, BOX2, rows)
    c = AIMCriterion(hidden=[16], delta=0.2, first_steps=3, holdout=0.1)
    c.bind(OBS3, BOX2)
    metrics = c.update(store, TableNovice(table))
    gaps = action_gaps(np.stack([table[round(i / 100, 3)] for i in range(n)]), np.zeros((n, 2)), BOX2)
    assert c.ready
    assert c.eps == pytest.approx(gaps[:18].mean())  # mean gap over the first 90%
    assert metrics["eps"] == pytest.approx(c.eps)
    held_obs, held_act = store.obs[18:], np.stack([table[round(i / 100, 3)] for i in (18, 19)])
    assert c.beta == pytest.approx(float(np.quantile(c.q_values(held_obs, held_act), 0.8)))


def test_beta_is_re_estimated_at_episode_end_only_with_more_than_min_estimates():
    c = fitted_criterion(delta=0.1, min_estimates=25)
    values = np.linspace(-1.0, 1.0, 26)

    def feed(v):
        ctx = GateContext(obs=np.zeros(3, np.float32), novice_action=np.zeros(2, np.float32),
                          expert_in_control=False, episode_step=0, expert_fn=lambda o: None)
        c.observe(ctx, Transition(step=0, episode=0, obs=ctx.obs, novice_action=ctx.novice_action,
                                  expert_action=None, executed_action=ctx.novice_action, intervened=False,
                                  expert_queried=False, switched=False, reward=0.0, next_obs=ctx.obs,
                                  terminated=False, truncated=False, score=float(v)))

    for v in values[:25]:
        feed(v)
    c.end_episode()
    assert c.beta == 0.5  # exactly 25 estimates: unchanged
    feed(values[25])
    c.end_episode()
    assert c.beta == pytest.approx(float(np.quantile(values, 0.9)))
    # Steps where the expert held control are not estimates.
    ctx = GateContext(obs=np.zeros(3, np.float32), novice_action=np.zeros(2, np.float32),
                      expert_in_control=True, episode_step=0, expert_fn=lambda o: np.zeros(2, np.float32))
    before = len(c.estimates)
    c.observe(ctx, Transition(step=0, episode=0, obs=ctx.obs, novice_action=ctx.novice_action,
                              expert_action=np.zeros(2, np.float32), executed_action=ctx.novice_action,
                              intervened=False, expert_queried=True, switched=False, reward=0.0,
                              next_obs=ctx.obs, terminated=False, truncated=False, score=0.0))
    assert len(c.estimates) == before


@pytest.mark.parametrize("beta_update", ["paper", "rescore"])
def test_estimates_are_cleared_by_updates_only_in_paper_mode(beta_update):
    c = fitted_criterion(beta_update=beta_update, steps_per_update=1)
    c.q_values = c._fast_q = lambda obs, acts: np.asarray(obs)[:, 0].astype(np.float64)  # a stub Q: the first coordinate
    rows = [([0.1 * i, 0, 0], np.zeros(2, np.float32), np.zeros(2, np.float32), True, False) for i in range(4)]
    store = make_store(OBS3, BOX2, rows)
    obs = np.zeros(3, np.float32)
    for i in range(30):
        obs = np.array([i / 30, 0, 0], np.float32)
        ctx = GateContext(obs=obs, novice_action=np.zeros(2, np.float32), expert_in_control=False,
                          episode_step=i, expert_fn=lambda o: None)
        v = c.takeover(ctx)
        c.observe(ctx, Transition(step=i, episode=0, obs=obs, novice_action=ctx.novice_action, expert_action=None,
                                  executed_action=ctx.novice_action, intervened=v.expert_acts, expert_queried=False,
                                  switched=v.expert_acts, reward=0.0, next_obs=obs, terminated=False,
                                  truncated=False, score=v.score))
    assert len(c.estimates) == 30  # switching steps count too: the novice held control when asked
    c.update(store, TableNovice({round(0.1 * i, 3): np.zeros(2, np.float32) for i in range(4)}))
    if beta_update == "paper":
        assert len(c.estimates) == 0
        c.end_episode()
        assert c.beta == 0.5
    else:
        assert len(c.estimates) == 30
        c.end_episode()  # rescored with the (stub) current Q
        assert c.beta == pytest.approx(float(np.quantile(np.arange(30) / 30, 0.95)))
        assert len(c.estimates) == 0


# -- the gate's state machine ---------------------------------------------------------------------
def test_takeover_and_handback_edges_through_the_wrapper():
    env = EchoEnv(dim=1, horizon=50, noise=0.0)
    c = AIMCriterion(hidden=[8])
    w = InterventionWrapper(env, expert=EchoExpert(env=env, action=[0.0]), criterion=c)
    c.ready, c.beta, c.eps = True, 0.5, 0.25
    c.q_values = c._fast_q = lambda obs, acts: np.asarray(acts, np.float64).reshape(len(acts), -1)[:, 0]  # Q = a_n
    w.reset(seed=0)
    plan = [  # (novice action, expert acts?, switched?)
        (0.5, False, False),   # Q == beta: no take-over (strict >)
        (0.75, True, True),    # Q > beta: the expert takes over on this step
        (0.75, True, False),   # d = 0.5625 > eps: the expert keeps control
        (0.5, False, False),   # d = 0.25 == eps: handed back, the novice acts on this step
        (-0.9, False, False),  # Q < beta
    ]
    for a, expert_acts, switched in plan:
        _, _, _, _, info = w.step(np.array([a], np.float32))
        g = info["gatekit"]
        assert (g["intervened"], g["switched"]) == (expert_acts, switched), a
        assert g["executed_action"].tolist() == pytest.approx([0.0] if expert_acts else [a])
    assert c.estimates.values("q").tolist() == pytest.approx([0.5, 0.75, -0.9])  # the steps the novice held when asked
    # Robot-gated: the expert looked only while in control (the two steps it acted, and the
    # hand-back step, where its action is compared with the novice's).
    assert w.totals.expert_queries == 3


def test_discrete_handback_needs_equal_actions_and_batch_matches_single():
    space = gym.spaces.Box(-2, 2, (3,), np.float32)
    c = AIMCriterion(hidden=[8])
    c.bind(space, gym.spaces.Discrete(3))
    c.ready, c.beta, c.eps = True, 0.0, 0.9  # eps is a mismatch rate: only equality hands back
    ctx = lambda a, expert: GateContext(obs=np.full(3, 0.1 * a, np.float32), novice_action=a,  # noqa: E731
                                        expert_in_control=expert, episode_step=0, expert_fn=lambda o: 1)
    assert c.handback(ctx(2, True)).expert_acts
    assert not c.handback(ctx(1, True)).expert_acts
    ctxs = [ctx(0, False), ctx(2, True), ctx(1, True), ctx(2, False)]
    batch, single = c.decide_batch(ctxs), [c.decide(x) for x in ctxs]
    assert [d.expert_acts for d in batch] == [d.expert_acts for d in single]
    np.testing.assert_allclose([d.score for d in batch], [d.score for d in single], rtol=1e-5)


def test_unfitted_gate_keeps_the_expert_in_control():
    c = AIMCriterion(hidden=[8])
    c.bind(OBS3, BOX2)
    for expert_in_control in (False, True):
        ctx = GateContext(obs=np.zeros(3, np.float32), novice_action=np.zeros(2, np.float32),
                          expert_in_control=expert_in_control, episode_step=0,
                          expert_fn=lambda o: np.zeros(2, np.float32))
        assert c.decide(ctx).expert_acts
        assert c.decide_batch([ctx]) == [Decision(expert_acts=True)]


@pytest.mark.parametrize("revisits", [None, 1, 2])
def test_revisit_check_takes_over_on_a_repeated_observation_only_when_on(revisits):
    space = gym.spaces.Box(-2, 2, (3,), np.float32)
    c = AIMCriterion(hidden=[8], revisits=revisits)
    c.bind(space, gym.spaces.Discrete(3))
    c.ready, c.beta, c.eps = True, 10.0, 0.0  # Q alone never takes over

    def step(x):
        obs = np.full(3, x, np.float32)
        ctx = GateContext(obs=obs, novice_action=0, expert_in_control=False, episode_step=0, expert_fn=lambda o: 1)
        decision = c.decide(ctx)
        record = Transition(step=0, episode=0, obs=obs, novice_action=0, expert_action=None, executed_action=0,
                            intervened=False, expert_queried=False, switched=False, reward=0.0, next_obs=obs,
                            terminated=False, truncated=False, score=decision.score)
        c.observe(ctx, record)
        return decision.expert_acts

    c.reset(seed=0)
    first = [step(x) for x in (0.1, 0.2, 0.1, 0.3, 0.1)]  # 0.1 seen before at the 3rd and 5th step
    expected = {None: [False] * 5, 1: [False, False, True, False, True], 2: [False] * 4 + [True]}[revisits]
    assert first == expected
    assert c.revisit_takeovers == sum(expected)
    assert len(c.estimates) == 5  # its take-overs keep Q as the score: beta's estimates are unchanged
    c.end_episode()
    c.reset(seed=1)
    assert not step(0.1)  # a new episode starts with an empty memory
    ctx = GateContext(obs=np.full(3, 0.1, np.float32), novice_action=0, expert_in_control=False,
                      episode_step=1, expert_fn=lambda o: 1)
    (batch,), single = c.decide_batch([ctx]), c.decide(ctx)
    assert batch.expert_acts == single.expert_acts
    assert batch.score == pytest.approx(single.score, rel=1e-5)


# -- the TD term ------------------------------------------------------------------------------------
def _td_batch(c, terminated, discrete=False):
    g = torch.Generator().manual_seed(1)
    batch = {"obs": torch.randn(6, 3, generator=g), "next_obs": torch.randn(6, 3, generator=g),
             "terminated": torch.tensor(terminated)}
    if discrete:
        batch["action"] = torch.tensor([0, 1, 2, 0, 1, 2])
        batch["next_action"] = torch.tensor([2, 2, 1, 0, 0, 1])
    else:
        batch["action"] = torch.rand(6, 2, generator=g) * 2 - 1
        batch["next_action"] = torch.rand(6, 2, generator=g) * 2 - 1
    return batch


@pytest.mark.parametrize("discrete, td_next", [(False, "novice"), (True, "novice"), (True, "max")])
def test_td_targets_bootstrap_except_at_terminals(discrete, td_next):
    act_space = gym.spaces.Discrete(3) if discrete else BOX2
    c = AIMCriterion(hidden=[16], gamma=0.9, td_next=td_next)
    c.bind(OBS3, act_space)
    with torch.no_grad():  # make the target differ from the online net
        for p in c.q_target.parameters():
            p.add_(0.3)
    obs_e = torch.zeros(2, 3)
    a = torch.tensor([0, 1]) if discrete else torch.zeros(2, 2)
    term = [True, False, True, False, False, True]
    batch = _td_batch(c, term, discrete)
    _, info = c.loss(obs_e, a, a, torch.zeros(2), batch)
    with torch.no_grad():
        q_sa = c.q(batch["obs"], batch["action"])
        if td_next == "max":
            nxt = c.q_target.all_actions(batch["next_obs"]).max(1).values
        else:
            nxt = c.q_target(batch["next_obs"], batch["next_action"])
        target = torch.where(torch.tensor(term), torch.zeros(6), 0.9 * nxt)
    assert info["loss_td"] == pytest.approx(float(((q_sa - target) ** 2).mean()), rel=1e-5)


@pytest.mark.parametrize("td", [True, False])
def test_update_includes_the_td_term_only_when_on(td):
    rows = [([0.1 * i, 0, 0], np.zeros(2, np.float32), np.full(2, 0.5, np.float32), i % 2 == 0, i == 7) for i in range(8)]
    store = make_store(OBS3, BOX2, rows)
    c = AIMCriterion(hidden=[16], td=td, first_steps=2)
    c.bind(OBS3, BOX2)
    before = [p.detach().clone() for p in c.q_target.parameters()]
    metrics = c.update(store, TableNovice({round(0.1 * i, 3): np.zeros(2, np.float32) for i in range(8)}))
    assert ("loss_td" in metrics) == td
    moved = any(not torch.equal(b, p) for b, p in zip(before, c.q_target.parameters(), strict=True))
    assert moved == td  # the target network is soft-updated only with TD


# -- checkpoints ---------------------------------------------------------------------------------
def _roundtrip(state, tmp_path):
    torch.save(state, tmp_path / "s.pt")
    return torch.load(tmp_path / "s.pt", weights_only=True)


@pytest.mark.parametrize("beta_update", ["paper", "rescore"])
def test_criterion_state_dict_roundtrip(tmp_path, beta_update):
    rows = [([0.1 * i, 0, 0], np.zeros(2, np.float32), np.full(2, 0.5, np.float32), True, False) for i in range(10)]
    store = make_store(OBS3, BOX2, rows)
    novice = TableNovice({round(0.1 * i, 3): np.full(2, 0.1 * i, np.float32) for i in range(10)})
    c = AIMCriterion(hidden=[16], first_steps=3, beta_update=beta_update)
    c.bind(OBS3, BOX2)
    c.update(store, novice)
    ctx = GateContext(obs=np.ones(3, np.float32), novice_action=np.zeros(2, np.float32), expert_in_control=False,
                      episode_step=0, expert_fn=lambda o: None)
    v = c.takeover(ctx)
    c.observe(ctx, Transition(step=0, episode=0, obs=ctx.obs, novice_action=ctx.novice_action, expert_action=None,
                              executed_action=ctx.novice_action, intervened=False, expert_queried=False,
                              switched=False, reward=0.0, next_obs=ctx.obs, terminated=False, truncated=False,
                              score=v.score))
    state = _roundtrip(c.state_dict(), tmp_path)
    d = AIMCriterion(hidden=[16], first_steps=3, beta_update=beta_update)
    d.load_state_dict(state)  # before bind: applied when the networks exist
    d.bind(OBS3, BOX2)
    assert (d.eps, d.beta, d.ready) == (c.eps, c.beta, c.ready)
    assert d.estimates.values("q").tolist() == c.estimates.values("q").tolist()
    assert d.estimates.has_inputs() == c.estimates.has_inputs() == (beta_update == "rescore")
    probe = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    acts = np.zeros((5, 2), np.float32)
    np.testing.assert_allclose(d.q_values(probe, acts), c.q_values(probe, acts))
    assert d.np_random.random() == c.np_random.random()
    c.update(store, novice)
    d.update(store, novice)  # same optimizer state and RNG: the same next fit
    np.testing.assert_allclose(d.q_values(probe, acts), c.q_values(probe, acts), rtol=1e-5)


@pytest.mark.parametrize("kind", ["mlp-bc", "aim-bc", "aim-dqn"])
def test_learner_state_dict_roundtrip(tmp_path, kind):
    disc = gym.spaces.Discrete(3)
    act_space = disc if kind == "aim-dqn" else BOX2
    rows = [([0.1 * i, 0, 0], 1 if kind == "aim-dqn" else np.zeros(2, np.float32),
             2 if kind == "aim-dqn" else np.full(2, 0.5, np.float32), i % 3 == 0, False) for i in range(30)]
    store = make_store(OBS3, act_space, rows)

    def build():
        if kind == "mlp-bc":
            return MLPBCLearner(observation_space=OBS3, action_space=act_space, hidden=[16], first_iterations=2, iterations=1)
        if kind == "aim-bc":
            return aim_learner(observation_space=OBS3, action_space=act_space, hidden=[16], first_iterations=2, iterations=1)
        return AIMDQNLearner(observation_space=OBS3, action_space=act_space, hidden=[16],
                             first_steps=3, update_steps=2, batch_size=8)

    a = build()
    a.update(store)
    state = _roundtrip(a.state_dict(), tmp_path)
    b = build()
    b.load_state_dict(state)
    assert b.updates == a.updates == 1
    probe = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_array_equal(a.predict_batch(probe), b.predict_batch(probe))
    a.update(store)
    b.update(store)
    np.testing.assert_array_equal(a.predict_batch(probe), b.predict_batch(probe))


# -- learners ----------------------------------------------------------------------------------------
def test_bc_learner_schedule_first_fit_and_policy_snapshot():
    rows = [([0.1 * (i % 10), 0, 0], np.zeros(2, np.float32), np.array([0.1 * (i % 10), -0.5], np.float32),
             True, False) for i in range(30)]
    store = make_store(OBS3, BOX2, rows[:25])
    learner = aim_learner(observation_space=OBS3, action_space=BOX2, hidden=[32], lr=1e-2,
                          first_iterations=40, iterations=2, steps_per_iteration=5)
    assert learner.wants_update(store)  # 25 labels
    learner.update(store)
    adam_steps = learner.trainer.optimizer.state_dict()["state"][0]["step"]
    assert int(adam_steps) == 40 * 5  # the first fit is the long one
    assert not learner.wants_update(store)
    snapshot = learner.policy()
    before = snapshot(np.array([0.5, 0, 0], np.float32))
    assert before.shape == (2,) and abs(float(before[1]) + 0.5) < 0.1
    learner.update(store)
    assert int(learner.trainer.optimizer.state_dict()["state"][0]["step"]) == 40 * 5 + 2 * 5
    np.testing.assert_array_equal(snapshot(np.array([0.5, 0, 0], np.float32)), before)  # a deep copy


def test_dqn_novice_learns_the_expert_action_from_proxy_values():
    disc = gym.spaces.Discrete(3)
    # Expert steps: the expert chose 2 where the novice proposed 0; novice steps in between.
    rows = [([0.1 * (i % 10), 0, 0], 0, 2 if i % 2 == 0 else None, i % 2 == 0, i % 10 == 9) for i in range(40)]
    store = make_store(OBS3, disc, rows)
    learner = AIMDQNLearner(observation_space=OBS3, action_space=disc, hidden=[32], lr=1e-2,
                            first_steps=150, batch_size=32)
    learner.update(store)
    acts = learner.predict_batch(store.obs[::2])
    assert (acts == 2).all()
    values = learner.dqn.q.all_actions(torch.as_tensor(np.array(store.obs[::2])))
    assert (values[:, 2] > values[:, 0]).all()
    assert learner.policy()(np.array(store.obs[0])) == 2
    with pytest.raises(ValueError, match="needs a Discrete"):
        AIMDQNLearner(observation_space=OBS3, action_space=BOX2)
    with pytest.warns(DeprecationWarning, match="aim-dqn"):  # the 0.1 spelling still builds it
        old = aim_learner(observation_space=OBS3, action_space=disc, novice="dqn", dqn_hidden=[32], dqn_batch_size=32)
    assert isinstance(old, AIMDQNLearner) and old.dqn.batch_size == 32


@pytest.mark.parametrize("kwargs, match", [
    ({"delta": 0.0}, "delta"), ({"holdout": 1.0}, "holdout"), ({"hidden": [0]}, "hidden"),
    ({"beta_update": "x"}, "beta_update"), ({"gamma": 1.0}, "gamma"), ({"td_next": "min"}, "td_next"),
    ({"revisits": 0}, "revisits"), ({"revisits": True}, "revisits"), ({"revisits": 1.5}, "revisits"),
])
def test_criterion_argument_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AIMCriterion(**kwargs)


# -- end to end -------------------------------------------------------------------------------------
def test_small_run_takeover_rate_falls_and_novice_improves(tmp_path):
    from gatekit.runs import train

    recipe = load_recipe_dict({
        "name": "aim_tiny", "seed": 0,
        "env": {"id": "pendulum"}, "expert": {"id": "pendulum-pd"},
        "criterion": {"id": "aim", "delta": 0.1, "hidden": [64, 64], "beta_update": "rescore",
                      "steps_per_update": 25, "first_steps": 300},
        "learner": {"id": "aim", "hidden": [64, 64], "lr": 1e-3, "first_iterations": 100},
        "budget": {"total_steps": 2400, "warmup_steps": 200},
        "eval": {"every_steps": 400, "episodes": 4, "final_episodes": 8, "in_worker": False},
        "log": {"tensorboard": False, "progress": False, "plots": False},
    })
    res = train(recipe, out=tmp_path / "run", progress=False)
    assert res.status == "finished" and res.total_steps == 2400
    rows = list(csv.DictReader(open(tmp_path / "run" / "progress.csv")))
    steps = np.array([int(r["step"]) for r in rows])
    experts = np.array([int(r["expert_steps"]) for r in rows])
    lengths = np.array([int(r["length"]) for r in rows])
    first, second = steps <= 1200, steps > 1200
    rate1, rate2 = experts[first].sum() / lengths[first].sum(), experts[second].sum() / lengths[second].sum()
    assert rate2 < 0.6 * rate1, (rate1, rate2)
    evals = res.evaluations
    assert evals[-1].get("return") > evals[0].get("return") + 100, evals


def test_single_decisions_use_a_numpy_copy_of_q_that_matches_torch():
    c = AIMCriterion(hidden=[32, 16])
    c.bind(OBS3, BOX2)
    c.ready, c.beta, c.eps = True, 0.0, 0.1
    rng = np.random.default_rng(0)
    obs, acts = rng.normal(size=(20, 3)).astype(np.float32), rng.uniform(-1, 1, (20, 2)).astype(np.float32)
    single = [c.decide(GateContext(obs=o, novice_action=a, expert_in_control=False, episode_step=0,
                                   expert_fn=lambda _: None)).score for o, a in zip(obs, acts, strict=True)]
    np.testing.assert_allclose(single, c.q_values(obs, acts), rtol=1e-5, atol=1e-6)
    # after a fit the copy is rebuilt: decisions follow the new Q
    rows = [([0.1 * i, 0, 0], np.zeros(2, np.float32), np.full(2, 0.5, np.float32), True, False) for i in range(10)]
    c.ready = False
    c.update(make_store(OBS3, BOX2, rows), TableNovice({}))
    again = [c.decide(GateContext(obs=o, novice_action=a, expert_in_control=False, episode_step=0,
                                  expert_fn=lambda _: None)).score for o, a in zip(obs, acts, strict=True)]
    np.testing.assert_allclose(again, c.q_values(obs, acts), rtol=1e-5, atol=1e-6)
    assert not np.allclose(again, single)
