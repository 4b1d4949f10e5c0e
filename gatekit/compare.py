"""Compare methods: every method x seed as its own run, then one table and two plots.

A *comparison recipe* lists methods (each an ordinary gatekit recipe plus optional overrides)
and seeds; overrides at the top level apply to every method, so that all of them share the
env, the expert, the budgets and the evaluation. Example (``recipes/compare_toy.yaml``)::

    name: compare_toy
    seeds: [0, 1]
    overrides: {eval.final_episodes: 5}     # every method, every seed
    reference: HG-DAgger                    # optional: "expert steps to reach its success"
    methods:
      - {name: HG-DAgger, recipe: hg_cartpole.yaml}
      - {name: PVP, recipe: pvp_cartpole.yaml, overrides: {learner.lr: 3.0e-4}}

Recipe paths are relative to the comparison file. :func:`run_comparison` runs every pending
(method, seed) in a pool of worker processes, one process per run (MetaDrive allows one engine
per process; each run also starts its own evaluation worker), shows the overall progress, and
writes into the output folder:

================================ ==============================================================
``runs/<method>/seed<k>/``       each run's folder (see :mod:`gatekit.runs.loop`)
``results.csv``                  one row per run: counters, test metrics, status, run folder
``table.md``                     the AIM paper's Table 1 layout, mean ± std over seeds
``success_vs_expert_steps.png``  held-out success vs expert-involved steps, one line per method
``takeover_rate.png``            take-over rate over training, one line per method
``comparison.yaml``              the resolved comparison (methods, seeds, overrides)
================================ ==============================================================

Re-running skips runs whose ``results.json`` says ``finished`` and resumes runs that stopped
part-way (their own recipe is used, as with ``gatekit train --resume``). A run folder whose saved
recipe differs from the one the comparison now asks for (a method's recipe was edited, ``--set``
changed) is never reused silently: the comparison stops before running anything and names the
changed fields; ``redo_changed`` (``--redo-changed``) moves such folders aside (kept, renamed
``seed<k>.changed-<n>``: expert labels are never deleted) and runs them again.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import math
import multiprocessing as mp
import os
import queue as queue_mod
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gatekit.config import Recipe, load_dataclass, load_recipe, load_recipe_dict
from gatekit.errors import ConfigError, GatekitError

TABLE_COLUMNS = ("method", "expert steps (take-over rate)", "total steps", "switches", "test success",
                 "return", "route completion")


@dataclass(kw_only=True)
class MethodSpec:
    """One method of a comparison."""

    name: str
    """The method's name in the table and plots (e.g. ``Thrifty-DAgger``)."""
    recipe: str
    """Its gatekit recipe, relative to the comparison file."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted recipe fields set for this method only (``{learner.lr: 1.0e-4}``)."""


@dataclass(kw_only=True)
class Comparison:
    """A comparison recipe: methods x seeds under shared overrides."""

    name: str
    """A short name; the default output folder is ``runs/<name>``."""
    methods: list[MethodSpec]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Every method runs once per seed."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted recipe fields set for every method (shared budgets, evaluation, logging)."""
    reference: str | None = None
    """A method whose final test success the table's last column measures the others against."""
    workers: int | None = None
    """Runs at a time (None: one per CPU core)."""
    description: str = ""


@dataclass(frozen=True)
class PlannedRun:
    """One (method, seed) of a comparison and where it lives."""

    method: str
    seed: int
    run_dir: Path
    recipe: Recipe


