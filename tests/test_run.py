"""The run loop: same seed twice gives the same run; a finished run is not resumed."""

import json

import numpy as np
import pytest
import yaml

from gatekit.config import load_recipe_dict
from gatekit.data import read_log
from gatekit.errors import RunDirError
from gatekit.runs import train
from tests.recipes import fast_recipe


def _run(tmp_path, name, seed):
    raw = fast_recipe(budget={"total_steps": 1200}, seed=seed)
    res = train(load_recipe_dict(raw), out=tmp_path / name)
    _, cols, _ = read_log(tmp_path / name / "records.gkr")
    return res, cols


def test_same_seed_twice_gives_the_same_run(tmp_path):
    (r1, c1), (r2, c2) = _run(tmp_path, "a", 3), _run(tmp_path, "b", 3)
    for name in c1:
        np.testing.assert_array_equal(c1[name], c2[name], err_msg=name)
    strip = lambda r: {k: v for k, v in r.to_json().items() if k not in ("wall_seconds", "evaluations")}  # noqa: E731
    assert strip(r1) == strip(r2)
    assert [e.metrics for e in r1.evaluations] == [e.metrics for e in r2.evaluations]
    _, c3 = _run(tmp_path, "c", 4)
    assert not np.array_equal(c1["obs"][: len(c3["obs"])], c3["obs"][: len(c1["obs"])])


def test_finished_run_cannot_be_resumed_and_folder_is_not_reused(tmp_path):
    raw = fast_recipe(budget={"total_steps": 300})
    train(load_recipe_dict(raw), out=tmp_path / "run")
    with pytest.raises(RunDirError, match="already finished"):
        train(resume=tmp_path / "run")
    with pytest.raises(RunDirError, match="already holds a run"):
        train(load_recipe_dict(raw), out=tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    from gatekit.components import with_defaults

    assert load_recipe_dict(saved) == with_defaults(load_recipe_dict(raw))  # saved with every default written out
    assert json.loads((tmp_path / "run" / "results.json").read_text())["schema"] == "gatekit.results/1"


def test_final_evaluation_shared_by_processes_gives_the_same_figures(tmp_path):
    """The final evaluation split over worker processes (each episode seeded alone) reports
    exactly what one process would."""
    results = {}
    for workers in (1, 3):
        raw = fast_recipe(budget={"total_steps": 300},
                          eval={"in_worker": True, "final_episodes": 7, "final_workers": workers,
                                "expert_reference": True})
        results[workers] = train(load_recipe_dict(raw), out=tmp_path / f"w{workers}" / "run")  # no shared cache
    assert results[1].test["success"].n == results[3].test["success"].n == 7
    assert {k: s.as_dict() for k, s in results[1].test.items()} == {k: s.as_dict() for k, s in results[3].test.items()}
    assert results[3].expert_test["return"].n == 7  # the expert's reference, in parts, finished too
    assert results[1].expert_test["return"].mean == results[3].expert_test["return"].mean


def test_evaluations_every_n_expert_steps_and_none_twice_at_the_end(tmp_path):
    raw = fast_recipe(budget={"total_steps": 5000, "expert_steps": 240, "warmup_steps": 60},
                      eval={"every_expert_steps": 80, "episodes": 1, "final_episodes": 1})
    res = train(load_recipe_dict(raw), out=tmp_path / "run")
    assert res.expert_steps == 240 and res.total_steps < 5000  # the expert's budget ended the run
    points = [e.expert_steps for e in res.evaluations]
    assert points[:-1] == [80, 160]  # the first step at or past each multiple of 80 ...
    assert points[-1] == 240         # ... and the final evaluation, not a periodic one beside it
