"""Tiny programmable envs for tests and examples (no simulator needed)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.envs.base import METRICS_KEY, check_split


class EchoEnv(gym.Env):
    """An env whose observation is the last executed action plus a random drift.

    Continuous (``n_actions=None``): action Box [-1, 1]^dim, observation = action + noise.
    Discrete (``n_actions=k``): action Discrete(k), observation = one-hot of the action + noise.
    Reward is ``-mean(obs**2)``; episodes last ``horizon`` steps (truncation);
    ``info["is_success"]`` on the last step is True when the final observation is near 0.
    The reset observation is drawn from ``self.np_random``, so seeds matter.
    """

    metadata = {"render_modes": [], METRICS_KEY: ["final_abs_obs"]}

    def __init__(self, *, dim: int = 1, n_actions: int | None = None, horizon: int = 10, noise: float = 0.1) -> None:
        if dim < 1 or horizon < 1 or noise < 0:
            raise ValueError("dim and horizon must be >= 1 and noise >= 0")
        self.n_actions = n_actions
        self.horizon = horizon
        self.noise = noise
        obs_dim = n_actions if n_actions is not None else dim
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Discrete(n_actions) if n_actions is not None else gym.spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self._t = 0
        self._obs = np.zeros(obs_dim, np.float32)

    def _drift(self) -> np.ndarray:
        return self.np_random.normal(0.0, self.noise, self.observation_space.shape).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._obs = np.clip(self.np_random.uniform(-1, 1, self.observation_space.shape), -2, 2).astype(np.float32)
        return self._obs.copy(), {}

    def step(self, action: Any):
        if self.n_actions is not None:
            base = np.eye(self.n_actions, dtype=np.float32)[int(action)]
        else:
            base = np.asarray(action, dtype=np.float32).reshape(self.action_space.shape)
        self._obs = np.clip(base + self._drift(), -2, 2).astype(np.float32)
        self._t += 1
        reward = -float(np.mean(self._obs**2))
        truncated = self._t >= self.horizon
        info: dict[str, Any] = {}
        if truncated:
            final = float(np.abs(self._obs).max())
            info = {"is_success": final < 0.5, "final_abs_obs": final}
        return self._obs.copy(), reward, False, truncated, info


def make_echo_env(*, split: str = "train", seed: int | None = None, dim: int = 1, n_actions: int | None = None,
                  horizon: int = 10, noise: float = 0.1) -> gym.Env:
    """Factory of :class:`EchoEnv` for recipes (``split`` only shifts seeds).

    Args:
        dim: size of the observation (and of a Box action).
        n_actions: a Discrete action space of this many actions (None: a Box action).
        horizon: steps per episode.
        noise: standard deviation of the observation noise.
    """
    check_split(split)
    env: gym.Env = EchoEnv(dim=dim, n_actions=n_actions, horizon=horizon, noise=noise)
    env = gym.wrappers.TimeLimit(env, max_episode_steps=horizon)
    return SplitSeeds(env, offset=0 if split == "train" else 1_000_000)


class SplitSeeds(gym.Wrapper):
    """Map ``reset(seed=s)`` to ``reset(seed=offset + s)`` so train and test splits of a
    seed-generated env never share a start state. ``reset()`` without a seed is passed on."""

    def __init__(self, env: gym.Env, *, offset: int) -> None:
        super().__init__(env)
        self.offset = int(offset)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.env.reset(seed=None if seed is None else self.offset + int(seed), options=options)
