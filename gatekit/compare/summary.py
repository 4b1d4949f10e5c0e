"""From run folders to the comparison's figures: rows, per-method intervals, the table.

Each run is read through :class:`~gatekit.runs.results.RunResult` (the one reader of
``results.json``). :func:`summarize` turns the rows into one :class:`MethodSummary` per method:
the mean of every figure over the finished seeds with its 95% interval (stratified bootstrap
over seeds, :mod:`gatekit.compare.stats`), the learning curves, and the focus method's
probability of improvement over it. :func:`make_table` lays them out as the AIM paper's Table 1;
each column is one small function of a summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gatekit.compare.plan import PlannedRun, recipe_changes
from gatekit.compare.spec import Comparison
from gatekit.compare.stats import DEFAULT_REPS, Interval, intervals, probability_of_improvement
from gatekit.errors import RunDirError
from gatekit.runs.results import RunResult

if TYPE_CHECKING:
    from gatekit.compare.pool import Outcome

COUNTERS = ("expert_steps", "takeover_rate", "total_steps", "switches", "expert_queries", "episodes")
"""Run counters summarised per method (attributes of :class:`RunResult`)."""
TEST_METRICS = ("success", "return", "route_completion")
"""Test metrics the table shows (others go to ``results.csv`` only)."""
POI_METRIC = "success"
"""The figure the probability of improvement compares."""

Point = tuple[float, float]
"""A point of a learning curve: (expert-involved steps, metric)."""


# ---------------------------------------------------------------------------------------------
# rows


@dataclass
class RunRow:
    """One (method, seed) of the comparison and what its folder holds."""

    method: str
    seed: int
    run_dir: Path
    status: str
    """``results.json``'s status, ``missing`` (none readable) or ``changed`` (another recipe)."""
    result: RunResult | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.status == "finished" and self.result is not None


def read_rows(runs: list[PlannedRun]) -> list[RunRow]:
    """One row per planned run, read back from its ``results.json``."""
    rows = []
    for r in runs:
        try:
            res: RunResult | None = RunResult.read(r.run_dir)
        except RunDirError:
            res = None
        status = res.status if res is not None else "missing"
        rows.append(RunRow(r.method, r.seed, r.run_dir, status, res, (res.error or "") if res else ""))
    return rows


def comparison_rows(every: list[PlannedRun], chosen: list[PlannedRun], outcomes: dict[Path, Outcome]) -> list[RunRow]:
    """The rows the table covers: every run of ``chosen`` (this call's methods and seeds) and the
    runs of other methods already in the folder (``--only`` keeps their rows), in plan order.

    A run of another method made from a different recipe is not counted (status ``changed``);
    a run that failed before writing ``results.json`` gets its outcome's error.
    """
    picked = {r.run_dir for r in chosen}
    others = [r for r in every if r.run_dir not in picked and r.run_dir.exists()]
    stale = {r.run_dir for r in others if recipe_changes(r.run_dir, r.recipe)}
    order = {r.run_dir: i for i, r in enumerate(every)}
    rows = sorted(read_rows([*chosen, *others]), key=lambda row: order[row.run_dir])
    for row in rows:
        if row.run_dir in stale:
            row.status, row.error = "changed", "made from a different recipe (not counted; rerun it)"
        elif row.status == "missing" and row.run_dir in outcomes:
            row.status, row.error = outcomes[row.run_dir].status, outcomes[row.run_dir].error
    return rows


def figure(res: RunResult, key: str) -> float:
    """A counter (``expert_steps``, ``takeover_rate``, ...) or a final test mean (``success``)."""
    if key in COUNTERS:
        return float(getattr(res, key))
    return res.metric(key)


def curve(res: RunResult, metric: str = "success") -> list[Point]:
    """The run's learning curve: (expert-involved steps, test ``metric``) at each evaluation."""
    return [(float(e.expert_steps), e.get(metric)) for e in res.evaluations if not math.isnan(e.get(metric))]


# ---------------------------------------------------------------------------------------------
# learning curves


def curve_grid(curves: list[list[Point]]) -> tuple[np.ndarray, np.ndarray]:
    """Several seeds' curves on one grid of expert-involved steps: each curve is interpolated
    linearly onto the union of all evaluation points (held constant past its ends). Returns
    (grid, values: seeds x points); seeds without points are left out."""
    kept = [sorted(c) for c in curves if c]
    if not kept:
        return np.zeros(0), np.zeros((0, 0))
    grid = np.unique(np.concatenate([[p[0] for p in c] for c in kept]))
    ys = np.stack([np.interp(grid, [p[0] for p in c], [p[1] for p in c]) for c in kept])
    return grid, ys


