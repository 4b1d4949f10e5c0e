"""Damage a run folder at random and judge what gatekit makes of it (shared by the property test
in tests/test_reliability.py and ``bench/reliability_cases.py``, which counts the cases).

The base is a real run interrupted part-way (so that resuming has something to do): its record
log, recipe, results, both checkpoints, best novice and CSV files. One case damages one file:
flips 1-16 bytes, zeroes a range, truncates it, or deletes it. The record log's header (magic
line and schema) is left alone: without its schema no record can be read, which is a one-line
error by design (tests/test_data.py damages every header byte). What must hold
(:func:`run_case`):

1. every expert-labelled record whose frame the damage did not touch is still read, before and
   after the resume (same step id, same bytes);
2. the damage is reported: ``gatekit check`` flags a damaged record log or ``.pt`` file (they
   carry CRCs and checksums; bytes of a ``.pt`` file that torch never reads, such as zip
   padding, change nothing and need not be seen); the text files (recipe, results, CSVs) have
   none, so their damage must only never cause harm (it is counted, not required to be seen);
3. ``gatekit train --resume`` ends with exit 0 (finished) or exit 2 with one ``gatekit: error:``
   line, never a traceback.
"""

from __future__ import annotations

import random
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from gatekit.check import check_run
from gatekit.cli import main
from gatekit.data import RecordLogWarning, read_log
from gatekit.errors import GatekitError, ResumeWarning
from tests.recipes import interrupted_run

FILES = ("records.gkr", "recipe.yaml", "results.json", "checkpoint.pt", "checkpoint.prev.pt", "novice_best.pt",
         "progress.csv", "eval.csv")
CHECKED = ("records.gkr", "checkpoint.pt", "checkpoint.prev.pt", "novice_best.pt")
"""Files with CRCs or checksums: damage to them must be reported."""
KINDS = ("flip", "zero", "truncate", "delete")
_WARNING_LINES = ("gatekit: warning: ", "gatekit:0: ")  # how the CLI shows gatekit's warnings (one line each)
BASE_OVER = {"data": {"checkpoint_every": 75}, "eval": {"every_steps": 100}}


def make_base(path: Path) -> Path:
    """The run folder every case starts from: a tiny run interrupted at step 200."""
    return interrupted_run(path, at=200, **BASE_OVER)


@dataclass(frozen=True)
class Damage:
    """One damage: ``kind`` on ``file``; ``spots`` are byte offsets (flip), ``(start, length)``
    (zero) or ``(new_length,)`` (truncate)."""

    file: str
    kind: str
    spots: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind} {self.file} {list(self.spots)}"


def random_damage(rng: random.Random, run_dir: Path, *, file: str | None = None, kind: str | None = None) -> Damage:
    """A random :class:`Damage` of ``run_dir`` (``file`` and ``kind`` chosen at random unless given)."""
    file = file or rng.choice(FILES)
    kind = kind or rng.choice(KINDS)
    size = (run_dir / file).stat().st_size
    low = read_log(run_dir / "records.gkr")[2]["header_bytes"] if file == "records.gkr" else 0
    if kind == "flip":
        return Damage(file, kind, tuple(sorted(rng.sample(range(low, size), min(rng.randint(1, 16), size - low)))))
    if kind == "zero":
        start = rng.randrange(low, size)
        return Damage(file, kind, (start, rng.randint(1, min(4096, size - start))))
    if kind == "truncate":
        return Damage(file, kind, (rng.randrange(low, size),))
    return Damage(file, kind)


def apply_damage(run_dir: Path, d: Damage) -> bool:
    """Apply ``d``; returns whether the file's bytes changed."""
    path = run_dir / d.file
    before = path.read_bytes()
    if d.kind == "delete":
        path.unlink()
        return True
    data = bytearray(before)
    if d.kind == "flip":
        for pos in d.spots:
            data[pos] ^= 0xFF
    elif d.kind == "zero":
        start, length = d.spots
        data[start:start + length] = bytes(length)
    elif d.kind == "truncate":
        del data[d.spots[0]:]
    path.write_bytes(bytes(data))
    return bytes(data) != before


