"""The keyboard expert's state, declared once for the layers that share it.

:class:`~gatekit.experts.keyboard.expert.KeyboardExpert` is built in layers, each a module of
its own: the window (:mod:`~gatekit.experts.keyboard.window`), who holds control and the
person's effort (:mod:`~gatekit.experts.keyboard.control`), the person's input
(:mod:`~gatekit.experts.keyboard.input`), and the expert interface on top
(:mod:`~gatekit.experts.keyboard.expert`). Each layer reads state that another sets; this class
names it all (the expert's constructor assigns it), so that every layer is type-checked.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gatekit.experts.base import Expert

if TYPE_CHECKING:
    from gatekit.experts.keyboard.effort import Effort
    from gatekit.experts.keyboard.expert import KeyboardExpert
    from gatekit.experts.keyboard.keymap import KeyMap


class KeyboardState(Expert):
    """The attributes of a keyboard expert (declarations only; see the layers for their use)."""

    # settings
    kind: str                            # what the window shows: minigrid | metadrive | rgb_array
    keymap: KeyMap
    fps: float
    view_size: int
    sound: bool
    rise_seconds: float
    release_seconds: float
    clock: Callable[[], float]
    driver: Callable[[KeyboardExpert, float], None] | None
    _pg: Any                             # the pygame module
    _frame: Callable[[], np.ndarray]     # the env's picture
    _rest: np.ndarray | None             # continuous actions: the value with no key held
    _sleep: Callable[[float], None]
    _closed: bool
    # who holds control, and what the person is doing
    status: str                          # idle | watch (human-gated) | asked (help request) | control
    waiting: bool                        # the window waits for the person's input (drivers read it)
    steps: int                           # steps seen (claim_control calls)
    last_obs: Any
    _in_control: bool
    _asked_at: float | None
    _pending: Any                        # the person's action given during claim_control
    _inputs: collections.deque[tuple[str, Any, float]]
    _held: dict[int, None]               # held keys, in press order
    _pressed: bool                       # a driving key went down since the help request
    _value: np.ndarray | None            # continuous actions: the action the held keys moved to
    _last_update: float | None
    _next_frame: float | None
    # effort
    _effort: Effort
    _before: Effort                      # earlier sessions of a resumed run
    _mark: float | None
    _session_start: float | None
    # window
    _screen: Any
    _picture: Any
    _dirty: bool
    _last_draw: float
    _beep: Any
    _font: Any
    _small: Any
