"""What a run tells: its provenance (expert file and sha256, versions, commit), the resolved
recipe with every default, progress lines when the output is not a terminal, the expert's
reference in parts that do not hold up the learning curve, success intervals inside [0, 1],
the success plot's marks, and W&B logging (offline, never the network)."""

import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.config import load_recipe, load_recipe_dict
from gatekit.evaluation import Stat, evaluate, wilson

FAST = {
    "name": "outputs", "seed": 0, "env": "pendulum", "expert": "pendulum-pd",
    "criterion": {"id": "action-gap", "threshold": 0.25},
    "learner": {"id": "mlp-bc", "hidden": [16], "update_every": 20, "iterations": 2, "first_iterations": 2,
                "batch_size": 32},
    "budget": {"total_steps": 400},
    "eval": {"every_steps": 200, "episodes": 2, "final_episodes": 3, "expert_reference": True, "in_worker": False},
    "log": {"tensorboard": False, "progress": False, "plots": True},
}


def _train(tmp_path, **over):
    from gatekit.runs import train

    raw = json.loads(json.dumps(FAST))
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    out = tmp_path / "run"
    return train(load_recipe_dict(raw), out=out), out


def test_results_name_the_expert_file_its_sha256_the_versions_and_the_commit(tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    from gatekit.envs import ENVS

    env = ENVS.get("cartpole")(split="train")
    zip_path = tmp_path / "ppo_cartpole.zip"
    sb3.PPO("MlpPolicy", env, n_steps=64, seed=0, device="cpu").save(zip_path)
    res, out = _train(tmp_path, env="cartpole", expert={"id": "sb3", "path": str(zip_path)},
                      criterion={"id": "action-gap"}, budget={"total_steps": 120},
                      eval={"every_steps": 0, "final_episodes": 1, "expert_reference": False},
                      log={"plots": False})
    prov = json.loads((out / "results.json").read_text())["provenance"]
    files = prov["expert"]["files"]
    assert [Path(f["path"]).name for f in files] == ["ppo_cartpole.zip"]
    assert files[0]["sha256"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert prov["expert"]["id"] == "sb3"
    for pkg in ("gatekit", "torch", "gymnasium", "stable-baselines3", "metadrive-simulator"):
        assert pkg in prov["versions"]
    assert prov["versions"]["stable-baselines3"] == sb3.__version__
    assert prov["git"] is None or len(prov["git"]["commit"]) == 40
    assert res.provenance == prov
    from gatekit.cli import expert_label

    assert "ppo_cartpole.zip" in expert_label(res) and files[0]["sha256"][:12] in expert_label(res)


def test_saved_recipe_has_every_default_and_loads_back_unchanged(tmp_path):
    from gatekit.compare.plan import recipe_changes

    _, out = _train(tmp_path, eval={"every_steps": 0, "final_episodes": 1, "expert_reference": False},
                    log={"plots": False})
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["expert"]["kp"] == 12.0 and saved["expert"]["deterministic"] is True  # defaults written out
    assert saved["learner"]["lr"] == 0.0001 and saved["learner"]["hidden"] == [16]     # given keys kept
    assert saved["env"]["success_return"] == -400.0
    again = load_recipe(out / "recipe.yaml")
    assert again.to_dict() == saved
    original = load_recipe_dict(FAST)
    original.eval.every_steps, original.eval.final_episodes, original.eval.expert_reference = 0, 1, False
    original.log.plots = False
    assert recipe_changes(out, original) == []  # the defaults written out are no change
    original.learner.kwargs["lr"] = 0.01
    assert recipe_changes(out, original) == ["learner.lr: 0.0001 -> 0.01"]


def test_plain_progress_lines_when_the_output_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    import gatekit.progress as progress

    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)
    _train(tmp_path, log={"progress": True, "plots": False})
    err = capsys.readouterr().err.splitlines()
    lines = [x for x in err if x.startswith("outputs: ")]
    assert lines[0] == "outputs: starting at step 0 of 400"
    assert any("200/400 steps" in x and "switches" in x for x in lines)
    assert any("final evaluation done (3 episodes)" in x for x in lines)
    assert any("expert reference done (3 episodes)" in x for x in lines)
    assert any("test success" in x and "(at step 400)" in x and len(x) > 80 for x in lines)  # never cut to 80


class _Worker:
    """An evaluation worker that runs each job when polled, in submission order."""

    def __init__(self):
        self.pending, self.jobs, self.log = [], [], []

    def submit(self, tag, env_comp, actor, episodes, *, expert_comp=None, first=0):
        self.pending.append(tag)
        self.jobs.append((tag, env_comp, actor, episodes, expert_comp, first))
        self.log.append(tag)

    def poll(self, *, block=False, on_episode=None):
        done = []
        while self.jobs:
            tag, env_comp, actor, episodes, expert_comp, first = self.jobs.pop(0)
            done.append((tag, evaluate(env_comp, actor, episodes, expert_comp=expert_comp, first=first)))
            self.pending.remove(tag)
            if not block:
                break
        return done

    def close(self):
        pass


def test_expert_reference_runs_in_parts_that_never_hold_up_the_learning_curve(tmp_path):
    from gatekit.runs.checkpoint import RunState
    from gatekit.runs.evaluator import EXPERT_PART, EXPERT_TAG, Evaluator
    from gatekit.runs.logs import RunLogs
    from gatekit.wrappers.intervention import Totals

    raw = {**FAST, "eval": {**FAST["eval"], "final_episodes": 2 * EXPERT_PART + 3, "in_worker": True,
                            "final_workers": 1}}
    recipe = load_recipe_dict(raw)
    state = RunState()
    (tmp_path / "run").mkdir()
    logs = RunLogs(tmp_path / "run", tensorboard=False)
    ev = Evaluator(recipe, tmp_path / "run", state=state, logs=logs, wall=lambda: 0.0)
    ev.worker = _Worker()
    ev.expert_reference(Totals())
    assert ev.worker.log == [f"{EXPERT_TAG}#0"]  # one part only, while the worker is idle
    novice = lambda obs: np.zeros(1, np.float32)  # noqa: E731
    ev.submit("step-200", 2, Totals(steps=200), learner=_Policy(novice))
    ev.collect(block=False)  # part 0 done; the novice's evaluation is next, then part 1
    assert ev.worker.log == [f"{EXPERT_TAG}#0", "step-200"]
    ev.collect(block=False)
    assert ev.worker.log == [f"{EXPERT_TAG}#0", "step-200", f"{EXPERT_TAG}#{EXPERT_PART}"]
    ev.final(Totals(steps=400), _Policy(novice))
    assert ev.worker.log[3:] == ["final", f"{EXPERT_TAG}#{2 * EXPERT_PART}"]
    expert_row = next(e for e in state.evals if e["tag"] == EXPERT_TAG)
    whole = evaluate(recipe.env, None, 2 * EXPERT_PART + 3, expert_comp=recipe.expert)
    assert expert_row["test_return"]["n"] == len(whole)
    assert expert_row["test_return"]["mean"] == pytest.approx(np.mean([e["return"] for e in whole]))
    logs.close()


class _Policy:
    """A learner stand-in for Evaluator.submit: a state and a deterministic policy."""

    def __init__(self, fn):
        self.fn = fn

    def state_dict(self):
        return {}

    def policy(self):
        return self.fn


def test_success_intervals_stay_in_zero_one():
    s = Stat.of([1.0, 1.0, 1.0, 0.0])
    assert s.mean + s.ci95 > 1.0  # the normal approximation leaves [0, 1] here
    lo, hi = s.interval(proportion=True)
    assert 0.0 <= lo < s.mean < hi <= 1.0
    assert wilson(0.0, 5)[0] == 0.0 and wilson(1.0, 5)[1] == 1.0
    assert Stat.of([2.0, 4.0]).interval() == (3.0 - Stat.of([2.0, 4.0]).ci95, 3.0 + Stat.of([2.0, 4.0]).ci95)


def test_eval_table_names_what_it_evaluated_and_its_interval_stays_in_zero_one(tmp_path):
    _, out = _train(tmp_path, eval={"every_steps": 0, "final_episodes": 1, "expert_reference": False},
                    log={"plots": False})
    res = CliRunner().invoke(main, ["eval", str(out), "--episodes", "2"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "the novice (final checkpoint) of" in text and "success (Wilson)" in text
    row = next(x for x in res.output.splitlines() if "success (Wilson)" in x)
    lo, hi = (float(v) for v in row.split("[")[1].split("]")[0].split(","))
    assert 0.0 <= lo <= hi <= 1.0
    assert f"evaluating the novice of {out}: 2/2 episodes done" in res.stderr  # progress, also into a file


def test_success_plot_marks_the_final_point_and_the_expert(tmp_path, monkeypatch):
    import gatekit.plots as plots

    seen = {}
    real = plots.save_rate_plot

    def capture(fig, ax, path, **kw):
        seen[Path(path).name] = ([line.get_label() for line in ax.lines], kw["title"])
        return real(fig, ax, path, **kw)

    monkeypatch.setattr(plots, "save_rate_plot", capture)
    _train(tmp_path)
    labels, title = seen["success_vs_expert_steps.png"]
    assert "novice, periodic (2 episodes)" in labels and "novice, final (3 episodes)" in labels
    assert "expert alone (3 episodes)" in labels
    assert "outputs s0: action-gap gate, mlp-bc learner; pendulum, expert pendulum-pd" in title


def test_wandb_logging_mirrors_the_logs_offline(tmp_path, monkeypatch):
    calls = {"log": [], "init": None, "finished": False}

    class Run:
        def define_metric(self, *a, **k):
            pass

        def log(self, d):
            calls["log"].append(d)

        def finish(self):
            calls["finished"] = True

    def init(**kw):
        calls["init"] = kw
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    _train(tmp_path, log={"wandb": True, "plots": False})
    assert calls["init"]["mode"] == "offline" and calls["init"]["project"] == "gatekit"
    assert calls["init"]["config"]["expert"]["kp"] == 12.0  # the resolved recipe
    assert calls["init"]["dir"] == str((tmp_path / "run").resolve())
    keys = {k for d in calls["log"] for k in d}
    assert {"train/episode_return", "eval/success", "env_step"} <= keys
    assert all("env_step" in d for d in calls["log"]) and calls["finished"]


def test_wandb_requested_but_missing_is_one_line_at_dry_run(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "wandb" else object())
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**FAST, "log": {**FAST["log"], "wandb": True}}))
    res = CliRunner().invoke(main, ["train", str(path), "--dry-run"])
    assert res.exit_code == 2 and "gatekit[wandb]" in res.stderr


def test_real_wandb_offline_writes_files_and_no_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _train(tmp_path, log={"wandb": True, "plots": False})
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
