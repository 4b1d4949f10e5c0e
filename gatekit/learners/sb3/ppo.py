"""SB3's PPO as a gatekit learner (``sb3-ppo``), e.g. to make a neural expert for a new task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from gatekit.learners.base import Learner, check_positive, check_range
from gatekit.learners.sb3.common import (
    SB3ModelLearner,
    buffer_action,
    build_model,
    policy_kwargs_for,
)
from gatekit.nets import is_image
from gatekit.policies import cast_action
from gatekit.types import Transition

if TYPE_CHECKING:
    from gatekit.data import RecordStore


class _Row(NamedTuple):
    """One step of a rollout, scored when it arrived (the policy does not change within one)."""

    obs: np.ndarray
    action: np.ndarray
    reward: float
    start: bool
    values: torch.Tensor
    log_prob: torch.Tensor
    next_obs: np.ndarray
    done: bool


class SB3PPOLearner(SB3ModelLearner, Learner):
    """SB3's PPO trained on the env's rewards (e.g. to make a neural expert for a new task).

    PPO is on-policy: each step's record goes into its ``RolloutBuffer`` with the value and
    the log-probability of the *executed* action under the current policy (evaluated when the
    record arrives, so a step the expert took over is scored as what was actually done); every
    ``n_steps`` records it computes GAE returns, bootstrapping from ``V(next_obs)`` unless the
    last step terminated, and runs SB3's own ``train()``. A time-limit truncation adds
    ``gamma * V(next_obs)`` to the reward, as SB3 does. With several envs (``env.n_envs``) the
    records of a rollout are kept per env and written as one contiguous segment each, so GAE runs
    along each env's own steps (a segment that ends mid-episode bootstraps the same way). Use it
    with the ``never`` gate for plain RL. Acting samples from the policy; :meth:`policy` is
    deterministic.

    Args:
        observation_space: the env's observation space (vector or image stack).
        action_space: Box or Discrete.
        seed: seeds SB3.
        lr: learning rate.
        n_steps: records per rollout (one PPO update each).
        batch_size: minibatch size.
        n_epochs: epochs over each rollout.
        gamma: discount.
        gae_lambda: GAE lambda.
        clip_range: PPO's clipping.
        ent_coef: entropy bonus.
        net_arch: hidden layers of policy and value networks (default ``[64, 64]``).

    Example:
        >>> import gymnasium as gym
        >>> learner = SB3PPOLearner(observation_space=gym.spaces.Box(-1, 1, (3,)),
        ...                         action_space=gym.spaces.Discrete(2), n_steps=8, batch_size=4)
        >>> learner.act(gym.spaces.Box(-1, 1, (3,)).sample()) in (0, 1)
        True
    """

    name = "sb3-ppo"

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0, lr: float = 3e-4,
                 n_steps: int = 2048, batch_size: int = 64, n_epochs: int = 10, gamma: float = 0.99,
                 gae_lambda: float = 0.95, clip_range: float = 0.2, ent_coef: float = 0.0,
                 net_arch: list[int] | None = None) -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        from stable_baselines3 import PPO

        for name, v in (("n_steps", n_steps), ("batch_size", batch_size), ("n_epochs", n_epochs), ("lr", lr)):
            check_positive(name, v)
        check_range("gamma", gamma, 0.0, 1.0)
        check_range("gae_lambda", gae_lambda, 0.0, 1.0)
        check_range("clip_range", clip_range, 0.0, 10.0)
        arch = policy_kwargs_for(observation_space, net_arch, default_arch=[] if is_image(observation_space) else [64, 64])
        self.model = build_model(PPO, observation_space, action_space, seed=seed, learning_rate=lr,
                                     n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs, gamma=gamma,
                                     gae_lambda=gae_lambda, clip_range=clip_range, ent_coef=ent_coef,
                                     policy_kwargs=arch)
        self.gamma = float(gamma)
        self._episodes: dict[int, int] = {}  # the episode each env's last step belonged to
        self._pending: dict[int, list[_Row]] = {}  # this rollout's steps, per env

    def act(self, obs: Any) -> Any:
        action, _ = self.model.predict(obs, deterministic=False)
        return cast_action(action, self.action_space)


    @torch.no_grad()
    def _value(self, obs: Any) -> torch.Tensor:
        return self.model.policy.predict_values(self.model.policy.obs_to_tensor(np.asarray(obs))[0])

    def observe(self, record: Transition, store: RecordStore) -> dict[str, float]:
        policy = self.model.policy
        policy.set_training_mode(False)
        obs_t = policy.obs_to_tensor(np.asarray(record.obs))[0]
        action = buffer_action(self.model, record.executed_action, self.action_space)
        if isinstance(self.action_space, gym.spaces.Box) and not getattr(policy, "squash_output", False):
            action = np.asarray(record.executed_action, dtype=np.float32).reshape(self.action_space.shape)
        with torch.no_grad():
            values, log_prob, _ = policy.evaluate_actions(obs_t, torch.as_tensor(action[None]))
        reward = float(record.reward)
        if record.truncated and not record.terminated:  # a time limit is not a terminal state
            reward += self.gamma * float(self._value(record.next_obs))
        start = record.episode != self._episodes.get(record.env)
        self._episodes[record.env] = record.episode
        self._pending.setdefault(record.env, []).append(
            _Row(np.asarray(record.obs), action, reward, start, values, log_prob, np.asarray(record.next_obs),
                 bool(record.terminated or record.truncated)))
        self.model.num_timesteps += 1
        if sum(len(rows) for rows in self._pending.values()) >= self.model.rollout_buffer.buffer_size:
            self._train_on_rollout()
        return {}

    def _train_on_rollout(self) -> None:
        """Write the rollout into SB3's buffer, one contiguous segment per env (GAE runs along
        each env's own steps), compute returns and advantages, and train."""
        buf = self.model.rollout_buffer
        segments = [self._pending[e] for e in sorted(self._pending) if self._pending[e]]
        for k, rows in enumerate(segments):
            for j, row in enumerate(rows):
                reward = row.reward
                if k < len(segments) - 1 and j == len(rows) - 1 and not row.done:
                    # the segment ends mid-episode and the next one is another env's: bootstrap here
                    reward += self.gamma * float(self._value(row.next_obs))
                start = row.start or (j == 0 and k > 0)  # no advantage flows across two envs' steps
                buf.add(row.obs[None], row.action.reshape(1, -1), np.array([reward], np.float32), np.array([start]),
                        row.values, row.log_prob)
        last = segments[-1][-1]
        buf.compute_returns_and_advantage(last_values=self._value(last.next_obs), dones=np.array([last.done]))
        self.model.train()
        buf.reset()
        self._pending = {}
        self.updates += 1

    def update(self, store: RecordStore) -> dict[str, float]:
        return {"ppo/steps": float(self.model.num_timesteps)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "params": self.model.get_parameters(),
                "num_timesteps": int(self.model.num_timesteps), "n_updates": int(self.model._n_updates)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.model.set_parameters(state["params"], exact_match=True, device="cpu")
        self.model.num_timesteps = int(state.get("num_timesteps", 0))
        self.model._n_updates = int(state.get("n_updates", 0))
        self.model.rollout_buffer.reset()  # a resumed run starts a fresh rollout
        self._pending = {}
