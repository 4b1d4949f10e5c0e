"""Short registry names for components, with a ``"module:attr"`` fallback for plugins.

Targets are stored as import strings so that registering MetaDrive or MiniGrid components costs
nothing until they are used: ``import gatekit`` works without either simulator installed.

A recipe is data, so naming a component must not be a way to call arbitrary code: a plugin id
(``"package.module:Name"``) resolves only to a component *of the role it fills*:

* ``criterion``, ``expert``, ``learner``: a subclass of :class:`~gatekit.criteria.Criterion`,
  :class:`~gatekit.experts.Expert` or :class:`~gatekit.learners.Learner`;
* ``env``: a subclass of :class:`gymnasium.Env`. A plain function cannot be checked before it
  is called (anything callable "returns an env" until it runs), so an env factory function is
  accepted only when its author marked it with :func:`factory` (``@factory("env")``);
* any role: a function marked ``@factory(role)``, or a target registered under a name.

Anything else (``os:system``, ``subprocess:run``, a function of the wrong role) is refused with
a one-line :class:`~gatekit.errors.ConfigError` naming the recipe field and the role expected,
before anything is called. Modules of Python's standard library are refused before they are
even imported (no gatekit component lives there, and some run code on import). Naming a
plugin still imports its module, which runs that module's top-level code: name only modules
you would ``import`` yourself. Names registered from Python code (:meth:`Registry.register`)
are trusted as they are.

Example:
    >>> from gatekit.registry import Registry
    >>> r = Registry("criterion")
    >>> r.register("sqrt", "math:sqrt")   # registered from code: trusted
    >>> r.get("sqrt")(9.0)
    3.0
    >>> r.get("gatekit.criteria.simple:NeverCriterion")().name   # plugin of the right role
    'never'
    >>> r.get("os:system", field="criterion.id")
    Traceback (most recent call last):
    ...
    gatekit.errors.ConfigError: criterion.id: 'os:system' is not a criterion plugin: module 'os' is part of Python's standard library; give a subclass of gatekit.criteria.base.Criterion as 'package.module:Class'
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from gatekit.errors import ConfigError, GatekitError, missing_extra, nearest

# The base class of each role, as an import string (imported only when a plugin is checked).
ROLES: dict[str, str] = {
    "criterion": "gatekit.criteria.base:Criterion",
    "expert": "gatekit.experts.base:Expert",
    "learner": "gatekit.learners.base:Learner",
    "env": "gymnasium.core:Env",
}

# The attribute :func:`factory` sets on a function: the role it builds.
FACTORY_MARK = "__gatekit_factory__"

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

# Exceptions a component raises when it rejects its arguments: arguments.build turns them into a
# one-line error naming the recipe section, so a plugin's guard lets them through.
_ARGUMENT_ERRORS = (GatekitError, ValueError, TypeError, KeyError, IndexError)

F = TypeVar("F", bound=Callable[..., Any])


def factory(kind: str) -> Callable[[F], F]:
    """Mark a function as a factory of ``kind`` components, so a recipe may name it as a plugin.

    Classes of a role need no mark; a function does, because nothing tells what it does before
    it is called. The factory's result is checked after the call.

    Example:
        >>> import gymnasium as gym
        >>> @factory("env")
        ... def make_my_env(*, split="train", seed=None):
        ...     return gym.make("CartPole-v1")
    """
    if kind not in ROLES:
        raise ValueError(f"factory: unknown role '{kind}'; valid: {', '.join(sorted(ROLES))}")

    def mark(fn: F) -> F:
        setattr(fn, FACTORY_MARK, kind)
        return fn

    return mark


class Registry:
    """Maps short names to lazily imported callables (classes or factories) of one role.

    Args:
        kind: the role (``criterion``, ``expert``, ``learner``, ``env``): it names the
            component in messages and selects the plugin check of :data:`ROLES`. A registry of
            another kind accepts registered names only, no plugins.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._targets: dict[str, str | Callable[..., Any]] = {}
        self._help: dict[str, str] = {}
        self._prefixes: dict[str, str] = {}

    def register(self, name: str, target: str | Callable[..., Any], help: str = "") -> None:
        """Register ``target`` (a callable or a ``"module:attr"`` string) under ``name``."""
        if name in self._targets:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._targets[name] = target
        self._help[name] = help

    def register_prefix(self, prefix: str, target: str, help: str = "") -> None:
        """Resolve every name ``"<prefix>:<rest>"`` to ``target`` with ``<rest>`` as its first
        argument (``gym:LunarLander-v3`` -> ``make_gym_env("LunarLander-v3", ...)``). A prefix
        is checked before the plugin form ``"package.module:Class"``, so it may not be the name
        of a module a plugin would come from."""
        if prefix in self._prefixes:
            raise ValueError(f"{self.kind} prefix '{prefix}:' is already registered")
        self._prefixes[prefix] = target
        self._help[f"{prefix}:<id>"] = help

    def prefixes(self) -> dict[str, str]:
        """Registered prefixes and the help of each."""
        return {p: self._help.get(f"{p}:<id>", "") for p in self._prefixes}

    def names(self) -> list[str]:
        return sorted(self._targets)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def target(self, name: str) -> str | Callable[..., Any]:
        """What ``name`` is registered as (an import string, or a callable), without importing it."""
        if name not in self._targets:
            raise ConfigError(f"unknown {self.kind} '{name}'; {nearest(name, self._targets)}")
        return self._targets[name]

    def get(self, name: str, *, field: str | None = None) -> Callable[..., Any]:
        """Resolve ``name`` to its callable.

        A registered name resolves to its target. A plugin id ``"package.module:Name"`` resolves
        only to a component of this registry's role (see the module docstring); the callable
        returned for it turns an unexpected exception of the plugin's constructor into a
        one-line :class:`ConfigError` naming the plugin.

        Raises:
            ConfigError: an unknown name, a plugin that cannot be imported, or one that is not
                of this role (one line, naming ``field`` and the role expected).
        """
        where = f"{field}: " if field else ""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}expected a {self.kind} name, got {name!r}")
        target = self._targets.get(name)
        if target is not None:
            return _import(target, self.kind, where) if isinstance(target, str) else target
        prefix, _, rest = name.partition(":")
        if prefix in self._prefixes:
            return functools.partial(_import(self._prefixes[prefix], self.kind, where), rest)
        if ":" not in name:
            raise ConfigError(
                f"{where}unknown {self.kind} '{name}'; {nearest(name, self._targets)} "
                f"(or give a plugin as 'package.module:Class')"
            )
        return self._plugin(name, where)

    def _plugin(self, spec: str, where: str) -> Callable[..., Any]:
        role = ROLES.get(self.kind)
        if role is None:
            raise ConfigError(f"{where}'{spec}': {self.kind} components are registered names only; "
                              f"{nearest(spec, self._targets)}")
        base_name = role.replace(":", ".")
        want = f"give a subclass of {base_name} as 'package.module:Class'"
        module_name, _, attr = spec.partition(":")
        if not _DOTTED.fullmatch(module_name) or not _DOTTED.fullmatch(attr):
            raise ConfigError(f"{where}'{spec}' is not a plugin id; {want}")
        top = module_name.split(".")[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            raise ConfigError(f"{where}'{spec}' is not a {self.kind} plugin: module '{top}' is part of "
                              f"Python's standard library; {want}")
        obj = _import(spec, self.kind, where)
        base: type = _import(role, self.kind, where)  # type: ignore[assignment]  # a class, by ROLES
        registered = spec in {t for t in self._targets.values() if isinstance(t, str)}
        marked = getattr(obj, FACTORY_MARK, None) == self.kind
        if inspect.isclass(obj):
            if not issubclass(obj, base):
                raise ConfigError(f"{where}'{spec}' is not a {self.kind}: class {obj.__module__}.{obj.__qualname__} "
                                  f"is not a subclass of {base_name}; {want}")
        elif not (marked or registered):
            raise ConfigError(
                f"{where}'{spec}' is not a {self.kind}: a plugin must be a subclass of {base_name} or a function "
                f"marked @gatekit.registry.factory('{self.kind}'), got {_describe(obj)}"
            )
        return _guarded(obj, spec, self.kind, base, where)


def _describe(obj: Any) -> str:
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return f"the unmarked function {getattr(obj, '__module__', None) or '?'}.{obj.__qualname__}"
    return f"a {type(obj).__name__}"


def _guarded(obj: Callable[..., Any], spec: str, kind: str, base: type, where: str) -> Callable[..., Any]:
    """``obj`` behind a guard: one line for an unexpected error, a type check for a factory's result.

    The guard keeps ``obj``'s signature and annotations, which arguments.check_kwargs reads.
    """

    def build(*args: Any, **kwargs: Any) -> Any:
        try:
            made = obj(*args, **kwargs)
        except _ARGUMENT_ERRORS:
            raise
        except (Exception, SystemExit) as exc:  # SystemExit: a plugin calling sys.exit() must not end gatekit
            text = str(exc).splitlines()[0] if str(exc) else ""
            raise ConfigError(f"{where}plugin '{spec}' failed: {type(exc).__name__}{': ' + text if text else ''}") from exc
        if not isinstance(made, base):
            raise ConfigError(f"{where}plugin '{spec}' returned a {type(made).__name__}, not a {kind} "
                              f"({base.__module__}.{base.__qualname__})")
        return made

    # __wrapped__ points get_type_hints at the globals the annotations were written in.
    functools.update_wrapper(build, obj.__init__ if inspect.isclass(obj) else obj, assigned=("__doc__", "__annotations__"))
    build.__name__ = build.__qualname__ = getattr(obj, "__name__", "plugin")
    try:
        build.__signature__ = inspect.signature(obj)  # type: ignore[attr-defined]
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature are refused above
        pass
    return build


def _import(spec: str, kind: str, where: str) -> Callable[..., Any]:
    """Import ``"module:attr"``; any failure is one line naming the component and the exception."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"{where}cannot import module '{module_name}' for {kind} '{spec}' (no module "
                              f"'{exc.name}'; check the name, or install the package that provides it)") from exc
        missing = missing_extra(f"{where}{kind} '{spec}'", exc)
        if missing is not None:
            raise missing from exc
        raise ConfigError(
            f"{where}cannot import module '{module_name}' for {kind} '{spec}' ({exc.name} is not "
            f"installed; install the package that provides it)"
        ) from exc
    except (Exception, SystemExit) as exc:  # a plugin module that raises (or exits) on import: one line
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"{where}cannot import module '{module_name}' for {kind} '{spec}' "
                          f"({type(exc).__name__}{': ' + text if text else ''})") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}module '{module_name}' has no attribute '{attr}' ({kind} '{spec}')")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{where}{kind} '{spec}' is not callable")
    return obj
