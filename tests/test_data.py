"""The durable data layer: record log format, crash recovery, fsync bound, RecordStore, export."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekit.data import (
    LogReport,
    RecordLogWarning,
    RecordStore,
    read_log,
    scan_log,
)
from gatekit.data.log import MAGIC
from gatekit.data.store import COLUMNS
from gatekit.errors import ConfigError, RunDirError
from gatekit.types import Transition
from tests.recipes import needs_imitation

REPO = Path(__file__).resolve().parents[1]

BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
DISC = gym.spaces.Discrete(4)


def sample(space: gym.Space, rng: np.random.Generator) -> Any:
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    if isinstance(space, gym.spaces.Box):
        if np.issubdtype(space.dtype, np.floating):
            return rng.normal(size=space.shape).astype(space.dtype)
        return rng.integers(0, 100, size=space.shape).astype(space.dtype)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return (rng.integers(0, 1 << 30, size=space.shape) % space.nvec).astype(space.dtype)
    return rng.integers(0, 2, size=space.shape).astype(space.dtype)


def make_t(i: int, obs_space: gym.Space, act_space: gym.Space, rng: np.random.Generator, *,
           intervened: bool | None = None, queried: bool | None = None, episode: int | None = None) -> Transition:
    intervened = bool(rng.random() < 0.3) if intervened is None else intervened
    queried = intervened or (bool(rng.random() < 0.5) if queried is None else queried)
    expert = sample(act_space, rng)
    return Transition(
        step=i, episode=i // 7 if episode is None else episode, obs=sample(obs_space, rng),
        novice_action=sample(act_space, rng), expert_action=expert if queried else None,
        executed_action=expert if intervened else sample(act_space, rng), intervened=intervened,
        expert_queried=queried, switched=bool(rng.random() < 0.1), reward=float(rng.normal()),
        next_obs=sample(obs_space, rng), terminated=bool(rng.random() < 0.05),
        truncated=bool(rng.random() < 0.05), score=float(rng.normal()) if rng.random() < 0.5 else math.nan,
    )


def fill(path: Path | None, n: int, obs_space: gym.Space = BOX, act_space: gym.Space = DISC, *,
         seed: int = 0, **kw: Any) -> tuple[RecordStore, list[Transition]]:
    rng = np.random.default_rng(seed)
    store = RecordStore(obs_space, act_space, path=path, **kw)
    ts = [make_t(i, obs_space, act_space, rng) for i in range(n)]
    for t in ts:
        store.append(t)
    return store, ts


def snapshot(store: RecordStore) -> dict[str, bytes]:
    return {name: store.column(name).tobytes() for name in COLUMNS}


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(("obs_space", "act_space"), [
    (BOX, DISC),
    (gym.spaces.Discrete(5), gym.spaces.Box(-2.0, 2.0, (2,), np.float64)),
    (gym.spaces.MultiDiscrete([3, 4]), gym.spaces.MultiBinary(3)),
])
def test_round_trip(tmp_path: Path, obs_space: gym.Space, act_space: gym.Space) -> None:
    path = tmp_path / "records.gkr"
    store, ts = fill(path, 300, obs_space, act_space)  # > initial capacity: exercises growth
    before = snapshot(store)
    counts = store.counts()
    store.close()
    schema, cols, info = read_log(path)
    assert info["records"] == 300 and info["torn_bytes"] == 0
    assert [f["name"] for f in schema["fields"]] == list(COLUMNS)
    with RecordStore.open(path, obs_space, act_space) as again:
        assert snapshot(again) == before
        assert again.counts() == counts
        assert again.recovered_torn_bytes == 0
    for name in COLUMNS:
        assert cols[name].tobytes() == before[name]
    # Values as given (expert_action fill where not queried).
    for i in (0, 1, 150, 299):
        t = ts[i]
        np.testing.assert_array_equal(cols["obs"][i], np.asarray(t.obs))
        if t.expert_queried:
            np.testing.assert_array_equal(cols["expert_action"][i], np.asarray(t.expert_action))
        elif cols["expert_action"].dtype.kind == "f":
            assert np.isnan(cols["expert_action"][i]).all()
        else:
            assert (cols["expert_action"][i] == -1).all()


def test_memory_store_columns_counts_and_labels() -> None:
    store, ts = fill(None, 50)
    assert len(store) == 50 and store.path is None
    assert store.obs.shape == (50, 3) and store.obs.dtype == np.float32
    assert store.expert_action.dtype == np.int64
    with pytest.raises(ValueError):
        store.obs[0, 0] = 1.0  # read-only view
    c = store.counts()
    assert c == {"total_steps": 50, "expert_steps": sum(t.intervened for t in ts),
                 "expert_queries": sum(t.expert_queried for t in ts),
                 "switches": sum(t.switched for t in ts), "episodes": len({t.episode for t in ts})}
    obs, acts = store.expert_labelled()
    assert len(obs) == c["expert_steps"]
    np.testing.assert_array_equal(acts, [t.executed_action for t in ts if t.intervened])
    obs_q, acts_q = store.expert_labelled(source="queried")
    assert len(obs_q) == c["expert_queries"]
    np.testing.assert_array_equal(acts_q, [t.expert_action for t in ts if t.expert_queried])
    with pytest.raises(KeyError, match="did you mean"):
        store.column("ob")


def test_append_validates_and_records_nothing_on_error(tmp_path: Path) -> None:
    path = tmp_path / "r.gkr"
    store, _ = fill(path, 5)
    rng = np.random.default_rng(1)
    good = make_t(5, BOX, DISC, rng)
    size = path.stat().st_size
    for bad in (
        Transition(**{**good.__dict__, "obs": np.zeros(4, np.float32)}),
        Transition(**{**good.__dict__, "novice_action": 1.5}),
        Transition(**{**good.__dict__, "expert_queried": True, "expert_action": None}),
    ):
        with pytest.raises((ValueError, TypeError)):
            store.append(bad)
    assert len(store) == 5 and path.stat().st_size == size
    store.append(good)
    store.close()
    assert read_log(path)[2]["records"] == 6
    with pytest.raises(ValueError, match="closed"):
        store.append(good)


def test_unsupported_space_suggests_flattening() -> None:
    with pytest.raises(ConfigError, match="FlattenObservation") as exc:
        RecordStore(gym.spaces.Dict({"a": BOX}), DISC)
    one_line(exc)
    with pytest.raises(ConfigError, match="action space"):
        RecordStore(BOX, gym.spaces.Tuple((DISC, DISC)))


# -- torn tails -----------------------------------------------------------------------------


def _build(tmp_path: Path, n: int = 20) -> tuple[Path, dict[str, bytes], dict[str, int]]:
    path = tmp_path / "orig.gkr"
    store, _ = fill(path, n)
    snap = snapshot(store)
    store.close()
    return path, snap, read_log(path)[2]


def _check_resumed(path: Path, snap: dict[str, bytes], k: int, torn: int, info: dict[str, int]) -> None:
    """Reopen: ``k`` records kept, ``torn`` bytes reported and saved; appending still works."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = RecordStore.open(path, BOX, DISC)
    # Silent for a crash's torn write; a warning once a whole frame at the end was lost.
    assert [str(w.message) for w in caught if w.category is RecordLogWarning] == \
        ([store.log_report.summary() + "; the intact records were kept and nothing was moved"]
         if torn >= info["frame_bytes"] else [])
    with store:
        assert len(store) == k
        assert store.recovered_torn_bytes == torn
        assert store.log_report is not None and store.log_report.damaged_records == 0
        assert (store.recovered_torn_path is not None) == bool(torn)
        for name in COLUMNS:
            per_row = len(snap[name]) // info["records"]
            assert store.column(name).tobytes() == snap[name][:k * per_row]
        rng = np.random.default_rng(99)
        for i in range(3):
            store.append(make_t(k + i, BOX, DISC, rng))
    _, cols, again = read_log(path)
    assert again["records"] == k + 3 and again["torn_bytes"] == 0
    np.testing.assert_array_equal(cols["step"], np.arange(k + 3))


