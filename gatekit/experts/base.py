"""The Expert interface: a policy that may read privileged env state and report likelihoods.

An expert stands in for a person. Gatekit calls it only when a criterion asks (an *expert
query*) or when the expert is in control, always *before* the env steps, so an expert may read
the current simulator state directly (MetaDrive's ego vehicle, MiniGrid's full grid) through
the env handed to :meth:`Expert.bind`.

Example:
    >>> import numpy as np, gymnasium as gym
    >>> from gatekit.experts.base import Expert
    >>> class Zero(Expert):
    ...     def act(self, obs):
    ...         return np.zeros(self.action_space.shape, dtype=self.action_space.dtype)
    >>> e = Zero(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)))
    >>> e.act(np.zeros(3)).tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np


class Expert(ABC):
    """Base class of experts. Subclasses implement :meth:`act`; likelihood experts also
    :meth:`log_prob` and set ``has_log_prob = True``.

    Randomness (a stochastic expert's sampling) must come from ``self.np_random``, which
    :meth:`reset` seeds, so runs are reproducible.
    """

    has_log_prob: bool = False

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.np_random = np.random.default_rng()
        self.env: gym.Env | None = None

    def bind(self, env: gym.Env) -> None:
        """Give the expert the env it advises on (``env.unwrapped`` holds the simulator)."""
        self.env = env

    def reset(self, *, seed: int | None = None) -> None:
        """Called at each episode start; a seed re-seeds :attr:`np_random`."""
        if seed is not None:
            self.np_random = np.random.default_rng(seed)

    @abstractmethod
    def act(self, obs: Any) -> Any:
        """The expert's action for the current state (``obs`` is the env's observation)."""

    def log_prob(self, obs: Any, action: Any) -> float:
        """Log-density (Box) or log-probability (Discrete) of ``action`` under the expert."""
        raise NotImplementedError(f"{type(self).__name__} does not provide log_prob()")

    def __call__(self, obs: Any) -> Any:
        return self.act(obs)

    def close(self) -> None:
        """Release resources (windows, devices)."""


def positive_stds(value: Any, size: int) -> np.ndarray | None:
    """``value`` as a float64 array of ``size`` finite positive standard deviations, or None
    when it is not that (the caller names its field in the error)."""
    try:
        std = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if isinstance(value, str | bytes) or std.shape != (size,) or not np.all(np.isfinite(std)) or np.any(std <= 0):
        return None
    return std


def gaussian_log_density(action: Any, mean: np.ndarray, std: np.ndarray) -> float:
    """Log density of ``action`` under the diagonal Gaussian ``N(mean, diag(std^2))``."""
    z = (np.asarray(action, dtype=np.float64).reshape(-1) - mean) / std
    return float(np.sum(-0.5 * z * z - np.log(std) - 0.5 * math.log(2.0 * math.pi)))

