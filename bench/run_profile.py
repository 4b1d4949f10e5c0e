"""Where a training run's time goes: a short version of a recipe, timed by section, and the
full recipe's time extrapolated from it.

The run is the ordinary :class:`gatekit.runs.loop.Run` in this process; the components'
methods are wrapped with timers after they are built (nothing in gatekit changes):

========================= ==========================================================================
section                   what is timed
========================= ==========================================================================
startup                   ``Run.build``: the env, the expert, the networks, the record store
simulation                the env's ``step`` and ``reset``
expert                    the expert's ``act`` (and ``log_prob``)
novice acting             the learner's ``act`` and ``observe``
gate                      the criterion's ``decide``, ``observe`` and ``end_episode``
criterion training        the criterion's ``update``
novice training           the learner's ``update``
record I/O                ``RecordStore.append/sync/close`` and ``Run.checkpoint``
logs                      ``progress.csv``, ``eval.csv``, TensorBoard
evaluation (waiting)      the ``Evaluator`` calls of this process: submitting, collecting, and the
                          final evaluation, which this process waits for
loop and wrapper          the rest: the loop, the wrapper's bookkeeping, hooks
========================= ==========================================================================

Sections are exclusive (a timed call inside another is charged to the inner one only). Each
is reported as wall time and as CPU time of this process (CPU time is much less sensitive to
a loaded machine than wall time). The evaluation processes (the periodic evaluations and the
expert's reference run concurrently in a worker process; the final evaluation is shared by
``eval.final_workers`` processes) are reported as their CPU time, from ``RUSAGE_CHILDREN``.

Extrapolation to the full recipe (printed with its inputs):

* steps of the full run ``T``: ``--full-steps`` (e.g. a finished run's total steps), else the
  short run's late take-over rate carried to the recipe's expert-step cap (capped by its
  total steps); expert steps ``E`` likewise (``--full-expert-steps``);
* per-step sections (simulation, novice acting, gate, record I/O, logs, loop) scale with ``T``,
  the expert with ``E``;
* training: one update per ``update_every`` (K) new expert labels, so ``(E - E_short) / K``
  more updates, at label counts ``E_short + K, E_short + 2K, ...``. An update's cost is a fixed
  number of Adam steps on minibatches of ``min(batch_size, labels)``, so it grows with the labels
  until they fill a batch and is flat after: each later update costs ``a + b * min(labels, B)``,
  a least-squares line over the short run's updates after the first (which is longer);
* evaluation processes: their CPU time per evaluation episode (the short run's worker CPU over
  its episodes: the expert's reference, the periodic and the final evaluations) times the full
  run's episodes.

The wall time of the full recipe on an idle machine with ``C`` cores is then at least
``max(X, (X + Y) / C)``: this process's CPU work ``X`` is one sequential loop, and the
evaluation processes' work ``Y`` can at best fill the other cores.

Example:
    nice -n 10 .venv/bin/python bench/run_profile.py --set budget.total_steps=4000 --full-steps 16000 \\
        --full-expert-steps 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekit.config import load_recipe  # noqa: E402
from gatekit.data import RecordStore  # noqa: E402
from gatekit.runs.evaluator import Evaluator  # noqa: E402
from gatekit.runs.logs import RunLogs  # noqa: E402
from gatekit.runs.loop import Run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("startup", "simulation", "expert", "novice acting", "gate", "criterion training", "novice training",
         "record I/O", "logs", "evaluation (waiting)", "loop and wrapper")


class Sections:
    """Exclusive wall and CPU seconds per section, and each call of the sections asked for."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[list[float]] = []  # [wall0, cpu0, child wall, child cpu]
        self.per_call: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        self.records: Callable[[], int] = lambda: 0

    def wrap(self, fn: Callable[..., Any], section: str, *, keep_calls: bool = False) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [time.perf_counter(), time.process_time(), 0.0, 0.0]
            self.stack.append(frame)
            n = self.records() if keep_calls else 0
            try:
                return fn(*args, **kwargs)
            finally:
                self.stack.pop()
                wall = time.perf_counter() - frame[0]
                cpu = time.process_time() - frame[1]
                self.wall[section] += wall - frame[2]
                self.cpu[section] += cpu - frame[3]
                self.calls[section] += 1
                if keep_calls:
                    self.per_call[section].append((n, wall, cpu))
                if self.stack:  # the enclosing section does not count this time again
                    self.stack[-1][2] += wall
                    self.stack[-1][3] += cpu

        return timed

    def patch_class(self, cls: type, names: tuple[str, ...], section: str) -> None:
        for name in names:
            setattr(cls, name, self.wrap(getattr(cls, name), section))

    def patch_instance(self, obj: Any, names: tuple[str, ...], section: str, *, keep_calls: bool = False) -> None:
        for name in names:
            if callable(getattr(obj, name, None)):
                setattr(obj, name, self.wrap(getattr(obj, name), section, keep_calls=keep_calls))


