"""stable-baselines3 policies as gatekit :class:`Expert` objects, loaded without running pickles.

One expert class, :class:`SB3PolicyExpert`, acts with and scores actions under an SB3 policy.
Two registered loaders build it from a file:

* :func:`sb3_zip` (registry name ``sb3``) reads a model zip written by ``model.save(...)``
  (PPO, A2C, SAC, TD3, DDPG, DQN; SB3 2.x, SB3 1.x and forks of it);
* :func:`sb3_state_dict` (``sb3-policy``) reads a bare state dict
  (``torch.save(model.policy.state_dict(), "policy.pth")``).

Safe loading. An SB3 zip stores some entries of its ``data`` JSON (the policy class, the
spaces, schedules, often ``policy_kwargs``) as base64 cloudpickle, and ``PPO.load`` unpickles
them: a crafted zip runs arbitrary code the moment it is loaded. So by default nothing in a
zip is unpickled. ``data`` is parsed as JSON and only the human-readable fields SB3 writes next
to each pickle are read (the policy class's ``__module__``, the spaces' shapes and bounds, the
``policy_kwargs`` items as text); the weights come from ``policy.pth`` through
``torch.load(weights_only=True)``. The policy is rebuilt from the env's spaces and from the
tensors' names and shapes (hidden layer sizes, critics, gSDE, CNN feature sizes), then loaded
strictly. The activation, which no tensor records, comes from the readable ``policy_kwargs``,
else from the recipe's ``activation``, else SB3's default for the algorithm. The full SB3 path
(``PPO.load``, unpickling everything) runs only with ``trust_pickle: true``.

Actions come from the policy's ``predict(obs, deterministic=...)``, so an expert acts exactly
as the SB3 model it was saved from. Likelihoods (:meth:`SB3PolicyExpert.log_prob`) come from
the policy's action distribution (PPO, A2C: ``policy.get_distribution(obs).log_prob(action)``;
SAC: its squashed Gaussian actor). TD3, DDPG and DQN have no distribution: their experts have
``has_log_prob = False``.

Randomness. SB3 samples actions with torch's global generator. A stochastic expert
(``deterministic: false``) keeps its own torch generator state instead: each act swaps it
in, samples, and swaps the global state back, so the expert's samples depend only on its seed
(``reset(seed=...)``) and sampling never shifts the novice's or the learner's torch random
stream. Building the policy does not consume the global stream either. A stochastic DQN expert
draws its epsilon-greedy coin from :attr:`Expert.np_random` (SB3 uses numpy's global generator).

Models are loaded on the CPU: an expert acts on one observation at a time, where a GPU only
adds transfer latency.

Example:
    >>> from stable_baselines3 import PPO                          # doctest: +SKIP
    >>> from gatekit.envs import ENVS                              # doctest: +SKIP
    >>> env = ENVS.get("cartpole")(split="test")                   # doctest: +SKIP
    >>> PPO("MlpPolicy", env).learn(2048).save("ppo_cartpole.zip")  # doctest: +SKIP
    >>> expert = sb3_zip(env=env, path="ppo_cartpole.zip")         # doctest: +SKIP
    >>> obs, _ = env.reset(seed=0); expert.reset(seed=0)           # doctest: +SKIP
    >>> action = expert.act(obs)                                   # doctest: +SKIP
    >>> expert.log_prob(obs, action)                               # doctest: +SKIP

In a recipe::

    expert:
      id: sb3
      path: runs/ppo_expert_metadrive/expert.zip
      deterministic: false
      algo: ppo          # needed only for zips of SB3 forks (policy class outside stable_baselines3)
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, SpaceMismatchError
from gatekit.experts.base import Expert
from gatekit.policies import cast_action
from gatekit.registry import factory

Algo = Literal["ppo", "a2c", "sac", "td3", "ddpg", "dqn"]
ALGOS: tuple[str, ...] = ("ppo", "a2c", "sac", "td3", "ddpg", "dqn")

# Algorithms whose policies are the same class (same layers, same inference): a user's explicit
# choice within a family is honoured, across families it is an error.
_FAMILY = {"ppo": "on-policy", "a2c": "on-policy", "sac": "sac", "td3": "td3", "ddpg": "td3", "dqn": "dqn"}
_FAMILY_ALGOS = {"on-policy": "ppo or a2c", "sac": "sac", "td3": "td3 or ddpg", "dqn": "dqn"}

ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu", "gelu", "silu", "sigmoid")
# SB3's default activation per algorithm (what MlpPolicy uses when none is given), 1.x and 2.x.
_DEFAULT_ACTIVATION = {"ppo": "tanh", "a2c": "tanh", "sac": "relu", "td3": "relu", "ddpg": "relu", "dqn": "relu"}
# torch.nn class names of the activations, as SB3 writes them in the readable policy_kwargs.
_ACTIVATION_OF_CLASS = {"Tanh": "tanh", "ReLU": "relu", "ELU": "elu", "LeakyReLU": "leaky_relu", "GELU": "gelu",
                        "SiLU": "silu", "Sigmoid": "sigmoid"}

_FALLBACK = "or extract its policy.pth and use expert 'sb3-policy'"


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# the expert


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

    Attributes:
        has_log_prob: True for policies with an action distribution (PPO, A2C, SAC).
    """

    def __init__(self, *, env: gym.Env, policy: Any, algo: str, deterministic: bool = True, epsilon: float = 0.0,
                 path: str | None = None) -> None:
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
            value = float(dist.log_prob(act_t).reshape(-1)[0])
        return value + log_jacobian


