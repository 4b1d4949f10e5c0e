"""How runs end (docs/reliability.md): a component or plugin that raises, a failed final
evaluation, a killed evaluation worker and a full disk each end the run ``failed`` with one line
naming the cause, a checkpoint at the failure and ``results.json``; the run resumes once the
cause is gone. Signals exit 130 / 143. Two runs starting in one folder do not clobber each other."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.config import load_recipe_dict
from gatekit.data import read_log
from gatekit.errors import EvaluationError, ExpertError, RunDirError, RunFailed
from gatekit.runs import train
from gatekit.runs.checkpoint import load_checkpoint
from tests.recipes import fast_recipe, stop_at, tiny_recipe

PLUGIN = '''
import os
import signal
import time

import numpy as np

from gatekit.criteria.dagger import DAggerCriterion
from gatekit.envs.toy import EchoEnv
from gatekit.experts.base import Expert


class FlakyEcho(EchoEnv):
    """EchoEnv that misbehaves on cue: raise at step `fail_at` of its split `fail_split`, return
    NaN observations there (`nan`), kill its own process there (`kill`), or fill the disk
    (`fill`: a path) at that step; `slow` seconds per test step. FLAKY_OFF=1 in the environment
    turns every fault off."""

    def __init__(self, *, split="train", seed=None, fail_split="train", fail_at=-1, nan=False, kill=False, fill="",
                 slow=0.0):
        super().__init__(n_actions=2, horizon=10)
        self.split, self.fail_split, self.fail_at = split, fail_split, fail_at
        self.nan, self.kill, self.fill, self.slow, self.t = nan, kill, fill, slow, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self.t += 1
        if self.split == "test" and self.slow and not os.environ.get("FLAKY_OFF"):
            time.sleep(self.slow)
        if self.split == self.fail_split and self.t == self.fail_at and not os.environ.get("FLAKY_OFF"):
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.fill:
                with open(self.fill, "wb") as fh:
                    try:
                        while True:
                            fh.write(b"\\0" * 65536)
                            fh.flush()
                    except OSError:
                        pass
            elif self.nan:
                obs = np.full_like(obs, np.nan)
            else:
                raise RuntimeError("lidar driver crashed")
        return obs, reward, terminated, truncated, info


class FlakyGate(DAggerCriterion):
    def decide(self, ctx):
        if ctx.episode_step == 7:
            raise ValueError("threshold table is empty")
        return super().decide(ctx)


class OutOfSpace(Expert):
    def __init__(self, *, env):
        super().__init__(env.observation_space, env.action_space)

    def act(self, obs):
        return 5  # Discrete(2) has actions 0 and 1
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "faults_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "faults_plugin", raising=False)
    monkeypatch.delenv("FLAKY_OFF", raising=False)
    return "faults_plugin"


def _env(**kw):
    return {"id": "faults_plugin:FlakyEcho", **kw}


def _results(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


def _cli(*args: str) -> tuple[int, list[str], str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stderr.strip().splitlines(), res.output


# -- a component that raises ------------------------------------------------------------------------

def test_env_raising_mid_episode_fails_cleanly_with_a_checkpoint_at_the_failure(plugin, tmp_path):
    with pytest.raises(RunFailed, match=r"^plugin 'faults_plugin:FlakyEcho' \(env\) raised RuntimeError: lidar driver "
                                        r"crashed at step 154 \(episode 15\); the run is saved at that step"):
        train(load_recipe_dict(tiny_recipe(env=_env(fail_at=155))), out=tmp_path / "run", progress=False)
    res = _results(tmp_path / "run")
    assert res["status"] == "failed" and "lidar driver crashed" in res["error"] and res["total_steps"] == 154
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["log_steps"] == 154
    os.environ["FLAKY_OFF"] = "1"
    try:
        assert train(resume=tmp_path / "run", progress=False).status == "finished"
    finally:
        del os.environ["FLAKY_OFF"]


def test_cli_prints_one_line_and_the_full_trace_only_when_asked(plugin, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(env=_env(fail_at=30))))
    code, lines, _ = _cli("train", str(recipe), "--out", str(tmp_path / "a"), "--no-progress")
    assert code == 2 and len(lines) == 1 and "raised RuntimeError: lidar driver crashed at step 29" in lines[0]
    res = CliRunner().invoke(main, ["--traceback", "train", str(recipe), "--out", str(tmp_path / "b"), "--no-progress"])
    assert res.exit_code == 2 and "Traceback (most recent call last)" in res.stderr
    assert 'faults_plugin.py", line' in res.stderr and res.stderr.strip().splitlines()[-1] == lines[0].replace("/a", "/b")
    res = CliRunner(env={"GATEKIT_DEBUG": "1"}).invoke(main, ["train", str(recipe), "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "Traceback (most recent call last)" in res.stderr


def test_criterion_plugin_raising_mid_run_is_named(plugin, tmp_path):
    raw = tiny_recipe(criterion={"id": "faults_plugin:FlakyGate", "beta": 0.4, "schedule": "constant"})
    with pytest.raises(RunFailed, match=r"^plugin 'faults_plugin:FlakyGate' \(criterion\) raised ValueError: threshold "
                                        r"table is empty at step 7 \(episode 0\)"):
        train(load_recipe_dict(raw), out=tmp_path / "run", progress=False)
    assert _results(tmp_path / "run")["status"] == "failed"


def test_expert_action_outside_the_action_space_is_named(plugin, tmp_path):
    raw = tiny_recipe(expert={"id": "faults_plugin:OutOfSpace"})
    with pytest.raises(ExpertError, match=r"expert OutOfSpace returned action 5, outside the action space Discrete\(2\), "
                                          r"at step 0"):
        train(load_recipe_dict(raw), out=tmp_path / "run", progress=False)
    assert _results(tmp_path / "run")["status"] == "failed"


def test_plugin_failing_in_setup_or_on_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "bad_plugins.py").write_text(
        "from gatekit.criteria.simple import NeverCriterion\n"
        "class BindFails(NeverCriterion):\n"
        "    def bind(self, observation_space, action_space):\n"
        "        raise RuntimeError('gate device not found')\n")
    (tmp_path / "exits_on_import.py").write_text("raise SystemExit('plugin module exits on import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.yaml"
    for crit, want in (("bad_plugins:BindFails", "plugin 'bad_plugins:BindFails' (criterion) raised RuntimeError: gate "
                                                 "device not found while the run was being set up"),
                       ("exits_on_import:Gate", "cannot import module 'exits_on_import' for criterion "
                                                "'exits_on_import:Gate' (SystemExit: plugin module exits on import)")):
        recipe.write_text(yaml.safe_dump(tiny_recipe(criterion={"id": crit})))
        out = tmp_path / crit.split(":")[0]
        code, lines, _ = _cli("train", str(recipe), "--out", str(out), "--no-progress")
        assert code == 2 and len(lines) == 1 and want in lines[0], lines
        assert not (out / "records.gkr").exists() and not (out / "recipe.yaml").exists()  # the same --out works again


# -- evaluations ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [{"fail_at": 3}, {"fail_at": 3, "nan": True}], ids=["raises", "nan"])
def test_failed_final_evaluation_is_failed_and_resume_runs_it_again(plugin, tmp_path, fault):
    raw = tiny_recipe(env=_env(fail_split="test", **fault))
    with pytest.raises(EvaluationError, match="evaluation 'final' failed|non-finite observation in test episode 0"):
        train(load_recipe_dict(raw), out=tmp_path / "run", progress=False)
    res = _results(tmp_path / "run")
    assert res["status"] == "failed" and res["total_steps"] == 300 and "test_success" not in res
    assert not (tmp_path / "run" / "novice_final.pt").exists()
    os.environ["FLAKY_OFF"] = "1"
    try:
        again = train(resume=tmp_path / "run", progress=False)
    finally:
        del os.environ["FLAKY_OFF"]
    assert again.status == "finished" and again.total_steps == 300 and again.test["success"].n == 2
    assert len(read_log(tmp_path / "run" / "records.gkr")[1]["step"]) == 300  # nothing recorded twice


def test_killed_evaluation_worker_fails_the_run_in_one_line(plugin, tmp_path):
    raw = tiny_recipe(env=_env(fail_split="test", fail_at=2, kill=True), eval={"in_worker": True})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    code, lines, _ = _cli("train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress")
    assert code == 2 and len(lines) == 1, lines
    assert re.search(r"was killed by SIGKILL while evaluating 'final(#\d+)?'", lines[0]) and "--resume" in lines[0]
    assert _results(tmp_path / "run")["status"] == "failed"


# -- a full disk ------------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 80 MiB that the test mounts (and unmounts), or a skip saying why not."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (or no `mount` here)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_mid_run_is_one_line_keeps_the_log_and_resumes_once_freed(plugin, small_disk):
    run, filler = small_disk / "run", small_disk / "filler"
    recipe = small_disk.parent / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(env=_env(fail_at=100, fill=str(filler)),
                                                 budget={"total_steps": 2000})))
    code, lines, _ = _cli("train", str(recipe), "--out", str(run), "--no-progress")
    assert code == 2 and len(lines) == 1, lines
    assert "No space left on device" in lines[0] and "free space on that disk, then resume" in lines[0]
    res = _results(run)
    assert res["status"] == "failed" and "No space left" in res["error"]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.stat().st_size == 0]
    _, cols, info = read_log(run / "records.gkr")
    assert info["torn_bytes"] == 0 and np.array_equal(cols["step"], np.arange(res["total_steps"]))
    assert load_checkpoint(run / "checkpoint.pt")["log_steps"] == res["total_steps"]  # saved at the failure
    filler.unlink()
    os.environ["FLAKY_OFF"] = "1"
    try:
        again = train(resume=run, progress=False)
    finally:
        del os.environ["FLAKY_OFF"]
    after = read_log(run / "records.gkr")[1]
    assert again.status == "finished" and np.array_equal(after["step"], np.arange(2000))
    for name in cols:
        np.testing.assert_array_equal(after[name][:len(cols["step"])], cols[name])


# -- signals and races --------------------------------------------------------------------------------------------

def test_sigkill_loses_no_progress_row_and_no_pending_evaluation(plugin, tmp_path):
    """Evaluations still running in the worker at the last checkpoint are run again on resume;
    progress.csv has a row for every finished episode in the log; eval.csv agrees with results.json."""
    raw = tiny_recipe(env=_env(slow=0.4), eval={"in_worker": True, "every_steps": 100},
                      data={"checkpoint_every": 100})
    recipe, run = tmp_path / "r.yaml", tmp_path / "run"
    recipe.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-m", "gatekit.cli", "train", str(recipe), "--out", str(run), "--no-progress"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not (run / "records.gkr").exists() or read_log(run / "records.gkr")[2]["records"] < 250):
        time.sleep(0.01)
    proc.kill()  # the evaluations of steps 100 and 200 (0.4 s a step in the worker) are still running
    proc.wait(timeout=30)
    cols = read_log(run / "records.gkr")[1]
    rows = (run / "progress.csv").read_text().strip().splitlines()[1:]
    finished = int(np.count_nonzero(cols["truncated"] | cols["terminated"]))
    # each row is written when its episode's last record is: the kill can fall between the two
    # (one episode, one env), never lose the rows before; the resume below writes the missing one
    assert finished - 1 <= len(rows) <= finished and finished >= 25
    pending = [p["meta"]["tag"] for p in load_checkpoint(run / "checkpoint.pt")["run"]["pending_evals"]]
    assert pending == ["step-100", "step-200"]
    os.environ["FLAKY_OFF"] = "1"
    try:
        res = train(resume=run, progress=False)
    finally:
        del os.environ["FLAKY_OFF"]
    assert [(e.step, e.tag) for e in res.evaluations] == [(100, "step-100"), (200, "step-200"), (300, "final")]
    csv_rows = (run / "eval.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in csv_rows] == [100, 200, 300]
    cols = read_log(run / "records.gkr")[1]
    episodes = [int(r.split(",")[1]) for r in (run / "progress.csv").read_text().strip().splitlines()[1:]]
    assert sorted(episodes) == sorted(set(cols["episode"][cols["truncated"] | cols["terminated"]].tolist()))


def test_resume_writes_the_progress_rows_a_kill_kept_from_the_file(tmp_path):
    """A kill between an episode's last record and its progress.csv row (simulated by removing
    the last rows) loses no row: the resumed run rebuilds them from the log, as they were."""
    run = tmp_path / "run"
    train(load_recipe_dict(tiny_recipe()), out=run, progress=False, on_progress=stop_at(200))
    path = run / "progress.csv"
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) > 4
    path.write_text("".join(lines[:-2]))  # the last two episodes' rows never reached the file
    res = train(resume=run, progress=False)
    assert res.status == "finished"
    again = path.read_text().splitlines(keepends=True)
    assert again[:len(lines)] == lines  # rebuilt to the character, the run's later rows after them
    cols = read_log(run / "records.gkr")[1]
    ended = cols["truncated"] | cols["terminated"]
    assert [int(r.split(",")[1]) for r in again[1:]] == cols["episode"][ended].tolist()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signals_save_and_exit_non_zero(tmp_path, sig, code):
    """SIGTERM to the run (a scheduler), SIGINT to its whole process group (Ctrl-C in a terminal:
    the evaluation worker gets it too, and must leave the decision to the run)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(fast_recipe(budget={"total_steps": 200000},
                                                 eval={"in_worker": True, "every_steps": 200, "episodes": 1})))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "gatekit.cli", "train", str(recipe), "--out", str(run),
                             "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "records.gkr").exists() or read_log(run / "records.gkr")[2]["records"] < 500:
        time.sleep(0.05)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith(f"gatekit: interrupted by {sig.name}; continue with")
    res = _results(run)
    assert res["status"] == "interrupted" and res["signal"] == sig.name
    assert res["total_steps"] == read_log(run / "records.gkr")[2]["records"]
    assert load_checkpoint(run / "checkpoint.pt")["log_steps"] == res["total_steps"]


