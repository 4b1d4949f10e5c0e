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


class _Every:
    """Due once every ``period`` more of what :meth:`count` counts in the record store;
    ``last`` is the count at the last update."""

    def __init__(self, period: int, name: str) -> None:
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {period!r}")
        self.period = period
        self.last = 0

    def count(self, store: RecordStore) -> int:
        raise NotImplementedError

    def due(self, count: int) -> bool:
        """Whether ``count`` (the current count) is ``period`` or more past the last mark."""
        return count - self.last >= self.period

    def mark(self, count: int) -> None:
        """An update ran with ``count`` in the store."""
        self.last = count

    def due_in(self, store: RecordStore) -> bool:
        """:meth:`due` on the store's count."""
        return self.due(self.count(store))

    def mark_in(self, store: RecordStore) -> None:
        """:meth:`mark` with the store's count."""
        self.mark(self.count(store))


class EveryKLabels(_Every):
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
        super().__init__(k, "update_every")
        self.k = k
        self.labels: Labels = one_of("labels", labels, ("intervened", "queried"))

    def count(self, store: RecordStore) -> int:
        """The store's count of this schedule's labels."""
        return store.count(self.labels)


class EveryNSteps(_Every):
    """Due once every ``n`` new env steps in the record store, however many the expert labelled.

    Example:
        >>> s = EveryNSteps(n=2000)
        >>> s.mark(200); s.due(2199), s.due(2200)
        (False, True)
    """

    def __init__(self, *, n: int) -> None:
        super().__init__(n, "iteration_steps")
        self.n = n

    def count(self, store: RecordStore) -> int:
        """The store's step count."""
        return len(store)