# ---------------------------------------------------------------------------------------------
# reading SB3 zips without unpickling


@dataclass(frozen=True)
class SB3Zip:
    """What can be read from an SB3 model zip without running any code from it.

    Attributes:
        data: the ``data`` JSON; entries SB3 pickled are dicts whose ``":serialized:"`` blob is
            left undecoded (see :func:`readable`).
        state: the policy's tensors (``policy.pth``, read with ``weights_only=True``).
        version: the SB3 version that wrote it (``_stable_baselines3_version``), or ``"?"``.
    """

    data: dict[str, Any]
    state: dict[str, Any]
    version: str


def readable(entry: Any) -> Any:
    """The human-readable part of a ``data`` entry: plain JSON as is; for a pickled entry, the
    first-level attributes SB3 writes next to the pickle (JSON values, or ``str()`` of them)."""
    if isinstance(entry, dict) and ":serialized:" in entry:
        return {k: v for k, v in entry.items() if k not in (":type:", ":serialized:")}
    return entry


def read_sb3_zip(path: str | Path) -> SB3Zip:
    """Read an SB3 model zip's ``data`` JSON and policy weights; nothing in it is unpickled.

    Raises:
        ConfigError: not a zip, no ``data`` or ``policy.pth`` in it, or unreadable entries.
    """
    import torch

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"expert.path: '{path}' is not an SB3 model zip ({why}); give a file written by "
                           "model.save(...) (a bare policy state dict is expert 'sb3-policy')")

    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for needed in ("data", "policy.pth"):
                if needed not in names:
                    raise refuse(f"no '{needed}' in it")
            raw_data = zf.read("data")
            raw_state = zf.read("policy.pth")
            version = zf.read("_stable_baselines3_version").decode(errors="replace").strip() \
                if "_stable_baselines3_version" in names else "?"
    except (zipfile.BadZipFile, OSError) as exc:
        raise refuse(type(exc).__name__) from None
    try:
        data = json.loads(raw_data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise refuse(f"its data is not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise refuse("its data is not a JSON object")
    try:
        state = torch.load(io.BytesIO(raw_state), map_location="cpu", weights_only=True)
    except Exception as exc:  # a weights-only load refuses anything but tensors and plain containers
        raise ConfigError(f"expert.path: cannot read the weights (policy.pth) of '{path}' as tensors "
                          f"({_first_line(exc)}); {_FALLBACK} if it is an SB3 policy") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"expert.path: the policy.pth of '{path}' is not a state dict of tensors")
    return SB3Zip(data=data, state=dict(state), version=version)


def _policy_module(data: dict[str, Any]) -> str:
    policy = readable(data.get("policy_class"))
    module = policy.get("__module__", "") if isinstance(policy, dict) else ""
    return module if isinstance(module, str) else ""


def _algo_from_data(data: dict[str, Any]) -> str | None:
    """The algorithm of a zip written by stable_baselines3 itself, from readable fields; None
    for policy classes of other packages (forks), whose meaning SB3 cannot vouch for."""
    module = _policy_module(data)
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
    return None


def _family_of_state(state: dict[str, Any]) -> str | None:
    """The policy family whose layer names the weights carry (None: none of SB3's)."""
    keys = list(state)
    if any(k.startswith(("mlp_extractor.", "action_net.")) for k in keys):
        return "on-policy"
    if any(k.startswith("actor.latent_pi.") for k in keys):
        return "sac"
    if any(k.startswith("actor.mu.") for k in keys):
        return "td3"
    if any(k.startswith("q_net.q_net.") for k in keys):
        return "dqn"
    return None


def detect_algo(path: str | Path) -> str:
    """Name the SB3 algorithm that wrote the model zip at ``path`` (``ppo``, ``sac``, ...).

    Only readable fields of the zip's ``data`` JSON are used (the policy class's module and
    the algorithm's hyper-parameter names); nothing in it is unpickled.

    Raises:
        ConfigError: the file is not an SB3 model zip, or its policy class is not one of
            stable_baselines3's (a fork's zip: name the algorithm in the recipe).
    """
    z = read_sb3_zip(path)
    algo = _algo_from_data(z.data)
    if algo is None:
        raise _unknown_algo(path, z)
    return algo


def _unknown_algo(path: str | Path, z: SB3Zip) -> ConfigError:
    module = _policy_module(z.data) or "?"
    family = _family_of_state(z.state)
    looks = f"; its weights are those of a {_FAMILY_ALGOS[family]} policy" if family else ""
    return ConfigError(
        f"expert.algo: cannot tell the algorithm of '{path}' (policy class from module '{module}', SB3 {z.version}"
        f"{looks}); set expert.algo to one of {', '.join(ALGOS)}, {_FALLBACK}"
    )


# --- the spaces a zip records, read from text -------------------------------------------------

_FLOAT = re.compile(r"[-+]?(?:inf|nan|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")


def _space_kind(entry: Any) -> str | None:
    """``Box``, ``Discrete``, ... from a pickled space's ``":type:"`` (gym or gymnasium)."""
    if not isinstance(entry, dict) or not isinstance(entry.get(":type:"), str):
        return None
    m = re.fullmatch(r"<class '(?:gym|gymnasium)\.spaces\.[a-z_]+\.(\w+)'>", entry[":type:"])
    return m.group(1) if m else None


def _readable_shape(fields: dict[str, Any]) -> tuple[int, ...] | None:
    shape = fields.get("_shape", fields.get("shape"))  # gymnasium / gym >= 0.21 use _shape
    if isinstance(shape, list) and all(isinstance(n, int) for n in shape):
        return tuple(shape)
    return None


def _readable_bounds(text: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """A Box bound from numpy's printed array; None when numpy elided it (``...``) or it is odd."""
    if not isinstance(text, str) or "..." in text:
        return None
    values = _FLOAT.findall(text)
    size = int(np.prod(shape)) if shape else 1
    if len(values) not in (1, size):
        return None
    return np.broadcast_to(np.array([float(v) for v in values]), (size,)).reshape(shape)


def model_observation_space(space: gym.Space) -> gym.Space:
    """The observation space an SB3 model trained on ``space`` holds: SB3 trains image policies
    on channel-first copies of channel-last images (VecTransposeImage) and transposes
    observations itself in ``predict``."""
    from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
    from stable_baselines3.common.vec_env import VecTransposeImage

    if isinstance(space, gym.spaces.Dict):
        return gym.spaces.Dict({k: model_observation_space(s) for k, s in space.spaces.items()})
    if isinstance(space, gym.spaces.Box) and is_image_space(space) and not is_image_space_channels_first(space):
        return VecTransposeImage.transpose_space(space)
    return space


def _check_readable_spaces(data: dict[str, Any], env: gym.Env, path: str | Path) -> None:
    """Compare the spaces a zip records (in text) with the env's; skip what the text cannot tell."""
    fix = "use a model trained on this env"
    for kind, key, env_space in (("observation", "observation_space", model_observation_space(env.observation_space)),
                                 ("action", "action_space", env.action_space)):
        entry = data.get(key)
        got_kind = _space_kind(entry)
        if got_kind is None:
            continue
        fields = readable(entry)
        shape = _readable_shape(fields)
        shown = f"{got_kind} {shape}" if shape is not None else got_kind
        if got_kind != type(env_space).__name__:
            raise SpaceMismatchError(f"expert.path: '{path}' was trained on {kind} space {shown}, but the env's is {env_space}; {fix}")
        if shape is not None and got_kind in ("Box", "MultiBinary", "MultiDiscrete") and shape != env_space.shape:
            raise SpaceMismatchError(f"expert.path: '{path}' was trained on {kind} space {shown}, but the env's is {env_space}; {fix}")
        if isinstance(env_space, gym.spaces.Discrete):
            try:
                n, start = int(fields.get("n")), int(fields.get("start", 0))
            except (TypeError, ValueError):
                continue
            if (n, start) != (int(env_space.n), int(env_space.start)):
                raise SpaceMismatchError(f"expert.path: '{path}' was trained on {kind} space Discrete({n}, start={start}), "
                                         f"but the env's is {env_space}; {fix}")
        if kind == "action" and isinstance(env_space, gym.spaces.Box):
            # predict() clips or rescales actions to the model's bounds: they must be the env's.
            for bound, want in (("low", env_space.low), ("high", env_space.high)):
                got = _readable_bounds(fields.get(bound), env_space.shape)
                if got is not None and not np.allclose(got, want):
                    raise SpaceMismatchError(f"expert.path: '{path}' was trained on actions with {bound} {got.tolist()}, "
                                             f"but the env's action space is {env_space}; {fix}")


# --- the architecture, from the tensors ----------------------------------------------------------


def _linear_sizes(state: dict[str, Any], prefix: str) -> list[int]:
    """Output sizes of the Linear layers ``{prefix}{i}.weight``, in layer order."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight")
    found = sorted((int(m.group(1)), tuple(t.shape)) for k, t in state.items() if (m := pattern.fullmatch(k)))
    return [shape[0] for _, shape in found if len(shape) == 2]


def _features_kwargs(state: dict[str, Any], prefix: str, obs_space: gym.Space, readable_kwargs: dict[str, Any],
                     path: str | Path) -> dict[str, Any]:
    """The features extractor (class and sizes) whose parameters sit under ``prefix``."""
    from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN

    keys = [k[len(prefix):] for k in state if k.startswith(prefix)]
    extra = readable_kwargs.get("features_extractor_kwargs")
    fe_kwargs = dict(extra) if isinstance(extra, dict) else {}
    if not keys:
        return {}
    if isinstance(obs_space, gym.spaces.Dict) and all(k.startswith("extractors.") for k in keys):
        dims = [tuple(state[prefix + k].shape)[0] for k in keys if re.fullmatch(r"extractors\.[^.]+\.linear\.0\.weight", k)]
        if dims:
            fe_kwargs["cnn_output_dim"] = dims[0]
        return {"features_extractor_class": CombinedExtractor, "features_extractor_kwargs": fe_kwargs}
    if "cnn.0.weight" in keys and "linear.0.weight" in keys:
        fe_kwargs["features_dim"] = tuple(state[prefix + "linear.0.weight"].shape)[0]
        return {"features_extractor_class": NatureCNN, "features_extractor_kwargs": fe_kwargs}
    raise ConfigError(
        f"expert.path: '{path}' has a custom features extractor (layer '{prefix}{keys[0]}'), which cannot be rebuilt "
        "without running code from the file; set expert.trust_pickle: true only if you trust the file"
    )


def _check_features_class(readable_kwargs: dict[str, Any], path: str | Path) -> None:
    text = readable_kwargs.get("features_extractor_class")
    if text is None:
        return
    m = re.fullmatch(r"<class '([\w.]+)\.(\w+)'>", str(text))
    known = ("FlattenExtractor", "NatureCNN", "CombinedExtractor")
    if not m or not m.group(1).endswith("common.torch_layers") or m.group(2) not in known:
        raise ConfigError(
            f"expert.path: '{path}' uses features extractor {text}, which cannot be rebuilt without running code "
            "from the file; set expert.trust_pickle: true only if you trust the file"
        )


def _activation_from_kwargs(readable_kwargs: dict[str, Any], path: str | Path) -> str | None:
    text = readable_kwargs.get("activation_fn")
    if text is None:
        return None
    m = re.fullmatch(r"<class 'torch\.nn\.modules\.activation\.(\w+)'>", str(text))
    if not m or m.group(1) not in _ACTIVATION_OF_CLASS:
        raise ConfigError(f"expert.activation: '{path}' uses activation {text}, which is not one of "
                          f"{', '.join(ACTIVATIONS)}; set expert.trust_pickle: true only if you trust the file")
    return _ACTIVATION_OF_CLASS[m.group(1)]


def infer_policy_kwargs(state: dict[str, Any], algo: str, env: gym.Env, *, readable_kwargs: dict[str, Any] | None = None,
                        path: str | Path = "?") -> dict[str, Any]:
    """SB3 ``policy_kwargs`` that rebuild the policy whose weights are ``state``.

    Layer sizes, critics, gSDE and CNN feature sizes come from the tensors' names and shapes;
    flags no tensor records (``squash_output``, ``use_expln``, ``clip_mean``,
    ``normalize_images``, ``share_features_extractor``) from ``readable_kwargs`` when given,
    else SB3's defaults. The activation is not included (no tensor records it).

    Raises:
        ConfigError: a structure SB3 2.x cannot rebuild (shared policy/value layers of
            SB3 < 1.8, custom feature extractors).
    """
    import torch

    rk = readable_kwargs or {}
    family = _FAMILY[algo]
    obs_space = model_observation_space(env.observation_space)
    act_dim = int(np.prod(env.action_space.shape)) if isinstance(env.action_space, gym.spaces.Box) else 1
    kwargs: dict[str, Any] = {}
    if isinstance(rk.get("normalize_images"), bool):
        kwargs["normalize_images"] = rk["normalize_images"]
    if family == "on-policy":
        if any(k.startswith("mlp_extractor.shared_net.") for k in state):
            raise ConfigError(f"expert.path: '{path}' has layers shared by its policy and value networks "
                              "(SB3 < 1.8), which SB3 2.x cannot rebuild")
        kwargs["net_arch"] = {"pi": _linear_sizes(state, "mlp_extractor.policy_net."),
                              "vf": _linear_sizes(state, "mlp_extractor.value_net.")}
        log_std = state.get("log_std")
        if log_std is not None and log_std.dim() == 2:  # gSDE: (latent, actions) or (latent, 1)
            kwargs["use_sde"] = True
            kwargs["full_std"] = not (log_std.shape[1] == 1 and act_dim > 1)
            for flag in ("squash_output", "use_expln"):
                if isinstance(rk.get(flag), bool):
                    kwargs[flag] = rk[flag]
        # SB3 >= 1.8 lists a shared extractor three times (features_, pi_features_,
        # vf_features_extractor); a separate value extractor has weights of its own.
        separate = [k for k in state if k.startswith("vf_features_extractor.")
                    and not torch.equal(state[k], state.get(k[len("vf_"):], torch.empty(0)))]
        kwargs["share_features_extractor"] = not separate
        kwargs.update(_features_kwargs(state, "features_extractor.", obs_space, rk, path))
    elif family in ("sac", "td3"):
        pi = _linear_sizes(state, "actor.latent_pi.") if family == "sac" else _linear_sizes(state, "actor.mu.")[:-1]
        qf = _linear_sizes(state, "critic.qf0.")[:-1]
        kwargs["net_arch"] = {"pi": pi, "qf": qf}
        kwargs["n_critics"] = len({m.group(1) for k in state if (m := re.match(r"critic\.qf(\d+)\.", k))}) or 1
        if family == "sac":
            log_std = state.get("actor.log_std")  # a Parameter with gSDE, a Linear layer without
            if log_std is not None:
                kwargs["use_sde"] = True
            if isinstance(rk.get("use_expln"), bool):
                kwargs["use_expln"] = rk["use_expln"]
            clip = rk.get("clip_mean")
            if isinstance(clip, (int, float)) and not isinstance(clip, bool):
                kwargs["clip_mean"] = float(clip)
        kwargs.update(_features_kwargs(state, "actor.features_extractor.", obs_space, rk, path))
    else:  # dqn
        kwargs["net_arch"] = _linear_sizes(state, "q_net.q_net.")[:-1]
        kwargs.update(_features_kwargs(state, "q_net.features_extractor.", obs_space, rk, path))
    return kwargs


def _adapt_old_keys(state: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    """Fill the layer names SB3 >= 1.8 added: an on-policy policy lists its shared features
    extractor also as ``pi_features_extractor`` and ``vf_features_extractor``; older versions
    wrote it once, as ``features_extractor``."""
    out = dict(state)
    for name in want:
        if name not in out and name.startswith(("pi_features_extractor.", "vf_features_extractor.")):
            old = name.split("_", 1)[1]
            if old in state:
                out[name] = state[old]
    return out


def _build_policy(env: gym.Env, algo: str, kwargs: dict[str, Any]) -> Any:
    """SB3's policy of ``algo`` for the env's spaces, built without touching torch's global RNG."""
    import torch

    cls = _algo_class(algo)
    alias = "MultiInputPolicy" if isinstance(env.observation_space, gym.spaces.Dict) else "MlpPolicy"
    if _FAMILY[algo] == "on-policy":
        kwargs = {"ortho_init": False, **kwargs}  # the weights are overwritten: skip the costly init
    with torch.random.fork_rng(devices=[]):
        return cls.policy_aliases[alias](model_observation_space(env.observation_space), env.action_space,
                                         _zero_schedule, **kwargs)


def _mismatch(got: dict[str, Any], want: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, layer) of the first layer missing, extra or of another shape; None if they agree."""
    for name, tensor in want.items():
        if name not in got:
            return "missing", name
        if tuple(got[name].shape) != tuple(tensor.shape):
            return "shape", name
    extra = [k for k in got if k not in want]
    return ("extra", extra[0]) if extra else None


def _load_policy(env: gym.Env, algo: str, state: dict[str, Any], kwargs: dict[str, Any], path: str | Path, *,
                 declared: bool) -> Any:
    """Build the policy and load ``state`` into it strictly; one-line errors name the layer.

    ``declared``: the architecture came from the recipe (a mismatch is the recipe's to fix),
    not from the tensors (then a mismatch means the weights do not fit the env's spaces).
    """
    policy = _build_policy(env, algo, kwargs)
    want = policy.state_dict()
    state = _adapt_old_keys(state, want)
    bad = _mismatch(state, want)
    if bad is not None:
        kind, name = bad
        arch = kwargs.get("net_arch")
        built = f"an SB3 {algo} policy with net_arch {arch} for this env"
        if kind == "shape" and not declared:
            raise SpaceMismatchError(
                f"expert.path: layer '{name}' is {tuple(state[name].shape)} in '{path}' but {tuple(want[name].shape)} "
                f"for this env's observation space {env.observation_space} and action space {env.action_space}; "
                "use a model trained on this env"
            )
        fix = ("set expert.algo, expert.net_arch (and expert.activation) to those the weights were trained with"
               if declared else f"set expert.algo to the algorithm it was trained with, {_FALLBACK}")
        if kind == "missing":
            raise ConfigError(f"expert.path: '{path}' has no layer '{name}', which {built} needs; {fix}")
        if kind == "extra":
            raise ConfigError(f"expert.path: '{path}' has layer '{name}', which {built} lacks; {fix}")
        raise ConfigError(f"expert.path: layer '{name}' is {tuple(state[name].shape)} in '{path}' but "
                          f"{tuple(want[name].shape)} in {built}; {fix}")
    policy.load_state_dict(state, strict=True)
    return policy


def _check_family(algo: str, state: dict[str, Any], path: str | Path) -> None:
    family = _family_of_state(state)
    if family is not None and family != _FAMILY[algo]:
        raise ConfigError(f"expert.algo: '{algo}', but the weights in '{path}' are those of a {_FAMILY_ALGOS[family]} "
                          f"policy; set expert.algo to {_FAMILY_ALGOS[family]}")


# ---------------------------------------------------------------------------------------------
# the loaders


def _resolve_path(path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    # model.save("x") writes x.zip, and SB3's load accepts "x" for it: so do we.
    if p.suffix != ".zip" and p.with_name(p.name + ".zip").is_file():
        return p.with_name(p.name + ".zip")
    raise ConfigError(f"expert.path: no file at '{path}'; give the path of an SB3 model zip (written by model.save)")


def _check_net_arch(net_arch: list[int] | None) -> None:
    if net_arch is not None and (not net_arch or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in net_arch)):
        raise ConfigError(f"expert.net_arch: expected a non-empty list of layer sizes >= 1, got {net_arch!r}")


@factory("expert")
def sb3_zip(*, env: gym.Env, path: str, algo: Literal["auto", "ppo", "a2c", "sac", "td3", "ddpg", "dqn"] = "auto",
            deterministic: bool = True, activation: str | None = None, trust_pickle: bool = False) -> SB3PolicyExpert:
    """Any stable-baselines3 model zip as an expert (registry name ``sb3``), loaded safely.

    Nothing in the zip is unpickled (see the module docstring): the policy is rebuilt from the
    env's spaces and the weights' names and shapes, and the weights are read as tensors only.
    Zips of SB3 1.x and of forks of SB3 load too; a fork's policy class (outside
    ``stable_baselines3``) does not say which algorithm it is, so ``algo`` must name it.

    Args:
        env: the env the expert advises on; the model's spaces must match it (checked
            against the spaces the zip records and against the tensors' shapes).
        path: the model zip (``model.save`` output; ``.zip`` may be left out, as for SB3).
        algo: ``auto`` reads the algorithm from the zip (zips of stable_baselines3's own
            policy classes); or one of ``ppo``, ``a2c``, ``sac``, ``td3``, ``ddpg``, ``dqn``.
        deterministic: act with the policy's mode (True) or sample from it (False; seeded by
            :meth:`SB3PolicyExpert.reset`). TD3/DDPG act deterministically either way; a
            stochastic DQN expert is epsilon-greedy with the model's final ``exploration_rate``.
        activation: the hidden layers' activation, used when the zip's readable
            ``policy_kwargs`` do not record one (default: the algorithm's SB3 default, tanh for
            PPO/A2C, relu otherwise); an error if it contradicts what they record.
        trust_pickle: load with SB3's own ``load``, which unpickles the zip's ``data``
            entries (policy class, spaces, ``policy_kwargs``, ...). That **runs arbitrary code
            stored in the file**: set it only for files you made or trust as you would a
            program. Needed only for policies with custom classes (features extractors,
            activations) that cannot be rebuilt from tensors.

    Raises:
        ConfigError: no file at ``path``, not an SB3 zip, an unknown algorithm (with the
            fallback: extract ``policy.pth`` and use ``sb3-policy``), or layers that do not
            fit the algorithm's policy.
        SpaceMismatchError: the model's observation or action space is not the env's.
    """
    file = _resolve_path(path)
    z = read_sb3_zip(file)
    found = _algo_from_data(z.data)
    if algo == "auto":
        if found is None:
            raise _unknown_algo(path, z)
        algo = found  # type: ignore[assignment]
    elif algo not in ALGOS:
        raise ConfigError(f"expert.algo: unknown algorithm '{algo}'; valid: auto, {', '.join(ALGOS)}")
    elif found is not None and _FAMILY[algo] != _FAMILY[found]:
        raise ConfigError(f"expert.algo: '{algo}', but '{path}' holds a {found} model; set expert.algo to auto or {found}")
    rate = z.data.get("exploration_rate", 0.0) if algo == "dqn" else 0.0
    epsilon = float(rate) if isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0 else 0.0
    if trust_pickle:
        policy = _load_trusted(file, path, algo, env)
    else:
        _check_family(algo, z.state, path)
        _check_readable_spaces(z.data, env, path)
        rk = readable(z.data.get("policy_kwargs"))
        rk = rk if isinstance(rk, dict) else {}
        _check_features_class(rk, path)
        recorded = _activation_from_kwargs(rk, path)
        if activation is not None and recorded is not None and activation != recorded:
            raise ConfigError(f"expert.activation: '{activation}', but '{path}' records activation {recorded}; "
                              "remove expert.activation")
        act_name = recorded or activation or _DEFAULT_ACTIVATION[algo]
        kwargs = infer_policy_kwargs(z.state, algo, env, readable_kwargs=rk, path=path)
        kwargs["activation_fn"] = activation_class(act_name, "expert.activation")
        policy = _load_policy(env, algo, z.state, kwargs, path, declared=False)
    return SB3PolicyExpert(env=env, policy=policy, algo=algo, deterministic=deterministic, epsilon=epsilon, path=str(file))


def _load_trusted(file: Path, path: str, algo: str, env: gym.Env) -> Any:
    """SB3's own ``load`` (unpickles the zip's data: runs code from it); returns the policy."""
    cls = _algo_class(algo)
    # Training-only state is replaced: schedules are closures that often fail to load under
    # another Python version, and an expert never trains.
    custom = {"learning_rate": 0.0, "lr_schedule": _zero_schedule, "clip_range": _zero_schedule,
              "exploration_schedule": _zero_schedule}
    # Off-policy models rebuild their replay buffer on load (a million transitions by default).
    extra = {"buffer_size": 1} if _FAMILY[algo] in ("sac", "td3", "dqn") else {}
    try:
        model = cls.load(file, device="cpu", custom_objects=custom, **extra)
    except Exception as exc:  # code from the file ran: anything can come back
        raise ConfigError(f"expert.path: cannot load '{path}' as an SB3 {algo} model with trust_pickle ({_first_line(exc)}); "
                          f"{_FALLBACK}") from None
    check_model_spaces(f"the SB3 model '{path}'", model.observation_space, model.action_space, env)
    return model.policy


@factory("expert")
def sb3_state_dict(*, env: gym.Env, path: str, algo: Algo = "ppo", net_arch: list[int] | None = None,
                   activation: str | None = None, deterministic: bool = True) -> SB3PolicyExpert:
    """A bare SB3 policy state dict (``policy.pth``) as an expert (registry name ``sb3-policy``).

    The policy is SB3's ``MlpPolicy`` (``MultiInputPolicy`` for Dict observations) of ``algo``
    built for the env's spaces, then loaded with the file's weights (read with
    ``torch.load(weights_only=True)``: no code from the file runs), strictly: every layer must
    be there, with the shape the architecture gives it.

    Args:
        env: the env the expert advises on (its spaces size the input and output layers).
        path: a file written by ``torch.save(model.policy.state_dict(), path)``.
        algo: the algorithm whose policy class it is: ``ppo``, ``a2c``, ``sac``, ``td3``,
            ``ddpg`` or ``dqn``.
        net_arch: hidden layer sizes (SB3's list form, used for every network of the policy),
            checked against the weights; None: read from the weights' shapes (as are the
            number of critics, gSDE and CNN feature sizes either way).
        activation: ``tanh``, ``relu``, ``elu``, ``leaky_relu``, ``gelu``, ``silu`` or
            ``sigmoid``; None: the algorithm's SB3 default (tanh for PPO/A2C, relu otherwise).
            The state dict does not record it, so it must be declared right.
        deterministic: as for :func:`sb3_zip` (a DQN policy has no epsilon: always greedy).

    Raises:
        ConfigError: no file, not a state dict, or a layer missing, extra or of another shape
            (the message names the layer and both shapes).
    """
    import torch

    if algo not in ALGOS:
        raise ConfigError(f"expert.algo: unknown algorithm '{algo}'; valid: {', '.join(ALGOS)}")
    _check_net_arch(net_arch)
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"expert.path: no file at '{path}'; give a policy state dict saved with torch.save(model.policy.state_dict(), path)")
    if zipfile.is_zipfile(file) and _is_sb3_zip(file):
        raise ConfigError(f"expert.path: '{path}' is a whole SB3 model zip; use expert id 'sb3' for it")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... on bad files
        raise ConfigError(f"expert.path: cannot read '{path}' as a torch state dict ({_first_line(exc)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"expert.path: '{path}' does not hold a state dict of tensors; save model.policy.state_dict()")
    state = dict(state)
    act_name = activation if activation is not None else _DEFAULT_ACTIVATION[algo]
    act_cls = activation_class(act_name, "expert.activation")
    _check_family(algo, state, path)
    kwargs = {**infer_policy_kwargs(state, algo, env, path=path), "activation_fn": act_cls}
    if net_arch is not None:
        kwargs["net_arch"] = list(net_arch)
    policy = _load_policy(env, algo, state, kwargs, path, declared=net_arch is not None)
    return SB3PolicyExpert(env=env, policy=policy, algo=algo, deterministic=deterministic, path=str(file))


def _is_sb3_zip(file: Path) -> bool:
    with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(file) as zf:
        return "data" in zf.namelist() and "policy.pth" in zf.namelist()
    return False


# ---------------------------------------------------------------------------------------------
# spaces of a model loaded by SB3 itself (trust_pickle)


def _same_obs_space(model_space: gym.Space, env_space: gym.Space) -> bool:
    if type(model_space) is not type(env_space):
        return False
    if isinstance(env_space, gym.spaces.Box):
        return model_space.shape in (env_space.shape, model_observation_space(env_space).shape)
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


__all__ = ["ACTIVATIONS", "ALGOS", "SB3PolicyExpert", "SB3Zip", "activation_class", "check_model_spaces",
           "detect_algo", "infer_policy_kwargs", "model_observation_space", "read_sb3_zip", "readable", "sb3_state_dict",
           "sb3_zip"]
