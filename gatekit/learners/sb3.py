"""Stable-baselines3 off-policy algorithms as gatekit learners, and the SB3 glue they share.

gatekit's loop owns the env (the gate sits in it), so an SB3 algorithm here never calls
``learn()``: it is built from the spaces alone, fed one record per step into its replay buffer,
and trained with its own ``train(gradient_steps, batch_size)`` on the usual off-policy schedule
(``learning_starts``, ``train_freq``, ``gradient_steps``). Everything else (networks, losses,
target updates, exploration) is SB3's.

* :class:`SB3OffPolicyLearner` (``sb3-offpolicy``): SAC, TD3, DDPG or DQN trained on the
  *executed* actions and the env's rewards (a plain RL learner that happens to be gated).
* :class:`SB3PPOLearner` (``sb3-ppo``): SB3's PPO on the env's rewards, fed the same way through
  its ``RolloutBuffer``.
* :func:`build_offpolicy`, :class:`MiniGridExtractor`, :func:`buffer_action`: shared with the
  PVP learner (:mod:`gatekit.learners.pvp`).

Image observations (``(C, H, W)`` uint8 stacks such as MiniGrid's 7x7 views, too small for SB3's
NatureCNN) go through gatekit's small CNN (:class:`gatekit.nets.MiniGridCNN`) as an SB3 features
extractor; SB3 scales them to [0, 1].

Resume. The replay buffers are not checkpointed: the record store is the truth, and the first
:meth:`~SB3OffPolicyLearner.observe` after :meth:`~SB3OffPolicyLearner.load_state_dict` refills
them from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np
import torch

from gatekit.learners.base import Learner, check_positive, check_range
from gatekit.nets import MiniGridCNN, is_image, rng_state, set_rng_state
from gatekit.policies import Policy, SB3Policy, cast_action
from gatekit.types import Transition

if TYPE_CHECKING:
    from gatekit.data import RecordStore

try:  # SB3 is an optional dependency: the extractor exists only where SB3 does
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError:  # pragma: no cover - exercised only without the imitation extra
    BaseFeaturesExtractor = torch.nn.Module  # type: ignore[assignment,misc]


class MiniGridExtractor(BaseFeaturesExtractor):  # type: ignore[misc,valid-type]
    """gatekit's small CNN (conv 16-32-64, 2x2 kernels, ``features`` tanh units) as an SB3
    features extractor for ``(C, H, W)`` image stacks (SB3 has already scaled them to [0, 1])."""

    def __init__(self, observation_space: gym.spaces.Box, features: int = 64) -> None:
        super().__init__(observation_space, features)
        self.cnn = MiniGridCNN(tuple(observation_space.shape), features)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.cnn(observations.float())


def policy_kwargs_for(observation_space: gym.Space, net_arch: list[int] | None, *, cnn_features: int = 64,
                      default_arch: list[int]) -> dict[str, Any]:
    """SB3 ``policy_kwargs``: the hidden layers, and gatekit's CNN for image stacks."""
    kwargs: dict[str, Any] = {"net_arch": list(net_arch) if net_arch is not None else list(default_arch)}
    if is_image(observation_space):
        kwargs["features_extractor_class"] = MiniGridExtractor
        kwargs["features_extractor_kwargs"] = {"features": cnn_features}
    return kwargs


def build_offpolicy(algo_cls: type, observation_space: gym.Space, action_space: gym.Space, *, seed: int,
                    **kwargs: Any) -> Any:
    """Build an SB3 algorithm (off-policy, or PPO) from spaces alone (no env: gatekit steps it).

    This is what SB3's own ``load`` does: construct without an env, set the spaces, then set
    up the model. It also avoids SB3's env wrapping, which would transpose a ``(12, 7, 7)``
    frame stack that it mistakes for a channels-last image.
    """
    from stable_baselines3.common.logger import configure

    model = algo_cls("MlpPolicy", env=None, seed=seed, device="cpu", _init_setup_model=False, **kwargs)
    model.observation_space = observation_space
    model.action_space = action_space
    model.n_envs = 1
    model._setup_model()
    model.set_logger(configure(folder=None, format_strings=[]))  # SB3 logs nowhere; gatekit logs
    return model


def buffer_action(model: Any, action: Any, space: gym.Space) -> np.ndarray:
    """An env action as SB3 stores it in a replay buffer: scaled to [-1, 1] for squashing
    policies on Box spaces (SB3's ``_store_transition`` does the same), the index otherwise."""
    if isinstance(space, gym.spaces.Box):
        a = np.asarray(action, dtype=np.float32).reshape(space.shape)
        if getattr(model.policy, "squash_output", False):
            return model.policy.scale_action(a)
        return a
    return np.asarray(action).reshape(-1)


def clone_policy(policy: Any) -> Any:
    """A fresh, detached copy of an SB3 policy for evaluation.

    Rebuilt from its constructor parameters and weights (SB3's own save/load route) rather than
    deep-copied: a policy keeps the distribution of its last forward pass, a non-leaf tensor
    after training, and torch refuses to deepcopy those.
    """
    clone = type(policy)(**policy._get_constructor_parameters())
    clone.load_state_dict(policy.state_dict())
    clone.set_training_mode(False)
    return clone


