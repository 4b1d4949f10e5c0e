"""``env.n_envs``: several envs (env 0 in the run's process, the others in worker processes), one gate
deciding for the batch."""

from __future__ import annotations

import numpy as np
import pytest

from gatekit.config import load_recipe_dict
from gatekit.data import read_log
from gatekit.errors import ConfigError
from gatekit.experts.base import Expert
from gatekit.runs import train


def _recipe(n_envs, *, steps=240, learner=None, criterion=None, env=None, expert=None, seed=0):
    return load_recipe_dict({
        "name": "par", "seed": seed,
        "env": {**(env or {"id": "echo", "dim": 1, "horizon": 12}), "n_envs": n_envs},
        "expert": expert or {"id": "echo", "action": [0.0]},
        "criterion": criterion or {"id": "action-gap", "threshold": 0.05},
        "learner": learner or {"id": "mlp-bc", "hidden": [8], "iterations": 1, "first_iterations": 2, "batch_size": 32},
        "budget": {"total_steps": steps, "warmup_steps": 20},
        "eval": {"final_episodes": 2, "in_worker": False},
        "log": {"tensorboard": False, "progress": False, "plots": False},
    })


def test_two_envs_record_every_step_once_with_their_env_index(tmp_path):
    res = train(_recipe(2), out=tmp_path / "a")
    assert res.status == "finished" and res.total_steps == 240
    _, cols, _ = read_log(tmp_path / "a" / "records.gkr")
    assert cols["step"].tolist() == list(range(240))  # global step ids, in order
    assert set(cols["env"].tolist()) == {0, 1} and int((cols["env"] == 0).sum()) == 120
    assert cols["intervened"][:20].all()  # the warm-up counts steps over both envs
    for e in (0, 1):  # each env's episodes are whole: 12 steps, ids never shared between envs
        mine = cols["episode"][cols["env"] == e]
        assert all(np.count_nonzero(mine == ep) == 12 for ep in np.unique(mine))
    assert not set(cols["episode"][cols["env"] == 0]) & set(cols["episode"][cols["env"] == 1])
    assert res.episodes == 20 and res.expert_queries == 240  # human-gated: every step queried

    again = train(_recipe(2), out=tmp_path / "b")  # deterministic for a given n_envs
    _, cols2, _ = read_log(tmp_path / "b" / "records.gkr")
    for name in cols:
        np.testing.assert_array_equal(cols[name], cols2[name], err_msg=name)
    assert again.to_json()["expert_steps"] == res.expert_steps


def test_env_0_steps_in_the_run_s_own_process_with_the_records_of_the_all_worker_layout(tmp_path, monkeypatch):
    """Env 0 and its expert live in the run's process (n envs, n - 1 worker processes), and the
    records are the same as with every env in a worker: where an env lives changes no draw."""
    import functools

    import gatekit.runs.loop as loop
    from gatekit.config import Component
    from gatekit.runs.envs import EnvWorkers

    comp, expert = Component(id="echo", kwargs={"dim": 1, "horizon": 12}), Component(id="echo", kwargs={"action": [0.0]})
    for here, processes in ((True, 2), (False, 3)):
        workers = EnvWorkers(comp, expert, 3, seed=0, here=here)
        try:
            assert workers.n == 3 and workers.processes == processes
            first = [workers.call(i, "reset", 5)[0].tolist() for i in range(3)]
            assert first[0] == first[1] == first[2]  # same seed, same episode, wherever the env lives
            stepped = dict(workers.step_each({2: np.zeros(1, np.float32), 0: np.zeros(1, np.float32)}))
            assert list(stepped) == [2, 0]  # in the order asked
        finally:
            workers.close()

    crit = {"id": "aim", "hidden": [8], "first_steps": 10, "steps_per_update": 2, "batch_size": 32, "update_every": 10}
    here = train(_recipe(2, criterion=crit), out=tmp_path / "here")
    monkeypatch.setattr(loop, "EnvWorkers", functools.partial(EnvWorkers, here=False))
    apart = train(_recipe(2, criterion=crit), out=tmp_path / "apart")
    _, a, _ = read_log(tmp_path / "here" / "records.gkr")
    _, b, _ = read_log(tmp_path / "apart" / "records.gkr")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert here.expert_steps == apart.expert_steps


