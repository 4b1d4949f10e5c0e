"""The SB3 expert: an SB3 policy's actions, likelihoods and its own torch RNG."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError
from gatekit.experts.base import Expert, gaussian_log_density, positive_stds
from gatekit.policies import cast_action

Algo = Literal["ppo", "a2c", "sac", "td3", "ddpg", "dqn"]


ALGOS: tuple[str, ...] = ("ppo", "a2c", "sac", "td3", "ddpg", "dqn")


# Algorithms whose policies are the same class (same layers, same inference): a user's explicit
# choice within a family is honoured, across families it is an error.
FAMILY = {"ppo": "on-policy", "a2c": "on-policy", "sac": "sac", "td3": "td3", "ddpg": "td3", "dqn": "dqn"}


FAMILY_ALGOS = {"on-policy": "ppo or a2c", "sac": "sac", "td3": "td3 or ddpg", "dqn": "dqn"}


ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu", "gelu", "silu", "sigmoid")


# SB3's default activation per algorithm (what MlpPolicy uses when none is given), 1.x and 2.x.
DEFAULT_ACTIVATION = {"ppo": "tanh", "a2c": "tanh", "sac": "relu", "td3": "relu", "ddpg": "relu", "dqn": "relu"}


# torch.nn class names of the activations, as SB3 writes them in the readable policy_kwargs.
ACTIVATION_OF_CLASS = {"Tanh": "tanh", "ReLU": "relu", "ELU": "elu", "LeakyReLU": "leaky_relu", "GELU": "gelu",
                        "SiLU": "silu", "Sigmoid": "sigmoid"}


FALLBACK = "or extract its policy.pth and use expert 'sb3-policy'"


def algo_class(algo: str) -> Any:
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "a2c": sb3.A2C, "sac": sb3.SAC, "td3": sb3.TD3, "ddpg": sb3.DDPG, "dqn": sb3.DQN}[algo]


def activation_class(name: str, field: str = "activation") -> type:
    """The ``torch.nn`` activation class of ``name`` (``tanh``, ``relu``, ...).

    Raises:
        ConfigError: an unknown name (the message names ``field`` and the valid names).
    """
    import torch.nn as nn

    classes = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU,
               "gelu": nn.GELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid}
    if name not in classes:
        from gatekit.errors import nearest

        raise ConfigError(f"{field}: unknown activation '{name}'; {nearest(name, classes)}")
    return classes[name]


def zero_schedule(_progress_remaining: float) -> float:
    """A learning-rate schedule for policies that are never trained (module level: picklable)."""
    return 0.0


def first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


class SB3PolicyExpert(Expert):
    """An SB3 ``BasePolicy`` as an expert: its actions, its likelihoods, its own torch RNG.

    Build it with a loader (:func:`sb3_zip`, :func:`sb3_state_dict`) or from a policy in memory.

    Args:
        env: the env the expert advises on; the policy must have been built for its spaces.
        policy: an SB3 policy (``ActorCriticPolicy``, ``SACPolicy``, ``TD3Policy``,
            ``DQNPolicy``); it is put in evaluation mode.
        algo: the algorithm it belongs to (``ppo``, ``a2c``, ``sac``, ``td3``, ``ddpg``,
            ``dqn``); it appears in messages.
        deterministic: act with the policy's mode (True) or sample from it (False; seeded by
            :meth:`reset`). TD3/DDPG act deterministically either way.
        epsilon: probability of a uniformly random action when stochastic (DQN's
            epsilon-greedy exploration rate; 0 for the others).
        path: the file the policy was loaded from, if any (kept for reports).
        log_prob_std: a fixed std per action dimension for :meth:`log_prob`, around the
            policy's mean, instead of the policy's own std (PPO/A2C on Box actions only).
            A simulated person that takes over below a density threshold then has a fixed
            tolerance, whatever std the policy ended its training with: PVP's release scores
            with ``(0.1365, 0.4583)`` on MetaDrive (``gatekit.experts.metadrive.RELEASE_STD``).
            ``act`` is unaffected.

    Attributes:
        has_log_prob: True for policies with an action distribution (PPO, A2C, SAC).
    """

    def __init__(self, *, env: gym.Env, policy: Any, algo: str, deterministic: bool = True, epsilon: float = 0.0,
                 path: str | None = None, log_prob_std: list[float] | tuple[float, ...] | None = None) -> None:
        from stable_baselines3.common.policies import ActorCriticPolicy
        from stable_baselines3.sac.policies import SACPolicy

        if algo not in ALGOS:
            raise ConfigError(f"expert.algo: unknown algorithm '{algo}'; valid: {', '.join(ALGOS)}")
        if not 0.0 <= epsilon <= 1.0:
            raise ConfigError(f"expert: epsilon must be in [0, 1], got {epsilon}")
        super().__init__(env.observation_space, env.action_space)
        self.policy = policy
        self.algo = algo
        self.deterministic = bool(deterministic)
        self.epsilon = float(epsilon)
        self.path = path
        policy.set_training_mode(False)
        # Per instance: the class attribute is the Expert default (False).
        self.has_log_prob = isinstance(policy, (ActorCriticPolicy, SACPolicy))
        # SAC keeps the gSDE flag on its actor, PPO/A2C on the policy.
        self._uses_sde = bool(getattr(policy, "use_sde", False) or getattr(getattr(policy, "actor", None), "use_sde", False))
        self._torch_state = self._torch_state_from(self.np_random)
        self.log_prob_std = None if log_prob_std is None else self._check_log_prob_std(log_prob_std)
        self.bind(env)

    def _check_log_prob_std(self, value: Any) -> np.ndarray:
        """``value`` as one positive finite std per action dimension of a PPO/A2C Box policy."""
        from stable_baselines3.common.policies import ActorCriticPolicy

        space = self.action_space
        if not isinstance(space, gym.spaces.Box) or not isinstance(self.policy, ActorCriticPolicy) \
                or self.policy.squash_output:
            raise ConfigError(f"expert.log_prob_std: applies to a ppo/a2c policy on Box actions (a Gaussian "
                              f"around its mean), not to this {self.algo} policy on {space}; remove it")
        size = int(np.prod(space.shape))
        std = positive_stds(value, size)
        if std is None:
            raise ConfigError(f"expert.log_prob_std: expected {size} positive numbers, one per action dimension, "
                              f"got {value!r}")
        return std

    # --- randomness ---------------------------------------------------------------------------

    @staticmethod
    def _torch_state_from(rng: np.random.Generator) -> Any:
        import torch

        g = torch.Generator()
        g.manual_seed(int(rng.integers(2**63 - 1)))
        return g.get_state()

    @contextlib.contextmanager
    def _own_torch_rng(self) -> Iterator[None]:
        """Run the body on this expert's torch generator state, leaving the global one as it was."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._torch_state)
            yield
            self._torch_state = torch.get_rng_state()

    def reset(self, *, seed: int | None = None) -> None:
        """Re-seed :attr:`np_random` and, from it, the expert's torch generator state."""
        super().reset(seed=seed)
        if seed is not None:
            self._torch_state = self._torch_state_from(self.np_random)
        if not self.deterministic and self._uses_sde:
            # gSDE explores with a noise matrix drawn per episode, as SB3 does when it collects.
            with self._own_torch_rng():
                self.policy.reset_noise()

    # --- acting ---------------------------------------------------------------------------

    def act(self, obs: Any) -> Any:
        """The policy's action for ``obs``, as SB3's ``predict(obs, deterministic=...)`` gives it."""
        if self.deterministic:
            action, _ = self.policy.predict(obs, deterministic=True)
        elif self.epsilon > 0.0 and self.np_random.random() < self.epsilon:
            action = self._random_action()
        else:
            with self._own_torch_rng():
                action, _ = self.policy.predict(obs, deterministic=False)
        return cast_action(action, self.action_space)

    def _random_action(self) -> Any:
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return int(space.start + self.np_random.integers(space.n))
        raise NotImplementedError(f"epsilon-greedy actions for {space}")  # pragma: no cover - DQN is Discrete

    # --- likelihoods ----------------------------------------------------------------------

    def log_prob(self, obs: Any, action: Any) -> float:
        """Log-probability (Discrete) or log-density (Box) of ``action`` under the policy.

        Box actions are scored as given, in the env's action units. PPO/A2C: the density of
        the policy's Gaussian before ``predict`` clips it to the bounds (clipping is not
        modelled, as for the MetaDrive expert). Squashed policies (SAC, gSDE with
        ``squash_output``): the density of the tanh-squashed Gaussian, including the Jacobian
        of the rescaling from ``[-1, 1]`` to the env's bounds.

        Raises:
            ConfigError: the policy has no action distribution (TD3, DDPG, DQN).
        """
        import torch
        from stable_baselines3.sac.policies import SACPolicy

        if not self.has_log_prob:
            raise ConfigError(
                f"expert: a {self.algo} policy is deterministic and has no action distribution, so no "
                "log_prob(); use a criterion that does not need likelihoods (e.g. action-gap) or a ppo/a2c/sac expert"
            )
        policy = self.policy
        obs_t, _ = policy.obs_to_tensor(obs)
        space = self.action_space
        log_jacobian = 0.0
        if isinstance(space, gym.spaces.Box):
            a = np.asarray(action, dtype=np.float32).reshape((1, *space.shape))
            if policy.squash_output:
                a = policy.scale_action(a)
                log_jacobian = float(np.sum(np.log(2.0 / (space.high.astype(np.float64) - space.low))))
            act_t = torch.as_tensor(a, dtype=torch.float32)
        else:
            act_t = torch.as_tensor(np.asarray(action).reshape((1, *(space.shape or ()))), dtype=torch.long)
        with torch.no_grad():
            if isinstance(policy, SACPolicy):
                mean, log_std, kwargs = policy.actor.get_action_dist_params(obs_t)
                dist = policy.actor.action_dist.proba_distribution(mean, log_std, **kwargs)
            else:
                dist = policy.get_distribution(obs_t)
            if self.log_prob_std is not None:  # the policy's mean, the fixed std (checked: Gaussian, Box)
                normal: Any = dist.distribution
                return gaussian_log_density(action, normal.mean.double().numpy().reshape(-1), self.log_prob_std)
            value = float(dist.log_prob(act_t).reshape(-1)[0])
        return value + log_jacobian
