"""Running a comparison's pending runs: how runs are executed is one small interface.

A :class:`Backend` takes the :class:`Job` s (picklable: a resolved recipe and a run folder) and
reports what happens through an :class:`Events` sink (run started, live counters, run ended);
it returns each run's :class:`Outcome`. The figures themselves are not passed back: every run
writes its own ``results.json``, which the summary reads. :class:`LocalProcesses` runs each job
in a fresh spawned process on this machine; another backend (a cluster scheduler) implements the
same ``run`` and leaves planning, progress and the summary untouched.

Ctrl-C (or SIGTERM): :class:`LocalProcesses` starts no further run and sends each running one a
single SIGINT; a run then checkpoints and writes ``results.json`` with status ``interrupted``, so
the next ``gatekit compare`` resumes it. Workers sit in their own process group, so a terminal's
Ctrl-C reaches only the parent (which forwards it once); a second Ctrl-C stops them at once. A
worker starts deaf to SIGINT, until it has left the terminal's group, and then also learns of a
stop from an event the parent sets. A worker whose parent was killed outright stops the same way
on its own.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gatekit.compare.plan import PlannedRun, has_records
from gatekit.processes import start_deaf_to_ctrl_c

POLL_SECONDS = 0.5
"""How often the parent looks at its workers (progress messages wake it earlier)."""


@dataclass(frozen=True)
class Job:
    """One run to execute: a resolved recipe (as a plain dict) and its folder."""

    key: str
    """A short label (``AIM s0``), unique within one call."""
    recipe: dict[str, Any]
    run_dir: str
    resume: bool
    """Continue the records already in ``run_dir`` (as ``gatekit train --resume``)."""
    total_steps: int


@dataclass(frozen=True)
class Outcome:
    """How a job ended: its status (``finished``, ``interrupted``, ``failed``) and an error line."""

    status: str
    error: str = ""


class Events(Protocol):
    """What a backend reports while it runs jobs (the progress display implements it)."""

    def started(self, job: Job) -> None: ...

    def progress(self, key: str, live: dict[str, Any]) -> None: ...

    def ended(self, job: Job, outcome: Outcome) -> None: ...


class Backend(Protocol):
    """Executes jobs; returns an :class:`Outcome` per job key. KeyboardInterrupt propagates
    after the running jobs were asked to stop cleanly."""

    def run(self, jobs: Sequence[Job], events: Events) -> dict[str, Outcome]: ...


def train_job(job: Job, on_progress: Callable[[dict[str, Any]], None]) -> Outcome:
    """Run one job in this process. Never raises (but KeyboardInterrupt): a failure is an outcome."""
    from gatekit.config import load_recipe_dict
    from gatekit.runs import train

    try:
        if job.resume:
            res = train(resume=Path(job.run_dir), progress=False, on_progress=on_progress)
        else:
            res = train(load_recipe_dict(job.recipe), out=Path(job.run_dir), progress=False, on_progress=on_progress)
        return Outcome(res.status, res.error or "")
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Outcome("failed", f"{type(exc).__name__}: {msg}")


def _worker_main(job: Job, messages: Any, stopping: Any) -> None:
    """Body of one spawned worker process: train, then post ``("ended", key, status, error)``.

    The worker starts deaf to SIGINT (it is still in the terminal's process group while it
    imports), leaves the group, then listens again; ``stopping`` (an event the parent sets before
    it forwards a Ctrl-C) tells it of a stop whose signal came while it was deaf.

    If the parent dies (killed with SIGKILL), nobody reads the messages any more: the run stops
    as on Ctrl-C (checkpoint, status interrupted) at its next progress report, instead of
    training on unseen and then waiting forever to flush its last message.
    """
    os.setpgrp()  # the terminal's Ctrl-C goes to the parent only, which forwards it once
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parent = os.getppid()
    orphaned = False

    def on_progress(live: dict[str, Any]) -> None:
        nonlocal orphaned
        if os.getppid() == parent:
            messages.put(("progress", job.key, dict(live)))
        elif not orphaned:
            orphaned = True
            os.kill(os.getpid(), signal.SIGINT)

    try:
        if stopping.is_set():
            raise KeyboardInterrupt
        outcome = train_job(job, on_progress)
    except KeyboardInterrupt:  # stopped before the run could install its own handler
        outcome = Outcome("interrupted", "stopped before the run started")
    if os.getppid() != parent:
        messages.cancel_join_thread()
        return
    messages.put(("ended", job.key, outcome.status, outcome.error))
    messages.close()
    messages.join_thread()  # the last message is in the pipe before this process exits


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> dict[int, Any]:
    """SIGTERM to the parent (``kill``, a scheduler's time limit) stops the runs as Ctrl-C does,
    instead of leaving them running on their own. SIGINT too, even when this process inherited
    it ignored (a shell starts background jobs so): ``gatekit train`` stops on SIGINT however it
    was started, and a comparison of runs must as well. Returns the previous handlers (empty:
    not the main thread, nothing changed)."""
    old: dict[int, Any] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, _raise_interrupt)
    except ValueError:
        pass
    return old


class LocalProcesses:
    """At most ``workers`` runs at a time, each in a fresh spawned process (MetaDrive allows one
    engine per process, and no simulator state is inherited)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def run(self, jobs: Sequence[Job], events: Events) -> dict[str, Outcome]:
        ctx = mp.get_context("spawn")
        messages = ctx.Queue()
        self._stopping = ctx.Event()
        waiting = deque(jobs)
        running: dict[str, tuple[Job, Any]] = {}
        outcomes: dict[str, Outcome] = {}
        term = _terminate_as_interrupt()
        try:
            while waiting or running:
                while waiting and len(running) < self.workers:
                    job = waiting.popleft()
                    proc = ctx.Process(target=_worker_main, args=(job, messages, self._stopping),
                                       name=f"gatekit {job.key}")
                    start_deaf_to_ctrl_c(proc)
                    running[job.key] = (job, proc)
                    events.started(job)
                self._drain(messages, events, outcomes)
                self._reap(running, messages, events, outcomes)
        except KeyboardInterrupt:
            self._stop(running, messages, events, outcomes)
            raise
        finally:
            messages.close()
            for sig, handler in term.items():
                signal.signal(sig, handler)
        return outcomes

    @staticmethod
    def _drain(messages: Any, events: Events, outcomes: dict[str, Outcome], timeout: float = POLL_SECONDS) -> None:
        """Hand the queued messages to ``events`` (waiting up to ``timeout`` for the first)."""
        block = timeout > 0
        while True:
            try:
                msg = messages.get(timeout=timeout) if block else messages.get_nowait()
            except queue_mod.Empty:
                return
            block = False
            if msg[0] == "progress":
                events.progress(msg[1], msg[2])
            else:
                outcomes[msg[1]] = Outcome(msg[2], msg[3])

    def _reap(self, running: dict[str, tuple[Job, Any]], messages: Any, events: Events,
              outcomes: dict[str, Outcome]) -> None:
        """Close the books on every worker that exited (its last message is already queued)."""
        for key, (job, proc) in list(running.items()):
            if proc.is_alive():
                continue
            proc.join()
            self._drain(messages, events, outcomes, timeout=0)
            if key not in outcomes:  # killed (out of memory, a simulator crash) before reporting
                outcomes[key] = Outcome("failed", f"worker died (exit code {proc.exitcode})")
            del running[key]
            events.ended(job, outcomes[key])

    def _stop(self, running: dict[str, tuple[Job, Any]], messages: Any, events: Events,
              outcomes: dict[str, Outcome]) -> None:
        """Ask each running worker to stop (one SIGINT: checkpoint, status interrupted) and wait
        for them; a second Ctrl-C while waiting stops them at once (SIGTERM, then SIGKILL)."""
        escalation = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
        self._stopping.set()  # for a worker still deaf to SIGINT (starting): it looks when it can hear
        while running and escalation:
            sig = escalation.pop(0)
            for _, proc in running.values():
                try:
                    os.kill(proc.pid, sig)
                except OSError:  # exited meanwhile
                    pass
            try:
                while running:
                    self._drain(messages, events, outcomes)
                    self._reap(running, messages, events, outcomes)
            except KeyboardInterrupt:
                continue


class ProgressView:
    """The overall bar (env steps of every run) and one bar per running run, with rich; prints a
    line for each run that ends other than ``finished``."""

    def __init__(self, *, total_steps: int, done_steps: int, runs: int, show: bool) -> None:
        from rich import progress as rp

        from gatekit.progress import console

        self.rich = rp.Progress(rp.TextColumn("[bold]{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                                rp.TextColumn("{task.fields[live]}"), rp.TimeElapsedColumn(), console=console,
                                disable=not show, refresh_per_second=2)
        self.overall = self.rich.add_task("all runs (env steps)", total=total_steps, completed=done_steps,
                                          live=f"0/{runs} runs done")
        self.runs, self.done = runs, 0
        self.bars: dict[str, Any] = {}
        self.seen: dict[str, int] = {}

    def __enter__(self) -> ProgressView:
        self.rich.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.rich.__exit__(*exc)

    def started(self, job: Job) -> None:
        self.bars[job.key] = self.rich.add_task(job.key, total=job.total_steps, live="")

    def progress(self, key: str, live: dict[str, Any]) -> None:
        steps = int(live.get("steps", 0))
        if key in self.bars:
            self.rich.update(self.bars[key], completed=steps,
                                 live=f"expert {live.get('expert_steps', 0)} ({live.get('takeover_rate', 0.0):.2f})")
        self.rich.advance(self.overall, steps - self.seen.get(key, 0))
        self.seen[key] = steps

    def ended(self, job: Job, outcome: Outcome) -> None:
        self.done += 1
        if outcome.status == "finished":  # a run stopped early counts only the steps it made
            self.rich.advance(self.overall, max(0, job.total_steps - self.seen.get(job.key, 0)))
            self.seen[job.key] = job.total_steps
        if job.key in self.bars:
            self.rich.remove_task(self.bars.pop(job.key))
        self.rich.update(self.overall, live=f"{self.done}/{self.runs} runs done")
        if outcome.status != "finished":
            self.rich.console.print(f"[yellow]{job.key}: {outcome.status}[/yellow] {outcome.error}")


def run_pending(pending: list[PlannedRun], backend: Backend, *, show: bool, total_steps: int,
                done_steps: int) -> dict[Path, Outcome]:
    """Run ``pending`` on ``backend`` with progress bars; each run's outcome by its folder."""
    jobs = {r.key: (Job(r.key, r.recipe.to_dict(), str(r.run_dir), has_records(r), r.recipe.budget.total_steps), r)
            for r in pending}
    if not jobs:
        return {}
    with ProgressView(total_steps=total_steps, done_steps=done_steps, runs=len(jobs), show=show) as view:
        outcomes = backend.run([job for job, _ in jobs.values()], view)
    return {r.run_dir: outcomes[key] for key, (_, r) in jobs.items() if key in outcomes}


def default_workers() -> int:
    """One run per CPU core available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
