"""Train an SB3 PPO expert on a registered env (``gatekit train-expert``).

An *expert recipe* is a small YAML file of its own, loaded as strictly as a run recipe (an
unknown key names the nearest valid one, a wrong type names the field)::

    name: ppo_expert_cartpole
    env: {id: cartpole}          # any registered env; built with split="train"
    algo: ppo                    # SB3 PPO (the only algorithm for now)
    ppo: {n_steps: 32, ...}      # keyword arguments of stable_baselines3.PPO, checked against it
    total_timesteps: 100000
    n_envs: 8                    # parallel env processes (default: os.cpu_count())
    seed: 0
    eval_episodes: 20            # held-out (test split) episodes of the final evaluation
    checkpoint_every_s: 600      # seconds between checkpoints (0: after every PPO update)

Training runs ``n_envs`` envs in worker processes (``SubprocVecEnv``; one process per env,
which MetaDrive's one-engine-per-process rule needs anyway), worker ``i`` built with
``split="train"`` and seed ``seed + i``. The output folder gets ``expert.zip`` (SB3's own
format, loadable with ``expert: {id: sb3, path: .../expert.zip}``), the resolved
``recipe.yaml`` and ``results.json``; the expert is then evaluated on the test split with
:func:`gatekit.evaluation.evaluate`.

Checkpoints and resuming. A MetaDrive expert trains for hours; a run killed on the way keeps
what it learned. Every ``checkpoint_every_s`` seconds, between a PPO update and the next
rollout, the run writes ``checkpoint/model.zip`` (SB3's zip: weights, optimizer state and the
step count, all consistent with each other) and ``checkpoint/state.json`` (training seconds,
the rolling success record, the resumes so far), each atomically (a kill leaves the previous
checkpoint or the new one). :func:`resume_expert` (``gatekit train-expert --resume DIR``)
loads the checkpoint and trains on to ``total_timesteps``. The steps of the rollout under way
when the run died are lost and re-collected; the env workers start fresh episodes (seeded
from the step count), so a resumed run is not bit-identical to an uninterrupted one. Ctrl-C (or
SIGTERM) stops at the next env step and checkpoints the last PPO update before it exits (130 /
143; a second Ctrl-C stops at once); the env workers ignore Ctrl-C and are closed by the run.

The package: :mod:`~gatekit.expert_training.recipe` (the recipe, loaded strictly),
:mod:`~gatekit.expert_training.training` (env workers, training, resuming),
:mod:`~gatekit.expert_training.checkpoints` (checkpoints and the progress bar),
:mod:`~gatekit.expert_training.report` (the test-split evaluation and ``results.json``).

Example:
    >>> from gatekit.expert_training import load_expert_recipe_dict
    >>> r = load_expert_recipe_dict({"name": "demo", "env": {"id": "cartpole"}, "total_timesteps": 5000})
    >>> r.algo, r.n_envs is None, r.eval_episodes
    ('ppo', True, 20)
    >>> load_expert_recipe_dict({"name": "demo", "env": "cartpole", "total_timestep": 5})
    Traceback (most recent call last):
    ...
    gatekit.errors.ConfigError: recipe: unknown key 'total_timestep'; did you mean 'total_timesteps'?
"""

from __future__ import annotations

from gatekit.errors import ConfigError

try:  # first: every module of the package needs SB3
    import stable_baselines3  # noqa: F401
except ImportError as _exc:  # an optional dependency: say how to get it, in one line
    raise ConfigError(f"train-expert: stable-baselines3 is not installed ({_exc.name}); pip install 'gatekit[imitation]'") from None

from gatekit.expert_training.checkpoints import CHECKPOINT_DIR, Checkpointer, ProgressCallback
from gatekit.expert_training.recipe import (
    RESUMABLE_FIELDS,
    ExpertRecipe,
    check_ppo_kwargs,
    load_expert_recipe,
    load_expert_recipe_dict,
    ppo_kwargs,
)
from gatekit.expert_training.report import evaluate_expert
from gatekit.expert_training.training import (
    EnvFactory,
    TrainingInterrupted,
    resume_expert,
    start_method,
    train_expert,
)

__all__ = ["CHECKPOINT_DIR", "RESUMABLE_FIELDS", "Checkpointer", "EnvFactory", "ExpertRecipe", "ProgressCallback",
           "TrainingInterrupted", "check_ppo_kwargs", "evaluate_expert", "load_expert_recipe", "load_expert_recipe_dict",
           "ppo_kwargs", "resume_expert", "start_method", "train_expert"]
