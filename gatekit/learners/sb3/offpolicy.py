"""Stable-baselines3 off-policy algorithms (SAC, TD3, DDPG, DQN) as a gatekit learner.

:class:`SB3OffPolicyLearner` (``sb3-offpolicy``) trains on the *executed* actions and the env's
rewards: a plain RL learner that happens to be gated. It is fed one record per step into its
replay buffer and trained with SB3's own ``train(gradient_steps, batch_size)`` on the usual
off-policy schedule (``learning_starts``, ``train_freq``, ``gradient_steps``).

Resume. The replay buffer is not checkpointed: the record store is the truth, and the first
``observe`` after ``load_state_dict`` refills it from the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np
import torch

from gatekit.learners.base import Learner, check_positive, check_range
from gatekit.learners.sb3.common import (
    SB3ModelLearner,
    StoreFedReplay,
    algorithms,
    buffer_action,
    build_model,
    load_model_state,
    model_state,
    policy_kwargs_for,
)
from gatekit.nets import is_image, rng_state, set_rng_state
from gatekit.policies import cast_action
from gatekit.types import Transition

if TYPE_CHECKING:
    from gatekit.data import RecordStore


class SB3OffPolicyLearner(StoreFedReplay, SB3ModelLearner, Learner):
    """An SB3 off-policy algorithm trained on the executed actions and the env's rewards.

    Args:
        observation_space: the env's observation space (vector or image stack).
        action_space: Box (``sac``, ``td3``, ``ddpg``) or Discrete (``dqn``).
        seed: seeds SB3 (networks, buffer sampling) and the exploration noise.
        algo: which SB3 algorithm.
        lr: learning rate.
        batch_size: minibatch size.
        buffer_size: replay buffer capacity.
        learning_starts: env steps before training starts.
        train_freq: train every this many env steps.
        gradient_steps: gradient steps per training.
        gamma: discount.
        tau: Polyak factor of the target networks.
        net_arch: hidden layers (default ``[256, 256]``; ``[]`` after the CNN for images).
        action_noise: std of the Gaussian exploration noise of ``td3``/``ddpg`` (in action units
            scaled to [-1, 1]).
        exploration_steps: ``dqn``: epsilon decays linearly from 1 to ``exploration_final_eps``
            over this many env steps.
        exploration_final_eps: ``dqn``: the final epsilon.
        target_update_interval: ``dqn``: env steps between target-network updates.

    Example:
        >>> import gymnasium as gym
        >>> learner = SB3OffPolicyLearner(observation_space=gym.spaces.Box(-1, 1, (3,)),
        ...                               action_space=gym.spaces.Box(-2, 2, (1,)), algo="td3", net_arch=[8])
        >>> learner.act(gym.spaces.Box(-1, 1, (3,)).sample()).shape
        (1,)
    """

    name = "sb3-offpolicy"

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0,
                 algo: Literal["sac", "td3", "ddpg", "dqn"] = "sac", lr: float = 3e-4, batch_size: int = 256,
                 buffer_size: int = 100_000, learning_starts: int = 1000, train_freq: int = 1,
                 gradient_steps: int = 1, gamma: float = 0.99, tau: float = 0.005, net_arch: list[int] | None = None,
                 action_noise: float = 0.1, exploration_steps: int = 10_000, exploration_final_eps: float = 0.05,
                 target_update_interval: int = 1000) -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        algos = algorithms()
        if algo not in algos:
            raise ValueError(f"algo must be one of {', '.join(algos)}, got {algo!r}")
        discrete = isinstance(action_space, gym.spaces.Discrete)
        if (algo == "dqn") != discrete:
            raise ValueError(f"algo '{algo}' does not fit action space {action_space}: use dqn for Discrete, "
                             f"sac/td3/ddpg for Box")
        for name, v in (("batch_size", batch_size), ("buffer_size", buffer_size), ("train_freq", train_freq),
                        ("gradient_steps", gradient_steps), ("exploration_steps", exploration_steps),
                        ("target_update_interval", target_update_interval), ("lr", lr)):
            check_positive(name, v)
        check_positive("learning_starts", learning_starts, allow_zero=True)
        check_range("gamma", gamma, 0.0, 1.0)
        check_range("tau", tau, 0.0, 1.0)
        check_range("action_noise", action_noise, 0.0, 10.0)
        check_range("exploration_final_eps", exploration_final_eps, 0.0, 1.0)
        self.algo = algo
        self.batch_size, self.learning_starts = int(batch_size), int(learning_starts)
        self.train_freq, self.gradient_steps = int(train_freq), int(gradient_steps)
        self.action_noise = float(action_noise)
        self.exploration_steps = int(exploration_steps)
        kwargs: dict[str, Any] = {"learning_rate": lr, "buffer_size": buffer_size, "batch_size": batch_size,
                                  "gamma": gamma, "tau": tau, "learning_starts": learning_starts,
                                  "policy_kwargs": policy_kwargs_for(observation_space, net_arch,
                                                                     default_arch=[] if is_image(observation_space) else [256, 256])}
        if algo == "sac":  # SAC's "auto" target entropy reads it from an env, which there is none of
            kwargs["target_entropy"] = -float(np.prod(action_space.shape or ()))
        if algo == "dqn":
            kwargs.update(exploration_fraction=1.0, exploration_initial_eps=1.0,
                          exploration_final_eps=exploration_final_eps, target_update_interval=target_update_interval)
        self.model = build_model(algos[algo], observation_space, action_space, seed=seed, **kwargs)
        self.rng = np.random.default_rng(seed)
        self.steps = 0

    # -- acting ------------------------------------------------------------------------------
    def act(self, obs: Any) -> Any:
        if self.algo in ("sac", "dqn"):  # SAC samples its Gaussian; DQN is epsilon-greedy
            action, _ = self.model.predict(obs, deterministic=False)
            return cast_action(action, self.action_space)
        action, _ = self.model.predict(obs, deterministic=True)
        low, high = self.action_space.low, self.action_space.high  # type: ignore[attr-defined]
        noisy = action + self.rng.normal(0.0, self.action_noise, np.shape(action)) * (high - low) / 2
        return cast_action(np.clip(noisy, low, high), self.action_space)


    # -- learning ----------------------------------------------------------------------------
    def _add(self, *, obs: Any, next_obs: Any, executed: Any, novice: Any, reward: float, terminated: bool,
             intervened: bool, switched: bool = False) -> None:
        self.model.replay_buffer.add(np.asarray(obs)[None], np.asarray(next_obs)[None],
                                     buffer_action(self.model, executed, self.action_space)[None],
                                     np.array([reward], dtype=np.float32), np.array([terminated]), [{}])

    def observe(self, record: Transition, store: RecordStore) -> dict[str, float]:
        self._feed(record, store)
        self.model._current_progress_remaining = max(0.0, 1.0 - self.steps / self.exploration_steps)
        if self.algo == "dqn":
            self.model._on_step()  # SB3's own per-step hook: target update and epsilon schedule
        if self.steps > self.learning_starts and self.steps % self.train_freq == 0:
            self.model.train(gradient_steps=self.gradient_steps, batch_size=self.batch_size)
            self.updates += 1
        return {}

    def update(self, store: RecordStore) -> dict[str, float]:
        return {"sb3/steps": float(self.steps)}

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), **model_state(self.model), "steps": self.steps, "rng": rng_state(self.rng)}
        log_ent = getattr(self.model, "log_ent_coef", None)
        if isinstance(log_ent, torch.Tensor):
            state["log_ent_coef"] = log_ent.detach().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        load_model_state(self.model, state)
        self.steps = int(state["steps"])
        set_rng_state(self.rng, state["rng"])
        if "log_ent_coef" in state:
            with torch.no_grad():
                self.model.log_ent_coef.copy_(state["log_ent_coef"])
        self._refill_next()
