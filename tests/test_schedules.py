"""Every learned gate learns with every learner: the gate owns its update schedule.

Before, a learned criterion trained only when the *learner* asked for an update: with an SB3
learner (or PVP) it trained at most once, and with ``warmup_steps: 0`` never, so AIM left the
expert in control for the whole run. Each pairing below runs through the real loop with no
warm-up and checks that the gate trains on its own schedule, more than once, and that its
decisions change once it has trained (the expert no longer acts on every step).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from gatekit.config import load_recipe_dict
from gatekit.criteria.aim import AIMCriterion
from gatekit.criteria.thrifty import ThriftyCriterion
from gatekit.data import RecordStore, read_log
from gatekit.learners.sb3.offpolicy import SB3OffPolicyLearner
from gatekit.schedules import EveryKLabels, EveryNSteps
from gatekit.types import Transition
from tests.recipes import needs_imitation

K = 10  # the gates retrain every K new expert labels

CRITERIA = {
    "aim": {"id": "aim", "hidden": [8], "first_steps": 20, "steps_per_update": 5, "batch_size": 32,
            "delta": 0.2, "update_every": K},
    "thrifty": {"id": "thrifty", "members": 2, "hidden": [8], "q_hidden": [8], "steps_per_update": 5,
                "q_steps_per_update": 5, "alpha": 0.2, "success_on_truncation": True, "update_every": K},
    "ensemble": {"id": "ensemble", "members": 2, "hidden": [8], "steps_per_update": 5, "tau": 5.0, "chi": 5.0,
                 "update_every": K},
    "safedagger": {"id": "safedagger", "hidden": [8], "steps_per_update": 5, "gap_threshold": 0.5,
                   "update_every": K},
    "dagger": {"id": "dagger", "schedule": "exponential", "decay": 0.5, "update_every": K},
}

BOX_LEARNERS = {
    "bc": {"id": "bc", "update_every": K, "batches_per_update": 2, "batch_size": 8, "net_arch": [8]},
    "mlp-bc": {"id": "mlp-bc", "hidden": [8], "update_every": K, "iterations": 1, "first_iterations": 2,
               "batch_size": 32},
    "aim": {"id": "aim", "hidden": [8], "update_every": K, "iterations": 1, "first_iterations": 2, "batch_size": 32},
    "dagger": {"id": "dagger", "update_every": K, "batches_per_update": 2, "batch_size": 8, "net_arch": [8]},
    "sac": {"id": "sb3-offpolicy", "algo": "sac", "net_arch": [8], "learning_starts": 20, "batch_size": 16},
    "td3": {"id": "sb3-offpolicy", "algo": "td3", "net_arch": [8], "learning_starts": 20, "batch_size": 16},
    "ppo": {"id": "sb3-ppo", "n_steps": 32, "batch_size": 16, "n_epochs": 1, "net_arch": [8]},
    "pvp": {"id": "pvp", "net_arch": [8], "batch_size": 16},
}
DISCRETE_LEARNERS = {
    "aim-dqn": {"id": "aim-dqn", "hidden": [8], "batch_size": 16, "steps_per_env_step": 1, "update_every": K},
    "dqn": {"id": "sb3-offpolicy", "algo": "dqn", "net_arch": [8], "learning_starts": 20, "batch_size": 16,
            "exploration_steps": 50},
    "pvp-dqn": {"id": "pvp", "net_arch": [8], "batch_size": 16},
}
PAIRS = ([(c, lr, False) for c in CRITERIA for lr in BOX_LEARNERS]
         + [(c, lr, True) for c in CRITERIA for lr in DISCRETE_LEARNERS])
IMITATION_LEARNERS = {"bc", "dagger"}  # imitation's learners (its own gymnasium 0.29 stack)


def _run(tmp_path, crit, learner, discrete, steps=160):
    from gatekit.runs import train

    # Box: a swing-up the novice cannot learn in a few steps, so take-overs (and labels) go on.
    env = {"id": "echo", "n_actions": 3} if discrete else "pendulum"
    expert = {"id": "echo", "action": 0} if discrete else "pendulum-pd"
    recipe = load_recipe_dict({
        "name": "pair", "seed": 0, "env": env, "expert": expert, "criterion": crit, "learner": learner,
        "budget": {"total_steps": steps, "warmup_steps": 0},
        "eval": {"final_episodes": 0, "in_worker": False},
        "log": {"tensorboard": False, "progress": False, "plots": False},
    })
    out = tmp_path / "run"
    res = train(recipe, out=out)
    assert res.status == "finished" and res.total_steps == steps
    return out


@pytest.mark.parametrize(("crit", "learner", "discrete"),
                         [pytest.param(c, lr, d, marks=needs_imitation if lr in IMITATION_LEARNERS and not d else ())
                          for c, lr, d in PAIRS],
                         ids=[f"{c}+{lr}" for c, lr, _ in PAIRS])
def test_gate_trains_on_its_own_schedule_with_every_learner(tmp_path, crit, learner, discrete):
    learners = DISCRETE_LEARNERS if discrete else BOX_LEARNERS
    out = _run(tmp_path, CRITERIA[crit], learners[learner], discrete)
    state = torch.load(out / "checkpoint.pt", weights_only=True)["criterion"]
    trained = state["round"] if crit == "dagger" else state["updates"]
    _, cols, _ = read_log(out / "records.gkr")
    labels = int(np.count_nonzero(cols["expert_queried" if crit in ("ensemble", "dagger") else "intervened"]))
    assert trained == labels // K  # exactly on its schedule: every K new labels, whatever the learner
    assert trained >= 2, f"the {crit} gate trained {trained} times with the {learner} learner"
    intervened = np.asarray(cols["intervened"], dtype=bool)
    # Unready (no warm-up), the expert acts on the first steps; once trained, the gate lets the
    # novice act: its decisions changed.
    assert intervened[:K].all()
    assert not intervened[K:].all(), f"the {crit} gate never handed control to the {learner} learner"


def test_gate_rescores_the_novice_deterministically():
    """A learned gate re-scores the novice with ``predict_batch`` (no exploration, no RNG):
    SAC's ``act`` samples, its ``predict_batch`` is the mean action."""
    obs_space, act_space = gym.spaces.Box(-2, 2, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    learner = SB3OffPolicyLearner(observation_space=obs_space, action_space=act_space, algo="sac", net_arch=[8])
    obs = np.linspace(-1, 1, 8, dtype=np.float32).reshape(-1, 1)
    first, again = learner.predict_batch(obs), learner.predict_batch(obs)
    np.testing.assert_array_equal(first, again)
    sampled = np.stack([learner.act(o) for o in obs])
    assert not np.allclose(sampled, first)  # act() explores; the gate never sees it

    store = RecordStore(obs_space, act_space)
    for i, o in enumerate(obs):
        store.append(Transition(step=i, episode=0, obs=o, novice_action=np.zeros(1, np.float32),
                                expert_action=np.full(1, 0.5, np.float32), executed_action=np.full(1, 0.5, np.float32),
                                intervened=True, expert_queried=True, switched=False, reward=0.0, next_obs=o,
                                terminated=False, truncated=False))
    gate = AIMCriterion(hidden=[8], first_steps=2, td=False)
    gate.bind(obs_space, act_space)
    rng_before = torch.get_rng_state()
    gate.update(store, learner)
    assert gate.ready
    assert torch.equal(torch.get_rng_state(), rng_before)  # the novice's forward pass drew nothing


def test_every_k_labels_counts_its_own_kind_of_label():
    obs_space, act_space = gym.spaces.Box(-1, 1, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    store = RecordStore(obs_space, act_space)
    for i in range(30):  # the expert labels every step and acts on every third
        a = np.zeros(1, np.float32)
        store.append(Transition(step=i, episode=0, obs=a, novice_action=a, expert_action=a, executed_action=a,
                                intervened=i % 3 == 0, expert_queried=True, switched=False, reward=0.0,
                                next_obs=a, terminated=False, truncated=False))
    intervened, queried = EveryKLabels(k=10, labels="intervened"), EveryKLabels(k=10, labels="queried")
    assert (store.count("intervened"), store.count("queried")) == (10, 30)
    assert intervened.due_in(store) and queried.due_in(store)
    intervened.mark_in(store)
    queried.mark_in(store)
    assert (intervened.last, queried.last) == (10, 30)
    with pytest.raises(ValueError, match="update_every"):
        EveryKLabels(k=0)
    with pytest.raises(ValueError, match="labels"):
        EveryKLabels(k=1, labels="everything")  # type: ignore[arg-type]


def test_thrifty_release_schedule_retrains_every_n_env_steps_whatever_the_labels(tmp_path):
    """Thrifty-DAgger's release retrains once per iteration of a fixed number of env steps
    (``obs_per_iter``), not every K labels: ``iteration_steps`` is that schedule."""
    crit = {k: v for k, v in CRITERIA["thrifty"].items() if k != "update_every"}
    out = _run(tmp_path, {**crit, "iteration_steps": 40, "fresh": True}, BOX_LEARNERS["mlp-bc"], False)
    state = torch.load(out / "checkpoint.pt", weights_only=True)["criterion"]
    _, cols, _ = read_log(out / "records.gkr")
    labels = int(np.count_nonzero(cols["intervened"]))
    assert state["updates"] == 160 // 40 and state["schedule_last"] == 160
    assert labels // K != 160 // 40  # the label schedule would have trained another number of times
    with pytest.raises(ValueError, match="not both"):
        ThriftyCriterion(update_every=25, iteration_steps=2000)


def test_every_n_steps_counts_env_steps():
    obs_space, act_space = gym.spaces.Box(-1, 1, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    store = RecordStore(obs_space, act_space)
    a = np.zeros(1, np.float32)
    for i in range(30):  # the expert acts on none of them: labels do not matter
        store.append(Transition(step=i, episode=0, obs=a, novice_action=a, expert_action=a, executed_action=a,
                                intervened=False, expert_queried=False, switched=False, reward=0.0,
                                next_obs=a, terminated=False, truncated=False))
    s = EveryNSteps(n=20)
    assert s.due_in(store)
    s.mark_in(store)
    assert s.last == 30 and not s.due(49) and s.due(50)
    with pytest.raises(ValueError, match="iteration_steps"):
        EveryNSteps(n=0)
