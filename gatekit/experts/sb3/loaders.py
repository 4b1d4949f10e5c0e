"""The two registered loaders of SB3 experts: ``sb3`` (a model zip) and ``sb3-policy`` (a bare
state dict)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym

from gatekit.errors import ConfigError
from gatekit.experts.sb3.architecture import (
    activation_from_kwargs,
    check_family,
    check_features_class,
    infer_policy_kwargs,
    load_policy,
)
from gatekit.experts.sb3.archive import (
    algo_from_data,
    check_model_spaces,
    check_readable_spaces,
    is_sb3_zip,
    read_sb3_zip,
    readable,
    unknown_algo,
)
from gatekit.experts.sb3.expert import (
    ALGOS,
    DEFAULT_ACTIVATION,
    FALLBACK,
    FAMILY,
    Algo,
    SB3PolicyExpert,
    activation_class,
    algo_class,
    first_line,
    zero_schedule,
)
from gatekit.registry import factory


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
            deterministic: bool = True, activation: str | None = None, trust_pickle: bool = False,
            log_prob_std: list[float] | None = None) -> SB3PolicyExpert:
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
        log_prob_std: a fixed std per action dimension for ``log_prob`` (PPO/A2C on Box
            actions; see :class:`SB3PolicyExpert`).

    Raises:
        ConfigError: no file at ``path``, not an SB3 zip, an unknown algorithm (with the
            fallback: extract ``policy.pth`` and use ``sb3-policy``), or layers that do not
            fit the algorithm's policy.
        SpaceMismatchError: the model's observation or action space is not the env's.
    """
    file = _resolve_path(path)
    z = read_sb3_zip(file)
    found = algo_from_data(z.data)
    if algo == "auto":
        if found is None:
            raise unknown_algo(path, z)
        algo = found  # type: ignore[assignment]
    elif algo not in ALGOS:
        raise ConfigError(f"expert.algo: unknown algorithm '{algo}'; valid: auto, {', '.join(ALGOS)}")
    elif found is not None and FAMILY[algo] != FAMILY[found]:
        raise ConfigError(f"expert.algo: '{algo}', but '{path}' holds a {found} model; set expert.algo to auto or {found}")
    rate = z.data.get("exploration_rate", 0.0) if algo == "dqn" else 0.0
    epsilon = float(rate) if isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0 else 0.0
    if trust_pickle:
        policy = _load_trusted(file, path, algo, env)
    else:
        check_family(algo, z.state, path)
        check_readable_spaces(z.data, env, path)
        rk = readable(z.data.get("policy_kwargs"))
        rk = rk if isinstance(rk, dict) else {}
        check_features_class(rk, path)
        recorded = activation_from_kwargs(rk, path)
        if activation is not None and recorded is not None and activation != recorded:
            raise ConfigError(f"expert.activation: '{activation}', but '{path}' records activation {recorded}; "
                              "remove expert.activation")
        act_name = recorded or activation or DEFAULT_ACTIVATION[algo]
        kwargs = infer_policy_kwargs(z.state, algo, env, readable_kwargs=rk, path=path)
        kwargs["activation_fn"] = activation_class(act_name, "expert.activation")
        policy = load_policy(env, algo, z.state, kwargs, path, declared=False)
    return SB3PolicyExpert(env=env, policy=policy, algo=algo, deterministic=deterministic, epsilon=epsilon, path=str(file),
                           log_prob_std=log_prob_std)


def _load_trusted(file: Path, path: str, algo: str, env: gym.Env) -> Any:
    """SB3's own ``load`` (unpickles the zip's data: runs code from it); returns the policy."""
    cls = algo_class(algo)
    # Training-only state is replaced: schedules are closures that often fail to load under
    # another Python version, and an expert never trains.
    custom = {"learning_rate": 0.0, "lr_schedule": zero_schedule, "clip_range": zero_schedule,
              "exploration_schedule": zero_schedule}
    # Off-policy models rebuild their replay buffer on load (a million transitions by default).
    extra = {"buffer_size": 1} if FAMILY[algo] in ("sac", "td3", "dqn") else {}
    try:
        model = cls.load(file, device="cpu", custom_objects=custom, **extra)
    except Exception as exc:  # code from the file ran: anything can come back
        raise ConfigError(f"expert.path: cannot load '{path}' as an SB3 {algo} model with trust_pickle ({first_line(exc)}); "
                          f"{FALLBACK}") from None
    check_model_spaces(f"the SB3 model '{path}'", model.observation_space, model.action_space, env)
    return model.policy


@factory("expert")
def sb3_state_dict(*, env: gym.Env, path: str, algo: Algo = "ppo", net_arch: list[int] | None = None,
                   activation: str | None = None, deterministic: bool = True,
                   log_prob_std: list[float] | None = None) -> SB3PolicyExpert:
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
        log_prob_std: as for :func:`sb3_zip`.

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
    if zipfile.is_zipfile(file) and is_sb3_zip(file):
        raise ConfigError(f"expert.path: '{path}' is a whole SB3 model zip; use expert id 'sb3' for it")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... on bad files
        raise ConfigError(f"expert.path: cannot read '{path}' as a torch state dict ({first_line(exc)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"expert.path: '{path}' does not hold a state dict of tensors; save model.policy.state_dict()")
    state = dict(state)
    act_name = activation if activation is not None else DEFAULT_ACTIVATION[algo]
    act_cls = activation_class(act_name, "expert.activation")
    check_family(algo, state, path)
    kwargs = {**infer_policy_kwargs(state, algo, env, path=path), "activation_fn": act_cls}
    if net_arch is not None:
        kwargs["net_arch"] = list(net_arch)
    policy = load_policy(env, algo, state, kwargs, path, declared=net_arch is not None)
    return SB3PolicyExpert(env=env, policy=policy, algo=algo, deterministic=deterministic, path=str(file),
                           log_prob_std=log_prob_std)
