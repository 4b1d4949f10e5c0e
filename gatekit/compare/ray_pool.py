"""Running a comparison's runs as Ray tasks: the same sweep on a laptop or a cluster.

:class:`RayBackend` implements :class:`~gatekit.compare.pool.Backend`: each pending run is one
Ray task asking for ``cpus_per_run`` CPUs (and any custom ``resources``), and the cluster's own
scheduler places them. Planning (which runs are finished, which resume) and the summary are
the comparison's, unchanged; this module only executes.

* **Where runs write.** Every run writes its own folder, and the summary reads those folders
  on the machine that started the sweep: the output folder must be one every node sees (a
  shared file system). A task that cannot see its run's parent folder fails at once with a
  line that says so, instead of training into a folder nobody reads. Relative paths in
  recipes resolve as on the starting machine: a task works in the starter's working folder.
* **One process per run.** A Ray worker process runs one task and exits (``max_calls=1``):
  MetaDrive allows one engine per process, and nothing of one run leaks into the next, as with
  the local pool's spawned processes.
* **Progress.** Runs post their live counters (at most twice a second) to a small relay actor
  that the starter polls; the progress bars are the local pool's.
* **Ctrl-C.** Pending tasks are cancelled; a running task gets a KeyboardInterrupt (Ray's
  ``cancel``), which a run takes as its stop signal: it checkpoints and writes ``results.json``
  with status ``interrupted``, so the next call resumes it. A second Ctrl-C kills the tasks.
* **Retries.** None (``max_retries=0``): a crashed run is reported failed, and the next call
  resumes it from its records as it would a local one.

Ray is an optional extra (``pip install 'gatekit[ray]'``), imported only here.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gatekit.compare.pool import POLL_SECONDS, Events, Job, Outcome, train_job
from gatekit.errors import ConfigError, GatekitError
from gatekit.runs.results import RunResult

PROGRESS_SECONDS = 0.5
"""Least time between two progress messages of one run."""


def import_ray() -> Any:
    """Ray, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise GatekitError("--backend ray needs Ray: pip install 'gatekit[ray]'") from None
    return ray


class _Relay:
    """The actor runs post to and the starter drains: ``(kind, key, payload)`` tuples."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, Any]] = []

    def post(self, message: tuple[str, str, Any]) -> None:
        self.messages.append(message)

    def take(self) -> list[tuple[str, str, Any]]:
        out, self.messages = self.messages, []
        return out


def ray_task(job: Job, relay: Any, cwd: str) -> tuple[str, str]:
    """Body of one run's Ray task; returns (status, error). Never raises (but when cancelled)."""
    folder = Path(job.run_dir).parent
    if not folder.is_dir():
        return ("failed", f"node {socket.gethostname()} does not see '{folder}': the output folder must be on a "
                          "file system every Ray node shares (pass --out DIR on it)")
    if os.path.isdir(cwd):
        os.chdir(cwd)  # relative paths of the recipe resolve as on the starting machine
    relay.post.remote(("started", job.key, socket.gethostname()))
    last = -math.inf

    def on_progress(live: dict[str, Any]) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS:
            last = now
            relay.post.remote(("progress", job.key, dict(live)))

    try:
        outcome = train_job(job, on_progress)
    except KeyboardInterrupt:  # cancelled before the run installed its own stop handler
        outcome = Outcome("interrupted", "stopped before the run started")
    return outcome.status, outcome.error


