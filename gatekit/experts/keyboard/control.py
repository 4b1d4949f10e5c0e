"""Who holds control (the novice, or the person), and the person's effort it costs.

Control passes to the person either by a help request (the criterion's take-over, a warm-up
episode, a criterion that reads the expert's action) or by their own take-over (the control
key); it returns by the criterion's hand-back rule or by the person's own hand-back. Each
change is timed on the expert's monotonic clock into :class:`~gatekit.experts.keyboard.effort.Effort`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from gatekit.experts.keyboard.effort import Effort
from gatekit.experts.keyboard.window import KeyboardWindow


class KeyboardControl(KeyboardWindow):
    """The control layer of the keyboard expert: status changes and effort accounting."""

    def effort(self) -> Effort:
        """The person's effort so far (earlier sessions of a resumed run included)."""
        now = self.clock()
        self._account(now)
        current = Effort(**{**asdict(self._effort), "latencies": list(self._effort.latencies)})
        if self._session_start is not None:
            current.session_seconds = now - self._session_start
        return self._before + current

    def load_effort(self, state: Mapping[str, Any]) -> None:
        """Restore the effort of earlier sessions (a resumed run); this session's adds to it."""
        known = {k: state[k] for k in asdict(Effort()) if k in state}
        self._before = Effort(**{**known, "latencies": [float(x) for x in known.get("latencies", [])]})

    @property
    def asked(self) -> bool:
        """A help request waits for the person's first key."""
        return self._asked_at is not None

    def _account(self, now: float) -> None:
        if self._mark is None:
            return
        dt = max(0.0, now - self._mark)
        if self.status in ("asked", "control"):
            self._effort.control_seconds += dt
        elif self.status == "watch":
            self._effort.watch_seconds += dt
        self._mark = now

    def _set_status(self, status: str, now: float) -> None:
        self._account(now)
        if status != self.status:
            self.status = status
            self._dirty = True

    def _begin_control(self, now: float, *, asked: bool) -> None:
        self._set_status("asked" if asked else "control", now)
        self._in_control = True
        self._next_frame = None
        if asked:
            self._effort.help_requests += 1
            self._asked_at = now
            self._pressed = False
            self._inputs.clear()  # keys pressed before the request do not answer it
            self._play_beep()
        else:
            self._effort.takeovers += 1
        if self._value is not None:
            self._value = self._rest.copy()  # type: ignore[union-attr]
            self._last_update = now
        self._draw()

    def _answered(self, t: float) -> None:
        if self._asked_at is not None:
            self._effort.latencies.append(max(0.0, t - self._asked_at))
            self._asked_at = None
            self._set_status("control", t)

    def _end_control(self, now: float, *, by_person: bool) -> None:
        self._set_status("idle", now)
        self._in_control = False
        self._asked_at = None
        self._next_frame = None
        if by_person:
            self._effort.handbacks += 1
        if self._value is not None:
            self._value = self._rest.copy()  # type: ignore[union-attr]
