"""Training an expert: env worker processes, a new run (:func:`train_expert`) and a resumed
one (:func:`resume_expert`), both through :func:`_train`."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stable_baselines3 as _sb3
import yaml

from gatekit.arguments import build
from gatekit.config import Component
from gatekit.errors import ConfigError, GatekitError, RunDirError
from gatekit.expert_training.checkpoints import Checkpointer, ProgressCallback
from gatekit.expert_training.recipe import (
    RESUMABLE_FIELDS,
    ExpertRecipe,
    load_expert_recipe,
    ppo_kwargs,
)
from gatekit.expert_training.report import write_results
from gatekit.runs.stop import StopFlag


class TrainingInterrupted(GatekitError):
    """SIGINT / SIGTERM stopped the training; what was learned up to the last PPO update is in
    the run's checkpoint (``timesteps``: its step count; 0: no update yet, nothing saved)."""

    def __init__(self, out: Path, signum: int, timesteps: int) -> None:
        self.out, self.signal, self.timesteps = out, signal.Signals(signum), timesteps
        kept = (f"the checkpoint at {timesteps} steps is saved; continue with: gatekit train-expert --resume {out}"
                if timesteps else "no PPO update was made yet, so nothing was saved; start the run again")
        super().__init__(f"interrupted by {self.signal.name}; {kept}")


class EnvFactory:
    """Builds one training env in a worker process (a picklable ``SubprocVecEnv`` env_fn).

    Args:
        env: the recipe's env component.
        split: ``"train"`` or ``"test"``.
        seed: the factory's seed (and the worker's first reset seed, via PPO).
    """

    def __init__(self, env: Component, split: str, seed: int) -> None:
        self.env, self.split, self.seed = env, split, seed

    def __call__(self) -> Any:
        from stable_baselines3.common.monitor import Monitor

        from gatekit.envs import ENVS

        # Monitor records episode returns/lengths for SB3's episode statistics (the progress bar).
        return Monitor(build(ENVS, self.env, "env", split=self.split, seed=self.seed))


class _IgnoringCtrlC:
    """An env_fn whose worker process ignores SIGINT before it builds its env: a terminal's
    Ctrl-C reaches the whole process group, and the run, not its env workers, decides (it
    checkpoints, then closes them). Picklable, like the factory it wraps."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def __call__(self) -> Any:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return self.make()


def start_method() -> str:
    """``forkserver`` where available, else ``spawn``.

    Never ``fork``: the parent has torch's thread pools (and maybe a simulator) running, which
    a forked child inherits in a broken state. The forkserver preloads torch and SB3 once, so
    each worker starts in a fraction of a second instead of importing them again.
    """
    if "forkserver" in mp.get_all_start_methods():
        # Only takes effect if this process's forkserver has not started yet; harmless otherwise.
        mp.get_context("forkserver").set_forkserver_preload(
            ["__main__", "stable_baselines3.common.vec_env.subproc_vec_env", "gatekit.expert_training"])
        return "forkserver"
    return "spawn"


def _make_venv(recipe: ExpertRecipe, n_envs: int, seed: int) -> Any:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    fns: list[Callable[[], Any]] = [_IgnoringCtrlC(EnvFactory(recipe.env, "train", seed + i)) for i in range(n_envs)]
    try:
        return SubprocVecEnv(fns, start_method=start_method())
    except (EOFError, BrokenPipeError, ConnectionResetError):
        raise GatekitError("env: a training env worker process died while starting (its traceback is above); fix the env settings") from None


def train_expert(recipe: ExpertRecipe, *, out: Path, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the recipe's PPO expert, save it to ``out/expert.zip``, evaluate it on the test split.

    Writes a checkpoint every ``recipe.checkpoint_every_s`` seconds (see the module docstring),
    each reported to ``log`` in one line when given; :func:`resume_expert` continues a run that
    was killed.

    Returns:
        The figures also written to ``out/results.json``: ``timesteps``, ``n_envs``,
        ``train_seconds`` (all sessions of a resumed run), ``steps_per_second`` (the last
        session's), the rolling training ``train_return`` and ``train_success`` (last 100
        episodes), ``resumed_from`` (the step counts the run was resumed at) and ``test``
        (``{metric: {mean, std, ci95, n}}``, empty when ``eval_episodes`` is 0).

    Raises:
        RunDirError: ``out`` already holds an expert or a checkpoint, or cannot be written.
        ConfigError: PPO rejected its settings.
        GatekitError: an env worker process died.
        TrainingInterrupted: SIGINT / SIGTERM; the last PPO update is checkpointed first.
    """
    from gatekit.runs.rundir import check_run_dir

    out = Path(out)
    if (out / "expert.zip").exists():
        raise RunDirError(f"'{out}' already holds an expert.zip; pass another --out")
    if Checkpointer(out).exists():
        raise RunDirError(f"'{out}' holds the checkpoint of an unfinished run; continue it with --resume {out}, or pass another --out")
    check_run_dir(out)
    n_envs = recipe.n_envs or os.cpu_count() or 1
    recipe = dataclasses.replace(recipe, n_envs=n_envs)
    _write_recipe(out, recipe)
    return _train(recipe, out=out, progress=progress, checkpoint=None, log=log)


