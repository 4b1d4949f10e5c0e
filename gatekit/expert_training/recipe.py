"""The expert recipe (see :mod:`gatekit.expert_training` for its fields), loaded as strictly
as a run recipe, and PPO's keyword arguments made from it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import stable_baselines3 as _sb3

from gatekit.arguments import check_kwargs
from gatekit.config import Component, apply_overrides, load_dataclass, read_yaml_mapping
from gatekit.errors import ConfigError, nearest


@dataclass(kw_only=True)
class ExpertRecipe:
    """What expert to train, where, and for how long."""

    name: str
    """A short name; output folders are named after it."""
    env: Component
    """The env (registry ``id`` + factory kwargs); training uses its ``train`` split."""
    total_timesteps: int
    """Env steps of training, all workers together (PPO rounds up to whole rollouts)."""
    algo: Literal["ppo"] = "ppo"
    """The SB3 algorithm."""
    ppo: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``stable_baselines3.PPO`` (``policy`` defaults to ``MlpPolicy``,
    ``device`` to ``cpu``; ``policy_kwargs.activation_fn`` may name an activation: ``tanh``)."""
    n_envs: int | None = None
    """Parallel env worker processes (None: ``os.cpu_count()``)."""
    seed: int = 0
    """Seeds PPO (torch, numpy) and the envs (worker ``i``: ``seed + i``)."""
    eval_episodes: int = 20
    """Test-split episodes (seeds 0..N-1) of the final evaluation; 0: none."""
    checkpoint_every_s: float = 600.0
    """Seconds between checkpoints (taken between a PPO update and the next rollout); 0: after
    every update."""
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (getattr(self, f.name).to_dict() if f.name == "env" else getattr(self, f.name))
                for f in dataclasses.fields(self)}


_RANGES: dict[str, tuple[float, float]] = {"total_timesteps": (1, math.inf), "n_envs": (1, math.inf), "seed": (0, math.inf),
           "eval_episodes": (0, math.inf), "checkpoint_every_s": (0, math.inf)}
# Fields a resumed run may change: none of them changes the model or what it learns from.
RESUMABLE_FIELDS = ("total_timesteps", "eval_episodes", "checkpoint_every_s", "n_envs")
# PPO arguments a recipe cannot set: gatekit passes them (env, seed), or they only matter to
# SB3's own construction.
_PPO_PROVIDED = ("env", "seed", "_init_setup_model")
# PPO arguments that SB3 also accepts as schedules (functions), which YAML cannot express.
_PPO_NUMBERS = ("learning_rate", "clip_range", "clip_range_vf")


def load_expert_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExpertRecipe:
    """Read an expert recipe (YAML), apply ``a.b=value`` overrides, and load it strictly."""
    raw = read_yaml_mapping(path, kind="expert recipe", example="recipes/ppo_expert_*.yaml",
                            fields="name, env, total_timesteps, ...")
    return load_expert_recipe_dict(apply_overrides(raw, overrides))


def load_expert_recipe_dict(raw: dict[str, Any]) -> ExpertRecipe:
    """Load an expert recipe from a plain mapping, strictly; checks env and PPO kwargs too."""
    if not isinstance(raw, dict):
        raise ConfigError("recipe: expected a mapping of fields (name, env, total_timesteps, ...)")
    recipe = load_dataclass(ExpertRecipe, raw, ranges=_RANGES)

    from gatekit.envs import ENVS

    # Typos in the env's arguments surface here, not as a traceback in a worker process.
    check_kwargs(ENVS.get(recipe.env.id, field="env.id"), recipe.env.kwargs, "env", provided=("split", "seed"))
    recipe.ppo = check_ppo_kwargs(recipe.ppo)
    return recipe


def check_ppo_kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    """Check the ``ppo:`` section against ``stable_baselines3.PPO``'s signature.

    Returns the section as given (plain YAML values, for the saved recipe); :func:`ppo_kwargs`
    turns it into PPO's arguments.
    """
    checked = check_kwargs(_sb3.PPO, {"policy": "MlpPolicy", **raw}, "ppo", provided=_PPO_PROVIDED)
    policy = checked["policy"]
    if not isinstance(policy, str) or policy not in _sb3.PPO.policy_aliases:
        raise ConfigError(f"recipe: 'ppo.policy' must name an SB3 policy, got {policy!r}; {nearest(str(policy), _sb3.PPO.policy_aliases)}")
    for key in _PPO_NUMBERS:
        value = checked.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"recipe: 'ppo.{key}' must be a number (a recipe cannot hold a schedule), got {value!r}")
    policy_kwargs = checked.get("policy_kwargs") or {}
    if "activation_fn" in policy_kwargs:
        from gatekit.experts.sb3 import activation_class

        act = policy_kwargs["activation_fn"]
        if not isinstance(act, str):
            raise ConfigError(f"recipe: 'ppo.policy_kwargs.activation_fn' must name an activation (tanh, relu, ...), got {act!r}")
        activation_class(act, "recipe: 'ppo.policy_kwargs.activation_fn'")
    return dict(raw)


def ppo_kwargs(recipe: ExpertRecipe) -> dict[str, Any]:
    """PPO's keyword arguments for ``recipe`` (defaults filled in, activation names resolved)."""
    from gatekit.experts.sb3 import activation_class

    kwargs: dict[str, Any] = {"policy": "MlpPolicy", "device": "cpu", "verbose": 0, **recipe.ppo}
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    if isinstance(policy_kwargs.get("activation_fn"), str):
        policy_kwargs["activation_fn"] = activation_class(policy_kwargs["activation_fn"])
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


__all__ = ["RESUMABLE_FIELDS", "ExpertRecipe", "check_ppo_kwargs", "load_expert_recipe", "load_expert_recipe_dict",
           "ppo_kwargs"]
