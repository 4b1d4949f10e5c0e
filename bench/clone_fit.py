"""How well the novice's network can fit an expert's labels from the novice's own observation.

A novice that clones an expert can only be as good as the function from *its* observation to
the expert's action allows. This script reads finished runs' record logs, takes the
expert-labelled steps (the steps the expert acted on), splits them by episode into a training
part and a held-out part (whole episodes held out, so neighbouring steps do not leak), trains
the novice's actor architecture (default ``[256, 256]``, ReLU, ``tanh`` output, MSE, Adam) far
longer than a run does, and prints per action dimension the held-out mean squared error and
R² (1 − MSE / variance of the held-out labels): near 1, the labels are a function of what the
novice sees; near 0, the novice cannot predict them better than their mean.

``--labels queried`` takes every step the expert was asked about instead, labelled with the
expert's action (a gate that asks on every step, such as Ensemble-DAgger, labels the novice's
own steps too); ``--max-train N`` trains on at most N of the training part's labels (drawn at
random, the held-out part unchanged), so that label sources of different sizes can be compared
at one count, and one source at several.

Usage (one or more run folders)::

    python bench/clone_fit.py runs/compare_metadrive/runs/aim/seed0 RUN_WITH_OTHER_EXPERT
    python bench/clone_fit.py ENSEMBLE_RUN --labels queried --max-train 1600
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekit.data.log import read_log  # noqa: E402
from gatekit.nets import mlp  # noqa: E402

MASKS = {"intervened": "intervened", "queried": "expert_queried"}  # gatekit's label kinds


def labelled(run: Path, labels: str = "intervened") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observations, expert actions and episode ids of a run's steps the expert acted on
    (``intervened``) or of every step it was asked about (``queried``)."""
    _, cols, _ = read_log(run / "records.gkr")
    rows = cols[MASKS[labels]].astype(bool)
    return cols["obs"][rows].astype(np.float32), cols["expert_action"][rows].astype(np.float32), cols["episode"][rows]


def fit(obs: np.ndarray, act: np.ndarray, episodes: np.ndarray, *, hidden: list[int], steps: int,
        holdout: float, seed: int, max_train: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Train on the episodes not held out (at most ``max_train`` of their labels, drawn at
    random); held-out MSE, R² and train MSE per action dimension."""
    rng = np.random.default_rng(seed)
    eps = np.unique(episodes)
    held = rng.choice(eps, size=max(1, round(holdout * len(eps))), replace=False)
    test = np.isin(episodes, held)
    train = np.flatnonzero(~test)
    if max_train is not None and len(train) > max_train:
        train = np.sort(rng.choice(train, size=max_train, replace=False))
    torch.manual_seed(seed)
    net = mlp(obs.shape[1], act.shape[1], hidden)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.as_tensor(obs[train]), torch.as_tensor(act[train])
    for _ in range(steps):
        idx = torch.as_tensor(rng.integers(0, len(x), size=min(256, len(x))))
        loss = ((torch.tanh(net(x[idx])) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred_test = torch.tanh(net(torch.as_tensor(obs[test]))).numpy()
        pred_train = torch.tanh(net(x)).numpy()
    mse = ((pred_test - act[test]) ** 2).mean(0)
    r2 = 1.0 - mse / act[test].var(0)
    train_mse = ((pred_train - act[train]) ** 2).mean(0)
    return mse, r2, train_mse, len(train), int(test.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="finished run folders (records.gkr)")
    p.add_argument("--hidden", default="256,256", help="the actor's hidden layers")
    p.add_argument("--steps", type=int, default=20000, help="Adam steps (batch 256, lr 1e-3)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction of the episodes held out")
    p.add_argument("--seeds", type=int, default=3, help="splits and initialisations averaged")
    p.add_argument("--labels", choices=tuple(MASKS), default="intervened",
                   help="the expert-acted steps, or every step the expert was asked about")
    p.add_argument("--max-train", type=int, default=None, help="train on at most this many labels")
    args = p.parse_args()
    torch.set_num_threads(1)
    hidden = [int(h) for h in args.hidden.split(",")]
    print(f"actor {hidden}, {args.steps} Adam steps, {args.holdout:.0%} of the episodes held out, "
          f"mean of {args.seeds} splits, labels: {args.labels}"
          + (f", at most {args.max_train} trained on" if args.max_train else ""))
    print(f"{'run':<48} {'labels':>6} {'train':>5} {'held':>5}  {'R2 steer':>8} {'R2 throttle':>11}  "
          f"{'MSE steer':>9} {'MSE thr':>8}  {'train MSE steer':>15} {'thr':>6}")
    for run in map(Path, args.runs):
        obs, act, episodes = labelled(run, args.labels)
        res = [fit(obs, act, episodes, hidden=hidden, steps=args.steps, holdout=args.holdout, seed=s,
                   max_train=args.max_train)
               for s in range(args.seeds)]
        mse, r2, train = (np.mean(np.stack([np.asarray(r[k]) for r in res]), axis=0) for k in range(3))
        name = str(run)[-48:]
        print(f"{name:<48} {len(obs):>6} {res[0][3]:>5} {res[0][4]:>5}  {r2[0]:>8.2f} {r2[1]:>11.2f}  "
              f"{mse[0]:>9.4f} {mse[1]:>8.4f}  {train[0]:>15.4f} {train[1]:>6.4f}")


if __name__ == "__main__":
    main()
