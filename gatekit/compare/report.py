"""What a comparison writes: ``results.csv``, ``table.md``, the plots, and a markdown page.

The page (``gatekit compare RECIPE --report PAGE``) is generated from the runs: a block per
comparison between two marker lines, holding the command, the run times, the table, the
probability-of-improvement table and the figures (copied next to the page, under
``figures/``). Everything outside the markers (an introduction, "differences from the paper,
and why") is written by hand and kept as it is when the block is regenerated.
"""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gatekit.compare.plan import PlannedRun
from gatekit.compare.spec import Comparison
from gatekit.compare.stats import curve_band
from gatekit.compare.summary import (
    COUNTERS,
    MethodSummary,
    RunRow,
    Summary,
    curve,
    curve_grid,
    make_table,
    poi_table,
    table_legend,
)
from gatekit.errors import GatekitError

SUCCESS_PLOT = "success_vs_expert_steps.png"
TAKEOVER_PLOT = "takeover_rate.png"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINESTYLES = ("-", "--", ":", "-.")
POI_LEGEND = ("P(A > B): the probability that a run of A ends with a higher test success than a run of B "
              "(ties count one half; 0.5: no difference), with its 95% stratified-bootstrap interval (rliable).")


# ---------------------------------------------------------------------------------------------
# results.csv and table.md


def csv_row(row: RunRow) -> dict[str, Any]:
    """One flat CSV row: counters, the final test means (``test_*``, ``expert_test_*``), status."""
    out: dict[str, Any] = {"method": row.method, "seed": row.seed, "status": row.status}
    res = row.result
    for k in (*COUNTERS, "wall_seconds"):
        out[k] = getattr(res, k) if res is not None else math.nan
    if res is not None:
        out.update({f"test_{k}": s.mean for k, s in sorted(res.test.items())})
        out.update({f"expert_test_{k}": s.mean for k, s in sorted(res.expert_test.items())})
    out["run_dir"] = str(row.run_dir)
    out["error"] = row.error
    return out


def write_csv(rows: list[RunRow], path: Path) -> Path:
    flat = [csv_row(r) for r in rows]
    keys = list(dict.fromkeys(k for row in flat for k in row))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for row in flat:
            w.writerow({k: row.get(k, "") for k in keys})
    return path


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in body)]


def tables_md(summary: Summary) -> list[str]:
    """The table, its legend, and the probability-of-improvement table (when there is a focus)."""
    lines = [*markdown_table(*make_table(summary)), "", table_legend(summary), ""]
    header, body = poi_table(summary)
    if body:
        lines += [*markdown_table(header, body), "", POI_LEGEND, ""]
    return lines


def write_table_md(comp: Comparison, summary: Summary, path: Path) -> Path:
    lines = [f"# {comp.name}", ""]
    if comp.description:
        lines += [comp.description, ""]
    path.write_text("\n".join([*lines, *tables_md(summary)]))
    return path


# ---------------------------------------------------------------------------------------------
# plots


@dataclass(frozen=True)
class Style:
    color: Any
    marker: str
    linestyle: Any


def styles(names: list[str]) -> dict[str, Style]:
    """A colour, marker and line style per method, the same in every plot, no two methods alike.

    The first ten methods get tab10's colours (solid lines); each further ten reuse the ten hues
    in tab20's other shade, with markers shifted and another line style, so that method i and
    method i + 10 differ in shade, marker and line."""
    from gatekit.plots import pyplot

    cmap = pyplot().get_cmap("tab20")  # tab20's even entries are tab10's colours
    out = {}
    for i, n in enumerate(names):
        hue, round_ = i % 10, i // 10
        out[n] = Style(cmap(2 * hue + round_ % 2), MARKERS[(hue + 3 * round_) % len(MARKERS)],
                       LINESTYLES[round_ % len(LINESTYLES)])
    return out


def _eval_episodes(runs: list[PlannedRun]) -> tuple[str, str]:
    def say(counts: set[int]) -> str:
        return f"{counts.pop()} episodes" if len(counts) == 1 else "episodes as each recipe says"

    return say({r.recipe.eval.episodes for r in runs}), say({r.recipe.eval.final_episodes for r in runs})


