"""Checkpoints: what a run needs to resume that is not in its record log.

The record log is the truth for every step; a checkpoint adds the learner's and the
criterion's state (networks, optimisers, thresholds, schedules), torch's RNG, and the run's own
bookkeeping (:class:`RunState`: evaluations so far, the best success, the next evaluation and
checkpoint steps, wall time), and, when a person is the expert (the keyboard expert), the
person's effort so far (``person``), which a resumed run adds its own to. It holds torch tensors
and plain values only, written atomically and read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from gatekit.errors import RunDirError
from gatekit.runs.rundir import atomic_torch_save

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class RunState:
    """The run's own bookkeeping, restored on resume."""

    evals: list[dict[str, Any]] = field(default_factory=list)
    """Every evaluation so far (see :class:`gatekit.runs.evaluator.Evaluator`)."""
    best_success: float = -math.inf
    """The best periodic test success so far (``novice_best.pt`` holds that novice)."""
    wall_seconds: float = 0.0
    """Wall time of the earlier sessions of this run (before the last resume)."""
    next_eval: int = 0
    """The step of the next periodic evaluation (0: not scheduled yet)."""
    next_checkpoint: int = 0
    """The step of the next checkpoint (0: not scheduled yet)."""
    next_expert_eval: int = 0
    """The expert-involved step count of the next evaluation on that cadence (0: not scheduled)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def save_checkpoint(path: Path, *, records: int, learner: Any, criterion: Any, state: RunState,
                    person: Any | None = None) -> None:
    """Write the checkpoint of a run whose log holds ``records`` records; ``person``: an expert
    that reports a person's effort (saved when ``effort()`` has ``state_dict()``), or None."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "records": int(records),
        "learner": learner.state_dict(),
        "criterion": criterion.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "run": state.to_dict(),
    }
    state_dict = getattr(person.effort(), "state_dict", None) if person is not None else None
    if state_dict is not None:  # an effort without state_dict() is reported, not resumed
        ckpt["person"] = state_dict()
    atomic_torch_save(ckpt, path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None when there is none).

    Raises:
        RunDirError: the file cannot be read, or was written by another checkpoint format.
    """
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, weights_only=True)
    except Exception as exc:
        raise RunDirError(f"checkpoint '{path}' is unreadable ({type(exc).__name__}); delete it to resume from the records alone") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise RunDirError(f"checkpoint '{path}' has format {found}, expected {CHECKPOINT_FORMAT}")
    return ckpt


def restore(ckpt: dict[str, Any], *, learner: Any, criterion: Any, person: Any | None = None) -> RunState:
    """Load a checkpoint into the learner, the criterion and torch's RNG, and the effort of the
    earlier sessions into ``person`` (an expert with ``load_effort``, or None); return its run
    state."""
    learner.load_state_dict(ckpt["learner"])
    criterion.load_state_dict(ckpt["criterion"])
    torch.set_rng_state(ckpt["torch_rng"])
    load_effort = getattr(person, "load_effort", None)
    if "person" in ckpt and load_effort is not None:
        load_effort(ckpt["person"])
    return RunState.from_dict(ckpt["run"])
