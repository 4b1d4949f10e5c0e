"""Checkpoints: what a run needs to resume that is not in its record log.

The record log is the truth for every step; a checkpoint adds the learner's and the
criterion's state (networks, optimisers, thresholds, schedules), torch's RNG, and the run's own
bookkeeping (:class:`RunState`: evaluations so far and those still pending, the best success,
the next evaluation and checkpoint steps, wall time). It holds torch tensors and plain values
only, written atomically, sealed with a checksum and read back with
``torch.load(weights_only=True)`` (:mod:`gatekit.runs.integrity`).

The last two are kept: ``checkpoint.pt`` and ``checkpoint.prev.pt``. A checkpoint also records
the recipe's identity (seed, env, expert, criterion, learner) and the record log it was trained
on (step count and block digests, see :mod:`gatekit.runs.integrity`). Resuming
(:func:`resume_from`):

1. ``checkpoint.pt`` if it loads and passes its checksum, else ``checkpoint.prev.pt``, else the
   record log alone: fresh learner and criterion, which the next update trains on every record
   (the damaged files are renamed ``<name>.damaged-<time>``, never overwritten, and one
   :class:`~gatekit.errors.ResumeWarning` line says which was used);
2. the recipe must be the one the checkpoint was trained with (an edited seed or component is
   refused: it would be another run);
3. the record log must hold what the checkpoint was trained on (refused when it is missing,
   shorter, edited or replaced; records lost to damage the log reported are accepted and
   counted).

A refusal is one :class:`~gatekit.errors.RunDirError` line; nothing in the run folder changes.

When a person is the expert (the keyboard expert), the checkpoint also holds the person's effort
so far (``person``), which a resumed run adds its own to.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gatekit.errors import ResumeWarning, RunDirError
from gatekit.runs.integrity import DamagedFileError, LogDigest, load_sealed, seal, verify_log
from gatekit.runs.rundir import atomic_torch_save, fsync_dir

if TYPE_CHECKING:
    from gatekit.config import Recipe
    from gatekit.data import RecordStore

CHECKPOINT_FORMAT = 2
CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.prev.pt"
IDENTITY = ("seed", "env", "expert", "criterion", "learner")
"""Recipe fields a resumed run may not change (the budget, evaluation, logging and data
sections may change: e.g. a larger ``budget.total_steps`` trains on)."""


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
    pending_evals: list[dict[str, Any]] = field(default_factory=list)
    """Evaluations submitted but not finished: ``{"meta", "snapshot"}`` (the novice's state when
    it was submitted). A resumed run submits them again, so a kill loses none."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def recipe_identity(recipe: Recipe) -> dict[str, Any]:
    """The fields of :data:`IDENTITY`, as plain values."""
    d = recipe.to_dict()
    return {k: d[k] for k in IDENTITY}


