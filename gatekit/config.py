"""Recipes: YAML files loaded strictly into typed config objects.

A recipe names the env, the expert, the criterion and the learner by registry name (``id``);
every other key of those four sections is a keyword argument of that component, checked
against its constructor. Everything else is a typed field below: an unknown key, a missing
required key or a value of the wrong type is a :class:`~gatekit.errors.ConfigError` with one
line naming the field (``budget.total_steps``) and the fix. The YAML is read with bounds by
:mod:`gatekit.yaml_safety`; component arguments are checked by :mod:`gatekit.arguments`.

Example:
    >>> recipe = load_recipe_dict({
    ...     "name": "demo",
    ...     "env": {"id": "cartpole"}, "expert": {"id": "cartpole-pd"},
    ...     "criterion": {"id": "action-gap"}, "learner": {"id": "bc"},
    ...     "budget": {"total_steps": 2000},
    ... })
    >>> recipe.budget.total_steps, recipe.criterion.id
    (2000, 'action-gap')
    >>> load_recipe_dict({"name": "x", "budgt": {}})
    Traceback (most recent call last):
    ...
    gatekit.errors.ConfigError: recipe: unknown key 'budgt'; did you mean 'budget'?
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from gatekit.arguments import build, check_kwargs, check_type, value_kind
from gatekit.errors import ConfigError, RecipeWarning, nearest
from gatekit.yaml_safety import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, safe_load_bounded

__all__ = [
    "Component", "EnvComponent", "Budget", "EvalConfig", "LogConfig", "DataConfig", "Recipe",
    "NAME_PATTERN", "COMPONENT_SECTIONS", "check_name", "load_recipe", "load_recipe_dict", "load_dataclass",
    "load_yaml_dataclass", "read_yaml_mapping", "apply_overrides",
    # re-exported from their own modules, so callers of gatekit.config keep working
    "check_type", "check_kwargs", "build",  # gatekit.arguments
    "safe_load_bounded", "MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES",  # gatekit.yaml_safety
]

T = TypeVar("T")


@dataclass(kw_only=True)
class Component:
    """A registry name plus the keyword arguments of that component."""

    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.kwargs}


@dataclass(kw_only=True)
class EnvComponent(Component):
    """The env's registry name and factory arguments, plus how many copies a run steps."""

    n_envs: int = 1
    """Env processes stepped in parallel by one run (each with its own expert); 1 steps the env
    in the run's own process."""

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.n_envs != 1:
            out["n_envs"] = self.n_envs
        return out

    def factory(self) -> Component:
        """The component the env factory is built from (without ``n_envs``)."""
        return Component(id=self.id, kwargs=dict(self.kwargs))


@dataclass(kw_only=True)
class Budget:
    """When training stops, and the expert's warm-up."""

    total_steps: int
    """Env steps of training (expert and novice steps together)."""
    expert_steps: int | None = None
    """Stop early once this many expert-involved steps were spent (None: no limit)."""
    warmup_steps: int = 0
    """The expert drives the first N env steps before the novice's first training."""


@dataclass(kw_only=True)
class EvalConfig:
    """Evaluation of the novice, alone, on the env's held-out (test) split."""

    every_steps: int = 0
    """Evaluate every N training steps (0: only at the end)."""
    every_expert_steps: int = 0
    """Also (or instead) evaluate each time N more expert-involved steps were spent (0: off):
    learning curves over the expert's effort, at the same points for every method and seed."""
    episodes: int = 10
    """Episodes of each periodic evaluation."""
    final_episodes: int = 50
    """Episodes of the final evaluation (test seeds 0..N-1)."""
    expert_reference: bool = False
    """Also evaluate the expert alone on the same test episodes, for reference."""
    in_worker: bool = True
    """Evaluate in a separate process (required for one-engine-per-process simulators such as
    MetaDrive; also lets evaluation use a second core while training goes on)."""
    final_workers: int | None = None
    """Processes sharing the final evaluation's episodes (with ``in_worker``; None: one per
    CPU core available, at most 4). The metrics are the same whatever the count: each episode
    depends on its seed alone."""


@dataclass(kw_only=True)
class LogConfig:
    """What the run writes besides ``results.json`` and its records."""

    tensorboard: bool = True
    """Write TensorBoard event files (skipped with a warning if tensorboard is missing)."""
    progress: bool = True
    """Show a progress bar."""
    plots: bool = True
    """Write PNG plots (take-over rate over training, test success vs expert steps)."""
    wandb: bool = False
    """Also log to Weights & Biases (``pip install 'gatekit[wandb]'``; see gatekit/runs/wandb_log.py)."""
    wandb_project: str = "gatekit"
    """The W&B project."""
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    """``offline`` writes under ``<run>/wandb`` without network (``wandb sync`` uploads it);
    ``online`` logs live; ``WANDB_MODE`` overrides it."""


