"""What every ``gatekit`` command shares: the consoles, the one-line error handling, the
number format of the tables.

Every error (bad recipe, unknown name, unwritable folder, a component or plugin that raised,
...) is printed as one line on stderr with exit code 2, never a traceback; ``gatekit
--traceback ...`` (or ``GATEKIT_DEBUG=1``) prints the full trace first, for plugin authors.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from gatekit.errors import GatekitError

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


def clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command so that any exception is one line and exit code 2 (Ctrl-C: exit 130)."""
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


def fmt_stat(v: Any, digits: int = 2) -> str:
    """A ``{mean, std, n}`` stat as ``mean ± std``, a float rounded, ``-`` for none or NaN."""
    if isinstance(v, dict):
        if v.get("n", 0) == 0 or v["mean"] != v["mean"]:
            return "-"
        return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def text_width() -> int:
    """The width of wrapped help text: the terminal's, else 100 columns."""
    return stdout.width - 8 if sys.stdout.isatty() else 100


__all__ = ["clean_errors", "err", "fmt_stat", "stdout", "text_width"]
