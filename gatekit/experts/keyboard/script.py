"""A scripted person: another expert's actions typed into the keyboard window as key events.

For tests, demos and trying the window without a person (``script: minigrid-planner``). It
runs in the same process, called by the window's event loop as its driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from gatekit.errors import ConfigError
from gatekit.experts.base import Expert

if TYPE_CHECKING:
    from gatekit.experts.keyboard.expert import KeyboardExpert


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

    def _tap(self, kb: KeyboardExpert, code: int) -> None:
        """Press and release one key."""
        self._post(kb, kb._pg.KEYDOWN, code)
        self._post(kb, kb._pg.KEYUP, code)

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
        if kb.status == "control" and self.hand_back_after is not None and self._acted >= self.hand_back_after:
            self._acted = 0
            self._tap(kb, kb.keymap.control)
            return
        if kb.status == "watch":
            return  # it only answers; taking over unasked is a real person's call
        action = self.expert.act(kb.last_obs)
        self._acted += 1
        if kb.keymap.discrete:
            self._tap(kb, kb.keymap.keys_for(int(np.asarray(action).reshape(-1)[0]))[0])
        else:
            self._hold(kb, np.asarray(action, dtype=np.float64).reshape(-1))

    def _hold(self, kb: KeyboardExpert, action: np.ndarray) -> None:
        """Continuous actions: hold the keys that drive toward ``action``, release the others."""
        pg = kb._pg
        want = self._keys_for(kb, action, answer=kb.asked)
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
