"""Why a Thrifty-DAgger run keeps its expert in control: its hand-back tests, read at the end of
a finished run.

Thrifty-DAgger hands control back to the novice only where both tests pass: the novice's action
is close to the expert's (squared gap below the mean discrepancy on the training labels) *and*
its task-success critic rates the novice's action above the median of its recent estimates
(``Q_risk(s, a_n) > q_median``). This script loads a run's last checkpoint (the gate's networks
and thresholds as they ended) and its records and prints, over the expert-executed steps after
the warm-up:

* ``successes``: episodes of the run that ended in success (what ``Q_risk`` can learn from);
* ``gap passes`` / ``Q passes`` / ``both``: the fraction of those steps where each test passes;
* ``Q_risk p5-p95``: the spread of ``Q_risk(s, a_n)`` over every step after the warm-up (a
  critic that learned nothing stays near its initial 0.5 everywhere), and ``q_median``.

Box actions in ``[-1, 1]`` (MetaDrive's). The checkpoint is the run's last: for a run whose gate
retrained after the steps read here, the tests are those of its final networks.

Usage (run folders, or method folders holding ``seed<k>`` run folders)::

    python bench/thrifty_handback.py runs/compare_metadrive/runs/thrifty-dagger
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from metadrive_stalls import runs_using  # noqa: E402

from gatekit.criteria.distances import squared_gaps  # noqa: E402
from gatekit.criteria.thrifty import ThriftyCriterion  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders, or folders of seed<k> run folders")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'run':48} {'successes':>9} {'expert steps':>12} {'gap passes':>10} {'Q passes':>8} {'both':>5} "
          f"{'Q_risk p5-p95':>14} {'q_median':>8}")
    for run, recipe, r in runs_using(args.runs, "criterion", "thrifty"):
        crit = recipe["criterion"]
        if r["novice_action"].ndim != 2:
            print(f"{run}: needs Box actions; skipped")
            continue
        gate = ThriftyCriterion(**{k: v for k, v in crit.items() if k != "id"})
        gate.bind(gym.spaces.Box(-np.inf, np.inf, r["obs"].shape[1:], np.float32),
                  gym.spaces.Box(-1.0, 1.0, r["novice_action"].shape[1:], np.float32))
        gate.load_state_dict(torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["criterion"])
        warmup = int((recipe.get("budget") or {}).get("warmup_steps") or 0)
        after = r["step"] >= warmup
        expert = after & r["intervened"].astype(bool)
        successes = int(np.count_nonzero(r["terminated"] & (r["reward"] > gate.success_reward_above)))
        gap = squared_gaps(r["novice_action"][expert], r["expert_action"][expert], gate.action_space)
        q_expert = gate.success_prob(r["obs"][expert], r["novice_action"][expert])
        q_all = gate.success_prob(r["obs"][after], r["novice_action"][after])
        gap_ok, q_ok = gap < gate.gap_threshold, q_expert > gate.q_median
        name = f"{run.parent.name}/{run.name}"
        spread = f"{np.quantile(q_all, 0.05):.3f}-{np.quantile(q_all, 0.95):.3f}"
        print(f"{name:48} {successes:>9} {int(expert.sum()):>12} {gap_ok.mean():>10.2f} {q_ok.mean():>8.2f} "
              f"{(gap_ok & q_ok).mean():>5.2f} {spread:>14} {gate.q_median:>8.3f}")


if __name__ == "__main__":
    main()
