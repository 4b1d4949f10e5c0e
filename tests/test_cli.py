"""The CLI in-process (click's CliRunner): tables, results.json, clean errors with exit code 2."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekit.cli import main
from tests.recipes import needs_imitation

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "budget.total_steps=300", "--set", "eval.in_worker=false", "--set", "eval.every_steps=150",
        "--set", "eval.episodes=1", "--set", "eval.final_episodes=2", "--set", "eval.expert_reference=false",
        "--set", "log.tensorboard=false", "--set", "learner.batches_per_update=20", "--no-progress"]


@pytest.fixture
def runner():
    return CliRunner()  # click >= 8.2 keeps stderr apart


def test_list_shows_every_registry(runner):
    res = runner.invoke(main, ["list"])
    assert res.exit_code == 0, res.output
    for name in ("aim", "thrifty", "action-gap", "expert-likelihood", "dagger", "metadrive", "minigrid-planner", "bc"):
        assert name in res.output


@needs_imitation
def test_train_writes_results_and_eval_reads_them(runner, tmp_path):
    out = tmp_path / "run"
    args = [{"budget.total_steps=300": "budget.total_steps=1100", "eval.every_steps=150": "eval.every_steps=550"}.get(a, a) for a in FAST]
    res = runner.invoke(main, ["train", str(ROOT / "recipes/hg_cartpole.yaml"), "--out", str(out), *args])
    assert res.exit_code == 0, res.stderr + res.output
    assert "expert-involved steps" in res.output and "test success" in res.output
    results = json.loads((out / "results.json").read_text())
    for key in ("expert_steps", "expert_queries", "switches", "total_steps", "takeover_rate", "wall_seconds",
                "test_success", "test_return"):
        assert key in results
    assert results["status"] == "finished" and results["total_steps"] == 1100
    assert results["expert_queries"] == 1100  # human-gated: the expert watched every step
    assert 0 < results["expert_steps"] < 1100 and results["episodes"] >= 2
    assert set(results["test_success"]) == {"mean", "std", "ci95", "n"} and results["test_success"]["n"] == 2
    assert [e["step"] for e in results["evaluations"]] == [550, 1100]  # no periodic evaluation beside the final
    for name in ("recipe.yaml", "records.gkr", "checkpoint.pt", "progress.csv", "eval.csv", "novice_final.pt",
                 "takeover_rate.png", "success_vs_expert_steps.png"):
        assert (out / name).is_file(), name
    res = runner.invoke(main, ["eval", str(out), "--episodes", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    stats = json.loads(res.stdout)  # progress lines go to stderr
    assert stats["success"]["n"] == 2 and "return" in stats
    res = runner.invoke(main, ["eval", str(ROOT / "recipes/hg_cartpole.yaml"), "--expert", "--episodes", "2"])
    assert res.exit_code == 0, res.stderr
    title = " ".join(res.output.split())  # the title names what was evaluated
    assert "the expert of" in title and "hg_cartpole.yaml on held-out test episodes" in title


@needs_imitation
def test_train_with_evaluation_worker_process(runner, tmp_path):
    out = tmp_path / "run"
    args = [a if a != "eval.in_worker=false" else "eval.in_worker=true" for a in FAST]
    res = runner.invoke(main, ["train", str(ROOT / "recipes/hg_cartpole.yaml"), "--out", str(out), *args,
                               "--set", "eval.expert_reference=true"])
    assert res.exit_code == 0, res.stderr + res.output
    results = json.loads((out / "results.json").read_text())
    assert results["expert_test_success"]["mean"] == 1.0  # the PD expert balances the pole
    assert len(list((tmp_path / ".expert_reference").glob("*.json"))) == 1  # cached for the next run


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "nope.yaml"], "recipe: no such file 'nope.yaml'"),
        (["train", "RECIPE", "--set", "budget.totl_steps=5"], "unknown key 'budget.totl_steps'; did you mean 'total_steps'?"),
        (["train", "RECIPE", "--set", "criterion.id=aimm"], "unknown criterion 'aimm'; did you mean 'aim'?"),
        (["train", "RECIPE", "--set", "learner.lr=fast"], "'learner.lr' must be a number"),
        (["train", "RECIPE", "--set", "budget.total_steps=-3"], "'budget.total_steps' must be >= 1"),
        (["train", "RECIPE", "--set", "expert.id=minigrid-planner"], "expert"),
        (["train", "--resume", "."], "is not a gatekit run folder"),
        (["eval", "RECIPE"], "is a recipe, which has no trained novice"),
        (["train"], "missing RECIPE"),
    ],
)
def test_bad_input_is_one_line_exit_2(runner, tmp_path, args, message):
    args = [str(ROOT / "recipes/hg_cartpole.yaml") if a == "RECIPE" else a for a in args]
    if args[0] == "train" and "--resume" not in args:
        args += ["--out", str(tmp_path / "r"), "--no-progress"]
    res = runner.invoke(main, args)
    assert res.exit_code == 2, res.output + res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("gatekit: error: ")


def test_unwritable_output_folder_fails_before_training(runner, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = runner.invoke(main, ["train", str(ROOT / "recipes/hg_cartpole.yaml"), "--out", str(blocker / "run"), *FAST])
    assert res.exit_code == 2
    assert "is not writable" in res.stderr and "--out" in res.stderr
