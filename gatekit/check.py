"""Check a run folder without changing it: record log frames, recipe, results, checkpoints.

A run folder is a person's labelling time; before resuming, comparing or archiving one, this
says whether every file in it is readable and, for the record log, exactly which bytes are
damaged. :func:`check_run` returns a :class:`RunCheck`; ``gatekit check RUN_DIR`` prints it
and exits 0 (healthy), 1 (damage found) or 2 (not a run folder).

What is checked (nothing is written; every file is opened read-only):

=================== =========================================================================
file                check
=================== =========================================================================
records.gkr         every frame's length and CRC (:func:`gatekit.data.scan_log`): intact
                    records, damaged regions between them (byte ranges), torn tail. Required.
                    A torn tail shorter than one frame is the normal trace of a crash (resume
                    cuts it off and saves it aside): reported, not counted as damage.
recipe.yaml         loads with the strict recipe loader. Required.
results.json        parses as a JSON object (absent until the run first stops).
progress.csv,       the header gatekit writes (or the first columns of it: columns are only
eval.csv            appended), every row that many fields, every field a number (absent
                    until the first episode / evaluation).
checkpoint.pt,      load with ``torch.load(weights_only=True)`` and pass their checksum
checkpoint.prev.pt, (absent until written; files without a checksum, saved by hand, only load).
novice_final.pt,    Damaged checkpoints a resume set aside (``*.damaged-*``) are listed.
novice_best.pt
=================== =========================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gatekit.data.log import LogReport, scan_log
from gatekit.errors import GatekitError, RunDirError

__all__ = ["CheckItem", "RunCheck", "check_run"]

Status = Literal["ok", "absent", "damaged", "missing"]
_TORCH_FILES = ("checkpoint.pt", "checkpoint.prev.pt", "novice_final.pt", "novice_best.pt")


@dataclass(frozen=True)
class CheckItem:
    """The verdict on one file of a run folder.

    Attributes:
        name: the file's name in the run folder.
        status: ``"ok"``; ``"absent"`` (an optional file not written yet: fine);
            ``"damaged"`` (there but unreadable or with damaged records); ``"missing"`` (a
            required file is not there).
        detail: one line saying what was found.
    """

    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class RunCheck:
    """The result of :func:`check_run`.

    Attributes:
        run_dir: the folder checked.
        items: one :class:`CheckItem` per file, records.gkr first.
        log: the record log's :class:`~gatekit.data.log.LogReport` (None when the log is
            missing or its header is unreadable).
    """

    run_dir: Path
    items: tuple[CheckItem, ...]
    log: LogReport | None

    @property
    def healthy(self) -> bool:
        """No file is damaged or missing."""
        return all(i.status in ("ok", "absent") for i in self.items)

    def lines(self) -> list[str]:
        """A short human-readable report: a verdict line, then one line per file."""
        bad = sum(i.status in ("damaged", "missing") for i in self.items)
        verdict = "healthy" if self.healthy else f"DAMAGED ({bad} file{'s' * (bad != 1)})"
        width = max(len(i.name) for i in self.items)
        return [f"run folder '{self.run_dir}': {verdict}",
                *(f"  {i.status:<8} {i.name:<{width}}  {i.detail}" for i in self.items)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: ``run_dir``, ``healthy``, ``items`` and ``log`` (the LogReport's dict)."""
        return {"run_dir": str(self.run_dir), "healthy": self.healthy,
                "items": [{"name": i.name, "status": i.status, "detail": i.detail} for i in self.items],
                "log": None if self.log is None else self.log.to_dict()}


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_log(run_dir: Path) -> tuple[CheckItem, LogReport | None]:
    path = run_dir / "records.gkr"
    name = path.name
    if not path.is_file():
        return CheckItem(name, "missing", "no record log (every run writes one when it starts)"), None
    try:
        report = scan_log(path)
    except RunDirError as exc:
        return CheckItem(name, "damaged", str(exc)), None
    parts = [f"{report.records} intact records"]
    if report.damaged_ranges:
        n = len(report.damaged_ranges)
        ranges = ", ".join(f"{a}-{b}" for a, b in report.damaged_ranges)
        parts.append(f"{report.damaged_records} damaged record{'s' * (report.damaged_records != 1)} in "
                     f"{n} region{'s' * (n != 1)} at bytes {ranges}")
    if report.torn_tail_bytes:
        where = f"{report.torn_tail_bytes} bytes at {report.torn_tail_offset}-{report.file_bytes}"
        if report.torn_tail_bytes < report.frame_bytes:
            parts.append(f"torn tail of {where} (a crash mid-write; --resume saves it aside and cuts it)")
        else:
            parts.append(f"damaged tail of {report.torn_tail_records} records, {where}")
    if report.clean:
        parts.append("no damage")
    saved = sorted(p.name for p in run_dir.glob(f"{name}.torn-*"))
    if saved:
        parts.append(f"{len(saved)} torn tail{'s' * (len(saved) != 1)} saved aside earlier ({', '.join(saved)})")
    return CheckItem(name, "damaged" if report.damaged else "ok", "; ".join(parts)), report


