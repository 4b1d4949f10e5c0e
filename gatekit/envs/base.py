"""Env factories: how gatekit builds train and test envs from a recipe.

A factory is a callable ``factory(*, split, seed, **kwargs) -> gymnasium.Env`` registered in
:data:`gatekit.envs.ENVS`. ``split`` is ``"train"`` or ``"test"``: factories that have held-out
scenes (MetaDrive maps, MiniGrid layouts) return disjoint ones for the two splits.

Test metrics. On the last step of an episode the env's ``info`` should hold
``"is_success"`` (bool, the gymnasium/SB3 convention). Extra per-episode metrics (MetaDrive's
``route_completion``, ``crash``, ``out_of_road``) are named in
``env.metadata["gatekit_metrics"]`` and read from the last step's ``info``.

One engine per process. Simulators that allow a single instance per process (MetaDrive) set
``env.metadata["gatekit_single_instance"] = True``; gatekit then never builds a second one in
the same process (evaluation runs in a worker process).
"""

from __future__ import annotations

from typing import Literal

Split = Literal["train", "test"]

METRICS_KEY = "gatekit_metrics"
SINGLE_INSTANCE_KEY = "gatekit_single_instance"


def check_split(split: str) -> Split:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split  # type: ignore[return-value]
