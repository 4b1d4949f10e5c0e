"""Small torch networks shared by learners and learned gates.

* :func:`encoder` — features of an observation: identity-flatten for vectors, the small CNN of
  the PVP/AIM MiniGrid agents for ``(C, 7, 7)`` image stacks (uint8 scaled to [0, 1]).
* :class:`Actor` — a deterministic novice: ``tanh`` output rescaled to a Box's bounds, or one
  logit per action of a Discrete space.
* :class:`QNet` — a value of (observation, action): concat(features, action) -> scalar for Box
  actions, one output per action for Discrete ones.
* :func:`bc_step` — one behaviour-cloning gradient step (MSE for Box, cross-entropy for Discrete).
* :func:`soft_update` — Polyak averaging of a target network.
* :class:`NumpyMLP`, :func:`numpy_qnet` — a frozen numpy copy of a vector network for single
  decisions, where torch's per-call overhead costs several times the arithmetic.
* :func:`as_obs_tensor`, :func:`as_action_tensor`, :func:`seeded_init` — the small conversions
  every network user needs, in one place.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn


def mlp(in_dim: int, out_dim: int, hidden: list[int], *, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """An MLP ``in_dim -> hidden... -> out_dim`` with ``activation`` between layers."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), activation()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


class MiniGridCNN(nn.Module):
    """Conv 16-32-64 (2x2 kernels) over a ``(C, H, W)`` stack, then a linear layer with tanh."""

    def __init__(self, in_shape: tuple[int, ...], features: int = 64) -> None:
        super().__init__()
        c = in_shape[0]
        self.conv = nn.Sequential(
            nn.Conv2d(c, 16, 2), nn.ReLU(), nn.Conv2d(16, 32, 2), nn.ReLU(), nn.Conv2d(32, 64, 2), nn.ReLU(), nn.Flatten()
        )
        with torch.no_grad():
            n = self.conv(torch.zeros(1, *in_shape)).shape[1]
        self.head = nn.Sequential(nn.Linear(n, features), nn.Tanh())
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


class Encoder(nn.Module):
    """Observation features: flatten vectors; CNN over images (uint8 scaled by 1/255)."""

    def __init__(self, space: gym.Space, *, cnn_features: int = 64) -> None:
        super().__init__()
        if not isinstance(space, gym.spaces.Box):
            raise TypeError(f"observations must be a Box space, got {space}; flatten them first")
        self.image = is_image(space)
        self.scale = 1.0 / 255.0 if self.image and space.dtype == np.uint8 else 1.0
        if self.image:
            self.net: nn.Module = MiniGridCNN(tuple(space.shape), cnn_features)
            self.dim = cnn_features
        else:
            self.net = nn.Flatten()
            self.dim = int(np.prod(space.shape))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() * self.scale
        if not self.image and x.dim() == 1:
            x = x.unsqueeze(0)
        return self.net(x)