def test_torn_tail_truncated_anywhere(tmp_path: Path) -> None:
    orig, snap, info = _build(tmp_path)
    h, f, total = info["header_bytes"], info["frame_bytes"], info["file_bytes"]
    rng = np.random.default_rng(0)
    cuts = {h, h + 1, h + f - 1, total - 1, total - 8, *rng.integers(h, total, size=6).tolist()}
    for cut in sorted(cuts):
        path = tmp_path / f"cut{cut}.gkr"
        shutil.copy(orig, path)
        os.truncate(path, cut)
        _, _, got = read_log(path)  # never raises on a torn tail
        k, torn = (cut - h) // f, (cut - h) % f
        assert (got["records"], got["torn_bytes"]) == (k, torn)
        _check_resumed(path, snap, k, torn, info)
        if torn:
            saved = list(tmp_path.glob(f"cut{cut}.gkr.torn-*"))
            assert len(saved) == 1 and saved[0].read_bytes() == orig.read_bytes()[h + k * f:cut]


def test_corrupt_last_frame_is_skipped(tmp_path: Path) -> None:
    orig, snap, info = _build(tmp_path)
    f, total, n = info["frame_bytes"], info["file_bytes"], info["records"]
    rng = np.random.default_rng(1)
    # length field, crc field, and random payload bytes of the last frame
    for pos in [total - f, total - f + 5, *rng.integers(total - f + 8, total, size=4).tolist()]:
        path = tmp_path / f"flip{pos}.gkr"
        data = bytearray(orig.read_bytes())
        data[pos] ^= 0xFF
        path.write_bytes(bytes(data))
        _, _, got = read_log(path)
        assert (got["records"], got["torn_bytes"]) == (n - 1, f)
        _check_resumed(path, snap, n - 1, f, info)


