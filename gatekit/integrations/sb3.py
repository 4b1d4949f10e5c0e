"""gatekit inside stable-baselines3's own ``learn()``: the executed action in the replay buffer,
and the gate's training schedule as an SB3 callback.

An SB3 off-policy algorithm that steps an :class:`~gatekit.wrappers.InterventionWrapper` stores
in its replay buffer the action *it* chose (``buffer_actions``), not the one the env executed:
on every step the expert drove, the buffer would pair the expert's outcome with the novice's
action, and the novice would learn from actions that were never taken. Two pieces fix that:

* :class:`ExecutedActionReplayBuffer` (and :class:`ExecutedActionDictReplayBuffer` for dict
  observations): SB3's buffers, whose ``add`` replaces the action of each intervened step by
  the executed one, read from ``info["gatekit"]`` (scaled to [-1, 1] for Box spaces, as SB3
  stores actions there). Pass it as ``replay_buffer_class``.
* :class:`GatekitCallback`: runs a gatekit gate inside ``learn()``. A learned gate (AIM,
  Thrifty, Ensemble, SafeDAgger) retrains on its own schedule (every ``update_every`` new expert
  labels) and re-scores the SB3 model as the novice, deterministically; the wrapper's counters
  go to SB3's logger (``gatekit/*``). It warns when an off-policy model's buffer is not one of
  the buffers above.

On-policy algorithms (PPO, A2C) learn from the log-probability of the action they sampled;
replacing it by the expert's would make their gradient wrong, so they keep their own actions
(use an off-policy algorithm, or a gatekit learner, to learn from the expert's).

Example:
    >>> import gymnasium as gym
    >>> from stable_baselines3 import SAC
    >>> from gatekit import InterventionWrapper
    >>> from gatekit.criteria.simple import ActionGapCriterion
    >>> from gatekit.experts.classic import PendulumExpert
    >>> env = gym.make("Pendulum-v1")
    >>> env = InterventionWrapper(env, expert=PendulumExpert(env=env), criterion=ActionGapCriterion(threshold=0.25))
    >>> model = SAC("MlpPolicy", env, replay_buffer_class=ExecutedActionReplayBuffer, learning_starts=50, seed=0)
    >>> model = model.learn(60, callback=GatekitCallback())
    >>> model.replay_buffer.executed_replaced > 0      # intervened steps stored with the expert's action
    True
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback

from gatekit.criteria.learned import LearnedCriterion
from gatekit.wrappers.intervention import K_EXECUTED_ACTION, K_INTERVENED, InterventionWrapper

INFO_KEY = "gatekit"


def buffer_form(action: Any, space: gym.Space) -> np.ndarray:
    """An env action as SB3's off-policy algorithms store it: scaled from the Box's bounds to
    [-1, 1] (``OffPolicyAlgorithm._sample_action`` does so for every Box space), as is otherwise."""
    a = np.asarray(action)
    if isinstance(space, gym.spaces.Box):
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        return (2.0 * ((a.astype(np.float64) - low) / (high - low)) - 1.0).astype(np.float32)
    return a


def executed_actions(actions: np.ndarray, infos: list[dict[str, Any]], space: gym.Space, *,
                     info_key: str = INFO_KEY) -> tuple[np.ndarray, int]:
    """``actions`` (one row per env, as SB3 hands them to its buffer) with each intervened env's
    row replaced by the executed action of its ``info[info_key]``; and how many were replaced."""
    out = np.array(actions, copy=True)
    replaced = 0
    for i, info in enumerate(infos):
        gate = info.get(info_key) if isinstance(info, dict) else None
        if not gate or not gate.get(K_INTERVENED):
            continue
        row = buffer_form(gate[K_EXECUTED_ACTION], space)
        out[i] = np.asarray(row, dtype=out.dtype).reshape(out[i].shape)
        replaced += 1
    return out, replaced


class _ExecutedActions:
    """The ``add`` of the buffers below (a mixin before SB3's buffer class)."""

    action_space: gym.Space
    info_key: str = INFO_KEY
    executed_replaced: int = 0
    """How many stored steps got the executed (expert's) action in place of the novice's."""

    def add(self, obs: Any, next_obs: Any, action: np.ndarray, reward: np.ndarray, done: np.ndarray,
            infos: list[dict[str, Any]]) -> None:
        action, replaced = executed_actions(action, infos, self.action_space, info_key=self.info_key)
        self.executed_replaced += replaced
        super().add(obs, next_obs, action, reward, done, infos)  # type: ignore[misc]


class ExecutedActionReplayBuffer(_ExecutedActions, ReplayBuffer):
    """SB3's ``ReplayBuffer`` that stores the executed action of each step a gatekit gate handed
    to the expert. Use it as ``replay_buffer_class`` of SAC, TD3, DDPG or DQN on an env wrapped
    by :class:`~gatekit.wrappers.InterventionWrapper` (or ``InterventionVecWrapper``).

    Args:
        info_key: the wrapper's ``info_key`` (``"gatekit"`` unless renamed); give it through
            ``replay_buffer_kwargs``.
        *args, **kwargs: SB3's ``ReplayBuffer`` arguments (SB3 passes them).
    """

    def __init__(self, *args: Any, info_key: str = INFO_KEY, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.info_key = info_key
        self.executed_replaced = 0


class ExecutedActionDictReplayBuffer(_ExecutedActions, DictReplayBuffer):
    """:class:`ExecutedActionReplayBuffer` for dict observations (SB3's ``DictReplayBuffer``)."""

    def __init__(self, *args: Any, info_key: str = INFO_KEY, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.info_key = info_key
        self.executed_replaced = 0


def find_wrapper(env: Any) -> Any:
    """The gatekit wrapper inside an SB3 model's env: an ``InterventionVecWrapper`` in the
    VecEnv chain, or the :class:`InterventionWrapper` of its (single) sub-env."""
    from gatekit.wrappers.vec import InterventionVecWrapper

    node = env
    while node is not None:
        if isinstance(node, InterventionVecWrapper):
            return node
        node = getattr(node, "venv", None)
    for sub in getattr(_innermost(env), "envs", []):
        while isinstance(sub, gym.Wrapper):
            if isinstance(sub, InterventionWrapper):
                return sub
            sub = sub.env
    raise ValueError("GatekitCallback: the model's env holds no gatekit InterventionWrapper; wrap the env "
                     "with InterventionWrapper(env, expert=..., criterion=...) before giving it to SB3")


def _innermost(venv: Any) -> Any:
    while hasattr(venv, "venv"):
        venv = venv.venv
    return venv


class _ModelNovice:
    """The SB3 model as the novice a gate re-scores: deterministic, batched."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_batch(self, obs: Any) -> np.ndarray:
        actions, _ = self.model.predict(np.asarray(obs), deterministic=True)
        return np.asarray(actions)


class GatekitCallback(BaseCallback):
    """Run a gatekit gate inside SB3's ``learn()`` (see the module docstring).

    After every env step: when the wrapper's criterion wants an update (a learned gate's own
    schedule, counted in expert labels of the wrapper's record store), train it against the
    model's current deterministic policy; log the wrapper's counters to SB3's logger.

    Args:
        log_every: env steps between writes of ``gatekit/takeover_rate``, ``gatekit/expert_steps``,
            ``gatekit/switches`` and the gate's update metrics to SB3's logger.
        verbose: SB3's verbosity.

    Raises:
        ValueError: at the start of ``learn()``: the env holds no gatekit wrapper, or a learned
            gate has no record store to train from.
    """

    def __init__(self, *, log_every: int = 1000, verbose: int = 0) -> None:
        super().__init__(verbose)
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.log_every = int(log_every)
        self.wrapper: Any = None
        self.gate_updates = 0
        self.last_metrics: dict[str, float] = {}

    def _on_training_start(self) -> None:
        self.wrapper = find_wrapper(self.training_env)
        crit = self.wrapper.criterion
        stores = getattr(self.wrapper, "stores", None) or [getattr(self.wrapper, "store", None)]
        if isinstance(crit, LearnedCriterion) and any(s is None for s in stores):
            raise ValueError(f"GatekitCallback: the learned gate '{crit.name}' trains on the wrapper's records; "
                             f"give the wrapper a store (InterventionWrapper(..., store=RecordStore(...)))")
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is not None and not isinstance(buffer, _ExecutedActions):
            warnings.warn(
                f"{type(self.model).__name__}'s replay buffer stores the novice's action on steps the expert drove; "
                f"pass replay_buffer_class=ExecutedActionReplayBuffer (gatekit.integrations.sb3) to store the "
                f"executed one", stacklevel=2)

    def _store(self) -> Any:
        # a vectorised wrapper's gate trains on its first sub-env's records (one shared schedule)
        stores = getattr(self.wrapper, "stores", None)
        return stores[0] if stores else getattr(self.wrapper, "store", None)

    def _on_step(self) -> bool:
        crit, store = self.wrapper.criterion, self._store()
        if store is not None and crit.wants_update(store):
            self.last_metrics = crit.update(store, _ModelNovice(self.model))
            self.gate_updates += 1
        if self.num_timesteps % self.log_every == 0:
            totals = self.wrapper.totals
            self.logger.record("gatekit/takeover_rate", totals.takeover_rate)
            self.logger.record("gatekit/expert_steps", totals.expert_steps)
            self.logger.record("gatekit/switches", totals.switches)
            for k, v in self.last_metrics.items():
                self.logger.record(f"gatekit/gate_{k}", v)
        return True


__all__ = ["ExecutedActionDictReplayBuffer", "ExecutedActionReplayBuffer", "GatekitCallback", "buffer_form",
           "executed_actions", "find_wrapper"]
