"""DAgger's beta mixing: the expert's action is executed with probability beta.

The expert labels every step (DAgger queries it on every state the learner visits); beta
decays over *rounds*, and a round ends every ``update_every`` new expert labels (the gate's own
schedule; set it to the learner's round length, as ``imitation``'s ``DAggerTrainer`` retrains
at the end of each round). The schedules follow ``imitation``'s
``LinearBetaSchedule`` and ``ExponentialBetaSchedule``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from gatekit.criteria.base import Criterion
from gatekit.schedules import EveryKLabels
from gatekit.types import Decision, GateContext

if TYPE_CHECKING:
    from gatekit.data import RecordStore
    from gatekit.policies import NovicePredictor


def beta_for_round(round_: int, *, schedule: str, beta: float, rampdown_rounds: int, decay: float) -> float:
    """Beta after ``round_`` completed rounds.

    ``constant``: ``beta``; ``linear``: ``min(1, max(0, (R - round) / R))`` with
    ``R = rampdown_rounds``; ``exponential``: ``decay ** round``.

    Example:
        >>> [beta_for_round(r, schedule="linear", beta=1, rampdown_rounds=4, decay=0.5) for r in range(6)]
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    if schedule == "constant":
        return float(beta)
    if schedule == "linear":
        return float(min(1.0, max(0.0, (rampdown_rounds - round_) / rampdown_rounds)))
    if schedule == "exponential":
        return float(decay**round_)
    raise ValueError(f"schedule must be constant, linear or exponential, got {schedule!r}")


class DAggerCriterion(Criterion):
    """Execute the expert's action with probability beta (a fresh coin every step).

    Args:
        schedule: ``linear`` (imitation's default), ``exponential`` or ``constant``.
        beta: the constant beta (``schedule: constant``).
        rampdown_rounds: rounds over which linear beta falls from 1 to 0.
        decay: per-round factor of the exponential schedule.
        query_every_step: the expert labels every visited state (DAgger). False queries it
            only on the steps it acts.
        update_every: a round ends after this many new expert labels (every labelled step:
            each visited state with ``query_every_step``, else each step the expert acted).
    """

    name = "dagger"
    learns = True  # no networks, but its rounds advance on its own schedule

    def __init__(
        self,
        *,
        schedule: Literal["linear", "exponential", "constant"] = "linear",
        beta: float = 0.5,
        rampdown_rounds: int = 15,
        decay: float = 0.5,
        query_every_step: bool = True,
        update_every: int = 200,
    ) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if rampdown_rounds < 1:
            raise ValueError(f"rampdown_rounds must be >= 1, got {rampdown_rounds}")
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        beta_for_round(0, schedule=schedule, beta=beta, rampdown_rounds=rampdown_rounds, decay=decay)
        self.beta_schedule = schedule
        self.beta0 = float(beta)
        self.rampdown_rounds = int(rampdown_rounds)
        self.decay = float(decay)
        self.query_every_step = query_every_step
        self.human_gated = bool(query_every_step)
        self.schedule = EveryKLabels(k=update_every, labels="queried")
        self.round = 0

    @property
    def beta(self) -> float:
        return beta_for_round(self.round, schedule=self.beta_schedule, beta=self.beta0,
                              rampdown_rounds=self.rampdown_rounds, decay=self.decay)

    def takeover(self, ctx: GateContext) -> Decision:
        if self.query_every_step:
            _ = ctx.expert_action  # DAgger labels every visited state
        beta = self.beta
        return Decision(expert_acts=bool(self.np_random.random() < beta), score=beta)

    def wants_update(self, store: RecordStore) -> bool:
        return self.schedule.due_in(store)

    def update(self, store: RecordStore, novice: NovicePredictor | None) -> dict[str, float]:
        """A round ends: beta moves to the next round's value."""
        self.schedule.mark_in(store)
        self.round += 1
        return {"beta": self.beta}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "round": self.round, "schedule_last": self.schedule.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.round = int(state.get("round", 0))
        self.schedule.last = int(state.get("schedule_last", 0))
