"""Distances between a novice's and an expert's actions, as the gates' papers define them.

Three conventions are in use, each the one its gate's paper states; they are kept apart by name
so that a gate never silently uses another's:

* :func:`mean_squared_gap` (``d`` of AIM, SafeDAgger and HG-DAgger's ``action-gap`` rule): the
  mean over action dimensions of the squared difference;
* :func:`squared_gap` (Thrifty-DAgger's hand-back test): the sum of squared differences;
* :func:`euclidean` (Ensemble-DAgger's ``tau``): the Euclidean distance.

For Discrete actions every one of them is 0 for equal actions and 1 otherwise.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> box = gym.spaces.Box(-1, 1, (2,))
    >>> a, b = np.array([0.0, 0.0]), np.array([1.0, 0.0])
    >>> mean_squared_gap(a, b, box), squared_gap(a, b, box), euclidean(a, b, box)
    (0.5, 1.0, 1.0)
    >>> mean_squared_gaps(np.stack([a, b]), np.stack([b, b]), box).tolist()
    [0.5, 0.0]
    >>> mean_squared_gap(2, 3, gym.spaces.Discrete(4))
    1.0
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def _diff(a: Any, b: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(-1) - np.asarray(b, dtype=np.float64).reshape(-1)


def _differ(a: Any, b: Any) -> float:
    return float(int(np.asarray(a).reshape(())) != int(np.asarray(b).reshape(())))


def mean_squared_gap(a: Any, b: Any, space: gym.Space | None) -> float:
    """Mean over action dimensions of the squared difference; 0/1 for Discrete actions."""
    if isinstance(space, gym.spaces.Discrete):
        return _differ(a, b)
    diff = _diff(a, b)
    return float(np.mean(diff * diff))


def squared_gap(a: Any, b: Any, space: gym.Space | None) -> float:
    """``||a - b||^2`` (sum over dimensions); 0/1 for Discrete actions."""
    if isinstance(space, gym.spaces.Discrete):
        return _differ(a, b)
    diff = _diff(a, b)
    return float(np.sum(diff * diff))


def euclidean(a: Any, b: Any, space: gym.Space | None) -> float:
    """``||a - b||``; 0/1 for Discrete actions."""
    return float(np.sqrt(squared_gap(a, b, space)))


def mean_squared_gaps(a: np.ndarray, b: np.ndarray, space: gym.Space) -> np.ndarray:
    """Row-wise :func:`mean_squared_gap` of two batches of actions."""
    if isinstance(space, gym.spaces.Discrete):
        return (np.asarray(a).reshape(-1).astype(np.int64) != np.asarray(b).reshape(-1).astype(np.int64)).astype(np.float64)
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    return np.mean((a - b) ** 2, axis=1)


def squared_gaps(a: np.ndarray, b: np.ndarray, space: gym.Space) -> np.ndarray:
    """Row-wise :func:`squared_gap` of two batches of actions."""
    if isinstance(space, gym.spaces.Discrete):
        return mean_squared_gaps(a, b, space)
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    return np.sum((a - b) ** 2, axis=1)
