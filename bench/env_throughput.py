"""Env steps per second of a recipe's acting loop with 1 env and with N envs (``env.n_envs``).

The run's own components are built as ``gatekit train`` builds them (:class:`gatekit.runs.loop.Run`:
the env(s), each env's expert, the criterion, the novice, an in-memory record store) and the
loop's acting part is timed: the novice acts on every env's observation, the gate decides
(one ``decide_batch`` for the batch), the envs step (in parallel worker processes when
``n_envs > 1``), the records are stored, ended episodes reset. Nothing trains: the novice is the
untrained network and the gate is made ready as ``bench/gate_overhead.py`` makes it (AIM: its
thresholds set so that both the novice and the expert act), the same for every N.

Wall time over ``--steps`` env steps (after ``--warmup`` steps that start the workers and the
first episodes), so the figure includes what parallel envs are for: a second core stepping
the second simulator. The ratio N envs / 1 env is printed with the machine's load average.

Example:
    nice -n 10 .venv/bin/python bench/env_throughput.py --envs 1,2 --steps 1500
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def measure(recipe_path: str, n_envs: int, steps: int, warmup: int, overrides: list[str]) -> dict[str, float]:
    recipe = load_recipe(recipe_path, [*overrides, f"env.n_envs={n_envs}", "budget.warmup_steps=0"])
    run = Run(recipe, Path("."))
    run.build(records=False)
    envs = run.envs
    try:
        ready_gate(run.criterion, run.store.observation_space, run.store.action_space)
        for i in range(envs.n):
            envs.reset(i, seed=episode_seed(recipe.seed, envs.next_episode))
        t0 = c0 = 0.0
        while envs.totals.steps < warmup + steps:
            if t0 == 0.0 and envs.totals.steps >= warmup:
                t0, c0, start = time.perf_counter(), time.process_time(), envs.totals.steps
            for out in envs.step({i: run.learner.act(envs.obs(i)) for i in range(envs.n)}):
                if out.terminated or out.truncated:
                    envs.reset(out.env, seed=episode_seed(recipe.seed, envs.next_episode))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        done = envs.totals.steps - start
        return {"steps": done, "wall": wall, "steps_per_s": done / wall, "main_cpu_ms_per_step": cpu / done * 1e3,
                "takeover_rate": envs.totals.takeover_rate}
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
    args = p.parse_args()
    torch.set_num_threads(1)
    counts = [int(x) for x in args.envs.split(",")]
    print(f"{Path(args.recipe).name}: acting loop (novice, gate, envs, records; no training), wall time, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'envs':>4} {'steps':>6} {'wall s':>7} {'steps/s':>8} {'ratio':>6} {'main cpu ms/step':>16} {'take-over':>9} {'load':>5}")
    base = None
    for n in counts:
        m = measure(args.recipe, n, args.steps, args.warmup, args.overrides)
        base = base or m["steps_per_s"]
        print(f"{n:>4} {m['steps']:>6} {m['wall']:>7.1f} {m['steps_per_s']:>8.1f} {m['steps_per_s'] / base:>6.2f} "
              f"{m['main_cpu_ms_per_step']:>16.2f} {m['takeover_rate']:>9.2f} {os.getloadavg()[0]:>5.1f}")


if __name__ == "__main__":
    main()
