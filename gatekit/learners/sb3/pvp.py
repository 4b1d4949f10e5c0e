"""PVP (Peng et al., NeurIPS 2023): proxy value propagation on stock stable-baselines3.

PVP learns from a human-gated expert without env rewards. Two replay buffers: the *expert*
buffer holds the steps the expert acted on (with the novice action it replaced), the *novice*
buffer all other steps. Each gradient step draws a balanced batch from both, and each critic
Q minimises a reward-free TD loss plus *proxy values*: +bound on the expert's action a_h, -bound
on the novice action a_n it replaced (``bound`` = 1).

The defaults follow PVP's public release (its TD3 learner on MetaDrive), which differs from the
paper's equation in ways that matter; each difference is an option with its own name:

* ``proxy_loss="release"``: the release computes each proxy term as a mean over the *whole*
  batch and scales it by the batch's fraction of intervened steps ``mean(I)``::

      0.5 * mean(stop * (Q(s, a) - y)^2)
    + mean(I) * [mean((Q(s, a) - bound)^2) + mean((Q(s, a_n) + bound)^2)]

  so every sample is pulled to +bound at its executed action and to -bound at its novice
  action (on a novice step the two coincide: a pull towards 0). ``proxy_loss="per-sample"``
  is the paper's masked form, ``0.5 * mean(I' * (Q(s, a_h) - bound)^2) + 0.5 * mean(I' *
  (Q(s, a_n) + bound)^2)`` with ``I'`` = intervened and a_n != a_h.
* ``stop_td=True``: the TD term is masked (``stop`` = 0) on the first step of each take-over,
  whose executed action the novice did not choose (the release's ``intervention_start_stop_td``).
* ``sampling="release"``: half of the batch from each buffer once *both* hold more than the
  full batch (``2 * batch_size``); before that the full batch from the one buffer that does,
  and no training while neither does. ``sampling="any"`` draws ``batch_size`` from every
  non-empty buffer from the first step on (early batches then repeat a few transitions).
* ``learning_starts``: as in SB3, the novice acts uniformly at random for that many steps
  (the gate still judges those actions) and training starts after them.

Here ``y = gamma * (1 - terminated) * min Q_target(s', a')`` with TD3's clipped target noise;
a time-limit truncation bootstraps (the release's env folds it into ``done``).

* Box actions: :class:`PVPTD3`, SB3's ``TD3`` with the critic loss above (twin critics,
  clipped target noise, delayed actor and target updates, all SB3's); the actor maximises Q.
* Discrete actions: :class:`PVPDQN`, SB3's ``DQN`` with the per-sample loss (the release's
  DQN loss is per-sample too); ``a'`` is the greedy action of the target network; its target
  updates and gradient clipping are SB3's.

Only :meth:`train` is overridden (the way PVP's release extends SB3); buffers are SB3
``ReplayBuffer`` s with three extra columns (:class:`PVPReplayBuffer`). After
``learning_starts`` the novice acts greedily (deterministic), as in PVP: exploration is the
expert's job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from gatekit.learners.base import Learner, check_positive, check_range
from gatekit.learners.sb3.common import (
    SB3ModelLearner,
    StoreFedReplay,
    buffer_action,
    build_model,
    load_model_state,
    model_state,
    policy_kwargs_for,
)
from gatekit.nets import is_image
from gatekit.policies import cast_action
from gatekit.types import Transition

if TYPE_CHECKING:
    from gatekit.data import RecordStore


class PVPSamples(NamedTuple):
    """A replay batch with PVP's two extra columns (all tensors, first dimension = batch)."""

    observations: torch.Tensor
    actions: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    rewards: torch.Tensor
    novice_actions: torch.Tensor
    interventions: torch.Tensor
    starts: torch.Tensor


