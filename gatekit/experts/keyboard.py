"""A person at the keyboard as the expert: a window shows the env, the person's keys are actions.

:class:`KeyboardExpert` opens a pygame window that shows the env as it runs: the full grid for
MiniGrid, MetaDrive's top-down 2D view (drawn with pygame, no downloaded assets), or
``env.render()`` for any env built with ``render_mode="rgb_array"``. Whenever gatekit needs the
expert's action, the env waits for the person to give it with a key.

Two ways to gate a person:

* **Robot-gated** (any criterion, e.g. ``aim``): when the criterion hands control to the
  expert, the window asks for help plainly (an orange border and banner, and a beep with
  ``sound: true``) and the env waits for the person's first key. The person then drives until
  the criterion's hand-back rule returns control to the novice, or until they press the control
  key (``t``) to hand back themselves.
* **Human-gated** (``criterion: {id: human}``): the person watches the novice at ``fps`` steps
  per second and presses ``t`` to take over at any time, and ``t`` again to hand back. Those
  presses are the gate; both are recorded (``switched`` / ``handed_back``).

Keys. MiniGrid: left/right turn, up moves forward, space toggles (opens doors), p (or page up)
picks up, d (or page down) drops, return is "done". MetaDrive: left/right (or a/d) steer,
up/w accelerates, down/s brakes; held keys move the action toward their value at a limited
rate (``rise_seconds`` from rest to full, ``release_seconds`` back), since a key is all or
nothing. Any other env needs a key map (``keys``), by pygame's key names
(``pygame.key.name``):

* ``Discrete(n)`` actions: ``{key: action}``, every action needs a key, e.g.
  ``keys: {left: 0, right: 1}`` for CartPole.
* ``Box`` actions of shape ``(d,)``: ``{key: [v_0, ..., v_{d-1}]}``, where ``v_i`` is the value
  the key drives dimension ``i`` to and ``null`` leaves that dimension alone; every dimension
  needs a key, e.g. ``keys: {left: [-2.0], right: [2.0]}`` for Pendulum. With no key held a
  dimension returns to ``rest`` (0, or the bound nearest to it).

The person's effort (:class:`Effort`, from :meth:`KeyboardExpert.effort`) is counted with a
monotonic clock: seconds in control, seconds watching the novice (human-gated), help requests,
the response latency to each request, the person's own take-overs and hand-backs. gatekit copies
it into ``info["gatekit"]["person"]`` on every step and into ``results.json``.

No screen. The window needs a display: a desktop, or a virtual one (``xvfb-run -a gatekit
train ...``). ``SDL_VIDEODRIVER=dummy`` runs it headless, where nobody can see it: only a
scripted person (``script``) can answer then. Closing the window stops the run as interrupted,
with every label kept (``gatekit train --resume RUN_FOLDER`` continues it).

A scripted person (``script: minigrid-planner``) posts the key events another expert's actions
call for, after ``reaction_seconds`` for each help request and ``key_seconds`` between keys:
for tests, demos and trying the window without a person. It runs in the same process, called
by the window's event loop.

Example:
    >>> import os; os.environ["SDL_VIDEODRIVER"] = "dummy"   # doctest: +SKIP
    >>> from gatekit.envs.minigrid import make_doorkey_env      # doctest: +SKIP
    >>> env = make_doorkey_env()                                # doctest: +SKIP
    >>> person = KeyboardExpert(env=env, script="minigrid-planner", reaction_seconds=0.0,
    ...                         key_seconds=0.0)                # doctest: +SKIP
"""

from __future__ import annotations

import collections
import math
import os
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, GatekitError, PersonLeft, nearest
from gatekit.experts.base import Expert

#: The key that takes control from the novice, and hands it back.
CONTROL_KEY = "t"

#: MiniGrid's actions (left, right, forward, pickup, drop, toggle, done) by key.
MINIGRID_KEYS: dict[str, Any] = {"left": 0, "right": 1, "up": 2, "p": 3, "page up": 3, "d": 4,
                                 "page down": 4, "space": 5, "return": 6}
