"""A run's evaluations: periodic ones during training, the final one, and the expert's own.

The :class:`Evaluator` snapshots the novice (its state and its deterministic policy), sends the
evaluation to a worker process (or runs it in place), collects the results as they arrive,
writes them to ``eval.csv`` and TensorBoard, keeps ``novice_best.pt`` at the best periodic
success, and records every evaluation in the run's state (so that a resumed run keeps its
learning curve). The expert's reference figures depend only on the env, the expert and the
episode count, so they are cached beside the run folders (``<runs>/.expert_reference/``) and
shared by every run that asks for the same ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatekit.config import Recipe
from gatekit.evaluation import EvalWorker, evaluate, summarize
from gatekit.runs.checkpoint import RunState
from gatekit.runs.logs import RunLogs
from gatekit.runs.rundir import atomic_torch_save, atomic_write_bytes
from gatekit.wrappers.intervention import Totals

EXPERT_TAG = "expert"
FINAL_TAG = "final"


def _stat_dict(episodes: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {f"test_{k}": s.as_dict() for k, s in summarize(episodes).items()}


class Evaluator:
    """Evaluations of one run (see the module docstring).

    Args:
        recipe: the run's recipe (its env, expert and ``eval`` section).
        run_dir: the run folder (``novice_best.pt``; the expert cache sits beside it).
        state: the run's state, whose ``evals`` list this evaluator appends to.
        logs: where evaluation rows go.
        wall: the run's wall clock (seconds so far), stamped on each evaluation.
    """

    def __init__(self, recipe: Recipe, run_dir: Path, *, state: RunState, logs: RunLogs,
                 wall: Callable[[], float]) -> None:
        self.recipe = recipe
        self.run_dir = run_dir
        self.state = state
        self.logs = logs
        self.wall = wall
        self.worker: EvalWorker | None = None
        self._pending: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}

    def start(self) -> None:
        """Start the worker process when the recipe evaluates in one and has anything to evaluate."""
        e = self.recipe.eval
        if e.in_worker and (e.every_steps or e.every_expert_steps or e.final_episodes or e.expert_reference):
            self.worker = EvalWorker()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    # -- submitting ------------------------------------------------------------------------------
    def submit(self, tag: str, episodes: int, totals: Totals, *, learner: Any = None) -> None:
        """Evaluate the learner's current novice (or, with ``learner=None``, the expert)."""
        meta = {"tag": tag, "step": totals.steps, "expert_steps": totals.expert_steps, "switches": totals.switches,
                "episodes": episodes}
        snapshot = None if learner is None else learner.state_dict()
        actor = None if learner is None else learner.policy()
        expert_comp = self.recipe.expert if learner is None else None
        self._pending[tag] = (meta, snapshot)
        if self.worker is not None:
            self.worker.submit(tag, self.recipe.env, actor, episodes, expert_comp=expert_comp)
        else:
            self._record(tag, evaluate(self.recipe.env, actor, episodes, expert_comp=expert_comp))

    def expert_reference(self, totals: Totals) -> None:
        """The expert alone on the final evaluation's episodes, once per run (from the cache
        when another run measured it already)."""
        if any(e.get("tag") == EXPERT_TAG for e in self.state.evals):
            return
        episodes = self.recipe.eval.final_episodes or self.recipe.eval.episodes
        cached = self._read_cache(episodes)
        if cached is not None:
            self._pending[EXPERT_TAG] = ({"tag": EXPERT_TAG, "step": totals.steps, "expert_steps": totals.expert_steps,
                                          "switches": totals.switches, "episodes": episodes, "cached": True}, None)
            self._record(EXPERT_TAG, cached)
            return
        self.submit(EXPERT_TAG, episodes, totals)

    def final(self, totals: Totals, learner: Any) -> None:
        """The final evaluation (``eval.final_episodes``), its episodes shared by
        ``eval.final_workers`` processes; waits for every pending evaluation."""
        n = self.recipe.eval.final_episodes
        workers = min(self.final_workers(), n)
        if n and self.worker is not None and workers > 1:
            self._final_in_parallel(n, workers, totals, learner)
            return
        if n:
            self.submit(FINAL_TAG, n, totals, learner=learner)
        self.collect(block=True)

    def final_workers(self) -> int:
        """How many processes share the final evaluation."""
        if self.recipe.eval.final_workers is not None:
            return self.recipe.eval.final_workers
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        return max(1, min(cores, 4))

    def _final_in_parallel(self, n: int, workers: int, totals: Totals, learner: Any) -> None:
        """Episodes ``[0, n)`` in ``workers`` contiguous parts: the first in the run's own worker
        (after the evaluations queued there), the others in fresh ones; merged in seed order."""
        assert self.worker is not None
        self._pending[FINAL_TAG] = ({"tag": FINAL_TAG, "step": totals.steps, "expert_steps": totals.expert_steps,
                                     "switches": totals.switches, "episodes": n}, learner.state_dict())
        actor = learner.policy()
        bounds = [round(k * n / workers) for k in range(workers + 1)]
        extra = [EvalWorker() for _ in range(workers - 1)]
        parts: dict[int, list[dict[str, float]]] = {}
        try:
            for k, worker in enumerate([self.worker, *extra]):
                worker.submit(f"{FINAL_TAG}#{k}", self.recipe.env, actor, bounds[k + 1] - bounds[k], first=bounds[k])
            for tag, episodes in self.worker.poll(block=True):
                if tag.startswith(f"{FINAL_TAG}#"):
                    parts[0] = episodes
                else:
                    self._record(tag, episodes)
            for k, worker in enumerate(extra, start=1):
                parts[k] = worker.poll(block=True)[0][1]
        finally:
            for worker in extra:
                worker.close()
        self._record(FINAL_TAG, [e for k in sorted(parts) for e in parts[k]])

    # -- collecting ------------------------------------------------------------------------------
    def collect(self, *, block: bool) -> None:
        """Record the evaluations the worker has finished (all pending ones with ``block``)."""
        if self.worker is None:
            return
        for tag, episodes in self.worker.poll(block=block):
            self._record(tag, episodes)

    def _record(self, tag: str, episodes: list[dict[str, float]]) -> None:
        meta, snapshot = self._pending.pop(tag)
        row = {**meta, **_stat_dict(episodes), "wall_seconds": self.wall()}
        self.state.evals.append(row)
        if tag == EXPERT_TAG:
            if not meta.get("cached"):
                self._write_cache(episodes)
            return
        self.logs.evaluation(row)
        success = row["test_success"]["mean"]
        if snapshot is not None and success > self.state.best_success:
            self.state.best_success = success
            atomic_torch_save(snapshot, self.run_dir / "novice_best.pt")

    def last_success(self) -> float:
        """The novice's test success at its latest evaluation (NaN before the first)."""
        for e in reversed(self.state.evals):
            if e.get("tag") != EXPERT_TAG:
                return float(e["test_success"]["mean"])
        return math.nan

    # -- the expert's cache ---------------------------------------------------------------------
    def _cache_path(self, episodes: int) -> Path:
        key = json.dumps({"env": self.recipe.env.factory().to_dict(), "expert": self.recipe.expert.to_dict(),
                          "episodes": episodes, "format": 1}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.run_dir.parent / ".expert_reference" / f"{self.recipe.env.id}-{self.recipe.expert.id}-{digest}.json"

    def _read_cache(self, episodes: int) -> list[dict[str, float]] | None:
        cache = self._cache_path(episodes)
        if not cache.is_file():
            return None
        try:
            cached = json.loads(cache.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return cached if isinstance(cached, list) and len(cached) == episodes else None

    def _write_cache(self, episodes: list[dict[str, float]]) -> None:
        cache = self._cache_path(len(episodes))
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, json.dumps(episodes).encode())
