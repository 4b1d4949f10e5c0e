"""The keyboard expert itself: the Expert interface on top of the window, control and input.

See :mod:`gatekit.experts.keyboard` for the flow (robot-gated and human-gated), the keys, the
person's effort, and running without a screen.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, GatekitError
from gatekit.experts.keyboard.effort import Effort
from gatekit.experts.keyboard.input import _HAND_BACK, KeyboardInput
from gatekit.experts.keyboard.keymap import (
    CONTROL_KEY,
    METADRIVE_KEYS,
    MINIGRID_KEYS,
    KeyMap,
    _describe_names,
)
from gatekit.experts.keyboard.script import ScriptedPerson, _build_script
from gatekit.experts.keyboard.window import (
    check_no_window_open,
    frame_source,
    import_pygame,
    init_display,
)

_IDLE_DRAW_SECONDS = 0.2  # while the novice drives unwatched, redraw at most this often


def _check_numbers(*, fps: float | None, view_size: int, **seconds: float) -> None:
    """Raise ValueError naming the first setting out of range."""
    for name, value in seconds.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a number > 0, got {fps}")
    if not isinstance(view_size, int) or view_size < 64:
        raise ValueError(f"view_size must be an integer >= 64 (pixels), got {view_size!r}")


def _default_keys(kind: str, space: gym.Space) -> dict[str, Any]:
    """MiniGrid's or MetaDrive's key map; any other env must be given one."""
    if kind == "rgb_array":
        raise ConfigError(f"expert.keys: give a key map for {space} (e.g. keys: {{left: 0, "
                          f"right: 1}}); {_describe_names()}")
    return MINIGRID_KEYS if kind == "minigrid" else METADRIVE_KEYS


class KeyboardExpert(KeyboardInput):
    """A person at the keyboard: a pygame window shows the env, keys become the expert's actions.

    See the module docstring for the flow. ``act`` blocks (pumping the window's events, so it
    keeps responding) until the person answers; a discrete action is one key press, a
    continuous one is the smoothed state of the held keys, one action per ``1 / fps`` seconds.

    Args:
        env: the env to show (MiniGrid, MetaDrive, or one with ``render_mode="rgb_array"``).
        keys: the key map (see the module docstring); None: MiniGrid's or MetaDrive's default.
        control_key: takes control from the novice and hands it back.
        fps: steps per second while the person drives a continuous env or watches the novice
            (default: 4 on MiniGrid, 10 on MetaDrive (real time), else the env's
            ``render_fps`` or 10).
        view_size: the longer side of the env's picture, in pixels.
        sound: beep on each help request (needs an audio device; warns once if none).
        rise_seconds: continuous actions: time from rest to a held key's full value.
        release_seconds: continuous actions: time back to rest once released.
        rest: continuous actions: the value of each dimension with no key held (default 0,
            or the bound nearest to 0).
        script: a stand-in person: an expert registry name whose actions become key events
            (for tests, demos and trials); None: a real person.
        reaction_seconds: the scripted person's delay before answering a help request.
        key_seconds: the scripted person's time between keys while in control.
        clock: the monotonic clock (seconds); tests inject a fake one.
        sleep: waits a number of seconds on ``clock``; tests inject a fake one.
        driver: called as ``driver(expert, now)`` whenever the window looks at its events, to
            post key events (a scripted person); exclusive with ``script``.

    Raises:
        ConfigError: an unknown key, a key map that does not cover the action space, an env
            the window cannot show, pygame missing.
        GatekitError: no display, or another keyboard window is open in this process.
    """

    def __init__(self, *, env: gym.Env, keys: dict[str, Any] | None = None, control_key: str = CONTROL_KEY,
                 fps: float | None = None, view_size: int = 600, sound: bool = False,
                 rise_seconds: float = 0.4, release_seconds: float = 0.2, rest: list[float] | None = None,
                 script: str | None = None, reaction_seconds: float = 0.5, key_seconds: float = 0.2,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                 driver: Callable[[KeyboardExpert, float], None] | None = None) -> None:
        super().__init__(env.observation_space, env.action_space)
        _check_numbers(fps=fps, view_size=view_size, rise_seconds=rise_seconds, release_seconds=release_seconds,
                       reaction_seconds=reaction_seconds, key_seconds=key_seconds)
        if script is not None and driver is not None:
            raise ValueError("give script (a scripted person by expert name) or driver, not both")
        pg = import_pygame()
        self._pg = pg
        self.kind, self._frame = frame_source(env, view_size)
        check_no_window_open()
        init_display(pg)
        try:
            self.keymap = KeyMap.parse(pg, _default_keys(self.kind, env.action_space) if keys is None else keys,
                                       env.action_space, control_key)
            self.fps = float(fps) if fps is not None else {"minigrid": 4.0, "metadrive": 10.0}.get(
                self.kind, float(env.metadata.get("render_fps") or 10.0))
            self.view_size = view_size
            self.sound = bool(sound)
            self.rise_seconds, self.release_seconds = float(rise_seconds), float(release_seconds)
            self._rest = self._check_rest(rest)
            self.clock = clock if clock is not None else time.monotonic
            self._sleep = sleep if sleep is not None else time.sleep
            if script is not None:
                driver = ScriptedPerson(expert=_build_script(script, env), reaction_seconds=reaction_seconds,
                                        key_seconds=key_seconds)
            self.driver = driver
        except BaseException:
            pg.display.quit()
            raise
        self._hold_window()
        self._closed = False
        self._init_state()
        self.bind(env)

    def _init_state(self) -> None:
        """The state of a fresh window (see :class:`~gatekit.experts.keyboard.state.KeyboardState`)."""
        # who holds control, and what the person is doing
        self.status = "idle"
        self.waiting = False
        self.steps = 0
        self.last_obs = None
        self._in_control = False
        self._asked_at = None
        self._pending = None
        self._inputs = collections.deque()
        self._held = {}
        self._pressed = False
        self._value = self._rest.copy() if self._rest is not None else None
        self._last_update = None
        self._next_frame = None
        # effort
        self._effort = Effort()
        self._before = Effort()
        self._mark = None
        self._session_start = None
        # window
        self._screen = None
        self._picture = None
        self._dirty = True
        self._last_draw = -math.inf
        self._beep = None
        self._font = None

    def _check_rest(self, rest: list[float] | None) -> np.ndarray | None:
        space = self.action_space
        if not isinstance(space, gym.spaces.Box):
            if rest is not None:
                raise ValueError("rest applies to continuous (Box) actions only")
            return None
        low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
        if rest is None:
            return np.clip(np.zeros(space.shape), low, high)
        value = np.asarray(rest, dtype=np.float64)
        if value.shape != space.shape or not ((low <= value) & (value <= high)).all():
            raise ValueError(f"rest must be {space.shape[0]} numbers within the action bounds, got {rest}")
        return value

    # ---- the Expert interface -------------------------------------------------------------

    def bind(self, env: gym.Env) -> None:
        super().bind(env)
        self.kind, self._frame = frame_source(env, self.view_size)
        driver_bind = getattr(self.driver, "bind", None)
        if driver_bind is not None:
            driver_bind(self)

    def reset(self, *, seed: int | None = None) -> None:
        """A new episode: the novice starts in control; the person's effort clock runs."""
        super().reset(seed=seed)
        if self._closed:
            raise GatekitError("expert keyboard: this window was closed; build a new keyboard expert")
        driver_reset = getattr(self.driver, "reset", None)
        if driver_reset is not None:
            driver_reset(seed=seed)
        now = self.clock()
        if self._session_start is None:
            self._session_start = self._mark = now
        if self._in_control:
            self._end_control(now, by_person=False)
        self._set_status("idle", now)
        self._pending = None
        self._inputs.clear()
        self._dirty = True
        self._draw()

    def act(self, obs: Any) -> Any:
        """The person's action for this step; waits (window responsive) until they give it."""
        self.last_obs = obs
        if self._pending is not None:  # given during claim_control, on this very step
            action, self._pending = self._pending, None
            return action
        self._dirty = True
        if not self._in_control:
            self._begin_control(self.clock(), asked=True)
        action = self._turn(allow_control=False)
        assert action is not _HAND_BACK
        return action

    def claim_control(self, obs: Any, *, expert_in_control: bool, watched: bool) -> bool | None:
        """Called by the wrapper before its criterion on every step: the person's own claim.

        In control, this is the person's turn: an action key gives this step's action (None:
        the criterion decides as usual), the control key hands back (False). With the novice in
        control the window shows the step (paced at ``fps`` when ``watched``) and the control
        key takes over (True).
        """
        self.last_obs = obs
        self.steps += 1
        self._dirty = True
        self._pending = None
        now = self.clock()
        if self._in_control and not expert_in_control:
            self._end_control(now, by_person=False)  # the criterion handed back on the last step
        if expert_in_control:
            if not self._in_control:  # control came without the person's claim: a request
                self._begin_control(now, asked=True)
            result = self._turn(allow_control=True)
            if result is _HAND_BACK:
                self._end_control(self.clock(), by_person=True)
                return False
            self._pending = result
            return None
        self._set_status("watch" if watched else "idle", now)
        if watched:
            taken = self._watch(deadline=now + 1.0 / self.fps)
        else:
            self._poll()
            taken = self._take_control_input()
            if self.clock() - self._last_draw >= _IDLE_DRAW_SECONDS:
                self._draw()
        if taken:
            self._begin_control(self.clock(), asked=False)
            return True
        return None
