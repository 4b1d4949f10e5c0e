"""A run's evaluations: periodic ones during training, the final one, and the expert's own.

The :class:`Evaluator` snapshots the novice (its state and its deterministic policy), sends the
evaluation to a worker process (or runs it in place), collects the results as they arrive,
writes them to ``eval.csv`` and TensorBoard, keeps ``novice_best.pt`` at the best periodic
success, and records every evaluation in the run's state (so that a resumed run keeps its
learning curve). The expert's reference figures depend only on the env, the expert and the
episode count, so they are cached beside the run folders (``<runs>/.expert_reference/``) and
shared by every run that asks for the same ones.

The expert's reference never holds up the learning curve: in the worker it runs in parts of
:data:`EXPERT_PART` episodes (the same episodes, by seed), and a part is sent only while the
worker has nothing else to do, so a periodic evaluation of the novice waits for one part at
most. Parts still unsent at the end run after the final evaluation.

Evaluations still running are part of the run's state too (``RunState.pending_evals``: what
was submitted, and the novice's state then), so a checkpoint carries them and a resumed run
submits them again (:meth:`Evaluator.resubmit`): a kill loses no evaluation. An evaluation
that fails (its env raises, its worker dies) is an :class:`~gatekit.errors.EvaluationError`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from gatekit.arguments import build
from gatekit.config import Recipe
from gatekit.errors import EvaluationError, GatekitError
from gatekit.evaluation import EvalWorker, evaluate, summarize
from gatekit.runs.checkpoint import RunState
from gatekit.runs.integrity import seal
from gatekit.runs.logs import RunLogs
from gatekit.runs.rundir import atomic_torch_save, atomic_write_bytes
from gatekit.wrappers.intervention import Totals

PERIODIC_PREFIX = "step-"

EXPERT_TAG = "expert"
FINAL_TAG = "final"
EXPERT_PART = 10
"""Episodes of each part of the expert's reference, when it runs in the worker."""


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
        self._expert_parts: deque[tuple[int, int]] = deque()  # (first episode, episodes) not sent yet
        self._expert_done: dict[int, list[dict[str, float]]] = {}
        self._expert_total = 0
        self._expert_ticks: dict[str, int] = {}
        self._final_ticks: dict[str, int] = {}
        self.on_episode: Callable[[str, int, int], None] | None = None
        """Called as evaluation episodes finish: ``(what, done, total)``, ``what`` being
        ``final`` or ``expert`` (progress for the user)."""

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
        # a copy: a module's state_dict shares storage with its live parameters
        snapshot = None if learner is None else copy.deepcopy(learner.state_dict())
        self._submit(meta, snapshot, None if learner is None else learner.policy())

    def _submit(self, meta: dict[str, Any], snapshot: dict[str, Any] | None, actor: Any) -> None:
        tag, episodes = meta["tag"], meta["episodes"]
        expert_comp = self.recipe.expert if actor is None else None
        self._pending[tag] = (meta, snapshot)
        self.state.pending_evals.append({"meta": meta, "snapshot": snapshot})
        if self.worker is not None:
            self.worker.submit(tag, self.recipe.env, actor, episodes, expert_comp=expert_comp)
            return
        what = "final" if tag == FINAL_TAG else "expert" if tag == EXPERT_TAG else None
        tick = None
        if what is not None and self.on_episode is not None:
            def tick(i: int, what: str = what, n: int = episodes) -> None:
                assert self.on_episode is not None
                self.on_episode(what, i + 1, n)
        try:
            episodes_out = evaluate(self.recipe.env, actor, episodes, expert_comp=expert_comp, on_episode=tick)
        except GatekitError:
            raise
        except Exception as exc:
            text = (str(exc).splitlines() or [""])[0][:200]
            raise EvaluationError(f"evaluation '{tag}' failed: {type(exc).__name__}{': ' + text if text else ''} "
                                  f"(env '{self.recipe.env.id}', test split); the run is saved and re-runs it on "
                                  f"resume") from exc
        self._record(tag, episodes_out)

    def resubmit(self, observation_space: gym.Space, action_space: gym.Space) -> int:
        """Submit again the periodic evaluations a resumed run's checkpoint had pending (the
        final and the expert's are submitted anew by :meth:`final` and :meth:`expert_reference`);
        returns how many."""
        from gatekit.learners import LEARNERS

        pending, self.state.pending_evals = self.state.pending_evals, []
        again = [p for p in pending if str(p["meta"]["tag"]).startswith(PERIODIC_PREFIX) and p["snapshot"] is not None]
        for p in again:
            with torch.random.fork_rng(devices=[]):  # building a learner must not move the run's RNG
                novice = build(LEARNERS, self.recipe.learner, "learner", observation_space=observation_space,
                               action_space=action_space, seed=self.recipe.seed)
            novice.load_state_dict(p["snapshot"])
            self._submit(p["meta"], p["snapshot"], novice.policy())
        return len(again)

    def expert_reference(self, totals: Totals) -> None:
        """The expert alone on the final evaluation's episodes, once per run (from the cache
        when another run measured it already); in the worker, in parts sent while it is idle."""
        if any(e.get("tag") == EXPERT_TAG for e in self.state.evals):
            return
        episodes = self.recipe.eval.final_episodes or self.recipe.eval.episodes
        meta = {"tag": EXPERT_TAG, "step": totals.steps, "expert_steps": totals.expert_steps,
                "switches": totals.switches, "episodes": episodes}
        cached = self._read_cache(episodes)
        if cached is not None:
            self._pending[EXPERT_TAG] = ({**meta, "cached": True}, None)
            self._record(EXPERT_TAG, cached)
            return
        if self.worker is None:
            self.submit(EXPERT_TAG, episodes, totals)
            return
        self._pending[EXPERT_TAG] = (meta, None)
        self._expert_total = episodes
        self._expert_parts = deque((lo, min(EXPERT_PART, episodes - lo)) for lo in range(0, episodes, EXPERT_PART))
        self._expert_done = {}
        self._expert_ticks = {}
        self._send_expert_part()

    def _send_expert_part(self, *, force: bool = False) -> None:
        """Send the next part of the expert's reference if the worker is idle (or ``force``)."""
        while self.worker is not None and self._expert_parts and (force or not self.worker.pending):
            first, n = self._expert_parts.popleft()
            self.worker.submit(f"{EXPERT_TAG}#{first}", self.recipe.env, None, n, expert_comp=self.recipe.expert,
                               first=first)
            if not force:
                return

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
        self._send_expert_part(force=True)
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
            self._send_expert_part(force=True)  # the expert's reference parts left, then the final's first part
            for k, worker in enumerate([self.worker, *extra]):
                worker.submit(f"{FINAL_TAG}#{k}", self.recipe.env, actor, bounds[k + 1] - bounds[k], first=bounds[k])
            for k, worker in enumerate([self.worker, *extra]):
                for tag, episodes in worker.poll(block=True, on_episode=self._progress):
                    if tag.startswith(f"{FINAL_TAG}#"):
                        parts[k] = episodes
                    else:
                        self._route(tag, episodes)
        finally:
            for worker in extra:
                worker.close()
        self._record(FINAL_TAG, [e for k in sorted(parts) for e in parts[k]])

    # -- collecting ------------------------------------------------------------------------------
    def collect(self, *, block: bool) -> None:
        """Record the evaluations the worker has finished (all pending ones with ``block``), and
        send the next part of the expert's reference when the worker is idle."""
        if self.worker is None:
            return
        for tag, episodes in self.worker.poll(block=block, on_episode=self._progress):
            self._route(tag, episodes)
        self._send_expert_part()

    def _route(self, tag: str, episodes: list[dict[str, float]]) -> None:
        """Record a finished evaluation; a part of the expert's reference waits for the others."""
        if tag.startswith(f"{EXPERT_TAG}#"):
            self._expert_done[int(tag.split("#")[1])] = episodes
            if not self._expert_parts and sum(map(len, self._expert_done.values())) == self._expert_total:
                self._record(EXPERT_TAG, [ep for k in sorted(self._expert_done) for ep in self._expert_done[k]])
        else:
            self._record(tag, episodes)

    def _progress(self, tag: str, done: int) -> None:
        if self.on_episode is None:
            return
        if tag == FINAL_TAG:
            self.on_episode("final", done, self.recipe.eval.final_episodes)
        elif tag.startswith(f"{FINAL_TAG}#"):  # the final shared by workers: its parts add up
            self._final_ticks[tag] = done
            self.on_episode("final", sum(self._final_ticks.values()), self.recipe.eval.final_episodes)
        elif tag.startswith(f"{EXPERT_TAG}#"):
            self._expert_ticks[tag] = done  # parts finish inside one poll, before collect records them
            self.on_episode("expert", sum(self._expert_ticks.values()), self._expert_total)

    def expert_pending(self) -> bool:
        """The expert's reference is still being measured."""
        return EXPERT_TAG in self._pending

    def _record(self, tag: str, episodes: list[dict[str, float]]) -> None:
        meta, snapshot = self._pending.pop(tag)
        self.state.pending_evals = [p for p in self.state.pending_evals if p["meta"]["tag"] != tag]
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
            atomic_torch_save(seal(snapshot), self.run_dir / "novice_best.pt")

    def last_success(self) -> float:
        """The novice's test success at its latest evaluation (NaN before the first)."""
        return self.last_eval()[0]

    def last_eval(self) -> tuple[float, int | None]:
        """(test success, training step) of the novice's latest evaluation ((NaN, None) before
        the first)."""
        for e in reversed(self.state.evals):
            if e.get("tag") != EXPERT_TAG:
                return float(e["test_success"]["mean"]), int(e["step"])
        return math.nan, None

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
