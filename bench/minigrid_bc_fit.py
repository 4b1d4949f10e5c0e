"""Does the BC novice fit its own labels on MiniGrid? Train accuracy under the recipes' schedule.

The MiniGrid baselines with a BC novice (HG-, Ensemble-, Thrifty-DAgger) first used AIM's
MetaDrive BC settings: lr 1e-4, a first fit of 200 iterations x 5 Adam steps, then 25 x 5 every
25 new labels. HG-DAgger then ended at 0.00 test success with ~800 labels. This bench replays
labels in the order a run collected them, with that schedule, at each learning rate given, and
prints the novice's accuracy on its own labels after the first fit and after the last one. A
novice that cannot reproduce the labels it was trained on is underfit, whatever its gate.

Labels come from a finished run's record log (``--run``: its expert take-overs, in order, as
the run's learner saw them) or, by default, from the planner driving the training layouts.

Usage:
    nice -n 10 python bench/minigrid_bc_fit.py --labels 800 --lr 1e-4 --lr 1e-3
    nice -n 10 python bench/minigrid_bc_fit.py --run runs/hg_minigrid-s0-... --lr 1e-4 --lr 1e-3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from gatekit.learners.bc import BCTrainer
from gatekit.nets import Actor, as_action_tensor, as_obs_tensor

FIRST, LATER, EVERY, STEPS, WARMUP = 200, 25, 25, 5, 400  # the recipes' schedule (hg_minigrid.yaml)


def planner_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, object]:
    """``n`` (obs, planner action) pairs from the planner driving the training layouts."""
    from gatekit.envs.minigrid import make_multiroom_env
    from gatekit.experts.minigrid import MiniGridPlannerExpert

    env = make_multiroom_env(split="train")
    expert = MiniGridPlannerExpert(env=env)
    obs_list, acts = [], []
    episode = 0
    obs, _ = env.reset(seed=seed)
    expert.reset(seed=seed)
    while len(acts) < n:
        a = expert.act(obs)
        obs_list.append(np.asarray(obs).copy())
        acts.append(int(a))
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
            expert.reset(seed=seed + episode)
    return np.stack(obs_list), np.asarray(acts), env


def run_labels(run_dir: str) -> tuple[np.ndarray, np.ndarray, object]:
    """The expert take-overs of a finished run, in the order they were recorded."""
    from gatekit.config import build, load_recipe
    from gatekit.data import RecordStore
    from gatekit.envs import ENVS

    recipe = load_recipe(f"{run_dir}/recipe.yaml")
    env = build(ENVS, recipe.env, "env", split="train", seed=0)
    store = RecordStore.open(f"{run_dir}/records.gkr", env.observation_space, env.action_space)
    obs, acts = store.expert_labelled(source="intervened")
    store.close()
    return obs, acts, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a finished MiniGrid run folder whose take-over labels to replay")
    parser.add_argument("--labels", type=int, default=800, help="planner labels to collect (without --run)")
    parser.add_argument("--lr", type=float, action="append", help="learning rates to compare (repeat)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    obs, acts, env = run_labels(args.run) if args.run else planner_labels(args.labels, args.seed)
    o, a = as_obs_tensor(obs), as_action_tensor(acts, env.action_space)  # type: ignore[attr-defined]
    marks = [min(WARMUP, len(o))] + list(range(WARMUP + EVERY, len(o) + 1, EVERY))
    print(f"{len(o)} labels ({'run ' + args.run if args.run else 'planner, training layouts'}); "
          f"schedule: first fit {FIRST}x{STEPS} Adam steps at {marks[0]} labels, then {LATER}x{STEPS} every {EVERY}")
    for lr in args.lr or [1e-4, 1e-3]:
        torch.manual_seed(args.seed)
        actor = Actor(env.observation_space, env.action_space, hidden=[64])  # type: ignore[attr-defined]
        trainer = BCTrainer(actor, lr=lr, batch_size=1024, steps_per_iteration=STEPS, bootstrap=True,
                            rng=np.random.default_rng(args.seed))
        start = time.process_time()
        for i, m in enumerate(marks):
            trainer.fit(o[:m], a[:m], FIRST if i == 0 else LATER)
            if i == 0 or m == marks[-1]:
                with torch.no_grad():
                    acc = float((actor(o[:m]).argmax(-1) == a[:m]).float().mean())
                steps = (FIRST + LATER * i) * STEPS
                print(f"lr {lr:g}: {m} labels, {i + 1} fits, {steps} Adam steps: train accuracy {acc:.3f}")
        print(f"lr {lr:g}: {time.process_time() - start:.0f} s CPU")


if __name__ == "__main__":
    main()
