"""``gatekit compare`` and ``gatekit sweep``: many runs (methods or grid points x seeds), on
this machine or on Ray, and their table of means with 95% intervals."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from gatekit.cli.common import clean_errors, err, stdout
from gatekit.errors import GatekitError


def _backend_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--backend, --address, --cpus-per-run, --resource: where a comparison's runs execute."""
    for option in reversed([
        click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: a process pool on this machine; ray: Ray tasks (pip install 'gatekit[ray]')."),
        click.option("--address", default=None, metavar="ADDR",
                     help="Ray cluster to join (auto: the one `ray start` made on this node); default: a local Ray."),
        click.option("--cpus-per-run", type=float, default=1.0, show_default=True, help="CPUs each Ray task asks for."),
        click.option("--resource", "resources", multiple=True, metavar="NAME=N",
                     help="A custom Ray resource each run asks for (repeatable)."),
    ]):
        fn = option(fn)
    return fn


def _backend(backend: str, workers: int | None, address: str | None, cpus_per_run: float,
             resources: tuple[str, ...]) -> Any:
    from gatekit.compare import make_backend

    wanted = {}
    for item in resources:
        name, sep, amount = item.partition("=")
        try:
            wanted[name.strip()] = float(amount)
        except ValueError:
            raise GatekitError(f"--resource: expected NAME=N, got '{item}'") from None
        if not sep or not name.strip():
            raise GatekitError(f"--resource: expected NAME=N, got '{item}'")
    return make_backend(backend, workers=workers, address=address, cpus_per_run=cpus_per_run, resources=wanted)


def _print_comparison(res: Any, title: str) -> None:
    for heading, header, body in ((f"{title}: mean [95% CI] over seeds", res.header, res.table),
                                  ("probability of improvement", res.poi_header, res.poi_table)):
        if body:
            t = Table(title=heading, header_style="bold")
            for col in header:
                t.add_column(col)
            for row in body:
                t.add_row(*row)
            stdout.print(t)
    stdout.print(f"ran {res.ran} runs, skipped {res.skipped} finished; wrote {', '.join(str(f) for f in res.files)}")
    if res.failed:
        for line in res.failed:
            err.print(f"not finished: {line}")
        sys.exit(1)


@click.command("compare")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default runs/<name>).")
@click.option("--workers", type=int, default=None, help="Runs at a time (default: the recipe's, else one per core).")
@click.option("--seeds", default=None, metavar="0-4|0,2,5", help="Seeds to run instead of the recipe's.")
@click.option("--only", multiple=True, metavar="METHOD", help="Run only this method (repeatable).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field of every method's recipe (repeatable).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--redo-changed", is_flag=True,
              help="Run folders made from a different recipe: keep them aside (renamed) and run them again.")
@click.option("--report", type=click.Path(path_type=Path), default=None, metavar="PAGE",
              help="Write (or update) this markdown page from the runs: tables, figures, commands, run times; "
                   "text outside its generated block is kept.")
@_backend_options
@clean_errors
def compare_cmd(recipe: Path, out: Path | None, workers: int | None, seeds: str | None, only: tuple[str, ...],
                overrides: tuple[str, ...], no_progress: bool, redo_changed: bool, report: Path | None,
                backend: str, address: str | None, cpus_per_run: float, resources: tuple[str, ...]) -> None:
    """Run every method x seed of a comparison RECIPE (skipping finished runs) and write
    results.csv, table.md (mean and 95% interval over seeds) and plots into the output folder."""
    from gatekit.compare import run_comparison

    runner = _backend(backend, workers, address, cpus_per_run, resources)
    res = run_comparison(recipe, out=out, workers=workers, seeds=_seed_list(seeds), only=only, overrides=overrides,
                         progress=not no_progress, redo_changed=redo_changed, report=report, backend=runner)
    _print_comparison(res, recipe.stem)


@click.command("sweep")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2",
              help="A recipe field and its values (repeatable; the sweep runs their cross product).")
@click.option("--seeds", default=None, metavar="0-4|0,2,5", help="Seeds of every grid point (default: the recipe's seed).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field of every run (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default runs/sweep_<recipe>).")
@click.option("--workers", type=int, default=None, help="Runs at a time (default: one per core; ray: all, the cluster queues).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--redo-changed", is_flag=True,
              help="Run folders made from a different recipe: keep them aside (renamed) and run them again.")
@click.option("--report", type=click.Path(path_type=Path), default=None, metavar="PAGE",
              help="Write (or update) this markdown page from the runs.")
@_backend_options
@clean_errors
def sweep_cmd(recipe: Path, grid: tuple[str, ...], seeds: str | None, overrides: tuple[str, ...], out: Path | None,
              workers: int | None, no_progress: bool, redo_changed: bool, report: Path | None, backend: str,
              address: str | None, cpus_per_run: float, resources: tuple[str, ...]) -> None:
    """Train RECIPE at every point of a grid of settings x every seed (skipping finished runs),
    and write the same results.csv, table.md and plots as `gatekit compare`, one method per
    grid point."""
    from gatekit.compare.sweep import run_sweep

    runner = _backend(backend, workers, address, cpus_per_run, resources)
    res = run_sweep(recipe, grid, seeds=_seed_list(seeds), out=out, workers=workers, overrides=overrides,
                    progress=not no_progress, redo_changed=redo_changed, report=report, backend=runner)
    _print_comparison(res, f"sweep of {recipe.stem}")


def _seed_list(seeds: str | None) -> list[int] | None:
    from gatekit.compare.sweep import parse_seeds

    return None if seeds is None else parse_seeds(seeds)


__all__ = ["compare_cmd", "sweep_cmd"]