class PVPReplayBuffer(ReplayBuffer):
    """SB3's ``ReplayBuffer`` plus the novice's proposed action, an intervention flag and a
    take-over-start flag (the first step of a take-over)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.novice_actions = np.zeros_like(self.actions)
        self.interventions = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.starts = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)

    def add_pvp(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray, novice_action: np.ndarray,
                done: bool, intervened: bool, start: bool = False) -> None:
        """Add one transition (reward-free: the reward column stays 0)."""
        self.novice_actions[self.pos] = np.asarray(novice_action).reshape(self.n_envs, self.action_dim)
        self.interventions[self.pos] = float(intervened)
        self.starts[self.pos] = float(start)
        self.add(np.asarray(obs)[None], np.asarray(next_obs)[None], np.asarray(action)[None],
                 np.zeros(1, np.float32), np.array([done]), [{}])

    def size_(self) -> int:
        return self.buffer_size if self.full else self.pos

    def sample_pvp(self, batch_size: int, rng: np.random.Generator) -> PVPSamples:
        inds = rng.integers(0, self.size_(), size=batch_size)
        base = self._get_samples(inds)
        # By field name: SB3's ReplayBufferSamples gains fields across releases (newer ones add
        # ``discounts`` for n-step returns), which PVP's loss does not use.
        return PVPSamples(observations=base.observations, actions=base.actions,
                          next_observations=base.next_observations, dones=base.dones, rewards=base.rewards,
                          novice_actions=self.to_torch(self.novice_actions[inds, 0, :]),
                          interventions=self.to_torch(self.interventions[inds, 0].reshape(-1, 1)),
                          starts=self.to_torch(self.starts[inds, 0].reshape(-1, 1)))


def _cat(parts: list[PVPSamples]) -> PVPSamples:
    if len(parts) == 1:
        return parts[0]
    return PVPSamples(*(torch.cat(cols, 0) for cols in zip(*parts, strict=True)))


class _PVPMixin:
    """Balanced sampling from the expert and novice buffers (see the module docstring)."""

    human_buffer: PVPReplayBuffer
    replay_buffer: PVPReplayBuffer
    pvp_rng: np.random.Generator
    q_value_bound: float
    sampling: str

    def balanced_batch(self, batch_size: int) -> PVPSamples | None:
        """``batch_size`` transitions from each buffer, by the ``sampling`` rule; None: skip."""
        buffers = (self.human_buffer, self.replay_buffer)
        if self.sampling == "any":
            parts = [b.sample_pvp(batch_size, self.pvp_rng) for b in buffers if b.size_() > 0]
            return _cat(parts) if parts else None
        # the release: a buffer is used once it holds more than the full batch (2 * batch_size)
        ready = [b for b in buffers if b.size_() > 2 * batch_size]
        if len(ready) == 2:
            return _cat([b.sample_pvp(batch_size, self.pvp_rng) for b in ready])
        if ready:
            return ready[0].sample_pvp(2 * batch_size, self.pvp_rng)
        return None


def _differs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row 1.0 where two batches of actions differ (any dimension), else 0.0; shape (B, 1)."""
    return (a != b).any(dim=1, keepdim=True).float()


class PVPTD3(_PVPMixin, TD3):  # type: ignore[misc]  # replay_buffer narrowed to PVPReplayBuffer
    """SB3's TD3 with PVP's reward-free, proxy-value critic loss (see the module docstring)."""

    proxy_loss: str
    stop_td: bool

    def _critic_loss(self, qb: torch.Tensor, qn: torch.Tensor, target_q: torch.Tensor, stop: torch.Tensor,
                     data: PVPSamples) -> torch.Tensor:
        """One critic's loss: TD on the executed action (masked by ``stop``) plus proxy values."""
        bound = self.q_value_bound
        td = 0.5 * F.mse_loss(stop * qb, stop * target_q)
        if self.proxy_loss == "release":
            # F.mse_loss averages over the batch *before* the intervention weight applies
            return td + data.interventions.mean() * (F.mse_loss(qb, torch.full_like(qb, bound))
                                                     + F.mse_loss(qn, torch.full_like(qn, -bound)))
        mask = data.interventions * _differs(data.actions, data.novice_actions)
        return td + 0.5 * torch.mean(mask * (qb - bound) ** 2) + 0.5 * torch.mean(mask * (qn + bound) ** 2)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])
        for _ in range(gradient_steps):
            data = self.balanced_batch(batch_size)
            if data is None:
                return
            self._n_updates += 1
            with torch.no_grad():
                noise = data.actions.clone().data.normal_(0, self.target_policy_noise)
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
                next_actions = (self.actor_target(data.next_observations) + noise).clamp(-1, 1)
                next_q = torch.cat(self.critic_target(data.next_observations, next_actions), dim=1)
                next_q, _ = torch.min(next_q, dim=1, keepdim=True)
                target_q = (1 - data.dones) * self.gamma * next_q  # reward-free
            stop = 1 - data.starts if self.stop_td else torch.ones_like(data.starts)
            q_behaviour = self.critic(data.observations, data.actions)
            q_novice = self.critic(data.observations, data.novice_actions)
            critic_loss = sum(self._critic_loss(qb, qn, target_q, stop, data)
                              for qb, qn in zip(q_behaviour, q_novice, strict=True))
            self.critic.optimizer.zero_grad()
            critic_loss.backward()  # type: ignore[union-attr]
            self.critic.optimizer.step()
            if self._n_updates % self.policy_delay == 0:
                actor_loss = -self.critic.q1_forward(data.observations, self.actor(data.observations)).mean()
                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self.actor.optimizer.step()
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
                polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)
            self.last_critic_loss = float(critic_loss.detach())  # type: ignore[union-attr]


