"""``gatekit compare``: the toy comparison end to end, skipping finished runs, and bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.compare import (
    Comparison,
    MethodSpec,
    load_comparison,
    make_table,
    mean_curve,
    plan,
    slug,
    steps_to_reach,
    summarize,
)
from gatekit.compare.summary import RunRow
from gatekit.errors import ConfigError
from gatekit.evaluation import Stat
from gatekit.runs.results import EvalPoint, RunResult
from tests.recipes import needs_imitation, needs_rliable

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TOY = RECIPES / "compare_toy.yaml"


@needs_imitation
@needs_rliable
def test_compare_toy_writes_outputs_and_skips_finished_runs(tmp_path):
    out = tmp_path / "cmp"
    runner = CliRunner()
    # smaller than the recipe's budgets, for the test's time
    sets = ["--set", "budget.total_steps=120", "--set", "eval.every_steps=60", "--set", "eval.final_episodes=1"]
    first = runner.invoke(main, ["compare", str(TOY), "--out", str(out), "--workers", "2", "--no-progress", *sets])
    assert first.exit_code == 0, first.output
    assert "ran 4 runs, skipped 0" in first.output
    for name in ("results.csv", "table.md", "success_vs_expert_steps.png", "takeover_rate.png", "comparison.yaml"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted((r["method"], r["seed"]) for r in rows) == [("HG-DAgger", "0"), ("HG-DAgger", "1"), ("PVP", "0"), ("PVP", "1")]
    assert all(r["status"] == "finished" and int(r["total_steps"]) == 120 for r in rows)
    assert all(0.0 <= float(r["test_success"]) <= 1.0 for r in rows)
    table = (out / "table.md").read_text()
    assert "| method | expert steps (take-over rate) | total steps | switches | test success | return | expert steps to reach" in table
    assert "| HG-DAgger |" in table and "| PVP |" in table and "2/2" in table
    res = json.loads((out / "runs" / "pvp" / "seed1" / "results.json").read_text())
    assert res["seed"] == 1 and res["learner"] == "pvp" and res["total_steps"] == 120

    stamp = (out / "runs" / "hg-dagger" / "seed0" / "results.json").stat().st_mtime_ns
    again = runner.invoke(main, ["compare", str(TOY), "--out", str(out), "--workers", "2", "--no-progress", *sets])
    assert again.exit_code == 0, again.output
    assert "ran 0 runs, skipped 4 finished" in again.output
    assert (out / "runs" / "hg-dagger" / "seed0" / "results.json").stat().st_mtime_ns == stamp
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 4

    # a finished run made from another recipe is never reused silently, nor deleted
    changed = [*sets[:-2], "--set", "eval.final_episodes=2", "--only", "HG-DAgger", "--seeds", "0"]
    refused = runner.invoke(main, ["compare", str(TOY), "--out", str(out), "--no-progress", *changed])
    assert refused.exit_code == 2, refused.output
    line = refused.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "different recipe" in line and "eval.final_episodes: 1 -> 2" in line and "--redo-changed" in line
    assert (out / "runs" / "hg-dagger" / "seed0" / "results.json").stat().st_mtime_ns == stamp
    old_records = (out / "runs" / "hg-dagger" / "seed0" / "records.gkr").read_bytes()
    redo = runner.invoke(main, ["compare", str(TOY), "--out", str(out), "--no-progress", "--redo-changed", *changed])
    assert redo.exit_code == 0, redo.output
    assert "ran 1 runs, skipped 0" in redo.output
    kept = out / "runs" / "hg-dagger" / "seed0.changed-1"
    assert (kept / "records.gkr").read_bytes() == old_records
    assert yaml.safe_load((out / "runs" / "hg-dagger" / "seed0" / "recipe.yaml").read_text())["eval"]["final_episodes"] == 2
    # the table still lists the method left out by --only; its run made from the old recipe is not counted
    rows = {(r["method"], r["seed"]): r for r in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == {("HG-DAgger", "0"), ("PVP", "0")}
    assert rows[("HG-DAgger", "0")]["status"] == "finished" and rows[("PVP", "0")]["status"] == "changed"
    assert "| PVP |" in (out / "table.md").read_text()

    # --only with the recipes as they were: the other method's finished runs count in the table
    sets_only = [*sets, "--only", "PVP"]
    only = runner.invoke(main, ["compare", str(TOY), "--out", str(out), "--no-progress", *sets_only])
    assert only.exit_code == 0, only.output
    assert "ran 0 runs, skipped 2 finished" in only.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted((r["method"], r["seed"], r["status"]) for r in rows) == [
        ("HG-DAgger", "0", "changed"), ("HG-DAgger", "1", "finished"), ("PVP", "0", "finished"), ("PVP", "1", "finished")]


def _write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


@pytest.mark.parametrize("data, needle", [
    ({"name": "x", "methods": [{"name": "A", "recipe": str(RECIPES / "hg_cartpole.yaml")}], "seedz": [0]}, "did you mean 'seeds'"),
    ({"name": "x", "methods": []}, "methods"),
    ({"name": "x", "methods": [{"name": "A", "recipe": "nope.yaml"}]}, "no recipe file"),
    ({"name": "x", "methods": [{"name": "A", "recipe": str(RECIPES / "hg_cartpole.yaml")}] * 2}, "unique"),
    ({"name": "x", "reference": "B", "methods": [{"name": "A", "recipe": str(RECIPES / "hg_cartpole.yaml")}]}, "reference 'B'"),
    ({"name": "x", "methods": [{"name": "A", "recipe": str(RECIPES / "hg_cartpole.yaml"),
                                "overrides": {"budget.total_stepz": 5}}]}, "budget.total_stepz"),
    # a component's argument is checked before any run starts (one method's runs used to fail at
    # build, after the others had run): another expert's key kept by an `expert.id` override
    ({"name": "x", "methods": [{"name": "A", "recipe": str(RECIPES / "hg_cartpole.yaml"),
                                "overrides": {"expert.gainz": 1.0}}]}, "method 'A': recipe: unknown key 'expert.gainz'"),
    ({"name": "x", "methods": [{"name": "A", "recipe": str(RECIPES / "hg_cartpole.yaml")},
                               {"name": "B", "recipe": str(RECIPES / "hg_cartpole.yaml"),
                                "overrides": {"criterion.threshold": "high"}}]}, "method 'B'"),
    ("name: [unclosed", "not valid YAML"),
])
def test_bad_comparisons_are_one_line_errors(tmp_path, data, needle):
    path = _write(tmp_path, data)
    result = CliRunner().invoke(main, ["compare", str(path), "--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("gatekit: error: compare") and needle in lines[0], result.output
    assert not (tmp_path / "o" / "runs").exists()  # nothing ran


def test_cli_option_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["compare", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = runner.invoke(main, ["compare", str(TOY), "--seeds", "a,b", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--seeds" in r.output
    r = runner.invoke(main, ["compare", str(TOY), "--only", "AIM", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--only 'AIM'" in r.output
    r = runner.invoke(main, ["compare", str(TOY), "--seeds", "0-1,1", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "seed 1 is given twice" in r.output
    r = runner.invoke(main, ["compare", "--help"])
    assert r.exit_code == 0 and "--backend" in r.output


def test_plan_applies_overrides_in_order_and_is_seed_major(tmp_path):
    comp, base = load_comparison(TOY)
    runs = plan(comp, base, tmp_path, extra=("budget.total_steps=123",), seeds=[5, 6])
    assert [(r.method, r.seed) for r in runs] == [("HG-DAgger", 5), ("PVP", 5), ("HG-DAgger", 6), ("PVP", 6)]
    assert all(r.recipe.budget.total_steps == 123 and r.recipe.seed == r.seed for r in runs)
    assert runs[1].recipe.learner.id == "pvp" and runs[0].recipe.learner.kwargs["batches_per_update"] == 50
    assert runs[3].run_dir == tmp_path / "runs" / "pvp" / "seed6"
    assert slug("Thrifty-DAgger") == "thrifty-dagger"


def test_every_shipped_comparison_plans(tmp_path):
    for path in sorted(RECIPES.glob("compare_*.yaml")):
        comp, base = load_comparison(path)
        runs = plan(comp, base, tmp_path)
        assert len(runs) == len(comp.methods) * len(comp.seeds), path.name
        if comp.name != "compare_toy":  # the paper comparisons share expert, warm-up, budget, evaluation
            for field in ("expert", "budget.warmup_steps", "budget.expert_steps", "eval"):
                values = {yaml.safe_dump(_acting(_get(r.recipe.to_dict(), field))) for r in runs}
                assert len(values) == 1, (path.name, field, values)
            # log_prob_std changes only the likelihood a simulated person scores with, never an
            # action: the human-gated rows (likelihood rule) must all use the same person
            people = {yaml.safe_dump(r.recipe.expert.kwargs.get("log_prob_std")) for r in runs
                      if r.recipe.criterion.kwargs.get("rule") == "likelihood"}
            assert len(people) <= 1, (path.name, people)


def _acting(section):
    """A recipe section without the expert's ``log_prob_std`` (see above)."""
    return {k: v for k, v in section.items() if k != "log_prob_std"} if isinstance(section, dict) else section


