"""PNG plots of a run folder (matplotlib, headless)."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(run_dir: Path) -> list[Path]:
    """Write ``takeover_rate.png`` and ``success_vs_expert_steps.png`` into ``run_dir``."""
    plt = _plt()
    written = []
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
            ax.set_xlabel("env steps")
            ax.set_ylabel("take-over rate")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title("Take-over rate during training")
            ax.legend()
            fig.tight_layout()
            out = run_dir / "takeover_rate.png"
            fig.savefig(out, dpi=110)
            plt.close(fig)
            written.append(out)
    res = run_dir / "results.json"
    if res.is_file():
        evals = json.loads(res.read_text()).get("evaluations", [])
        if evals:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.plot([e["expert_steps"] for e in evals], [e.get("test_success", float("nan")) for e in evals], "o-")
            ax.set_xlabel("expert-involved steps")
            ax.set_ylabel("test success")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title("Held-out success vs expert-involved steps")
            fig.tight_layout()
            out = run_dir / "success_vs_expert_steps.png"
            fig.savefig(out, dpi=110)
            plt.close(fig)
            written.append(out)
    return written
