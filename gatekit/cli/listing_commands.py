"""``gatekit list``, ``show`` and ``export``: what is registered and what each component
takes; a run's records written as a dataset other libraries read."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from gatekit.cli.common import clean_errors, stdout, text_width


@click.command("list")
@click.option("--verbose", "-v", is_flag=True, help="Also every component's options: type, default, one-line doc.")
@click.option("--markdown", is_flag=True, help="Print docs/components.md (every component's options, as Markdown).")
@clean_errors
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
            click.echo(render_text(doc, width=text_width()) + "\n")
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


@click.command("show")
@click.argument("name")
@click.option("--role", type=click.Choice(["criterion", "learner", "env", "expert", "section"]), default=None,
              help="Which role, where a name fills several (aim is a criterion and a learner).")
@clean_errors
def show_cmd(name: str, role: str | None) -> None:
    """Every option of component NAME (or recipe section budget/eval/log/data): its type,
    default and one-line doc, read from the component's signature and docstring."""
    from gatekit.components import find, render_text

    for i, doc in enumerate(find(name, role)):
        click.echo(("\n" if i else "") + render_text(doc, width=text_width()))


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["minari"]), default="minari", show_default=True,
              help="Dataset format (minari: one Minari episode per gatekit episode; see gatekit/export/minari.py).")
@click.option("--dataset-id", default=None, metavar="NAMESPACE/NAME-vN",
              help="The dataset's id (default gatekit/<run folder>-v0).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Datasets folder (default: Minari's, $MINARI_DATASETS_PATH or ~/.minari/datasets).")
@clean_errors
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


__all__ = ["export_cmd", "list_cmd", "show_cmd"]
