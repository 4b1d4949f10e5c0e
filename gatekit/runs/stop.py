"""Stop a run cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import signal
from typing import Any


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and stops at the next step. A second
    signal stops at once (KeyboardInterrupt), and so does the first once :attr:`immediate` is
    set (e.g. during the final evaluation, which has no step to stop at).

    Attributes:
        signal: the first signal received (None: none).
        immediate: raise KeyboardInterrupt on the first signal.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.immediate = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, the caller stops us
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        stop_now = self.signal is not None or self.immediate  # a second Ctrl-C: stop now
        self.signal = self.signal or signum
        if stop_now:
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
