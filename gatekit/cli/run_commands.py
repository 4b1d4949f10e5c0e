"""``gatekit train``, ``eval``, ``train-expert`` and ``check``: one run (or one expert) at a
time, and its figures as a table. A run stopped by SIGINT / SIGTERM exits 130 / 143 after saving.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from gatekit.cli.common import clean_errors, fmt_stat, stdout
from gatekit.errors import GatekitError
from gatekit.evaluation import PROPORTIONS

if TYPE_CHECKING:
    from gatekit.runs.results import RunResult


def expert_label(res: RunResult) -> str:
    """The expert's id, and the file it was loaded from (name and sha256 prefix) when known."""
    files = (res.provenance.get("expert") or {}).get("files") or []
    if not files:
        return res.expert
    f = files[0]
    return f"{res.expert} ({Path(f['path']).name}, sha256 {f['sha256'][:12]})"


def results_table(res: RunResult, title: str) -> Table:
    """The run's figures in the AIM paper's layout (one row per figure)."""
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("env (novice evaluated alone on its test split)", res.env)
    t.add_row("expert", expert_label(res))
    t.add_row("expert-involved steps (take-over rate)", f"{res.expert_steps} ({res.takeover_rate:.2f})")
    t.add_row("total steps", str(res.total_steps))
    t.add_row("switches", str(res.switches))
    t.add_row("expert queries", str(res.expert_queries))
    person = res.person  # a person was the expert (keyboard)
    if person:
        lat = "-" if person.get("latency_median") is None else \
            f"{person['latency_median']:.2f} / {person['latency_p90']:.2f}"
        t.add_row("person: seconds in control / watching", f"{person['control_seconds']:.0f} / {person['watch_seconds']:.0f}")
        t.add_row("person: help requests (response s, median / p90)", f"{person['help_requests']} ({lat})")
        t.add_row("person: switches per minute", f"{person['switches_per_minute']:.2f}")
    first = ("success", "return", "route_completion")
    keys = [k for k in first if k in res.test] + sorted(k for k in res.test if k not in first)
    for key in keys:
        stat = res.test[key]
        t.add_row(f"test {key.replace('_', ' ')} (mean ± std, n={stat.n})", fmt_stat(stat.as_dict()))
        if key in PROPORTIONS and stat.n:
            lo, hi = stat.interval(proportion=True)
            t.add_row(f"test {key} 95% interval (Wilson)", f"[{lo:.2f}, {hi:.2f}]")
    for key in first:
        if key in res.expert_test:
            t.add_row(f"expert's own test {key.replace('_', ' ')}", fmt_stat(res.expert_test[key].as_dict()))
    t.add_row("wall time (s)", f"{res.wall_seconds:.1f}")
    t.add_row("status", res.status)
    return t


@click.command()
@click.argument("recipe", type=click.Path(path_type=Path), required=False)
@click.option("--seed", type=int, default=None, help="Override the recipe's seed.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field, e.g. --set budget.total_steps=5000 (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder (default runs/<name>-s<seed>-<time>).")
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Continue the run in this folder.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--dry-run", is_flag=True, help="Check the recipe (build every component, check spaces and --out) without training.")
@clean_errors
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
        from gatekit.runs.dry_run import validate
        from gatekit.runs.rundir import default_run_dir

        if dry_run:
            validate(r, out=out)
            click.echo(f"recipe '{r.name}' is valid: env {r.env.id}, expert {r.expert.id}, criterion {r.criterion.id}, learner {r.learner.id}")
            return

        run_dir = out if out is not None else default_run_dir(r.name, r.seed)
        res = run_train(r, out=run_dir, progress=not no_progress)
    stdout.print(results_table(res, f"{res.recipe} (seed {res.seed}): {res.criterion} gate, {res.learner} learner"))
    stdout.print(f"run folder: {run_dir}")
    from gatekit.runs.failures import exit_code

    code = exit_code(res)
    if code:
        click.echo(f"gatekit: interrupted by {res.extra.get('signal', 'SIGINT')}; continue with: gatekit train "
                   f"--resume {run_dir}", err=True)
        sys.exit(code)