def test_corrupt_header_is_one_line_run_dir_error(tmp_path: Path) -> None:
    orig, _, info = _build(tmp_path)
    cases = {
        "garbage": b"hello world\n" * 10,
        "empty": b"",
        "short": MAGIC[:5],
        "json": None,
        "version": b"GATEKIT-RECORDS 9\n" + orig.read_bytes()[len(MAGIC):],
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.gkr"
        if content is None:
            data = bytearray(orig.read_bytes())
            data[len(MAGIC) + 12] ^= 0x20  # inside the JSON schema: CRC mismatch
            content = bytes(data)
        path.write_bytes(content)
        with pytest.raises(RunDirError) as exc:
            read_log(path)
        assert str(path) in one_line(exc)
        with pytest.raises(RunDirError):
            RecordStore.open(path, BOX, DISC)
        assert path.read_bytes() == content  # refused without touching the file


# -- damage in the middle: a damaged record costs that record only ----------------------------


def _damaged_copy(orig: Path, path: Path, edit: Any) -> bytes:
    data = bytearray(orig.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))
    return bytes(data)


def _report(path: Path) -> LogReport:
    report = read_log(path)[2]["report"]
    assert isinstance(report, LogReport)
    return report


def test_flipped_byte_mid_file_costs_that_record_only(tmp_path: Path) -> None:
    orig, snap, info = _build(tmp_path)
    h, f = info["header_bytes"], info["frame_bytes"]
    keep = [i for i in range(20) if i != 5]
    # the length field, the CRC field, and a payload byte of record 5
    for pos in (h + 5 * f, h + 5 * f + 6, h + 5 * f + 20, h + 6 * f - 1):
        path = tmp_path / f"flip{pos}.gkr"
        _damaged_copy(orig, path, lambda d, pos=pos: d.__setitem__(pos, d[pos] ^ 0x01))
        _, cols, got = read_log(path)
        np.testing.assert_array_equal(cols["step"], keep)  # before AND after the damage
        report = got["report"]
        assert (report.records, report.damaged_records, report.skipped_records) == (19, 1, 1)
        assert report.damaged_ranges == ((h + 5 * f, h + 6 * f),)
        assert (report.torn_tail_bytes, got["torn_bytes"], report.damaged, report.clean) == (0, 0, True, False)
        for name in COLUMNS:
            rows = np.frombuffer(snap[name], dtype=cols[name].dtype).reshape(20, *cols[name].shape[1:])
            assert cols[name].tobytes() == rows[keep].tobytes(), name
    assert scan_log(path) == report  # the constant-memory scan agrees


def test_several_damaged_regions_are_each_reported(tmp_path: Path) -> None:
    orig, _, info = _build(tmp_path, n=30)
    h, f = info["header_bytes"], info["frame_bytes"]

    def edit(d: bytearray) -> None:
        d[h + 2 * f + 30] ^= 0x80  # records 2 and 3: one region of two records
        d[h + 3 * f + 9] ^= 0x04
        d[h + 9 * f + 1] ^= 0x10  # record 9
        d[h + 14 * f + 50:h + 16 * f - 3] = bytes(2 * f - 53)  # records 14 and 15 zeroed
        d[h] ^= 0x01  # record 0: damage right after the header is in the middle too

    path = tmp_path / "many.gkr"
    _damaged_copy(orig, path, edit)
    _, cols, got = read_log(path)
    lost = {0, 2, 3, 9, 14, 15}
    np.testing.assert_array_equal(cols["step"], [i for i in range(30) if i not in lost])
    report = got["report"]
    assert report.damaged_ranges == ((h, h + f), (h + 2 * f, h + 4 * f), (h + 9 * f, h + 10 * f),
                                     (h + 14 * f, h + 16 * f))
    assert (report.damaged_records, report.torn_tail_bytes) == (6, 0)
    summary = report.summary()
    assert "\n" not in summary and "6 damaged records" in summary and "4 regions" in summary
    assert f"{h}-{h + f}" in summary and "(+1 more)" in summary
    json.dumps(report.to_dict())  # JSON-able for results.json
    assert report.to_dict()["damaged_ranges"][1] == [h + 2 * f, h + 4 * f]


