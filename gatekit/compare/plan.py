"""Planning a comparison: every (method, seed) as a checked recipe and a run folder, and what
to do with folders already there (skip finished, resume partial, refuse stale).

Nothing here runs a run. A run folder whose saved recipe differs from the one the comparison
now asks for (a method's recipe was edited, ``--set`` changed) is never reused silently:
:func:`refuse_or_set_aside` stops before anything runs and names the changed fields, or, with
``redo_changed``, renames such folders ``seed<k>.changed-<n>`` (kept: expert labels are a
person's time) so that they run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gatekit.compare.spec import Comparison, check_only, override_list, recipe_path, slug
from gatekit.config import Recipe, load_recipe, load_recipe_dict
from gatekit.errors import ConfigError
from gatekit.runs.components import check_arguments
from gatekit.runs.results import RunResult
from gatekit.yaml_safety import safe_load_bounded


@dataclass(frozen=True)
class PlannedRun:
    """One (method, seed) of a comparison and where it lives."""

    method: str
    seed: int
    run_dir: Path
    recipe: Recipe

    @property
    def key(self) -> str:
        """A short label for progress lines: ``AIM s0``."""
        return f"{self.method} s{self.seed}"


def plan(comp: Comparison, base: Path, out: Path, *, extra: tuple[str, ...] = (), seeds: list[int] | None = None,
         only: tuple[str, ...] = ()) -> list[PlannedRun]:
    """Resolve every (method, seed) into a checked recipe and its run folder (nothing runs).

    Overrides apply in this order: the comparison's shared ``overrides``, the method's own,
    ``extra`` (``--set``), then the seed. Runs come seed-major: with fewer workers than runs,
    every method gets its first seed early.

    Raises:
        ConfigError: a method's recipe is missing or invalid, or its components' arguments are
            (an unknown key, a wrong type): the message names the method, before anything runs.
    """
    check_only(comp, only)
    chosen = [m for m in comp.methods if not only or m.name in only]
    for m in chosen:
        if not recipe_path(base, m).is_file():
            raise ConfigError(f"compare: method '{m.name}': no recipe file '{recipe_path(base, m)}'")
    shared = override_list(comp.overrides, "overrides")
    runs = []
    checked: set[str] = set()
    for seed in seeds if seeds is not None else comp.seeds:
        for m in chosen:
            sets = [*shared, *override_list(m.overrides, f"methods '{m.name}' overrides"), *extra,
                    f"seed={int(seed)}", "log.progress=false"]
            try:
                recipe = load_recipe(recipe_path(base, m), sets)
                if m.name not in checked:  # components' arguments: the same for every seed
                    for section in ("env", "expert", "criterion", "learner"):
                        check_arguments(recipe, section)
                    checked.add(m.name)
            except ConfigError as exc:
                raise ConfigError(f"compare: method '{m.name}': {exc}") from None
            runs.append(PlannedRun(m.name, int(seed), out / "runs" / slug(m.name) / f"seed{seed}", recipe))
    return runs


def run_status(run_dir: Path) -> str:
    """``finished``, ``failed``, ``interrupted``, ``running`` (from ``results.json``), ``partial``
    (records but no readable results) or ``new``."""
    status = RunResult.read_status(run_dir)
    if status is not None:
        return status
    return "partial" if (run_dir / "records.gkr").exists() else "new"


def has_records(run: PlannedRun) -> bool:
    """The run stopped part-way and continues from its records (as ``gatekit train --resume``)."""
    return (run.run_dir / "records.gkr").exists()


# how a run reports and stores, not what it learns or how its novice is tested
_IGNORED_FIELDS = ("log", "description", "data", "eval.expert_reference", "eval.in_worker")


def _ignored(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in _IGNORED_FIELDS)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def recipe_changes(run_dir: Path, recipe: Recipe) -> list[str]:
    """The fields (``key: saved -> planned``) where the run folder's saved ``recipe.yaml`` differs
    from ``recipe``; empty when they agree or the folder holds no recipe yet. Fields under
    ``log`` and ``data``, the description and whether the expert's own reference is measured are
    ignored: they change neither the novice nor its test."""
    path = run_dir / "recipe.yaml"
    if not path.is_file():
        return []
    from gatekit.components import with_defaults

    try:
        saved_raw = safe_load_bounded(path.read_text(encoding="utf-8"), what=f"'{path}'")
        saved = with_defaults(load_recipe_dict(saved_raw)).to_dict() if isinstance(saved_raw, dict) else {}
    except (yaml.YAMLError, ConfigError, OSError, UnicodeDecodeError):
        return ["recipe.yaml: unreadable"]
    # both with every component default written out: runs save their recipe so (runs/loop.py)
    a = {k: v for k, v in _flatten(saved).items() if not _ignored(k)}
    b = {k: v for k, v in _flatten(with_defaults(recipe).to_dict()).items() if not _ignored(k)}
    missing = object()
    return [f"{k}: {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}" for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing)]


def set_aside(run_dir: Path) -> Path:
    """Rename a run folder to ``<name>.changed-<n>`` (first free n) and return the new path."""
    n = 1
    while (dest := run_dir.with_name(f"{run_dir.name}.changed-{n}")).exists():
        n += 1
    run_dir.rename(dest)
    return dest


def refuse_or_set_aside(runs: list[PlannedRun], *, redo_changed: bool) -> list[Path]:
    """Check that no run folder was made from another recipe; with ``redo_changed``, move such
    folders aside instead (returns their new paths).

    Raises:
        ConfigError: a folder was made from another recipe and ``redo_changed`` is off.
    """
    changed = [(r, c) for r in runs if (c := recipe_changes(r.run_dir, r.recipe))]
    if changed and not redo_changed:
        r, c = changed[0]
        more = f" (and {len(changed) - 1} more run folders)" if len(changed) > 1 else ""
        shown = "; ".join(c[:3]) + (f"; +{len(c) - 3} more" if len(c) > 3 else "")
        raise ConfigError(f"compare: '{r.run_dir}'{more} was made from a different recipe ({shown}); "
                          "pass --redo-changed to keep it aside and run again, or pass another --out")
    return [set_aside(r.run_dir) for r, _ in changed]
