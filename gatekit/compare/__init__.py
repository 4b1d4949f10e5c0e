"""Compare methods: every method x seed as its own run, then tables with confidence intervals,
plots, and optionally a markdown page generated from the runs.

A *comparison recipe* lists methods (each an ordinary gatekit recipe plus optional overrides)
and seeds; overrides at the top level apply to every method, so that all of them share the
env, the expert, the budgets and the evaluation. Example (``recipes/compare_toy.yaml``)::

    name: compare_toy
    seeds: [0, 1]
    overrides: {eval.final_episodes: 5}     # every method, every seed
    reference: HG-DAgger                    # optional: "expert steps to reach its success"
    focus: PVP                              # optional: P(PVP > each other method)
    methods:
      - {name: HG-DAgger, recipe: hg_cartpole.yaml}
      - {name: PVP, recipe: pvp_cartpole.yaml, overrides: {learner.lr: 3.0e-4}}

Recipe paths are relative to the comparison file. :func:`run_comparison` runs every pending
(method, seed) through a :class:`~gatekit.compare.pool.Backend` (default: one spawned process
per run, one run per core), shows the overall progress, and writes into the output folder:

================================ ==============================================================
``runs/<method>/seed<k>/``       each run's folder (see :mod:`gatekit.runs.loop`)
``results.csv``                  one row per run: counters, test metrics, status, run folder
``table.md``                     the AIM paper's Table 1 layout, ``mean [95% CI]`` over seeds,
                                 and the focus method's probability of improvement
``success_vs_expert_steps.png``  held-out success vs expert-involved steps, shaded 95% bands
``takeover_rate.png``            take-over rate over training, one line per method
``comparison.yaml``              the resolved comparison (methods, seeds, overrides)
================================ ==============================================================

Re-running skips runs whose ``results.json`` says ``finished`` and resumes runs that stopped
part-way. Run folders made from another recipe stop the comparison before anything runs
(``redo_changed`` moves them aside and runs them again; see :mod:`gatekit.compare.plan`).

================ ===================================================================
module           what
================ ===================================================================
``spec``         the comparison recipe and its strict loader
``plan``         (method, seed) -> recipe and folder; skip, resume, refuse stale folders
``pool``         how runs execute: the ``Backend`` interface, local processes, progress
``ray_pool``     the same runs as Ray tasks, on this machine or a cluster (``gatekit[ray]``)
``sweep``        a recipe under a grid of settings x seeds, as a comparison
``stats``        intervals and probability of improvement (rliable)
``summary``      rows from ``RunResult``, per-method figures, the table
``report``       ``results.csv``, ``table.md``, plots, the markdown page
================ ===================================================================
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gatekit.compare import report as rep
from gatekit.compare.plan import PlannedRun, plan, refuse_or_set_aside, run_status
from gatekit.compare.pool import Backend, LocalProcesses, default_workers, run_pending
from gatekit.compare.spec import (
    Comparison,
    MethodSpec,
    check_only,
    load_comparison,
    recipe_path,
    slug,
)
from gatekit.compare.stats import rliable
from gatekit.compare.summary import (
    comparison_rows,
    make_table,
    mean_curve,
    poi_table,
    steps_to_reach,
    summarize,
)
from gatekit.errors import ConfigError, GatekitError


@dataclass
class ComparisonResult:
    """What :func:`run_comparison` did and wrote."""

    out: Path
    ran: int
    skipped: int
    failed: list[str]
    header: list[str]
    table: list[list[str]]
    poi_header: list[str] = field(default_factory=list)
    poi_table: list[list[str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def run_comparison(path: str | Path, *, out: str | Path | None = None, workers: int | None = None,
                   seeds: list[int] | None = None, only: tuple[str, ...] = (), overrides: tuple[str, ...] = (),
                   progress: bool = True, redo_changed: bool = False, report: str | Path | None = None,
                   backend: Backend | None = None) -> ComparisonResult:
    """Run every method x seed of the comparison at ``path`` (skipping finished runs) and write
    ``results.csv``, ``table.md`` and the plots into ``out`` (default ``runs/<name>``).

    Args:
        path: the comparison recipe.
        out: the output folder.
        workers: runs at a time (default: the recipe's ``workers``, else one per core).
        seeds: seeds to run instead of the recipe's.
        only: run only these methods (the table still shows the others' finished runs).
        overrides: ``a.b=value`` set on every method's recipe, after the recipe's own.
        progress: show progress bars.
        redo_changed: move aside and re-run the run folders whose saved recipe differs from the
            planned one (default: stop with an error naming them).
        report: a markdown page to write (or update) from the runs (see :mod:`gatekit.compare.report`).
        backend: how runs execute (default :class:`~gatekit.compare.pool.LocalProcesses`).

    Raises:
        ConfigError: bad input, or run folders made from other recipes, found before any run starts.
    """
    comp, base = load_comparison(path)
    command = _command(path, out, seeds, overrides, report, only) if report is not None else ""
    return run_loaded(comp, base, out=out, workers=workers, seeds=seeds, only=only, overrides=overrides,
                      progress=progress, redo_changed=redo_changed, report=report, backend=backend, command=command)


def run_loaded(comp: Comparison, base: Path, *, out: str | Path | None = None, workers: int | None = None,
               seeds: list[int] | None = None, only: tuple[str, ...] = (), overrides: tuple[str, ...] = (),
               progress: bool = True, redo_changed: bool = False, report: str | Path | None = None,
               backend: Backend | None = None, command: str = "") -> ComparisonResult:
    """:func:`run_comparison` of a comparison built in code (a sweep's grid, a script);
    ``base`` is the folder its relative recipe paths start from, ``command`` the command line
    the report page shows."""
    out_dir = Path(out) if out is not None else Path("runs") / comp.name
    n_workers = workers if workers is not None else (comp.workers or default_workers())
    if n_workers < 1:
        raise ConfigError(f"compare: --workers must be >= 1, got {n_workers}")
    check_only(comp, only)
    every = plan(comp, base, out_dir, extra=tuple(overrides), seeds=seeds)
    runs = [r for r in every if not only or r.method in only]
    refuse_or_set_aside(runs, redo_changed=redo_changed)
    rliable()  # the table needs it: say so before hours of runs, not after
    _write_resolved(comp, base, out_dir, seeds=seeds, overrides=overrides, only=only)
    pending = [r for r in runs if run_status(r.run_dir) != "finished"]
    total = sum(r.recipe.budget.total_steps for r in runs)
    outcomes = run_pending(pending, backend or LocalProcesses(min(n_workers, max(1, len(pending)))), show=progress,
                           total_steps=total, done_steps=total - sum(r.recipe.budget.total_steps for r in pending))
    rows = comparison_rows(every, runs, outcomes)
    summary = summarize(comp, rows, reps=comp.bootstrap_reps)
    plots = rep.write_plots(comp, summary, rows, every, out_dir)
    files = [rep.write_csv(rows, out_dir / "results.csv"), rep.write_table_md(comp, summary, out_dir / "table.md"), *plots]
    if report is not None:
        files += rep.write_report(Path(report), comp, summary, plots, command=command)
    chosen = {r.run_dir for r in runs}
    failed = [f"{r.method} seed {r.seed}: {r.status} {r.error}".strip() for r in rows
              if r.status != "finished" and r.run_dir in chosen]
    return ComparisonResult(out_dir, len(pending), len(runs) - len(pending), failed, *make_table(summary),
                            *poi_table(summary), files=files)


def make_backend(kind: str, *, workers: int | None = None, address: str | None = None, cpus_per_run: float = 1.0,
                 resources: dict[str, float] | None = None) -> Backend | None:
    """The backend a command line names: ``local`` (None: :func:`run_loaded` sizes the pool)
    or ``ray`` (:class:`~gatekit.compare.ray_pool.RayBackend`; ``workers`` caps the runs
    submitted at once)."""
    if kind == "local":
        if address is not None:
            raise ConfigError("--address joins a Ray cluster; add --backend ray")
        return None
    if kind == "ray":
        from gatekit.compare.ray_pool import RayBackend, import_ray

        import_ray()  # say it is missing before planning anything
        return RayBackend(address=address, cpus_per_run=cpus_per_run, resources=resources, max_in_flight=workers)
    raise ConfigError(f"--backend: '{kind}' is not a backend; valid: local, ray")


def _write_resolved(comp: Comparison, base: Path, out_dir: Path, *, seeds: list[int] | None,
                    overrides: tuple[str, ...], only: tuple[str, ...]) -> None:
    """``comparison.yaml``: what this call resolved the comparison to."""
    resolved = {"name": comp.name, "seeds": seeds if seeds is not None else comp.seeds, "overrides": comp.overrides,
                "extra_overrides": list(overrides), "reference": comp.reference, "focus": comp.focus,
                "methods": [{"name": m.name, "recipe": str(recipe_path(base, m)), "overrides": m.overrides}
                            for m in comp.methods if not only or m.name in only]}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "comparison.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    except OSError as exc:
        raise GatekitError(f"compare: cannot write to output folder '{out_dir}' ({exc.strerror}); pass --out DIR") from None


def _command(path: str | Path, out: str | Path | None, seeds: list[int] | None, overrides: tuple[str, ...],
             report: str | Path, only: tuple[str, ...] = ()) -> str:
    """The command line that regenerates the report (runs nothing when every run is finished)."""
    words = ["gatekit", "compare", str(path)]
    if out is not None:
        words += ["--out", str(out)]
    if seeds is not None:
        words += ["--seeds", ",".join(map(str, seeds))]
    for name in only:
        words += ["--only", name]
    for o in overrides:
        words += ["--set", o]
    return shlex.join([*words, "--report", str(report)])


__all__ = [
    "Backend", "Comparison", "ComparisonResult", "LocalProcesses", "MethodSpec", "PlannedRun", "load_comparison",
    "make_backend", "make_table", "mean_curve", "plan", "run_comparison", "run_loaded", "slug", "steps_to_reach", "summarize",
]