class NoisyEcho(Expert):
    """A stochastic expert (its noise from ``np_random``, re-seeded each episode) that can be made
    to fail on its ``fail_at``-th action."""

    def __init__(self, *, env, fail_at: int = 0) -> None:
        super().__init__(env.observation_space, env.action_space)
        self.fail_at, self.calls = fail_at, 0

    def act(self, obs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the expert broke")
        return (0.1 * self.np_random.normal(size=self.action_space.shape)).astype(np.float32)


NOISY = "tests.test_parallel_envs:NoisyEcho"
AIM_GATE = {"id": "aim", "hidden": [8], "first_steps": 10, "steps_per_update": 2, "batch_size": 32, "update_every": 10}


def _no_prefetch(monkeypatch):
    from gatekit.runs.envs import EnvWorkers

    step_each = EnvWorkers.step_each
    monkeypatch.setattr(EnvWorkers, "step_each", lambda self, actions, prefetch=(): step_each(self, actions, ()))


def test_the_expert_s_next_action_computed_beside_the_step_changes_no_record(tmp_path, monkeypatch):
    """While the expert holds control its next action is computed alongside the env's step
    (in the env's process); a stochastic expert draws the same actions in the same order."""
    from gatekit.runs.envs import EnvWorkers

    call, ahead = EnvWorkers.call, []

    def counting_call(self, i, cmd, *args):
        ahead.append(cmd == "act" and i in self._prefetched)
        return call(self, i, cmd, *args)

    monkeypatch.setattr(EnvWorkers, "call", counting_call)
    done = train(_recipe(3, expert={"id": NOISY}, criterion=AIM_GATE), out=tmp_path / "prefetch")
    assert sum(ahead) > 20  # the expert's actions read while it held control were computed ahead
    _no_prefetch(monkeypatch)
    plain = train(_recipe(3, expert={"id": NOISY}, criterion=AIM_GATE), out=tmp_path / "plain")
    _, a, _ = read_log(tmp_path / "prefetch" / "records.gkr")
    _, b, _ = read_log(tmp_path / "plain" / "records.gkr")
    assert 0 < a["intervened"][20:].mean() < 1  # both the novice and the expert acted after the warm-up
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert (done.expert_steps, done.expert_queries) == (plain.expert_steps, plain.expert_queries)


def test_an_expert_failing_in_a_worker_keeps_every_step_before_it(tmp_path, monkeypatch):
    """A failure while the next action was computed ahead surfaces when the gate asks for that
    action, as it does without computing ahead: the same steps are recorded either way."""
    from gatekit.errors import GatekitError

    counts = []
    for name in ("prefetch", "plain"):
        if name == "plain":
            _no_prefetch(monkeypatch)
        with pytest.raises(GatekitError, match="the expert broke"):
            train(_recipe(2, expert={"id": NOISY, "fail_at": 30}, criterion=AIM_GATE), out=tmp_path / name)
        _, cols, _ = read_log(tmp_path / name / "records.gkr")
        counts.append(len(cols["step"]))
    assert counts[0] == counts[1] > 20  # past the warm-up, and not one step fewer


@pytest.mark.parametrize("learner", [
    {"id": "aim", "hidden": [8], "first_iterations": 2, "iterations": 1, "batch_size": 32},
    {"id": "sb3-ppo", "n_steps": 32, "batch_size": 16, "n_epochs": 1, "net_arch": [8]},
    {"id": "pvp", "net_arch": [8], "batch_size": 16},
    {"id": "sb3-offpolicy", "algo": "td3", "net_arch": [8], "learning_starts": 20, "batch_size": 16},
], ids=lambda c: c["id"])
def test_learners_and_a_learned_gate_work_with_several_envs(tmp_path, learner):
    crit = {"id": "aim", "hidden": [8], "first_steps": 10, "steps_per_update": 2, "batch_size": 32, "update_every": 10}
    res = train(_recipe(2, steps=150, learner=learner, criterion=crit), out=tmp_path / "run")
    assert res.status == "finished" and res.total_steps == 150
    import torch

    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["criterion"]["updates"] >= 2  # the gate trains on its schedule with the batch too


def test_ppo_writes_one_segment_per_env():
    """GAE runs along each env's own steps: a rollout's records from two interleaved envs go
    into the buffer env by env, the second segment starting an episode."""
    import gymnasium as gym

    from gatekit.learners.sb3.ppo import SB3PPOLearner
    from gatekit.types import Transition

    learner = SB3PPOLearner(observation_space=gym.spaces.Box(-1, 1, (1,)), action_space=gym.spaces.Discrete(2),
                            n_steps=8, batch_size=4, n_epochs=1, net_arch=[4])
    starts = []
    learner.model.train = lambda: starts.append(learner.model.rollout_buffer.episode_starts.reshape(-1).tolist())
    for t in range(4):
        for env in (0, 1):
            learner.observe(Transition(step=2 * t + env, episode=env, obs=np.full(1, env, np.float32), novice_action=0,
                                       expert_action=None, executed_action=0, intervened=False, expert_queried=False,
                                       switched=False, reward=1.0, next_obs=np.full(1, env, np.float32),
                                       terminated=False, truncated=False, env=env), None)  # type: ignore[arg-type]
    assert starts == [[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]


def test_the_planner_expert_answers_from_its_env_process(tmp_path):
    """A privileged expert (it reads its simulator) lives in its env's worker process."""
    pytest.importorskip("minigrid")
    res = train(_recipe(2, steps=120, env={"id": "minigrid-multiroom"}, expert={"id": "minigrid-planner"},
                        criterion={"id": "action-gap"},
                        learner={"id": "mlp-bc", "hidden": [16], "first_iterations": 2, "iterations": 1,
                                 "batch_size": 32}),
                out=tmp_path / "mg")
    assert res.status == "finished" and res.total_steps == 120 and res.expert_queries == 120


def test_n_envs_is_checked():
    with pytest.raises(ConfigError, match="env.n_envs"):
        _recipe(0)


def test_progress_rows_count_totals_through_their_episode_s_last_record(tmp_path):
    """With 2 envs an episode's row has the step and totals of its own last record (not of the
    batch's end), so a resumed run rebuilds the rows a kill kept from progress.csv as they were."""
    from tests.recipes import stop_at

    run = tmp_path / "run"
    res = train(_recipe(2, steps=400), out=run, on_progress=stop_at(200))
    assert res.status == "interrupted"
    path = run / "progress.csv"
    lines = path.read_text().splitlines(keepends=True)
    _, cols, _ = read_log(run / "records.gkr")
    ended = np.flatnonzero(cols["terminated"] | cols["truncated"])
    assert len(lines) - 1 == len(ended) >= 6
    for line, i in zip(lines[1:], ended, strict=True):
        step, episode, *_ = line.split(",")
        assert (int(step), int(episode)) == (cols["step"][i] + 1, cols["episode"][i])
        assert line.rstrip().split(",")[-3:-1] == [str(int(cols["intervened"][:i + 1].sum())),
                                                   str(int(cols["switched"][:i + 1].sum()))]
    path.write_text("".join(lines[:-3]))  # three rows, of both envs, never reached the file
    assert train(resume=run).status == "finished"
    assert path.read_text().splitlines(keepends=True)[:len(lines)] == lines