@dataclass(kw_only=True)
class DataConfig:
    """Durability of the records (expert labels are a person's time)."""

    max_unsynced: int = 8
    """At most this many expert-labelled steps may be waiting for fsync (lost only on a power
    failure or OS crash; a killed process loses none). 0: fsync every expert-labelled step."""
    sync_seconds: float = 2.0
    """Also fsync pending records at least this often."""
    checkpoint_every: int = 1000
    """Write a checkpoint every N env steps (and on SIGINT/SIGTERM, and at the end)."""


@dataclass(kw_only=True)
class Recipe:
    """A whole run: what to train, against which expert, gated how, for how long."""

    name: str
    """A short name; run folders are named after it."""
    env: EnvComponent
    expert: Component
    criterion: Component
    learner: Component
    budget: Budget
    seed: int = 0
    """One seed fans out to env, expert, criterion, learner and torch."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    data: DataConfig = field(default_factory=DataConfig)
    on_nonfinite: Literal["expert", "raise"] = "expert"
    """A NaN/inf novice action: the expert acts on that step, or the run stops."""
    description: str = ""

    def __post_init__(self) -> None:
        # Checks across fields, and the name (a folder name), also for recipes built in code.
        check_name("name", self.name)
        b = self.budget
        if isinstance(b, Budget) and b.warmup_steps > b.total_steps:
            raise ConfigError(f"recipe: 'budget.warmup_steps' ({b.warmup_steps}) must be <= 'budget.total_steps' "
                              f"({b.total_steps}): the novice would never act; lower it")

    def to_dict(self) -> dict[str, Any]:
        return _dump(self)


def _dump(obj: Any) -> Any:
    if isinstance(obj, Component):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj):
        return {f.name: _dump(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


# ---------------------------------------------------------------------------------------------
# names

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""Recipe names become folder names (``runs/<name>-s<seed>-<time>``): letters, digits, ``.``,
``_`` and ``-``, starting with a letter or digit, at most 100 characters. So a name can never
climb out of the output root (``..``), hide (``.x``), look like an option (``-x``) or carry a
path separator, a NUL or a control character."""


def check_name(field_name: str, value: Any, *, kind: str = "recipe") -> str:
    """``value`` if it is a safe name (:data:`NAME_PATTERN`), else a one-line ConfigError."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ConfigError(f"{kind}: '{field_name}' must be 1-100 letters, digits, '.', '_' or '-', starting with a "
                          f"letter or digit (it names the run folder), got {shown}")
    return value


# ---------------------------------------------------------------------------------------------
# strict loading

_RANGES: dict[str, tuple[float, float]] = {
    "seed": (0, 2**63 - 1),
    "budget.total_steps": (1, math.inf),
    "budget.expert_steps": (0, math.inf),
    "budget.warmup_steps": (0, math.inf),
    "eval.every_steps": (0, math.inf),
    "eval.every_expert_steps": (0, math.inf),
    "eval.episodes": (1, math.inf),
    "eval.final_episodes": (0, math.inf),
    "eval.final_workers": (1, 64),
    "data.max_unsynced": (0, math.inf),
    "data.sync_seconds": (0, math.inf),
    "data.checkpoint_every": (1, math.inf),
}


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a YAML recipe, apply ``a.b=value`` overrides, and load it strictly."""
    raw = read_yaml_mapping(path, kind="recipe", example="recipes/", fields="name, env, expert, ...")
    return load_recipe_dict(apply_overrides(raw, overrides))


def load_dataclass(cls: type[T], raw: Any, *, kind: str = "recipe", path: str = "",
                   ranges: dict[str, tuple[float, float]] | None = None) -> T:
    """Load a mapping strictly into the (kw_only) dataclass ``cls``: the one strict loader of
    gatekit's recipes (run, expert and comparison recipes alike).

    Unknown keys are errors naming the nearest valid key; missing required keys, wrong types
    and values outside ``ranges`` (``{"dotted.field": (low, high)}``) are one-line
    :class:`ConfigError` s that start with ``kind:`` and name the field. ``path`` prefixes the
    field names (e.g. ``methods[2]``).
    """
    try:
        return _load_dataclass(cls, raw, path, _RANGES if ranges is None else ranges)
    except ConfigError as exc:
        if kind == "recipe":
            raise
        raise ConfigError(f"{kind}: {str(exc).removeprefix('recipe: ')}") from None


def load_yaml_dataclass(cls: type[T], path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                        kind: str, example: str, fields: str,
                        ranges: dict[str, tuple[float, float]] | None = None) -> T:
    """Read a YAML file (:func:`read_yaml_mapping`), apply ``a.b=value`` overrides and
    :func:`load_dataclass` it."""
    raw = read_yaml_mapping(path, kind=kind, example=example, fields=fields)
    return load_dataclass(cls, apply_overrides(raw, overrides), kind=kind, ranges=ranges)


