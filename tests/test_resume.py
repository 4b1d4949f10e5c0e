"""Resume checks (docs/reliability.md): checkpoints carry a checksum and know their recipe and
record log; a damaged one falls back to the previous one or to the log alone, saying which; a
missing, shortened, replaced or edited log, or an edited recipe, is refused in one line with
nothing changed."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.data import RecordStore, read_log
from gatekit.errors import ResumeWarning, RunDirError
from gatekit.runs import train
from gatekit.runs.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME, load_checkpoint
from gatekit.runs.integrity import (
    BLOCK_STEPS,
    DamagedFileError,
    LogDigest,
    load_sealed,
    seal,
    verify_log,
)
from tests.recipes import interrupted_run

OVER = {"data": {"checkpoint_every": 75}, "eval": {"every_steps": 100}}  # checkpoints at 75, 150, 200 (the stop)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return interrupted_run(tmp_path_factory.mktemp("base") / "run", at=200, **OVER)


@pytest.fixture
def run(base, tmp_path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(base, dest)
    return dest


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def _resume(path: Path) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["train", "--resume", str(path), "--no-progress"])
    return res.exit_code, res.stderr


def _refused(path: Path, match: str) -> None:
    """``--resume`` exits 2 with one line matching ``match``, and changes nothing."""
    before = _files(path)
    code, err = _resume(path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gatekit: error: "), err
    assert match in lines[0], lines[0]
    assert _files(path) == before


def _results(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


# -- the checkpoint knows its log ---------------------------------------------------------------------

def test_deleted_log_is_refused_not_replaced_by_an_empty_one(run):
    (run / "records.gkr").unlink()
    _refused(run, "is missing but checkpoint.pt is there")
    assert not (run / "records.gkr").exists()


def test_shortened_log_is_refused_and_the_checkpoint_kept(run):
    info = read_log(run / "records.gkr")[2]
    log = run / "records.gkr"
    log.write_bytes(log.read_bytes()[:info["header_bytes"] + 120 * info["frame_bytes"]])  # whole frames: no damage
    _refused(run, "holds 120 steps but checkpoint.pt was trained on 200")
    _refused(run, "holds 120 steps")  # a refused resume wrote nothing: the next one refuses again


def test_log_of_another_run_is_refused(run, tmp_path):
    other = interrupted_run(tmp_path / "other", at=200, seed=1, **OVER)
    shutil.copy(other / "records.gkr", run / "records.gkr")
    _refused(run, "does not match checkpoint.pt: steps 0-1023 differs")


def test_edited_seed_is_refused(run):
    raw = yaml.safe_load((run / "recipe.yaml").read_text())
    raw["seed"] = 7
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _refused(run, "'seed' was 0, is now 7")


def test_mid_log_damage_is_accepted_counted_and_said(run):
    info = read_log(run / "records.gkr")[2]
    log = run / "records.gkr"
    data = bytearray(log.read_bytes())
    data[info["header_bytes"] + 10 * info["frame_bytes"] + 12] ^= 0x40  # record 10's payload
    log.write_bytes(bytes(data))
    code, err = _resume(run)
    assert code == 0, err
    res = _results(run)
    assert res["status"] == "finished" and res["resumed"] == {
        "from": "checkpoint.pt", "records_lost": 1,
        "note": "1 record checkpoint.pt was trained on was lost to the damage reported above; resumed with the "
                "199 intact records"}
    assert res["record_log"]["damaged_records"] == 1
    steps = read_log(log)[1]["step"]
    assert 10 not in steps and len(set(steps.tolist())) == len(steps) == 299  # no step id reused


def test_log_digest_is_the_same_computed_incrementally_or_at_once(tmp_path):
    import gymnasium as gym

    from gatekit.types import Transition

    store = RecordStore(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2), path=tmp_path / "r.gkr")
    digest, rng = LogDigest(), np.random.default_rng(0)
    seen = []
    for i in range(2 * BLOCK_STEPS + 300):
        store.append(Transition(step=i, episode=i // 50, obs=rng.random(3, np.float32), novice_action=0,
                                expert_action=1, executed_action=1, intervened=i % 3 == 0, expert_queried=i % 3 == 0,
                                switched=False, reward=0.0, next_obs=rng.random(3, np.float32),
                                terminated=False, truncated=i % 50 == 49))
        if i % 400 == 0:
            seen.append((i + 1, digest.blocks(store, i + 1)))
    for steps, blocks in seen:  # every checkpoint's digests verify against the final log
        assert verify_log(store, log_steps=steps, blocks=blocks, source="ckpt").verified == steps
        assert blocks == LogDigest().blocks(store, steps)
    store.close()


# -- damaged checkpoints ------------------------------------------------------------------------------

def _flip_tensor_bytes(path: Path, n: int = 16) -> None:
    """Flip ``n`` bytes in the middle of the largest tensor: the file still loads."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    start += info.file_size // 2
    for k in range(n):
        data[start + k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_that_still_load_fail_the_checksum_and_resume_uses_the_previous(run):
    path = run / CHECKPOINT_NAME
    _flip_tensor_bytes(path)
    torch.load(path, weights_only=True)  # it still loads: only the checksum can tell
    with pytest.raises(DamagedFileError, match="fails its checksum"):
        load_checkpoint(path)
    damaged = path.read_bytes()
    with pytest.warns(ResumeWarning, match=r"checkpoint\.pt' is damaged \(its content fails its checksum\).*"
                                           r"resumed from checkpoint\.prev\.pt \(step 150\)"):
        res = train(resume=run, progress=False)
    assert res.status == "finished" and res.extra["resumed"]["from"] == PREVIOUS_NAME
    (aside,) = run.glob("checkpoint.pt.damaged-*")
    assert aside.read_bytes() == damaged  # never overwritten: set aside as it was


def test_both_checkpoints_damaged_rebuild_from_the_log(run):
    (run / CHECKPOINT_NAME).write_bytes(b"garbage")
    (run / PREVIOUS_NAME).write_bytes((run / PREVIOUS_NAME).read_bytes()[:1000])
    with pytest.warns(ResumeWarning, match="rebuilt the learner and the criterion from the 200 records of the log"):
        res = train(resume=run, progress=False)
    assert res.status == "finished" and res.extra["resumed"]["from"] == "records"
    assert len(list(run.glob("checkpoint*.damaged-*"))) == 2
    assert load_checkpoint(run / CHECKPOINT_NAME)["learner"]["updates"] > 0  # the fresh learner trained


def test_unreadable_checkpoint_is_set_aside_never_overwritten(run):
    """The old failure: a resume that could not read the checkpoint wrote an untrained one over
    it, and the next resume silently started from scratch."""
    (run / PREVIOUS_NAME).unlink()
    garbage = b"\x00" * 64 + b"not a checkpoint"
    (run / CHECKPOINT_NAME).write_bytes(garbage)
    with pytest.warns(ResumeWarning, match="set aside"):
        train(resume=run, progress=False)
    (aside,) = run.glob("checkpoint.pt.damaged-*")
    assert aside.read_bytes() == garbage


def test_garbage_saved_novice_is_one_line_without_weights_only_advice(run):
    (run / "novice_best.pt").write_bytes(b"PK\x03\x04 garbage")
    res = CliRunner().invoke(main, ["eval", str(run), "--checkpoint", "best", "--episodes", "1"])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.stderr
    assert "saved novice" in lines[0] and "is damaged" in lines[0] and "weights_only" not in lines[0]


def test_sealed_files_stay_plain_state_dicts(tmp_path):
    state = {"actor": {"w": torch.ones(3)}, "updates": 4, "rng": {"state": 2**100}}
    torch.save(seal(state), tmp_path / "n.pt")
    raw = torch.load(tmp_path / "n.pt", weights_only=True)  # readable without gatekit
    assert raw["updates"] == 4 and "gatekit_sha256" in raw
    assert load_sealed(tmp_path / "n.pt", what="x", fix="y").keys() == state.keys()


# -- counters after a resume -----------------------------------------------------------------------------

def test_interrupted_episode_is_not_counted_after_resume(tmp_path):
    run = interrupted_run(tmp_path / "run", at=125)  # horizon 10: the stop lands mid-episode
    res = train(resume=run, progress=False)
    cols = read_log(run / "records.gkr")[1]
    finished = int(np.count_nonzero(cols["terminated"] | cols["truncated"]))
    assert res.episodes == finished == _results(run)["episodes"]


def test_resume_refuses_when_checks_fail_even_from_python(run):
    (run / "records.gkr").unlink()
    with pytest.raises(RunDirError, match="is missing"):
        train(resume=run, progress=False)
