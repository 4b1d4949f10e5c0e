"""Integrity of what a run writes besides its record log: sealed ``.pt`` files and the digest
of the log a checkpoint was trained on.

Sealed files. ``checkpoint.pt``, ``checkpoint.prev.pt`` and ``novice_*.pt`` are dicts of torch
tensors and plain values saved with ``torch.save``; gatekit adds one key, ``gatekit_sha256``: a
SHA-256 of every key, value, tensor dtype, shape and byte of the rest (:func:`state_digest`).
Reading one (:func:`load_sealed`) loads with ``torch.load(weights_only=True)`` and recomputes
the digest; a file that does not load, or whose digest differs (a flipped byte that still
unpickles, e.g. into NaN weights), is a one-line :class:`DamagedFileError`. The files stay
plain dicts: ``torch.load(path, weights_only=True)`` reads them without gatekit, and a
learner's ``load_state_dict`` ignores the extra key.

The log a checkpoint knows (:class:`LogDigest`). The record log is append-only and its steps
carry increasing step ids, so a checkpoint can name the exact records it was trained on:
``log_steps`` (the step count, records lost to earlier damage included) and, for each block of
:data:`BLOCK_STEPS` step ids below it, the number of intact records and a SHA-256 of their
bytes. On resume (:func:`verify_log`):

* a log with fewer steps than ``log_steps`` is refused (records the checkpoint was trained on
  are gone: the log was truncated, replaced or deleted);
* a block holding all its records must match its digest, else the log was edited or replaced:
  refused;
* a block missing records is accepted only when the log itself reported damage on opening (its
  frames failed their CRC: the loss is known and was said on stderr); it is counted as lost.

Digests of complete blocks are cached, so a checkpoint hashes at most one block of new records.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gatekit.errors import RunDirError

if TYPE_CHECKING:
    from gatekit.data import RecordStore

SEAL_KEY = "gatekit_sha256"
BLOCK_STEPS = 1024
"""Step ids per digest block of the record log."""


class DamagedFileError(RunDirError):
    """A ``.pt`` file gatekit wrote does not load, or its content fails its checksum."""


# -- sealed files --------------------------------------------------------------------------------

def state_digest(obj: Any) -> str:
    """SHA-256 (hex) of a nest of dicts, lists, tensors, arrays and plain values: types, keys,
    dtypes, shapes and bytes, in a canonical order (dict keys sorted by their repr)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    # Iterative would be overkill: state dicts nest a few levels.
    if isinstance(obj, dict):
        h.update(b"{%d" % len(obj))
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[%d" % len(obj) if isinstance(obj, list) else b"(%d" % len(obj))
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"A{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(obj, float):
        h.update(b"f" + struct.pack("<d", obj))
    elif obj is None or isinstance(obj, (bool, int, str, bytes, np.generic, torch.dtype, torch.Size)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:  # anything else weights_only lets through: its type and repr
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}:{obj!r};".encode())


def seal(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` plus its :data:`SEAL_KEY` digest (a new dict; ``state`` is not changed)."""
    body = {k: v for k, v in state.items() if k != SEAL_KEY}
    return {**body, SEAL_KEY: state_digest(body)}


def load_sealed(path: Path, *, what: str, fix: str, require_seal: bool = True) -> dict[str, Any]:
    """Load a sealed ``.pt`` file and check its digest; returns the dict without the seal.

    Args:
        path: the file.
        what: what it is, for the message (``checkpoint``, ``saved novice``).
        fix: what the user can do, for the message.
        require_seal: refuse a dict without a seal (files gatekit writes always have one);
            False accepts unsealed dicts (state dicts saved by hand).

    Raises:
        DamagedFileError: the file does not load with ``weights_only=True``, is not a dict, or
            fails its digest. One line; it never suggests ``weights_only=False``.
        RunDirError: the file cannot be read (permissions, I/O).
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunDirError(f"{what} '{path}' does not exist; {fix}") from None
    except PermissionError as exc:
        raise RunDirError(f"{what} '{path}' cannot be read ({exc.strerror}); {fix}") from None
    except Exception as exc:  # anything torch raises on a bad file: it is damaged, whatever the kind
        raise DamagedFileError(f"{what} '{path}' is damaged (it does not load: {_short(exc)}); {fix}") from None
    if not isinstance(obj, dict):
        raise DamagedFileError(f"{what} '{path}' is damaged (it holds a {type(obj).__name__}, not a dict); {fix}")
    stored = obj.pop(SEAL_KEY, None)
    if stored is None:
        if require_seal:
            raise DamagedFileError(f"{what} '{path}' has no checksum (not written by this gatekit); {fix}")
        return obj
    if stored != state_digest(obj):
        raise DamagedFileError(f"{what} '{path}' is damaged (its content fails its checksum); {fix}")
    return obj


def _short(exc: BaseException, limit: int = 120) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the log a checkpoint knows --------------------------------------------------------------------

Blocks = list[list[Any]]
"""``[[block, records, sha256_hex], ...]``: what a checkpoint stores of its log."""


def _hash_rows(store: RecordStore, rows: np.ndarray | slice) -> str:
    h = hashlib.sha256()
    for f in store.schema["fields"]:
        h.update(np.ascontiguousarray(store.column(f["name"])[rows]).tobytes())
    return h.hexdigest()


def _digests(store: RecordStore, steps_below: int, cache: dict[int, tuple[int, str]] | None) -> Blocks:
    """Digest of the records of each block of step ids below ``steps_below``; blocks entirely
    below it are complete (an append-only log adds only higher step ids), so ``cache`` keeps them."""
    step = store.column("step")
    rows: np.ndarray | None = None  # None: the rows are in step order (the usual case)
    if len(step) > 1 and not bool(np.all(step[1:] >= step[:-1])):
        rows = np.flatnonzero(step < steps_below)
        rows = rows[np.argsort(step[rows] // BLOCK_STEPS, kind="stable")]
        block_of = step[rows] // BLOCK_STEPS
    else:
        block_of = step[:int(np.searchsorted(step, steps_below))] // BLOCK_STEPS
    n_blocks = math.ceil(steps_below / BLOCK_STEPS)
    starts = np.searchsorted(block_of, np.arange(n_blocks + 1), side="left")
    out: Blocks = []
    for b in range(n_blocks):
        lo, hi = int(starts[b]), int(starts[b + 1])
        complete = (b + 1) * BLOCK_STEPS <= steps_below
        hit = cache.get(b) if cache is not None and complete else None
        if hit is not None and hit[0] == hi - lo:
            count, digest = hit
        else:
            count, digest = hi - lo, _hash_rows(store, slice(lo, hi) if rows is None else rows[lo:hi])
            if cache is not None and complete:
                cache[b] = (count, digest)
        out.append([b, count, digest])
    return out


class LogDigest:
    """The digests a checkpoint records of the record log (see the module docstring), with a
    cache of complete blocks so that each checkpoint hashes only the newest records."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[int, str]] = {}

    def blocks(self, store: RecordStore, log_steps: int) -> Blocks:
        """Digests of every block below ``log_steps`` (the store's step count)."""
        return _digests(store, log_steps, self._cache)


@dataclass(frozen=True)
class LogCheck:
    """What :func:`verify_log` found.

    Attributes:
        lost: records the checkpoint was trained on that the log lost to damage it reported.
        verified: records whose blocks matched their digests.
    """

    lost: int
    verified: int


def verify_log(store: RecordStore, *, log_steps: int, blocks: Blocks, source: str) -> LogCheck:
    """Check that ``store`` holds the log a checkpoint (named ``source``) was trained on.

    Raises:
        RunDirError: the log is shorter than ``log_steps``, a complete block differs from its
            digest, or records are missing without damage reported by the log (one line,
            naming the fix).
    """
    have_steps = store.counts()["total_steps"]
    path = store.path
    fix = (f"restore '{path}' from a backup, or move {source} (and checkpoint.prev.pt) aside to retrain from "
           f"the {len(store)} records the log holds")
    if have_steps < log_steps:
        raise RunDirError(f"record log '{path}' holds {have_steps} steps but {source} was trained on {log_steps}: "
                          f"the log was truncated or replaced; {fix}")
    report = store.log_report
    damage_reported = report is not None and report.damaged
    now = {b: (count, digest) for b, count, digest in _digests(store, log_steps, None)}
    lost = verified = 0
    for b, count, digest in blocks:
        have_count, have_digest = now.get(int(b), (0, ""))
        first = int(b) * BLOCK_STEPS
        if have_count == count and have_digest == digest:
            verified += count
        elif have_count < count and damage_reported:
            lost += count - have_count
        else:
            why = "is missing records" if have_count < count else \
                "holds other records" if have_count > count else "differs"
            raise RunDirError(f"record log '{path}' does not match {source}: steps {first}-{first + BLOCK_STEPS - 1} "
                              f"{why} (the log was edited or replaced); {fix}")
    return LogCheck(lost=lost, verified=verified)


__all__ = ["BLOCK_STEPS", "SEAL_KEY", "DamagedFileError", "LogCheck", "LogDigest", "load_sealed", "seal",
           "state_digest", "verify_log"]