class RayBackend:
    """Runs each job as a Ray task (see the module docstring).

    Args:
        address: the cluster to join (``auto``: the one started on this node with ``ray
            start``; ``ray://host:10001`` for Ray Client); None: a Ray already initialised in
            this process, else a local instance started for this call and stopped after it.
        cpus_per_run: CPUs each run asks for (a run steps its env, trains, and may start an
            evaluation process).
        resources: custom resources each run asks for (``{"metadrive": 1}``).
        max_in_flight: most runs submitted at once (None: all; the cluster queues them).
    """

    def __init__(self, *, address: str | None = None, cpus_per_run: float = 1.0,
                 resources: dict[str, float] | None = None, max_in_flight: int | None = None) -> None:
        if cpus_per_run <= 0:
            raise ConfigError(f"--cpus-per-run must be > 0, got {cpus_per_run}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ConfigError(f"--workers must be >= 1, got {max_in_flight}")
        self.address = address
        self.cpus_per_run = float(cpus_per_run)
        self.resources = dict(resources or {})
        self.max_in_flight = max_in_flight

    def run(self, jobs: Sequence[Job], events: Events) -> dict[str, Outcome]:
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = self.address or "a local instance"
                raise GatekitError(f"--backend ray: cannot start or reach Ray ({where}): {str(exc).splitlines()[0]}") from None
        try:
            self._check_fits(ray)
            return self._run(ray, jobs, events)
        finally:
            if started_here:
                ray.shutdown()

    def _check_fits(self, ray: Any) -> None:
        """A run no node can hold would wait forever: say so before submitting."""
        have = ray.cluster_resources()
        want = {"CPU": self.cpus_per_run, **self.resources}
        short = [f"{k} {v:g} (cluster: {have.get(k, 0):g})" for k, v in want.items() if have.get(k, 0) < v]
        if short:
            raise GatekitError(f"--backend ray: no node can hold a run asking for {', '.join(short)}; "
                               "lower --cpus-per-run or add nodes")

    def _run(self, ray: Any, jobs: Sequence[Job], events: Events) -> dict[str, Outcome]:
        relay = ray.remote(_Relay).options(num_cpus=0).remote()
        task = ray.remote(max_calls=1, max_retries=0)(ray_task).options(num_cpus=self.cpus_per_run,
                                                                        resources=self.resources or None)
        cwd = os.getcwd()
        # absolute folders: a task runs in another process, maybe on another node
        waiting = deque(Job(j.key, j.recipe, os.path.abspath(j.run_dir), j.resume, j.total_steps) for j in jobs)
        refs: dict[Any, Job] = {}
        seen: set[str] = set()
        outcomes: dict[str, Outcome] = {}
        limit = self.max_in_flight or len(jobs)
        try:
            while waiting or refs:
                while waiting and len(refs) < limit:
                    job = waiting.popleft()
                    Path(job.run_dir).parent.mkdir(parents=True, exist_ok=True)
                    refs[task.remote(job, relay, cwd)] = job
                ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=POLL_SECONDS)
                self._relay(ray, relay, refs, seen, events)
                for ref in ready:
                    job = refs.pop(ref)
                    outcomes[job.key] = self._outcome(ray, ref, job)
                    events.ended(job, outcomes[job.key])
        except KeyboardInterrupt:
            self._stop(ray, refs, events, outcomes)
            raise
        finally:
            ray.kill(relay)
        return outcomes

    @staticmethod
    def _relay(ray: Any, relay: Any, refs: dict[Any, Job], seen: set[str], events: Events) -> None:
        """Hand the runs' messages to ``events`` (a start only once, and only while running)."""
        running = {j.key: j for j in refs.values()}
        for kind, key, payload in ray.get(relay.take.remote()):
            if key not in running:
                continue
            if kind == "started" and key not in seen:
                seen.add(key)
                events.started(running[key])
            elif kind == "progress":
                events.progress(key, payload)

    @staticmethod
    def _outcome(ray: Any, ref: Any, job: Job) -> Outcome:
        """The task's outcome; a cancelled one's from its ``results.json`` (the run wrote it when
        it stopped), a crashed one's as ``failed`` with the error's last line."""
        try:
            status, error = ray.get(ref)
            return Outcome(status, error)
        except Exception as exc:  # cancelled, worker died, task raised
            if type(exc).__name__ == "TaskCancelledError":
                status = RunResult.read_status(Path(job.run_dir))
                if status in ("interrupted", "finished"):
                    return Outcome(status, "")
                return Outcome("interrupted", "cancelled before it started")
            text = str(exc).strip().splitlines()
            return Outcome("failed", f"{type(exc).__name__}: {text[-1] if text else ''}".strip())

    def _stop(self, ray: Any, refs: dict[Any, Job], events: Events, outcomes: dict[str, Outcome]) -> None:
        """Cancel every task (running ones checkpoint and stop) and wait for them; a second
        Ctrl-C kills them at once."""
        force = False
        while refs:
            for ref in refs:
                try:
                    ray.cancel(ref, force=force)
                except Exception:  # finished meanwhile
                    pass
            try:
                while refs:
                    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=POLL_SECONDS)
                    for ref in ready:
                        job = refs.pop(ref)
                        outcomes[job.key] = self._outcome(ray, ref, job)
                        events.ended(job, outcomes[job.key])
            except KeyboardInterrupt:
                if force:
                    return
                force = True


__all__ = ["RayBackend", "import_ray", "ray_task"]
