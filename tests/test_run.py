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
