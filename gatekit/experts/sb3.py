"""stable-baselines3 models and policies as gatekit :class:`Expert` objects.

Two ways in:

* :class:`SB3Expert` (registry name ``sb3``) loads a model zip written by SB3's
  ``model.save(...)`` (PPO, A2C, SAC, TD3, DDPG, DQN). The algorithm is read from the zip
  (``algo: auto``) or named.
* :class:`SB3PolicyExpert` (``sb3-policy``) rebuilds an SB3 policy of a declared architecture
  and loads a bare state dict (``torch.save(model.policy.state_dict(), "policy.pth")``),
  read with ``torch.load(weights_only=True)``: no code from the file is ever run.

Actions come from the policy's ``predict(obs, deterministic=...)``, so an expert acts exactly
as the SB3 model it wraps. Likelihoods (:meth:`log_prob`) come from the policy's action
distribution (PPO, A2C: ``policy.get_distribution(obs).log_prob(action)``; SAC: its squashed
Gaussian actor). TD3, DDPG and DQN have no distribution: their experts have
``has_log_prob = False``.

Randomness. SB3 samples actions with torch's global generator. A stochastic expert
(``deterministic: false``) keeps its own torch generator state instead: each :meth:`act`
swaps it in, samples, and swaps the global state back, so the expert's samples depend only on
its seed (``reset(seed=...)``) and sampling never shifts the novice's or the learner's torch
random stream. A stochastic DQN expert draws its epsilon-greedy coin from
:attr:`Expert.np_random` (SB3 itself uses numpy's global generator there).

Models are loaded on the CPU: an expert acts on one observation at a time, where a GPU only
adds transfer latency.

Example:
    >>> from stable_baselines3 import PPO                          # doctest: +SKIP
    >>> from gatekit.envs import ENVS                              # doctest: +SKIP
    >>> env = ENVS.get("cartpole")(split="test")                   # doctest: +SKIP
    >>> PPO("MlpPolicy", env).learn(2048).save("ppo_cartpole.zip")  # doctest: +SKIP
    >>> expert = SB3Expert(env=env, path="ppo_cartpole.zip")       # doctest: +SKIP
    >>> obs, _ = env.reset(seed=0); expert.reset(seed=0)           # doctest: +SKIP
    >>> action = expert.act(obs)                                   # doctest: +SKIP
    >>> expert.log_prob(obs, action)                               # doctest: +SKIP

In a recipe::

    expert:
      id: sb3
      path: runs/ppo_expert_metadrive/expert.zip
      deterministic: false
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, SpaceMismatchError
from gatekit.experts.base import Expert
from gatekit.policies import cast_action

Algo = Literal["ppo", "a2c", "sac", "td3", "ddpg", "dqn"]
ALGOS: tuple[str, ...] = ("ppo", "a2c", "sac", "td3", "ddpg", "dqn")

# Algorithms whose zips load into each other's classes (same policy class, same inference):
# a user's explicit choice within a family is honoured, across families it is an error.
_FAMILY = {"ppo": "on-policy", "a2c": "on-policy", "sac": "sac", "td3": "td3", "ddpg": "td3", "dqn": "dqn"}

ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu", "gelu", "silu", "sigmoid")
# SB3's default activation per algorithm (what MlpPolicy uses when none is given).
_DEFAULT_ACTIVATION = {"ppo": "tanh", "a2c": "tanh", "sac": "relu", "td3": "relu", "ddpg": "relu", "dqn": "relu"}


def _algo_class(algo: str) -> Any:
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


def _zero_schedule(_progress_remaining: float) -> float:
    """A learning-rate schedule for policies that are never trained (module level: picklable)."""
    return 0.0


# ---------------------------------------------------------------------------------------------
# reading SB3 zips


def detect_algo(path: str | Path) -> str:
    """Name the SB3 algorithm that wrote the model zip at ``path`` (``ppo``, ``sac``, ...).

    Only the zip's ``data`` JSON is read (the policy class's module and the algorithm's
    hyper-parameter names); nothing in it is unpickled.

    Raises:
        ConfigError: the file is not an SB3 model zip, or its algorithm is not one of
            :data:`ALGOS`.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            data = json.loads(zf.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"expert.path: '{path}' is not an SB3 model zip ({type(exc).__name__}); give a file written by "
            "model.save(...) (a bare policy state dict is expert 'sb3-policy')"
        ) from None
    policy = data.get("policy_class", {})
    module = policy.get("__module__", "") if isinstance(policy, dict) else ""
    if module == "stable_baselines3.common.policies":
        # PPO and A2C share ActorCriticPolicy; only PPO has a clip range.
        return "ppo" if "clip_range" in data else "a2c"
    if module == "stable_baselines3.sac.policies":
        return "sac"
    if module == "stable_baselines3.td3.policies":
        # DDPG is TD3 with a policy delay of 1 (and a TD3Policy): inference is the same.
        return "ddpg" if data.get("policy_delay") == 1 else "td3"
    if module == "stable_baselines3.dqn.policies":
        return "dqn"
    raise ConfigError(
        f"expert.algo: cannot tell the algorithm of '{path}' (policy module '{module or '?'}'); "
        f"set expert.algo to one of {', '.join(ALGOS)}"
    )