@pytest.mark.parametrize("helper", ["evaluation", "env"])
def test_ctrl_c_while_a_helper_process_still_imports_does_not_kill_it(helper, monkeypatch):
    """Ctrl-C reaches the whole process group, helpers included, also while one is still
    importing its modules (torch or a simulator: seconds on a busy machine), before its own code
    can ignore SIGINT. It must start with SIGINT ignored, not die and fail the run the person only
    meant to stop."""
    import threading

    import gatekit.evaluation as evaluation
    import gatekit.runs.env_workers as env_workers
    from gatekit.config import Component

    module = evaluation if helper == "evaluation" else env_workers
    real_start = module.start_deaf_to_ctrl_c

    def start_then_ctrl_c(proc):
        real_start(proc)
        threading.Timer(0.1, os.kill, (proc.pid, signal.SIGINT)).start()  # past exec, still importing

    monkeypatch.setattr(module, "start_deaf_to_ctrl_c", start_then_ctrl_c)
    env, expert = Component(id="echo", kwargs={"dim": 1, "horizon": 3}), Component(id="echo", kwargs={"action": [0.0]})
    if helper == "evaluation":
        worker = evaluation.EvalWorker()
        time.sleep(0.2)
        worker.submit("expert#0", env, None, 1, expert_comp=expert)
        try:
            assert [tag for tag, _ in worker.poll(block=True)] == ["expert#0"]
        finally:
            worker.close()
    else:
        workers = env_workers.EnvWorkers(env, expert, 2, seed=0)  # waits for its worker's env
        try:
            assert workers.call(1, "reset", 0)[0].shape == (1,)
        finally:
            workers.close()


