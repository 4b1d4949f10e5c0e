"""Short registry names for components, with a ``"module:attr"`` fallback for plugins.

Targets are stored as import strings so that registering MetaDrive or MiniGrid components costs
nothing until they are used: ``import gatekit`` works without either simulator installed.

Example:
    >>> from gatekit.registry import Registry
    >>> r = Registry("criterion")
    >>> r.register("sqrt", "math:sqrt")
    >>> r.get("sqrt")(9.0)
    3.0
    >>> r.get("math:floor")(2.5)   # plugin fallback: any importable "module:attr"
    2
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from gatekit.errors import ConfigError, nearest


class Registry:
    """Maps short names to lazily imported callables (classes or factories)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._targets: dict[str, str | Callable[..., Any]] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, target: str | Callable[..., Any], help: str = "") -> None:
        """Register ``target`` (a callable or a ``"module:attr"`` string) under ``name``."""
        if name in self._targets:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._targets[name] = target
        self._help[name] = help

    def names(self) -> list[str]:
        return sorted(self._targets)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def get(self, name: str, *, field: str | None = None) -> Callable[..., Any]:
        """Resolve ``name`` to its callable; unknown names raise a one-line :class:`ConfigError`."""
        where = f"{field}: " if field else ""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}expected a {self.kind} name, got {name!r}")
        target = self._targets.get(name)
        if target is None:
            if ":" not in name:
                raise ConfigError(
                    f"{where}unknown {self.kind} '{name}'; {nearest(name, self._targets)} "
                    f"(or give a plugin as 'package.module:Class')"
                )
            target = name
        if isinstance(target, str):
            return _import(target, self.kind, where)
        return target


def _import(spec: str, kind: str, where: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"{where}cannot import module '{module_name}' for {kind} '{spec}' ({exc.name} is not "
            f"installed; try `pip install gatekit[all]`)"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}module '{module_name}' has no attribute '{attr}' ({kind} '{spec}')")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{where}{kind} '{spec}' is not callable")
    return obj
