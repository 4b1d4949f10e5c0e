"""The MiniGrid ceiling: the shortest-path planner alone on the held-out layouts, and env speed.

For each env, episode ``i`` resets the test split with ``seed=i`` (as gatekit's evaluation
does) and the planner acts alone. Printed per env:

* success rate, mean episode length and mean return, each with a 95% interval (normal
  approximation, as :mod:`gatekit.evaluation` reports), and a Wilson 95% interval for the
  success rate (the normal one collapses to zero width at 100%);
* env steps/s: replaying the planner's recorded actions (the env alone, same episodes), with
  the planner choosing every action, and with a uniformly random novice acting while the
  planner is queried every step (a gate that asks the expert each step; the novice's detours,
  door toggles and key drops make the planner search again).

Usage:
    nice -n 10 python bench/minigrid_ceiling.py --episodes 200 --env all
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from gatekit.envs.minigrid import make_doorkey_env, make_fourrooms_env, make_multiroom_env
from gatekit.evaluation import Stat
from gatekit.experts.minigrid import MiniGridPlannerExpert

ENVS = {
    "multiroom": make_multiroom_env,
    "fourrooms": make_fourrooms_env,
    "doorkey": make_doorkey_env,
}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def planner_episodes(name: str, episodes: int) -> tuple[dict[str, list[float]], list[list[int]], float, int]:
    """Run the planner alone; return metrics, the actions taken, seconds and steps."""
    env = ENVS[name](split="test")
    expert = MiniGridPlannerExpert(env=env)
    metrics: dict[str, list[float]] = {"success": [], "length": [], "return": []}
    actions: list[list[int]] = []
    steps = 0
    start = time.perf_counter()
    for i in range(episodes):
        obs, _ = env.reset(seed=i)
        expert.reset(seed=10_000 + i)
        taken: list[int] = []
        ret = 0.0
        while True:
            action = expert.act(obs)
            taken.append(action)
            obs, reward, terminated, truncated, info = env.step(action)
            ret += float(reward)
            if terminated or truncated:
                break
        steps += len(taken)
        actions.append(taken)
        metrics["success"].append(float(info["is_success"]))
        metrics["length"].append(float(len(taken)))
        metrics["return"].append(ret)
    seconds = time.perf_counter() - start
    env.close()
    return metrics, actions, seconds, steps


def replay(name: str, actions: list[list[int]]) -> tuple[float, int]:
    """Step the same episodes with the recorded actions: the env's own cost."""
    env = ENVS[name](split="test")
    steps = 0
    start = time.perf_counter()
    for i, taken in enumerate(actions):
        env.reset(seed=i)
        for action in taken:
            env.step(action)
        steps += len(taken)
    seconds = time.perf_counter() - start
    env.close()
    return seconds, steps


def random_novice(name: str, episodes: int, *, query: bool) -> tuple[float, int]:
    """A uniformly random novice acts; with ``query`` the planner is asked every step."""
    env = ENVS[name](split="test")
    expert = MiniGridPlannerExpert(env=env)
    rng = np.random.default_rng(0)
    steps = 0
    start = time.perf_counter()
    for i in range(episodes):
        obs, _ = env.reset(seed=i)
        while True:
            if query:
                expert.act(obs)
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(7)))
            steps += 1
            if terminated or truncated:
                break
    seconds = time.perf_counter() - start
    env.close()
    return seconds, steps


def report(name: str, episodes: int) -> None:
    metrics, actions, t_plan, n_plan = planner_episodes(name, episodes)
    t_env, n_env = replay(name, actions)
    # Random-novice episodes run to the time limit: a quarter of the episodes is plenty.
    novice_eps = max(1, episodes // 4)
    t_rand, n_rand = random_novice(name, novice_eps, query=False)
    t_rq, n_rq = random_novice(name, novice_eps, query=True)
    succ = Stat.of(metrics["success"])
    length = Stat.of(metrics["length"])
    ret = Stat.of(metrics["return"])
    low, high = wilson(int(sum(metrics["success"])), len(metrics["success"]))
    print(f"== {name} (test split, seeds 0..{episodes - 1}, planner alone)")
    print(f"  success  {succ.mean:.3f} +- {succ.ci95:.3f}   (Wilson 95%: [{low:.3f}, {high:.3f}])")
    print(f"  length   {length.mean:.2f} +- {length.ci95:.2f} steps")
    print(f"  return   {ret.mean:.4f} +- {ret.ci95:.4f}")
    print(f"  steps/s  env alone (replayed actions)       {n_env / t_env:9.0f}")
    print(f"  steps/s  planner acting                     {n_plan / t_plan:9.0f}")
    print(f"  steps/s  random novice                      {n_rand / t_rand:9.0f}   ({novice_eps} episodes)")
    print(f"  steps/s  random novice + planner queried    {n_rq / t_rq:9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="test episodes per env (seeds 0..N-1)")
    parser.add_argument("--env", choices=[*ENVS, "all"], default="all")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    for name in ENVS if args.env == "all" else [args.env]:
        report(name, args.episodes)


if __name__ == "__main__":
    main()
