"""The comparison recipe: methods x seeds under shared overrides, loaded strictly.

A comparison recipe names the methods (each an ordinary gatekit recipe plus optional
overrides), the seeds, the overrides every method shares, and the two methods the summary
singles out: ``reference`` (the table's "expert steps to reach its success" column) and
``focus`` (the method whose probability of improvement over each other method is reported).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatekit.config import load_dataclass, read_yaml_mapping
from gatekit.errors import ConfigError


@dataclass(kw_only=True)
class MethodSpec:
    """One method of a comparison."""

    name: str
    """The method's name in the table and plots (e.g. ``Thrifty-DAgger``)."""
    recipe: str
    """Its gatekit recipe, relative to the comparison file."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted recipe fields set for this method only (``{learner.lr: 1.0e-4}``)."""


@dataclass(kw_only=True)
class Comparison:
    """A comparison recipe: methods x seeds under shared overrides."""

    name: str
    """A short name; the default output folder is ``runs/<name>``."""
    methods: list[MethodSpec]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Every method runs once per seed."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted recipe fields set for every method (shared budgets, evaluation, logging)."""
    reference: str | None = None
    """A method whose final test success the table's "steps to reach" column measures the others against."""
    focus: str | None = None
    """The method compared with each other one as a probability of improvement (e.g. ``AIM``)."""
    bootstrap_reps: int = 2000
    """Bootstrap resamples behind every confidence interval (rliable's stratified bootstrap)."""
    workers: int | None = None
    """Runs at a time (None: one per CPU core)."""
    description: str = ""

    def method_names(self) -> list[str]:
        return [m.name for m in self.methods]


def load_comparison(path: str | Path) -> tuple[Comparison, Path]:
    """Read a comparison recipe strictly; returns it and the folder its recipe paths start from.

    Raises:
        ConfigError: a missing file, bad YAML, an unknown key, duplicate method names, or a
            reference / focus that is not one of the methods.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, kind="comparison recipe", example="recipes/compare_*.yaml",
                            fields="name, methods, seeds, ...", prefix="compare")
    if "env" in raw and "methods" not in raw:
        raise ConfigError(f"compare: '{path}' looks like a training recipe; use `gatekit train` for it")
    methods_raw = raw.get("methods")
    if not isinstance(methods_raw, list) or not methods_raw:
        raise ConfigError("compare: 'methods' must be a non-empty list of {name, recipe} entries")
    # the strict loader checks flat fields; each method is a dataclass of its own
    comp = load_dataclass(Comparison, {**raw, "methods": []}, kind="compare")
    comp.methods = [load_dataclass(MethodSpec, m, kind="compare", path=f"methods[{i}]") for i, m in enumerate(methods_raw)]
    _check(comp)
    return comp, path.parent


def _check(comp: Comparison) -> None:
    names = comp.method_names()
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"compare: method names must be unique; '{dup[0]}' appears twice")
    if not comp.seeds:
        raise ConfigError("compare: 'seeds' must list at least one seed")
    if len(set(comp.seeds)) != len(comp.seeds):
        raise ConfigError(f"compare: 'seeds' has duplicates: {comp.seeds}")
    for key in ("reference", "focus"):
        value = getattr(comp, key)
        if value is not None and value not in names:
            raise ConfigError(f"compare: {key} '{value}' is not a method; valid: {', '.join(names)}")
    if comp.workers is not None and comp.workers < 1:
        raise ConfigError(f"compare: 'workers' must be >= 1, got {comp.workers}")
    if comp.bootstrap_reps < 100:
        raise ConfigError(f"compare: 'bootstrap_reps' must be >= 100, got {comp.bootstrap_reps}")


def check_only(comp: Comparison, only: tuple[str, ...]) -> None:
    """Raise ConfigError naming the valid methods if an ``--only`` name is not one of them."""
    names = comp.method_names()
    for o in only:
        if o not in names:
            raise ConfigError(f"compare: --only '{o}' is not a method; valid: {', '.join(names)}")


def slug(name: str) -> str:
    """A folder name for a method: lower case, runs of other characters as ``-``.

    Example:
        >>> slug("Thrifty-DAgger (alpha 0.05)")
        'thrifty-dagger-alpha-0-05'
    """
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s or "method"


def override_list(mapping: dict[str, Any], where: str) -> list[str]:
    """``{a.b: v}`` as ``["a.b=v"]`` for :func:`gatekit.config.apply_overrides`."""
    out = []
    for k, v in mapping.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"compare: {where} keys must be dotted recipe fields, got {k!r}")
        out.append(f"{k}={json.dumps(v)}")  # JSON is YAML: apply_overrides parses it back exactly
    return out


def recipe_path(base: Path, method: MethodSpec) -> Path:
    """The method's recipe file (relative paths start at the comparison file's folder)."""
    p = Path(method.recipe)
    return p if p.is_absolute() else base / p