def load_comparison(path: str | Path) -> tuple[Comparison, Path]:
    """Read a comparison recipe strictly; returns it and the folder its recipe paths start from.

    Raises:
        ConfigError: a missing file, bad YAML, an unknown key, duplicate method names, or a
            reference that is not one of the methods.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"compare: no such file '{path}'; give a comparison recipe (see recipes/compare_*.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise ConfigError(f"compare: '{path}' is not valid YAML; fix the syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"compare: '{path}' is not a text file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"compare: '{path}' must hold a mapping (name, methods, seeds, ...)")
    if "env" in raw and "methods" not in raw:
        raise ConfigError(f"compare: '{path}' looks like a training recipe; use `gatekit train` for it")
    methods_raw = raw.get("methods")
    if not isinstance(methods_raw, list) or not methods_raw:
        raise ConfigError("compare: 'methods' must be a non-empty list of {name, recipe} entries")
    body = {k: v for k, v in raw.items() if k != "methods"}
    comp = load_dataclass(Comparison, {**body, "methods": []}, kind="compare")
    comp.methods = [load_dataclass(MethodSpec, m, kind="compare", path=f"methods[{i}]") for i, m in enumerate(methods_raw)]
    names = [m.name for m in comp.methods]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"compare: method names must be unique; '{dup[0]}' appears twice")
    if not comp.seeds:
        raise ConfigError("compare: 'seeds' must list at least one seed")
    if len(set(comp.seeds)) != len(comp.seeds):
        raise ConfigError(f"compare: 'seeds' has duplicates: {comp.seeds}")
    if comp.reference is not None and comp.reference not in names:
        raise ConfigError(f"compare: reference '{comp.reference}' is not a method; valid: {', '.join(names)}")
    if comp.workers is not None and comp.workers < 1:
        raise ConfigError(f"compare: 'workers' must be >= 1, got {comp.workers}")
    return comp, path.parent


def slug(name: str) -> str:
    """A folder name for a method: lower case, runs of other characters as ``-``.

    Example:
        >>> slug("Thrifty-DAgger (alpha 0.05)")
        'thrifty-dagger-alpha-0-05'
    """
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s or "method"


def _as_override_list(mapping: dict[str, Any], where: str) -> list[str]:
    out = []
    for k, v in mapping.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"compare: {where} keys must be dotted recipe fields, got {k!r}")
        out.append(f"{k}={json.dumps(v)}")  # JSON is YAML: apply_overrides parses it back exactly
    return out


def check_only(comp: Comparison, only: tuple[str, ...]) -> None:
    """Raise ConfigError naming the valid methods if an ``--only`` name is not one of them."""
    names = [m.name for m in comp.methods]
    for o in only:
        if o not in names:
            raise ConfigError(f"compare: --only '{o}' is not a method; valid: {', '.join(names)}")


def plan(comp: Comparison, base: Path, out: Path, *, extra: tuple[str, ...] = (), seeds: list[int] | None = None,
         only: tuple[str, ...] = ()) -> list[PlannedRun]:
    """Resolve every (method, seed) into a checked recipe and its run folder (nothing runs).

    Raises:
        ConfigError: a method's recipe is missing or invalid (the message names the method).
    """
    check_only(comp, only)
    shared = _as_override_list(comp.overrides, "overrides")
    runs = []
    chosen = [m for m in comp.methods if not only or m.name in only]
    for m in chosen:
        recipe_path = (base / m.recipe) if not Path(m.recipe).is_absolute() else Path(m.recipe)
        if not recipe_path.is_file():
            raise ConfigError(f"compare: method '{m.name}': no recipe file '{recipe_path}'")
    # seed-major order: with fewer workers than runs, every method gets its first seed early
    for seed in seeds if seeds is not None else comp.seeds:
        for m in chosen:
            recipe_path = (base / m.recipe) if not Path(m.recipe).is_absolute() else Path(m.recipe)
            sets = [*shared, *_as_override_list(m.overrides, f"methods '{m.name}' overrides"), *extra,
                    f"seed={int(seed)}", "log.progress=false"]
            try:
                recipe = load_recipe(recipe_path, sets)
            except ConfigError as exc:
                raise ConfigError(f"compare: method '{m.name}': {exc}") from None
            runs.append(PlannedRun(m.name, int(seed), out / "runs" / slug(m.name) / f"seed{seed}", recipe))
    return runs


def run_status(run_dir: Path) -> str:
    """``finished``, ``failed``, ``interrupted``, ``running`` (from ``results.json``), ``partial``
    (records but no results) or ``new``."""
    res = run_dir / "results.json"
    if res.is_file():
        try:
            return str(json.loads(res.read_text()).get("status", "partial"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return "partial"
    return "partial" if (run_dir / "records.gkr").exists() else "new"


# ---------------------------------------------------------------------------------------------
# running


_progress_q: Any = None


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
    try:
        saved_raw = yaml.safe_load(path.read_text())
        saved = load_recipe_dict(saved_raw).to_dict() if isinstance(saved_raw, dict) else {}
    except (yaml.YAMLError, ConfigError, OSError, UnicodeDecodeError):
        return ["recipe.yaml: unreadable"]
    # both with every component default written out: runs save their recipe so (runs/loop.py)
    from gatekit.components import with_defaults

    a = {k: v for k, v in _flatten(with_defaults(load_recipe_dict(saved)).to_dict() if saved else {}).items()
         if not _ignored(k)}
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


def _init_worker(progress_q: Any) -> None:
    """Pool initializer: keep the parent's progress queue (a queue can only be inherited at
    process start, not sent with each task)."""
    global _progress_q
    _progress_q = progress_q
    progress_q.cancel_join_thread()  # progress is best effort: never block a worker's exit on it


def _run_one(recipe_raw: dict[str, Any], run_dir: str, resume: bool, key: str) -> dict[str, Any]:
    """Worker-process body: one training run. Never raises: a failure is a result."""
    from gatekit.runs import train

    def on_progress(live: dict[str, Any]) -> None:
        try:
            _progress_q.put_nowait((key, dict(live)))
        except Exception:  # a full or closed queue only costs a progress update
            pass

    try:
        if resume:
            return train(resume=Path(run_dir), progress=False, on_progress=on_progress).to_json()
        return train(load_recipe_dict(recipe_raw), out=Path(run_dir), progress=False, on_progress=on_progress).to_json()
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {"status": "failed", "error": f"{type(exc).__name__}: {msg}"}


def default_workers() -> int:
    """One run per CPU core available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _execute(pending: list[PlannedRun], workers: int, show: bool, total_steps: int, done_steps: int) -> dict[str, dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gatekit.progress import console

    results: dict[str, dict[str, Any]] = {}
    if not pending:
        return results
    ctx = mp.get_context("spawn")  # a fresh interpreter per run: no simulator state is inherited
    progress_q = ctx.Queue()
    try:
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[live]}"), TimeElapsedColumn(), console=console,
                            disable=not show, refresh_per_second=2)
        with progress, cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1,
                                              initializer=_init_worker, initargs=(progress_q,)) as pool:
            overall = progress.add_task("all runs (env steps)", total=total_steps, completed=done_steps,
                                        live=f"0/{len(pending)} runs done")
            seen: dict[str, int] = {}
            bars: dict[str, Any] = {}
            futures = {}
            for r in pending:
                key = f"{r.method} s{r.seed}"
                resume = (r.run_dir / "records.gkr").exists()  # continue a run that stopped part-way
                futures[pool.submit(_run_one, r.recipe.to_dict(), str(r.run_dir), resume, key)] = (key, r)
            finished = 0
            remaining = set(futures)
            try:
                while remaining:
                    done, remaining = cf.wait(remaining, timeout=0.5)
                    while True:
                        try:
                            key, live = progress_q.get_nowait()
                        except queue_mod.Empty:
                            break
                        steps = int(live.get("steps", 0))
                        if key not in bars:
                            total = next(r.recipe.budget.total_steps for k, r in futures.values() if k == key)
                            bars[key] = progress.add_task(key, total=total, live="")
                        progress.update(bars[key], completed=steps,
                                        live=f"expert {live.get('expert_steps', 0)} ({live.get('takeover_rate', 0.0):.2f})")
                        progress.advance(overall, steps - seen.get(key, 0))
                        seen[key] = steps
                    for fut in done:
                        key, r = futures[fut]
                        try:
                            res = fut.result()
                        except Exception as exc:  # the worker process died (a simulator crash)
                            res = {"status": "failed", "error": f"worker died: {type(exc).__name__}: {exc}"}
                        results[str(r.run_dir)] = res
                        finished += 1
                        budget = r.recipe.budget.total_steps
                        progress.advance(overall, max(0, budget - seen.get(key, 0)))
                        seen[key] = budget
                        if key in bars:
                            progress.remove_task(bars[key])
                        status = res.get("status", "failed")
                        progress.update(overall, live=f"{finished}/{len(pending)} runs done")
                        if status != "finished":
                            progress.console.print(f"[yellow]{key}: {status}[/yellow] {res.get('error', '')}")
            except KeyboardInterrupt:
                # Cancel the runs not started yet and ask the running ones to stop: each
                # checkpoints and writes results.json (status interrupted), so that the next
                # `gatekit compare` resumes it. A terminal's Ctrl-C reaches them anyway.
                for fut in futures:
                    fut.cancel()
                for pid in list(getattr(pool, "_processes", {}) or {}):
                    try:
                        os.kill(pid, signal.SIGINT)
                    except OSError:
                        pass
                raise
    finally:
        progress_q.close()
        progress_q.join_thread()
    return results


