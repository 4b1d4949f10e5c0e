"""Small recipes shared by the run-level tests."""

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

FAST = {
    "budget": {"total_steps": 2500},
    "eval": {"in_worker": False, "every_steps": 0, "final_episodes": 2, "expert_reference": False},
    "log": {"tensorboard": False, "progress": False, "plots": False},
    "data": {"checkpoint_every": 300},
}


HAS_IMITATION = importlib.util.find_spec("imitation") is not None
"""imitation 1.0 pins gymnasium 0.29: the environment with the newest gymnasium and SB3 has none."""

needs_imitation = pytest.mark.skipif(not HAS_IMITATION, reason="needs the imitation extra (gymnasium 0.29 stack)")
needs_rliable = pytest.mark.skipif(importlib.util.find_spec("rliable") is None, reason="needs the stats extra (rliable)")

# gatekit's own BC in place of imitation's where imitation is not installed: the run-level tests
# are about the loop, the records and resuming, which every learner goes through alike.
MLP_BC = {"id": "mlp-bc", "hidden": [64, 64], "update_every": 25, "iterations": 30, "first_iterations": 30,
          "steps_per_iteration": 1, "batch_size": 64, "lr": 1e-3}


def fast_recipe(**over: Any) -> dict[str, Any]:
    """``recipes/hg_cartpole.yaml`` made fast (no worker, no TensorBoard, short BC updates),
    with sections of ``over`` merged in. Its learner is imitation's BC where imitation is
    installed, gatekit's ``mlp-bc`` where not."""
    raw = yaml.safe_load((ROOT / "recipes/hg_cartpole.yaml").read_text())
    if not HAS_IMITATION:
        raw["learner"] = dict(MLP_BC)
    for section, values in {**FAST, **over}.items():
        raw.setdefault(section, {}).update(values) if isinstance(values, dict) else raw.__setitem__(section, values)
    if HAS_IMITATION:
        raw["learner"]["batches_per_update"] = 30
    return raw


TINY = {
    "name": "tiny", "seed": 0,
    "env": {"id": "echo", "n_actions": 2, "horizon": 10},
    "expert": {"id": "echo", "action": 1},
    "criterion": {"id": "dagger", "beta": 0.4, "schedule": "constant", "query_every_step": False},
    "learner": {"id": "mlp-bc", "hidden": [8], "update_every": 10, "iterations": 2, "first_iterations": 20,
                "steps_per_iteration": 1, "batch_size": 32, "lr": 0.05},
    "budget": {"total_steps": 300},
    "eval": {"in_worker": False, "every_steps": 0, "episodes": 2, "final_episodes": 2, "expert_reference": False},
    "log": {"tensorboard": False, "progress": False, "plots": False},
    "data": {"checkpoint_every": 100},
}


def tiny_recipe(**over: Any) -> dict[str, Any]:
    """A run of a few hundred steps that takes about a second: echo env and expert, a DAgger coin
    (the expert acts and labels about 40% of the steps), a small mlp-bc novice; sections of
    ``over`` merged in (components: replaced)."""
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    for section, values in over.items():
        if section not in ("env", "expert", "criterion", "learner") and isinstance(values, dict) \
                and isinstance(raw.get(section), dict):
            raw[section].update(values)
        else:
            raw[section] = values
    return raw


def stop_at(steps: int):
    """An ``on_progress`` callback that interrupts the run (as Ctrl-C would) once it has made
    ``steps`` steps: the run checkpoints and ends ``interrupted``."""

    def callback(live: dict[str, Any]) -> None:
        if live["steps"] >= steps:
            raise KeyboardInterrupt

    return callback


def interrupted_run(out: Path, *, at: int = 200, **over: Any) -> Path:
    """A tiny run (:func:`tiny_recipe` with ``over``) interrupted after ``at`` steps, in ``out``."""
    from gatekit.config import load_recipe_dict
    from gatekit.runs import train

    res = train(load_recipe_dict(tiny_recipe(**over)), out=out, progress=False, on_progress=stop_at(at))
    assert res.status == "interrupted", res
    return out
