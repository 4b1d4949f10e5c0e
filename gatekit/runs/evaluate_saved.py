"""``gatekit eval``: evaluate a run's saved novice, or an expert, on a recipe's test env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gatekit.arguments import build
from gatekit.config import Recipe, load_recipe
from gatekit.errors import RunDirError
from gatekit.evaluation import evaluate, summarize
from gatekit.learners import LEARNERS
from gatekit.runs.integrity import load_sealed


def evaluate_target(target: Path, *, episodes: int | None, use_expert: bool, checkpoint: str = "final",
                    overrides: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """Return ``{metric: {mean, std, ci95, n}}`` for the novice of run folder ``target`` (or
    for the expert of recipe/run ``target`` with ``use_expert``)."""
    target = Path(target)
    is_run = target.is_dir()
    recipe_path = target / "recipe.yaml" if is_run else target
    if is_run and not recipe_path.is_file():
        raise RunDirError(f"'{target}' is not a gatekit run folder (no recipe.yaml)")
    recipe = load_recipe(recipe_path, list(overrides))
    n = episodes if episodes is not None else (recipe.eval.final_episodes or recipe.eval.episodes)
    if n < 1:
        raise RunDirError(f"--episodes must be >= 1, got {n}")
    if not use_expert and not is_run:
        raise RunDirError(f"'{target}' is a recipe, which has no trained novice; pass a run folder, or --expert")
    torch.set_num_threads(1)
    from gatekit.progress import EpisodeProgress

    policy = None if use_expert else _saved_novice(target, recipe, checkpoint)  # a bad file fails before any output
    what = f"evaluating the expert '{recipe.expert.id}'" if use_expert else f"evaluating the novice of {target}"
    with EpisodeProgress(total=n, description=what) as bar:
        if use_expert:
            episodes_out = evaluate(recipe.env, None, n, expert_comp=recipe.expert, on_episode=bar.tick)
        else:
            episodes_out = evaluate(recipe.env, policy, n, on_episode=bar.tick)
    return {k: s.as_dict() for k, s in summarize(episodes_out).items()}


def _saved_novice(target: Path, recipe: Recipe, checkpoint: str) -> Any:
    """The policy of a run folder's ``novice_<checkpoint>.pt`` (checksum verified)."""
    state_path = target / f"novice_{checkpoint}.pt"
    if not state_path.is_file():
        raise RunDirError(f"'{state_path}' does not exist (the run did not finish or never evaluated); try --checkpoint "
                          f"final, or finish it with gatekit train --resume {target}")
    state = load_sealed(state_path, what="saved novice", require_seal=False,
                        fix=f"evaluate the other one (--checkpoint {'best' if checkpoint == 'final' else 'final'}), or "
                            f"run `gatekit check {target}`")
    from gatekit.envs import ENVS

    probe = build(ENVS, recipe.env, "env", split="test", seed=0)
    spaces = (probe.observation_space, probe.action_space)
    probe.close()
    learner = build(LEARNERS, recipe.learner, "learner", observation_space=spaces[0], action_space=spaces[1],
                    seed=recipe.seed)
    try:
        learner.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        text = str(exc).splitlines()[0][:150] if str(exc) else ""
        raise RunDirError(f"saved novice '{state_path}' does not fit the recipe's learner '{recipe.learner.id}' "
                          f"({type(exc).__name__}: {text}); was recipe.yaml edited?") from None
    return learner.policy()