def _plot_method(ax: Any, s: MethodSummary, style: Style, reps: int) -> None:
    """Seed-mean curve with its shaded 95% band; every evaluation as a marker: hollow for the
    periodic ones, filled for the final one (more episodes)."""
    curves = [curve(r) for r in s.finished]
    grid, ys = curve_grid(curves)
    if not grid.size:
        return
    mean, low, high = curve_band(ys, reps=reps)
    ax.plot(grid, mean, linestyle=style.linestyle, color=style.color, lw=1.6, zorder=2)
    if grid.size > 1:
        ax.fill_between(grid, low, high, color=style.color, alpha=0.15, lw=0)
    elif len(s.finished) > 1:  # one point: the band is a bar
        ax.errorbar(grid, mean, yerr=[mean - low, high - mean], color=style.color, capsize=4, lw=1.2)
    for c in curves:
        if not c:
            continue
        *periodic, final = c
        if periodic:
            ax.scatter([p[0] for p in periodic], [p[1] for p in periodic], marker=style.marker, s=20,
                       facecolors="none", edgecolors=style.color, alpha=0.7, zorder=3)
        ax.scatter([final[0]], [final[1]], marker=style.marker, s=55, color=style.color, edgecolors="black",
                   linewidths=0.7, zorder=4)


def plot_success(comp: Comparison, summary: Summary, runs: list[PlannedRun], path: Path) -> Path:
    """Held-out success vs expert-involved steps: one curve per method, mean over seeds with a
    shaded 95% bootstrap band, every evaluation marked, the expert's own success as a line."""
    from matplotlib.lines import Line2D

    from gatekit.plots import pyplot, save_rate_plot

    fig, ax = pyplot().subplots(figsize=(7.5, 4.5))
    style = styles(comp.method_names())
    handles = []
    for s in summary.methods:
        if s.finished:
            _plot_method(ax, s, style[s.name], summary.reps)
            st = style[s.name]
            handles.append(Line2D([], [], color=st.color, marker=st.marker, linestyle=st.linestyle,
                                  label=f"{s.name} (n={len(s.finished)})"))
    expert = summary.expert.cells.get("success") if summary.expert is not None else None
    if expert is not None and not math.isnan(expert.mean):
        ax.axhline(expert.mean, color="black", linestyle=":", lw=1.2)
        handles.append(Line2D([], [], color="black", linestyle=":", label=f"expert alone ({expert.mean:.2f})"))
    periodic, final = _eval_episodes(runs)
    handles += [Line2D([], [], color="gray", marker="o", markerfacecolor="none", linestyle="none",
                       label=f"periodic evaluation ({periodic})"),
                Line2D([], [], color="gray", marker="o", markeredgecolor="black", linestyle="none",
                       label=f"final evaluation ({final})")]
    return save_rate_plot(fig, ax, path, xlabel="expert-involved steps", ylabel="held-out test success",
                          title=f"{comp.name}: held-out success (mean over seeds; shaded: 95% bootstrap CI)",
                          handles=handles)


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


def plot_takeover(comp: Comparison, summary: Summary, rows: list[RunRow], path: Path) -> Path:
    """Take-over rate over training (25 bins of env steps), mean over seeds, one line per method."""
    from matplotlib.lines import Line2D

    from gatekit.plots import pyplot, save_rate_plot

    fig, ax = pyplot().subplots(figsize=(7.5, 4.5))
    style = styles(comp.method_names())
    totals = [r.total_steps for s in summary.methods for r in s.finished]
    handles = []
    if totals:
        edges = np.linspace(0, max(totals), 26)
        centres = (edges[:-1] + edges[1:]) / 2
        for s in summary.methods:
            dirs = [r.run_dir for r in rows if r.method == s.name and r.finished]
            if not dirs:
                continue
            series = np.stack([_takeover_series(d, edges) for d in dirs])
            counts = (~np.isnan(series)).sum(0)
            mean = np.where(counts > 0, np.nansum(series, 0) / np.maximum(counts, 1), np.nan)
            valid = ~np.isnan(mean)
            st = style[s.name]
            ax.plot(centres[valid], mean[valid], linestyle=st.linestyle, marker=st.marker, ms=3, color=st.color)
            handles.append(Line2D([], [], color=st.color, marker=st.marker, linestyle=st.linestyle,
                                  label=f"{s.name} (n={len(dirs)})"))
    return save_rate_plot(fig, ax, path, xlabel="env steps", ylabel="take-over rate (expert steps / steps)",
                          title=f"{comp.name}: take-over rate during training (mean over seeds)", handles=handles)


def write_plots(comp: Comparison, summary: Summary, rows: list[RunRow], runs: list[PlannedRun], out: Path) -> list[Path]:
    return [plot_success(comp, summary, runs, out / SUCCESS_PLOT), plot_takeover(comp, summary, rows, out / TAKEOVER_PLOT)]


# ---------------------------------------------------------------------------------------------
# the markdown page


