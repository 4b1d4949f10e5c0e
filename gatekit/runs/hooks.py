"""What happens between steps on a cadence: evaluations, checkpoints, progress.

The loop (:mod:`gatekit.runs.loop`) calls :meth:`Hook.after_step` of each of its hooks after
every step, in order; a hook decides itself whether it is due. Adding a kind of evaluation, a
logger or early stopping is a new hook, not a new branch in the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatekit.runs.loop import Run

PROGRESS_EVERY = 25
"""Steps between progress updates (and polls of the evaluation worker)."""


class Hook:
    """Something the loop does after steps; :meth:`start` once before the first step."""

    def start(self, run: Run) -> None:
        """Before the first step (of this session: also after a resume)."""

    def after_step(self, run: Run) -> None:
        """After every step."""


class EvaluationHook(Hook):
    """A periodic evaluation of the novice on ``episodes`` test episodes, every ``every`` env
    steps and/or each time ``every_expert`` more expert-involved steps were spent (0: off).
    An evaluation due on both cadences at once runs once."""

    def __init__(self, *, every: int, episodes: int, every_expert: int = 0) -> None:
        self.every = every
        self.every_expert = every_expert
        self.episodes = episodes

    def start(self, run: Run) -> None:
        if run.state.next_eval == 0:
            run.state.next_eval = self.every or run.recipe.budget.total_steps + 1
        if run.state.next_expert_eval == 0 and self.every_expert:
            run.state.next_expert_eval = self.every_expert

    def after_step(self, run: Run) -> None:
        steps, spent = run.totals.steps, run.totals.expert_steps
        due = False
        if steps >= run.state.next_eval:
            run.state.next_eval += self.every
            due = True
        if self.every_expert and spent >= run.state.next_expert_eval:
            run.state.next_expert_eval = (spent // self.every_expert + 1) * self.every_expert
            due = True
        if due and not (run.budget_spent() and run.recipe.eval.final_episodes):  # the final one is due now
            run.evaluator.submit(f"step-{steps}", self.episodes, run.totals, learner=run.learner)


class CheckpointHook(Hook):
    """A checkpoint (and a flush of the logs) every ``every`` steps."""

    def __init__(self, *, every: int) -> None:
        self.every = every

    def start(self, run: Run) -> None:
        if run.state.next_checkpoint == 0:
            run.state.next_checkpoint = self.every

    def after_step(self, run: Run) -> None:
        if run.totals.steps >= run.state.next_checkpoint:
            run.state.next_checkpoint += self.every
            run.checkpoint()
            run.logs.flush()


class ProgressHook(Hook):
    """Every ``every`` steps: collect finished evaluations, update the progress bar, and call
    ``on_progress`` with the live counters."""

    def __init__(self, bar: Any, on_progress: Callable[[dict[str, Any]], None] | None, *,
                 every: int = PROGRESS_EVERY) -> None:
        self.bar = bar
        self.on_progress = on_progress
        self.every = every
        self.next = every

    def start(self, run: Run) -> None:
        self.next = (run.totals.steps // self.every + 1) * self.every

    def live(self, run: Run) -> dict[str, Any]:
        success, at = run.evaluator.last_eval()
        return {**run.totals.as_dict(), "last_success": success, "last_eval_step": at}

    def after_step(self, run: Run) -> None:
        if run.totals.steps >= self.next:  # every `every` steps (a batch of envs may step past it)
            self.next = (run.totals.steps // self.every + 1) * self.every
            run.evaluator.collect(block=False)
            live = self.live(run)
            self.bar.update(run.totals.steps, live)
            if self.on_progress is not None:
                self.on_progress(live)