class PVPDQN(_PVPMixin, DQN):  # type: ignore[misc]  # replay_buffer narrowed to PVPReplayBuffer
    """SB3's DQN with PVP's reward-free, proxy-value loss (see the module docstring)."""

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        for _ in range(gradient_steps):
            data = self.balanced_batch(batch_size)
            if data is None:
                return
            with torch.no_grad():
                next_q, _ = self.q_net_target(data.next_observations).max(dim=1)
                target_q = (1 - data.dones) * self.gamma * next_q.reshape(-1, 1)  # reward-free
            q_all = self.q_net(data.observations)
            q_behaviour = torch.gather(q_all, 1, data.actions.long())
            q_novice = torch.gather(q_all, 1, data.novice_actions.long())
            mask = data.interventions * _differs(data.actions, data.novice_actions)
            loss = (0.5 * F.mse_loss(q_behaviour, target_q)
                    + 0.5 * torch.mean(mask * (q_behaviour - self.q_value_bound) ** 2)
                    + 0.5 * torch.mean(mask * (q_novice + self.q_value_bound) ** 2))
            self.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            self.last_critic_loss = float(loss.detach())
        self._n_updates += gradient_steps


class PVPLearner(StoreFedReplay, SB3ModelLearner, Learner):
    """PVP: TD3 (Box actions) or DQN (Discrete) trained on proxy values, every env step.

    Args:
        observation_space: vector or ``(C, H, W)`` image-stack observations.
        action_space: Box (TD3) or Discrete (DQN).
        seed: seeds SB3 (networks), the buffer sampling and the random start actions.
        lr: learning rate.
        batch_size: transitions from *each* buffer per gradient step (the release on MetaDrive:
            64 + 64).
        buffer_size: capacity of each buffer.
        learning_starts: env steps, at the start, on which the novice acts uniformly at random
            (SB3's rule; the gate judges these actions as any other) and no training runs.
        train_freq: train every this many env steps.
        gradient_steps: gradient steps per training.
        first_update_steps: extra gradient steps at the first update (the end of the expert's
            warm-up), 0 for none (the release has none).
        proxy_loss: Box only: ``"release"`` (the release's batch-mean proxy terms) or
            ``"per-sample"`` (the paper's masked form); see the module docstring.
        stop_td: Box only: mask the TD term on take-over starts (the release's default).
        sampling: ``"release"`` (balanced once both buffers hold a full batch) or ``"any"``
            (every non-empty buffer from the first step); see the module docstring.
        gamma: discount of the reward-free TD target.
        tau: Polyak factor of the target networks.
        net_arch: hidden layers (default ``[256, 256]``; ``[]`` after the CNN for images).
        policy_delay: TD3's actor/target update period (gradient steps).
        target_update_interval: DQN: env steps between target-network updates.
        q_value_bound: the proxy value (+bound on the expert's action, -bound on the novice's).
        cnn_features: width of the CNN's tanh feature layer (image observations).

    Example:
        >>> import gymnasium as gym
        >>> learner = PVPLearner(observation_space=gym.spaces.Box(-1, 1, (3,)),
        ...                      action_space=gym.spaces.Discrete(2), net_arch=[8])
        >>> type(learner.model).__name__, learner.act(gym.spaces.Box(-1, 1, (3,)).sample()) in (0, 1)
        ('PVPDQN', True)
    """

    name = "pvp"

    def __init__(self, *, observation_space: gym.Space, action_space: gym.Space, seed: int = 0, lr: float = 1e-4,
                 batch_size: int = 100, buffer_size: int = 50_000, learning_starts: int = 0, train_freq: int = 1,
                 gradient_steps: int = 1, first_update_steps: int = 0, gamma: float = 0.99, tau: float = 0.005,
                 net_arch: list[int] | None = None, policy_delay: int = 2, target_update_interval: int = 1,
                 q_value_bound: float = 1.0, cnn_features: int = 64,
                 proxy_loss: Literal["release", "per-sample"] = "release", stop_td: bool = True,
                 sampling: Literal["release", "any"] = "release") -> None:
        super().__init__(observation_space=observation_space, action_space=action_space, seed=seed)
        if proxy_loss not in ("release", "per-sample"):
            raise ValueError(f"proxy_loss must be 'release' or 'per-sample', got {proxy_loss!r}")
        if sampling not in ("release", "any"):
            raise ValueError(f"sampling must be 'release' or 'any', got {sampling!r}")
        if not isinstance(stop_td, bool):
            raise ValueError(f"stop_td must be true or false, got {stop_td!r}")
        for name, v in (("batch_size", batch_size), ("buffer_size", buffer_size), ("train_freq", train_freq),
                        ("gradient_steps", gradient_steps), ("policy_delay", policy_delay),
                        ("target_update_interval", target_update_interval), ("cnn_features", cnn_features),
                        ("lr", lr), ("q_value_bound", q_value_bound)):
            check_positive(name, v)
        check_positive("learning_starts", learning_starts, allow_zero=True)
        check_positive("first_update_steps", first_update_steps, allow_zero=True)
        check_range("gamma", gamma, 0.0, 1.0)
        check_range("tau", tau, 0.0, 1.0)
        if isinstance(action_space, gym.spaces.Discrete):
            algo: type = PVPDQN
            extra: dict[str, Any] = {"target_update_interval": target_update_interval, "exploration_initial_eps": 0.0,
                                     "exploration_final_eps": 0.0}
        elif isinstance(action_space, gym.spaces.Box):
            algo, extra = PVPTD3, {"policy_delay": policy_delay}
        else:
            raise ValueError(f"action_space must be Box or Discrete, got {action_space}")
        self.batch_size, self.learning_starts = int(batch_size), int(learning_starts)
        self.train_freq, self.gradient_steps = int(train_freq), int(gradient_steps)
        self.first_update_steps = int(first_update_steps)
        arch = policy_kwargs_for(observation_space, net_arch, cnn_features=cnn_features,
                                 default_arch=[] if is_image(observation_space) else [256, 256])
        self.model = build_model(algo, observation_space, action_space, seed=seed, learning_rate=lr,
                                     buffer_size=buffer_size, batch_size=batch_size, gamma=gamma, tau=tau,
                                     learning_starts=learning_starts, policy_kwargs=arch,
                                     replay_buffer_class=PVPReplayBuffer, **extra)
        self.model.human_buffer = PVPReplayBuffer(buffer_size, observation_space, action_space, device="cpu", n_envs=1)
        self.model.pvp_rng = np.random.default_rng(seed)
        self.model.q_value_bound = float(q_value_bound)
        self.model.sampling = sampling
        self.model.proxy_loss = proxy_loss
        self.model.stop_td = stop_td
        self.model.last_critic_loss = float("nan")
        self.start_rng = np.random.default_rng([seed, 1])  # the random start actions (own stream)
        self.steps = 0

    # -- acting ------------------------------------------------------------------------------
    def act(self, obs: Any) -> Any:
        if self.steps < self.learning_starts:  # SB3's rule: uniform actions before training
            space = self.action_space
            if isinstance(space, gym.spaces.Discrete):
                return int(space.start + self.start_rng.integers(space.n))
            low, high = space.low, space.high  # type: ignore[attr-defined]
            return cast_action(self.start_rng.uniform(low, high).astype(space.dtype), space)
        action, _ = self.model.predict(obs, deterministic=True)
        return cast_action(action, self.action_space)


    # -- learning ----------------------------------------------------------------------------
    def _add(self, *, obs: Any, next_obs: Any, executed: Any, novice: Any, reward: float, terminated: bool,
             intervened: bool, switched: bool = False) -> None:
        # reward-free; a take-over start is the step on which control switched to the expert
        buf = self.model.human_buffer if intervened else self.model.replay_buffer
        buf.add_pvp(obs, next_obs, buffer_action(self.model, executed, self.action_space),
                    buffer_action(self.model, novice, self.action_space), terminated, intervened, switched)

    def observe(self, record: Transition, store: RecordStore) -> dict[str, float]:
        self._feed(record, store)
        if isinstance(self.model, DQN):
            self.model._on_step()  # SB3's per-step hook: the target network's update schedule
        if self.steps > self.learning_starts and self.steps % self.train_freq == 0:
            self.model.train(gradient_steps=self.gradient_steps, batch_size=self.batch_size)
        return {}

    def update(self, store: RecordStore) -> dict[str, float]:
        if self.updates == 0 and self.first_update_steps:
            self.model.train(gradient_steps=self.first_update_steps, batch_size=self.batch_size)
        self.updates += 1
        return {"pvp/expert_buffer": float(self.model.human_buffer.size_()),
                "pvp/novice_buffer": float(self.model.replay_buffer.size_()),
                "pvp/critic_loss": float(self.model.last_critic_loss)}

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **model_state(self.model), "steps": self.steps,
                "rng": dict(self.model.pvp_rng.bit_generator.state),
                "start_rng": dict(self.start_rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        load_model_state(self.model, state)
        self.steps = int(state["steps"])
        self.model.pvp_rng.bit_generator.state = state["rng"]
        if "start_rng" in state:
            self.start_rng.bit_generator.state = state["start_rng"]
        self._refill_next()
