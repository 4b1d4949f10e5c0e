"""Argument checks shared by criteria, learners and envs: one style, one-line messages.

Each check raises ``ValueError`` naming the argument and what it must be; ``arguments.build``
turns that into a :class:`~gatekit.errors.ConfigError` naming the recipe section.

Example:
    >>> positive("lr", 1e-4), in_range("gamma", 0.99, 0.0, 1.0), layer_sizes("hidden", [64, 64])
    (0.0001, 0.99, [64, 64])
    >>> positive("batch_size", 0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be > 0, got 0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def positive(name: str, value: float, *, allow_zero: bool = False) -> Any:
    """``value`` if it is a finite number > 0 (>= 0 with ``allow_zero``), else a ValueError."""
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def in_range(name: str, value: float, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False) -> Any:
    """``value`` if ``low <= value <= high`` (strict at an open end), else a ValueError."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low:g}, {high:g}{right}, got {value}")
    return value


def one_of(name: str, value: T, choices: Iterable[T]) -> T:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    options = list(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in options)}, got {value!r}")
    return value


def layer_sizes(name: str, hidden: Iterable[int]) -> list[int]:
    """A list of hidden layer sizes, each a positive int."""
    sizes = list(hidden)
    if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in sizes):
        raise ValueError(f"{name} must be a list of positive layer sizes, got {sizes}")
    return sizes

