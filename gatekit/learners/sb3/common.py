"""What gatekit's SB3 adapters share: building a model from spaces, the MiniGrid CNN as an SB3
features extractor, actions as SB3 stores them, deterministic batched prediction, evaluation
copies, checkpoint state, and feeding replay buffers from gatekit's records.

gatekit's loop owns the env (the gate sits in it), so an SB3 algorithm here never calls
``learn()``: it is built from the spaces alone (:func:`build_model`), fed one record per step,
and trained with its own ``train(...)``. Everything else (networks, losses, target updates,
exploration) is SB3's.

Image observations (``(C, H, W)`` uint8 stacks such as MiniGrid's 7x7 views, too small for SB3's
NatureCNN) go through gatekit's small CNN (:class:`gatekit.nets.MiniGridCNN`) as an SB3 features
extractor; SB3 scales them to [0, 1].
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from gatekit.nets import MiniGridCNN, is_image
from gatekit.policies import Policy, SB3Policy
from gatekit.types import Transition
from gatekit.validate import layer_sizes

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
    kwargs: dict[str, Any] = {"net_arch": layer_sizes("net_arch", net_arch if net_arch is not None else default_arch)}
    if is_image(observation_space):
        kwargs["features_extractor_class"] = MiniGridExtractor
        kwargs["features_extractor_kwargs"] = {"features": cnn_features}
    return kwargs


def build_model(algo_cls: type, observation_space: gym.Space, action_space: gym.Space, *, seed: int,
                    **kwargs: Any) -> Any:
    """Build an SB3 algorithm from spaces alone (no env: gatekit steps it).

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


def predict_batch(policy: Any, obs: Any) -> np.ndarray:
    """Deterministic actions of an SB3 model or policy for a batch of observations (one
    forward pass; Box actions unscaled to the space's bounds, as SB3's ``predict`` does)."""
    actions, _ = policy.predict(np.asarray(obs), deterministic=True)
    return np.asarray(actions)


def clone_policy(policy: Any) -> Any:
    """A fresh, detached copy of an SB3 policy for evaluation.

    Rebuilt from its constructor parameters and weights (SB3's own save/load route) rather than
    deep-copied: a policy keeps the distribution of its last forward pass, a non-leaf tensor
    after training, and torch refuses to deepcopy those.

    The constructor initialises fresh weights (overwritten at once) from torch's global RNG,
    which training also draws from (TD3's target noise, dropout): it runs on a forked RNG so
    that taking a policy for an evaluation leaves the training run unchanged.
    """
    with torch.random.fork_rng(devices=[]):
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


def algorithms() -> dict[str, type]:
    """SB3's off-policy algorithms by the names recipes use."""
    from stable_baselines3 import DDPG, DQN, SAC, TD3

    return {"sac": SAC, "td3": TD3, "ddpg": DDPG, "dqn": DQN}


class SB3ModelLearner:
    """Mixin of learners around one SB3 model (``self.model``): its deterministic novice, as a
    picklable copy for evaluation and batched for the gates."""

    model: Any
    observation_space: gym.Space
    action_space: gym.Space

    def policy(self) -> Policy:
        return SB3Policy(clone_policy(self.model.policy), self.observation_space, self.action_space, deterministic=True)

    def predict_batch(self, obs: Any) -> np.ndarray:
        return predict_batch(self.model, obs)


class StoreFedReplay:
    """Feeds an SB3 model's replay buffer(s) one record per step, and refills them from the
    record store after a resume (buffers are not checkpointed: the record store is the truth).

    Subclasses set ``self.model`` and implement :meth:`_add`; :meth:`_feed` is called from
    ``observe``. After ``load_state_dict`` they call :meth:`_refill_next` so that the next
    :meth:`_feed` replays every record of the store (the current one included) instead.
    """

    model: Any
    steps: int = 0
    _refill: bool = False

    @abstractmethod
    def _add(self, *, obs: Any, next_obs: Any, executed: Any, novice: Any, reward: float, terminated: bool,
             intervened: bool, switched: bool = False) -> None:
        """Add one transition to the buffer(s) (``switched``: control passed to the expert on it)."""

    def _feed(self, record: Transition, store: RecordStore) -> None:
        if self._refill:
            self._refill_from(store)  # includes this record
            self._refill = False
        else:
            # terminated only: a time-limit truncation is not a terminal state, so it bootstraps
            self._add(obs=record.obs, next_obs=record.next_obs, executed=record.executed_action,
                      novice=record.novice_action, reward=record.reward, terminated=record.terminated,
                      intervened=record.intervened, switched=record.switched)
        self.steps += 1
        self.model.num_timesteps = self.steps

    def _refill_from(self, store: RecordStore) -> None:
        cols = {k: store.column(k) for k in ("obs", "next_obs", "executed_action", "novice_action", "reward",
                                             "terminated", "intervened", "switched")}
        for i in range(len(store)):
            self._add(obs=cols["obs"][i], next_obs=cols["next_obs"][i], executed=cols["executed_action"][i],
                      novice=cols["novice_action"][i], reward=float(cols["reward"][i]),
                      terminated=bool(cols["terminated"][i]), intervened=bool(cols["intervened"][i]),
                      switched=bool(cols["switched"][i]))

    def _refill_next(self) -> None:
        self._refill = True
