"""Progress for runs, evaluations and comparisons: a rich bar on a terminal, and periodic plain
lines (full width, one per ``PLAIN_EVERY`` seconds) when the output goes to a file or a pipe,
where a bar would print nothing until its end."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)

PLAIN_EVERY = float(os.environ.get("GATEKIT_PROGRESS_SECONDS", "30"))
"""Seconds between plain progress lines when stderr is not a terminal
(``GATEKIT_PROGRESS_SECONDS`` overrides it)."""

PHASES = {"expert": "expert reference", "final": "final evaluation"}


def _fmt(live: dict[str, Any]) -> str:
    s = live.get("last_success", math.nan)
    succ = "-" if s is None or (isinstance(s, float) and math.isnan(s)) else f"{s:.2f}"
    at = live.get("last_eval_step")
    if at is not None and succ != "-":
        succ += f" (at step {at})"
    return (f"expert {live.get('expert_steps', 0)} ({live.get('takeover_rate', 0.0):.2f})  "
            f"switches {live.get('switches', 0)}  test success {succ}")


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def live_bar() -> Progress:
    """A bar over a count, with the task's ``live`` text (``add_task(..., live="")``), the
    elapsed and the remaining time."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[live]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False, refresh_per_second=4,
    )


def plain_line(text: str) -> None:
    """One progress line on stderr, unwrapped (a log file keeps it whole)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class RunProgress:
    """Progress over env steps with the run's live counters and its evaluation phases (the
    expert's reference, the final evaluation); a no-op when disabled.

    Args:
        total: env steps of the run.
        enabled: show anything at all.
        description: the run's name.
        start: steps already done (a resumed run).
        plain: plain lines instead of a bar (default: when stderr is not a terminal).
        plain_every: seconds between plain lines.
    """

    def __init__(self, *, total: int, enabled: bool, description: str, start: int = 0, plain: bool | None = None,
                 plain_every: float | None = None) -> None:
        self.enabled = enabled
        self.total = total
        self.start = start
        self.description = description
        self.plain = (not console.is_terminal) if plain is None else plain
        self.plain_every = PLAIN_EVERY if plain_every is None else plain_every
        self._progress: Progress | None = None
        self._steps = start
        self._live: dict[str, Any] = {}
        self._phases: dict[str, tuple[int, int]] = {}
        self._t0 = time.monotonic()
        self._last_line = -math.inf

    def __enter__(self) -> RunProgress:
        self._t0 = time.monotonic()
        if self.enabled and self.plain:
            plain_line(f"{self.description}: starting at step {self.start} of {self.total}")
            self._last_line = time.monotonic()
        elif self.enabled:
            self._progress = live_bar()
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, completed=self.start, live="")
        return self

    def text(self) -> str:
        """The live text: counters, the latest test success, and running evaluation phases."""
        parts = [_fmt(self._live)]
        parts += [f"{PHASES.get(k, k)} {d}/{n}" for k, (d, n) in self._phases.items()]
        return "  |  ".join(parts)

    def line(self) -> str:
        """A plain progress line."""
        return (f"{self.description}: {self._steps}/{self.total} steps  {self.text()}  "
                f"elapsed {_clock(time.monotonic() - self._t0)}")

    def _show(self, *, force: bool = False) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self._steps, live=self.text())
        elif self.enabled and self.plain and (force or time.monotonic() - self._last_line >= self.plain_every):
            plain_line(self.line())
            self._last_line = time.monotonic()

    def update(self, steps: int, live: dict[str, Any]) -> None:
        self._steps, self._live = steps, dict(live)
        self._show()

    def phase(self, what: str, done: int, total: int) -> None:
        """An evaluation phase's progress (``expert`` or ``final``, ``done`` of ``total``
        episodes); a finished phase leaves the live text (and is said once in plain mode)."""
        if done >= total:
            self._phases.pop(what, None)
            if self.plain:
                self._show(force=True)
                if self.enabled:
                    plain_line(f"{self.description}: {PHASES.get(what, what)} done ({total} episodes)")
            else:
                self._show()
            return
        self._phases[what] = (done, total)
        self._show(force=self.plain and done == 1)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
        elif self.enabled and self.plain:
            plain_line(self.line())


class EpisodeProgress:
    """Progress over evaluation episodes (``gatekit eval``): a transient bar on a terminal,
    plain lines every ``PLAIN_EVERY`` seconds (and at the end) otherwise.

    Example:
        >>> with EpisodeProgress(total=2, description="evaluating", plain=True, plain_every=1e9) as p:
        ...     p.tick(0); p.tick(1)   # doctest: +SKIP
    """

    def __init__(self, *, total: int, description: str, plain: bool | None = None,
                 plain_every: float | None = None) -> None:
        self.total = total
        self.description = description
        self.plain = (not console.is_terminal) if plain is None else plain
        self.plain_every = PLAIN_EVERY if plain_every is None else plain_every
        self.done = 0
        self._bar: Progress | None = None
        self._t0 = time.monotonic()
        self._last = time.monotonic()

    def __enter__(self) -> EpisodeProgress:
        self._t0 = self._last = time.monotonic()
        if self.plain:
            plain_line(f"{self.description}: {self.total} episodes")
        else:
            self._bar = Progress(console=console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def tick(self, _: int = 0) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)
        elif time.monotonic() - self._last >= self.plain_every:
            plain_line(f"{self.description}: {self.done}/{self.total} episodes, "
                       f"elapsed {_clock(time.monotonic() - self._t0)}")
            self._last = time.monotonic()

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        else:
            plain_line(f"{self.description}: {self.done}/{self.total} episodes done, "
                       f"elapsed {_clock(time.monotonic() - self._t0)}")
