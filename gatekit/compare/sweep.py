"""A sweep: one recipe under a grid of settings, every grid point x every seed as a run.

A sweep is a comparison whose methods come from a grid instead of a comparison recipe: each
grid point (one value per ``--grid`` key) becomes a method named from its settings, and the
rest (planning, skipping finished runs, resuming partial ones, the backend, ``results.csv``,
``table.md``, the plots, the report page) is :mod:`gatekit.compare` unchanged.

Example::

    gatekit sweep recipes/aim_metadrive.yaml --grid criterion.delta=0.02,0.05 \\
        --grid learner.lr=1.0e-4,3.0e-4 --seeds 0-4

runs 4 methods (``delta=0.02 lr=0.0001``, ...) x 5 seeds into ``runs/sweep_aim_metadrive``.
Values are parsed as ``--set`` parses them (YAML); a value holding commas is bracketed
(``--grid criterion.hidden=[64,64],[256,256]``). A grid key is checked as strictly as a
recipe field before anything runs: an unknown key names the nearest valid one.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gatekit.compare.pool import Backend
from gatekit.compare.spec import Comparison, MethodSpec, slug
from gatekit.config import Recipe, load_recipe
from gatekit.errors import ConfigError

if TYPE_CHECKING:
    from gatekit.compare import ComparisonResult

Grid = list[tuple[str, list[Any]]]
"""The sweep's axes: (dotted recipe field, its values), in the order given."""

_SECTIONS = ("env", "expert", "criterion", "learner")  # components: their arguments are checked too


def split_values(text: str) -> list[str]:
    """Split ``text`` on the commas outside brackets and quotes.

    Example:
        >>> split_values("[64,64],[256,256]")
        ['[64,64]', '[256,256]']
        >>> split_values("0.02, 0.05")
        ['0.02', '0.05']
    """
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def parse_grid(items: Sequence[str]) -> Grid:
    """``["criterion.delta=0.02,0.05", ...]`` as ``[("criterion.delta", [0.02, 0.05]), ...]``.

    Raises:
        ConfigError: an item without ``=``, an empty value, a repeated key or value, or ``seed``.
    """
    grid: Grid = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"sweep: --grid expects key=v1,v2,..., got '{item}' (e.g. --grid criterion.delta=0.02,0.05)")
        if key == "seed":
            raise ConfigError("sweep: --grid seed: give the seeds with --seeds (e.g. --seeds 0-4)")
        if any(key == k for k, _ in grid):
            raise ConfigError(f"sweep: --grid {key} is given twice; list all its values in one --grid")
        texts = split_values(text)
        if any(not t for t in texts):
            raise ConfigError(f"sweep: --grid {key}: empty value in '{text}'")
        values = [_parse_value(t) for t in texts]
        dup = next((t for t, v in zip(texts, values, strict=True) if values.count(v) > 1), None)  # 1 == 1.0
        if dup is not None:
            raise ConfigError(f"sweep: --grid {key}: value '{dup}' appears twice")
        grid.append((key, values))
    return grid


