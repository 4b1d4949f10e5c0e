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


def nearest(name: str, choices: Iterable[str]) -> str:
    """Return a `did you mean 'x'?` hint for ``name`` among ``choices`` (or a list of them)."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f"valid: {shown}" if options else "nothing is valid here"