def instrument(s: Sections) -> None:
    """Wrap gatekit's classes; the built components are wrapped after ``Run.build``."""
    s.patch_class(RecordStore, ("append", "sync", "close"), "record I/O")
    s.patch_class(Run, ("checkpoint",), "record I/O")
    s.patch_class(RunLogs, ("episode", "evaluation", "scalars", "flush", "close"), "logs")
    s.patch_class(Evaluator, ("start", "submit", "collect", "final", "expert_reference", "close"), "evaluation (waiting)")
    build = Run.build

    def build_and_wrap(run: Run, **kwargs: Any) -> None:
        build(run, **kwargs)
        if run.recipe.env.n_envs != 1:
            raise SystemExit("run_profile: profile the one-env recipe (--set env.n_envs=1): other envs step in workers")
        s.patch_instance(run.env, ("step", "reset"), "simulation")
        s.patch_instance(run.expert, ("act", "log_prob"), "expert")
        s.patch_instance(run.learner, ("act", "observe"), "novice acting")
        s.patch_instance(run.criterion, ("decide", "observe", "end_episode"), "gate")
        s.records = lambda: run.store.count("intervened")
        s.patch_instance(run.criterion, ("update",), "criterion training", keep_calls=True)
        s.patch_instance(run.learner, ("update",), "novice training", keep_calls=True)

    Run.build = s.wrap(build_and_wrap, "startup")  # type: ignore[method-assign]


def update_costs(calls: list[tuple[int, float, float]], labels: list[int], batch: int, *, cpu: bool) -> tuple[float, str]:
    """Seconds of the updates at ``labels`` expert labels: ``a + b * min(labels, batch)``, a
    least-squares line over the short run's updates after the first (which is longer)."""
    later = [(min(n, batch), c if cpu else w) for n, w, c in calls[1:]]
    if not later or not labels:
        return 0.0, "no update"
    x, y = np.array([n for n, _ in later], float), np.array([v for _, v in later], float)
    if len(later) < 3 or np.ptp(x) == 0:
        return float(y.mean()) * len(labels), f"mean of {len(later)} updates"
    slope, icpt = np.polyfit(x, y, 1)
    one = [max(float(icpt + slope * min(n, batch)), 0.0) for n in labels]
    return float(sum(one)), (f"{icpt:.3f} s + {slope * 1000:.3f} s per 1K labels up to {batch}; "
                             f"{one[-1]:.2f} s at {labels[-1]} labels")