def _get(d, dotted):
    for part in dotted.split("."):
        d = d[part]
    return d


def test_learning_curve_summaries():
    seeds = [[(0, 0.0), (100, 0.4), (200, 0.8)], [(0, 0.2), (200, 0.6)]]  # (expert steps, success)
    grid, mean, std = mean_curve(seeds)
    assert grid.tolist() == [0, 100, 200]
    assert np.allclose(mean, [0.1, 0.4, 0.7]) and np.allclose(std, [0.1, 0.0, 0.1])
    assert steps_to_reach(seeds, 0.4) == 100 and steps_to_reach(seeds, 0.7) == 200
    assert math.isnan(steps_to_reach(seeds, 0.9))


def _result(seed, *, expert_steps, success, ret=100.0, total=2000, curve=(), expert=None, status="finished", wall=60.0):
    """A run's results as RunResult (what the summary reads), without running anything."""
    return RunResult(status=status, recipe="t", seed=seed, env="echo", expert="echo", criterion="c", learner="l",
                     total_steps=total, expert_steps=expert_steps, expert_queries=expert_steps, switches=10,
                     episodes=5, wall_seconds=wall,
                     test={"success": Stat(success, 0.0, 0.0, 50), "return": Stat(ret, 0.0, 0.0, 50)},
                     expert_test=expert or {},
                     evaluations=[EvalPoint(step=i, expert_steps=x, switches=0, metrics={"success": y})
                                  for i, (x, y) in enumerate(curve)])


