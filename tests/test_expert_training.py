"""`gatekit train-expert`: checkpoints, and resuming a run that was killed (CartPole, seconds)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.errors import ConfigError, RunDirError

sb3 = pytest.importorskip("stable_baselines3")

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes/ppo_expert_cartpole.yaml"
# Two env processes x 64 steps: a rollout (and a PPO update) every 128 env steps.
SMALL = ["n_envs=2", "ppo.n_steps=64", "ppo.batch_size=64", "ppo.n_epochs=1", "eval_episodes=0"]


def _zip_data(path):
    from stable_baselines3.common.save_util import load_from_zip_file

    data, params, _ = load_from_zip_file(path, device="cpu")
    return data, params["policy"]


def test_checkpoint_is_taken_after_an_update_and_matches_a_shorter_run(tmp_path):
    """The checkpoint at 128 steps of a 256-step run holds exactly what a 128-step run ends with:
    the weights, the optimizer's update count and the step count agree."""
    from gatekit.expert_training import load_expert_recipe, train_expert

    long = load_expert_recipe(RECIPE, [*SMALL, "total_timesteps=256", "checkpoint_every_s=0"])
    lines: list[str] = []
    train_expert(long, out=tmp_path / "long", progress=False, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("checkpoint at 128 of 256 steps (50%): ")
    assert lines[0].endswith("(last 100 episodes)") and "steps/s, training return " in lines[0]
    data, weights = _zip_data(tmp_path / "long/checkpoint/model.zip")
    state = json.loads((tmp_path / "long/checkpoint/state.json").read_text())
    assert data["num_timesteps"] == 128 and state["timesteps"] == 128 and state["resumes"] == []
    assert state["train_seconds"] > 0

    short = load_expert_recipe(RECIPE, [*SMALL, "total_timesteps=128"])
    train_expert(short, out=tmp_path / "short", progress=False)
    short_data, short_weights = _zip_data(tmp_path / "short/expert.zip")
    assert data["_n_updates"] == short_data["_n_updates"] > 0
    assert all(torch.equal(weights[k], short_weights[k]) for k in weights)


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
    from gatekit.expert_training import resume_expert

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "gatekit.cli", "train-expert", str(RECIPE), "--out", str(out), "--no-progress",
           *[a for s in [*SMALL, "total_timesteps=100000000", "checkpoint_every_s=0"] for a in ("--set", s)]]
    # A session of its own, so the kill reaches the env worker processes too.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_path = out / "checkpoint/state.json"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if state_path.is_file() and json.loads(state_path.read_text())["timesteps"] >= 256:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert state_path.is_file(), "no checkpoint within 120 s"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # without the progress bar, each checkpoint says how far the run is
    assert "gatekit: train-expert: checkpoint at 128 of 100,000,000 steps (0%): " in proc.stderr.read().decode()
    assert not (out / "expert.zip").exists()
    ckpt, _ = _zip_data(out / "checkpoint/model.zip")
    at = ckpt["num_timesteps"]
    assert at >= 256 and at % 128 == 0

    # a new run may not start over the interrupted one
    res = CliRunner().invoke(main, ["train-expert", str(RECIPE), "--out", str(out), "--no-progress"])
    assert res.exit_code == 2 and f"--resume {out}" in res.stderr
    # a resumed run keeps the model's recipe
    with pytest.raises(ConfigError, match="'ppo' cannot change"):
        resume_expert(out, ["ppo.n_epochs=3"], progress=False)
    with pytest.raises(ConfigError, match="raise it with --set total_timesteps"):
        resume_expert(out, [f"total_timesteps={at}"], progress=False)

    results = resume_expert(out, [f"total_timesteps={at + 256}", "eval_episodes=2"], progress=False)
    assert results["timesteps"] == at + 256 and results["resumed_from"] == [at]
    assert results["test"]["success"]["n"] == 2
    final, _ = _zip_data(out / "expert.zip")
    # training went on from the checkpoint: two more rollouts of 128 steps, one epoch each
    # (SB3 counts epochs), not a fresh start
    assert final["_n_updates"] == ckpt["_n_updates"] + 2
    saved = json.loads((out / "results.json").read_text())
    assert saved["resumed_from"] == [at] and f"total_timesteps: {at + 256}" in (out / "recipe.yaml").read_text()
    with pytest.raises(RunDirError, match="finished run"):
        resume_expert(out, progress=False)


def test_ctrl_c_checkpoints_the_last_update_and_exits_130(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, env workers included) stops the run at its next
    env step: it checkpoints the model as of the last PPO update, prints where, and exits 130;
    no env worker dies of the signal (no traceback). Before, it exited with the steps since the
    last periodic checkpoint lost and a KeyboardInterrupt traceback per worker."""
    from gatekit.expert_training import resume_expert

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "gatekit.cli", "train-expert", str(RECIPE), "--out", str(out), "--no-progress",
           *[a for s in [*SMALL, "total_timesteps=100000000", "checkpoint_every_s=5"] for a in ("--set", s)]]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    state_path = out / "checkpoint/state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not state_path.is_file():
        time.sleep(0.1)  # training is under way: the first periodic checkpoint (after an update)
    assert state_path.is_file(), proc.communicate()[1]
    time.sleep(2)  # more updates, not yet in a periodic checkpoint (every 5 s)
    periodic = json.loads(state_path.read_text())["timesteps"]
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().endswith(f"continue with: gatekit train-expert --resume {out}"), err
    ckpt, _ = _zip_data(out / "checkpoint/model.zip")
    at = ckpt["num_timesteps"]
    assert f"the checkpoint at {at} steps is saved" in err
    # the last update's model: its step count is that update's (a whole number of rollouts), not
    # the count of the rollout the signal cut short
    assert at >= periodic >= 128 and at % 128 == 0 and ckpt["_n_updates"] == at // 128
    assert json.loads((out / "checkpoint/state.json").read_text())["timesteps"] == at

    results = resume_expert(out, [f"total_timesteps={at + 128}"], progress=False)
    assert results["resumed_from"] == [at]
    final, _ = _zip_data(out / "expert.zip")
    assert final["_n_updates"] == ckpt["_n_updates"] + 1


def test_resume_arguments_are_checked(tmp_path):
    from gatekit.expert_training import resume_expert

    with pytest.raises(RunDirError, match="no recipe.yaml"):
        resume_expert(tmp_path, progress=False)
    (tmp_path / "recipe.yaml").write_text(RECIPE.read_text())
    with pytest.raises(RunDirError, match="no checkpoint yet"):
        resume_expert(tmp_path, progress=False)
    runner = CliRunner()
    res = runner.invoke(main, ["train-expert", str(RECIPE), "--resume", str(tmp_path)])
    assert res.exit_code == 2 and "drop RECIPE" in res.stderr
    res = runner.invoke(main, ["train-expert"])
    assert res.exit_code == 2 and "give an expert RECIPE" in res.stderr