def eval_episodes(recipe: Any, steps: int) -> int:
    """Evaluation episodes of a run of ``steps`` steps: the expert's reference, periodic, final."""
    e = recipe.eval
    periodic = steps // e.every_steps if e.every_steps else 0
    return (e.final_episodes if e.expert_reference else 0) + periodic * e.episodes + e.final_episodes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "aim_metadrive.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe overrides (default: budget.total_steps=4000)")
    p.add_argument("--full-steps", type=int, default=None, help="total steps of the full run (default: estimated)")
    p.add_argument("--full-expert-steps", type=int, default=None, help="expert steps of the full run (default: the cap)")
    p.add_argument("--cores", type=int, default=None, help="cores of the machine the wall-time floor is for (default: these)")
    p.add_argument("--out", default=None, help="run folder (default: a temporary one, removed)")
    p.add_argument("--save", default=None, metavar="JSON", help="also save the measurements here")
    p.add_argument("--load", default=None, metavar="JSON", help="report saved measurements again (runs nothing)")
    args = p.parse_args()
    if args.load:
        data = json.loads(Path(args.load).read_text())
    else:
        data = measure(args)
        if args.save:
            Path(args.save).write_text(json.dumps(data))
    report(data, args)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the short recipe with the timers; the measurements as plain data."""
    overrides = args.overrides or ["budget.total_steps=4000"]
    recipe = load_recipe(args.recipe, [*overrides, "log.progress=false"])
    tmp = None if args.out else tempfile.mkdtemp(prefix="gatekit-profile-")
    run_dir = Path(args.out or tmp) / "run"  # type: ignore[arg-type]
    s = Sections()
    instrument(s)
    load0 = os.getloadavg()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        from gatekit.runs import train

        res = train(recipe, out=run_dir, progress=False)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = children.ru_utime + children.ru_stime
    load1 = os.getloadavg()
    s.wall["loop and wrapper"] = wall - sum(s.wall.values())
    s.cpu["loop and wrapper"] = cpu - sum(s.cpu.values())
    return {"recipe": args.recipe, "overrides": overrides, "wall": wall, "cpu": cpu, "child_cpu": child_cpu,
            "load": [load0[0], load1[0]], "steps": res.total_steps, "expert_steps": res.expert_steps,
            "status": res.status, "evaluations": [(ev.step, ev.expert_steps) for ev in res.evaluations],
            "sections": {"wall": dict(s.wall), "cpu": dict(s.cpu), "calls": dict(s.calls),
                         "per_call": {k: list(v) for k, v in s.per_call.items()}}}


def report(data: dict[str, Any], args: argparse.Namespace) -> None:
    """The table of sections and the full recipe's extrapolation."""
    overrides = data["overrides"]
    recipe = load_recipe(data["recipe"], [*overrides, "log.progress=false"])
    full = load_recipe(data["recipe"], [o for o in overrides if not o.startswith("budget.")])
    sec = data["sections"]
    wall, cpu, child_cpu, (load0, load1) = data["wall"], data["cpu"], data["child_cpu"], data["load"]
    n, e = data["steps"], data["expert_steps"]
    warm = recipe.budget.warmup_steps
    # the full run's size
    cap_e = full.budget.expert_steps or 10**9
    e_full = args.full_expert_steps or min(cap_e, full.budget.total_steps)
    if args.full_steps:
        t_full = args.full_steps
    else:
        late = [(st, ex) for st, ex in data["evaluations"] if st > warm]
        rate = (e - warm) / max(1, n - warm) if not late else (e - late[0][1]) / max(1, n - late[0][0])
        t_full = int(min(full.budget.total_steps, n + (e_full - e) / max(rate, 1e-6)))
    k = int(full.learner.kwargs.get("update_every", 25))
    labels = list(range(e + k, e_full + 1, k))  # the label counts of the full run's later updates

    print(f"{Path(data['recipe']).name} with {' '.join(overrides)}: {n} steps, {e} expert steps, status {data['status']}")
    print(f"load average {load0:.1f} at the start, {load1:.1f} at the end ({os.cpu_count()} cores here; CPU-time "
          f"figures are less sensitive to load than wall-time ones)")
    print(f"full recipe: T = {t_full} steps, E = {e_full} expert steps "
          f"({'given' if args.full_steps else 'estimated from the late take-over rate'}); "
          f"{len(labels)} more updates of each learner (K = {k})")
    print()
    print(f"{'section':<22} {'calls':>7} {'wall s':>8} {'cpu s':>8} {'cpu ms/step':>11} {'full: cpu s':>11} {'full: wall s':>12}")
    tot_full_cpu = tot_full_wall = 0.0
    notes = []
    per_call = sec["per_call"]
    for name in ORDER:
        w, c = sec["wall"].get(name, 0.0), sec["cpu"].get(name, 0.0)
        if name in ("criterion training", "novice training"):
            comp = full.criterion if name.startswith("criterion") else full.learner
            batch = int(comp.kwargs.get("batch_size", 1024))
            more_c, how = update_costs(per_call.get(name, []), labels, batch, cpu=True)
            more_w, _ = update_costs(per_call.get(name, []), labels, batch, cpu=False)
            fc, fw = c + more_c, w + more_w
            first = per_call.get(name, [])[0][2] if per_call.get(name, []) else 0.0
            notes.append(f"{name}: {len(per_call.get(name, []))} updates here (the first {first:.2f} s cpu); later ones: {how}")
        elif name in ("startup", "evaluation (waiting)"):
            fc, fw = c, w  # once per run
        elif name == "expert":
            fc, fw = c * e_full / max(e, 1), w * e_full / max(e, 1)
        else:
            fc, fw = c * t_full / n, w * t_full / n
        tot_full_cpu += fc
        tot_full_wall += fw
        print(f"{name:<22} {sec['calls'].get(name, 0):>7} {w:>8.1f} {c:>8.1f} {c / n * 1e3:>11.3f} {fc:>11.1f} {fw:>12.1f}")
    print(f"{'total (this process)':<22} {'':>7} {wall:>8.1f} {cpu:>8.1f} {cpu / n * 1e3:>11.3f} {tot_full_cpu:>11.1f} {tot_full_wall:>12.1f}")
    eps_short, eps_full = eval_episodes(recipe, n), eval_episodes(full, t_full)
    per_ep = child_cpu / max(eps_short, 1)
    eval_full = per_ep * eps_full
    print(f"evaluation processes: {child_cpu:.1f} s cpu for {eps_short} episodes ({per_ep:.2f} s each); "
          f"full: {eps_full} episodes, {eval_full:.1f} s cpu")
    for line in notes:
        print(line)
    cores = args.cores or os.cpu_count() or 1
    floor = max(tot_full_cpu, (tot_full_cpu + eval_full) / cores)
    print(f"full recipe, CPU work: this process {tot_full_cpu:.0f} s + evaluation processes {eval_full:.0f} s; "
          f"wall on an idle {cores}-core machine >= max(X, (X + Y) / {cores}) = {floor:.0f} s ({floor / 60:.1f} min)")


if __name__ == "__main__":
    main()
