"""Reading an SB3 model zip without unpickling anything: its JSON ``data``, the readable
fields SB3 writes beside each pickle, the weights, and the spaces it was saved with."""

from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, SpaceMismatchError
from gatekit.experts.sb3.expert import ALGOS, FALLBACK, FAMILY_ALGOS, first_line


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
                          f"({first_line(exc)}); {FALLBACK} if it is an SB3 policy") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"expert.path: the policy.pth of '{path}' is not a state dict of tensors")
    return SB3Zip(data=data, state=dict(state), version=version)


def _policy_module(data: dict[str, Any]) -> str:
    policy = readable(data.get("policy_class"))
    module = policy.get("__module__", "") if isinstance(policy, dict) else ""
    return module if isinstance(module, str) else ""


def algo_from_data(data: dict[str, Any]) -> str | None:
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


def family_of_state(state: dict[str, Any]) -> str | None:
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
    algo = algo_from_data(z.data)
    if algo is None:
        raise unknown_algo(path, z)
    return algo


def unknown_algo(path: str | Path, z: SB3Zip) -> ConfigError:
    module = _policy_module(z.data) or "?"
    family = family_of_state(z.state)
    looks = f"; its weights are those of a {FAMILY_ALGOS[family]} policy" if family else ""
    return ConfigError(
        f"expert.algo: cannot tell the algorithm of '{path}' (policy class from module '{module}', SB3 {z.version}"
        f"{looks}); set expert.algo to one of {', '.join(ALGOS)}, {FALLBACK}"
    )


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


def check_readable_spaces(data: dict[str, Any], env: gym.Env, path: str | Path) -> None:
    """Compare the spaces a zip records (in text) with the env's; skip what the text cannot tell."""
    for kind, key, env_space in (("observation", "observation_space", model_observation_space(env.observation_space)),
                                 ("action", "action_space", env.action_space)):
        entry = data.get(key)
        got_kind = _space_kind(entry)
        if got_kind is not None:
            _check_one_space(kind, got_kind, readable(entry), env_space, path)


def _check_one_space(kind: str, got_kind: str, fields: dict[str, Any], env_space: gym.Space, path: str | Path) -> None:
    def mismatch(saved: str) -> SpaceMismatchError:
        env_side = "the env's action space is" if saved.startswith("actions") else "the env's is"
        return SpaceMismatchError(f"expert.path: '{path}' was trained on {saved}, but {env_side} {env_space}; "
                                  f"use a model trained on this env")

    shape = _readable_shape(fields)
    shown = f"{kind} space {got_kind} {shape}" if shape is not None else f"{kind} space {got_kind}"
    if got_kind != type(env_space).__name__:
        raise mismatch(shown)
    if shape is not None and got_kind in ("Box", "MultiBinary", "MultiDiscrete") and shape != env_space.shape:
        raise mismatch(shown)
    if isinstance(env_space, gym.spaces.Discrete):
        try:
            n, start = int(fields.get("n")), int(fields.get("start", 0))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        if (n, start) != (int(env_space.n), int(env_space.start)):
            raise mismatch(f"{kind} space Discrete({n}, start={start})")
    if kind == "action" and isinstance(env_space, gym.spaces.Box):
        # predict() clips or rescales actions to the model's bounds: they must be the env's.
        for bound, want in (("low", env_space.low), ("high", env_space.high)):
            got = _readable_bounds(fields.get(bound), env_space.shape)
            if got is not None and not np.allclose(got, want):
                raise mismatch(f"actions with {bound} {got.tolist()}")


def is_sb3_zip(file: Path) -> bool:
    with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(file) as zf:
        return "data" in zf.namelist() and "policy.pth" in zf.namelist()
    return False


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
