"""Gymnasium's tasks as gatekit env factories, with train/test seed splits: the classic-control
ones by name (``pendulum``, ``cartpole``) and any registered gymnasium id (``gym:LunarLander-v3``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from gatekit.envs.base import METRICS_KEY, check_split
from gatekit.envs.toy import SplitSeeds
from gatekit.errors import ConfigError

TEST_SEED_OFFSET = 1_000_000


class SuccessInfo(gym.Wrapper):
    """Add ``info["is_success"]`` on an episode's last step: the return reached ``threshold``."""

    def __init__(self, env: gym.Env, *, threshold: float) -> None:
        super().__init__(env)
        self.threshold = threshold
        self._return = 0.0
        self.metadata = {**env.metadata, METRICS_KEY: []}

    def reset(self, **kwargs):
        self._return = 0.0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        if terminated or truncated:
            info = {**info, "is_success": self._return >= self.threshold}
        return obs, reward, terminated, truncated, info


def _make(env_id: str, split: str, threshold: float | None, max_episode_steps: int | None,
          **kwargs: Any) -> gym.Env:
    check_split(split)
    if max_episode_steps:
        kwargs["max_episode_steps"] = max_episode_steps
    env = gym.make(env_id, **kwargs)
    if threshold is not None:
        env = SuccessInfo(env, threshold=threshold)
    return SplitSeeds(env, offset=0 if split == "train" else TEST_SEED_OFFSET)


def make_gym_env(env_id: str, *, split: str = "train", seed: int | None = None, success_return: float | None = None,
                 max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """Any registered gymnasium env by its ``gym.make`` id, named in a recipe as
    ``env: {id: gym:LunarLander-v3, ...}``; further keys go to ``gym.make``.

    The test split draws its reset seeds from another range than training (as every gatekit
    env does). Success is the env's own ``info["is_success"]`` unless ``success_return`` is set.

    Args:
        env_id: the gymnasium id (``LunarLander-v3``, ``ale_py:ALE/Pong-v5``), from the recipe's
            ``id`` after ``gym:``.
        success_return: count an episode as a success when its return reaches this (None: use
            the env's ``info["is_success"]``, if it reports one).
        max_episode_steps: truncate episodes after this many steps (None: the id's own limit).
    """
    if not env_id:
        raise ConfigError("env.id: 'gym:' needs a gymnasium id after it, e.g. gym:LunarLander-v3")
    try:
        return _make(env_id, split, success_return, max_episode_steps, **kwargs)
    except gym.error.Error as exc:  # unknown id, missing dependency (box2d, ale-py), bad version
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"env.id: gymnasium cannot make '{env_id}': {text}") from None


def make_pendulum_env(*, split: str = "train", seed: int | None = None, success_return: float = -400.0,
                      max_episode_steps: int | None = None) -> gym.Env:
    """Pendulum-v1 (swing up and balance; 200 steps). Success: return >= ``success_return``.

    Args:
        success_return: the return at which an episode counts as a success.
        max_episode_steps: truncate episodes after this many steps (None: gymnasium's 200).
    """
    return _make("Pendulum-v1", split, success_return, max_episode_steps)


def make_cartpole_env(*, split: str = "train", seed: int | None = None, success_return: float = 475.0,
                      max_episode_steps: int | None = None) -> gym.Env:
    """CartPole-v1 (500 steps). Success: return >= ``success_return``.

    Args:
        success_return: the return at which an episode counts as a success.
        max_episode_steps: truncate episodes after this many steps (None: gymnasium's 500).
    """
    return _make("CartPole-v1", split, success_return, max_episode_steps)
