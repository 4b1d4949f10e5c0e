"""Gymnasium's classic-control tasks as gatekit env factories, with train/test seed splits."""

from __future__ import annotations

import gymnasium as gym

from gatekit.envs.base import METRICS_KEY, check_split
from gatekit.envs.toy import SplitSeeds

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


def _make(env_id: str, split: str, threshold: float, max_episode_steps: int | None) -> gym.Env:
    check_split(split)
    env = gym.make(env_id, max_episode_steps=max_episode_steps) if max_episode_steps else gym.make(env_id)
    env = SuccessInfo(env, threshold=threshold)
    return SplitSeeds(env, offset=0 if split == "train" else TEST_SEED_OFFSET)


def make_pendulum_env(*, split: str = "train", seed: int | None = None, success_return: float = -400.0,
                      max_episode_steps: int | None = None) -> gym.Env:
    """Pendulum-v1 (swing up and balance; 200 steps). Success: return >= ``success_return``."""
    return _make("Pendulum-v1", split, success_return, max_episode_steps)


def make_cartpole_env(*, split: str = "train", seed: int | None = None, success_return: float = 475.0,
                      max_episode_steps: int | None = None) -> gym.Env:
    """CartPole-v1 (500 steps). Success: return >= ``success_return``."""
    return _make("CartPole-v1", split, success_return, max_episode_steps)
