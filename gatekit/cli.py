"""``gatekit`` command line: parse, call the library, print a table.

Every :class:`~gatekit.errors.GatekitError` (bad recipe, unknown name, unwritable folder, ...)
is printed as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from gatekit.errors import GatekitError

if TYPE_CHECKING:
    from gatekit.runs.results import RunResult

# Redirected to a file or a pipe, rich would squeeze result tables into 80 columns; the width of
# a wide terminal keeps them readable in logs. A real terminal keeps its own width.
stdout = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def _clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GatekitError as exc:
            click.echo(f"gatekit: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("gatekit: interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gatekit")
def main() -> None:
    """gatekit: pluggable intervention gates for interactive imitation learning."""


def fmt_stat(v: Any, digits: int = 2) -> str:
    if isinstance(v, dict):
        if v.get("n", 0) == 0 or v["mean"] != v["mean"]:
            return "-"
        return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def results_table(res: RunResult, title: str) -> Table:
    """The run's figures in the AIM paper's layout (one row per figure)."""
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("expert-involved steps (take-over rate)", f"{res.expert_steps} ({res.takeover_rate:.2f})")
    t.add_row("total steps", str(res.total_steps))
    t.add_row("switches", str(res.switches))
    t.add_row("expert queries", str(res.expert_queries))
    first = ("success", "return", "route_completion")
    keys = [k for k in first if k in res.test] + sorted(k for k in res.test if k not in first)
    for key in keys:
        stat = res.test[key]
        t.add_row(f"test {key.replace('_', ' ')} (mean ± std, n={stat.n})", fmt_stat(stat.as_dict()))
    for key in first:
        if key in res.expert_test:
            t.add_row(f"expert's own test {key.replace('_', ' ')}", fmt_stat(res.expert_test[key].as_dict()))
    t.add_row("wall time (s)", f"{res.wall_seconds:.1f}")
    t.add_row("status", res.status)
    return t


@main.command()
@click.argument("recipe", type=click.Path(path_type=Path), required=False)
@click.option("--seed", type=int, default=None, help="Override the recipe's seed.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field, e.g. --set budget.total_steps=5000 (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder (default runs/<name>-s<seed>-<time>).")
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Continue the run in this folder.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--dry-run", is_flag=True, help="Check the recipe (build every component, check spaces and --out) without training.")
@_clean_errors
def train(recipe: Path | None, seed: int | None, overrides: tuple[str, ...], out: Path | None, resume: Path | None,
          no_progress: bool, dry_run: bool) -> None:
    """Train the novice of RECIPE (a YAML file), gated by its criterion."""
    from gatekit.config import load_recipe
    from gatekit.runs import train as run_train

    if resume is not None:
        if recipe is not None or overrides or seed is not None:
            raise GatekitError("--resume: the run folder's recipe is used; drop RECIPE, --seed and --set")
        res = run_train(resume=resume, progress=not no_progress)
        run_dir = resume
    else:
        if recipe is None:
            raise GatekitError("train: missing RECIPE; e.g. gatekit train recipes/aim_metadrive.yaml")
        extra = [*overrides, f"seed={seed}"] if seed is not None else list(overrides)
        r = load_recipe(recipe, extra)
        from gatekit.runs.loop import validate
        from gatekit.runs.rundir import default_run_dir

        if dry_run:
            validate(r, out=out)
            click.echo(f"recipe '{r.name}' is valid: env {r.env.id}, expert {r.expert.id}, criterion {r.criterion.id}, learner {r.learner.id}")
            return

        run_dir = out if out is not None else default_run_dir(r.name, r.seed)
        res = run_train(r, out=run_dir, progress=not no_progress)
    stdout.print(results_table(res, f"{res.recipe} (seed {res.seed}): {res.criterion} gate, {res.learner} learner"))
    stdout.print(f"run folder: {run_dir}")


@main.command("eval")
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--episodes", type=int, default=None, help="Test episodes (default: the recipe's eval.final_episodes).")
@click.option("--expert", "use_expert", is_flag=True, help="Evaluate the recipe's expert instead of a trained novice.")
@click.option("--checkpoint", type=click.Choice(["final", "best"]), default="final", help="Which saved novice of a run folder.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field (e.g. the env's).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@_clean_errors
def eval_cmd(target: Path, episodes: int | None, use_expert: bool, checkpoint: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Evaluate a trained novice (TARGET = run folder) or an expert (TARGET = recipe or run
    folder, with --expert) on the recipe's held-out test env."""
    from gatekit.runs.evaluate_saved import evaluate_target

    stats = evaluate_target(target, episodes=episodes, use_expert=use_expert, checkpoint=checkpoint, overrides=overrides)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    t = Table(title=f"{'expert' if use_expert else 'novice'} on held-out test episodes", header_style="bold")
    for col in ("metric", "mean", "std", "95% interval", "n"):
        t.add_column(col, justify="right" if col != "metric" else "left")
    for k, v in stats.items():
        t.add_row(k, f"{v['mean']:.3f}", f"{v['std']:.3f}", f"[{v['mean'] - v['ci95']:.3f}, {v['mean'] + v['ci95']:.3f}]", str(v["n"]))
    stdout.print(t)


