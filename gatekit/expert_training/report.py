"""What a finished training run reports: the saved expert evaluated on the test split, and
``results.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gatekit.config import Component
from gatekit.expert_training.recipe import ExpertRecipe


def write_results(recipe: ExpertRecipe, out: Path, results: dict[str, Any], *, progress: bool) -> dict[str, Any]:
    """Add the test-split evaluation (``test``, unless ``eval_episodes`` is 0) to the training
    figures ``results`` and write them to ``out/results.json``; return them."""
    if recipe.eval_episodes > 0:
        results["test"] = evaluate_expert(recipe, Path(results["expert"]), progress=progress)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def evaluate_expert(recipe: ExpertRecipe, zip_path: Path, *, progress: bool = True) -> dict[str, dict[str, float]]:
    """The saved expert (deterministic) on the test split: ``{metric: {mean, std, ci95, n}}``."""
    from rich.progress import Progress

    from gatekit.evaluation import evaluate, summarize
    from gatekit.progress import console

    expert = Component(id="sb3", kwargs={"path": str(zip_path), "deterministic": True})
    with Progress(console=console, transient=True, disable=not progress) as bar:
        task = bar.add_task("evaluating", total=recipe.eval_episodes)
        episodes = evaluate(recipe.env, None, recipe.eval_episodes, expert_comp=expert,
                            on_episode=lambda _: bar.advance(task))
    return {k: s.as_dict() for k, s in summarize(episodes).items()}


__all__ = ["evaluate_expert", "write_results"]
