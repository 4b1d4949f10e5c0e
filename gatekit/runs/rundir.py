"""The run folder: its name, the checks before a run writes into it, and atomic writes.

Every file gatekit writes into a run folder that a crash must not leave half-written
(``recipe.yaml``, ``results.json``, checkpoints, saved novices) goes through
:func:`atomic_write_bytes` or :func:`atomic_torch_save`: a temporary file, fsync, ``os.replace``,
fsync of the folder. A failed write (disk full, unwritable) removes its temporary file and
raises one :class:`~gatekit.errors.RunDirError` line naming the file and the fix.

A full disk mid-run: :class:`DiskReserve` holds a few MiB in the run folder from the start
(``.gatekit-reserve``); when a write fails for lack of space the run frees it, so that the
checkpoint at the failure and ``results.json`` still fit.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from gatekit.data.log import fsync_dir
from gatekit.errors import RunDirError

MIN_FREE_BYTES = 64 * 2**20
RESERVE_NAME = ".gatekit-reserve"
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def is_disk_full(exc: BaseException) -> bool:
    """``exc`` (or what it was raised from) is a full disk or quota."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def write_error(path: Path, exc: OSError) -> RunDirError:
    """One line for a failed write of ``path``: what, why, and the fix."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    code = errno.errorcode.get(exc.errno or 0, "")
    if exc.errno in _FULL:
        fix = "free space on that disk, then resume the run (gatekit train --resume RUN_DIR)"
    elif exc.errno in _DENIED:
        fix = "make the run folder writable, then resume the run"
    else:
        fix = "check the disk, then resume the run"
    err = RunDirError(f"cannot write '{path}': {reason}{f' [{code}]' if code else ''}; {fix}")
    err.errno = exc.errno
    return err


def default_run_dir(name: str, seed: int, root: Path = Path("runs")) -> Path:
    """``root/<name>-s<seed>-<time>``, with ``-1``, ``-2``, ... when that folder exists."""
    from gatekit.config import check_name

    check_name("name", name)  # a folder name: it can never leave ``root``
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
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never a mix.

    Raises:
        RunDirError: the write failed (one line); the temporary file is removed, ``path`` is
            as it was.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, RunDirError):
            raise
        raise write_error(path, exc) from exc
    fsync_dir(path.parent)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` with the guarantee of :func:`atomic_write_bytes` (serialised in memory
    first, so that a full disk is an ``OSError`` of the write, not an error inside torch)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getbuffer().tobytes())


class DiskReserve:
    """Space held in the run folder so that the run can still save its checkpoint and
    ``results.json`` when the disk fills up (see the module docstring).

    Args:
        run_dir: the run folder.
        size: bytes to hold.
    """

    def __init__(self, run_dir: Path, size: int) -> None:
        self.path = run_dir / RESERVE_NAME
        self.size = int(size)
        self.held = False

    def hold(self) -> None:
        """Allocate the reserve (best effort: a filesystem without ``fallocate`` gets zeros)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, self.size)
                else:  # pragma: no cover
                    os.write(fd, b"\0" * self.size)
            finally:
                os.close(fd)
            self.held = True
        except OSError:
            self.release()  # no room for a reserve: the run goes on without one

    def release(self) -> None:
        """Free the reserve (idempotent)."""
        self.held = False
        try:
            self.path.unlink()
        except OSError:
            pass