def read_yaml_mapping(path: str | Path, *, kind: str, example: str, fields: str,
                      prefix: str = "recipe") -> dict[str, Any]:
    """Read ``path`` with :func:`safe_load_bounded`; anything but a YAML mapping is a one-line
    error (starting with ``prefix:``, the command's word for the file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{prefix}: no such file '{path}'; give the path of a .yaml {kind} (see {example})")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:  # before reading it: a recipe is a few KB
            raise ConfigError(f"{prefix}: '{path}' is {size} bytes, more than the {MAX_YAML_BYTES} a {kind} may have; "
                              f"is it the right file?")
        raw = safe_load_bounded(path.read_text(encoding="utf-8"), what=f"{prefix}: '{path}'")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{prefix}: '{path}' is not valid YAML{where}; fix the syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{prefix}: '{path}' is not a text file; give a .yaml {kind}") from None
    except OSError as exc:
        raise ConfigError(f"{prefix}: cannot read '{path}' ({exc.strerror or type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: '{path}' must hold a mapping of fields ({fields})")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` set (value parsed as YAML)."""
    out = _deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set: expected key=value, got '{item}' (e.g. --set budget.total_steps=5000)")
        try:
            value = safe_load_bounded(text, what=f"--set {key.strip()}")
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: '{'.'.join(parts[: i + 1])}' is not a section")
            node = nxt
        _warn_carried_keys(parts, node, value)
        node[parts[-1]] = value
    return out


COMPONENT_SECTIONS = ("env", "expert", "criterion", "learner")


def _warn_carried_keys(parts: list[str], section: Any, new_id: Any) -> None:
    """``--set expert.id=other`` keeps the section's other keys, which were written for the old
    component: say which, and how to replace the whole section instead."""
    if len(parts) != 2 or parts[0] not in COMPONENT_SECTIONS or parts[1] != "id" or not isinstance(section, dict):
        return
    old = section.get("id")
    kept = sorted(str(k) for k in section if k != "id")
    if old == new_id or not kept:
        return
    warnings.warn(RecipeWarning(
        f"--set {parts[0]}.id={new_id}: the recipe's {parts[0]} keys {', '.join(kept)} (written for '{old}') "
        f"are kept; to drop them, replace the section: --set '{parts[0]}={{id: {new_id}}}'"), stacklevel=3)


def _deepcopy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deepcopy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]
    return x


def load_recipe_dict(raw: dict[str, Any]) -> Recipe:
    """Load a recipe from a plain mapping (as parsed from YAML), strictly."""
    if not isinstance(raw, dict):
        raise ConfigError("recipe: expected a mapping of fields")
    return load_dataclass(Recipe, raw)


def _load_dataclass(cls: type, raw: Any, path: str, ranges: dict[str, tuple[float, float]]) -> Any:
    where = path or "recipe"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a section (mapping), got {value_kind(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{_join(path, str(key))}'; {nearest(str(key), fields)}")
    values = {}
    for name, f in fields.items():
        full = _join(path, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"recipe: missing required key '{full}'; add it")
            continue
        values[name] = _convert(hints[name], raw[name], full, ranges)
    return cls(**values)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _convert(tp: Any, value: Any, path: str, ranges: dict[str, tuple[float, float]]) -> Any:
    if tp is EnvComponent:
        comp = _load_component(value, path)
        n_envs = comp.kwargs.pop("n_envs", 1)
        if isinstance(n_envs, bool) or not isinstance(n_envs, int) or not 1 <= n_envs <= 64:
            raise ConfigError(f"recipe: '{path}.n_envs' must be an integer in [1, 64], got {n_envs!r}")
        return EnvComponent(id=comp.id, kwargs=comp.kwargs, n_envs=n_envs)
    if tp is Component:
        return _load_component(value, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, value, path, ranges)
    out = check_type(tp, value, path)
    if path == "name":  # every kind of recipe: the name becomes a folder name
        check_name(path, out)
    lo_hi = ranges.get(path)
    if lo_hi is not None and out is not None and not (lo_hi[0] <= out <= lo_hi[1]):
        bound = f">= {_num(lo_hi[0])}" if lo_hi[1] == math.inf else f"in [{_num(lo_hi[0])}, {_num(lo_hi[1])}]"
        raise ConfigError(f"recipe: '{path}' must be {bound}, got {out}")
    return out


def _num(x: float) -> str:
    return "2**63-1" if x == 2**63 - 1 else f"{x:g}"


def _load_component(value: Any, path: str) -> Component:
    if isinstance(value, str):
        return Component(id=value)
    if not isinstance(value, dict):
        raise ConfigError(f"recipe: '{path}' must be a section with an 'id' (e.g. {path}: {{id: ...}}), got {value_kind(value)}")
    if "id" not in value:
        raise ConfigError(f"recipe: missing required key '{path}.id'; name the {path} (see `gatekit list`)")
    if not isinstance(value["id"], str):
        raise ConfigError(f"recipe: '{path}.id' must be a string, got {value_kind(value['id'])}")
    return Component(id=value["id"], kwargs={k: v for k, v in value.items() if k != "id"})
