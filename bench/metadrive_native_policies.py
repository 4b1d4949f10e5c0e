"""MetaDrive's own driving policies, run by MetaDrive itself, on the held-out maps.

A cross-check of gatekit's experts against the library's code paths: the env is built with
``agent_policy`` set to one of MetaDrive's policies, so the simulator drives the ego car with
it and ignores the action handed to ``env.step``. Policies:

* ``idm`` / ``idm-no-lane-change``: ``IDMPolicy`` (what ``metadrive-idm`` wraps).
* ``expert``: ``ExpertPolicy``, the wheel's PPO through MetaDrive's own numpy code (stochastic,
  sampling with numpy's global generator, seeded per episode here). At every step the
  deterministic mean of MetaDrive's code is also compared with gatekit's
  ``MetaDrivePPOExpert`` forward pass on the same state; the largest difference is printed.

Episode ``i`` runs held-out map ``1000 + i`` (``reset(seed=i)``), as gatekit's evaluation.

Example:
    nice -n 10 .venv/bin/python bench/metadrive_native_policies.py --policy idm --episodes 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.metadrive_ceiling import report  # noqa: E402
from gatekit.envs.metadrive import import_metadrive, make_metadrive_env  # noqa: E402


def policy_class(name: str) -> Any:
    import_metadrive()
    from metadrive.policy.expert_policy import ExpertPolicy
    from metadrive.policy.idm_policy import IDMPolicy

    class IDMNoLaneChange(IDMPolicy):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.enable_lane_change = False

    return {"idm": IDMPolicy, "idm-no-lane-change": IDMNoLaneChange, "expert": ExpertPolicy}[name]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", choices=("idm", "idm-no-lane-change", "expert"), required=True)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    env = make_metadrive_env(split=args.split, seed=0, extra_config={"agent_policy": policy_class(args.policy)})
    check = None
    if args.policy == "expert":
        from metadrive.examples.ppo_expert.numpy_expert import expert as metadrive_expert

        from gatekit.experts.metadrive import MetaDrivePPOExpert

        check = MetaDrivePPOExpert(env=env, deterministic=True)
    results, max_diff, checked = [], 0.0, 0
    start = time.perf_counter()
    try:
        for i in range(args.episodes):
            env.reset(seed=i)
            np.random.seed(10_000 + i)  # ExpertPolicy samples with numpy's global generator
            ret, length = 0.0, 0
            while True:
                if check is not None:
                    vehicle = next(iter(env.unwrapped.agents.values()))
                    ours = check.distribution()[0]
                    state = np.random.get_state()
                    theirs = np.asarray(metadrive_expert(vehicle, deterministic=True), dtype=np.float64)
                    np.random.set_state(state)
                    max_diff = max(max_diff, float(np.max(np.abs(ours - theirs))))
                    checked += 1
                _, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
                ret += reward
                length += 1
                if terminated or truncated:
                    break
            results.append({"success": float(info["is_success"]), "route_completion": float(info["route_completion"]),
                            "return": ret, "crash": float(info["crash"]), "out_of_road": float(info["out_of_road"]),
                            "length": float(length)})
            if not args.quiet:
                print(f"  [{args.policy}] episode {i:3d} map {env.current_scenario}: success {int(info['is_success'])} "
                      f"route {info['route_completion']:.2f} crash {int(info['crash'])} out {int(info['out_of_road'])} "
                      f"steps {length}", file=sys.stderr, flush=True)
    finally:
        env.close()
    print(f"MetaDrive's own {args.policy} policy, split={args.split}:")
    report(args.policy, results)
    print(f"  (wall time {time.perf_counter() - start:.0f} s)")
    if check is not None:
        print(f"  gatekit's PPO forward pass vs MetaDrive's (deterministic mean): max |diff| {max_diff:.3g} "
              f"over {checked} steps")


if __name__ == "__main__":
    main()