# ---------------------------------------------------------------------------------------------
# summarising


def _mean_of(res: dict[str, Any], key: str) -> float:
    v = res.get(key)
    if isinstance(v, dict):
        return float(v.get("mean", math.nan))
    if isinstance(v, (int, float)):
        return float(v)
    return math.nan


def result_rows(runs: list[PlannedRun]) -> list[dict[str, Any]]:
    """One flat row per run, read back from each run's ``results.json``."""
    rows = []
    for r in runs:
        res: dict[str, Any] = {}
        path = r.run_dir / "results.json"
        if path.is_file():
            try:
                res = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                res = {}
        row: dict[str, Any] = {"method": r.method, "seed": r.seed, "status": res.get("status", "missing")}
        for k in ("total_steps", "expert_steps", "takeover_rate", "switches", "expert_queries", "episodes",
                  "wall_seconds"):
            row[k] = res.get(k, math.nan)
        for k in sorted(res):
            if k.startswith("test_") or k.startswith("expert_test_"):
                row[k] = _mean_of(res, k)
        row["run_dir"] = str(r.run_dir)
        row["error"] = res.get("error", "")
        row["_evaluations"] = res.get("evaluations", [])
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    keys: list[str] = []
    for row in rows:
        for k in row:
            if not k.startswith("_") and k not in keys:
                keys.append(k)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k, "") for k in keys})