def _resolve_path(path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    # model.save("x") writes x.zip, and SB3's load accepts "x" for it: so do we.
    if p.suffix != ".zip" and p.with_name(p.name + ".zip").is_file():
        return p.with_name(p.name + ".zip")
    raise ConfigError(f"expert.path: no file at '{path}'; give the path of an SB3 model zip (written by model.save)")


def _same_obs_space(model_space: gym.Space, env_space: gym.Space) -> bool:
    if type(model_space) is not type(env_space):
        return False
    if isinstance(env_space, gym.spaces.Box):
        if model_space.shape == env_space.shape:
            return True
        # SB3 trains image policies on channel-first copies of channel-last envs
        # (VecTransposeImage) and transposes observations itself in predict().
        from stable_baselines3.common.preprocessing import is_image_space
        from stable_baselines3.common.vec_env import VecTransposeImage

        return is_image_space(env_space) and VecTransposeImage.transpose_space(env_space).shape == model_space.shape
    if isinstance(env_space, gym.spaces.Dict):
        assert isinstance(model_space, gym.spaces.Dict)  # same type, checked above
        return set(model_space.spaces) == set(env_space.spaces) and all(
            _same_obs_space(model_space[k], env_space[k]) for k in env_space.spaces)
    return model_space == env_space


def _same_action_space(model_space: gym.Space, env_space: gym.Space) -> bool:
    if type(model_space) is not type(env_space):
        return False
    if isinstance(env_space, gym.spaces.Box):
        assert isinstance(model_space, gym.spaces.Box)  # same type, checked above
        # predict() clips or rescales actions to the model's bounds: they must be the env's.
        return (model_space.shape == env_space.shape and np.allclose(model_space.low, env_space.low)
                and np.allclose(model_space.high, env_space.high))
    return model_space == env_space


def check_model_spaces(what: str, model_obs: gym.Space, model_act: gym.Space, env: gym.Env) -> None:
    """Raise a one-line :class:`SpaceMismatchError` when an SB3 model's spaces are not the env's."""
    for kind, got, want, same in (("observation", model_obs, env.observation_space, _same_obs_space),
                                  ("action", model_act, env.action_space, _same_action_space)):
        if not same(got, want):
            raise SpaceMismatchError(
                f"expert.path: {what} was trained on {kind} space {got}, but the env's is {want}; "
                "use a model trained on this env"
            )


# ---------------------------------------------------------------------------------------------
# the experts


class _SB3PolicyBase(Expert):
    """Acting and likelihoods of an SB3 ``BasePolicy``, with the expert's own torch RNG."""

    algo: str

    def __init__(self, env: gym.Env, policy: Any, algo: str, deterministic: bool) -> None:
        from stable_baselines3.common.policies import ActorCriticPolicy
        from stable_baselines3.sac.policies import SACPolicy

        super().__init__(env.observation_space, env.action_space)
        self.policy = policy
        self.algo = algo
        self.deterministic = bool(deterministic)
        policy.set_training_mode(False)
        # Per instance: the class attribute is the Expert default (False).
        self.has_log_prob = isinstance(policy, (ActorCriticPolicy, SACPolicy))
        # SAC keeps the gSDE flag on its actor, PPO/A2C on the policy.
        self._uses_sde = bool(getattr(policy, "use_sde", False) or getattr(getattr(policy, "actor", None), "use_sde", False))
        self._torch_state = self._torch_state_from(self.np_random)
        self.bind(env)

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

    def _epsilon(self) -> float:
        """Probability of a uniformly random action in stochastic mode (DQN's epsilon)."""
        return 0.0

    def act(self, obs: Any) -> Any:
        """The policy's action for ``obs``, as SB3's ``predict(obs, deterministic=...)`` gives it."""
        if self.deterministic:
            action, _ = self.policy.predict(obs, deterministic=True)
        elif self._epsilon() > 0.0 and self.np_random.random() < self._epsilon():
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
            value = float(dist.log_prob(act_t).reshape(-1)[0])
        return value + log_jacobian


class SB3Expert(_SB3PolicyBase):
    """Any stable-baselines3 model zip as an expert (registry name ``sb3``).

    Args:
        env: the env the expert advises on; the model's spaces must match it.
        path: the model zip (``model.save`` output; ``.zip`` may be left out, as for SB3).
        algo: ``auto`` reads the algorithm from the zip; or one of ``ppo``, ``a2c``, ``sac``,
            ``td3``, ``ddpg``, ``dqn``.
        deterministic: act with the policy's mode (True) or sample from it (False; seeded by
            :meth:`reset`). TD3/DDPG act deterministically either way; a stochastic DQN
            expert is epsilon-greedy with the model's final ``exploration_rate``.

    Attributes:
        model: the loaded SB3 algorithm (``model.policy`` is :attr:`policy`).
        has_log_prob: True for PPO, A2C and SAC models.

    Raises:
        ConfigError: no file at ``path``, not an SB3 zip, or a zip of another algorithm than
            the ``algo`` named.
        SpaceMismatchError: the model's observation or action space is not the env's.
    """

    def __init__(self, *, env: gym.Env, path: str,
                 algo: Literal["auto", "ppo", "a2c", "sac", "td3", "ddpg", "dqn"] = "auto",
                 deterministic: bool = True) -> None:
        file = _resolve_path(path)
        found = detect_algo(file)
        if algo == "auto":
            algo = found  # type: ignore[assignment]
        elif algo not in ALGOS:
            raise ConfigError(f"expert.algo: unknown algorithm '{algo}'; valid: auto, {', '.join(ALGOS)}")
        elif _FAMILY[algo] != _FAMILY[found]:
            raise ConfigError(f"expert.algo: '{algo}', but '{path}' holds a {found} model; set expert.algo to auto or {found}")
        cls = _algo_class(algo)
        # Training-only state is not unpickled: schedules are closures that often fail to load
        # under another Python version, and an expert never trains.
        custom = {"learning_rate": 0.0, "lr_schedule": _zero_schedule, "clip_range": _zero_schedule,
                  "exploration_schedule": _zero_schedule}
        # Off-policy models rebuild their replay buffer on load (a million transitions by
        # default): an expert needs none of it.
        extra = {"buffer_size": 1} if _FAMILY[algo] in ("sac", "td3", "dqn") else {}
        try:
            model = cls.load(file, device="cpu", custom_objects=custom, **extra)
        except (zipfile.BadZipFile, KeyError, ValueError, RuntimeError, AssertionError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"expert.path: cannot load '{path}' as an SB3 {algo} model ({text})") from None
        check_model_spaces(f"the SB3 model '{path}'", model.observation_space, model.action_space, env)
        self.model = model
        self.path = str(file)
        super().__init__(env, model.policy, algo, deterministic)

    def _epsilon(self) -> float:
        # DQN.predict(deterministic=False) is epsilon-greedy with the model's exploration rate.
        return float(getattr(self.model, "exploration_rate", 0.0)) if self.algo == "dqn" else 0.0


class SB3PolicyExpert(_SB3PolicyBase):
    """A bare SB3 policy state dict (``policy.pth``) of a declared architecture (``sb3-policy``).

    The policy is SB3's ``MlpPolicy`` (``MultiInputPolicy`` for Dict observations) of ``algo``
    built for the env's spaces with ``net_arch`` and ``activation``, then loaded with the
    file's weights, strictly: every layer must be there, with the shape the architecture
    gives it.

    Args:
        env: the env the expert advises on (its spaces size the input and output layers).
        path: a file written by ``torch.save(model.policy.state_dict(), path)``.
        algo: the algorithm whose policy class it is: ``ppo``, ``a2c``, ``sac``, ``td3``,
            ``ddpg`` or ``dqn``.
        net_arch: hidden layer sizes (SB3's list form, used for every network of the policy);
            None: the algorithm's SB3 default.
        activation: ``tanh``, ``relu``, ``elu``, ``leaky_relu``, ``gelu``, ``silu`` or
            ``sigmoid``; None: the algorithm's SB3 default (tanh for PPO/A2C, relu otherwise).
            The state dict does not record it, so it must be declared right.
        deterministic: as for :class:`SB3Expert` (a DQN policy has no epsilon: always greedy).

    Raises:
        ConfigError: no file, not a state dict, or a layer missing, extra or of another shape
            (the message names the layer and both shapes).
    """

    def __init__(self, *, env: gym.Env, path: str, algo: Algo = "ppo", net_arch: list[int] | None = None,
                 activation: str | None = None, deterministic: bool = True) -> None:
        import torch

        if algo not in ALGOS:
            raise ConfigError(f"expert.algo: unknown algorithm '{algo}'; valid: {', '.join(ALGOS)}")
        if net_arch is not None and (not net_arch or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in net_arch)):
            raise ConfigError(f"expert.net_arch: expected a non-empty list of layer sizes >= 1, got {net_arch!r}")
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"expert.path: no file at '{path}'; give a policy state dict saved with torch.save(model.policy.state_dict(), path)")
        if zipfile.is_zipfile(file) and _is_sb3_zip(file):
            raise ConfigError(f"expert.path: '{path}' is a whole SB3 model zip; use expert id 'sb3' for it")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... on bad files
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"expert.path: cannot read '{path}' as a torch state dict ({text[:160]})") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ConfigError(f"expert.path: '{path}' does not hold a state dict of tensors; save model.policy.state_dict()")

        act_name = activation if activation is not None else _DEFAULT_ACTIVATION[algo]
        kwargs: dict[str, Any] = {"activation_fn": activation_class(act_name, "expert.activation")}
        if net_arch is not None:
            kwargs["net_arch"] = list(net_arch)
        cls = _algo_class(algo)
        alias = "MultiInputPolicy" if isinstance(env.observation_space, gym.spaces.Dict) else "MlpPolicy"
        policy = cls.policy_aliases[alias](env.observation_space, env.action_space, _zero_schedule, **kwargs)
        arch = f"net_arch {list(net_arch) if net_arch is not None else 'default'}"
        _check_state_dict(state, policy.state_dict(), path, f"an SB3 {algo} policy with {arch} for this env")
        policy.load_state_dict(state, strict=True)
        self.path = str(file)
        self.net_arch = None if net_arch is None else list(net_arch)
        self.activation = act_name
        super().__init__(env, policy, algo, deterministic)


def _is_sb3_zip(file: Path) -> bool:
    with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(file) as zf:
        return "data" in zf.namelist() and "policy.pth" in zf.namelist()
    return False


def _check_state_dict(got: dict[str, Any], want: dict[str, Any], path: str, built: str) -> None:
    """One-line error naming the first layer that is missing, extra or of another shape."""
    fix = "set expert.algo, expert.net_arch (and expert.activation) to those the weights were trained with"
    for name, tensor in want.items():
        if name not in got:
            raise ConfigError(f"expert.path: '{path}' has no layer '{name}', which {built} needs; {fix}")
        if tuple(got[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"expert.path: layer '{name}' is {tuple(got[name].shape)} in '{path}' but {tuple(tensor.shape)} "
                f"in {built}; {fix}"
            )
    extra = [k for k in got if k not in want]
    if extra:
        raise ConfigError(f"expert.path: '{path}' has layer '{extra[0]}', which {built} lacks; {fix}")


__all__ = ["ACTIVATIONS", "ALGOS", "SB3Expert", "SB3PolicyExpert", "activation_class", "check_model_spaces",
           "detect_algo"]
