"""Errors gatekit raises on purpose.

Every error here is meant for the person running gatekit: its message is one line that names
the thing that is wrong (a recipe field, a registry name, a space) and says how to fix it. The
CLI prints that line and exits with code 2; library users can catch :class:`GatekitError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GatekitError(Exception):
    """Base class of the errors gatekit reports to its user as one clean line."""


class ConfigError(GatekitError, ValueError):
    """A recipe, an override or a component's arguments are invalid."""


class SpaceMismatchError(GatekitError, ValueError):
    """Observation or action spaces of env, expert and novice do not agree."""


class ExpertError(GatekitError, RuntimeError):
    """The expert raised or returned an unusable action; the run stopped with its data saved."""


class RunDirError(GatekitError, OSError):
    """The output folder is missing, unwritable, full, or not a gatekit run."""


class EvaluationError(GatekitError, RuntimeError):
    """An evaluation failed (its env or policy raised, or its worker process died); the run
    stopped with its data saved and re-runs the evaluation on resume."""


class RunFailed(GatekitError, RuntimeError):
    """A component (env, expert, criterion, learner, a plugin) raised during a run. The message
    names the component, its exception and the step; the run folder holds a checkpoint at the
    failure and ``results.json`` with status ``failed``. The original exception is the
    ``__cause__`` (``gatekit --traceback`` prints it)."""


class ResumeWarning(UserWarning):
    """Resuming took a fallback: a damaged checkpoint was set aside and the previous one (or
    the record log alone) was used. Shown as one line on stderr."""


class PersonLeft(GatekitError):
    """The person acting as the expert left (closed its window): the run stops as if
    interrupted, with every label recorded so far kept; ``--resume`` continues it."""


def nearest(name: str, choices: Iterable[str]) -> str:
    """Return a `did you mean 'x'?` hint for ``name`` among ``choices`` (or a list of them)."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f"valid: {shown}" if options else "nothing is valid here"


class RecipeWarning(UserWarning):
    """A recipe or override that works but may not do what was meant (the CLI prints it as one
    ``gatekit: warning:`` line)."""


class MissingExtraError(ConfigError, ImportError):
    """A component needs an optional package that is not installed."""


# The optional packages a component may need, and what installs each one. imitation's extra pins
# gymnasium 0.29 and SB3 2.2 (imitation 1.0 has not moved on): it wants its own environment.
EXTRAS: dict[str, str] = {
    "imitation": "pip install 'gatekit[imitation]' (it pins gymnasium 0.29 and stable-baselines3 2.2: "
                 "use a separate virtual environment)",
    "stable_baselines3": "pip install 'gatekit[sb3]'",
    "metadrive": "pip install 'gatekit[metadrive]'",
    "minigrid": "pip install 'gatekit[minigrid]'",
    "tensorboard": "pip install 'gatekit[logging]'",
    "wandb": "pip install 'gatekit[wandb]'",
    "minari": "pip install 'gatekit[minari]'",
    "h5py": "pip install 'gatekit[minari]'",
}


def missing_extra(what: str, exc: ModuleNotFoundError) -> MissingExtraError | None:
    """A one-line error for ``what`` (e.g. ``learner 'bc'``) needing the optional package that
    ``exc`` could not import, naming the command that installs it; None when ``exc`` is about a
    module that no extra provides (a genuine bug or a plugin's own dependency)."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    return MissingExtraError(f"{what} needs the '{top}' package, which is not installed; {EXTRAS[top]}")
