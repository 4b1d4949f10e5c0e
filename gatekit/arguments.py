"""Component arguments: checked against the component's constructor, then the component built.

A recipe's ``env``, ``expert``, ``criterion`` and ``learner`` sections name a registered
component by ``id``; their other keys are that component's keyword arguments. Rather than a
second schema per component, the constructor's own signature and annotations are the schema:
:func:`check_kwargs` refuses unknown, missing and gatekit-provided keys and checks each value
with :func:`check_type`; :func:`build` resolves the id in its registry, checks, and calls it,
turning the component's own ``ValueError`` into a one-line
:class:`~gatekit.errors.ConfigError` that names the recipe section.

Example:
    >>> def bc(*, lr: float = 1e-3, hidden: int = 64) -> None: ...
    >>> check_kwargs(bc, {"lr": 3}, "learner")
    {'lr': 3.0}
    >>> check_kwargs(bc, {"hiden": 32}, "learner")
    Traceback (most recent call last):
    ...
    gatekit.errors.ConfigError: recipe: unknown key 'learner.hiden'; did you mean 'hidden'?
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, Literal, Protocol

from gatekit.errors import ConfigError, GatekitError, missing_extra, nearest


class ComponentSpec(Protocol):
    """What :func:`build` reads of a component section (:class:`gatekit.config.Component`)."""

    @property
    def id(self) -> str: ...

    @property
    def kwargs(self) -> dict[str, Any]: ...


def value_kind(v: Any) -> str:
    """How an error message shows a value it refuses (``int 3``, ``list``, ``nothing``)."""
    return "nothing" if v is None else f"{type(v).__name__} {v!r}" if not isinstance(v, (dict, list)) else type(v).__name__


def check_type(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widened to floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return check_type(arg, value, path)
            except ConfigError as exc:
                errors.append(exc)
        allowed = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"recipe: '{path}' must be {allowed}, got {value_kind(value)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"recipe: '{path}' must be null, got {value_kind(value)}")
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(f"recipe: '{path}' must be one of {', '.join(repr(a) for a in args)}; got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"recipe: '{path}' must be true or false, got {value_kind(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return int(value)
        raise ConfigError(f"recipe: '{path}' must be an integer, got {value_kind(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise ConfigError(f"recipe: '{path}' must be a finite number, got {value}")
            return float(value)
        raise ConfigError(f"recipe: '{path}' must be a number, got {value_kind(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"recipe: '{path}' must be a string, got {value_kind(value)}")
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"recipe: '{path}' must be a list, got {value_kind(value)}")
        inner = args[0] if args else Any
        return [check_type(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"recipe: '{path}' must be a mapping, got {value_kind(value)}")
        return value
    return value  # other annotations (classes, callables): left to the component to check


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def check_kwargs(fn: Any, kwargs: dict[str, Any], path: str, *, provided: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check a component's keyword arguments against ``fn``'s signature and annotations.

    ``provided`` are arguments gatekit passes itself (``env``, ``split``, ``seed``, spaces):
    a recipe may not set them.
    """
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return kwargs
    params = {n: p for n, p in sig.parameters.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # annotations naming optional packages that are not installed
        hints = {}
    settable = {n for n in params if n not in provided}
    out = {}
    for key, value in kwargs.items():
        if key in provided:
            raise ConfigError(f"recipe: '{path}.{key}' is set by gatekit; remove it from the recipe")
        if key not in params:
            if accepts_any:
                out[key] = value
                continue
            raise ConfigError(f"recipe: unknown key '{path}.{key}'; {nearest(key, settable)}")
        out[key] = check_type(hints.get(key, Any), value, f"{path}.{key}")
    for name, p in params.items():
        if name in settable and p.default is p.empty and name not in out:
            raise ConfigError(f"recipe: missing required key '{path}.{name}'; add it")
    return out


def build(registry: Any, comp: ComponentSpec, path: str, **provided: Any) -> Any:
    """Build ``comp`` from ``registry``: resolve its id, check its kwargs, call it.

    A ``ValueError``/``TypeError`` raised by the component's own validation becomes a
    one-line :class:`ConfigError` naming the recipe section.
    """
    fn = registry.get(comp.id, field=f"{path}.id")
    kwargs = check_kwargs(fn, comp.kwargs, path, provided=tuple(provided))
    try:
        return fn(**provided, **kwargs)
    except GatekitError:
        raise
    except ModuleNotFoundError as exc:  # an optional stack imported when the component is built
        missing = missing_extra(f"{path} '{comp.id}'", exc)
        if missing is None:
            raise
        raise missing from exc
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        # a component rejecting its (type-checked) arguments: name the section, keep one line
        text = str(exc).splitlines()[0] if str(exc) else ""
        msg = text if isinstance(exc, (ValueError, TypeError)) and text else f"{type(exc).__name__}: {text}"
        raise ConfigError(f"recipe: {path} '{comp.id}': {msg}") from exc
