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
from the step count), so a resumed run is not bit-identical to an uninterrupted one.

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

import dataclasses
import json
import math
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gatekit.arguments import build, check_kwargs
from gatekit.config import Component, apply_overrides, load_dataclass, read_yaml_mapping
from gatekit.errors import ConfigError, GatekitError, RunDirError, nearest

try:
    import stable_baselines3 as _sb3
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError as _exc:  # an optional dependency: say how to get it, in one line
    raise ConfigError(f"train-expert: stable-baselines3 is not installed ({_exc.name}); pip install 'gatekit[imitation]'") from None


@dataclass(kw_only=True)
class ExpertRecipe:
    """What expert to train, where, and for how long."""

    name: str
    """A short name; output folders are named after it."""
    env: Component
    """The env (registry ``id`` + factory kwargs); training uses its ``train`` split."""
    total_timesteps: int
    """Env steps of training, all workers together (PPO rounds up to whole rollouts)."""
    algo: Literal["ppo"] = "ppo"
    """The SB3 algorithm."""
    ppo: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``stable_baselines3.PPO`` (``policy`` defaults to ``MlpPolicy``,
    ``device`` to ``cpu``; ``policy_kwargs.activation_fn`` may name an activation: ``tanh``)."""
    n_envs: int | None = None
    """Parallel env worker processes (None: ``os.cpu_count()``)."""
    seed: int = 0
    """Seeds PPO (torch, numpy) and the envs (worker ``i``: ``seed + i``)."""
    eval_episodes: int = 20
    """Test-split episodes (seeds 0..N-1) of the final evaluation; 0: none."""
    checkpoint_every_s: float = 600.0
    """Seconds between checkpoints (taken between a PPO update and the next rollout); 0: after
    every update."""
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (getattr(self, f.name).to_dict() if f.name == "env" else getattr(self, f.name))
                for f in dataclasses.fields(self)}


_RANGES: dict[str, tuple[float, float]] = {"total_timesteps": (1, math.inf), "n_envs": (1, math.inf), "seed": (0, math.inf),
           "eval_episodes": (0, math.inf), "checkpoint_every_s": (0, math.inf)}
# Fields a resumed run may change: none of them changes the model or what it learns from.
RESUMABLE_FIELDS = ("total_timesteps", "eval_episodes", "checkpoint_every_s", "n_envs")
CHECKPOINT_DIR = "checkpoint"
# PPO arguments a recipe cannot set: gatekit passes them (env, seed), or they only matter to
# SB3's own construction.
_PPO_PROVIDED = ("env", "seed", "_init_setup_model")
# PPO arguments that SB3 also accepts as schedules (functions), which YAML cannot express.
_PPO_NUMBERS = ("learning_rate", "clip_range", "clip_range_vf")


# ---------------------------------------------------------------------------------------------
# loading


def load_expert_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExpertRecipe:
    """Read an expert recipe (YAML), apply ``a.b=value`` overrides, and load it strictly."""
    raw = read_yaml_mapping(path, kind="expert recipe", example="recipes/ppo_expert_*.yaml",
                            fields="name, env, total_timesteps, ...")
    return load_expert_recipe_dict(apply_overrides(raw, overrides))


def load_expert_recipe_dict(raw: dict[str, Any]) -> ExpertRecipe:
    """Load an expert recipe from a plain mapping, strictly; checks env and PPO kwargs too."""
    if not isinstance(raw, dict):
        raise ConfigError("recipe: expected a mapping of fields (name, env, total_timesteps, ...)")
    recipe = load_dataclass(ExpertRecipe, raw, ranges=_RANGES)

    from gatekit.envs import ENVS

    # Typos in the env's arguments surface here, not as a traceback in a worker process.
    check_kwargs(ENVS.get(recipe.env.id, field="env.id"), recipe.env.kwargs, "env", provided=("split", "seed"))
    recipe.ppo = check_ppo_kwargs(recipe.ppo)
    return recipe


def check_ppo_kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    """Check the ``ppo:`` section against ``stable_baselines3.PPO``'s signature.

    Returns the section as given (plain YAML values, for the saved recipe); :func:`ppo_kwargs`
    turns it into PPO's arguments.
    """
    checked = check_kwargs(_sb3.PPO, {"policy": "MlpPolicy", **raw}, "ppo", provided=_PPO_PROVIDED)
    policy = checked["policy"]
    if not isinstance(policy, str) or policy not in _sb3.PPO.policy_aliases:
        raise ConfigError(f"recipe: 'ppo.policy' must name an SB3 policy, got {policy!r}; {nearest(str(policy), _sb3.PPO.policy_aliases)}")
    for key in _PPO_NUMBERS:
        value = checked.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"recipe: 'ppo.{key}' must be a number (a recipe cannot hold a schedule), got {value!r}")
    policy_kwargs = checked.get("policy_kwargs") or {}
    if "activation_fn" in policy_kwargs:
        from gatekit.experts.sb3 import activation_class

        act = policy_kwargs["activation_fn"]
        if not isinstance(act, str):
            raise ConfigError(f"recipe: 'ppo.policy_kwargs.activation_fn' must name an activation (tanh, relu, ...), got {act!r}")
        activation_class(act, "recipe: 'ppo.policy_kwargs.activation_fn'")
    return dict(raw)


def ppo_kwargs(recipe: ExpertRecipe) -> dict[str, Any]:
    """PPO's keyword arguments for ``recipe`` (defaults filled in, activation names resolved)."""
    from gatekit.experts.sb3 import activation_class

    kwargs: dict[str, Any] = {"policy": "MlpPolicy", "device": "cpu", "verbose": 0, **recipe.ppo}
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    if isinstance(policy_kwargs.get("activation_fn"), str):
        policy_kwargs["activation_fn"] = activation_class(policy_kwargs["activation_fn"])
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