def resume_expert(out: Path, overrides: list[str] | tuple[str, ...] = (), *, progress: bool = True,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint, to its recipe's ``total_timesteps``
    (``log``: as for :func:`train_expert`).

    ``overrides`` (``a.b=value``) may change only :data:`RESUMABLE_FIELDS` (e.g. raise
    ``total_timesteps``); the run's ``recipe.yaml`` is updated to match.

    Raises:
        RunDirError: ``out`` holds no run, no checkpoint, or a finished run.
        ConfigError: an override changes a field a resumed run must keep.
    """
    out = Path(out)
    if not (out / "recipe.yaml").is_file():
        raise RunDirError(f"'{out}' holds no train-expert run (no recipe.yaml); pass the folder a run wrote")
    if (out / "expert.zip").exists():
        raise RunDirError(f"'{out}' holds a finished run (expert.zip); start a new run to train another expert")
    if not Checkpointer(out).exists():
        raise RunDirError(f"'{out}' has no checkpoint yet (the run died before its first one); start it again with --out")
    saved = load_expert_recipe(out / "recipe.yaml")
    recipe = load_expert_recipe(out / "recipe.yaml", overrides)
    for f in dataclasses.fields(ExpertRecipe):
        if f.name not in RESUMABLE_FIELDS and getattr(recipe, f.name) != getattr(saved, f.name):
            raise ConfigError(f"recipe: a resumed run keeps its recipe, '{f.name}' cannot change; "
                              f"only {', '.join(RESUMABLE_FIELDS)} can")
    recipe = dataclasses.replace(recipe, n_envs=recipe.n_envs or os.cpu_count() or 1)
    _write_recipe(out, recipe)
    return _train(recipe, out=out, progress=progress, checkpoint=Checkpointer(out), log=log)


def _write_recipe(out: Path, recipe: ExpertRecipe) -> None:
    from gatekit.runs.rundir import atomic_write_bytes

    atomic_write_bytes(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False).encode())


def _train(recipe: ExpertRecipe, *, out: Path, progress: bool, checkpoint: Checkpointer | None,
           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train from scratch (``checkpoint`` None) or from ``checkpoint``; then save and evaluate."""
    import torch

    n_envs = int(recipe.n_envs or 1)
    zip_path = out / "expert.zip"
    checkpointer = Checkpointer(out)
    state: dict[str, Any] = {}
    start_timesteps = 0
    if checkpoint is not None:
        state = checkpoint.load_state()
        try:
            # Read the step count alone first: the env workers are seeded from it.
            from stable_baselines3.common.save_util import load_from_zip_file

            data, _, _ = load_from_zip_file(checkpoint.model_path, device="cpu", load_data=True)
            start_timesteps = int((data or {}).get("num_timesteps", 0))
        except Exception as exc:  # a damaged zip: say which file, in one line
            raise RunDirError(f"'{checkpoint.model_path}' cannot be read as an SB3 model ({type(exc).__name__}: {exc}); "
                              "the run cannot be resumed from it") from None
        if start_timesteps >= recipe.total_timesteps:
            raise ConfigError(f"recipe: the checkpoint is at {start_timesteps} steps, total_timesteps is "
                              f"{recipe.total_timesteps}; raise it with --set total_timesteps=N")
    # A resumed run's workers start new episodes, not the first ones again.
    venv = _make_venv(recipe, n_envs, recipe.seed + start_timesteps)
    # The env workers occupy the cores; PPO's small MLP batches gain nothing from torch's
    # intra-op threads, which would only spin against the workers (measured: several times
    # slower on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if checkpoint is None:
            try:
                model = _sb3.PPO(env=venv, seed=recipe.seed, **ppo_kwargs(recipe))
            except (AssertionError, ValueError, TypeError) as exc:
                text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConfigError(f"recipe: ppo: PPO rejected the settings ({text})") from None
        else:
            # force_reset (SB3's default) drops the observation saved in the zip, so the fresh
            # workers are reset before the first step; SB3 then re-seeds everything from the
            # recipe's seed, which is moved on by the step count as for the workers above.
            model = _sb3.PPO.load(checkpoint.model_path, env=venv, device="cpu", force_reset=True)
            model.set_random_seed(recipe.seed + start_timesteps)
            state["resumes"] = [*state.get("resumes", []), start_timesteps]
        with StopFlag() as stop:  # Ctrl-C / SIGTERM: learn() stops at its next env step (a second one: at once)
            callback = ProgressCallback(total=recipe.total_timesteps, enabled=progress, checkpointer=checkpointer,
                                        checkpoint_every_s=recipe.checkpoint_every_s, description=recipe.name,
                                        state=state, stop=stop, log=log)
            try:
                model.learn(total_timesteps=recipe.total_timesteps - start_timesteps, callback=callback,
                            reset_num_timesteps=checkpoint is None)
            except (EOFError, BrokenPipeError, ConnectionResetError):
                raise GatekitError("env: a training env worker process died (its traceback is above)") from None
        if stop.signal is not None:
            raise TrainingInterrupted(out, stop.signal, callback.save_last_update())
        session_seconds = callback.session_seconds()
        final_state = callback.state()
        model.save(zip_path)
        live = callback.live()
    finally:
        venv.close()
        torch.set_num_threads(threads)

    results: dict[str, Any] = {
        "name": recipe.name, "algo": recipe.algo, "env": recipe.env.id, "seed": recipe.seed,
        "timesteps": int(model.num_timesteps), "n_envs": n_envs, "train_seconds": final_state["train_seconds"],
        "steps_per_second": (model.num_timesteps - start_timesteps) / max(session_seconds, 1e-9),
        "train_return": live["episode_return"], "train_success": live["success"],
        "resumed_from": final_state["resumes"], "expert": str(zip_path), "test": {},
    }
    return write_results(recipe, out, results, progress=progress)


__all__ = ["EnvFactory", "TrainingInterrupted", "resume_expert", "start_method", "train_expert"]