def test_two_runs_starting_in_one_folder_do_not_clobber_each_other(tmp_path, monkeypatch):
    """The second run passed the 'folder is free' check just before the first one claimed it."""
    import gatekit.runs.loop as loop

    out = tmp_path / "run"
    first = load_recipe_dict(tiny_recipe(seed=1))
    real_check = loop.check_run_dir

    def first_wins_meanwhile(path):
        real_check(path)
        monkeypatch.setattr(loop, "check_run_dir", real_check)
        train(first, out=out, progress=False)  # the other run, in the same instant

    monkeypatch.setattr(loop, "check_run_dir", first_wins_meanwhile)
    with pytest.raises(RunDirError, match="already exists"):
        train(load_recipe_dict(tiny_recipe(seed=2)), out=out, progress=False)
    assert yaml.safe_load((out / "recipe.yaml").read_text())["seed"] == 1
    assert _results(out)["status"] == "finished" and _results(out)["seed"] == 1


def test_resume_reads_a_damaged_progress_csv_without_a_traceback(tmp_path):
    """Bytes that are not UTF-8 or a NUL in progress.csv do not stop the resume that looks for
    missing rows: the damaged row's episode is rebuilt beside it, nothing else changes."""
    run = tmp_path / "run"
    train(load_recipe_dict(tiny_recipe()), out=run, progress=False, on_progress=stop_at(200))
    path = run / "progress.csv"
    raw = bytearray(path.read_bytes())
    row = raw.index(b"\n") + 1  # the first row: "10,0,-5.58...": step 10, episode 0
    assert raw[row:row + 5] == b"10,0,"
    raw[row + 3], raw[row + 6] = 0xFF, 0  # episode 0 unreadable, a NUL in its return
    path.write_bytes(bytes(raw))
    assert train(resume=run, progress=False).status == "finished"
    after = path.read_bytes()
    assert after.startswith(bytes(raw)) and b"\n10,0," in after  # episode 0's row, rebuilt
