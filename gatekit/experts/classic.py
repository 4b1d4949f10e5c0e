"""Scripted experts for gymnasium's classic-control tasks and the toy env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError
from gatekit.experts.base import Expert


def _require(env: gym.Env, env_id: str) -> None:
    spec = getattr(env.unwrapped, "spec", None)
    if spec is not None and spec.id != env_id:
        raise ConfigError(f"expert: this expert drives {env_id}, but the env is {spec.id}; pick a matching expert")


class PendulumExpert(Expert):
    """Swing-up by energy pumping, then PD balance at the top, for Pendulum-v1.

    ``theta`` is 0 upright. With ``theta'' = a sin(theta) + b u`` (a = 15, b = 3 for the
    default pendulum), the energy ``E = theta'^2 / 2 + a cos(theta)`` equals ``a`` at rest
    upright: below it the expert pushes along the swing, near the top it balances with PD.
    Optional Gaussian action noise (``noise_std``) with a matching :meth:`log_prob`.

    Args:
        kp: proportional gain of the balance (on the angle).
        kd: derivative gain of the balance (on the angular velocity).
        pump_gain: gain of the energy-pumping swing-up.
        noise_std: standard deviation of the Gaussian action noise (and of :meth:`log_prob`).
        deterministic: act without the noise.
    """

    has_log_prob = True

    def __init__(self, *, env: gym.Env, kp: float = 12.0, kd: float = 2.5, pump_gain: float = 0.4,
                 noise_std: float = 0.3, deterministic: bool = True) -> None:
        _require(env, "Pendulum-v1")
        super().__init__(env.observation_space, env.action_space)
        self.kp, self.kd, self.pump_gain = kp, kd, pump_gain
        self.noise_std = float(noise_std)
        self.deterministic = deterministic
        self.bind(env)

    def mean(self, obs: Any) -> np.ndarray:
        cos, sin, thdot = (float(x) for x in np.asarray(obs).reshape(-1)[:3])
        theta = float(np.arctan2(sin, cos))
        if cos > 0.85:  # close to upright: balance
            u = -(self.kp * theta + self.kd * thdot)
        else:
            energy = 0.5 * thdot**2 + 15.0 * cos
            u = self.pump_gain * (15.0 - energy) * np.sign(thdot if thdot != 0 else 1.0)
        return np.clip(np.array([u], dtype=np.float32), -2.0, 2.0)

    def act(self, obs: Any) -> np.ndarray:
        mu = self.mean(obs)
        if self.deterministic:
            return mu
        return np.clip(mu + self.np_random.normal(0, self.noise_std, mu.shape), -2.0, 2.0).astype(np.float32)

    def log_prob(self, obs: Any, action: Any) -> float:
        mu = self.mean(obs).astype(np.float64)
        a = np.asarray(action, dtype=np.float64).reshape(mu.shape)
        var = self.noise_std**2
        return float(np.sum(-0.5 * (a - mu) ** 2 / var - 0.5 * np.log(2 * np.pi * var)))


class CartPoleExpert(Expert):
    """A PD rule on the pole (and, weakly, the cart) for CartPole-v1: push right when
    ``kp * theta + kd * theta' + kx * x + kv * x'`` is positive.

    Args:
        kp: gain on the pole angle.
        kd: gain on the pole's angular velocity.
        kx: gain on the cart position.
        kv: gain on the cart velocity.
    """

    def __init__(self, *, env: gym.Env, kp: float = 10.0, kd: float = 2.0, kx: float = 0.3, kv: float = 0.8) -> None:
        _require(env, "CartPole-v1")
        super().__init__(env.observation_space, env.action_space)
        self.k = np.array([kx, kv, kp, kd])
        self.bind(env)

    def act(self, obs: Any) -> int:
        return int(float(np.dot(self.k, np.asarray(obs, dtype=np.float64))) > 0.0)


class EchoExpert(Expert):
    """Returns a fixed action (continuous) or action index (discrete); for tests and docs.

    Args:
        action: the action (a list for a Box space, an index for a Discrete one).
    """

    def __init__(self, *, env: gym.Env, action: Any = 0) -> None:
        super().__init__(env.observation_space, env.action_space)
        if isinstance(env.action_space, gym.spaces.Discrete):
            self.action: Any = int(np.asarray(action).reshape(-1)[0])
        else:
            self.action = np.asarray(action, dtype=env.action_space.dtype).reshape(env.action_space.shape)
        self.bind(env)

    def act(self, obs: Any) -> Any:
        return self.action if isinstance(self.action, int) else self.action.copy()
