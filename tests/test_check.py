"""`gatekit check RUN_DIR` and gatekit.check: healthy, damaged and non-run folders; a damaged
log resumed by `gatekit train --resume` keeps every intact record and reuses no step id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gatekit.check import check_run
from gatekit.cli import main
from gatekit.data import RecordLogWarning, RecordStore, read_log
from gatekit.types import Transition
from tests.recipes import needs_imitation

ROOT = Path(__file__).resolve().parents[1]
OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT = gym.spaces.Discrete(2)


def _run_folder(path: Path, n: int = 40) -> Path:
    """A run folder built by hand: every file `gatekit train` writes that check reads."""
    path.mkdir()
    shutil.copy(ROOT / "recipes/hg_cartpole.yaml", path / "recipe.yaml")
    rng = np.random.default_rng(0)
    with RecordStore(OBS, ACT, path=path / "records.gkr") as store:
        for i in range(n):
            store.append(Transition(step=i, episode=i // 10, obs=rng.uniform(-1, 1, 4).astype(np.float32),
                                    novice_action=i % 2, expert_action=1, executed_action=1, intervened=True,
                                    expert_queried=True, switched=False, reward=1.0,
                                    next_obs=np.zeros(4, np.float32), terminated=False, truncated=False))
    (path / "results.json").write_text(json.dumps({"status": "interrupted", "total_steps": n}))
    torch.save({"format": 1, "records": n, "learner": {"w": torch.zeros(3)}}, path / "checkpoint.pt")
    torch.save({"w": torch.ones(3)}, path / "novice_final.pt")
    return path


def _frames(path: Path) -> tuple[int, int]:
    info = read_log(path / "records.gkr")[2]
    return info["header_bytes"], info["frame_bytes"]


def _flip(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x01
    path.write_bytes(bytes(data))


def _invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["check", *args])
    return res.exit_code, res.stdout, res.stderr


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_healthy_run_folder(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run")
    report = check_run(run)
    assert report.healthy and report.log is not None and report.log.clean and report.log.records == 40
    status = {i.name: i.status for i in report.items}
    assert status == {"records.gkr": "ok", "recipe.yaml": "ok", "results.json": "ok", "checkpoint.pt": "ok",
                      "checkpoint.prev.pt": "absent", "novice_final.pt": "ok", "novice_best.pt": "absent",
                      "progress.csv": "absent", "eval.csv": "absent"}
    code, out, err = _invoke(str(run))
    assert code == 0 and err == ""
    assert out.splitlines()[0] == f"run folder '{run}': healthy"
    assert "40 intact records; no damage" in out and "hg_cartpole" in out


def test_damaged_record_is_found_with_its_byte_range_and_nothing_is_changed(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run")
    h, f = _frames(run)
    _flip(run / "records.gkr", h + 17 * f + 12)
    before = _files(run)
    code, out, _ = _invoke(str(run))
    assert code == 1
    assert "DAMAGED (1 file)" in out.splitlines()[0]
    assert f"39 intact records; 1 damaged record in 1 region at bytes {h + 17 * f}-{h + 18 * f}" in out
    code, out, _ = _invoke(str(run), "--json")
    data = json.loads(out)
    assert code == 1 and data["healthy"] is False
    assert data["log"]["damaged_ranges"] == [[h + 17 * f, h + 18 * f]] and data["log"]["damaged_records"] == 1
    assert _files(run) == before  # read-only


def test_torn_tail_alone_is_reported_but_healthy_and_left_in_place(tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "run")
    h, f = _frames(run)
    log = run / "records.gkr"
    log.write_bytes(log.read_bytes()[:-7])
    before = _files(run)
    report = check_run(run)
    assert report.healthy
    (item,) = [i for i in report.items if i.name == "records.gkr"]
    assert item.status == "ok" and f"torn tail of {f - 7} bytes at {h + 39 * f}-{h + 40 * f - 7}" in item.detail
    assert _files(run) == before  # check never cuts the tail (resume does)
    _flip(log, h + 38 * f + 9)  # the last complete record too: a whole frame lost at the end is damage
    report = check_run(run)
    assert not report.healthy and report.items[0].status == "damaged"
    assert f"damaged tail of 2 records, {2 * f - 7} bytes at {h + 38 * f}-" in report.items[0].detail


def test_each_broken_file_is_named(tmp_path: Path) -> None:
    cases = {
        "records.gkr": lambda p: p.write_bytes(b"GATEKIT-RECORDS 1\n" + b"\xff" * 8),
        "recipe.yaml": lambda p: p.write_text("name: x\nenv: [unclosed\n"),
        "results.json": lambda p: p.write_text('{"status": "fini'),
        "checkpoint.pt": lambda p: p.write_bytes(p.read_bytes()[:100]),
        "novice_final.pt": lambda p: torch.save({"f": np.float64}, p),  # not loadable with weights_only
    }
    for name, damage in cases.items():
        run = _run_folder(tmp_path / name.replace(".", "-"))
        damage(run / name)
        report = check_run(run)
        bad = [(i.name, i.status) for i in report.items if i.status not in ("ok", "absent")]
        assert bad == [(name, "damaged")], bad
        code, out, _ = _invoke(str(run))
        line = next(x for x in out.splitlines() if name in x)
        assert code == 1 and "damaged" in line
    run = _run_folder(tmp_path / "nolog")
    (run / "records.gkr").unlink()
    report = check_run(run)
    assert not report.healthy and report.log is None
    assert [(i.name, i.status) for i in report.items][0] == ("records.gkr", "missing")


def test_not_a_run_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for target in (tmp_path / "nope", tmp_path / "file.txt", tmp_path / "empty"):
        code, out, err = _invoke(str(target))
        assert code == 2 and out == "" and err.count("\n") == 1 and str(target) in err, err


@needs_imitation
def test_real_run_damaged_then_resumed_keeps_intact_records_and_step_ids(tmp_path: Path) -> None:
    """`gatekit train` (stopped at ~150 steps), a flipped byte in record 60, `gatekit check`,
    then `gatekit train --resume`: every intact record stays, no step id is collected twice."""
    from gatekit.config import load_recipe
    from gatekit.runs import train

    run = tmp_path / "run"
    recipe = load_recipe(ROOT / "recipes/hg_cartpole.yaml", [
        "budget.total_steps=300", "eval.in_worker=false", "eval.every_steps=300", "eval.episodes=1",
        "eval.final_episodes=2", "eval.expert_reference=false", "log.tensorboard=false", "log.plots=false",
        "learner.batches_per_update=5"])

    def stop(live: dict[str, float]) -> None:
        if live["steps"] >= 150:
            raise KeyboardInterrupt

    assert train(recipe, out=run, progress=False, on_progress=stop).status == "interrupted"
    code, out, _ = _invoke(str(run))
    assert code == 0, out
    h, f = _frames(run)
    _, before, _ = read_log(run / "records.gkr")
    n = len(before["step"])
    _flip(run / "records.gkr", h + 60 * f + 20)
    code, out, _ = _invoke(str(run))
    assert code == 1 and f"1 damaged record in 1 region at bytes {h + 60 * f}-{h + 61 * f}" in out
    with pytest.warns(RecordLogWarning, match="1 damaged record skipped"):
        res = CliRunner().invoke(main, ["train", "--resume", str(run), "--no-progress"])
    assert res.exit_code == 0, res.stderr + res.output
    _, cols, info = read_log(run / "records.gkr")
    steps = cols["step"].tolist()
    assert steps == [i for i in range(300) if i != 60]  # 60 lost, never re-collected under its id
    for name in before:  # the intact records before the resume are unchanged, in place
        np.testing.assert_array_equal(np.delete(before[name], 60, axis=0), cols[name][:n - 1])
    assert info["report"].damaged_ranges == ((h + 60 * f, h + 61 * f),)
    assert not list(run.glob("records.gkr.*"))  # nothing moved aside
    assert json.loads((run / "results.json").read_text())["total_steps"] == 300
