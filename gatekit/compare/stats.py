"""Confidence intervals over seeds, with rliable (the ``stats`` extra).

Every interval is rliable's percentile interval from a *stratified bootstrap over seeds*
(Agarwal et al., 2021, "Deep RL at the Edge of the Statistical Precipice"): with one task, the
strata are the runs of one method, resampled with replacement. The probability of improvement
``P(X > Y)`` is rliable's (the Mann-Whitney statistic over the runs of X and Y, ties counting
one half), with X's and Y's runs resampled independently.

rliable draws its resamples from numpy's global generator; each call here seeds it (and puts
the caller's state back), so a table regenerated from the same runs reads the same.

Example:
    >>> iv = interval([0.5, 0.5, 0.5], reps=200)
    >>> (iv.mean, iv.low, iv.high, iv.n)
    (0.5, 0.5, 0.5, 3)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gatekit.errors import GatekitError

CONFIDENCE = 0.95
DEFAULT_REPS = 2000
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A point estimate and its 95% confidence interval from ``n`` seeds (``n == 1``: no
    interval, ``low == high == mean``; ``n == 0``: NaN)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def has_interval(self) -> bool:
        return self.n > 1

    @staticmethod
    def empty() -> Interval:
        return Interval(math.nan, math.nan, math.nan, 0)


def rliable() -> tuple[Any, Any]:
    """``(rliable.library, rliable.metrics)``, or a one-line error naming the extra."""
    try:
        from rliable import library, metrics
    except ImportError as exc:
        raise GatekitError("compare: the confidence intervals need rliable; "
                           f"pip install 'gatekit[stats]' ({exc})") from None
    return library, metrics


def rliable_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rliable")
    except PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def interval(values: Sequence[float], *, reps: int = DEFAULT_REPS, seed: int = SEED) -> Interval:
    """Mean over seeds and its 95% stratified-bootstrap interval (NaN values are left out)."""
    return intervals({"x": values}, reps=reps, seed=seed)["x"]


def intervals(columns: dict[str, Sequence[float]], *, reps: int = DEFAULT_REPS, seed: int = SEED) -> dict[str, Interval]:
    """:func:`interval` of each column (the seeds of one method, one metric a column).

    Columns with the same seeds are bootstrapped in one rliable call, each column a stratum of
    its own (so each interval is the one a call on that column alone gives, at a fraction of
    the cost).
    """
    out: dict[str, Interval] = {}
    groups: dict[tuple[int, ...], list[str]] = {}
    for name, values in columns.items():
        arr = np.asarray(values, dtype=np.float64)
        present = tuple(np.flatnonzero(np.isfinite(arr)).tolist())
        if len(present) < 2:
            kept = arr[list(present)]
            out[name] = Interval(float(kept[0]), float(kept[0]), float(kept[0]), 1) if kept.size else Interval.empty()
        else:
            groups.setdefault(present, []).append(name)
    for rows, names in groups.items():
        scores = np.stack([np.asarray(columns[n], dtype=np.float64)[list(rows)] for n in names], axis=1)
        point, (low, high) = _bootstrap_mean(scores, reps=reps, seed=seed)
        for j, name in enumerate(names):
            out[name] = Interval(float(point[j]), float(low[j]), float(high[j]), len(rows))
    return {name: out[name] for name in columns}


def _bootstrap_mean(scores: np.ndarray, *, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """rliable's ``get_interval_estimates`` of the per-column mean of ``scores`` (runs x columns)."""
    library, _ = rliable()
    with _seeded(seed):
        point, ci = library.get_interval_estimates({"m": scores}, lambda x: np.mean(x, axis=0), reps=reps,
                                                   confidence_interval_size=CONFIDENCE)
    return np.asarray(point["m"]), np.asarray(ci["m"]).reshape(2, -1)


def probability_of_improvement(x: Sequence[float], y: Sequence[float], *, reps: int = DEFAULT_REPS,
                               seed: int = SEED) -> Interval:
    """``P(X > Y)`` over the seeds of two methods, with its 95% interval (rliable's metric and
    bootstrap). ``n`` is the smaller number of seeds; with one seed on either side there is no
    interval."""
    a, b = _finite(x), _finite(y)
    if a.size == 0 or b.size == 0:
        return Interval.empty()
    library, metrics = rliable()
    sx, sy = a.reshape(-1, 1), b.reshape(-1, 1)
    p = float(metrics.probability_of_improvement(sx, sy))
    n = int(min(a.size, b.size))
    if n < 2:
        return Interval(p, p, p, n)
    with _seeded(seed):
        _, ci = library.get_interval_estimates({"poi": (sx, sy)}, metrics.probability_of_improvement, reps=reps,
                                               confidence_interval_size=CONFIDENCE)
    low, high = np.asarray(ci["poi"]).reshape(-1)[:2]
    return Interval(p, float(low), float(high), n)


def curve_band(curves: np.ndarray, *, reps: int = DEFAULT_REPS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds of learning curves on one grid (``curves``: seeds x points) and the 95%
    stratified-bootstrap band at each point; with one seed the band is the curve itself."""
    curves = np.asarray(curves, dtype=np.float64)
    if curves.shape[0] < 2:
        row = curves[0] if curves.shape[0] else np.zeros(curves.shape[1])
        return row, row, row
    point, (low, high) = _bootstrap_mean(curves, reps=reps, seed=seed)
    return point, low, high