def markers(name: str) -> tuple[str, str]:
    """The two lines between which a comparison's generated block stands."""
    return (f"<!-- gatekit-report:begin {name} (generated by `gatekit compare --report`: edits inside are replaced) -->",
            f"<!-- gatekit-report:end {name} -->")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def duration(seconds: float) -> str:
    """``42 s``, ``12.5 min`` or ``3.2 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def wall_times_md(summary: Summary) -> list[str]:
    """Run time per method (``RunResult.wall_seconds``: each run's own time, runs overlap)."""
    body = []
    for s in summary.methods:
        w = [r.wall_seconds for r in s.finished]
        if w:
            body.append([s.name, str(len(w)), f"{_minutes(float(np.mean(w)))} ({_minutes(min(w))}-{_minutes(max(w))})",
                         _minutes(float(np.sum(w)))])
    if not body:
        return []
    total = sum(r.wall_seconds for s in summary.methods for r in s.finished)
    return [*markdown_table(["method", "finished runs", "minutes per run: mean (min-max)", "minutes in all"], body), "",
            f"Run time in all: {duration(total)}, the sum of each run's own wall time (`results.json`: `wall_seconds`); "
            "runs execute side by side (`--workers`), so the comparison takes less.", ""]


def resumed_md(summary: Summary) -> list[str]:
    """A line naming the finished runs that were resumed after an interruption (none: no line).

    A resumed run starts a new episode where it stopped, so it goes on differently from the
    same seed run without a stop: a fresh clone reproduces the table only without such runs."""
    names = [f"{s.name} seed {r.seed}" for s in summary.methods for r in s.finished if r.extra.get("resumed")]
    if not names:
        return []
    return [f"Resumed after an interruption: {', '.join(names)}. A run resumed during training goes on differently "
            "from an uninterrupted one, so a fresh start may not reproduce it to the digit (move its folder aside "
            "and run the command again to replace it).", ""]


def report_block(comp: Comparison, summary: Summary, *, command: str, figures: list[str]) -> str:
    """The generated block of one comparison (markers included)."""
    begin, end = markers(comp.name)
    seeds = sorted({r.seed for s in summary.methods for r in s.finished})
    # a third-level heading: the page's own (hand-written) sections hold the blocks
    lines = [begin, f"### {comp.name}" + (f": {comp.description}" if comp.description else ""), ""]
    lines += ["Generated from the runs by (finished runs are read, missing ones run first):", "", "```bash",
              command, "```", "",
              f"{sum(len(s.finished) for s in summary.methods)} finished runs "
              f"({len(summary.methods)} methods, seeds {', '.join(map(str, seeds)) or '-'}).", "",
              *wall_times_md(summary), *resumed_md(summary), *tables_md(summary)]
    for fig in figures:
        what = Path(fig).stem.removeprefix(f"{comp.name}_").replace("_", " ")
        lines += [f"![{comp.name}: {what}]({fig})", ""]
    lines.append(end)
    return "\n".join(lines)


def replace_block(text: str, name: str, block: str) -> str:
    """``text`` with the block of comparison ``name`` replaced (appended when it has none yet).

    Raises:
        GatekitError: the page holds a begin marker without its end marker (or twice).
    """
    begin, end = markers(name)
    head = begin.split(" (")[0]
    starts = [i for i, line in enumerate(text.splitlines()) if line.startswith(head + " (") or line == head]
    ends = [i for i, line in enumerate(text.splitlines()) if line == end]
    if not starts and not ends:
        return (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise GatekitError(f"report: the page has a broken '{name}' block (need one begin and one end marker, "
                           "in order); fix the marker lines or remove the block")
    lines = text.splitlines()
    return "\n".join([*lines[:starts[0]], block, *lines[ends[0] + 1:]]) + "\n"


def write_report(page: Path, comp: Comparison, summary: Summary, plots: list[Path], *, command: str) -> list[Path]:
    """Write (or update) the markdown ``page``: this comparison's block, figures under
    ``figures/`` next to it; the rest of the page is kept."""
    figures_dir = page.parent / "figures"
    try:
        figures_dir.mkdir(parents=True, exist_ok=True)
        copied = []
        for p in plots:
            dest = figures_dir / f"{comp.name}_{p.name}"
            shutil.copyfile(p, dest)
            copied.append(dest)
        old = page.read_text() if page.is_file() else ""
        block = report_block(comp, summary, command=command, figures=[f"figures/{d.name}" for d in copied])
        page.write_text(replace_block(old, comp.name, block))
    except OSError as exc:
        raise GatekitError(f"report: cannot write '{page}' ({exc.strerror}); pass another --report PAGE") from None
    return [page, *copied]
