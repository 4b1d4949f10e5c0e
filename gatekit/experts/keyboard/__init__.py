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

The package, one concern a module:

============ ===========================================================================
module       what
============ ===========================================================================
``keymap``   the default key maps, key names, :class:`KeyMap` (checked against the space)
``window``   pygame, the display, the env's picture, drawing; one window per process
``effort``   :class:`Effort`: what the person's time went into
``state``    the expert's attributes, declared once for the layers below
``control``  who holds control (help requests, take-overs, hand-backs), timed as effort
``input``    key events into actions, take-overs and hand-backs; the person's turn
``expert``   :class:`KeyboardExpert`: the Expert interface on top of those layers
``script``   :class:`ScriptedPerson`: another expert's actions typed as key events
============ ===========================================================================

Nothing here imports pygame at import time: :func:`import_pygame` does, when a keyboard expert
is built.
"""

from gatekit.experts.keyboard.effort import Effort
from gatekit.experts.keyboard.expert import KeyboardExpert
from gatekit.experts.keyboard.keymap import (
    CONTROL_KEY,
    METADRIVE_KEYS,
    MINIGRID_ACTIONS,
    MINIGRID_KEYS,
    KeyMap,
    key_code,
    key_names,
)
from gatekit.experts.keyboard.script import ScriptedPerson
from gatekit.experts.keyboard.window import frame_source, import_pygame, init_display

__all__ = ["CONTROL_KEY", "METADRIVE_KEYS", "MINIGRID_ACTIONS", "MINIGRID_KEYS", "Effort", "KeyMap",
           "KeyboardExpert", "ScriptedPerson", "frame_source", "import_pygame", "init_display",
           "key_code", "key_names"]
