"""InterventionWrapper and its vectorised twin (the twin imports SB3 lazily)."""

from typing import Any

from gatekit.wrappers.intervention import INFO_KEYS, InterventionWrapper, Totals

__all__ = ["INFO_KEYS", "InterventionVecWrapper", "InterventionWrapper", "Totals"]


def __getattr__(name: str) -> Any:
    if name == "InterventionVecWrapper":
        from gatekit.wrappers.vec import InterventionVecWrapper

        return InterventionVecWrapper
    raise AttributeError(name)
