"""The run folder: its name, the checks before a run writes into it, and atomic writes.

Every file gatekit writes into a run folder that a crash must not leave half-written
(``recipe.yaml``, ``results.json``, checkpoints, saved novices) goes through
:func:`atomic_write_bytes` or :func:`atomic_torch_save`: a temporary file, fsync, ``os.replace``,
fsync of the folder.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from gatekit.data.log import fsync_dir
from gatekit.errors import RunDirError

MIN_FREE_BYTES = 64 * 2**20


def default_run_dir(name: str, seed: int, root: Path = Path("runs")) -> Path:
    """``root/<name>-s<seed>-<time>``, with ``-1``, ``-2``, ... when that folder exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-s{seed}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def check_run_dir(path: Path) -> None:
    """Fail before training if ``path`` cannot hold a run (unwritable, full)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-probe"
        with open(probe, "wb") as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"output folder '{path}' is not writable ({exc.strerror}); pass --out DIR with a writable folder") from None
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise RunDirError(f"output folder '{path}' has only {free // 2**20} MiB free; free space or pass --out DIR elsewhere")


def check_out_for_new_run(out: Path) -> None:
    """A new run (not a resume) may not go into a folder that already holds one, and its
    folder (or the nearest existing parent) must be writable. Writes nothing."""
    if (Path(out) / "records.gkr").exists():
        raise RunDirError(f"'{out}' already holds a run; use --resume {out} or another --out")
    probe = Path(out)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise RunDirError(f"output folder '{out}' is not writable; pass --out DIR with a writable folder")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` with the guarantee of :func:`atomic_write_bytes`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
