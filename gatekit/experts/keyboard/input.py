"""The person's input: the window's key events become actions, take-overs and hand-backs.

A discrete action is one key press. A continuous action is the state of the held keys, moved
toward their values at limited rates (a key is all or nothing), one action per ``1 / fps``
seconds. While waiting, the window keeps pumping its events (so it keeps responding) and lets
its driver (a scripted person) post keys.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from gatekit.errors import PersonLeft
from gatekit.experts.keyboard.control import KeyboardControl

if TYPE_CHECKING:
    from gatekit.experts.keyboard.expert import KeyboardExpert

_POLL_SECONDS = 0.01      # how often a waiting window looks at its events
_HAND_BACK = object()  # a turn's result: the person pressed the control key


class KeyboardInput(KeyboardControl):
    """The input layer of the keyboard expert: reading keys, and the person's turn."""

    def _poll(self) -> None:
        """Let the driver post its keys, then read the window's events into the input queue."""
        now = self.clock()
        if self._value is not None and self._in_control and not self.asked:
            self._integrate(now)  # the keys held until now moved the action
        if self.driver is not None:
            self.driver(cast("KeyboardExpert", self), now)  # this layer is only ever a KeyboardExpert's base
        for event in self._pg.event.get():
            self._read_event(event, now)

    def _read_event(self, event: Any, now: float) -> None:
        pg = self._pg
        if event.type == pg.QUIT:
            self.close()
            raise PersonLeft("the person closed the keyboard window; every label so far is saved: "
                             "continue with `gatekit train --resume RUN_FOLDER`")
        if event.type == pg.KEYDOWN:
            self._key_down(event.key, now)
        elif event.type == pg.KEYUP:
            self._held.pop(event.key, None)
        elif event.type in (getattr(pg, "WINDOWFOCUSLOST", -1), getattr(pg, "WINDOWLEAVE", -1)):
            self._held.clear()  # a key released outside the window sends no KEYUP
        elif event.type in (getattr(pg, "WINDOWEXPOSED", -1), getattr(pg, "VIDEOEXPOSE", -1)):
            self._last_draw = -math.inf

    def _key_down(self, code: int, now: float) -> None:
        if code == self.keymap.control:
            self._inputs.append(("control", None, now))
        elif code in self.keymap.codes:
            self._held[code] = None
            if self.keymap.discrete:
                self._inputs.append(("action", self.keymap.codes[code], now))
            elif not self._pressed:
                self._pressed = True
                self._inputs.append(("drive", None, now))

    def _take_control_input(self) -> bool:
        """Novice in control: did the person press the control key? Action keys are dropped,
        except those pressed after the control key (the person's first moves)."""
        while self._inputs:
            kind, _, _ = self._inputs.popleft()
            if kind == "control":
                return True
        return False

    def _wait(self, until: float | None = None) -> None:
        if self._dirty or self.clock() - self._last_draw >= 0.5:
            self._draw()
        dt = _POLL_SECONDS if until is None else min(_POLL_SECONDS, max(0.0, until - self.clock()))
        self._sleep(dt)

    def _watch(self, deadline: float) -> bool:
        """Human-gated, novice in control: show the step for 1/fps s; True if the person takes over."""
        self.waiting = True
        try:
            while True:
                self._poll()
                if self._take_control_input():
                    return True
                if self.clock() >= deadline:
                    if self._dirty:
                        self._draw()
                    return False
                self._wait(until=deadline)
        finally:
            self.waiting = False

    def _turn(self, *, allow_control: bool) -> Any:
        """The person's input for one step: an action, or ``_HAND_BACK`` (when allowed)."""
        self.waiting = True
        try:
            if self.keymap.discrete:
                return self._discrete_turn(allow_control)
            return self._continuous_turn(allow_control)
        finally:
            self.waiting = False

    def _discrete_turn(self, allow_control: bool) -> Any:
        while True:
            self._poll()
            while self._inputs:
                kind, value, t = self._inputs.popleft()
                if kind == "control":
                    if allow_control and not self.asked:
                        return _HAND_BACK
                    continue  # a help request is answered with an action first
                if kind == "action":
                    self._answered(t)
                    return value
            self._wait()

    def _continuous_turn(self, allow_control: bool) -> Any:
        if self.asked:  # the env waits for the first driving key
            while self.asked:
                self._poll()
                while self._inputs:
                    kind, _, t = self._inputs.popleft()
                    if kind == "drive":
                        self._answered(t)
                        self._last_update = t  # the action starts moving with the first key
                        break
                else:
                    self._wait()
        now = self.clock()
        deadline = self._next_frame if self._next_frame is not None else now + 1.0 / self.fps
        while True:
            self._poll()
            while self._inputs:
                kind, _, _ = self._inputs.popleft()
                if kind == "control" and allow_control:
                    return _HAND_BACK
            now = self.clock()
            if now >= deadline:
                break
            self._wait(until=deadline)
        self._next_frame = max(deadline + 1.0 / self.fps, now)  # keep the cadence, owe no frames
        return self._integrate(now).astype(self.action_space.dtype)  # type: ignore[union-attr]

    def _integrate(self, now: float) -> np.ndarray:
        """Move each dimension toward its held keys' value (or rest) at the limited rates, for
        the time since the last update (the held keys are those of that whole interval)."""
        assert self._value is not None and self._rest is not None
        space = self.action_space
        low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)  # type: ignore[attr-defined]
        dt = max(0.0, now - (self._last_update if self._last_update is not None else now))
        self._last_update = now
        target = self._rest.copy()  # rest, plus what each held key adds (opposite keys cancel)
        driven = np.zeros(target.shape, dtype=bool)
        for code in self._held:
            vec = self.keymap.codes.get(code)
            if vec is None:
                continue
            mask = ~np.isnan(vec)
            target[mask] += vec[mask] - self._rest[mask]
            driven |= mask
        target = np.clip(target, low, high)
        half = (high - low) / 2.0
        outward = driven & (np.abs(target - self._rest) > np.abs(self._value - self._rest)) \
            & (np.sign(target - self._rest) * np.sign(self._value - self._rest) >= 0)
        seconds = np.where(outward, self.rise_seconds, self.release_seconds)
        step = np.where(seconds > 0, half * dt / np.maximum(seconds, 1e-12), np.inf)
        self._value = self._value + np.clip(target - self._value, -step, step)
        return self._value