@main.command("list")
@_clean_errors
def list_cmd() -> None:
    """List the registered criteria, learners, envs and experts."""
    from gatekit.criteria import CRITERIA
    from gatekit.envs import ENVS
    from gatekit.experts import EXPERTS
    from gatekit.learners import LEARNERS

    for title, reg in (("criteria", CRITERIA), ("learners", LEARNERS), ("envs", ENVS), ("experts", EXPERTS)):
        t = Table(title=title, show_header=False, title_justify="left")
        t.add_column("name", style="bold")
        t.add_column("what")
        for name in reg.names():
            t.add_row(name, reg.help(name))
        stdout.print(t)


@main.command("compare")
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default runs/<name>).")
@click.option("--workers", type=int, default=None, help="Runs at a time (default: the recipe's, else one per core).")
@click.option("--seeds", default=None, metavar="0,1,2", help="Seeds to run instead of the recipe's.")
@click.option("--only", multiple=True, metavar="METHOD", help="Run only this method (repeatable).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field of every method's recipe (repeatable).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--redo-changed", is_flag=True,
              help="Run folders made from a different recipe: keep them aside (renamed) and run them again.")
@_clean_errors
def compare_cmd(recipe: Path, out: Path | None, workers: int | None, seeds: str | None, only: tuple[str, ...],
                overrides: tuple[str, ...], no_progress: bool, redo_changed: bool) -> None:
    """Run every method x seed of a comparison RECIPE (skipping finished runs) and write
    results.csv, table.md and plots into the output folder."""
    from gatekit.compare import run_comparison

    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise GatekitError(f"--seeds: expected comma-separated integers, got '{seeds}'") from None
        if not seed_list:
            raise GatekitError("--seeds: give at least one seed, e.g. --seeds 0,1,2")
    res = run_comparison(recipe, out=out, workers=workers, seeds=seed_list, only=only, overrides=overrides,
                         progress=not no_progress, redo_changed=redo_changed)
    t = Table(title=f"{recipe.stem}: mean ± std over seeds", header_style="bold")
    for col in res.header:
        t.add_column(col)
    for row in res.table:
        t.add_row(*row)
    stdout.print(t)
    stdout.print(f"ran {res.ran} runs, skipped {res.skipped} finished; wrote {', '.join(str(f) for f in res.files)}")
    if res.failed:
        for line in res.failed:
            err.print(f"not finished: {line}")
        sys.exit(1)


main.add_command(compare_cmd, name="sweep")


@main.command("train-expert")
@click.argument("recipe", type=click.Path(path_type=Path), required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field, e.g. --set total_timesteps=20000 (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default runs/<name>-s<seed>-<time>).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue the interrupted run in this folder from its last checkpoint (no RECIPE; --set may raise total_timesteps).")
@click.option("--workers", type=int, default=None, help="Parallel env processes (default: the recipe's n_envs, else one per core).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_clean_errors
def train_expert_cmd(recipe: Path | None, overrides: tuple[str, ...], out: Path | None, resume_dir: Path | None,
                     workers: int | None, no_progress: bool) -> None:
    """Train an SB3 PPO expert from an expert RECIPE (e.g. recipes/ppo_expert_metadrive.yaml),
    save expert.zip and evaluate it on the held-out test split. The run writes checkpoints;
    `--resume DIR` continues a run that was interrupted."""
    from gatekit.errors import ConfigError
    from gatekit.expert_training import load_expert_recipe, resume_expert, train_expert
    from gatekit.runs.rundir import default_run_dir

    sets = [*overrides, *([f"n_envs={workers}"] if workers is not None else [])]
    if resume_dir is not None:
        if recipe is not None or out is not None:
            raise ConfigError("train-expert: --resume DIR continues the run in DIR with its own recipe; drop RECIPE and --out")
        res = resume_expert(resume_dir, sets, progress=not no_progress)
    else:
        if recipe is None:
            raise ConfigError("train-expert: give an expert RECIPE (e.g. recipes/ppo_expert_cartpole.yaml), or --resume DIR")
        r = load_expert_recipe(recipe, sets)
        run_dir = out if out is not None else default_run_dir(r.name, r.seed)
        res = train_expert(r, out=run_dir, progress=not no_progress)
    t = Table(title=f"{res['name']}: {res['algo']} expert on {res['env']} (seed {res['seed']})", header_style="bold")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("timesteps (env processes)", f"{res['timesteps']} ({res['n_envs']})")
    t.add_row("training time (s) / steps per s", f"{res['train_seconds']:.1f} / {res['steps_per_second']:.0f}")
    if res["resumed_from"]:
        t.add_row("resumed at (timesteps)", ", ".join(str(n) for n in res["resumed_from"]))
    t.add_row("training success / return (last 100 episodes)", f"{fmt_stat(res['train_success'])} / {fmt_stat(res['train_return'], 1)}")
    for key, stat in res["test"].items():
        t.add_row(f"test {key} (mean ± std, n={stat['n']})", fmt_stat(stat))
    stdout.print(t)
    stdout.print(f"expert: {res['expert']}")


@main.command("check")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_clean_errors
def check_cmd(run_dir: Path, as_json: bool) -> None:
    """Check the files of a run folder (read-only): record log frames (intact, damaged, torn
    tail, with byte ranges), recipe.yaml, results.json and the checkpoints. Exit 0: healthy;
    1: damage found; 2: not a run folder."""
    from gatekit.check import check_run

    report = check_run(run_dir)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    if not report.healthy:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
