"""Runs: the training loop and the parts around it.

================= ==================================================================
module            what
================= ==================================================================
``loop``          :class:`~gatekit.runs.loop.Run`, :func:`~gatekit.runs.loop.train`: act,
                  step, observe, update, hooks
``dry_run``       :func:`~gatekit.runs.dry_run.validate`: a recipe checked without training
``hooks``         evaluation, checkpoint and progress cadences
``evaluator``     periodic, final and expert-reference evaluations; ``novice_best.pt``
``checkpoint``    :class:`~gatekit.runs.checkpoint.RunState`, saving (two kept) and which
                  checkpoint a resume may use (:func:`~gatekit.runs.checkpoint.resume_from`)
``integrity``     checksums of ``.pt`` files; the digests of the log a checkpoint knows
``failures``      how a run ends: status, the one-line error, what is saved, exit codes
``results``       :class:`~gatekit.runs.results.RunResult`: ``results.json``, typed, and
                  :func:`~gatekit.runs.results.run_result` (a run's, as it stands)
``logs``          ``progress.csv``, ``eval.csv``, TensorBoard
``rundir``        run folder names, checks, atomic writes, the disk reserve
``evaluate_saved`` ``gatekit eval``: a saved novice or an expert on the test split
``envs``          the envs a run steps: one in process, or ``env.n_envs`` (env 0 here, the rest in workers)
``env_workers``   the processes behind ``env.n_envs``: each env with its expert, answering by name
``components``    a recipe's component arguments checked without building the components
================= ==================================================================
"""

from typing import Any

__all__ = ["Run", "RunResult", "train", "validate"]


def __getattr__(name: str) -> Any:
    # Imported on first use: env and evaluation worker processes import modules of this package
    # (gatekit.runs.envs) and should not pay for torch and the learners they never use.
    if name in ("Run", "train"):
        from gatekit.runs import loop

        return getattr(loop, name)
    if name == "validate":
        from gatekit.runs.dry_run import validate

        return validate
    if name == "RunResult":
        from gatekit.runs.results import RunResult

        return RunResult
    raise AttributeError(f"module 'gatekit.runs' has no attribute {name!r}")
