"""``gatekit`` command line: parse, call the library, print a table.

Every error (bad recipe, unknown name, unwritable folder, a component or plugin that raised,
...) is printed as one line on stderr with exit code 2, never a traceback; ``gatekit
--traceback ...`` (or ``GATEKIT_DEBUG=1``) prints the full trace first, for plugin authors.
A run stopped by SIGINT / SIGTERM exits 130 / 143 after saving.

==================== ===========================================================
module               commands
==================== ===========================================================
``common``           (shared) consoles, the one-line error handling, number format
``run_commands``     ``train``, ``eval``, ``train-expert``, ``check``
``compare_commands`` ``compare``, ``sweep``
``listing_commands`` ``list``, ``show``, ``export``
==================== ===========================================================
"""

from __future__ import annotations

from typing import Any

import click

from gatekit.cli.common import clean_errors, err, fmt_stat, stdout
from gatekit.cli.compare_commands import compare_cmd, sweep_cmd
from gatekit.cli.listing_commands import export_cmd, list_cmd, show_cmd
from gatekit.cli.run_commands import (
    check_cmd,
    eval_cmd,
    expert_label,
    results_table,
    train,
    train_expert_cmd,
)


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


for _command in (train, eval_cmd, train_expert_cmd, check_cmd, compare_cmd, sweep_cmd, list_cmd, show_cmd, export_cmd):
    main.add_command(_command)

__all__ = ["clean_errors", "err", "expert_label", "fmt_stat", "main", "results_table", "stdout"]
