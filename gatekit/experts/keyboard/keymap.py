"""Key maps: which key gives which action, checked against the env's action space.

A key map is written by pygame's key names (``pygame.key.name``); :meth:`KeyMap.parse` turns it
into key codes and says in one line what is wrong with it (an unknown key, an action without a
key, a value outside the bounds, the control key mapped to an action).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, nearest

#: The key that takes control from the novice, and hands it back.
CONTROL_KEY = "t"

#: MiniGrid's actions (left, right, forward, pickup, drop, toggle, done) by key.
MINIGRID_KEYS: dict[str, Any] = {"left": 0, "right": 1, "up": 2, "p": 3, "page up": 3, "d": 4,
                                 "page down": 4, "space": 5, "return": 6}
MINIGRID_ACTIONS = ("turn left", "turn right", "forward", "pick up", "drop", "toggle", "done")
#: MetaDrive's ``[steering, throttle]`` by key (positive steering turns left).
METADRIVE_KEYS: dict[str, Any] = {"left": [1.0, None], "a": [1.0, None], "right": [-1.0, None],
                                  "d": [-1.0, None], "up": [None, 1.0], "w": [None, 1.0],
                                  "down": [None, -1.0], "s": [None, -1.0]}


def key_names(pg: Any) -> list[str]:
    """pygame's names of the keys (``pygame.key.name``), sorted."""
    names = {pg.key.name(getattr(pg, a)) for a in dir(pg) if a.startswith("K_")}
    return sorted(n for n in names if n and n != "unknown key")


def _describe_names() -> str:
    return "key names are pygame's: a-z, 0-9, left, right, up, down, space, return, tab, page up, f1, ..."


def key_code(pg: Any, name: Any, field: str) -> int:
    """The pygame key code of ``name``, or a one-line error naming the valid keys."""
    valid = key_names(pg)
    if isinstance(name, str) and name in valid:
        return int(pg.key.key_code(name))
    hint = nearest(str(name), valid)
    raise ConfigError(f"{field}: unknown key {name!r}; {hint} ({_describe_names()})")


# key codes to actions (or target vectors), and key codes to key names
_Parsed = tuple[dict[int, Any], dict[int, str]]


def _parse_discrete(pg: Any, keys: Mapping[str, Any], space: gym.spaces.Discrete) -> _Parsed:
    """Key codes to actions of a ``Discrete`` space; every action needs a key."""
    n, start = int(space.n), int(space.start)
    codes: dict[int, Any] = {}
    names: dict[int, str] = {}
    for name, action in keys.items():
        code = key_code(pg, name, "expert.keys")
        if isinstance(action, bool) or not isinstance(action, int | np.integer) or not start <= action < start + n:
            raise ConfigError(f"expert.keys: key '{name}' maps to {action!r}; expected an action in "
                              f"[{start}, {start + n - 1}] of {space}")
        codes[code], names[code] = int(action), name
    missing = sorted(set(range(start, start + n)) - set(codes.values()))
    if missing:
        raise ConfigError(f"expert.keys: action(s) {missing} of {space} have no key; map every action "
                          f"(mapped: {dict(keys)}; {_describe_names()})")
    return codes, names


def _key_vector(name: str, values: Any, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The per-dimension targets of one key of a ``Box`` map (NaN: the key leaves it alone)."""
    dim = low.shape[0]
    if not isinstance(values, list | tuple) or len(values) != dim or all(v is None for v in values) \
            or not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
        raise ConfigError(f"expert.keys: key '{name}' maps to {values!r}; expected a list of {dim} "
                          f"numbers or nulls (null: the key leaves that dimension alone)")
    vec = np.array([np.nan if v is None else float(v) for v in values])
    bad = [i for i in range(dim) if not np.isnan(vec[i]) and not low[i] <= vec[i] <= high[i]]
    if bad:
        raise ConfigError(f"expert.keys: key '{name}' sets dimension {bad[0]} to {vec[bad[0]]}, "
                          f"outside [{low[bad[0]]}, {high[bad[0]]}]")
    return vec


def _parse_box(pg: Any, keys: Mapping[str, Any], space: gym.spaces.Box) -> _Parsed:
    """Key codes to target vectors of a 1-D ``Box`` space; every dimension needs a key."""
    dim = int(space.shape[0])
    low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
    codes: dict[int, Any] = {}
    names: dict[int, str] = {}
    for name, values in keys.items():
        code = key_code(pg, name, "expert.keys")
        codes[code], names[code] = _key_vector(name, values, low, high), name
    stacked = np.stack(list(codes.values()))
    missing = [i for i in range(dim) if np.isnan(stacked[:, i]).all()]
    if missing:
        raise ConfigError(f"expert.keys: action dimension(s) {missing} of {space} have no key; give a key "
                          f"whose list sets them ({_describe_names()})")
    return codes, names


@dataclass
class KeyMap:
    """A checked key map: key codes to a discrete action, or to per-dimension target values."""

    discrete: bool
    codes: dict[int, Any]   # code -> int action, or a float array with NaN for "untouched"
    names: dict[int, str]   # code -> key name
    control: int            # the control key's code
    control_name: str

    @classmethod
    def parse(cls, pg: Any, keys: Mapping[str, Any], space: gym.Space, control_key: str) -> KeyMap:
        """Check ``keys`` against ``space``; raise :class:`ConfigError` naming what is wrong."""
        if not isinstance(keys, Mapping) or not keys:
            raise ConfigError(f"expert.keys: expected a mapping of key names to actions, got {keys!r}")
        control = key_code(pg, control_key, "expert.control_key")
        if isinstance(space, gym.spaces.Discrete):
            (codes, names), discrete = _parse_discrete(pg, keys, space), True
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            (codes, names), discrete = _parse_box(pg, keys, space), False
        else:
            raise ConfigError(f"expert: keyboard supports Discrete and 1-D Box actions, got {space}")
        if control in codes:
            raise ConfigError(f"expert.keys: '{names[control]}' is the control key (take over / hand back); "
                              f"map another key or set expert.control_key")
        return cls(discrete=discrete, codes=codes, names=names, control=control, control_name=control_key)

    def keys_for(self, action: int) -> list[int]:
        """The codes of the keys that give a discrete ``action`` (in map order)."""
        return [c for c, a in self.codes.items() if a == action]