# ---------------------------------------------------------------------------------------------
# training


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


class Checkpointer:
    """Writes and reads a run's checkpoint: ``checkpoint/model.zip`` and ``checkpoint/state.json``.

    The zip goes first, the JSON second, each atomically; the JSON names the step count of the
    zip it belongs to, so a kill between the two writes is detected (the zip's own count wins,
    the JSON's extras are then one checkpoint old).
    """

    def __init__(self, out: Path) -> None:
        self.dir = Path(out) / CHECKPOINT_DIR
        self.model_path = self.dir / "model.zip"
        self.state_path = self.dir / "state.json"

    def exists(self) -> bool:
        return self.model_path.is_file()

    def save(self, model: Any, state: dict[str, Any]) -> None:
        import io

        from gatekit.runs.rundir import atomic_write_bytes

        self.dir.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        model.save(buffer)
        atomic_write_bytes(self.model_path, buffer.getvalue())
        atomic_write_bytes(self.state_path, json.dumps({**state, "timesteps": int(model.num_timesteps)}, indent=2).encode())

    def load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}


class ProgressCallback(BaseCallback):
    """A rich progress bar over env steps, with steps/s and the rolling episode return and
    success rate; also writes a checkpoint every ``checkpoint_every_s`` seconds, so an
    interrupted overnight run keeps what it learned.

    Checkpoints are taken at the start of a rollout, i.e. right after a PPO update: the
    weights, optimizer state and step count then agree. (At a rollout's *end* the step count
    already includes steps the weights have not been trained on yet; a resume would skip them.)
    """

    def __init__(self, *, total: int, enabled: bool, checkpointer: Checkpointer | None, checkpoint_every_s: float = 600.0,
                 description: str = "training", state: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.total, self.enabled, self.description = total, enabled, description
        self.checkpointer, self.checkpoint_every_s = checkpointer, checkpoint_every_s
        state = state or {}
        self._progress: Any = None
        self._t0 = self._last_save = self._last_draw = 0.0
        self._start_timesteps = 0
        self._saved_timesteps = -1
        # Training seconds of earlier sessions (a resumed run), so the totals span all of them.
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self.resumes: list[int] = [int(t) for t in state.get("resumes", [])]
        # SB3's on-policy algorithms never fill their own success buffer (they do not pass
        # `dones` to it), so the callback keeps one: info["is_success"] of finished episodes.
        self.successes: deque[float] = deque((float(x) for x in state.get("successes", [])), maxlen=100)

    def _on_training_start(self) -> None:
        self._t0 = self._last_save = time.monotonic()
        self._start_timesteps = self._saved_timesteps = int(self.model.num_timesteps)
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from gatekit.progress import console

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[live]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=console, refresh_per_second=4,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, live="",
                                                 completed=min(self._start_timesteps, self.total))

    def session_seconds(self) -> float:
        return time.monotonic() - self._t0

    def live(self) -> dict[str, float]:
        """Steps/s of this session and the rolling (last 100 episodes) return and success rate."""
        model = self.model
        elapsed = max(self.session_seconds(), 1e-9)
        returns = [ep["r"] for ep in model.ep_info_buffer] if model.ep_info_buffer else []
        success = list(self.successes)
        return {
            "steps_per_second": (self.num_timesteps - self._start_timesteps) / elapsed,
            "episode_return": float(sum(returns) / len(returns)) if returns else math.nan,
            "success": float(sum(success) / len(success)) if success else math.nan,
        }

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps besides the model (see :class:`Checkpointer`)."""
        return {"train_seconds": self.seconds_before + self.session_seconds(), "successes": list(self.successes),
                "resumes": self.resumes}

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
            if done and "is_success" in info:
                self.successes.append(float(bool(info["is_success"])))
        now = time.monotonic()
        if self._progress is not None and now - self._last_draw > 0.25:
            self._last_draw = now
            live = self.live()
            text = f"{live['steps_per_second']:,.0f} steps/s  return {live['episode_return']:.1f}  success {live['success']:.2f}"
            self._progress.update(self._task, completed=min(self.num_timesteps, self.total), live=text.replace("nan", "-"))
        return True

    def _on_rollout_start(self) -> None:
        if (self.checkpointer is not None and self.model.num_timesteps > self._saved_timesteps
                and time.monotonic() - self._last_save >= self.checkpoint_every_s):
            self.checkpointer.save(self.model, self.state())
            self._saved_timesteps = int(self.model.num_timesteps)
            self._last_save = time.monotonic()

    def _on_training_end(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=min(self.num_timesteps, self.total))
            self._progress.__exit__(None, None, None)
            self._progress = None


def _make_venv(recipe: ExpertRecipe, n_envs: int, seed: int) -> Any:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    fns: list[Callable[[], Any]] = [EnvFactory(recipe.env, "train", seed + i) for i in range(n_envs)]
    try:
        return SubprocVecEnv(fns, start_method=start_method())
    except (EOFError, BrokenPipeError, ConnectionResetError):
        raise GatekitError("env: a training env worker process died while starting (its traceback is above); fix the env settings") from None


def train_expert(recipe: ExpertRecipe, *, out: Path, progress: bool = True) -> dict[str, Any]:
    """Train the recipe's PPO expert, save it to ``out/expert.zip``, evaluate it on the test split.

    Writes a checkpoint every ``recipe.checkpoint_every_s`` seconds (see the module docstring);
    :func:`resume_expert` continues a run that was killed.

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
    return _train(recipe, out=out, progress=progress, checkpoint=None)


def resume_expert(out: Path, overrides: list[str] | tuple[str, ...] = (), *, progress: bool = True) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint, to its recipe's ``total_timesteps``.

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
    return _train(recipe, out=out, progress=progress, checkpoint=Checkpointer(out))


def _write_recipe(out: Path, recipe: ExpertRecipe) -> None:
    from gatekit.runs.rundir import atomic_write_bytes

    atomic_write_bytes(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False).encode())


def _train(recipe: ExpertRecipe, *, out: Path, progress: bool, checkpoint: Checkpointer | None) -> dict[str, Any]:
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
        callback = ProgressCallback(total=recipe.total_timesteps, enabled=progress, checkpointer=checkpointer,
                                    checkpoint_every_s=recipe.checkpoint_every_s, description=recipe.name, state=state)
        try:
            model.learn(total_timesteps=recipe.total_timesteps - start_timesteps, callback=callback,
                        reset_num_timesteps=checkpoint is None)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise GatekitError("env: a training env worker process died (its traceback is above)") from None
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
    if recipe.eval_episodes > 0:
        results["test"] = evaluate_expert(recipe, zip_path, progress=progress)
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