def save_checkpoint(run_dir: Path, *, store: RecordStore, digest: LogDigest, recipe: Recipe, learner: Any,
                    criterion: Any, state: RunState, person: Any | None = None) -> None:
    """Write ``checkpoint.pt`` (sealed, atomic), keeping the one before as ``checkpoint.prev.pt``.
    ``person``: an expert that reports a person's effort (saved when ``effort()`` has
    ``state_dict()``), or None.

    The new file is complete and fsynced before either name changes; a crash between the two
    renames leaves ``checkpoint.prev.pt`` (the newest) and no ``checkpoint.pt``, which
    :func:`resume_from` handles.
    """
    log_steps = store.counts()["total_steps"]
    path, prev = run_dir / CHECKPOINT_NAME, run_dir / PREVIOUS_NAME
    body: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "has_previous": path.exists(),  # so that `gatekit check` knows checkpoint.prev.pt should be there
        "records": len(store),
        "log_steps": log_steps,
        "log_blocks": digest.blocks(store, log_steps),
        "recipe": recipe_identity(recipe),
        "learner": learner.state_dict(),
        "criterion": criterion.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "run": state.to_dict(),
    }
    state_dict = getattr(person.effort(), "state_dict", None) if person is not None else None
    if state_dict is not None:  # an effort without state_dict() is reported, not resumed
        body["person"] = state_dict()
    body = seal(body)
    tmp = run_dir / (CHECKPOINT_NAME + ".new")
    atomic_torch_save(body, tmp)
    if path.exists():
        os.replace(path, prev)
    os.replace(tmp, path)
    fsync_dir(run_dir)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, checksum verified.

    Raises:
        DamagedFileError: it does not load, fails its checksum, or has another format.
        RunDirError: it is missing or cannot be read.
    """
    fix = "resume falls back to the previous checkpoint or the record log"
    ckpt = load_sealed(path, what="checkpoint", fix=fix)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DamagedFileError(f"checkpoint '{path}' has format {ckpt.get('format')!r}, this gatekit reads "
                               f"{CHECKPOINT_FORMAT}; {fix}")
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


# -- resuming ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Resumed:
    """How a run was resumed.

    Attributes:
        state: the run state to continue with.
        source: ``checkpoint.pt``, ``checkpoint.prev.pt`` or ``records`` (the record log alone:
            fresh learner and criterion).
        note: the one line said on stderr about a fallback (None when there was none).
        lost: records the checkpoint was trained on that the log lost to damage it reported.
        set_aside: damaged checkpoints renamed out of the way.
    """

    state: RunState
    source: str
    note: str | None = None
    lost: int = 0
    set_aside: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """For ``results.json`` (``resumed``)."""
        out: dict[str, Any] = {"from": self.source}
        if self.note:
            out["note"] = self.note
        if self.lost:
            out["records_lost"] = self.lost
        if self.set_aside:
            out["set_aside"] = list(self.set_aside)
        return out


def check_log_present(run_dir: Path) -> None:
    """Refuse to resume a run whose record log is gone while a checkpoint or results say it
    recorded steps: an empty log under a trained checkpoint would silently start over."""
    if (run_dir / "records.gkr").exists():
        return
    trained = [n for n in (CHECKPOINT_NAME, PREVIOUS_NAME) if (run_dir / n).exists()]
    from gatekit.runs.results import RunResult

    try:
        steps = RunResult.read(run_dir).total_steps
    except RunDirError:
        steps = 0
    if trained or steps:
        what = f"{trained[0]} is there" if trained else f"results.json counts {steps} steps"
        raise RunDirError(f"record log '{run_dir / 'records.gkr'}' is missing but {what}: resuming would start an "
                          f"empty log under a trained run; restore records.gkr from a backup, or start a new run")


def _check_recipe(ckpt: dict[str, Any], recipe: Recipe, source: str, run_dir: Path) -> None:
    saved, now = ckpt.get("recipe", {}), recipe_identity(recipe)
    for key in IDENTITY:
        if key in saved and saved[key] != now[key]:
            raise RunDirError(f"'{run_dir / 'recipe.yaml'}' was edited since {source} was written: '{key}' was "
                              f"{_short(saved[key])}, is now {_short(now[key])}; put it back (a resumed run must "
                              f"be the same run), or start a new run")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _set_aside(path: Path) -> str:
    dest = path.with_name(f"{path.name}.damaged-{time.time_ns()}")
    os.replace(path, dest)
    fsync_dir(path.parent)
    return dest.name


def resume_from(run_dir: Path, *, store: RecordStore, recipe: Recipe, learner: Any, criterion: Any,
                person: Any | None = None) -> Resumed:
    """Choose and check the checkpoint to resume from (see the module docstring); load it into
    ``learner`` and ``criterion``.

    Raises:
        RunDirError: the recipe was edited, or the log does not hold what the checkpoint was
            trained on (one line; nothing in the folder was changed).
    """
    damaged: list[tuple[Path, DamagedFileError]] = []
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            ckpt = load_checkpoint(path)
        except DamagedFileError as exc:
            damaged.append((path, exc))
            continue
        _check_recipe(ckpt, recipe, name, run_dir)
        check = verify_log(store, log_steps=int(ckpt["log_steps"]), blocks=ckpt["log_blocks"], source=name)
        state = restore(ckpt, learner=learner, criterion=criterion, person=person)
        aside = tuple(_set_aside(p) for p, _ in damaged)
        note = None
        if damaged or name != CHECKPOINT_NAME:
            why = f"{damaged[0][1]}" if damaged else f"{CHECKPOINT_NAME} is missing"
            moved = f" (set aside as {', '.join(aside)})" if aside else ""
            note = f"{why}{moved}; resumed from {name} (step {ckpt['log_steps']})"
        if check.lost:
            lost = (f"{check.lost} record{'s' * (check.lost != 1)} {name} was trained on "
                    f"{'were' if check.lost != 1 else 'was'} lost to the damage reported above; resumed with the "
                    f"{len(store)} intact records")
            note = f"{note}; {lost}" if note else lost
        resumed = Resumed(state=state, source=name, note=note, lost=check.lost, set_aside=aside)
        break
    else:
        aside = tuple(_set_aside(p) for p, _ in damaged)
        note = None
        if damaged:
            names = " and ".join(p.name for p, _ in damaged)
            note = (f"{damaged[0][1]}; {names} set aside ({', '.join(aside)}): rebuilt the learner and the criterion "
                    f"from the {len(store)} records of the log (the next update trains on all of them)")
        resumed = Resumed(state=RunState(), source="records", note=note, set_aside=aside)
    if resumed.note:
        # warn_explicit with no source line: one line on stderr, through the warning filters
        warnings.warn_explicit(resumed.note, ResumeWarning, filename="gatekit", lineno=0,
                               module="gatekit.runs.checkpoint")
    return resumed
