"""Rebuilding an SB3 policy from its weights: layer sizes, critics, gSDE and CNN features from
the tensors' names and shapes, the activation from readable metadata, then a strict load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, SpaceMismatchError
from gatekit.experts.sb3.archive import family_of_state, model_observation_space
from gatekit.experts.sb3.expert import (
    ACTIVATION_OF_CLASS,
    ACTIVATIONS,
    FALLBACK,
    FAMILY,
    FAMILY_ALGOS,
    algo_class,
    zero_schedule,
)


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


def check_features_class(readable_kwargs: dict[str, Any], path: str | Path) -> None:
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


def activation_from_kwargs(readable_kwargs: dict[str, Any], path: str | Path) -> str | None:
    text = readable_kwargs.get("activation_fn")
    if text is None:
        return None
    m = re.fullmatch(r"<class 'torch\.nn\.modules\.activation\.(\w+)'>", str(text))
    if not m or m.group(1) not in ACTIVATION_OF_CLASS:
        raise ConfigError(f"expert.activation: '{path}' uses activation {text}, which is not one of "
                          f"{', '.join(ACTIVATIONS)}; set expert.trust_pickle: true only if you trust the file")
    return ACTIVATION_OF_CLASS[m.group(1)]


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
    rk = readable_kwargs or {}
    family = FAMILY[algo]
    obs_space = model_observation_space(env.observation_space)
    kwargs: dict[str, Any] = {}
    if isinstance(rk.get("normalize_images"), bool):
        kwargs["normalize_images"] = rk["normalize_images"]
    if family == "on-policy":
        act_dim = int(np.prod(env.action_space.shape)) if isinstance(env.action_space, gym.spaces.Box) else 1
        kwargs.update(_on_policy_kwargs(state, rk, act_dim, path))
        kwargs.update(_features_kwargs(state, "features_extractor.", obs_space, rk, path))
    elif family in ("sac", "td3"):
        kwargs.update(_actor_critic_kwargs(state, family, rk))
        kwargs.update(_features_kwargs(state, "actor.features_extractor.", obs_space, rk, path))
    else:  # dqn
        kwargs["net_arch"] = _linear_sizes(state, "q_net.q_net.")[:-1]
        kwargs.update(_features_kwargs(state, "q_net.features_extractor.", obs_space, rk, path))
    return kwargs


def _on_policy_kwargs(state: dict[str, Any], rk: dict[str, Any], act_dim: int, path: str | Path) -> dict[str, Any]:
    """PPO / A2C: separate pi and vf layers, gSDE, and whether the value net has its own extractor."""
    import torch

    if any(k.startswith("mlp_extractor.shared_net.") for k in state):
        raise ConfigError(f"expert.path: '{path}' has layers shared by its policy and value networks "
                          "(SB3 < 1.8), which SB3 2.x cannot rebuild")
    kwargs: dict[str, Any] = {"net_arch": {"pi": _linear_sizes(state, "mlp_extractor.policy_net."),
                                           "vf": _linear_sizes(state, "mlp_extractor.value_net.")}}
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
    return kwargs


def _actor_critic_kwargs(state: dict[str, Any], family: str, rk: dict[str, Any]) -> dict[str, Any]:
    """SAC / TD3 / DDPG: actor and critic layers, the number of critics, SAC's gSDE and clipping."""
    pi = _linear_sizes(state, "actor.latent_pi.") if family == "sac" else _linear_sizes(state, "actor.mu.")[:-1]
    qf = _linear_sizes(state, "critic.qf0.")[:-1]
    kwargs: dict[str, Any] = {"net_arch": {"pi": pi, "qf": qf},
                              "n_critics": len({m.group(1) for k in state if (m := re.match(r"critic\.qf(\d+)\.", k))}) or 1}
    if family == "sac":
        if state.get("actor.log_std") is not None:  # a Parameter with gSDE, a Linear layer without
            kwargs["use_sde"] = True
        if isinstance(rk.get("use_expln"), bool):
            kwargs["use_expln"] = rk["use_expln"]
        clip = rk.get("clip_mean")
        if isinstance(clip, (int, float)) and not isinstance(clip, bool):
            kwargs["clip_mean"] = float(clip)
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

    cls = algo_class(algo)
    alias = "MultiInputPolicy" if isinstance(env.observation_space, gym.spaces.Dict) else "MlpPolicy"
    if FAMILY[algo] == "on-policy":
        kwargs = {"ortho_init": False, **kwargs}  # the weights are overwritten: skip the costly init
    with torch.random.fork_rng(devices=[]):
        return cls.policy_aliases[alias](model_observation_space(env.observation_space), env.action_space,
                                         zero_schedule, **kwargs)


def _mismatch(got: dict[str, Any], want: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, layer) of the first layer missing, extra or of another shape; None if they agree."""
    for name, tensor in want.items():
        if name not in got:
            return "missing", name
        if tuple(got[name].shape) != tuple(tensor.shape):
            return "shape", name
    extra = [k for k in got if k not in want]
    return ("extra", extra[0]) if extra else None


def load_policy(env: gym.Env, algo: str, state: dict[str, Any], kwargs: dict[str, Any], path: str | Path, *,
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
               if declared else f"set expert.algo to the algorithm it was trained with, {FALLBACK}")
        if kind == "missing":
            raise ConfigError(f"expert.path: '{path}' has no layer '{name}', which {built} needs; {fix}")
        if kind == "extra":
            raise ConfigError(f"expert.path: '{path}' has layer '{name}', which {built} lacks; {fix}")
        raise ConfigError(f"expert.path: layer '{name}' is {tuple(state[name].shape)} in '{path}' but "
                          f"{tuple(want[name].shape)} in {built}; {fix}")
    policy.load_state_dict(state, strict=True)
    return policy


def check_family(algo: str, state: dict[str, Any], path: str | Path) -> None:
    family = family_of_state(state)
    if family is not None and family != FAMILY[algo]:
        raise ConfigError(f"expert.algo: '{algo}', but the weights in '{path}' are those of a {FAMILY_ALGOS[family]} "
                          f"policy; set expert.algo to {FAMILY_ALGOS[family]}")