def _check_log_length(run_dir: Path, item: CheckItem, report: LogReport) -> CheckItem:
    """A log that ends cleanly can still be short: records cut off at a frame boundary leave no
    trace in the log itself, but the newest readable checkpoint says how many steps it saw."""
    from gatekit.runs.integrity import load_sealed

    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        if not (run_dir / name).is_file():
            continue
        try:
            seen = int(load_sealed(run_dir / name, what=name, fix="").get("log_steps", 0))
        except (GatekitError, ValueError, TypeError):
            continue
        have = report.records + report.damaged_records
        if have < seen:
            return CheckItem(item.name, "damaged", f"{item.detail}; but {name} was trained on {seen} steps: "
                                                   f"{seen - have} records at the end are gone (truncated or replaced)")
        return item
    return item


def _csv_files() -> tuple[tuple[str, tuple[str, ...]], ...]:
    from gatekit.runs.logs import RunLogs

    return ("progress.csv", RunLogs.EP_FIELDS), ("eval.csv", RunLogs.EVAL_FIELDS)


def _check_csv(path: Path, fields: tuple[str, ...]) -> CheckItem:
    import csv
    import math

    if not path.is_file():
        return CheckItem(path.name, "absent", "not written yet")
    try:
        rows = list(csv.reader(path.read_bytes().decode().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return CheckItem(path.name, "damaged", f"does not read as CSV ({_first_line(exc)})")
    header = tuple(rows[0]) if rows else ()
    if not header or header != fields[:len(header)]:  # columns are only ever appended: older runs have fewer
        return CheckItem(path.name, "damaged", f"its header is not {','.join(fields)}")
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            return CheckItem(path.name, "damaged", f"line {i} has {len(row)} fields, not {len(header)}")
        for value in row:
            try:
                if value and math.isnan(float(value)) and value.lower() != "nan":
                    raise ValueError
            except ValueError:
                return CheckItem(path.name, "damaged", f"line {i} holds {value[:20]!r}, not a number")
    return CheckItem(path.name, "ok", f"{len(rows) - 1} rows")


def _check_recipe(run_dir: Path) -> CheckItem:
    from gatekit.config import load_recipe

    path = run_dir / "recipe.yaml"
    if not path.is_file():
        return CheckItem(path.name, "missing", "no recipe (every run writes one when it starts)")
    try:
        recipe = load_recipe(path)
    except (GatekitError, OSError) as exc:
        return CheckItem(path.name, "damaged", str(exc) if isinstance(exc, GatekitError) else _first_line(exc))
    return CheckItem(path.name, "ok", f"loads: '{recipe.name}', env {recipe.env.id}, seed {recipe.seed}")


def _check_results(run_dir: Path) -> CheckItem:
    path = run_dir / "results.json"
    if not path.is_file():
        return CheckItem(path.name, "absent", "not written yet (the run has not stopped since it started)")
    try:
        results = json.loads(path.read_bytes().decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return CheckItem(path.name, "damaged", f"does not parse ({_first_line(exc)})")
    if not isinstance(results, dict):
        return CheckItem(path.name, "damaged", f"holds a JSON {type(results).__name__}, not an object")
    return CheckItem(path.name, "ok", f"parses: status {results.get('status', '?')}, "
                                      f"{results.get('total_steps', '?')} total steps")


def _check_torch(path: Path) -> CheckItem:
    aside = sorted(p.name for p in path.parent.glob(f"{path.name}.damaged-*"))
    note = f"; {len(aside)} damaged cop{'ies' if len(aside) != 1 else 'y'} set aside by a resume ({', '.join(aside)})" \
        if aside else ""
    if not path.is_file():
        what = "before the first checkpoint" if path.name.startswith("checkpoint") else "until the run writes it"
        return CheckItem(path.name, "absent", f"not written yet (absent {what}){note}")
    import torch

    from gatekit.runs.integrity import SEAL_KEY, state_digest

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # anything torch raises on a bad file is the finding itself
        return CheckItem(path.name, "damaged", f"does not load with weights_only=True ({_first_line(exc)}){note}")
    if not isinstance(obj, dict):
        return CheckItem(path.name, "damaged", f"holds a {type(obj).__name__}, not a dict of tensors{note}")
    stored = obj.pop(SEAL_KEY, None)
    if stored is None:
        return CheckItem(path.name, "ok", f"loads with weights_only=True (no checksum: not written by a run){note}")
    if stored != state_digest(obj):
        return CheckItem(path.name, "damaged", f"loads, but fails its checksum (changed after it was written){note}")
    return CheckItem(path.name, "ok", f"loads with weights_only=True and passes its checksum{note}")


def _expected(run_dir: Path, item: CheckItem) -> CheckItem:
    """An absent file that the folder says was written is missing: ``checkpoint.pt`` when
    ``checkpoint.prev.pt`` exists (it is made from it), ``novice_best.pt`` once an evaluation
    was recorded, ``novice_final.pt`` when the run finished."""
    if item.status != "absent":
        return item
    why = ""
    if item.name == "checkpoint.pt" and (run_dir / "checkpoint.prev.pt").is_file():
        why = "checkpoint.prev.pt exists, so it was written; resume falls back to checkpoint.prev.pt"
    elif item.name == "checkpoint.prev.pt" and _has_previous(run_dir):
        why = "checkpoint.pt says it was written (resume does not need it while checkpoint.pt is good)"
    elif item.name in ("novice_best.pt", "novice_final.pt"):
        try:
            results = json.loads((run_dir / "results.json").read_bytes().decode())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            results = {}
        if not isinstance(results, dict):
            results = {}
        if item.name == "novice_final.pt" and results.get("status") == "finished":
            why = "results.json says the run finished, which writes it"
        elif item.name == "novice_best.pt" and _evaluated(run_dir, results):
            why = "the run recorded an evaluation, which writes it"
    return CheckItem(item.name, "missing", f"not there, but {why}") if why else item


def _has_previous(run_dir: Path) -> bool:
    from gatekit.runs.integrity import load_sealed

    try:
        return bool(load_sealed(run_dir / "checkpoint.pt", what="checkpoint.pt", fix="").get("has_previous"))
    except (GatekitError, OSError):
        return False


def _evaluated(run_dir: Path, results: dict[str, Any]) -> bool:
    evals = results.get("evaluations")
    if isinstance(evals, list) and evals:
        return True
    try:
        return len((run_dir / "eval.csv").read_text().strip().splitlines()) > 1
    except (OSError, UnicodeDecodeError):
        return False


def check_run(run_dir: str | Path) -> RunCheck:
    """Check every file of a run folder (read-only).

    Args:
        run_dir: the run folder (as printed by ``gatekit train``).

    Returns:
        A :class:`RunCheck`; ``.healthy`` is False when a file is damaged or missing.

    Raises:
        RunDirError: ``run_dir`` is not a folder, or holds neither ``recipe.yaml`` nor
            ``records.gkr`` (not a run folder).
    """
    p = Path(run_dir)
    if not p.is_dir():
        what = "is not a folder" if p.exists() else "does not exist"
        raise RunDirError(f"'{p}' {what}; pass a run folder (the folder printed by `gatekit train`)")
    if not (p / "recipe.yaml").exists() and not (p / "records.gkr").exists():
        raise RunDirError(f"'{p}' is not a gatekit run folder (no recipe.yaml or records.gkr); pass the folder "
                          f"printed by `gatekit train`")
    log_item, report = _check_log(p)
    if report is not None and log_item.status == "ok":
        log_item = _check_log_length(p, log_item, report)
    items = [log_item, _check_recipe(p), _check_results(p), *(_expected(p, _check_torch(p / n)) for n in _TORCH_FILES),
             *(_check_csv(p / n, fields) for n, fields in _csv_files())]
    return RunCheck(run_dir=p, items=tuple(items), log=report)