class Actor(nn.Module):
    """Deterministic novice. Box: ``low + (tanh(out) + 1) / 2 * (high - low)``. Discrete: logits."""

    low: torch.Tensor   # buffers (Box only)
    high: torch.Tensor

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden: list[int]) -> None:
        super().__init__()
        self.encoder = Encoder(observation_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if isinstance(action_space, gym.spaces.Discrete):
            out = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box):
            out = int(np.prod(action_space.shape))
            low = np.broadcast_to(action_space.low, action_space.shape).astype(np.float32)
            high = np.broadcast_to(action_space.high, action_space.shape).astype(np.float32)
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ValueError(f"Box actions need finite bounds, got {action_space}")
            self.register_buffer("low", torch.as_tensor(low.reshape(-1)))
            self.register_buffer("high", torch.as_tensor(high.reshape(-1)))
        else:
            raise TypeError(f"action space must be Box or Discrete, got {action_space}")
        self.head = mlp(self.encoder.dim, out, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Box: actions in bounds; Discrete: logits."""
        out = self.head(self.encoder(obs))
        if self.discrete:
            return out
        return self.low + (torch.tanh(out) + 1.0) * 0.5 * (self.high - self.low)

    @torch.no_grad()
    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations (argmax for Discrete)."""
        out = self(torch.as_tensor(np.asarray(obs)))
        if self.discrete:
            return out.argmax(-1).cpu().numpy()
        return out.cpu().numpy()


class QNet(nn.Module):
    """A value of (observation, action): Box -> MLP on concat(features, action); Discrete -> one
    output per action over the features."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden: list[int]) -> None:
        super().__init__()
        self.encoder = Encoder(observation_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if isinstance(action_space, gym.spaces.Discrete):
            self.head = mlp(self.encoder.dim, int(action_space.n), hidden)
        else:
            self.head = mlp(self.encoder.dim + int(np.prod(action_space.shape or ())), 1, hidden)

    def all_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """Discrete only: values of every action, shape (batch, n)."""
        return self.head(self.encoder(obs))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Values of the given actions, shape (batch,)."""
        feats = self.encoder(obs)
        if self.discrete:
            return self.head(feats).gather(1, action.long().view(-1, 1)).squeeze(1)
        return self.head(torch.cat([feats, action.float().view(len(feats), -1)], dim=1)).squeeze(1)


def bc_loss(actor: Actor, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """MSE to the expert's actions (Box) or cross-entropy to its action indices (Discrete)."""
    out = actor(obs)
    if actor.discrete:
        return nn.functional.cross_entropy(out, actions.long().view(-1))
    return nn.functional.mse_loss(out, actions.float().view_as(out))


def bc_step(actor: Actor, optimizer: torch.optim.Optimizer, obs: torch.Tensor, actions: torch.Tensor) -> float:
    """One gradient step of :func:`bc_loss`; returns the loss."""
    loss = bc_loss(actor, obs, actions)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy Generator's state as plain values (safe for ``torch.load(weights_only=True)``)."""
    return dict(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def soft_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """Move ``target``'s parameters a fraction ``tau`` towards ``source``'s:
    ``target <- (1 - tau) * target + tau * source`` (Polyak averaging; ``tau = 1`` copies)."""
    with torch.no_grad():
        for p, tp in zip(source.parameters(), target.parameters(), strict=True):
            tp.lerp_(p, tau)


def as_obs_tensor(obs: Any) -> torch.Tensor:
    """A batch of observations as a tensor; uint8 images stay uint8 (the encoder scales them)."""
    arr = np.asarray(obs)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32, copy=False)
    if not arr.flags.writeable:  # the store's columns are read-only views; torch wants to own
        arr = arr.copy()
    return torch.as_tensor(arr)


def as_action_tensor(actions: Any, space: gym.Space) -> torch.Tensor:
    """A batch of actions as a tensor: int64 indices (Discrete) or float32 rows (Box)."""
    if isinstance(space, gym.spaces.Discrete):
        return torch.as_tensor(np.asarray(actions).reshape(-1).astype(np.int64))
    arr = np.asarray(actions, dtype=np.float32)
    return torch.as_tensor(arr.reshape(len(arr), -1))


def seeded_init(seed: int, build: Any) -> Any:
    """Call ``build()`` with torch's global RNG seeded by ``seed``, leaving the global RNG as it
    was: a network's initial weights then depend on its seed alone, not on construction order."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class NumpyMLP:
    """A frozen numpy copy of an MLP (``nn.Sequential`` of ``Linear`` and ReLU/Tanh), for
    forward passes on one observation at a time.

    A gate decides once per env step on a single observation; through torch, a small MLP's
    forward pass is dominated by framework overhead (module dispatch, tensor allocation), which
    numpy on the same float32 weights avoids. The copy does not follow later training: rebuild
    it after each update (its results match torch's up to float32 rounding).

    Example:
        >>> net = mlp(3, 1, [8])
        >>> x = np.ones((2, 3), np.float32)
        >>> fast = NumpyMLP(net)
        >>> bool(np.allclose(fast(x), net(torch.as_tensor(x)).detach().numpy(), atol=1e-6))
        True
    """

    def __init__(self, net: nn.Sequential) -> None:
        self.layers: list[tuple[str, Any]] = []
        for module in net:
            if isinstance(module, nn.Linear):
                w = module.weight.detach().cpu().numpy().astype(np.float32).T.copy()
                b = module.bias.detach().cpu().numpy().astype(np.float32).copy()
                self.layers.append(("linear", (w, b)))
            elif isinstance(module, nn.ReLU):
                self.layers.append(("relu", None))
            elif isinstance(module, nn.Tanh):
                self.layers.append(("tanh", None))
            else:
                raise TypeError(f"NumpyMLP supports Linear, ReLU and Tanh layers, got {type(module).__name__}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for kind, params in self.layers:
            if kind == "linear":
                w, b = params
                x = x @ w
                x += b
            elif kind == "relu":
                np.maximum(x, 0.0, out=x)
            else:
                np.tanh(x, out=x)
        return x


def _vector_features(encoder: Encoder) -> Any:
    scale = np.float32(encoder.scale)

    def features(obs: np.ndarray) -> np.ndarray:
        o = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        return o * scale if scale != 1.0 else o

    return features


def numpy_qnet(q: QNet) -> Any:
    """A function ``(obs batch, action batch) -> Q values (float64)`` that matches ``q`` on vector
    observations, in numpy; None for image observations (use ``q`` itself)."""
    if q.encoder.image:
        return None
    head = NumpyMLP(q.head)  # type: ignore[arg-type]
    features = _vector_features(q.encoder)

    def values(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        o = features(obs)
        if q.discrete:
            index = np.asarray(actions).reshape(-1).astype(np.int64)
            return head(o)[np.arange(len(o)), index].astype(np.float64)
        rows = np.asarray(actions, dtype=np.float32).reshape(len(o), -1)
        return head(np.concatenate([o, rows], axis=1))[:, 0].astype(np.float64)

    return values


def numpy_actor(actor: Actor) -> Any:
    """A function ``obs batch -> actor output`` (Box: actions in bounds; Discrete: logits) that
    matches ``actor`` on vector observations, in numpy; None for image observations."""
    if actor.encoder.image:
        return None
    head = NumpyMLP(actor.head)  # type: ignore[arg-type]
    features = _vector_features(actor.encoder)
    if actor.discrete:
        return lambda obs: head(features(obs))
    low, high = actor.low.detach().cpu().numpy(), actor.high.detach().cpu().numpy()
    return lambda obs: low + (np.tanh(head(features(obs))) + 1.0) * 0.5 * (high - low)
