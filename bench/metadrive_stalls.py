"""Where a MetaDrive run's steps went: how long its car stood still, and whether anyone stepped in.

A gate that never fires on a stopped car lets a novice that has learnt to stop spend the run's
step budget standing still: no labels, no progress. This script reads finished runs' record logs
and prints, per run, the steps after the warm-up, the fraction of them with the car stopped
(under ``--kmh``, by default the env's own ``stop_limit`` threshold), the take-over rate while
stopped and while moving, and the longest stop (consecutive stopped steps).

The speed is read back from MetaDrive's own observation feature: index 3 of the 259-d
lidar-state vector, ``(speed_km_h + 1) / (max_speed_km_h + 1)`` with the default vehicle's 80 km/h
top speed (0.012 at rest).

Usage (one or more run folders, or method folders holding ``seed<k>`` run folders)::

    python bench/metadrive_stalls.py runs/compare_metadrive/runs/hg-dagger runs/compare_metadrive/runs/pvp
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekit.data.log import read_log  # noqa: E402
from gatekit.envs.metadrive import STOPPED_KMH  # noqa: E402

SPEED_INDEX = 3  # MetaDrive's LidarStateObservation: [left, right, heading diff, speed, ...]
MAX_SPEED_KMH = 80.0  # MetaDrive's default vehicle, which scales that feature


def longest_run(mask: np.ndarray) -> int:
    """The longest stretch of consecutive True values in ``mask``."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max()) if len(starts) else 0


def rate(took: np.ndarray, mask: np.ndarray) -> str:
    """The take-over rate over the steps in ``mask`` ("-" when there are none)."""
    return f"{took[mask].mean():.2f}" if mask.any() else "-"


def run_dirs(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "records.gkr").is_file():
            out.append(p)
        else:
            # seed<k> only: a folder set aside (seed<k>.changed-1, ...) is not one of the runs
            out.extend(sorted(d for d in p.glob("seed*") if d.name[4:].isdigit() and (d / "records.gkr").is_file()))
    return out


def runs_using(paths: list[str], section: str, component: str) -> Iterator[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """``(run folder, recipe, records)`` of each run among ``paths`` whose ``section``
    (``criterion``, ``learner``, ...) is ``component``; the others are named and skipped."""
    for run in run_dirs(paths):
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        found = (recipe.get(section) or {}).get("id")
        if found != component:
            print(f"{run}: its {section} is {found!r}, not {component!r}; skipped")
            continue
        yield run, recipe, read_log(run / "records.gkr")[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders, or folders of seed<k> run folders")
    parser.add_argument("--warmup", type=int, default=200, help="steps driven by the expert first (skipped)")
    parser.add_argument("--kmh", type=float, default=STOPPED_KMH, help="speed under which the car is stopped")
    args = parser.parse_args()
    dirs = run_dirs(args.runs)
    if not dirs:
        parser.error("no run folder with a records.gkr among the given paths")
    print(f"{'run':<40} {'steps':>6} {'stopped':>8} {'take-over stopped':>18} {'take-over moving':>17} {'longest stop':>13}")
    for d in dirs:
        _, cols, _ = read_log(d / "records.gkr")
        obs = np.asarray(cols["obs"])[args.warmup:]
        if obs.ndim != 2 or obs.shape[1] <= SPEED_INDEX:
            print(f"{str(d):<40} not a MetaDrive lidar-state run (observation shape {obs.shape[1:]})")
            continue
        stopped = obs[:, SPEED_INDEX] < (args.kmh + 1.0) / (MAX_SPEED_KMH + 1.0)
        took = np.asarray(cols["intervened"])[args.warmup:].astype(bool)
        name = f"{d.parent.name}/{d.name}"
        print(f"{name:<40} {len(obs):>6} {stopped.mean():>8.2f} {rate(took, stopped):>18} {rate(took, ~stopped):>17} "
              f"{longest_run(stopped):>13}")


if __name__ == "__main__":
    main()
