"""How often a gate asked for the expert where the novice was wrong: a gate's precision, from records.

A robot gate's expert steps are worth most where the novice would have erred: there a label
corrects it. Where the novice's action was the expert's own, the label only confirms what it
already does. This script reads finished runs' record logs and prints, per run, over the steps
after the warm-up:

* ``switches``: the gate handing control to the expert, and ``wrong at switch``: the fraction of
  them where the novice's action differed from the expert's (the gate's precision);
* ``corrections`` / ``expert steps``: expert-executed steps where the novice would have done
  otherwise, out of all expert-executed steps;
* ``novice wrong``: where the expert's action is known on every step after the warm-up
  (human-gated runs, where the person watches, and Ensemble-DAgger, which asks on every step),
  the fraction of those steps where the novice's action differed from the expert's: about the
  precision a gate that picked its steps at random would reach.

"Differed": another action for Discrete action spaces; for Box ones a mean squared gap over the
action dimensions above ``--gap`` (the figure needs it).

Usage (run folders, or method folders holding ``seed<k>`` run folders)::

    python bench/gate_precision.py runs/compare_minigrid/runs/aim runs/compare_minigrid/runs/pvp
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from metadrive_stalls import run_dirs  # noqa: E402

from gatekit.data.log import read_log  # noqa: E402


def differs(novice: np.ndarray, expert: np.ndarray, gap: float | None) -> np.ndarray | None:
    """Per step: did the novice's action differ from the expert's (None: Box actions, no ``gap``)."""
    if novice.ndim == 1:
        return novice != expert
    if gap is None:
        return None
    return ((novice.astype(np.float64) - expert) ** 2).reshape(len(novice), -1).mean(1) > gap


def frac(mask: np.ndarray, within: np.ndarray) -> str:
    return f"{mask[within].mean():.2f}" if within.any() else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders, or folders of seed<k> run folders")
    parser.add_argument("--gap", type=float, default=None,
                        help="Box actions: the mean squared gap above which the novice's action counts as wrong")
    args = parser.parse_args()
    print(f"{'run':44} {'switches':>8} {'wrong at switch':>15} {'corrections / expert steps':>26} "
          f"{'novice wrong':>12} {'test success':>12}")
    for run in run_dirs(args.runs):
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        warmup = int((recipe.get("budget") or {}).get("warmup_steps") or 0)
        r = read_log(run / "records.gkr")[1]
        after = r["step"] >= warmup
        wrong = differs(r["novice_action"], r["expert_action"], args.gap)
        results = run / "results.json"
        success = json.loads(results.read_text())["test_success"]["mean"] if results.is_file() else float("nan")
        name = f"{run.parent.name}/{run.name}"
        switched, expert = r["switched"] & after & r["intervened"], r["intervened"] & after
        if wrong is None:
            print(f"{name:44} {int(switched.sum()):>8} {'(--gap)':>15} {'(--gap)':>26} {'(--gap)':>12} {success:>12.2f}")
            continue
        watched = after.any() and bool(r["expert_queried"][after].all())
        corrections = f"{int((wrong & expert).sum())} / {int(expert.sum())}"
        print(f"{name:44} {int(switched.sum()):>8} {frac(wrong, switched):>15} {corrections:>26} "
              f"{frac(wrong, after) if watched else '-':>12} {success:>12.2f}")


if __name__ == "__main__":
    main()
