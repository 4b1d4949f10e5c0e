"""A run's records as other libraries' datasets: Minari (read back by minari.load_dataset)."""

import numpy as np
import pytest
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.config import load_recipe_dict
from gatekit.data import read_log


def _run(tmp_path, steps=450):
    from gatekit.runs import train

    recipe = load_recipe_dict({
        "name": "export", "seed": 0, "env": "pendulum", "expert": "pendulum-pd", "criterion": {"id": "action-gap", "threshold": 0.25},
        "learner": {"id": "mlp-bc", "hidden": [16], "update_every": 20, "iterations": 2, "first_iterations": 2,
                    "batch_size": 32},
        "budget": {"total_steps": steps},
        "eval": {"final_episodes": 0, "in_worker": False},
        "log": {"tensorboard": False, "progress": False, "plots": False},
    })
    out = tmp_path / "run"
    train(recipe, out=out)
    return out


def test_minari_export_loads_with_minari_and_matches_the_record_log(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    pytest.importorskip("h5py")
    run = _run(tmp_path)
    root = tmp_path / "minari"
    monkeypatch.chdir(tmp_path)  # a relative --out, as a person types it
    res = CliRunner().invoke(main, ["export", str(run), "--format", "minari", "--dataset-id", "gatekit/pendulum-v0",
                                    "--out", "minari"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "gatekit/pendulum-v0" in res.output
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    dataset = minari.load_dataset("gatekit/pendulum-v0")
    _, cols, _ = read_log(run / "records.gkr")
    assert dataset.total_steps == len(cols["step"]) == 450
    episodes = list(dataset.iterate_episodes())
    assert len(episodes) == len(np.unique(cols["episode"])) == 3  # 200-step episodes, the last one cut
    actions = np.concatenate([e.actions for e in episodes])
    flags = np.concatenate([np.asarray(e.infos["is_intervention"])[1:] for e in episodes])
    novice = np.concatenate([np.asarray(e.infos["novice_action"])[1:] for e in episodes])
    steps = np.concatenate([np.asarray(e.infos["step"])[1:] for e in episodes])
    np.testing.assert_array_equal(actions, cols["executed_action"])
    np.testing.assert_array_equal(flags, cols["intervened"])
    np.testing.assert_array_equal(novice, cols["novice_action"])
    np.testing.assert_array_equal(steps, cols["step"])
    assert 0 < flags.sum() < len(flags)
    first = episodes[0]
    n = len(first.actions)
    np.testing.assert_array_equal(first.observations[:n], cols["obs"][:n])
    np.testing.assert_array_equal(first.observations[n], cols["next_obs"][n - 1])
    # the dataset exists now: a second export is one clean line, not Minari's traceback
    again = CliRunner().invoke(main, ["export", str(run), "--format", "minari", "--dataset-id", "gatekit/pendulum-v0",
                                      "--out", str(root)])
    assert again.exit_code == 2 and len(again.stderr.strip().splitlines()) == 1


def test_export_without_minari_names_the_extra(tmp_path, monkeypatch):
    import sys

    run = _run(tmp_path, steps=30)
    monkeypatch.setitem(sys.modules, "minari", None)
    res = CliRunner().invoke(main, ["export", str(run), "--format", "minari"])
    assert res.exit_code == 2
    assert "gatekit[minari]" in res.stderr and len(res.stderr.strip().splitlines()) == 1
