"""Where a continuous PVP run stands at its end: does its critic rank the expert's action first,
and does the critic's best action lie near the expert's?

PVP's TD3 novice learns only through its critic: the proxy values push Q(s, a_h) to +1 and the
replaced novice action Q(s, a_n) to -1, and the actor climbs Q. A novice that does not learn can
fail in either: a critic that does not rank the expert's action above the novice's, or a critic
that ranks them but whose landscape over actions has its top far from the expert's action (the
actor then climbs towards the wrong place). This script loads a finished run's last checkpoint
and its records and prints, over the last ``--steps`` recorded steps:

* ``ranks a_h first``: on the expert-executed steps, the fraction with Q1(s, a_h) > Q1(s, a_n);
* ``best steering``: on every ``--every``-th step, the steering that maximises Q1 over a grid of
  41 values in [-1, 1] (throttle held at the actor's), its mean distance to the expert's
  steering, and the fraction of steps where it lies at the edge of the action space (|.| > 0.95);
* ``actor``: the mean distance of the actor's own steering to the expert's.

Box actions ``[steering, throttle]`` in ``[-1, 1]`` (MetaDrive's); the expert's action must be
known on these steps (PVP's person watches every step).

Usage (run folders, or method folders holding ``seed<k>`` run folders)::

    python bench/pvp_critic.py runs/compare_metadrive/runs/pvp/seed0 runs/compare_metadrive_strong/runs/pvp
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from metadrive_stalls import runs_using  # noqa: E402

from gatekit.learners.sb3.pvp import PVPLearner  # noqa: E402

GRID = np.linspace(-1.0, 1.0, 41, dtype=np.float32)


def load_learner(run: Path, recipe: dict[str, Any], obs_dim: int) -> PVPLearner:
    """The run's PVP learner with the weights of its last checkpoint."""
    args = {k: v for k, v in (recipe.get("learner") or {}).items() if k != "id"}
    learner = PVPLearner(observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                         action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                         seed=int(recipe.get("seed", 0)), **args)
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["learner"]
    learner.model.policy.load_state_dict(state["params"]["policy"])
    learner.model.policy.set_training_mode(False)
    return learner


@torch.no_grad()
def critic_figures(learner: PVPLearner, obs: np.ndarray, a_h: np.ndarray, a_n: np.ndarray,
                   intervened: np.ndarray, every: int) -> dict[str, float]:
    policy = learner.model.policy
    o = torch.as_tensor(obs)

    def q1(actions: torch.Tensor, states: torch.Tensor = o) -> np.ndarray:
        return policy.critic.q1_forward(states, actions).squeeze(1).numpy()

    pi = policy.actor(o)
    ranks = q1(torch.as_tensor(a_h))[intervened] > q1(torch.as_tensor(a_n))[intervened]
    rows = np.arange(0, len(obs), every)
    best = np.empty(len(rows), dtype=np.float32)
    for i, j in enumerate(rows):
        states = o[j:j + 1].repeat(len(GRID), 1)
        actions = torch.stack([torch.as_tensor(GRID), pi[j, 1].repeat(len(GRID))], 1)
        best[i] = GRID[int(np.argmax(q1(actions, states)))]
    return {"intervened": int(intervened.sum()),
            "ranks": float(ranks.mean()) if ranks.size else float("nan"),
            "best_gap": float(np.abs(best - a_h[rows, 0]).mean()),
            "edge": float((np.abs(best) > 0.95).mean()),
            "actor_gap": float(np.abs(pi.numpy()[:, 0] - a_h[:, 0]).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders, or folders of seed<k> run folders")
    parser.add_argument("--steps", type=int, default=3000, help="the last this many recorded steps (default 3000)")
    parser.add_argument("--every", type=int, default=10, help="grid search on every this-many-th step (default 10)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'run':44} {'steps':>6} {'expert steps':>12} {'ranks a_h first':>15} "
          f"{'best steering: gap':>18} {'at edge':>7} {'actor: gap':>10}")
    for run, recipe, r in runs_using(args.runs, "learner", "pvp"):
        window = slice(max(0, len(r["step"]) - args.steps), None)
        obs = r["obs"][window].astype(np.float32)
        a_h, a_n = r["expert_action"][window].astype(np.float32), r["novice_action"][window].astype(np.float32)
        if a_h.ndim != 2 or a_h.shape[1] != 2 or not np.isfinite(a_h).all():
            print(f"{run}: needs [steering, throttle] actions with the expert's known on every step; skipped")
            continue
        f = critic_figures(load_learner(run, recipe, obs.shape[1]), obs, a_h, a_n, r["intervened"][window].astype(bool),
                           args.every)
        name = f"{run.parent.name}/{run.name}"
        print(f"{name:44} {len(obs):>6} {f['intervened']:>12} {f['ranks']:>15.2f} {f['best_gap']:>18.3f} "
              f"{f['edge']:>7.2f} {f['actor_gap']:>10.3f}")


if __name__ == "__main__":
    main()