def touched_records(run_dir: Path, d: Damage) -> set[int] | None:
    """Indices of the log's frames the damage touched (None: all of them, the log is gone)."""
    if d.file != "records.gkr":
        return set()
    if d.kind == "delete":
        return None
    info = read_log(run_dir / "records.gkr")[2]
    h, f, n = info["header_bytes"], info["frame_bytes"], info["records"]
    if d.kind == "flip":
        return {(p - h) // f for p in d.spots}
    if d.kind == "zero":
        start, length = d.spots
        return set(range((start - h) // f, (start + length - 1 - h) // f + 1))
    return set(range((d.spots[0] - h) // f, n))  # truncate: every frame not wholly before the cut


@dataclass
class Outcome:
    """What one case came to."""

    damage: Damage
    changed: bool
    exit_code: int = -1
    resumed: bool = False
    reported: bool = False
    expert_records: int = 0
    expert_touched: int = 0
    """Expert-labelled records in frames the damage touched (all of them when the log is deleted)."""
    expert_lost: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def survived(self) -> bool:
        return not self.violations

    @property
    def harmless(self) -> bool:
        """The damage changed nothing gatekit reads (zeroes over zeroes, zip padding)."""
        return not self.changed


def _expert_rows(path: Path) -> dict[int, bytes]:
    """Expert-labelled records of a log by step id: their bytes, every column."""
    try:
        _, cols, _ = read_log(path)
    except (GatekitError, OSError):
        return {}
    mask = cols["intervened"] | cols["expert_queried"]
    return {int(s): b"".join(np.ascontiguousarray(cols[k][i]).tobytes() for k in sorted(cols))
            for i, s in zip(np.flatnonzero(mask), cols["step"][mask], strict=True)}


def _content(path: Path) -> str | None:
    """The digest of what a ``.pt`` file holds (None when it does not load)."""
    import torch

    from gatekit.runs.integrity import state_digest

    try:
        return state_digest(torch.load(path, map_location="cpu", weights_only=True))
    except Exception:  # any failure to load is a change of content
        return None


def run_case(base: Path, work: Path, d: Damage) -> Outcome:
    """Copy ``base`` to ``work``, apply ``d``, check, resume, and judge (see the module docstring)."""
    run = work / "run"
    shutil.copytree(base, run)
    original = _expert_rows(base / "records.gkr")
    info = read_log(base / "records.gkr")[2]
    touched = touched_records(base, d)
    steps_by_frame = read_log(base / "records.gkr")[1]["step"]
    lost_steps = set(steps_by_frame.tolist()) if touched is None else {int(steps_by_frame[i]) for i in touched
                                                                       if i < info["records"]}
    out = Outcome(damage=d, changed=apply_damage(run, d), expert_records=len(original))
    if out.changed and d.file.endswith(".pt") and d.kind != "delete":
        out.changed = _content(run / d.file) != _content(base / d.file)
    must_keep = {s: b for s, b in original.items() if s not in lost_steps}
    out.expert_touched = len(original) - len(must_keep)

    def keeps(stage: str) -> None:
        now = _expert_rows(run / "records.gkr")
        missing = [s for s, b in must_keep.items() if now.get(s) != b]
        if missing:
            out.violations.append(f"{stage}: {len(missing)} intact expert-labelled records not read "
                                  f"(first step {missing[0]})")

    keeps("after the damage")
    report = check_run(run)
    flagged = {i.name for i in report.items if i.status in ("damaged", "missing")}
    out.reported = bool(flagged)
    if out.changed and d.file in CHECKED and d.file not in flagged:
        out.violations.append(f"gatekit check did not report the damaged {d.file}")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        res = CliRunner().invoke(main, ["train", "--resume", str(run), "--no-progress"])
    out.exit_code = res.exit_code
    lines = res.stderr.strip().splitlines()
    if "Traceback" in res.stderr or res.exit_code not in (0, 2):
        out.violations.append(f"resume exited {res.exit_code}: {res.exception!r} {res.stderr[-300:]}")
    elif res.exit_code == 2:
        out.reported = True
        warned = [x for x in lines[:-1] if x.startswith(_WARNING_LINES)]  # one line per warning said before it
        if not lines or not lines[-1].startswith("gatekit: error: ") or len(warned) != len(lines) - 1:
            out.violations.append(f"resume's error is not one clean line: {res.stderr[-300:]}")
    else:
        out.resumed = True
        out.reported = out.reported or any(issubclass(w.category, (ResumeWarning, RecordLogWarning)) for w in said) \
            or any(x.startswith(_WARNING_LINES) for x in lines)
    keeps("after the resume")
    kept = _expert_rows(run / "records.gkr") if (run / "records.gkr").exists() else {}
    out.expert_lost = sum(1 for s, b in original.items() if kept.get(s) != b)
    return out