def mean_curve(curves: list[list[Point]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean, std) over seeds of :func:`curve_grid`."""
    grid, ys = curve_grid(curves)
    if not grid.size:
        return grid, np.zeros(0), np.zeros(0)
    return grid, ys.mean(0), ys.std(0)


def steps_to_reach(curves: list[list[Point]], target: float) -> float:
    """Expert-involved steps at which the seed-mean curve first reaches ``target`` (NaN if never)."""
    grid, mean, _ = mean_curve(curves)
    hit = np.flatnonzero(mean >= target - 1e-12)
    return float(grid[hit[0]]) if hit.size else math.nan


# ---------------------------------------------------------------------------------------------
# statistics


@dataclass(frozen=True)
class MethodSummary:
    """One method's figures over its finished seeds."""

    name: str
    runs: int
    """Rows of this method (finished or not)."""
    finished: list[RunResult]
    cells: dict[str, Interval] = field(default_factory=dict)
    """Counters and test metrics: mean over seeds with a 95% interval."""
    reach: float = math.nan
    """Expert steps at which the seed-mean curve reaches the reference's success."""
    poi: Interval | None = None
    """P(focus > this method) on test success (None for the focus itself or without a focus)."""

    def cell(self, key: str) -> Interval:
        return self.cells.get(key, Interval.empty())


@dataclass(frozen=True)
class ExpertSummary:
    """The expert alone on the test episodes: usually one cached measurement shared by all runs."""

    cells: dict[str, Interval]
    measurements: int
    """Distinct measurements (1: every run shares the cached one, shown once)."""


@dataclass(frozen=True)
class Summary:
    methods: list[MethodSummary]
    expert: ExpertSummary | None
    reference: str | None
    reference_success: float
    focus: str | None
    reps: int

    @property
    def max_seeds(self) -> int:
        return max((len(m.finished) for m in self.methods), default=0)


def summarize(comp: Comparison, rows: list[RunRow], *, reps: int = DEFAULT_REPS) -> Summary:
    """Per-method intervals, curves, "steps to reach" and probabilities of improvement."""
    results = {id(r): r.result for r in rows if r.finished and r.result is not None}
    keys = (*COUNTERS, *sorted({k for res in results.values() for k in res.test}))
    methods = []
    for m in comp.methods:
        mine = [r for r in rows if r.method == m.name]
        if mine:
            done = [results[id(r)] for r in mine if id(r) in results]
            cells = intervals({k: [figure(res, k) for res in done] for k in keys}, reps=reps) if done else {}
            methods.append(MethodSummary(m.name, len(mine), done, cells))
    ref = next((s for s in methods if s.name == comp.reference), None)
    ref_success = ref.cell("success").mean if ref is not None and ref.finished else math.nan
    focus = next((s for s in methods if s.name == comp.focus), None)
    methods = [_with_comparisons(s, ref_success, focus, reps) for s in methods]
    return Summary(methods, _expert(rows, reps), comp.reference, ref_success, comp.focus, reps)


def _with_comparisons(s: MethodSummary, ref_success: float, focus: MethodSummary | None, reps: int) -> MethodSummary:
    reach = steps_to_reach([curve(r) for r in s.finished], ref_success) if ref_success > 0 else math.nan
    poi = None
    if focus is not None and focus.name != s.name and focus.finished and s.finished:
        poi = probability_of_improvement([figure(r, POI_METRIC) for r in focus.finished],
                                         [figure(r, POI_METRIC) for r in s.finished], reps=reps)
    return MethodSummary(s.name, s.runs, s.finished, s.cells, reach, poi)


def _expert(rows: list[RunRow], reps: int) -> ExpertSummary | None:
    measured = [r.result.expert_test for r in rows if r.finished and r.result is not None and r.result.expert_test]
    if not measured:
        return None
    means = [{k: v.mean for k, v in m.items() if k in TEST_METRICS} for m in measured]
    distinct = {tuple(sorted(d.items())) for d in means}
    if len(distinct) == 1:  # one measurement, cached and shared by every run: no spread to show
        return ExpertSummary({k: Interval(v, v, v, 1) for k, v in means[0].items()}, 1)
    keys = sorted({k for d in means for k in d})
    return ExpertSummary(intervals({k: [d.get(k, math.nan) for d in means] for k in keys}, reps=reps), len(distinct))


# ---------------------------------------------------------------------------------------------
# the table


def fmt_number(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def fmt_steps(x: float) -> str:
    """Step counts: ``1.9K`` from 1000 on, else whole numbers."""
    return f"{x / 1000:.1f}K" if abs(x) >= 1000 else f"{x:.0f}"


def fmt_interval(iv: Interval, fmt: Callable[[float], str]) -> str:
    """``mean [low, high]``; the value alone for one seed; ``-`` when nothing was measured."""
    if iv.n == 0 or math.isnan(iv.mean):
        return "-"
    if not iv.has_interval:
        return fmt(iv.mean)
    return f"{fmt(iv.mean)} [{fmt(iv.low)}, {fmt(iv.high)}]"


def _steps_unit(iv: Interval) -> Callable[[float], str]:
    """One unit for a whole cell: thousands once the mean reaches 1000."""
    return (lambda x: f"{x / 1000:.1f}K") if abs(iv.mean) >= 1000 else (lambda x: f"{x:.0f}")


DASH = "–"


@dataclass(frozen=True)
class Column:
    """A table column: its header, a method's cell, the expert row's cell."""

    header: str
    method: Callable[[MethodSummary], str]
    expert: Callable[[ExpertSummary], str] = lambda e: DASH
    metric: str | None = None
    """A test metric whose column is left out when no row reports it (route completion)."""


def _metric_column(header: str, metric: str, digits: int, optional: bool = False) -> Column:
    def fmt(x: float) -> str:
        return fmt_number(x, digits)

    return Column(header, lambda s: fmt_interval(s.cell(metric), fmt),
                  lambda e: fmt_interval(e.cells.get(metric, Interval.empty()), fmt), metric if optional else None)


def _steps_column(header: str, key: str) -> Column:
    return Column(header, lambda s: fmt_interval(s.cell(key), _steps_unit(s.cell(key))))


def _expert_steps_cell(s: MethodSummary) -> str:
    steps, rate = s.cell("expert_steps"), s.cell("takeover_rate")
    return f"{fmt_interval(steps, _steps_unit(steps))} ({fmt_interval(rate, lambda x: fmt_number(x, 2))})"


def _reach_cell(s: MethodSummary, reference_success: float) -> str:
    if not reference_success > 0:  # unknown, or a reference that never succeeds: nothing to reach
        return DASH
    return "not reached" if math.isnan(s.reach) else fmt_steps(s.reach)


def columns(summary: Summary) -> list[Column]:
    """The paper's Table 1 columns, then "steps to reach" the reference (if any) and the seeds."""
    cols = [
        Column("method", lambda s: s.name, lambda e: "expert (alone)"),
        Column("expert steps (take-over rate)", _expert_steps_cell),
        _steps_column("total steps", "total_steps"),
        Column("switches", lambda s: fmt_interval(s.cell("switches"), lambda x: fmt_number(x, 0))),
        _metric_column("test success", "success", 2),
        _metric_column("return", "return", 1, optional=True),
        _metric_column("route completion", "route_completion", 2, optional=True),
    ]
    if summary.reference is not None:
        rs = summary.reference_success
        shown = f"{rs:.2f}" if not math.isnan(rs) else "no finished run"
        cols.append(Column(f"expert steps to reach {summary.reference}'s success ({shown})",
                           lambda s: _reach_cell(s, rs)))
    cols.append(Column("seeds", lambda s: f"{len(s.finished)}/{s.runs}",
                       lambda e: "1 measurement" if e.measurements == 1 else str(e.measurements)))
    return cols


def _reported(col: Column, summary: Summary) -> bool:
    """A metric no run reports (route completion outside MetaDrive) is left out, not shown empty."""
    if col.metric is None:
        return True
    expert = summary.expert is not None and col.metric in summary.expert.cells
    return expert or any(s.cell(col.metric).n > 0 for s in summary.methods)


def make_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows: the expert alone (when measured), then each method with runs."""
    cols = [c for c in columns(summary) if _reported(c, summary)]
    body = []
    if summary.expert is not None:
        body.append([c.expert(summary.expert) for c in cols])
    for s in summary.methods:
        if s.finished:
            body.append([c.method(s) for c in cols])
        else:
            body.append([s.name, *["-"] * (len(cols) - 2), f"0/{s.runs}"])
    return [c.header for c in cols], body


def table_legend(summary: Summary) -> str:
    """What a cell holds, in one line."""
    from gatekit.compare.stats import rliable_version

    return (f"Cells: mean over the finished seeds [95% confidence interval: stratified bootstrap over seeds, "
            f"rliable {rliable_version()}, {summary.reps} resamples, percentile]; one seed: the value alone. "
            "Test figures: each run's final evaluation of the novice alone on held-out episodes. Expert steps = "
            "expert-involved steps; take-over rate = expert steps / total steps; \"steps to reach\" reads the "
            "seed-mean learning curve.")


def poi_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """The focus method's probability of improvement over each other method (test success)."""
    if summary.focus is None:
        return [], []
    focus = next((s for s in summary.methods if s.name == summary.focus), None)
    header = [f"{summary.focus} vs", f"P({summary.focus} > method) on test success [95% CI]", "seeds"]
    body = []
    for s in summary.methods:
        if s.name == summary.focus:
            continue
        cell = fmt_interval(s.poi, lambda x: fmt_number(x, 2)) if s.poi is not None else "-"
        n_focus = len(focus.finished) if focus is not None else 0
        body.append([s.name, cell, f"{n_focus} vs {len(s.finished)}"])
    return header, body