def test_inserted_or_deleted_bytes_resync_off_the_frame_grid(tmp_path: Path) -> None:
    orig, _, info = _build(tmp_path)
    h, f = info["header_bytes"], info["frame_bytes"]
    for name, edit, region, counted in (
        ("deleted", lambda d: d.__delitem__(slice(h + 5 * f + 10, h + 5 * f + 20)), f - 10, 1),
        ("inserted", lambda d: d.__setitem__(slice(h + 5 * f + 10, h + 5 * f + 10), b"\xab" * 7), f + 7, 2),
        # 10 bytes of record 5 and the last f - 3 of record 7 remain: 3 records in f + 7 bytes
        ("spanning", lambda d: d.__delitem__(slice(h + 5 * f + 10, h + 7 * f + 3)), f + 7, 2),
    ):
        path = tmp_path / f"{name}.gkr"
        _damaged_copy(orig, path, edit)
        _, cols, got = read_log(path)
        lost = {5} if name != "spanning" else {5, 6, 7}
        np.testing.assert_array_equal(cols["step"], [i for i in range(20) if i not in lost])
        report = got["report"]
        assert report.damaged_ranges == ((h + 5 * f, h + 5 * f + region),)
        assert (report.damaged_records, report.torn_tail_bytes) == (counted, 0)  # rounded up
        with pytest.warns(RecordLogWarning):
            store = RecordStore.open(path, BOX, DISC)
        with store:
            # the step column's gap wins where the byte count falls short (bytes deleted)
            assert store.lost_steps == max(counted, len(lost))
            nxt = store.counts()["total_steps"]
            assert nxt >= 20 and nxt == len(store) + store.lost_steps
            store.append(make_t(nxt, BOX, DISC, np.random.default_rng(3)))
        _, cols, _ = read_log(path)
        assert cols["step"][-1] == nxt and len(set(cols["step"].tolist())) == len(cols["step"])
    # Off the grid near the end: the last record is confirmed by the end of the file, and the
    # one before a torn tail by the torn frame's length field.
    for name, edit, keep, tail in (
        ("last", lambda d: d.__delitem__(slice(h + 18 * f + 10, h + 18 * f + 20)), [*range(18), 19], 0),
        ("before-torn", lambda d: (d.__delitem__(slice(-5, None)), d.__delitem__(slice(h + 17 * f + 10, h + 17 * f + 20))),
         [*range(17), 18], f - 5),
    ):
        path = tmp_path / f"{name}.gkr"
        _damaged_copy(orig, path, edit)
        _, cols, got = read_log(path)
        assert cols["step"].tolist() == keep
        assert (got["report"].damaged_records, got["torn_bytes"]) == (1, tail)


def test_reopen_after_mid_file_damage_keeps_records_in_place_and_never_reuses_step_ids(tmp_path: Path) -> None:
    orig, snap, info = _build(tmp_path)
    h, f = info["header_bytes"], info["frame_bytes"]
    path = tmp_path / "mid.gkr"

    def edit(d: bytearray) -> None:
        d[h + 5 * f + 20] ^= 0x01  # record 5
        d[h + 7 * f + 20:h + 9 * f + 20] = bytes(2 * f)  # records 7, 8 and 9 (zeroed), episode 1 gone
        del d[-10:]  # and a torn tail: record 19's frame cut short

    damaged = _damaged_copy(orig, path, edit)
    with pytest.warns(RecordLogWarning) as caught:
        store = RecordStore.open(path, BOX, DISC)
    (w,) = caught
    msg = str(w.message)
    assert warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line).count("\n") == 1
    assert "\n" not in msg and "4 damaged records" in msg and f"{h + 5 * f}-{h + 6 * f}" in msg
    assert "torn tail" in msg and "2 regions" in msg
    kept = [0, 1, 2, 3, 4, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18]
    with store:
        assert len(store) == 15 and store.lost_steps == 4
        np.testing.assert_array_equal(store.step, kept)
        report = store.log_report
        assert report is not None and report.damaged_ranges == ((h + 5 * f, h + 6 * f), (h + 7 * f, h + 10 * f))
        assert report.torn_tail_bytes == f - 10 and report.torn_saved_to == str(store.recovered_torn_path)
        c = store.counts()
        # Numbering goes on after record 18 (the torn record 19's id is used again, as before).
        assert c["total_steps"] == 19
        assert c["episodes"] == 1 + 18 // 7  # episode ids 0..2; none reused even if one were lost
        for i in range(3):
            store.append(make_t(c["total_steps"] + i, BOX, DISC, np.random.default_rng(i)))
    now = path.read_bytes()
    assert now[:h + 19 * f] == damaged[:h + 19 * f]  # intact records and damage untouched in place
    assert [p.name for p in tmp_path.glob("mid.gkr.*")] == [Path(str(store.recovered_torn_path)).name]
    _, cols, again = read_log(path)
    np.testing.assert_array_equal(cols["step"], [*kept, 19, 20, 21])
    assert again["report"].damaged_ranges == report.damaged_ranges and again["torn_bytes"] == 0
    for name in COLUMNS:  # the intact records are byte-for-byte the originals
        rows = np.frombuffer(snap[name], dtype=cols[name].dtype).reshape(20, *cols[name].shape[1:])
        assert cols[name][:15].tobytes() == rows[kept].tobytes(), name


