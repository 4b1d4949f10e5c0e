"""What a run was made with, for its ``results.json``: the expert's files and their sha256, the
versions of the packages that shape the numbers, and the git commit of gatekit's source.

A figure without its provenance cannot be reproduced or compared: two runs named ``sb3`` may
have used different zips, and a change of gymnasium or of the simulator can move success
rates. Everything here is read, never required: a missing package is ``null``, a source tree
outside git has no commit.

Example:
    >>> v = package_versions()
    >>> sorted(v)[:3], v["gymnasium"] is not None
    (['gatekit', 'gymnasium', 'imitation'], True)
"""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = {
    "gatekit": "gatekit",
    "torch": "torch",
    "numpy": "numpy",
    "gymnasium": "gymnasium",
    "stable-baselines3": "stable-baselines3",
    "imitation": "imitation",
    "metadrive-simulator": "metadrive-simulator",
    "minigrid": "minigrid",
}
"""Distributions whose versions a run records (the simulators included)."""

FILE_ATTRIBUTES = ("path", "weights_path", "source_path")
"""Attributes under which an expert keeps the file it was loaded from (SB3's ``path``,
MetaDrive's ``weights_path``): an expert of your own that loads a file may set one of them."""


def package_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`PACKAGES` (None: not installed)."""
    out: dict[str, str | None] = {}
    for key, dist in PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def git_commit(path: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``path`` (default: gatekit's source),
    or None outside a checkout (an installed wheel) or without git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())} if commit else None


def sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | Path) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` of a file (its absolute path)."""
    p = Path(path).resolve()
    return {"path": str(p), "sha256": sha256(p), "bytes": p.stat().st_size}


def expert_files(expert: Any, kwargs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The files an expert was loaded from: the existing files named by its
    :data:`FILE_ATTRIBUTES` and by its recipe keys ``path`` / ``weights`` (one record each)."""
    seen: dict[str, dict[str, Any]] = {}
    candidates = [getattr(expert, a, None) for a in FILE_ATTRIBUTES]
    candidates += [(kwargs or {}).get(k) for k in ("path", "weights")]
    for c in candidates:
        if not isinstance(c, (str, Path)) or not c:
            continue
        p = Path(c)
        if not p.is_file() and p.with_suffix(".zip").is_file():  # SB3 lets ".zip" be left out
            p = p.with_suffix(".zip")
        if p.is_file() and str(p.resolve()) not in seen:
            seen[str(p.resolve())] = file_record(p)
    return list(seen.values())


def collect(*, expert: Any = None, expert_id: str = "", expert_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance block of a run's ``results.json``."""
    return {
        "expert": {"id": expert_id, "class": f"{type(expert).__module__}.{type(expert).__qualname__}"
                   if expert is not None else None, "files": expert_files(expert, expert_kwargs)},
        "versions": package_versions(),
        "git": git_commit(),
    }
