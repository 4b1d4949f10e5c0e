"""Save screenshots of the keyboard expert's window: asking for help, and the person in control.

For each env (MiniGrid MultiRoom, MetaDrive), the novice (played here by the env's scripted
expert, so that the scene is a sensible one) drives a few steps, then a gate hands control to
the person: the window is saved while it asks for help, then again after a few steps of the
person (a scripted one) in control. Everything goes through the real window and step flow
(``InterventionWrapper`` + ``KeyboardExpert``), headless (SDL's dummy video driver).

Example:
    .venv/bin/python bench/keyboard_screenshots.py --out docs/figures
    .venv/bin/python bench/keyboard_screenshots.py --out /tmp/shots --only minigrid
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # screenshots need no visible window

from gatekit.criteria.base import Criterion  # noqa: E402
from gatekit.experts.keyboard import KeyboardExpert, ScriptedPerson  # noqa: E402
from gatekit.types import Decision, GateContext  # noqa: E402
from gatekit.wrappers import InterventionWrapper  # noqa: E402


class HelpAt(Criterion):
    """A gate that asks for help on one episode step and never hands back (for the pictures)."""

    name = "help-at"

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def takeover(self, ctx: GateContext) -> Decision:
        return Decision(expert_acts=ctx.episode_step == self.step)

    def handback(self, ctx: GateContext) -> Decision:
        return Decision(expert_acts=True)


class Shooter:
    """Saves the window when it first asks for help and after ``control_turns`` turns in
    control, then lets the scripted person answer."""

    def __init__(self, person: ScriptedPerson, paths: dict[str, Path], control_turns: int) -> None:
        self.person, self.paths, self.control_turns = person, paths, control_turns
        self.turns = 0
        self.saved: list[Path] = []

    def bind(self, kb: KeyboardExpert) -> None:
        self.person.bind(kb)

    def reset(self, *, seed: int | None = None) -> None:
        self.person.reset(seed=seed)

    def __call__(self, kb: KeyboardExpert, now: float) -> None:
        if kb.waiting:
            shot = {"asked": "help", "control": "control"}.get(kb.status)
            due = shot == "help" or (shot == "control" and self.turns >= self.control_turns)
            if shot is not None and due and self.paths[shot] not in self.saved:
                kb.screenshot(str(self.paths[shot]))
                self.saved.append(self.paths[shot])
        self.person(kb, now)

    def turned(self) -> None:
        self.turns += 1


def shoot(name: str, env: Any, novice: Any, person: Any, *, seed: int, help_at: int, control_turns: int,
          out: Path) -> list[Path]:
    paths = {"help": out / f"keyboard_{name}_help.png", "control": out / f"keyboard_{name}_control.png"}
    shooter = Shooter(ScriptedPerson(expert=person, reaction_seconds=0.0, key_seconds=0.0), paths, control_turns)
    kb = KeyboardExpert(env=env, driver=shooter)
    try:
        w = InterventionWrapper(env, expert=kb, criterion=HelpAt(help_at))
        obs, _ = w.reset(seed=seed)
        for _ in range(help_at + control_turns + 2):
            obs, _, term, trunc, info = w.step(novice.act(obs))
            if info["gatekit"]["intervened"]:
                shooter.turned()
            if term or trunc or len(shooter.saved) == 2:
                break
    finally:
        kb.close()
    return shooter.saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="folder for the PNG files")
    parser.add_argument("--only", choices=("minigrid", "metadrive"), default=None, help="one env only")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    if args.only in (None, "minigrid"):
        from gatekit.envs.minigrid import make_multiroom_env
        from gatekit.experts.minigrid import MiniGridPlannerExpert

        env = make_multiroom_env(split="test")
        saved += shoot("minigrid", env, MiniGridPlannerExpert(env=env), MiniGridPlannerExpert(env=env),
                       seed=2, help_at=12, control_turns=3, out=args.out)
        env.close()
    if args.only in (None, "metadrive"):
        from gatekit.envs.metadrive import make_metadrive_env
        from gatekit.experts.metadrive import MetaDrivePPOExpert

        env = make_metadrive_env(split="test")
        try:
            novice = MetaDrivePPOExpert(env=env, deterministic=True)
            saved += shoot("metadrive", env, novice, MetaDrivePPOExpert(env=env, deterministic=True),
                           seed=0, help_at=60, control_turns=15, out=args.out)
        finally:
            env.close()
    for path in saved:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