def test_episode_numbering_continues_when_whole_episodes_are_lost(tmp_path: Path) -> None:
    path = tmp_path / "ep.gkr"
    store, _ = fill(path, 30)  # episode = step // 7
    store.close()
    info = read_log(path)[2]
    h, f = info["header_bytes"], info["frame_bytes"]
    _damaged_copy(path, path, lambda d: d.__setitem__(slice(h + 7 * f, h + 21 * f), bytes(14 * f)))
    with pytest.warns(RecordLogWarning, match="14 damaged records"):
        store = RecordStore.open(path, BOX, DISC)
    with store:
        assert sorted(set(store.episode.tolist())) == [0, 3, 4]
        assert store.counts() == {**store.counts(), "total_steps": 30, "episodes": 5}


def test_damage_warning_and_refusal(tmp_path: Path) -> None:
    orig, _, info = _build(tmp_path)
    h, f = info["header_bytes"], info["frame_bytes"]
    # A crash's torn write (less than one frame) stays silent, as before.
    path = tmp_path / "torn.gkr"
    _damaged_copy(orig, path, lambda d: d.__delitem__(slice(-5, None)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RecordStore.open(path, BOX, DISC).close()
    # Damage with on_damage="raise": one line, and the file (torn tail included) is untouched.
    path = tmp_path / "mid.gkr"
    content = _damaged_copy(orig, path, lambda d: (d.__setitem__(h + 3 * f + 9, d[h + 3 * f + 9] ^ 1),
                                                    d.__delitem__(slice(-5, None))))
    with pytest.raises(RunDirError, match="1 damaged record skipped") as exc:
        RecordStore.open(path, BOX, DISC, on_damage="raise")
    assert "gatekit check" in one_line(exc)
    assert path.read_bytes() == content and not list(tmp_path.glob("mid.gkr.*"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with RecordStore.open(path, BOX, DISC, on_damage="ignore") as store:
            assert store.log_report is not None and store.log_report.damaged_records == 1
    with pytest.raises(ValueError, match="on_damage"):
        RecordStore.open(path, BOX, DISC, on_damage="skip")  # type: ignore[arg-type]


def test_every_header_byte_damaged_is_a_one_line_error(tmp_path: Path) -> None:
    orig, _, info = _build(tmp_path, n=3)
    raw = orig.read_bytes()
    path = tmp_path / "h.gkr"
    for pos in range(info["header_bytes"]):
        data = bytearray(raw)
        data[pos] ^= 0x5A
        path.write_bytes(bytes(data))
        with pytest.raises(RunDirError) as exc:
            read_log(path)
        assert str(path) in one_line(exc), pos
    for pos in (0, len(MAGIC) + 1, len(MAGIC) + 5, info["header_bytes"] - 1):
        data = bytearray(raw)
        data[pos] ^= 0x5A
        path.write_bytes(bytes(data))
        with pytest.raises(RunDirError) as exc:
            RecordStore.open(path, BOX, DISC)
        one_line(exc)
        assert path.read_bytes() == bytes(data)


_PROPERTY_N = 24


@pytest.fixture(scope="module")
def property_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, int]]:
    path = tmp_path_factory.mktemp("prop") / "base.gkr"
    store, _ = fill(path, _PROPERTY_N)
    store.close()
    return path.read_bytes(), read_log(path)[2]


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("zero"), st.floats(0, 1, exclude_max=True), st.integers(1, 400)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_mutation, max_size=6), cut=st.none() | st.floats(0, 1))
def test_property_untouched_records_survive_any_damage(property_log: tuple[bytes, dict[str, int]],
                                                       mutations: list[tuple[str, float, int]],
                                                       cut: float | None) -> None:
    """Random flips, zeroed ranges and a truncation: every record whose bytes were untouched is
    read exactly once, in order; the skipped count equals the records that were touched."""
    raw, info = property_log
    h, f = info["header_bytes"], info["frame_bytes"]
    data = bytearray(raw)
    body = len(raw) - h
    for kind, where, arg in mutations:
        pos = h + int(where * body)
        if kind == "flip":
            data[pos] ^= arg
        else:
            end = min(pos + arg, len(data))
            data[pos:end] = bytes(end - pos)
    if cut is not None:
        del data[h + int(cut * body):]
    untouched, touched = [], 0
    for k in range(_PROPERTY_N):
        a = h + k * f
        if a >= len(data):
            break  # cut off entirely: not in the file at all
        if data[a:a + f] == raw[a:a + f]:
            untouched.append(k)
        else:
            touched += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.gkr"
        path.write_bytes(bytes(data))
        _, cols, got = read_log(path)
        report = got["report"]
        assert cols["step"].tolist() == untouched
        assert report.skipped_records == touched
        assert report.records + report.skipped_records == -(-(len(data) - h) // f)
        with RecordStore.open(path, BOX, DISC, on_damage="ignore") as store:
            assert store.step.tolist() == untouched
            steps = store.counts()["total_steps"]
            assert steps >= (untouched[-1] + 1 if untouched else 0)  # no step id is used twice
            assert store.lost_steps == report.damaged_records
        assert path.read_bytes() == bytes(data[:report.torn_tail_offset])  # only the tail was cut


# -- crashes ----------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import gymnasium as gym
    from gatekit.data import RecordStore
    from gatekit.types import Transition
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(seed)
    store = RecordStore(gym.spaces.Box(-1, 1, (8,), np.float32), gym.spaces.Discrete(3), path=path,
                        max_unsynced=int(rng.integers(0, 4)))
    out = sys.stdout
    out.write("ready\\n")
    out.flush()
    i = 0
    while True:
        expert = bool(rng.random() < 0.3)
        o = rng.normal(size=8).astype(np.float32)
        store.append(Transition(step=i, episode=i // 50, obs=o, novice_action=0,
                                expert_action=1 if expert else None, executed_action=1 if expert else 0,
                                intervened=expert, expert_queried=expert, switched=False, reward=1.0,
                                next_obs=o, terminated=False, truncated=False))
        out.write(f"{i}\\n")
        out.flush()
        i += 1
""")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_loses_no_appended_record(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "records.gkr"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(seed)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert first == "ready\n", proc.stderr.read() if proc.stderr else first
        time.sleep(float(np.random.default_rng(seed).uniform(0.05, 0.4)))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    lines = out.split("\n")[:-1]  # the last piece may be a partial line
    reported = [int(x) for x in lines]
    assert reported, "the child appended nothing before it was killed"
    with RecordStore.open(path, gym.spaces.Box(-1, 1, (8,), np.float32), gym.spaces.Discrete(3)) as store:
        steps = store.step
        np.testing.assert_array_equal(steps, np.arange(len(steps)))  # each once, in order
        assert set(reported) <= set(steps.tolist())
        assert len(steps) >= reported[-1] + 1
        store.append(Transition(step=len(steps), episode=0, obs=np.zeros(8, np.float32), novice_action=0,
                                expert_action=None, executed_action=0, intervened=False, expert_queried=False,
                                switched=False, reward=0.0, next_obs=np.zeros(8, np.float32),
                                terminated=True, truncated=False))
    _, cols, info = read_log(path)
    assert info["torn_bytes"] == 0 and len(cols["step"]) == len(steps) + 1


# -- the fsync bound ----------------------------------------------------------------------------


def count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every os.fsync (still really syncing); returns the growing list of fds."""
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.mark.parametrize("k", [0, 1, 3])
def test_max_unsynced_bound_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    store = RecordStore(BOX, DISC, path=tmp_path / "r.gkr", max_unsynced=k, sync_seconds=math.inf)
    calls = count_fsyncs(monkeypatch)
    rng = np.random.default_rng(k)
    pending_expert = 0
    for i in range(200):
        expert = bool(rng.random() < 0.4)
        before = len(calls)
        store.append(make_t(i, BOX, DISC, rng, intervened=expert and bool(rng.random() < 0.5), queried=expert))
        synced = len(calls) > before
        if expert:
            # fsync exactly when a (k+1)-th expert-labelled record would be unsynced
            assert synced == (pending_expert == k)
            pending_expert = 0 if synced else pending_expert + 1
        else:
            assert not synced  # novice-only records never force an fsync
        assert pending_expert <= k
        assert store._log is not None and store._log.unsynced[1] == pending_expert
    assert store._log is not None
    pending_any = store._log.unsynced[0] > 0
    before = len(calls)
    store.close()
    assert len(calls) == before + int(pending_any)


def test_novice_records_synced_by_timer_and_on_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_fsyncs(monkeypatch)
    rng = np.random.default_rng(0)
    with RecordStore(BOX, DISC, path=tmp_path / "a.gkr", max_unsynced=100, sync_seconds=0.2) as store:
        store.append(make_t(0, BOX, DISC, rng, intervened=False, queried=False))
        before = len(calls)
        log = store._log
        assert log is not None and log.unsynced == (1, 0)
        deadline = time.monotonic() + 10
        while log.unsynced != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.unsynced == (0, 0) and len(calls) > before  # the timer thread fsynced
        store.append(make_t(1, BOX, DISC, rng, intervened=False, queried=False))
        before = len(calls)
    assert len(calls) == before + 1  # close() fsynced the pending record
    # sync_seconds=0: every record is fsynced before append returns
    with RecordStore(BOX, DISC, path=tmp_path / "b.gkr", max_unsynced=100, sync_seconds=0) as store:
        for i in range(3):
            before = len(calls)
            store.append(make_t(i, BOX, DISC, rng, intervened=False, queried=False))
            assert len(calls) == before + 1


# -- errors -------------------------------------------------------------------------------------


def test_schema_mismatch_names_other_env(tmp_path: Path) -> None:
    path = tmp_path / "r.gkr"
    fill(path, 3)[0].close()
    content = path.read_bytes()
    for obs, act in [(gym.spaces.Box(-1, 1, (4,), np.float32), DISC), (BOX, gym.spaces.Discrete(5)),
                     (gym.spaces.Box(-1, 1, (3,), np.float64), DISC)]:
        with pytest.raises(RunDirError, match="belongs to another env") as exc:
            RecordStore.open(path, obs, act)
        assert str(path) in one_line(exc)
    assert path.read_bytes() == content


def test_a_log_of_another_record_layout_says_so_not_another_env(tmp_path: Path, monkeypatch) -> None:
    # a log written before a column was added (the `env` column came with parallel envs) has the
    # same spaces: the error must say "another gatekit version", not "another env" with two equal spaces
    path = tmp_path / "r.gkr"
    fill(path, 3)[0].close()
    content = path.read_bytes()
    import gatekit.data.store as store_mod
    from gatekit.data.log import make_schema

    current = store_mod.record_schema

    def newer(obs, act):
        schema = current(obs, act)
        return make_schema([(f["name"], np.dtype(f["dtype"]), tuple(f["shape"])) for f in schema["fields"]]
                                     + [("later", np.float32, ())], spaces=schema["spaces"],
                                     expert_action_fill=schema["expert_action_fill"])

    monkeypatch.setattr(store_mod, "record_schema", newer)
    with pytest.raises(RunDirError, match=r"another record layout \(columns later differ\).*another gatekit version") as exc:
        RecordStore.open(path, BOX, DISC)
    assert str(path) in one_line(exc) and "belongs to another env" not in one_line(exc)
    assert path.read_bytes() == content


def test_existing_log_is_never_overwritten_and_locked(tmp_path: Path) -> None:
    path = tmp_path / "r.gkr"
    store, _ = fill(path, 3)
    with pytest.raises(RunDirError, match="already exists"):
        RecordStore(BOX, DISC, path=path)
    with pytest.raises(RunDirError, match="another process") as exc:
        RecordStore.open(path, BOX, DISC)  # still open for writing above
    one_line(exc)
    store.close()
    with pytest.raises(RunDirError, match="does not exist"):
        RecordStore(BOX, DISC, path=tmp_path / "missing" / "r.gkr")
    with pytest.raises(RunDirError, match="no record log"):
        RecordStore.open(tmp_path / "nope.gkr", BOX, DISC)
    assert read_log(path)[2]["records"] == 3


@pytest.mark.parametrize("partial", [False, True])
def test_enospc_is_one_line_and_keeps_the_log_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      partial: bool) -> None:
    path = tmp_path / "r.gkr"
    store, _ = fill(path, 10, max_unsynced=0)
    size = path.stat().st_size
    fd = store._log._fd if store._log is not None else -1
    real_write = os.write

    def full_disk(f: int, data: bytes) -> int:
        if f != fd:
            return real_write(f, data)
        if partial and len(data) > 10:  # the kernel took part of the frame, then the disk filled
            return real_write(f, bytes(data[:10]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    rng = np.random.default_rng(5)
    t = make_t(10, BOX, DISC, rng)
    with monkeypatch.context() as m:
        m.setattr(os, "write", full_disk)
        with pytest.raises(RunDirError) as exc:
            store.append(t)
    msg = one_line(exc)
    assert str(path) in msg and "free space" in msg
    assert len(store) == 10 and path.stat().st_size == size  # half frame cut off again
    info = read_log(path)[2]
    assert (info["records"], info["torn_bytes"]) == (10, 0)
    store.append(t)  # space freed: the same store carries on
    store.close()
    _, cols, info = read_log(path)
    assert info["records"] == 11 and info["torn_bytes"] == 0
    np.testing.assert_array_equal(cols["step"], np.arange(11))


def test_permission_and_fsync_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def denied(p: Any, *a: Any, **k: Any) -> int:
        if str(p).endswith(".tmp"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(p, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(os, "open", denied)
        with pytest.raises(RunDirError, match="writable") as exc:
            RecordStore(BOX, DISC, path=tmp_path / "x.gkr")
    one_line(exc)
    assert not list(tmp_path.iterdir())

    path = tmp_path / "r.gkr"
    store, _ = fill(path, 4, max_unsynced=0)
    rng = np.random.default_rng(2)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", eio)
        with pytest.raises(RunDirError, match="fsync") as exc:
            store.append(make_t(4, BOX, DISC, rng, intervened=True))
        one_line(exc)
        assert len(store) == 5  # written, only not fsynced: memory agrees with the file
        with pytest.raises(RunDirError):  # refuses to go on after a failed fsync
            store.append(make_t(5, BOX, DISC, rng))
        assert len(store) == 5
        store.close()
    with RecordStore.open(path, BOX, DISC) as again:  # resuming from the file works
        assert len(again) == 5


# -- property: random sequences round-trip exactly ------------------------------------------------

SPACES = [
    (BOX, DISC),
    (gym.spaces.Box(-5, 5, (2, 2), np.float64), gym.spaces.Box(-1, 1, (2,), np.float32)),
    (gym.spaces.Discrete(7, start=2), gym.spaces.MultiDiscrete([2, 3, 4])),
    (gym.spaces.MultiBinary(4), gym.spaces.MultiBinary([2, 2])),
    (gym.spaces.Box(0, 255, (3,), np.uint8), gym.spaces.Box(-3, 3, (1,), np.int32)),
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space_i=st.integers(0, len(SPACES) - 1), seed=st.integers(0, 2**32 - 1),
       flags=st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 3)), max_size=40),
       specials=st.lists(st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308]), max_size=3))
