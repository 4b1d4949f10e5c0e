"""The ceiling of the MetaDrive experiments: an expert alone on the held-out maps.

The expert is any registered one (``--expert``, default the shipped PPO ``metadrive-ppo``)
with its arguments (``--expert-arg key=value``, values read as YAML); ``--mode`` sets its
``deterministic`` argument. Prints, for the deterministic and/or the stochastic expert, the success rate, route
completion, return, crash rate (any collision during the episode) and out-of-road rate, each as
the mean and a 95% interval (Wilson for the rates, normal approximation otherwise), and the env's
speed with and without the expert queried at every step (physics only, no rendering).

Episode ``i`` resets the env with ``seed=i`` (held-out map ``1000 + i`` on the test split) and
the expert with ``seed=10_000 + i``, as gatekit's evaluation does.

Speed. The expert drives ``--steps-per-s-episodes`` episodes while both the env step and the
expert query are timed; then the recorded actions are replayed with no expert, so the
"physics only" figure runs the very same trajectories (the simulator is deterministic per
map). Rates are given over the steps alone and with the resets included.

Example:
    nice -n 10 .venv/bin/python bench/metadrive_ceiling.py --episodes 50 --mode both
    nice -n 10 .venv/bin/python bench/metadrive_ceiling.py --expert metadrive-idm --mode det \
        --expert-arg lane_change=false
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from gatekit.config import Component, build  # noqa: E402
from gatekit.envs.metadrive import make_metadrive_env  # noqa: E402
from gatekit.experts import EXPERTS  # noqa: E402

METRICS = ("success", "route_completion", "return", "crash", "out_of_road", "length")


RATES = ("success", "crash", "out_of_road")
Z95 = 1.959964


def interval(values: list[float], *, rate: bool = False) -> tuple[float, float, float]:
    """Mean and 95% interval of ``values``: normal approximation (as ``gatekit.evaluation``),
    or for 0/1 outcomes (``rate``) the Wilson score interval, which stays inside [0, 1]."""
    arr = np.asarray(values, dtype=np.float64)
    n, mean = arr.size, float(arr.mean())
    if rate:
        centre = (mean + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
        half = Z95 * math.sqrt(mean * (1 - mean) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
        return mean, centre - half, centre + half
    half = Z95 * (float(arr.std(ddof=1)) if n > 1 else 0.0) / math.sqrt(n)
    return mean, mean - half, mean + half


def run_expert(split: str, deterministic: bool, episodes: int, *, record: bool = False,
               progress: bool = True, expert_id: str = "metadrive-ppo", expert_args: dict[str, Any] | None = None) -> tuple[list[dict[str, float]], list[list[np.ndarray]], int, float, float]:
    """Run the expert for ``episodes`` episodes (seeds 0..N-1) and return per-episode metrics,
    the actions of each episode (if ``record``), the number of steps, the seconds spent in
    steps and expert queries, and the seconds spent in resets."""
    env = make_metadrive_env(split=split, seed=0)
    try:
        comp = Component(id=expert_id, kwargs={**(expert_args or {}), "deterministic": deterministic})
        expert = build(EXPERTS, comp, "expert", env=env)
        results, actions, steps, seconds, reset_seconds = [], [], 0, 0.0, 0.0
        for i in range(episodes):
            start = time.perf_counter()
            obs, info = env.reset(seed=i)
            reset_seconds += time.perf_counter() - start
            expert.reset(seed=10_000 + i)
            episode_actions, ret, length = [], 0.0, 0
            while True:
                start = time.perf_counter()
                action = expert.act(obs)
                obs, reward, terminated, truncated, info = env.step(action)
                seconds += time.perf_counter() - start
                if record:
                    episode_actions.append(action)
                ret += reward
                length += 1
                if terminated or truncated:
                    break
            steps += length
            actions.append(episode_actions)
            results.append({
                "success": float(info["is_success"]),
                "route_completion": float(info["route_completion"]),
                "return": ret,
                "crash": float(info["crash"]),
                "out_of_road": float(info["out_of_road"]),
                "length": float(length),
            })
            if progress:
                print(f"  [{'det' if deterministic else 'stoch'}] episode {i:3d} map {env.current_scenario}: "
                      f"success {int(info['is_success'])} route {info['route_completion']:.2f} "
                      f"crash {int(info['crash'])} out {int(info['out_of_road'])} steps {length}",
                      file=sys.stderr, flush=True)
        return results, actions, steps, seconds, reset_seconds
    finally:
        env.close()


def replay(split: str, actions: list[list[np.ndarray]]) -> tuple[int, float, float]:
    """Replay recorded actions on seeds 0..N-1 without the expert; return steps, step seconds
    and reset seconds."""
    env = make_metadrive_env(split=split, seed=0)
    try:
        steps, seconds, reset_seconds = 0, 0.0, 0.0
        for i, episode in enumerate(actions):
            start = time.perf_counter()
            env.reset(seed=i)
            reset_seconds += time.perf_counter() - start
            for action in episode:
                start = time.perf_counter()
                _, _, terminated, truncated, _ = env.step(action)
                seconds += time.perf_counter() - start
                steps += 1
                if terminated or truncated:
                    break
        return steps, seconds, reset_seconds
    finally:
        env.close()


def report(name: str, results: list[dict[str, float]]) -> None:
    print(f"{name} expert, {len(results)} episodes:")
    for key in METRICS:
        mean, low, high = interval([r[key] for r in results], rate=key in RATES)
        kind = "Wilson" if key in RATES else "normal"
        print(f"  {key:17s} {mean:9.3f}   95% interval [{low:.3f}, {high:.3f}] ({kind})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50, help="episodes per mode (seeds 0..N-1)")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--mode", choices=("det", "stoch", "both"), default="both")
    parser.add_argument("--steps-per-s-episodes", type=int, default=5,
                        help="episodes driven (then replayed) to time the env; 0 skips the speed test")
    parser.add_argument("--quiet", action="store_true", help="no per-episode lines on stderr")
    parser.add_argument("--expert", default="metadrive-ppo", help="a registered expert id (default: metadrive-ppo)")
    parser.add_argument("--expert-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="an argument of the expert (repeatable; the value is read as YAML)")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.steps_per_s_episodes < 0:
        parser.error("--episodes must be >= 1 and --steps-per-s-episodes >= 0")
    expert_args: dict[str, Any] = {}
    for item in args.expert_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--expert-arg: expected KEY=VALUE, got {item!r}")
        expert_args[key] = yaml.safe_load(value)
    if "deterministic" in expert_args:
        parser.error("--expert-arg: set deterministic with --mode det|stoch")
    which = {"expert_id": args.expert, "expert_args": expert_args}

    modes = {"det": [True], "stoch": [False], "both": [True, False]}[args.mode]
    print(f"MetaDrive expert ceiling: expert={args.expert} {expert_args}, split={args.split}, "
          f"episodes={args.episodes}, mode={args.mode}")
    for deterministic in modes:
        start = time.perf_counter()
        results, *_ = run_expert(args.split, deterministic, args.episodes, progress=not args.quiet, **which)
        report("deterministic" if deterministic else "stochastic", results)
        print(f"  (wall time {time.perf_counter() - start:.0f} s)", flush=True)

    if args.steps_per_s_episodes:
        n = args.steps_per_s_episodes
        _, actions, steps_e, secs_e, reset_e = run_expert(args.split, True, n, record=True, progress=False, **which)
        steps_p, secs_p, reset_p = replay(args.split, actions)
        print(f"speed over {n} deterministic-expert episodes ({steps_e} steps; fresh process, so resets "
              "include building each map once):")
        print("                                    steps only   incl. resets")
        print(f"  physics only (replayed actions)  {steps_p / secs_p:9.1f}    {steps_p / (secs_p + reset_p):9.1f}  env steps/s")
        print(f"  expert queried every step        {steps_e / secs_e:9.1f}    {steps_e / (secs_e + reset_e):9.1f}  env steps/s")
        print(f"  expert query alone               {1e3 * (secs_e / steps_e - secs_p / steps_p):9.2f} ms/step")


if __name__ == "__main__":
    main()
