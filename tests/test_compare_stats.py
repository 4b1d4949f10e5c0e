"""Comparison statistics (rliable's stratified bootstrap over seeds) and how cells read."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from gatekit.compare import Comparison, MethodSpec, summarize
from gatekit.compare.stats import (
    curve_band,
    interval,
    intervals,
    probability_of_improvement,
    rliable,
)
from gatekit.compare.summary import RunRow, fmt_interval, poi_table
from gatekit.errors import GatekitError
from gatekit.evaluation import Stat
from gatekit.runs.results import RunResult
from tests.recipes import needs_rliable

REPS = 300  # enough for the assertions below; the recipes use 2000


@needs_rliable
def test_identical_seeds_give_a_zero_width_interval():
    iv = interval([0.4] * 5, reps=REPS)
    assert (iv.mean, iv.low, iv.high, iv.n) == (0.4, 0.4, 0.4, 5) and iv.has_interval


@needs_rliable
def test_interval_brackets_the_mean_within_the_seeds_range():
    values = [0.1, 0.3, 0.5, 0.7, 0.9]
    iv = interval(values, reps=REPS)
    assert iv.mean == pytest.approx(0.5) and iv.n == 5
    assert 0.1 <= iv.low < 0.5 < iv.high <= 0.9
    # two seeds: the resampled means are the two values and their mean, so the interval spans both
    two = interval([1000, 1200], reps=REPS)
    assert (two.low, two.mean, two.high) == (1000, 1100, 1200)


@needs_rliable
def test_one_seed_has_no_interval_and_nan_seeds_are_left_out():
    one = interval([0.7, math.nan], reps=REPS)
    assert (one.mean, one.low, one.high, one.n) == (0.7, 0.7, 0.7, 1) and not one.has_interval
    assert fmt_interval(one, lambda x: f"{x:.2f}") == "0.70"
    none = interval([math.nan], reps=REPS)
    assert none.n == 0 and fmt_interval(none, str) == "-"


@needs_rliable
def test_columns_bootstrapped_together_match_their_own_call():
    cols = {"a": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [5.0, 5.0, 5.0, 5.0, 5.0], "c": [1.0, math.nan, 3.0, 4.0, 9.0]}
    together = intervals(cols, reps=REPS)
    assert together["b"].low == together["b"].high == 5.0
    assert together["c"].n == 4 and together["c"].mean == pytest.approx(4.25)
    alone = interval(cols["a"], reps=REPS)
    assert together["a"].mean == alone.mean
    assert abs(together["a"].low - alone.low) <= 0.6 and abs(together["a"].high - alone.high) <= 0.6


@needs_rliable
def test_intervals_are_reproducible_and_leave_numpy_global_state_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    first = interval([0.1, 0.5, 0.2, 0.9], reps=REPS)
    assert np.random.rand() == expected  # rliable draws from the global generator; it is put back
    assert interval([0.1, 0.5, 0.2, 0.9], reps=REPS) == first


@needs_rliable
def test_probability_of_improvement_known_cases():
    better, worse = [0.9, 0.8, 0.95, 0.85, 0.9], [0.1, 0.2, 0.1, 0.3, 0.2]
    p = probability_of_improvement(better, worse, reps=REPS)
    assert (p.mean, p.low, p.high, p.n) == (1.0, 1.0, 1.0, 5)  # dominating: 1 with a tight interval
    assert probability_of_improvement(worse, better, reps=REPS).mean == 0.0
    same = probability_of_improvement([0.5] * 5, [0.5] * 5, reps=REPS)
    assert (same.mean, same.low, same.high) == (0.5, 0.5, 0.5)
    # pairs: 3 > 2 and 3 > 1 count 1 each, 1 > 2 counts 0, the tie 1 = 1 counts 1/2
    mixed = probability_of_improvement([3.0, 1.0], [2.0, 1.0], reps=REPS)
    assert mixed.mean == pytest.approx(2.5 / 4) and 0.0 <= mixed.low <= mixed.high <= 1.0
    single = probability_of_improvement([0.9], [0.1, 0.2], reps=REPS)
    assert (single.mean, single.n) == (1.0, 1) and not single.has_interval
    assert probability_of_improvement([], [0.1], reps=REPS).n == 0


@needs_rliable
def test_curve_band_over_seeds():
    curves = np.array([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0], [0.0, 0.5, 1.0]])
    mean, low, high = curve_band(curves, reps=REPS)
    assert np.allclose(mean, [0, 0.5, 1]) and np.allclose(low, mean) and np.allclose(high, mean)
    mean, low, high = curve_band(np.array([[0.0, 1.0], [1.0, 0.0]]), reps=REPS)
    assert np.allclose(mean, [0.5, 0.5]) and np.all(low <= mean) and np.all(high >= mean) and np.all(high > low)
    one = curve_band(np.array([[0.2, 0.4]]), reps=REPS)
    assert all(np.allclose(x, [0.2, 0.4]) for x in one)


def _run(seed: int, success: float) -> RunResult:
    return RunResult(status="finished", recipe="t", seed=seed, env="e", expert="x", criterion="c", learner="l",
                     total_steps=100, expert_steps=30, expert_queries=30, switches=3, episodes=4, wall_seconds=1.0,
                     test={"success": Stat(success, 0.0, 0.0, 10)})


@needs_rliable
def test_poi_table_compares_the_focus_with_every_other_method(tmp_path):
    comp = Comparison(name="t", focus="A", methods=[MethodSpec(name=n, recipe="r") for n in ("A", "B", "C")])
    rows = [RunRow("A", s, tmp_path, "finished", _run(s, 0.9)) for s in range(3)]
    rows += [RunRow("B", s, tmp_path, "finished", _run(s, 0.1)) for s in range(3)]
    rows += [RunRow("C", 0, tmp_path, "finished", _run(0, 0.95))]
    header, body = poi_table(summarize(comp, rows, reps=REPS))
    assert header[:2] == ["A vs", "P(A > method) on test success [95% CI]"]
    assert body == [["B", "1.00 [1.00, 1.00]", "3 vs 3"], ["C", "0.00", "3 vs 1"]]  # one seed of C: no interval
    comp.focus = None
    assert poi_table(summarize(comp, rows, reps=REPS)) == ([], [])


def test_without_rliable_one_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rliable", None)  # import rliable -> ImportError
    with pytest.raises(GatekitError) as err:
        rliable()
    msg = str(err.value)
    assert "\n" not in msg and "gatekit[stats]" in msg