def _k(x: float) -> str:
    return f"{x / 1000:.1f}K" if abs(x) >= 1000 else f"{x:.0f}"


def _pm(values: list[float], fmt: Any) -> str:
    """``mean ± std`` (sample std over seeds; 0 for one seed) of the non-NaN values, or ``-``."""
    arr = np.asarray([v for v in values if v == v], dtype=np.float64)
    if arr.size == 0:
        return "-"
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return f"{fmt(float(arr.mean()))} ± {fmt(std)}"


def _pm_steps(values: list[float]) -> str:
    """Step counts as ``1.9K ± 0.1K`` (both in thousands once the mean reaches 1000)."""
    arr = [v for v in values if v == v]
    if arr and abs(float(np.mean(arr))) >= 1000:
        return _pm(arr, lambda x: f"{x / 1000:.1f}K")
    return _pm(arr, lambda x: f"{x:.0f}")


def mean_curve(evals_per_seed: list[list[dict[str, Any]]], key: str = "test_success") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Learning curves of several seeds on one grid of expert-involved steps.

    Each seed's curve (metric at each evaluation) is interpolated linearly onto the union of
    all seeds' evaluation points (held constant past its ends); returns (grid, mean, std).
    """
    curves = []
    for evals in evals_per_seed:
        pts = sorted((float(e["expert_steps"]), float(e[key])) for e in evals if key in e and e[key] == e[key])
        if pts:
            curves.append(pts)
    if not curves:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    grid = np.unique(np.concatenate([[p[0] for p in c] for c in curves]))
    ys = np.stack([np.interp(grid, [p[0] for p in c], [p[1] for p in c]) for c in curves])
    return grid, ys.mean(0), ys.std(0)


def steps_to_reach(evals_per_seed: list[list[dict[str, Any]]], target: float) -> float:
    """Expert-involved steps at which the seed-mean success curve first reaches ``target``
    (NaN if it never does)."""
    grid, mean, _ = mean_curve(evals_per_seed)
    hit = np.flatnonzero(mean >= target - 1e-12)
    return float(grid[hit[0]]) if hit.size else math.nan


def make_table(comp: Comparison, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 1 layout (mean ± std over the finished seeds of each method)."""
    header = list(TABLE_COLUMNS)
    ref_success = math.nan
    if comp.reference is not None:
        ref_rows = [r for r in rows if r["method"] == comp.reference and r["status"] == "finished"]
        if ref_rows:
            ref_success = float(np.nanmean([r.get("test_success", math.nan) for r in ref_rows]))
        shown = f"{ref_success:.2f}" if ref_success == ref_success else "no finished run"
        header.append(f"expert steps to reach {comp.reference}'s success ({shown})")
    header.append("seeds")
    body = []
    expert_rows = [r for r in rows if r["status"] == "finished" and "expert_test_success" in r]
    if expert_rows:
        keys = ("expert_test_success", "expert_test_return", "expert_test_route_completion")
        fmts = (lambda x: f"{x:.2f}", lambda x: f"{x:.1f}", lambda x: f"{x:.2f}")
        measured = {tuple(r.get(k, math.nan) for k in keys) for r in expert_rows}
        if len(measured) == 1:  # one measurement, cached and shared by every run: no spread to show
            cells = [f(v) if v == v else "-" for f, v in zip(fmts, next(iter(measured)), strict=True)]
            count = "1 measurement"
        else:
            cells = [_pm([r.get(k, math.nan) for r in expert_rows], f) for k, f in zip(keys, fmts, strict=True)]
            count = str(len(measured))
        line = ["expert (alone)", "–", "–", "–", *cells]
        if comp.reference is not None:
            line.append("–")
        line.append(count)
        body.append(line)
    for m in comp.methods:
        mine = [r for r in rows if r["method"] == m.name]
        done = [r for r in mine if r["status"] == "finished"]
        if not mine:
            continue
        if not done:
            body.append([m.name, *["-"] * (len(header) - 2), f"0/{len(mine)}"])
            continue
        rate = _pm([r["takeover_rate"] for r in done], lambda x: f"{x:.2f}")
        line = [
            m.name,
            f"{_pm_steps([r['expert_steps'] for r in done])} ({rate})",
            _pm_steps([r["total_steps"] for r in done]),
            _pm([r["switches"] for r in done], lambda x: f"{x:.0f}"),
            _pm([r.get("test_success", math.nan) for r in done], lambda x: f"{x:.2f}"),
            _pm([r.get("test_return", math.nan) for r in done], lambda x: f"{x:.1f}"),
            _pm([r.get("test_route_completion", math.nan) for r in done], lambda x: f"{x:.2f}"),
        ]
        if comp.reference is not None:
            if not ref_success > 0:  # unknown, or a reference that never succeeds: nothing to reach
                line.append("–")
            else:
                reach = steps_to_reach([r["_evaluations"] for r in done], ref_success)
                line.append("not reached" if reach != reach else _k(reach))
        line.append(f"{len(done)}/{len(mine)}")
        body.append(line)
    # a metric no run reports (route completion outside MetaDrive) is left out, not shown empty
    keep = [i for i, col in enumerate(header)
            if col not in ("return", "route completion") or any(row[i] not in ("-", "–") for row in body)]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in body]


