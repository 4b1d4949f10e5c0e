"""Helper processes (evaluation, env and comparison workers) that a Ctrl-C does not kill.

A terminal's Ctrl-C signals its whole foreground process group, so a run's helper processes get
it too. The run (or the comparison) decides what a Ctrl-C means: it checkpoints, then closes its
helpers. A helper must therefore ignore SIGINT, and from its very start: a freshly spawned
interpreter spends seconds importing torch or a simulator before its own code runs.
"""

from __future__ import annotations

import signal
from typing import Any


def start_deaf_to_ctrl_c(proc: Any) -> None:
    """Start ``proc`` (a spawned ``multiprocessing.Process``) with SIGINT ignored from its first
    instruction. An ignored signal stays ignored across ``exec``, and Python leaves it so at
    startup; a handler would not survive ``exec``.

    This process ignores SIGINT too while the spawn lasts (about 1 ms): a Ctrl-C in that instant
    is lost, the next one is not. Outside the main thread (where handlers cannot be changed)
    ``proc`` starts as is.
    """
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread (as StopFlag)
        proc.start()
        return
    try:
        proc.start()
    finally:
        signal.signal(signal.SIGINT, old)
