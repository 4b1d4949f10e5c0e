"""Small recipes shared by the run-level tests."""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

FAST = {
    "budget": {"total_steps": 2500},
    "eval": {"in_worker": False, "every_steps": 0, "final_episodes": 2, "expert_reference": False},
    "log": {"tensorboard": False, "progress": False, "plots": False},
    "data": {"checkpoint_every": 300},
}


def fast_recipe(**over: Any) -> dict[str, Any]:
    """``recipes/hg_cartpole.yaml`` made fast (no worker, no TensorBoard, short BC updates),
    with sections of ``over`` merged in."""
    raw = yaml.safe_load((ROOT / "recipes/hg_cartpole.yaml").read_text())
    for section, values in {**FAST, **over}.items():
        raw.setdefault(section, {}).update(values) if isinstance(values, dict) else raw.__setitem__(section, values)
    raw["learner"]["batches_per_update"] = 30
    return raw
