"""Env steps per second of a recipe's acting loop with 1 env and with N envs (``env.n_envs``).

The run's own components are built as ``gatekit train`` builds them (:class:`gatekit.runs.loop.Run`:
the env(s), each env's expert, the criterion, the novice, an in-memory record store) and the
loop's acting part is timed: the novice acts on every env's observation (one batch), the gate decides
(one ``decide_batch`` for the batch), the envs step (with ``n_envs > 1``: env 0 in this process
while the others step in worker processes), the records are stored, ended episodes reset. Nothing trains: the novice is the
untrained network and the gate is made ready as ``bench/gate_overhead.py`` makes it (AIM: its
thresholds set so that both the novice and the expert act), the same for every N.

Wall time over ``--steps`` env steps (after ``--warmup`` steps that start the workers and the
first episodes), so the figure includes what parallel envs are for: a second core stepping
the second simulator. The ratio N envs / 1 env is printed with the machine's load average,
for the whole loop and for its steps alone (the time spent resetting ended episodes left out:
an untrained novice ends an episode every ~200 MetaDrive steps, a trained one every ~800, and a
MetaDrive reset takes ~0.2 s, which no other env can use while the batch waits for it).
With ``--all-in-workers`` each N > 1 is also measured with every env in a worker process and
this process only waiting (the layout before env 0 moved here), for the comparison.

Example:
    nice -n 10 .venv/bin/python bench/env_throughput.py --envs 1,2 --steps 1500
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gatekit.runs.loop as loop  # noqa: E402
from gatekit.config import load_recipe  # noqa: E402
from gatekit.runs.loop import Run, episode_seed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def ready_gate(crit: Any, obs_space: Any, act_space: Any) -> None:
    """Make a learned gate decide as a trained one would (AIM: eps, and beta at Q's 90th
    percentile on random pairs, so that the expert takes over on about a tenth of the steps)."""
    if crit.name == "aim":
        crit.ready, crit.eps = True, 0.05
        rng = np.random.default_rng(0)
        obs = rng.uniform(-1, 1, (256, *obs_space.shape)).astype(np.float32)
        acts = np.stack([np.asarray(act_space.sample()) for _ in range(256)])
        crit.beta = float(np.quantile(crit.q_values(obs, acts), 0.9))


def measure(recipe_path: str, n_envs: int, steps: int, warmup: int, overrides: list[str], *,
            here: bool = True) -> dict[str, float]:
    recipe = load_recipe(recipe_path, [*overrides, f"env.n_envs={n_envs}", "budget.warmup_steps=0"])
    run = Run(recipe, Path("."))
    workers = loop.EnvWorkers
    loop.EnvWorkers = functools.partial(workers, here=here)  # type: ignore[misc,assignment]
    try:
        run.build(records=False)
    finally:
        loop.EnvWorkers = workers  # type: ignore[misc]
    envs = run.envs
    try:
        ready_gate(run.criterion, run.store.observation_space, run.store.action_space)
        for i in range(envs.n):
            envs.reset(i, seed=episode_seed(recipe.seed, envs.next_episode))
        t0 = c0 = resetting = 0.0
        resets = 0
        while envs.totals.steps < warmup + steps:
            if t0 == 0.0 and envs.totals.steps >= warmup:
                t0, c0, start, resetting, resets = time.perf_counter(), time.process_time(), envs.totals.steps, 0.0, 0
            actions = run.learner.act_batch([envs.obs(i) for i in range(envs.n)])  # as the run loop does
            for out in envs.step(dict(enumerate(actions))):
                if out.terminated or out.truncated:
                    t = time.perf_counter()
                    envs.reset(out.env, seed=episode_seed(recipe.seed, envs.next_episode))
                    resetting += time.perf_counter() - t
                    resets += 1
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        done = envs.totals.steps - start
        return {"steps": done, "wall": wall, "steps_per_s": done / wall, "main_cpu_ms_per_step": cpu / done * 1e3,
                "takeover_rate": envs.totals.takeover_rate, "resets": resets, "reset_s": resetting,
                "stepping_per_s": done / (wall - resetting)}
    finally:
        run.store.close()
        envs.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "aim_metadrive.yaml"))
    p.add_argument("--envs", default="1,2", help="env counts to measure, the first is the baseline")
    p.add_argument("--steps", type=int, default=1500, help="env steps timed per env count")
    p.add_argument("--warmup", type=int, default=100, help="env steps before the timing starts")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--all-in-workers", action="store_true",
                   help="also measure each N > 1 with every env in a worker process (the old layout)")
    args = p.parse_args()
    torch.set_num_threads(1)
    counts = [int(x) for x in args.envs.split(",")]
    print(f"{Path(args.recipe).name}: acting loop (novice, gate, envs, records; no training), wall time, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'envs':>4} {'layout':>12} {'steps':>6} {'wall s':>7} {'steps/s':>8} {'ratio':>6} {'resets':>6} "
          f"{'reset s':>7} {'stepping/s':>10} {'ratio':>6} {'main cpu ms/step':>16} {'take-over':>9} {'load':>5}")
    base = base_stepping = None
    for n in counts:
        layouts = [True, False] if n > 1 and args.all_in_workers else [True]
        for here in layouts:
            m = measure(args.recipe, n, args.steps, args.warmup, args.overrides, here=here)
            base = base or m["steps_per_s"]
            base_stepping = base_stepping or m["stepping_per_s"]
            layout = "in process" if n == 1 else ("env 0 here" if here else "all workers")
            print(f"{n:>4} {layout:>12} {m['steps']:>6} {m['wall']:>7.1f} {m['steps_per_s']:>8.1f} "
                  f"{m['steps_per_s'] / base:>6.2f} {m['resets']:>6} {m['reset_s']:>7.1f} {m['stepping_per_s']:>10.1f} "
                  f"{m['stepping_per_s'] / base_stepping:>6.2f} {m['main_cpu_ms_per_step']:>16.2f} "
                  f"{m['takeover_rate']:>9.2f} {os.getloadavg()[0]:>5.1f}")

if __name__ == "__main__":
    main()
