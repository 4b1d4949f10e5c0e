"""The person's effort: what their time went into, for ``results.json`` and checkpoints.

The figures are counted by :class:`~gatekit.experts.keyboard.control.KeyboardControl` with a
monotonic clock; a resumed run adds its new effort to that of its earlier sessions
(:meth:`Effort.__add__`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Effort:
    """What the person's time went into (seconds from a monotonic clock).

    Attributes:
        control_seconds: the person held control (from a switch to the hand-back).
        watch_seconds: the person watched the novice drive (human-gated runs).
        session_seconds: from the window's first episode to now (learning included).
        help_requests: control passed to the person without them asking (a criterion's
            take-over, a warm-up episode, a criterion that reads the expert's action).
        takeovers: the person took control themselves (the control key).
        handbacks: the person handed control back themselves (the control key).
        latencies: seconds from each help request to the person's first key.
    """

    control_seconds: float = 0.0
    watch_seconds: float = 0.0
    session_seconds: float = 0.0
    help_requests: int = 0
    takeovers: int = 0
    handbacks: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def switches(self) -> int:
        """Times control passed to the person (help requests and own take-overs)."""
        return self.help_requests + self.takeovers

    def latency(self, q: float) -> float | None:
        """The ``q``-quantile of the response latencies (None before the first answer)."""
        return float(np.quantile(self.latencies, q)) if self.latencies else None

    def as_dict(self) -> dict[str, Any]:
        """The figures a run reports (plain values; None where there is no data yet)."""
        minutes = self.session_seconds / 60.0
        return {
            "control_seconds": self.control_seconds,
            "watch_seconds": self.watch_seconds,
            "session_seconds": self.session_seconds,
            "help_requests": self.help_requests,
            "takeovers": self.takeovers,
            "handbacks": self.handbacks,
            "latency_median": self.latency(0.5),
            "latency_p90": self.latency(0.9),
            "switches_per_minute": self.switches / minutes if minutes > 0 else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything, raw (for checkpoints: a resumed run adds its new effort to it)."""
        return asdict(self)

    def __add__(self, other: Effort) -> Effort:
        return Effort(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})