def test_random_sequences_round_trip(space_i: int, seed: int, flags: list[tuple[bool, bool, int]],
                                     specials: list[float]) -> None:
    obs_space, act_space = SPACES[space_i]
    rng = np.random.default_rng(seed)
    ts = []
    for i, (interv, queried, ep) in enumerate(flags):
        t = make_t(i, obs_space, act_space, rng, intervened=interv, queried=queried, episode=ep)
        if specials and i < len(specials):  # the store keeps whatever floats it is given
            t = Transition(**{**t.__dict__, "reward": specials[i], "score": specials[-1 - i]})
        ts.append(t)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.gkr"
        with RecordStore(obs_space, act_space, path=path, max_unsynced=1000, sync_seconds=math.inf) as store:
            for t in ts:
                store.append(t)
            before = snapshot(store)
            counts = store.counts()
        with RecordStore.open(path, obs_space, act_space, sync_seconds=math.inf) as again:
            assert snapshot(again) == before
            assert again.counts() == counts
        _, cols, info = read_log(path)
    assert info["records"] == len(ts) and info["torn_bytes"] == 0
    for name in ("obs", "next_obs", "novice_action", "executed_action"):
        want = np.array([np.asarray(getattr(t, name)) for t in ts]).astype(cols[name].dtype)
        assert cols[name].tobytes() == want.tobytes()
    assert cols["reward"].tobytes() == np.array([t.reward for t in ts], np.float64).tobytes()
    assert cols["expert_queried"].tolist() == [t.expert_queried for t in ts]
    assert counts["episodes"] == len({t.episode for t in ts})