MINIGRID_ACTIONS = ("turn left", "turn right", "forward", "pick up", "drop", "toggle", "done")
#: MetaDrive's ``[steering, throttle]`` by key (positive steering turns left).
METADRIVE_KEYS: dict[str, Any] = {"left": [1.0, None], "a": [1.0, None], "right": [-1.0, None],
                                  "d": [-1.0, None], "up": [None, 1.0], "w": [None, 1.0],
                                  "down": [None, -1.0], "s": [None, -1.0]}

_HEADLESS_DRIVERS = ("dummy", "offscreen")
_POLL_SECONDS = 0.01      # how often a waiting window looks at its events
_IDLE_DRAW_SECONDS = 0.2  # while the novice drives unwatched, redraw at most this often
_BORDER, _BANNER, _FOOTER = 10, 40, 44
_COLORS = {"idle": (120, 120, 120), "watch": (50, 110, 220), "asked": (245, 130, 0), "control": (30, 165, 75)}
_HAND_BACK = object()  # a turn's result: the person pressed the control key

# The open window of this process: pygame has one display per process.
_open: weakref.ref[KeyboardExpert] | None = None


def _no_display_error() -> GatekitError:
    return GatekitError(
        "expert keyboard: no display to open its window on; run on a desktop, under a virtual display "
        "(xvfb-run -a gatekit train ...), or headless with SDL_VIDEODRIVER=dummy (nobody sees the window "
        "then: only a scripted person, expert.script, can answer)"
    )


def import_pygame() -> Any:
    """Import pygame quietly, or say how to install it."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ModuleNotFoundError as exc:
        raise ConfigError("expert: keyboard needs pygame; pip install 'gatekit[keyboard]'") from exc
    return pygame


def init_display(pg: Any) -> None:
    """Initialise pygame's display, or raise the one-line no-display error.

    Without a display SDL quietly falls back to an invisible driver (offscreen, dummy): a person
    would wait for a window that never shows. That is accepted only when asked for explicitly
    with ``SDL_VIDEODRIVER``.
    """
    asked = os.environ.get("SDL_VIDEODRIVER", "").strip().lower()
    if sys.platform.startswith("linux") and not asked and not os.environ.get("DISPLAY") \
            and not os.environ.get("WAYLAND_DISPLAY"):
        raise _no_display_error()  # before SDL probes (and prints about) every driver
    try:
        pg.display.init()
    except pg.error:
        raise _no_display_error() from None
    if pg.display.get_driver() in _HEADLESS_DRIVERS and asked not in _HEADLESS_DRIVERS:
        pg.display.quit()
        raise _no_display_error()


# ---- effort ---------------------------------------------------------------------------------


@dataclass
class Effort:
    """What the person's time went into (seconds from a monotonic clock).

    Attributes:
        control_seconds: the person held control (from a switch to the hand-back).
        watch_seconds: the person watched the novice drive (human-gated runs).
        session_seconds: from the window's first episode to now (learning included).
        help_requests: control passed to the person without them asking (a criterion's
            take-over, a warm-up episode, a criterion that reads the expert's action).
        takeovers: the person took control themselves (the control key).
        handbacks: the person handed control back themselves (the control key).
        latencies: seconds from each help request to the person's first key.
    """

    control_seconds: float = 0.0
    watch_seconds: float = 0.0
    session_seconds: float = 0.0
    help_requests: int = 0
    takeovers: int = 0
    handbacks: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def switches(self) -> int:
        """Times control passed to the person (help requests and own take-overs)."""
        return self.help_requests + self.takeovers

    def latency(self, q: float) -> float | None:
        """The ``q``-quantile of the response latencies (None before the first answer)."""
        return float(np.quantile(self.latencies, q)) if self.latencies else None

    def as_dict(self) -> dict[str, Any]:
        """The figures a run reports (plain values; None where there is no data yet)."""
        minutes = self.session_seconds / 60.0
        return {
            "control_seconds": self.control_seconds,
            "watch_seconds": self.watch_seconds,
            "session_seconds": self.session_seconds,
            "help_requests": self.help_requests,
            "takeovers": self.takeovers,
            "handbacks": self.handbacks,
            "latency_median": self.latency(0.5),
            "latency_p90": self.latency(0.9),
            "switches_per_minute": self.switches / minutes if minutes > 0 else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything, raw (for checkpoints: a resumed run adds its new effort to it)."""
        return asdict(self)

    def __add__(self, other: Effort) -> Effort:
        return Effort(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})


