"""One protocol for "anything that maps an observation to an action", and one adapter to it.

:func:`as_policy` accepts a plain callable, a stable-baselines3 algorithm or policy, an
``imitation`` policy (those are SB3 policies), a torch module, or an object that already has
``predict``; it returns a :class:`Policy` that maps one observation to one action of the given
action space, and checks the spaces it can see.

Example:
    >>> import numpy as np, gymnasium as gym
    >>> from gatekit.policies import as_policy
    >>> obs_space, act_space = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (1,))
    >>> p = as_policy(lambda o: -o[:1], obs_space, act_space)
    >>> p(np.array([0.5, 0.0, 0.0], dtype=np.float32)).tolist()
    [-0.5]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from gatekit.errors import SpaceMismatchError


@runtime_checkable
class Policy(Protocol):
    """Maps a single observation to a single action of :attr:`action_space`."""

    observation_space: gym.Space
    action_space: gym.Space

    def __call__(self, obs: Any) -> Any: ...


@runtime_checkable
class NovicePredictor(Protocol):
    """The novice as a learned gate sees it: deterministic actions for a batch of observations.

    Every gatekit learner provides ``predict_batch`` (no exploration noise, no RNG drawn), so
    a gate that re-scores the novice's actions at its update sees what the novice would do,
    whatever learner trains it.
    """

    def predict_batch(self, obs: Any) -> np.ndarray: ...


def novice_actions(novice: Any, obs: np.ndarray) -> np.ndarray:
    """The novice's deterministic actions for a batch of observations.

    ``novice.predict_batch`` when it has one (one batched call), else ``novice(o)`` for each
    observation (a plain :class:`Policy`).

    Example:
        >>> import numpy as np
        >>> novice_actions(lambda o: 2 * o, np.ones((3, 1))).tolist()
        [[2.0], [2.0], [2.0]]
    """
    obs = np.asarray(obs)
    batch = getattr(novice, "predict_batch", None)
    if not callable(batch) and not callable(novice):
        raise TypeError(f"novice must have predict_batch(obs) or be a policy obs -> action, got {type(novice).__name__}")
    if len(obs) == 0:
        return np.zeros((0,))
    if callable(batch):
        return np.asarray(batch(obs))
    return np.stack([np.asarray(novice(o)) for o in obs])


class CallablePolicy:
    """A :class:`Policy` around a function ``obs -> action``; casts the action to the space."""

    def __init__(self, fn: Callable[[Any], Any], observation_space: gym.Space, action_space: gym.Space, *, name: str = "") -> None:
        self.fn = fn
        self.observation_space = observation_space
        self.action_space = action_space
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, obs: Any) -> Any:
        return cast_action(self.fn(obs), self.action_space)

    def __repr__(self) -> str:
        return f"CallablePolicy({self.name})"


def cast_action(action: Any, space: gym.Space) -> Any:
    """Return ``action`` in the canonical form gatekit uses for ``space``.

    Discrete actions become Python ints; Box actions become arrays of the space's dtype and
    shape. A mismatched shape raises :class:`SpaceMismatchError` naming both shapes.
    """
    if isinstance(space, gym.spaces.Discrete):
        arr = np.asarray(action)
        if arr.size != 1:
            raise SpaceMismatchError(f"expected one discrete action for {space}, got an array of shape {arr.shape}")
        return int(arr.reshape(()))
    if isinstance(space, gym.spaces.Box):
        arr = np.asarray(action, dtype=space.dtype)
        if arr.shape != space.shape:
            if arr.size == int(np.prod(space.shape)):
                return arr.reshape(space.shape)
            raise SpaceMismatchError(f"expected an action of shape {space.shape} for {space}, got shape {arr.shape}")
        return arr
    if isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return np.asarray(action, dtype=space.dtype).reshape(space.shape)
    return action


def check_spaces(what: str, got_obs: gym.Space | None, got_act: gym.Space | None, obs_space: gym.Space, act_space: gym.Space) -> None:
    """Raise :class:`SpaceMismatchError` when a component's spaces disagree with the env's."""
    for kind, got, want in (("observation", got_obs, obs_space), ("action", got_act, act_space)):
        if got is None:
            continue
        if not _compatible(got, want):
            raise SpaceMismatchError(f"{what}'s {kind} space {got} does not match the env's {want}; build it for this env")


def _compatible(a: gym.Space, b: gym.Space) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, gym.spaces.Discrete):
        return a.n == b.n  # type: ignore[attr-defined]
    if isinstance(a, gym.spaces.Box):
        return a.shape == b.shape
    return a == b


class SB3Policy:
    """A :class:`Policy` around anything with SB3's ``predict(obs, deterministic=...)``."""

    def __init__(self, model: Any, observation_space: gym.Space, action_space: gym.Space, *, deterministic: bool = True) -> None:
        self.model = model
        self.observation_space = observation_space
        self.action_space = action_space
        self.deterministic = deterministic

    def __call__(self, obs: Any) -> Any:
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return cast_action(action, self.action_space)


class TorchModulePolicy:
    """A :class:`Policy` around a ``torch.nn.Module``.

    Box actions: the module's output is the action. Discrete actions: the output holds one
    logit (or Q value) per action and the argmax is taken.
    """

    def __init__(self, module: Any, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.module = module
        self.observation_space = observation_space
        self.action_space = action_space

    def __call__(self, obs: Any) -> Any:
        import torch

        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).unsqueeze(0)
            out = self.module(x).squeeze(0).cpu().numpy()
        if isinstance(self.action_space, gym.spaces.Discrete):
            return int(np.argmax(out))
        return cast_action(out, self.action_space)


def as_policy(obj: Any, observation_space: gym.Space, action_space: gym.Space, *, deterministic: bool = True) -> Policy:
    """Turn ``obj`` into a :class:`Policy` for the given spaces.

    Args:
        obj: a :class:`Policy`, a callable ``obs -> action``, an SB3 ``BaseAlgorithm`` or
            ``BasePolicy`` (``imitation``'s policies included), a ``torch.nn.Module``, or any
            object with ``predict(obs, deterministic=...)``.
        observation_space: the env's observation space.
        action_space: the env's action space.
        deterministic: passed to ``predict`` for SB3-style objects.

    Raises:
        SpaceMismatchError: the object declares spaces that differ from the env's.
        TypeError: the object is none of the above.
    """
    declared_obs = getattr(obj, "observation_space", None)
    declared_act = getattr(obj, "action_space", None)
    if isinstance(declared_obs, gym.Space) or isinstance(declared_act, gym.Space):
        check_spaces(f"policy {type(obj).__name__}",
                     declared_obs if isinstance(declared_obs, gym.Space) else None,
                     declared_act if isinstance(declared_act, gym.Space) else None,
                     observation_space, action_space)
    if isinstance(obj, (CallablePolicy, SB3Policy, TorchModulePolicy)):
        return obj
    if hasattr(obj, "predict") and callable(obj.predict):
        return SB3Policy(obj, observation_space, action_space, deterministic=deterministic)
    try:
        import torch

        if isinstance(obj, torch.nn.Module):
            return TorchModulePolicy(obj, observation_space, action_space)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    if callable(obj):
        return CallablePolicy(obj, observation_space, action_space)
    raise TypeError(
        f"cannot use {type(obj).__name__} as a policy: expected a callable obs -> action, an SB3 "
        f"algorithm or policy, an imitation policy, or a torch.nn.Module"
    )