# -- export to imitation ------------------------------------------------------------------------


@needs_imitation
def test_to_transitions_shapes_and_rules() -> None:
    from gatekit.export import to_transitions

    store, ts = fill(None, 40)
    queried = store.expert_queried
    tr = to_transitions(store, queried)
    k = int(queried.sum())
    assert tr.obs.shape == (k, 3) and tr.next_obs.shape == (k, 3)
    assert tr.acts.shape == (k,) and tr.acts.dtype == np.int64
    assert tr.dones.dtype == bool and tr.dones.shape == (k,)
    assert tr.infos.shape == (k,) and all(info == {} for info in tr.infos)
    np.testing.assert_array_equal(tr.acts, [t.expert_action for t in ts if t.expert_queried])
    np.testing.assert_array_equal(tr.dones, [t.terminated or t.truncated for t in ts if t.expert_queried])
    with pytest.raises(ValueError, match="actions='executed'"):
        to_transitions(store)  # some steps were not queried
    allx = to_transitions(store, actions="executed")
    assert len(allx) == 40
    np.testing.assert_array_equal(allx.acts, [t.executed_action for t in ts])
    idx = to_transitions(store, np.flatnonzero(queried)[:3])
    assert len(idx) == min(3, k)
    with pytest.raises(ValueError, match="shape"):
        to_transitions(store, np.ones(3, bool))
    store2, _ = fill(None, 5, BOX, gym.spaces.Box(-1, 1, (2,), np.float32), seed=3)
    tr2 = to_transitions(store2, store2.expert_queried)
    assert tr2.acts.shape == (int(store2.expert_queried.sum()), 2) and tr2.acts.dtype == np.float32
    empty = to_transitions(store2, np.zeros(5, bool))
    assert len(empty) == 0


def test_record_log_rejects_bad_knobs(tmp_path: Path) -> None:
    for kw in ({"max_unsynced": -1}, {"max_unsynced": 1.5}, {"sync_seconds": -1.0}, {"sync_seconds": math.nan}):
        with pytest.raises(ValueError):
            RecordStore(BOX, DISC, path=tmp_path / "r.gkr", **kw)
    assert not (tmp_path / "r.gkr").exists()