@click.command("eval")
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--episodes", type=int, default=None, help="Test episodes (default: the recipe's eval.final_episodes).")
@click.option("--expert", "use_expert", is_flag=True, help="Evaluate the recipe's expert instead of a trained novice.")
@click.option("--checkpoint", type=click.Choice(["final", "best"]), default="final", help="Which saved novice of a run folder.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field (e.g. the env's).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@clean_errors
def eval_cmd(target: Path, episodes: int | None, use_expert: bool, checkpoint: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Evaluate a trained novice (TARGET = run folder) or an expert (TARGET = recipe or run
    folder, with --expert) on the recipe's held-out test env."""
    from gatekit.runs.evaluate_saved import evaluate_target

    stats = evaluate_target(target, episodes=episodes, use_expert=use_expert, checkpoint=checkpoint, overrides=overrides)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    from gatekit.evaluation import Stat

    what = "the expert" if use_expert else f"the novice ({checkpoint} checkpoint)"
    t = Table(title=f"{what} of {target} on held-out test episodes", header_style="bold")
    for col in ("metric", "mean", "std", "95% interval", "n"):
        t.add_column(col, justify="right" if col != "metric" else "left")
    for k, v in stats.items():
        lo, hi = Stat(v["mean"], v["std"], v["ci95"], int(v["n"])).interval(proportion=k in PROPORTIONS)
        t.add_row(k + (" (Wilson)" if k in PROPORTIONS else ""), f"{v['mean']:.3f}", f"{v['std']:.3f}",
                  f"[{lo:.3f}, {hi:.3f}]", str(v["n"]))
    stdout.print(t)


@click.command("train-expert")
@click.argument("recipe", type=click.Path(path_type=Path), required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field, e.g. --set total_timesteps=20000 (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default runs/<name>-s<seed>-<time>).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue the interrupted run in this folder from its last checkpoint (no RECIPE; --set may raise total_timesteps).")
@click.option("--workers", type=int, default=None, help="Parallel env processes (default: the recipe's n_envs, else one per core).")
@click.option("--no-progress", is_flag=True, help="No progress bar; a line on stderr at each checkpoint instead.")
@clean_errors
def train_expert_cmd(recipe: Path | None, overrides: tuple[str, ...], out: Path | None, resume_dir: Path | None,
                     workers: int | None, no_progress: bool) -> None:
    """Train an SB3 PPO expert from an expert RECIPE (e.g. recipes/ppo_expert_metadrive.yaml),
    save expert.zip and evaluate it on the held-out test split. The run writes checkpoints;
    `--resume DIR` continues a run that was interrupted."""
    from gatekit.errors import ConfigError
    from gatekit.expert_training import (
        TrainingInterrupted,
        load_expert_recipe,
        resume_expert,
        train_expert,
    )
    from gatekit.runs.rundir import default_run_dir

    sets = [*overrides, *([f"n_envs={workers}"] if workers is not None else [])]
    # Without the bar (a run in the background, its output in a file), a line per checkpoint.
    log = (lambda line: click.echo(f"gatekit: train-expert: {line}", err=True)) if no_progress else None
    try:
        if resume_dir is not None:
            if recipe is not None or out is not None:
                raise ConfigError("train-expert: --resume DIR continues the run in DIR with its own recipe; drop RECIPE and --out")
            res = resume_expert(resume_dir, sets, progress=not no_progress, log=log)
        else:
            if recipe is None:
                raise ConfigError("train-expert: give an expert RECIPE (e.g. recipes/ppo_expert_cartpole.yaml), or --resume DIR")
            r = load_expert_recipe(recipe, sets)
            run_dir = out if out is not None else default_run_dir(r.name, r.seed)
            res = train_expert(r, out=run_dir, progress=not no_progress, log=log)
    except TrainingInterrupted as stopped:  # saved: say where, exit as gatekit train does (130 / 143)
        click.echo(f"gatekit: {stopped}", err=True)
        sys.exit(128 + int(stopped.signal))
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


@click.command("check")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@clean_errors
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


__all__ = ["check_cmd", "eval_cmd", "expert_label", "results_table", "train", "train_expert_cmd"]