# ---- key maps -------------------------------------------------------------------------------


def key_names(pg: Any) -> list[str]:
    """pygame's names of the keys (``pygame.key.name``), sorted."""
    names = {pg.key.name(getattr(pg, a)) for a in dir(pg) if a.startswith("K_")}
    return sorted(n for n in names if n and n != "unknown key")


def _describe_names() -> str:
    return "key names are pygame's: a-z, 0-9, left, right, up, down, space, return, tab, page up, f1, ..."


def key_code(pg: Any, name: Any, field: str) -> int:
    """The pygame key code of ``name``, or a one-line error naming the valid keys."""
    valid = key_names(pg)
    if isinstance(name, str) and name in valid:
        return int(pg.key.key_code(name))
    hint = nearest(str(name), valid)
    raise ConfigError(f"{field}: unknown key {name!r}; {hint} ({_describe_names()})")


@dataclass
class KeyMap:
    """A checked key map: key codes to a discrete action, or to per-dimension target values."""

    discrete: bool
    codes: dict[int, Any]   # code -> int action, or a float array with NaN for "untouched"
    names: dict[int, str]   # code -> key name
    control: int            # the control key's code
    control_name: str

    @classmethod
    def parse(cls, pg: Any, keys: Mapping[str, Any], space: gym.Space, control_key: str) -> KeyMap:
        """Check ``keys`` against ``space``; raise :class:`ConfigError` naming what is wrong."""
        if not isinstance(keys, Mapping) or not keys:
            raise ConfigError(f"expert.keys: expected a mapping of key names to actions, got {keys!r}")
        control = key_code(pg, control_key, "expert.control_key")
        codes: dict[int, Any] = {}
        names: dict[int, str] = {}
        if isinstance(space, gym.spaces.Discrete):
            n, start = int(space.n), int(space.start)
            for name, action in keys.items():
                code = key_code(pg, name, "expert.keys")
                if isinstance(action, bool) or not isinstance(action, int | np.integer) or not start <= action < start + n:
                    raise ConfigError(f"expert.keys: key '{name}' maps to {action!r}; expected an action in "
                                      f"[{start}, {start + n - 1}] of {space}")
                codes[code], names[code] = int(action), name
            missing = sorted(set(range(start, start + n)) - set(codes.values()))
            if missing:
                raise ConfigError(f"expert.keys: action(s) {missing} of {space} have no key; map every action "
                                  f"(mapped: {dict(keys)}; {_describe_names()})")
            discrete = True
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            dim = int(space.shape[0])
            low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
            for name, values in keys.items():
                code = key_code(pg, name, "expert.keys")
                if not isinstance(values, list | tuple) or len(values) != dim or all(v is None for v in values) \
                        or not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
                    raise ConfigError(f"expert.keys: key '{name}' maps to {values!r}; expected a list of {dim} "
                                      f"numbers or nulls (null: the key leaves that dimension alone)")
                vec = np.array([np.nan if v is None else float(v) for v in values])
                bad = [i for i in range(dim) if not np.isnan(vec[i]) and not low[i] <= vec[i] <= high[i]]
                if bad:
                    raise ConfigError(f"expert.keys: key '{name}' sets dimension {bad[0]} to {vec[bad[0]]}, "
                                      f"outside [{low[bad[0]]}, {high[bad[0]]}]")
                codes[code], names[code] = vec, name
            stacked = np.stack(list(codes.values()))
            missing = [i for i in range(dim) if np.isnan(stacked[:, i]).all()]
            if missing:
                raise ConfigError(f"expert.keys: action dimension(s) {missing} of {space} have no key; give a key "
                                  f"whose list sets them ({_describe_names()})")
            discrete = False
        else:
            raise ConfigError(f"expert: keyboard supports Discrete and 1-D Box actions, got {space}")
        if control in codes:
            raise ConfigError(f"expert.keys: '{names[control]}' is the control key (take over / hand back); "
                              f"map another key or set expert.control_key")
        return cls(discrete=discrete, codes=codes, names=names, control=control, control_name=control_key)

    def keys_for(self, action: int) -> list[int]:
        """The codes of the keys that give a discrete ``action`` (in map order)."""
        return [c for c, a in self.codes.items() if a == action]


