"""Progress bars (rich) for runs, evaluations and comparisons."""

from __future__ import annotations

import math
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


def _fmt(live: dict[str, Any]) -> str:
    s = live.get("last_success", math.nan)
    succ = "-" if s is None or (isinstance(s, float) and math.isnan(s)) else f"{s:.2f}"
    return (f"expert {live.get('expert_steps', 0)} ({live.get('takeover_rate', 0.0):.2f})  "
            f"switches {live.get('switches', 0)}  test success {succ}")


class RunProgress:
    """A progress bar over env steps with the run's live counters; a no-op when disabled."""

    def __init__(self, *, total: int, enabled: bool, description: str, start: int = 0) -> None:
        self.enabled = enabled
        self.total = total
        self.start = start
        self.description = description
        self._progress: Progress | None = None

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[live]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=console, transient=False, refresh_per_second=4,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, completed=self.start, live="")
        return self

    def update(self, steps: int, live: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=steps, live=_fmt(live))

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
