"""When a learner or a learned gate trains: every K new expert labels, or every N env steps.

Both the learner and the criterion of a run own one of these (or none); the run loop asks each
separately (``wants_update``), so a gate keeps learning whatever learner it is paired with.
:class:`EveryKLabels` is AIM's K; :class:`EveryNSteps` is an iteration of a fixed number of env
steps (Thrifty-DAgger's release retrains once per such iteration).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatekit.types import Labels
from gatekit.validate import one_of

if TYPE_CHECKING:
    from gatekit.data import RecordStore


class EveryKLabels:
    """Due once every ``k`` new expert labels of kind ``labels`` in the record store.

    ``labels="intervened"`` counts the steps the expert acted on (its take-overs);
    ``"queried"`` counts every step the expert labelled (DAgger, Ensemble-DAgger query it on
    every step).

    Example:
        >>> s = EveryKLabels(k=25)
        >>> s.due(24), s.due(25)
        (False, True)
        >>> s.mark(25); s.due(49), s.due(50)
        (False, True)
    """

    def __init__(self, *, k: int, labels: Labels = "intervened") -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"update_every must be an integer >= 1, got {k!r}")
        self.k = k
        self.labels: Labels = one_of("labels", labels, ("intervened", "queried"))
        self.last = 0

    def due(self, n_labels: int) -> bool:
        """Whether ``n_labels`` (the current count) is ``k`` or more past the last mark."""
        return n_labels - self.last >= self.k

    def mark(self, n_labels: int) -> None:
        """An update ran with ``n_labels`` labels in the store."""
        self.last = n_labels

    def due_in(self, store: RecordStore) -> bool:
        """:meth:`due` on the store's count of this schedule's labels."""
        return self.due(store.count(self.labels))

    def mark_in(self, store: RecordStore) -> None:
        """:meth:`mark` with the store's count of this schedule's labels."""
        self.mark(store.count(self.labels))


class EveryNSteps:
    """Due once every ``n`` new env steps in the record store, however many the expert labelled.

    Same interface as :class:`EveryKLabels` (``last`` is the step count at the last update).

    Example:
        >>> s = EveryNSteps(n=2000)
        >>> s.mark(200); s.due(2199), s.due(2200)
        (False, True)
    """

    def __init__(self, *, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"iteration_steps must be an integer >= 1, got {n!r}")
        self.n = n
        self.last = 0

    def due(self, n_steps: int) -> bool:
        """Whether ``n_steps`` (the current count) is ``n`` or more past the last mark."""
        return n_steps - self.last >= self.n

    def mark(self, n_steps: int) -> None:
        """An update ran with ``n_steps`` steps in the store."""
        self.last = n_steps

    def due_in(self, store: RecordStore) -> bool:
        """:meth:`due` on the store's step count."""
        return self.due(len(store))

    def mark_in(self, store: RecordStore) -> None:
        """:meth:`mark` with the store's step count."""
        self.mark(len(store))