# ---- frames ---------------------------------------------------------------------------------


def frame_source(env: gym.Env, view_size: int) -> tuple[str, Callable[[], np.ndarray]]:
    """What the window shows: ``(kind, frame())`` for MiniGrid, MetaDrive or an rgb_array env."""
    base: Any = env.unwrapped
    if hasattr(base, "get_frame") and hasattr(base, "grid"):
        def minigrid_frame() -> np.ndarray:
            # MiniGrid draws each kind of tile once per size (a slow first time, then cached):
            # tiles of at most 32 pixels keep that cheap; the window scales the picture.
            tile = max(8, min(32, view_size // max(base.width, base.height)))
            return base.get_frame(highlight=True, tile_size=tile)  # the novice's view is highlighted
        return "minigrid", minigrid_frame
    if hasattr(base, "agent_manager") and hasattr(base, "engine"):
        def metadrive_frame() -> np.ndarray:
            # Pure pygame drawing into an off-screen surface: needs no render assets. Heading-up,
            # so that the arrow keys mean the car's left and right.
            return base.render(mode="topdown", window=False, screen_size=(view_size, view_size),
                               target_agent_heading_up=True, scaling=4)
        return "metadrive", metadrive_frame
    if getattr(env, "render_mode", None) == "rgb_array":
        return "rgb_array", lambda: np.asarray(env.render())
    raise ConfigError(f"expert: keyboard shows MiniGrid and MetaDrive envs, or an env built with "
                      f"render_mode='rgb_array'; {type(base).__name__} has render_mode "
                      f"{getattr(env, 'render_mode', None)!r}")


# ---- the expert -----------------------------------------------------------------------------


class KeyboardExpert(Expert):
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
        global _open
        super().__init__(env.observation_space, env.action_space)
        for name, value in (("rise_seconds", rise_seconds), ("release_seconds", release_seconds),
                            ("reaction_seconds", reaction_seconds), ("key_seconds", key_seconds)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a number > 0, got {fps}")
        if not isinstance(view_size, int) or view_size < 64:
            raise ValueError(f"view_size must be an integer >= 64 (pixels), got {view_size!r}")
        if script is not None and driver is not None:
            raise ValueError("give script (a scripted person by expert name) or driver, not both")
        pg = import_pygame()
        self._pg = pg
        self.kind, self._frame = frame_source(env, view_size)
        if _open is not None and _open() is not None:
            raise GatekitError("expert keyboard: a keyboard window is already open in this process; close() "
                               "the first keyboard expert")
        init_display(pg)
        try:
            if keys is None:
                if self.kind == "rgb_array":
                    raise ConfigError(f"expert.keys: give a key map for {env.action_space} (e.g. keys: {{left: 0, "
                                      f"right: 1}}); {_describe_names()}")
                keys = MINIGRID_KEYS if self.kind == "minigrid" else METADRIVE_KEYS
            self.keymap = KeyMap.parse(pg, keys, env.action_space, control_key)
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
        _open = weakref.ref(self)
        self._closed = False
        # who holds control, and what the person is doing
        self.status = "idle"          # idle | watch (human-gated) | asked (help request) | control
        self.waiting = False          # the window waits for the person's input (drivers read it)
        self.steps = 0                # steps seen (claim_control calls)
        self.last_obs: Any = None
        self._in_control = False
        self._asked_at: float | None = None
        self._pending: Any = None     # the person's action given during claim_control
        self._inputs: collections.deque[tuple[str, Any, float]] = collections.deque()
        self._held: dict[int, None] = {}  # held keys, in press order
        self._pressed = False         # a driving key went down since the help request
        self._value = self._rest.copy() if self._rest is not None else None
        self._last_update: float | None = None
        self._next_frame: float | None = None
        # effort
        self._effort = Effort()
        self._before = Effort()       # earlier sessions of a resumed run
        self._mark: float | None = None
        self._session_start: float | None = None
        # window
        self._screen: Any = None
        self._picture: Any = None
        self._dirty = True
        self._last_draw = -math.inf
        self._beep: Any = None
        self._font: Any = None
        self.bind(env)

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

    def screenshot(self, path: str) -> None:
        """Redraw the window as it stands and save it (PNG by the file's suffix)."""
        if self._screen is None:
            raise GatekitError("expert keyboard: the window opens at the first reset(); nothing to save yet")
        self._draw()
        self._pg.image.save(self._screen, str(path))

    def close(self) -> None:
        """Close the window (safe to call twice)."""
        global _open
        if getattr(self, "_closed", True):
            return
        self._closed = True
        if _open is not None and _open() is self:
            _open = None
        if self._pg.display.get_init():
            self._pg.display.quit()

    # ---- control and effort ---------------------------------------------------------------

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

    # ---- input ----------------------------------------------------------------------------

    def _poll(self) -> None:
        """Let the driver post its keys, then read the window's events into the input queue."""
        pg = self._pg
        now = self.clock()
        if self._value is not None and self._in_control and not self.asked:
            self._integrate(now)  # the keys held until now moved the action
        if self.driver is not None:
            self.driver(self, now)
        for event in pg.event.get():
            if event.type == pg.QUIT:
                self.close()
                raise PersonLeft("the person closed the keyboard window; every label so far is saved: "
                                 "continue with `gatekit train --resume RUN_FOLDER`")
            if event.type == pg.KEYDOWN:
                code = event.key
                if code == self.keymap.control:
                    self._inputs.append(("control", None, now))
                elif code in self.keymap.codes:
                    self._held[code] = None
                    if self.keymap.discrete:
                        self._inputs.append(("action", self.keymap.codes[code], now))
                    elif not self._pressed:
                        self._pressed = True
                        self._inputs.append(("drive", None, now))
            elif event.type == pg.KEYUP:
                self._held.pop(event.key, None)
            elif event.type in (getattr(pg, "WINDOWFOCUSLOST", -1), getattr(pg, "WINDOWLEAVE", -1)):
                self._held.clear()  # a key released outside the window sends no KEYUP
            elif event.type in (getattr(pg, "WINDOWEXPOSED", -1), getattr(pg, "VIDEOEXPOSE", -1)):
                self._last_draw = -math.inf

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

    # ---- the window -----------------------------------------------------------------------

    def _banner(self) -> str:
        key = self.keymap.control_name.upper()
        return {
            "idle": f"Novice driving; it will ask for help.   {key}: take over",
            "watch": f"Novice driving: watch it.   {key}: take over",
            "asked": "HELP REQUESTED: you have control. Press a key.",
            "control": f"You are in control.   {key}: hand back",
        }[self.status]

    def _legend(self) -> str:
        groups: dict[str, list[str]] = {}
        for code, value in self.keymap.codes.items():
            if self.keymap.discrete:
                what = MINIGRID_ACTIONS[value] if self.kind == "minigrid" and 0 <= value < 7 else f"action {value}"
            elif self.kind == "metadrive":
                what = {(0, 1): "steer left", (0, -1): "steer right", (1, 1): "accelerate", (1, -1): "brake"}.get(
                    next(((i, int(np.sign(v))) for i, v in enumerate(value) if not np.isnan(v)), (0, 0)), "drive")
            else:
                what = "[" + ", ".join("." if np.isnan(v) else f"{v:g}" for v in value) + "]"
            groups.setdefault(what, []).append(self.keymap.names[code])
        return "   ".join(f"{keys[0]}: {what}" for what, keys in groups.items())

    def _text(self, font: Any, text: str, color: tuple[int, int, int], left_middle: tuple[int, int], width: int) -> None:
        surface = _fit(self._pg, font.render(text, True, color), width)
        self._screen.blit(surface, (left_middle[0], left_middle[1] - surface.get_height() // 2))

    def _play_beep(self) -> None:
        if not self.sound:
            return
        pg = self._pg
        if self._beep is None:
            try:
                if not pg.mixer.get_init():
                    pg.mixer.init(frequency=22050, size=-16, channels=1)
                freq, channels = pg.mixer.get_init()[0], pg.mixer.get_init()[2]
                t = np.arange(int(0.15 * freq)) / freq
                wave = (0.4 * 32767 * np.sin(2 * np.pi * 880 * t)).astype(np.int16)
                self._beep = pg.sndarray.make_sound(np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave)
            except Exception as exc:  # no audio device: the banner and border still say it
                warnings.warn(f"expert keyboard: no sound ({exc}); the window still shows help requests", stacklevel=2)
                self.sound = False
                return
        self._beep.play()

    def _draw(self) -> None:
        """Redraw the window: the env's picture (re-rendered after a step), border, banner, legend."""
        if self._closed or self.env is None:
            return
        pg = self._pg
        if self._dirty or self._picture is None:
            frame = np.asarray(self._frame())
            if frame.ndim != 3 or frame.shape[2] < 3:
                raise GatekitError(f"expert keyboard: the env's picture has shape {frame.shape}, expected (H, W, 3)")
            picture = pg.surfarray.make_surface(np.ascontiguousarray(frame[:, :, :3].swapaxes(0, 1)))
            w, h = picture.get_size()
            scale = self.view_size / max(w, h)
            if abs(scale - 1.0) > 1e-6:
                picture = pg.transform.smoothscale(picture, (max(1, round(w * scale)), max(1, round(h * scale))))
            self._picture = picture
            self._dirty = False
        pw, ph = self._picture.get_size()
        size = (pw + 2 * _BORDER, ph + 2 * _BORDER + _BANNER + _FOOTER)
        if self._screen is None or self._screen.get_size() != size:
            self._screen = pg.display.set_mode(size)
            pg.display.set_caption("gatekit: you are the expert")
            pg.font.init()
            self._font = pg.font.Font(None, 26)
            self._small = pg.font.Font(None, 20)
        screen, color = self._screen, _COLORS[self.status]
        width = size[0] - 2 * _BORDER
        screen.fill(color)
        screen.fill((20, 20, 20), (0, 0, size[0], _BANNER))
        self._text(self._font, self._banner(), color if self.status != "idle" else (230, 230, 230),
                   (_BORDER, _BANNER // 2), width)
        screen.blit(self._picture, (_BORDER, _BANNER + _BORDER))
        top = _BANNER + 2 * _BORDER + ph
        screen.fill((20, 20, 20), (0, top, size[0], _FOOTER))
        self._text(self._small, self._legend(), (220, 220, 220), (_BORDER, top + _FOOTER // 4), width)
        e = self._before + self._effort
        stats = (f"help requests {e.help_requests}   your take-overs {e.takeovers}   "
                 f"in control {e.control_seconds:.0f} s")
        self._text(self._small, stats, (160, 160, 160), (_BORDER, top + 3 * _FOOTER // 4), width)
        pg.display.flip()
        self._last_draw = self.clock()


def _fit(pg: Any, surface: Any, width: int) -> Any:
    if surface.get_width() <= width:
        return surface
    return pg.transform.smoothscale(surface, (width, max(1, round(surface.get_height() * width / surface.get_width()))))


def _build_script(name: str, env: gym.Env) -> Expert:
    """The expert a scripted person imitates, by registry name."""
    from gatekit.arguments import build
    from gatekit.config import Component
    from gatekit.experts import EXPERTS

    if name == "keyboard":
        raise ConfigError("expert.script: a scripted person cannot imitate another keyboard; name an expert "
                          "such as minigrid-planner or metadrive-ppo")
    return build(EXPERTS, Component(id=name), "expert.script", env=env)


class ScriptedPerson:
    """A stand-in person: posts the key events another expert's actions call for.

    It answers each help request ``reaction_seconds`` after it appears, then presses a key every
    ``key_seconds`` while in control (discrete actions), or re-chooses the keys it holds that
    often (continuous actions: per dimension, the key whose value has the sign of the expert's
    action, when that action is beyond a dead band of 20% of the half-range). It never hands
    back by itself unless ``hand_back_after`` is set: the criterion's hand-back rule does.

    Args:
        expert: the expert whose actions it types (bound to the same env).
        reaction_seconds: delay before answering a help request.
        key_seconds: time between keys while in control.
        hand_back_after: press the control key after this many actions in control (None: never).
    """

    def __init__(self, *, expert: Expert, reaction_seconds: float = 0.5, key_seconds: float = 0.2,
                 hand_back_after: int | None = None) -> None:
        self.expert = expert
        self.reaction_seconds = float(reaction_seconds)
        self.key_seconds = float(key_seconds)
        self.hand_back_after = hand_back_after
        self._due: float | None = None
        self._acted = 0
        self._holding: set[int] = set()
        self._keyboard: KeyboardExpert | None = None

    def bind(self, keyboard: KeyboardExpert) -> None:
        self._keyboard = keyboard
        self.expert.bind(keyboard.env)  # type: ignore[arg-type]

    def reset(self, *, seed: int | None = None) -> None:
        self.expert.reset(seed=seed)
        self._due = None
        self._acted = 0

    def _post(self, kb: KeyboardExpert, kind: int, code: int) -> None:
        kb._pg.event.post(kb._pg.event.Event(kind, key=code, mod=0, unicode="", scancode=0))

    def __call__(self, kb: KeyboardExpert, now: float) -> None:
        if not kb.waiting:
            self._due = None
            if kb.status not in ("asked", "control"):
                self._acted = 0
                self._release(kb)  # the novice drives: hands off the keys
            return
        if self._due is None:
            self._due = now + (self.reaction_seconds if kb.asked else self.key_seconds)
        if now < self._due:
            return
        self._due = now + self.key_seconds
        pg = kb._pg
        if kb.status == "control" and self.hand_back_after is not None and self._acted >= self.hand_back_after:
            self._acted = 0
            self._post(kb, pg.KEYDOWN, kb.keymap.control)
            self._post(kb, pg.KEYUP, kb.keymap.control)
            return
        if kb.status == "watch":
            return  # it only answers; taking over unasked is a real person's call
        action = self.expert.act(kb.last_obs)
        self._acted += 1
        if kb.keymap.discrete:
            code = kb.keymap.keys_for(int(np.asarray(action).reshape(-1)[0]))[0]
            self._post(kb, pg.KEYDOWN, code)
            self._post(kb, pg.KEYUP, code)
            return
        want = self._keys_for(kb, np.asarray(action, dtype=np.float64).reshape(-1), answer=kb.asked)
        if kb.asked:
            self._release(kb)  # a request is answered by a fresh key press
        for code in sorted(self._holding - want):
            self._post(kb, pg.KEYUP, code)
        for code in sorted(want - self._holding):
            self._post(kb, pg.KEYDOWN, code)
        self._holding = want

    def _release(self, kb: KeyboardExpert) -> None:
        for code in sorted(self._holding):
            self._post(kb, kb._pg.KEYUP, code)
        self._holding = set()

    @staticmethod
    def _keys_for(kb: KeyboardExpert, target: np.ndarray, *, answer: bool) -> set[int]:
        """The keys to hold for ``target``; ``answer``: at least one (a help request waits for
        a key, so the dimension farthest from rest gets its key even inside the dead band)."""
        space: Any = kb.action_space
        rest = kb._rest if kb._rest is not None else np.zeros(target.shape)
        half = (np.asarray(space.high, dtype=np.float64) - np.asarray(space.low, dtype=np.float64)) / 2.0
        delta = (target - rest) / np.where(half > 0, half, 1.0)
        want: set[int] = set()
        dims = [i for i in range(target.shape[0]) if abs(delta[i]) > 0.2]
        if answer and not dims:
            dims = [int(np.argmax(np.abs(delta)))]
        for i in dims:
            keys = [c for c, vec in kb.keymap.codes.items() if not np.isnan(vec[i])]
            same = [c for c in keys if np.sign(kb.keymap.codes[c][i] - rest[i]) == np.sign(delta[i])]
            if same or delta[i] == 0:
                want.add((same or keys)[0])
        return want
