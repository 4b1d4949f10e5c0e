"""The keyboard expert's window: pygame, the display, the env's picture, and drawing.

The window shows the env (the full grid for MiniGrid, MetaDrive's top-down 2D view drawn with
pygame, or ``env.render()`` of an ``rgb_array`` env), framed by a border whose colour says who
holds control, a banner that says what the person may do, and a footer with the keys and the
person's effort so far. pygame has one display per process, so one keyboard window may be open
at a time.
"""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError, GatekitError
from gatekit.experts.keyboard.keymap import MINIGRID_ACTIONS
from gatekit.experts.keyboard.state import KeyboardState

_HEADLESS_DRIVERS = ("dummy", "offscreen")
_BORDER, _BANNER, _FOOTER = 10, 40, 44
_COLORS = {"idle": (120, 120, 120), "watch": (50, 110, 220), "asked": (245, 130, 0), "control": (30, 165, 75)}

# The open window of this process: pygame has one display per process.
_open: weakref.ref[KeyboardWindow] | None = None


def check_no_window_open() -> None:
    """Raise if a keyboard window is open in this process already."""
    if _open is not None and _open() is not None:
        raise GatekitError("expert keyboard: a keyboard window is already open in this process; close() "
                           "the first keyboard expert")


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


def _fit(pg: Any, surface: Any, width: int) -> Any:
    if surface.get_width() <= width:
        return surface
    return pg.transform.smoothscale(surface, (width, max(1, round(surface.get_height() * width / surface.get_width()))))


class KeyboardWindow(KeyboardState):
    """The window layer of the keyboard expert: drawing, the help beep, screenshots, closing."""

    def _hold_window(self) -> None:
        """Mark this expert's window as the open one of the process."""
        global _open
        _open = weakref.ref(self)

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
