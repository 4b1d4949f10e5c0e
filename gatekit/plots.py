"""PNG plots of a run folder (matplotlib, headless)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend (imported on first use: plots are optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_rate_plot(fig: Any, ax: Any, path: Path, *, xlabel: str, ylabel: str, title: str,
                   legend: bool = True, handles: list[Any] | None = None) -> Path:
    """Label a plot of a rate or a success fraction (y in [0, 1]), write it as PNG, close it.

    With ``handles`` (legend entries), the legend goes to the right of the axes, where it hides
    no line: comparisons draw many methods, several of them often on top of each other at 0.
    """
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title, fontsize=10 if "\n" not in title else 8)
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    elif legend and any(not str(line.get_label()).startswith("_") for line in ax.lines):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight" if handles else None)
    pyplot().close(fig)
    return path


def run_title(res: Any) -> str:
    """What a run's plots show: recipe, seed, gate, learner, env and expert (with its file)."""
    files = (res.provenance.get("expert") or {}).get("files") or []
    expert = res.expert + (f" ({Path(files[0]['path']).name})" if files else "")
    return f"{res.recipe} s{res.seed}: {res.criterion} gate, {res.learner} learner; {res.env}, expert {expert}"


def plot_run(run_dir: Path) -> list[Path]:
    """Write ``takeover_rate.png`` and ``success_vs_expert_steps.png`` into ``run_dir``.

    The success plot marks the periodic evaluations (with their episode count), the final one
    (its own marker and count) and the expert's own success on the same episodes (a line)."""
    plt = pyplot()
    written = []
    res = None
    if (run_dir / "results.json").is_file():
        from gatekit.runs.results import RunResult

        res = RunResult.read(run_dir)
    subtitle = f"\n{run_title(res)}" if res is not None else ""
    prog = run_dir / "progress.csv"
    if prog.is_file():
        rows = list(csv.DictReader(prog.open()))
        if rows:
            steps = [int(r["step"]) for r in rows]
            rate = [float(r["takeover_rate"]) for r in rows]
            k = max(1, len(rate) // 10)
            smooth = [sum(rate[max(0, i - k + 1): i + 1]) / len(rate[max(0, i - k + 1): i + 1]) for i in range(len(rate))]
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.plot(steps, rate, ".", alpha=0.35, label="per episode")
            ax.plot(steps, smooth, "-", label=f"moving mean ({k} episodes)")
            written.append(save_rate_plot(fig, ax, run_dir / "takeover_rate.png", xlabel="env steps",
                                          ylabel="take-over rate", title=f"Take-over rate during training{subtitle}"))
    if res is not None and res.evaluations:
        evals = res.evaluations
        fig, ax = plt.subplots(figsize=(6, 3.8))
        xs, ys = [e.expert_steps for e in evals], [e.get("success") for e in evals]
        ax.plot(xs, ys, "-", color="tab:blue", alpha=0.5)
        periodic = [e for e in evals if not e.final]
        if periodic:
            n = sorted({e.episodes for e in periodic if e.episodes})
            ax.plot([e.expert_steps for e in periodic], [e.get("success") for e in periodic], "o", color="tab:blue",
                    label=f"novice, periodic ({'/'.join(map(str, n))} episodes)" if n else "novice, periodic")
        for e in evals:
            if e.final:
                ax.plot([e.expert_steps], [e.get("success")], "*", markersize=14, color="tab:red",
                        label=f"novice, final ({e.episodes} episodes)" if e.episodes else "novice, final")
        expert = res.expert_test.get("success")
        if expert is not None:
            ax.axhline(expert.mean, color="tab:green", linestyle="--", label=f"expert alone ({expert.n} episodes)")
        written.append(save_rate_plot(fig, ax, run_dir / "success_vs_expert_steps.png",
                                      xlabel="expert-involved steps", ylabel="test success",
                                      title=f"Held-out success vs expert-involved steps{subtitle}"))
    return written
