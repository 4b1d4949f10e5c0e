"""Runs: the training loop and the parts around it.

================= ==================================================================
module            what
================= ==================================================================
``loop``          :class:`~gatekit.runs.loop.Run`, :func:`~gatekit.runs.loop.train`,
                  :func:`~gatekit.runs.loop.validate`: act, step, observe, update, hooks
``hooks``         evaluation, checkpoint and progress cadences
``evaluator``     periodic, final and expert-reference evaluations; ``novice_best.pt``
``checkpoint``    :class:`~gatekit.runs.checkpoint.RunState`, saving and restoring
``results``       :class:`~gatekit.runs.results.RunResult`: ``results.json``, typed
``logs``          ``progress.csv``, ``eval.csv``, TensorBoard
``rundir``        run folder names, checks and atomic writes
``evaluate_saved`` ``gatekit eval``: a saved novice or an expert on the test split
================= ==================================================================
"""

from gatekit.runs.loop import Run, train, validate
from gatekit.runs.results import RunResult

__all__ = ["Run", "RunResult", "train", "validate"]