def _rows(results, method):
    return [RunRow(method, r.seed, Path(f"/nowhere/{method}/seed{r.seed}"), r.status, r) for r in results]


@needs_rliable
def test_table_layout_from_rows():
    comp = Comparison(name="t", methods=[MethodSpec(name="A", recipe="a"), MethodSpec(name="B", recipe="b")], reference="A")
    ev = [(500, 0.5), (1000, 0.6)]
    a_runs = [_result(s, expert_steps=e, success=0.6, curve=ev) for s, e in ((0, 1000), (1, 1200))]
    failed = RunRow("B", 0, Path("/nowhere/b"), "failed", None, "boom")
    rows = [*_rows(a_runs, "A"), failed]
    header, body = make_table(summarize(comp, rows, reps=500))
    assert header[-2].startswith("expert steps to reach A's success (0.60)")
    a = body[0]
    # two seeds: the bootstrap means are the two values and their mean; the interval spans both
    assert a[0] == "A" and a[1] == "1.1K [1.0K, 1.2K] (0.55 [0.50, 0.60])" and a[2] == "2.0K [2.0K, 2.0K]"
    assert "route completion" not in header  # no run reports it
    assert a[4] == "0.60 [0.60, 0.60]" and a[5] == "100.0 [100.0, 100.0]" and a[-2] == "1.0K" and a[-1] == "2/2"
    assert body[1][0] == "B" and body[1][-1] == "0/1"

    # the expert's own reference: one cached measurement shared by every run -> shown once
    shared = {"success": Stat(0.64, 0.5, 0.1, 50), "return": Stat(-741.3, 1, 1, 50), "route_completion": Stat(0.81, 0, 0, 50)}
    a_runs = [_result(s, expert_steps=e, success=0.6, curve=ev, expert=shared) for s, e in ((0, 1000), (1, 1200))]
    header, body = make_table(summarize(comp, [*_rows(a_runs, "A"), failed], reps=500))
    assert header[6] == "route completion"  # the expert reports it now
    assert body[0][:7] == ["expert (alone)", "–", "–", "–", "0.64", "-741.3", "0.81"] and body[0][-1] == "1 measurement"
    a_runs[1].expert_test = {**shared, "success": Stat(0.70, 0.5, 0.1, 50)}  # measured twice: an interval
    _, body = make_table(summarize(comp, [*_rows(a_runs, "A"), failed], reps=500))
    assert body[0][4] == "0.67 [0.64, 0.70]" and body[0][-1] == "2"

    header, _ = make_table(summarize(comp, [failed], reps=500))  # the reference has not run
    assert header[-2] == "expert steps to reach A's success (no finished run)"

    zero = [_result(s, expert_steps=1000, success=0.0, curve=ev) for s in (0, 1)]  # a reference that never succeeds
    _, body = make_table(summarize(comp, [*_rows(zero, "A"), failed], reps=500))
    assert body[0][0] == "A" and body[0][-2] == "–"


def test_load_comparison_rejects_a_training_recipe():
    with pytest.raises(ConfigError, match="training recipe"):
        load_comparison(RECIPES / "hg_cartpole.yaml")


def test_report_command_names_the_methods_it_was_limited_to():
    from gatekit.compare import _command

    cmd = _command("recipes/c.yaml", "runs/c", [0, 1], ("eval.episodes=5",), "docs/c.md", ("AIM", "HG-DAgger"))
    assert cmd == ("gatekit compare recipes/c.yaml --out runs/c --seeds 0,1 --only AIM --only HG-DAgger "
                   "--set eval.episodes=5 --report docs/c.md")


@pytest.mark.parametrize("path", sorted(RECIPES.glob("compare_*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_comparison_plans_with_its_components_arguments_checked(tmp_path, path):
    # compare_metadrive_strong once kept the PPO expert's log_prob_std under the IDM expert: its
    # HG-DAgger and PVP runs failed at build, after other methods' runs had started
    comp, base = load_comparison(path)
    runs = plan(comp, base, tmp_path)
    assert len(runs) == len(comp.methods) * len(comp.seeds)
