"""Records as ``imitation`` Transitions, for behaviour cloning with ``imitation`` (optional extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gatekit.data.store import RecordStore
from gatekit.errors import ConfigError

if TYPE_CHECKING:
    from imitation.data.types import Transitions


def _selection(mask: np.ndarray | None, n: int) -> Any:
    """Rows picked by ``mask``: a boolean array of length ``n``, row indices, or None (all)."""
    if mask is None:
        return slice(None)
    m = np.asarray(mask)
    if m.dtype == np.bool_:
        if m.shape != (n,):
            raise ValueError(f"mask must have shape ({n},) (one entry per step), got {m.shape}")
        return np.flatnonzero(m)
    if np.issubdtype(m.dtype, np.integer) and m.ndim == 1:
        if m.size and (m.min() < -n or m.max() >= n):
            raise ValueError(f"mask indices must lie in [0, {n}), got {m.min()}..{m.max()}")
        return m
    raise ValueError(f"mask must be a boolean array or row indices, got dtype {m.dtype} shape {m.shape}")


def to_transitions(store: RecordStore, mask: np.ndarray | None = None, *,
                   actions: Literal["expert", "executed"] = "expert") -> Transitions:
    """The selected steps as :class:`imitation.data.types.Transitions` (copies).

    Args:
        store: the records.
        mask: a boolean array of ``len(store)`` or an array of row indices; None selects all.
        actions: ``"expert"``: the expert's actions (every selected step must have been
            queried); ``"executed"``: the actions sent to the env.

    Returns:
        Transitions with ``dones = terminated | truncated`` and empty-dict ``infos``.

    Raises:
        ValueError: a bad mask or ``actions``, or ``"expert"`` with unqueried steps selected.
    """
    try:
        from imitation.data import types as itypes
    except ImportError:
        raise ConfigError("to_transitions needs the imitation package; pip install 'gatekit[imitation]'") from None
    sel = _selection(mask, len(store))

    def pick(name: str) -> np.ndarray:
        return np.array(store.column(name)[sel])  # a writable copy: imitation freezes its arrays

    if actions not in ("expert", "executed"):
        raise ValueError(f"actions must be 'expert' or 'executed', got {actions!r}")
    if actions == "expert":
        queried = store.column("expert_queried")[sel]
        missing = int(queried.size - np.count_nonzero(queried))
        if missing:
            raise ValueError(f"to_transitions: {missing} selected steps have no expert label (expert not queried); "
                             f"select with store.expert_queried or pass actions='executed'")
    acts = pick(f"{actions}_action")
    dones = pick("terminated") | pick("truncated")
    k = len(acts)
    infos = np.empty(k, dtype=object)
    for i in range(k):
        infos[i] = {}
    return itypes.Transitions(obs=pick("obs"), acts=acts, infos=infos, next_obs=pick("next_obs"), dones=dones)

