"""SB3's own ``learn()`` on a gated env: the replay buffer holds the executed action, and a
learned gate trains inside ``learn()`` through the callback."""

import warnings

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3 import DQN, SAC, TD3  # noqa: E402
from stable_baselines3.common.buffers import ReplayBuffer  # noqa: E402

from gatekit import InterventionWrapper  # noqa: E402
from gatekit.criteria.aim import AIMCriterion  # noqa: E402
from gatekit.criteria.simple import ActionGapCriterion  # noqa: E402
from gatekit.data import RecordStore  # noqa: E402
from gatekit.experts.classic import CartPoleExpert, PendulumExpert  # noqa: E402
from gatekit.integrations.sb3 import (  # noqa: E402
    ExecutedActionReplayBuffer,
    GatekitCallback,
    buffer_form,
)

STEPS = 300


def _gated(discrete: bool, criterion=None):
    env = gym.make("CartPole-v1") if discrete else gym.make("Pendulum-v1")
    expert = CartPoleExpert(env=env) if discrete else PendulumExpert(env=env)
    store = RecordStore(env.observation_space, env.action_space)
    crit = criterion or ActionGapCriterion(threshold=0.5)
    return InterventionWrapper(env, expert=expert, criterion=crit, store=store), store


def _learn(algo, discrete, buffer_class, steps=STEPS, **kw):
    env, store = _gated(discrete)
    kwargs = {"learning_starts": 100, "batch_size": 32, "policy_kwargs": {"net_arch": [16]}, "seed": 0, **kw}
    if buffer_class is not None:
        kwargs["replay_buffer_class"] = buffer_class
    model = algo("MlpPolicy", env, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.learn(steps)
    return model, store, env


def _stored(model, n):
    return model.replay_buffer.actions[:n, 0]


@pytest.mark.parametrize(("algo", "discrete"), [(SAC, False), (TD3, False), (DQN, True)],
                         ids=["sac", "td3", "dqn"])
def test_learn_stores_the_expert_action_on_every_intervened_step(algo, discrete):
    model, store, env = _learn(algo, discrete, ExecutedActionReplayBuffer)
    n = len(store)
    assert n >= STEPS and model.replay_buffer.pos == n  # every step went through the buffer
    intervened = store.column("intervened").astype(bool)
    assert 0 < intervened.sum() < n  # both kinds of step occur
    stored = _stored(model, n)
    space = env.action_space
    want_exec = np.stack([np.asarray(buffer_form(a, space)).reshape(stored[0].shape)
                          for a in store.column("executed_action")])
    np.testing.assert_allclose(stored, want_exec, atol=1e-6)
    want_expert = np.stack([np.asarray(buffer_form(a, space)).reshape(stored[0].shape)
                            for a in store.column("expert_action")[intervened]])
    np.testing.assert_allclose(stored[intervened], want_expert, atol=1e-6)
    assert model.replay_buffer.executed_replaced == int(intervened.sum())


def test_stock_buffer_stores_the_novice_action_where_the_expert_drove():
    """Why the hook exists: SB3's own buffer keeps the novice's proposal on intervened steps."""
    model, store, env = _learn(SAC, False, None)
    intervened = store.column("intervened").astype(bool)
    stored = _stored(model, len(store))[intervened]
    novice = np.stack([buffer_form(a, env.action_space) for a in store.column("novice_action")[intervened]])
    np.testing.assert_allclose(stored, novice.reshape(stored.shape), atol=1e-6)
    expert = np.stack([buffer_form(a, env.action_space) for a in store.column("expert_action")[intervened]])
    assert not np.allclose(stored, expert.reshape(stored.shape), atol=1e-3)


def test_callback_trains_a_learned_gate_inside_learn_and_warns_about_a_stock_buffer():
    crit = AIMCriterion(hidden=[8], first_steps=20, steps_per_update=5, batch_size=32, delta=0.2, update_every=5)
    env, store = _gated(False, crit)
    model = SAC("MlpPolicy", env, learning_starts=50, batch_size=32, policy_kwargs={"net_arch": [16]}, seed=0,
                replay_buffer_class=ExecutedActionReplayBuffer)
    cb = GatekitCallback(log_every=50)
    model.learn(200, callback=cb)
    labels = int(store.column("intervened").sum())
    assert cb.gate_updates == crit.updates == labels // 5 >= 2  # the gate's own schedule, inside learn()
    assert crit.ready
    stock = SAC("MlpPolicy", _gated(False)[0], learning_starts=50, policy_kwargs={"net_arch": [16]}, seed=0)
    with pytest.warns(UserWarning, match="replay_buffer_class=ExecutedActionReplayBuffer"):
        stock.learn(5, callback=GatekitCallback())
    assert isinstance(stock.replay_buffer, ReplayBuffer)


def test_callback_refuses_an_env_without_a_gate_and_a_learned_gate_without_records():
    model = SAC("MlpPolicy", gym.make("Pendulum-v1"), policy_kwargs={"net_arch": [8]})
    with pytest.raises(ValueError, match="no gatekit InterventionWrapper"):
        model.learn(2, callback=GatekitCallback())
    env = gym.make("Pendulum-v1")
    crit = AIMCriterion(hidden=[8], update_every=10)
    gated = InterventionWrapper(env, expert=PendulumExpert(env=env), criterion=crit)
    model = SAC("MlpPolicy", gated, policy_kwargs={"net_arch": [8]}, replay_buffer_class=ExecutedActionReplayBuffer)
    with pytest.raises(ValueError, match="give the wrapper a store"):
        model.learn(2, callback=GatekitCallback())