def _parse_value(text: str) -> Any:
    """A grid value as ``--set`` parses it (YAML; unparsable text stays a string)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_seeds(text: str) -> list[int]:
    """Seeds as ranges and lists: ``0-4``, ``0,2,5``, ``0-2,7``.

    Example:
        >>> parse_seeds("0-2,7")
        [0, 1, 2, 7]

    Raises:
        ConfigError: not integers, a range whose end is below its start, or a seed given twice.
    """
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            span = range(int(lo), int(hi) + 1) if dash and lo else [int(part)]
        except ValueError:
            raise ConfigError(f"--seeds: expected integers and ranges like 0-4 or 0,2,5, got '{text}'") from None
        if not span:
            raise ConfigError(f"--seeds: range '{part}' ends below its start; write it as low-high")
        seeds.extend(span)
    if not seeds:
        raise ConfigError("--seeds: give at least one seed, e.g. --seeds 0-4 or --seeds 0,2,5")
    dup = next((s for s in seeds if seeds.count(s) > 1), None)
    if dup is not None:
        raise ConfigError(f"--seeds: seed {dup} is given twice in '{text}'")
    return seeds


def method_name(point: Sequence[tuple[str, Any]], short: dict[str, str]) -> str:
    """A grid point's method name: ``delta=0.05 lr=0.0001`` (keys shortened where unambiguous)."""
    return " ".join(f"{short[k]}={_show(v)}" for k, v in point)


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each key's last dotted part, or the whole key where two keys share their last part.

    Example:
        >>> short_keys(["criterion.delta", "criterion.lr", "learner.lr"])
        {'criterion.delta': 'delta', 'criterion.lr': 'criterion.lr', 'learner.lr': 'learner.lr'}
    """
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def check_point(recipe_path: Path, point: Sequence[tuple[str, Any]], extra: Sequence[str]) -> Recipe:
    """Load the recipe with one grid point set, as strictly as a recipe (unknown keys, types,
    and the arguments of the components the grid sets, without building them)."""
    sets = [*extra, *(f"{k}={json.dumps(v)}" for k, v in point)]
    try:
        recipe = load_recipe(recipe_path, sets)
    except ConfigError as exc:
        raise ConfigError(f"sweep: {str(exc).removeprefix('recipe: ')}") from None
    for key, _ in point:
        section = key.split(".", 1)[0]
        if section in _SECTIONS and "." in key:
            _check_component(recipe, section)
    return recipe


def _check_component(recipe: Recipe, section: str) -> None:
    from gatekit.runs.components import check_arguments

    try:
        check_arguments(recipe, section)
    except ConfigError as exc:
        raise ConfigError(f"sweep: --grid: {str(exc).removeprefix('recipe: ')}") from None


def sweep_comparison(recipe_path: str | Path, grid: Grid, *, seeds: list[int], extra: Sequence[str] = (),
                     name: str | None = None) -> Comparison:
    """The comparison a sweep runs: one method per grid point (the cross product of the grid's
    values, in the order given), every seed.

    Raises:
        ConfigError: the recipe is missing or invalid, a grid key is unknown or a value has the
            wrong type for it, ``--set`` sets a grid key, or two grid points share a folder name.
    """
    path = Path(recipe_path)
    clash = sorted({k for k, _ in grid} & {s.partition("=")[0].strip() for s in extra})
    if clash:
        raise ConfigError(f"sweep: '{clash[0]}' is both a --grid key and a --set field; keep one")
    keys = [k for k, _ in grid]
    short = short_keys(keys)
    points = [list(zip(keys, values, strict=True)) for values in product(*(v for _, v in grid))] if grid else [[]]
    base = check_point(path, [], extra)
    methods = []
    for point in points:
        check_point(path, point, extra)
        label = method_name(point, short) if point else base.name
        methods.append(MethodSpec(name=label, recipe=str(path.resolve()), overrides=dict(point)))
    folders = [slug(m.name) for m in methods]
    dup = next((m.name for m, f in zip(methods, folders, strict=True) if folders.count(f) > 1), None)
    if dup is not None:
        raise ConfigError(f"sweep: two grid points share the folder name '{slug(dup)}'; give values that differ in letters or digits")
    what = ", ".join(f"{k} in {{{', '.join(_show(v) for v in vs)}}}" for k, vs in grid) or "no grid"
    shared = {}  # --set: every run, before the grid point (the order check_point loads them in)
    for item in extra:
        key, _, text = item.partition("=")
        shared[key.strip()] = _parse_value(text)
    return Comparison(name=name or f"sweep_{path.stem}", methods=methods, seeds=list(seeds), overrides=shared,
                      description=f"sweep of {path.name} ({base.name}): {what}; seeds {', '.join(map(str, seeds))}")


def run_sweep(recipe_path: str | Path, grid_items: Sequence[str], *, seeds: list[int] | None = None,
              out: str | Path | None = None, workers: int | None = None, overrides: tuple[str, ...] = (),
              progress: bool = True, redo_changed: bool = False, report: str | Path | None = None,
              backend: Backend | None = None, name: str | None = None) -> ComparisonResult:
    """Run every grid point x seed of ``recipe_path`` (skipping finished runs) and write the
    comparison's outputs into ``out`` (default ``runs/sweep_<recipe>``); see
    :func:`gatekit.compare.run_comparison` for the other arguments.

    Args:
        recipe_path: the training recipe the grid varies.
        grid_items: ``key=v1,v2`` strings, one per axis.
        seeds: the seeds (default: the recipe's own seed).
        overrides: ``a.b=value`` set on every run, before the grid point.
    """
    from gatekit.compare import run_loaded

    grid = parse_grid(grid_items)
    if seeds is None:
        seeds = [check_point(Path(recipe_path), [], overrides).seed]
    comp = sweep_comparison(recipe_path, grid, seeds=seeds, extra=overrides, name=name)
    words = ["gatekit", "sweep", str(recipe_path), *(w for g in grid_items for w in ("--grid", g)),
             "--seeds", ",".join(map(str, seeds)), *(w for o in overrides for w in ("--set", o))]
    if out is not None:
        words += ["--out", str(out)]
    if report is not None:
        words += ["--report", str(report)]
    return run_loaded(comp, Path("."), out=out, workers=workers, progress=progress,
                      redo_changed=redo_changed, report=report, backend=backend, command=shlex.join(words))


__all__ = ["Grid", "check_point", "parse_grid", "parse_seeds", "run_sweep", "short_keys", "split_values",
           "sweep_comparison"]
