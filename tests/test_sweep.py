"""``gatekit sweep``: a grid of settings x seeds as a comparison, on the local pool and on Ray."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.compare.sweep import parse_grid, parse_seeds, split_values, sweep_comparison
from gatekit.config import load_recipe
from gatekit.errors import ConfigError
from gatekit.runs import train
from gatekit.runs.results import RunResult
from tests.recipes import needs_imitation, needs_rliable

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
HG = RECIPES / "hg_cartpole.yaml"
# tiny runs (seconds each): the toy comparison's settings, fewer steps
TINY = ["budget.total_steps=120", "budget.warmup_steps=50", "eval.every_steps=60", "eval.episodes=1",
        "eval.final_episodes=1", "eval.expert_reference=false", "eval.in_worker=false", "log.tensorboard=false",
        "log.plots=false"]
SETS = [w for s in TINY for w in ("--set", s)]


def test_seeds_as_ranges_and_lists():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds("3, 0-1") == [3, 0, 1]
    assert parse_seeds("7") == [7]
    for bad, needle in (("a", "integers"), ("4-2", "ends below"), ("0-2,1", "seed 1 is given twice"), (",", "at least one")):
        with pytest.raises(ConfigError, match=needle):
            parse_seeds(bad)


def test_grid_values_parse_as_set_does():
    assert split_values("[64,64],[256,256]") == ["[64,64]", "[256,256]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    assert parse_grid(["criterion.delta=0.02,0.05", "learner.net_arch=[8,8],[16]"]) == [
        ("criterion.delta", [0.02, 0.05]), ("learner.net_arch", [[8, 8], [16]])]
    for bad, needle in ((["x"], "key=v1,v2"), (["a=1,1.0"], "appears twice"), (["seed=0,1"], "--seeds"),
                        (["a=1", "a=2"], "given twice"), (["a=1,,2"], "empty value")):
        with pytest.raises(ConfigError, match=needle):
            parse_grid(bad)


def test_grid_points_become_methods_in_order():
    grid = parse_grid(["learner.batches_per_update=20,50", "learner.lr=0.001,0.01"])
    comp = sweep_comparison(HG, grid, seeds=[0, 1], extra=["budget.total_steps=500"])
    assert [m.name for m in comp.methods] == ["batches_per_update=20 lr=0.001", "batches_per_update=20 lr=0.01",
                                             "batches_per_update=50 lr=0.001", "batches_per_update=50 lr=0.01"]
    assert comp.methods[1].overrides == {"learner.batches_per_update": 20, "learner.lr": 0.01}
    assert comp.overrides == {"budget.total_steps": 500} and comp.seeds == [0, 1] and comp.name == "sweep_hg_cartpole"
    # two keys with the same last part keep their full names
    both = sweep_comparison(HG, parse_grid(["learner.lr=0.001", "criterion.id=action-gap"]), seeds=[0])
    assert both.methods[0].name == "lr=0.001 id=action-gap"
    assert sweep_comparison(HG, [], seeds=[3]).methods[0].name == "hg_cartpole"


@pytest.mark.parametrize("args, needle", [
    (["--grid", "learner.batches_per_updat=1,2"], "did you mean 'batches_per_update'"),
    (["--grid", "budget.total_stepz=1,2"], "did you mean 'total_steps'"),
    (["--grid", "learner.batch_size=16,many"], "learner.batch_size"),
    (["--grid", "learner.lr=0.1", "--set", "learner.lr=0.2"], "both a --grid key and a --set field"),
    (["--grid", "nope"], "key=v1,v2"),
    (["--grid", "learner.lr=0.1", "--seeds", "2-0"], "ends below"),
    (["--grid", "learner.lr=0.1", "--seeds", "x"], "--seeds"),
    (["--grid", "learner.lr=0.1", "--backend", "local", "--address", "auto"], "--backend ray"),
])
def test_bad_sweeps_are_one_line_errors(tmp_path, args, needle):
    result = CliRunner().invoke(main, ["sweep", str(HG), "--out", str(tmp_path / "o"), "--no-progress", *args])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("gatekit: error:") and needle in lines[0], result.output
    assert not (tmp_path / "o" / "runs").exists()  # nothing ran


@needs_imitation
@needs_rliable
def test_sweep_runs_the_grid_and_skips_finished_runs(tmp_path):
    out = tmp_path / "sw"
    runner = CliRunner()
    args = ["sweep", str(HG), "--grid", "learner.batches_per_update=20,50", "--seeds", "3", "--out", str(out),
            "--no-progress", *SETS]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "ran 2 runs, skipped 0" in first.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted((r["method"], r["seed"], r["status"]) for r in rows) == [
        ("batches_per_update=20", "3", "finished"), ("batches_per_update=50", "3", "finished")]
    saved = yaml.safe_load((out / "runs" / "batches-per-update-50" / "seed3" / "recipe.yaml").read_text())
    assert saved["learner"]["batches_per_update"] == 50 and saved["seed"] == 3 and saved["budget"]["total_steps"] == 120
    table = (out / "table.md").read_text()
    assert "| batches_per_update=20 |" in table and "| batches_per_update=50 |" in table
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "ran 0 runs, skipped 2 finished" in again.output, again.output


def test_sweep_replaces_the_compare_alias():
    r = CliRunner().invoke(main, ["sweep", "--help"])
    assert r.exit_code == 0 and "--grid" in r.output and "--backend" in r.output


def _interrupt_at(steps: int):
    def on_progress(live):
        if live["steps"] >= steps:
            raise KeyboardInterrupt

    return on_progress


# ~160 s on 2 busy cores (Ray's start, two rounds of worker processes): slow
@pytest.mark.slow
@needs_imitation
@needs_rliable
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'gatekit[ray]')")
def test_ray_backend_gives_the_local_pool_s_table(tmp_path):
    """2 methods x 2 seeds on the local pool and on a local Ray instance that the test starts:
    the same table.md; on Ray a finished run is skipped and an interrupted one resumed."""
    import ray

    grid = ["--grid", "learner.batches_per_update=20,50", "--seeds", "0-1"]
    runner = CliRunner()
    local = runner.invoke(main, ["sweep", str(HG), *grid, "--out", str(tmp_path / "local"), "--no-progress", *SETS])
    assert local.exit_code == 0, local.output

    ray_out = tmp_path / "ray"
    # a run left interrupted part-way (as after a Ctrl-C), in another output folder
    part_out = tmp_path / "resume"
    part = part_out / "runs" / "batches-per-update-20" / "seed1"
    first = load_recipe(HG, [*TINY, "learner.batches_per_update=20", "seed=1", "log.progress=false"])
    assert train(first, out=part, progress=False, on_progress=_interrupt_at(60)).status == "interrupted"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = runner.invoke(main, ["sweep", str(HG), *grid, "--out", str(ray_out), "--no-progress", "--backend", "ray",
                                   *SETS])
        assert res.exit_code == 0, res.output
        assert "ran 4 runs, skipped 0" in res.output
        again = runner.invoke(main, ["sweep", str(HG), *grid, "--out", str(ray_out), "--no-progress",
                                     "--backend", "ray", *SETS])
        assert again.exit_code == 0 and "ran 0 runs, skipped 4 finished" in again.output, again.output
        resume = runner.invoke(main, ["sweep", str(HG), "--grid", "learner.batches_per_update=20", "--seeds", "1",
                                      "--out", str(part_out), "--no-progress", "--backend", "ray", *SETS])
        assert resume.exit_code == 0 and "ran 1 runs" in resume.output, resume.output
    finally:
        ray.shutdown()
    assert (ray_out / "table.md").read_text() == (tmp_path / "local" / "table.md").read_text()
    resumed = RunResult.read(part)
    assert resumed.status == "finished" and resumed.total_steps == 120 and resumed.seed == 1
    assert (part / "checkpoint.pt").is_file() and (part / "novice_final.pt").is_file()