def write_table_md(comp: Comparison, header: list[str], body: list[list[str]], path: Path) -> None:
    lines = [f"# {comp.name}", ""]
    if comp.description:
        lines += [comp.description, ""]
    lines += ["Mean ± std over seeds; test figures from each run's final evaluation on held-out episodes, "
              "without the expert. Expert steps = expert-involved steps; take-over rate = expert steps / total steps.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in body:
        lines.append("| " + " | ".join(row) + " |")
    path.write_text("\n".join(lines) + "\n")


def _takeover_series(run_dir: Path, edges: np.ndarray) -> np.ndarray:
    """Take-over rate (expert-involved steps / steps) in each bin of env steps, read from the
    run's record log (per step, so it covers episodes still running when the run stopped)."""
    from gatekit.data import read_log

    out = np.full(len(edges) - 1, np.nan)
    path = run_dir / "records.gkr"
    if not path.is_file():
        return out
    try:
        _, cols, _ = read_log(path)
    except GatekitError:
        return out
    intervened = np.asarray(cols["intervened"], dtype=np.float64)
    idx = np.clip(np.searchsorted(edges, np.arange(len(intervened)), side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    sums = np.bincount(idx, weights=intervened, minlength=len(edges) - 1)
    has = counts > 0
    out[has] = sums[has] / counts[has]
    return out


def write_plots(comp: Comparison, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """``success_vs_expert_steps.png`` and ``takeover_rate.png``, one line per method."""
    from gatekit.plots import pyplot, save_rate_plot

    plt = pyplot()
    written = []
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m in comp.methods:
        done = [r for r in rows if r["method"] == m.name and r["status"] == "finished"]
        grid, mean, std = mean_curve([r["_evaluations"] for r in done])
        if grid.size:
            line, = ax.plot(grid, mean, "o-", ms=3, label=f"{m.name} (n={len(done)})")
            ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    written.append(save_rate_plot(fig, ax, out / "success_vs_expert_steps.png", xlabel="expert-involved steps",
                                  ylabel="held-out test success",
                                  title=f"{comp.name}: held-out success (mean ± std over seeds)"))

    totals = [float(r["total_steps"]) for r in rows if r["status"] == "finished" and r["total_steps"] == r["total_steps"]]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if totals:
        edges = np.linspace(0, max(totals), 26)
        centres = (edges[:-1] + edges[1:]) / 2
        for m in comp.methods:
            done = [r for r in rows if r["method"] == m.name and r["status"] == "finished"]
            if not done:
                continue
            series = np.stack([_takeover_series(Path(r["run_dir"]), edges) for r in done])
            mean = _nanmean(series)
            valid = ~np.isnan(mean)
            ax.plot(centres[valid], mean[valid], "-", label=m.name)
    written.append(save_rate_plot(fig, ax, out / "takeover_rate.png", xlabel="env steps",
                                  ylabel="take-over rate (expert steps / steps)",
                                  title=f"{comp.name}: take-over rate during training (mean over seeds)"))
    return written


def _nanmean(a: np.ndarray) -> np.ndarray:
    n = (~np.isnan(a)).sum(0)
    s = np.nansum(a, 0)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


@dataclass
class ComparisonResult:
    """What :func:`run_comparison` did and wrote."""

    out: Path
    ran: int
    skipped: int
    failed: list[str]
    header: list[str]
    table: list[list[str]]
    files: list[Path]


def run_comparison(path: str | Path, *, out: str | Path | None = None, workers: int | None = None,
                   seeds: list[int] | None = None, only: tuple[str, ...] = (), overrides: tuple[str, ...] = (),
                   progress: bool = True, redo_changed: bool = False) -> ComparisonResult:
    """Run every method x seed of the comparison at ``path`` (skipping finished runs) and write
    ``results.csv``, ``table.md`` and the plots into ``out`` (default ``runs/<name>``).

    Args:
        path: the comparison recipe.
        out: the output folder.
        workers: runs at a time (default: the recipe's ``workers``, else one per core).
        seeds: seeds to run instead of the recipe's.
        only: run only these methods.
        overrides: ``a.b=value`` set on every method's recipe, after the recipe's own.
        progress: show progress bars.
        redo_changed: move aside and re-run the run folders whose saved recipe differs from the
            planned one (default: stop with an error naming them).

    Raises:
        ConfigError: bad input, or run folders made from other recipes, found before any run starts.
    """
    comp, base = load_comparison(path)
    out_dir = Path(out) if out is not None else Path("runs") / comp.name
    n_workers = workers if workers is not None else (comp.workers or default_workers())
    if n_workers < 1:
        raise ConfigError(f"compare: --workers must be >= 1, got {n_workers}")
    check_only(comp, only)
    every = plan(comp, base, out_dir, extra=tuple(overrides), seeds=seeds)
    runs = [r for r in every if not only or r.method in only]
    changed = [(r, c) for r in runs if (c := recipe_changes(r.run_dir, r.recipe))]
    if changed and not redo_changed:
        r, c = changed[0]
        more = f" (and {len(changed) - 1} more run folders)" if len(changed) > 1 else ""
        shown = "; ".join(c[:3]) + (f"; +{len(c) - 3} more" if len(c) > 3 else "")
        raise ConfigError(f"compare: '{r.run_dir}'{more} was made from a different recipe ({shown}); "
                          "pass --redo-changed to keep it aside and run again, or pass another --out")
    for r, _ in changed:
        set_aside(r.run_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GatekitError(f"compare: cannot create output folder '{out_dir}' ({exc.strerror}); pass --out DIR") from None
    resolved = {"name": comp.name, "seeds": seeds if seeds is not None else comp.seeds, "overrides": comp.overrides,
                "extra_overrides": list(overrides), "reference": comp.reference,
                "methods": [{"name": m.name, "recipe": str(base / m.recipe), "overrides": m.overrides}
                            for m in comp.methods if not only or m.name in only]}
    (out_dir / "comparison.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    pending = [r for r in runs if run_status(r.run_dir) != "finished"]
    total = sum(r.recipe.budget.total_steps for r in runs)
    done_steps = total - sum(r.recipe.budget.total_steps for r in pending)
    outcome = _execute(pending, min(n_workers, max(1, len(pending))), progress, total, done_steps)
    # The table covers every method with runs in this folder, not only the ones run now (--only);
    # a method left out keeps its finished runs, unless they were made from another recipe.
    chosen = {str(r.run_dir) for r in runs}
    others = [r for r in every if str(r.run_dir) not in chosen and r.run_dir.exists()]
    rows = result_rows([*runs, *others])
    stale = {str(r.run_dir) for r in others if recipe_changes(r.run_dir, r.recipe)}
    for row in rows:
        if row["run_dir"] in stale:
            row["status"], row["error"] = "changed", "made from a different recipe (not counted; rerun it)"
    order = {(r.method, r.seed): i for i, r in enumerate(every)}
    rows.sort(key=lambda row: order[(row["method"], row["seed"])])
    for row in rows:  # a run that failed before writing results.json still gets its error in the CSV
        res = outcome.get(row["run_dir"])
        if res is not None and row["status"] == "missing":
            row["status"], row["error"] = res.get("status", "failed"), res.get("error", "")
    write_csv(rows, out_dir / "results.csv")
    header, body = make_table(comp, rows)
    write_table_md(comp, header, body, out_dir / "table.md")
    files = [out_dir / "results.csv", out_dir / "table.md", *write_plots(comp, rows, out_dir)]
    failed = [f"{r['method']} seed {r['seed']}: {r['status']} {r['error']}".strip() for r in rows
              if r["status"] != "finished" and r["run_dir"] in chosen]
    return ComparisonResult(out=out_dir, ran=len(pending), skipped=len(runs) - len(pending), failed=failed,
                            header=header, table=body, files=files)
