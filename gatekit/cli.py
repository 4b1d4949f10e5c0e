"""``gatekit`` command line: parse, call the library, print a table.

Every error (bad recipe, unknown name, unwritable folder, a component or plugin that raised,
...) is printed as one line on stderr with exit code 2, never a traceback; ``gatekit
--traceback ...`` (or ``GATEKIT_DEBUG=1``) prints the full trace first, for plugin authors.
A run stopped by SIGINT / SIGTERM exits 130 / 143 after saving.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from gatekit.errors import GatekitError
from gatekit.evaluation import PROPORTIONS

if TYPE_CHECKING:
    from gatekit.runs.results import RunResult

# Redirected to a file or a pipe, rich would squeeze result tables into 80 columns; the width of
# a wide terminal keeps them readable in logs. A real terminal keeps its own width.
stdout = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    flag = bool(root is not None and isinstance(root.obj, dict) and root.obj.get("traceback"))
    return flag or os.environ.get("GATEKIT_DEBUG", "") not in ("", "0")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())  # one line, whatever the exception carried
    if isinstance(exc, GatekitError):
        return text or type(exc).__name__
    return (f"unexpected {type(exc).__name__}{': ' + text[:300] if text else ''} "
            f"(run `gatekit --traceback ...` for the full trace)")


def _clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("gatekit: interrupted", err=True)
            sys.exit(130)
        except click.ClickException:
            raise  # click's own usage errors: click prints them
        except Exception as exc:
            if _debug():
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(f"gatekit: error: {_one_line(exc)}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gatekit")
@click.option("--traceback", "show_traceback", is_flag=True,
              help="On an error, print the full traceback before the one-line message (also GATEKIT_DEBUG=1).")
@click.pass_context
def main(ctx: click.Context, show_traceback: bool) -> None:
    """gatekit: pluggable intervention gates for interactive imitation learning."""
    ctx.obj = {"traceback": show_traceback}
    import warnings

    from gatekit.errors import RecipeWarning, ResumeWarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, (RecipeWarning, ResumeWarning)):
            click.echo(f"gatekit: warning: {message}", err=True)
        else:
            previous(message, category, *args, **kwargs)

    previous = warnings.showwarning
    if not getattr(previous, "_gatekit", False):
        show._gatekit = True  # type: ignore[attr-defined]
        warnings.showwarning = show


def fmt_stat(v: Any, digits: int = 2) -> str:
    if isinstance(v, dict):
        if v.get("n", 0) == 0 or v["mean"] != v["mean"]:
            return "-"
        return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


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


@main.command("list")
@click.option("--verbose", "-v", is_flag=True, help="Also every component's options: type, default, one-line doc.")
@click.option("--markdown", is_flag=True, help="Print docs/components.md (every component's options, as Markdown).")
@_clean_errors
def list_cmd(verbose: bool, markdown: bool) -> None:
    """List the registered criteria, learners, envs and experts."""
    from gatekit.components import (
        ROLE_TITLES,
        all_components,
        registries,
        render_markdown,
        render_text,
    )

    if markdown:
        click.echo(render_markdown(), nl=False)
        return
    if verbose:
        for doc in all_components():
            click.echo(render_text(doc, width=stdout.width - 8 if sys.stdout.isatty() else 100) + "\n")
        return
    for role, reg in registries().items():
        t = Table(title=ROLE_TITLES[role].split(" (")[0].lower(), show_header=False, title_justify="left")
        t.add_column("name", style="bold")
        t.add_column("what")
        for name in reg.names():
            t.add_row(name, reg.help(name))
        for prefix, text in reg.prefixes().items():
            t.add_row(f"{prefix}:<id>", text)
        stdout.print(t)
    stdout.print("options of one: gatekit show NAME; of all: gatekit list --verbose (or docs/components.md)")


@main.command("show")
@click.argument("name")
@click.option("--role", type=click.Choice(["criterion", "learner", "env", "expert", "section"]), default=None,
              help="Which role, where a name fills several (aim is a criterion and a learner).")
@_clean_errors
def show_cmd(name: str, role: str | None) -> None:
    """Every option of component NAME (or recipe section budget/eval/log/data): its type,
    default and one-line doc, read from the component's signature and docstring."""
    from gatekit.components import find, render_text

    for i, doc in enumerate(find(name, role)):
        click.echo(("\n" if i else "") + render_text(doc, width=stdout.width - 8 if sys.stdout.isatty() else 100))


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


@main.command("compare")
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
@_clean_errors
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


@main.command("sweep")
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
@_clean_errors
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


@main.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["minari"]), default="minari", show_default=True,
              help="Dataset format (minari: one Minari episode per gatekit episode; see gatekit/export/minari.py).")
@click.option("--dataset-id", default=None, metavar="NAMESPACE/NAME-vN",
              help="The dataset's id (default gatekit/<run folder>-v0).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Datasets folder (default: Minari's, $MINARI_DATASETS_PATH or ~/.minari/datasets).")
@_clean_errors
def export_cmd(run_dir: Path, fmt: str, dataset_id: str | None, out: Path | None) -> None:
    """Write the records of RUN_DIR (novice, expert and executed actions, intervention flags) as
    a dataset other libraries read (minari.load_dataset)."""
    from gatekit.export.minari import to_minari

    res = to_minari(run_dir, dataset_id=dataset_id, root=out)
    stdout.print(f"wrote Minari dataset '{res['dataset_id']}': {res['episodes']} episodes, {res['steps']} steps "
                 f"({res['intervened']} driven by the expert) in {res['path']}")
    if out is not None:
        stdout.print(f"read it with: MINARI_DATASETS_PATH={out} python -c \"import minari; "
                     f"minari.load_dataset('{res['dataset_id']}')\"")


if __name__ == "__main__":  # pragma: no cover
    main()