def model_state(model: Any) -> dict[str, Any]:
    """What a checkpoint needs of an SB3 off-policy model beyond its buffers: the parameters
    (networks and optimisers) and the update counters that drive target updates (DQN also
    counts calls for its target-network schedule)."""
    from stable_baselines3 import DQN

    state: dict[str, Any] = {"params": model.get_parameters(), "n_updates": int(model._n_updates)}
    if isinstance(model, DQN):
        state["n_calls"] = int(model._n_calls)
    return state


def load_model_state(model: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`model_state` saved into a model of the same shape."""
    from stable_baselines3 import DQN

    model.set_parameters(state["params"], exact_match=True, device="cpu")
    model._n_updates = int(state.get("n_updates", 0))
    if isinstance(model, DQN):
        model._n_calls = int(state.get("n_calls", 0))


def _algorithms() -> dict[str, type]:
    from stable_baselines3 import DDPG, DQN, SAC, TD3

    return {"sac": SAC, "td3": TD3, "ddpg": DDPG, "dqn": DQN}


class SB3OffPolicyLearner(Learner):
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
        algos = _algorithms()
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
        self.model = build_offpolicy(algos[algo], observation_space, action_space, seed=seed, **kwargs)
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self._refill = False

    # -- acting ------------------------------------------------------------------------------
    def act(self, obs: Any) -> Any:
        if self.algo in ("sac", "dqn"):  # SAC samples its Gaussian; DQN is epsilon-greedy
            action, _ = self.model.predict(obs, deterministic=False)
            return cast_action(action, self.action_space)
        action, _ = self.model.predict(obs, deterministic=True)
        low, high = self.action_space.low, self.action_space.high  # type: ignore[attr-defined]
        noisy = action + self.rng.normal(0.0, self.action_noise, np.shape(action)) * (high - low) / 2
        return cast_action(np.clip(noisy, low, high), self.action_space)

    def policy(self) -> Policy:
        return SB3Policy(clone_policy(self.model.policy), self.observation_space, self.action_space, deterministic=True)

    # -- learning ----------------------------------------------------------------------------
    def _add(self, obs: Any, next_obs: Any, executed: Any, reward: float, terminated: bool) -> None:
        self.model.replay_buffer.add(np.asarray(obs)[None], np.asarray(next_obs)[None],
                                     buffer_action(self.model, executed, self.action_space)[None],
                                     np.array([reward], dtype=np.float32), np.array([terminated]), [{}])

    def _refill_from(self, store: RecordStore) -> None:
        cols = {k: store.column(k) for k in ("obs", "next_obs", "executed_action", "reward", "terminated")}
        for i in range(len(store)):
            self._add(cols["obs"][i], cols["next_obs"][i], cols["executed_action"][i], float(cols["reward"][i]),
                      bool(cols["terminated"][i]))

    def observe(self, record: Transition, store: RecordStore) -> dict[str, float]:
        if self._refill:
            self._refill_from(store)  # includes this record
            self._refill = False
        else:
            # terminated only: a time-limit truncation is not a terminal state, so it bootstraps
            self._add(record.obs, record.next_obs, record.executed_action, record.reward, record.terminated)
        self.steps += 1
        self.model.num_timesteps = self.steps
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
        self._refill = True


class SB3PPOLearner(Learner):
    """SB3's PPO trained on the env's rewards (e.g. to make a neural expert for a new task).

    PPO is on-policy: each step's record goes into its ``RolloutBuffer`` with the value and
    the log-probability of the *executed* action under the current policy (evaluated when the
    record arrives, so a step the expert took over is scored as what was actually done); every
    ``n_steps`` records it computes GAE returns, bootstrapping from ``V(next_obs)`` unless the
    last step terminated, and runs SB3's own ``train()``. A time-limit truncation adds
    ``gamma * V(next_obs)`` to the reward, as SB3 does. Use it with the ``never`` gate for plain
    RL. Acting samples from the policy; :meth:`policy` is deterministic.

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
        self.model = build_offpolicy(PPO, observation_space, action_space, seed=seed, learning_rate=lr,
                                     n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs, gamma=gamma,
                                     gae_lambda=gae_lambda, clip_range=clip_range, ent_coef=ent_coef,
                                     policy_kwargs=arch)
        self.gamma = float(gamma)
        self._episode = -1

    def act(self, obs: Any) -> Any:
        action, _ = self.model.predict(obs, deterministic=False)
        return cast_action(action, self.action_space)

    def policy(self) -> Policy:
        return SB3Policy(clone_policy(self.model.policy), self.observation_space, self.action_space, deterministic=True)

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
        start = record.episode != self._episode
        self._episode = record.episode
        buf = self.model.rollout_buffer
        buf.add(np.asarray(record.obs)[None], action.reshape(1, -1), np.array([reward], np.float32),
                np.array([start]), values, log_prob)
        self.model.num_timesteps += 1
        if buf.full:
            last = self._value(record.next_obs)
            buf.compute_returns_and_advantage(last_values=last, dones=np.array([record.terminated or record.truncated]))
            self.model.train()
            buf.reset()
            self.updates += 1
        return {}

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
