"""``gatekit train --dry-run``: check that a recipe can run, without training or writing.

Every component is built as a run builds it (so a plugin's constructor runs, and the spaces of
env, expert and learner are checked against each other), with the records kept in memory; the
output folder is probed for writing. A person's window, if the expert is one, opens and closes.
"""

from __future__ import annotations

from pathlib import Path

from gatekit.config import Recipe
from gatekit.runs.loop import Run
from gatekit.runs.rundir import check_out_for_new_run


def validate(recipe: Recipe, *, out: Path | None = None) -> None:
    """Check that ``recipe`` can run, without training: every component builds, spaces of env,
    expert and learner agree, and the output folder (if given) is writable. Writes nothing."""
    if out is not None:
        check_out_for_new_run(Path(out))
    if recipe.log.wandb:
        import importlib.util

        from gatekit.errors import EXTRAS, MissingExtraError

        if importlib.util.find_spec("wandb") is None:
            raise MissingExtraError(f"log.wandb needs the 'wandb' package, which is not installed; {EXTRAS['wandb']}")
    run = Run(recipe, Path(out or "."))
    run.build(records=False)
    run.store.close()
    run.envs.close()


__all__ = ["validate"]
