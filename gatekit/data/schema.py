"""The record log's schema for a pair of spaces: each column's dtype and shape, and how the
spaces are described so that a resumed run can check it reads records of the same env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.data.log import make_schema
from gatekit.errors import ConfigError


def space_spec(space: gym.Space, role: str) -> tuple[np.dtype, tuple[int, ...], dict[str, Any]]:
    """(dtype, shape, JSON description) under which ``space``'s values are stored."""
    if isinstance(space, gym.spaces.Box):
        return np.dtype(space.dtype), tuple(space.shape), {"type": "Box", "dtype": np.dtype(space.dtype).name,
                                                            "shape": list(space.shape)}
    if isinstance(space, gym.spaces.Discrete):
        return np.dtype(np.int64), (), {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return np.dtype(space.dtype), tuple(space.shape), {"type": "MultiDiscrete",
                                                            "nvec": np.asarray(space.nvec).tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return np.dtype(space.dtype), tuple(space.shape), {"type": "MultiBinary", "shape": list(space.shape)}
    hint = ("wrap the env in gymnasium.wrappers.FlattenObservation" if role == "observation" else
            "wrap the env so its action space is a Box (see gymnasium.spaces.flatten_space)")
    raise ConfigError(f"RecordStore cannot store a {type(space).__name__} {role} space (Box, Discrete, "
                      f"MultiDiscrete and MultiBinary are supported); {hint}")


def describe(desc: dict[str, Any]) -> str:
    kind = desc.get("type")
    if kind == "Box":
        return f"Box({desc.get('dtype')}, {tuple(desc.get('shape', ()))})"
    if kind == "Discrete":
        start = desc.get("start", 0)
        return f"Discrete({desc.get('n')}{f', start={start}' if start else ''})"
    if kind == "MultiDiscrete":
        return f"MultiDiscrete({desc.get('nvec')})"
    if kind == "MultiBinary":
        return f"MultiBinary({desc.get('shape')})"
    return str(kind)


def fill_value(dtype: np.dtype) -> Any:
    """What ``expert_action`` holds where the expert was not queried."""
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind == "i":
        return -1
    if dtype.kind == "u":
        return np.iinfo(dtype).max
    return False


def record_schema(observation_space: gym.Space, action_space: gym.Space) -> dict[str, Any]:
    o_dt, o_shape, o_desc = space_spec(observation_space, "observation")
    a_dt, a_shape, a_desc = space_spec(action_space, "action")
    fields = [
        ("step", np.int64, ()), ("episode", np.int64, ()),
        ("obs", o_dt, o_shape), ("next_obs", o_dt, o_shape),
        ("novice_action", a_dt, a_shape), ("expert_action", a_dt, a_shape), ("executed_action", a_dt, a_shape),
        ("intervened", np.bool_, ()), ("expert_queried", np.bool_, ()), ("switched", np.bool_, ()),
        ("reward", np.float64, ()), ("terminated", np.bool_, ()), ("truncated", np.bool_, ()),
        ("score", np.float64, ()), ("env", np.int32, ()),
    ]
    fill = fill_value(a_dt)
    # Recorded so that readers without gatekit know which expert_action rows are placeholders.
    fill_json = "nan" if isinstance(fill, float) else bool(fill) if isinstance(fill, bool) else int(fill)
    return make_schema(fields, spaces={"observation": o_desc, "action": a_desc}, expert_action_fill=fill_json)
