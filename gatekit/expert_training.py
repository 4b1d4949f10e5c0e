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

Training runs ``n_envs`` envs in worker processes (``SubprocVecEnv``; one process per env,
which MetaDrive's one-engine-per-process rule needs anyway), worker ``i`` built with
``split="train"`` and seed ``seed + i``. The output folder gets ``expert.zip`` (SB3's own
format, loadable with ``expert: {id: sb3, path: .../expert.zip}``), the resolved
``recipe.yaml`` and ``results.json``; the expert is then evaluated on the test split with
:func:`gatekit.evaluation.evaluate`.

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

from gatekit.config import (
    Component,
    apply_overrides,
    build,
    check_kwargs,
    load_dataclass,
    read_yaml_mapping,
)
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
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (getattr(self, f.name).to_dict() if f.name == "env" else getattr(self, f.name))
                for f in dataclasses.fields(self)}


_RANGES: dict[str, tuple[float, float]] = {"total_timesteps": (1, math.inf), "n_envs": (1, math.inf), "seed": (0, math.inf),
           "eval_episodes": (0, math.inf)}
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


class ProgressCallback(BaseCallback):
    """A rich progress bar over env steps, with steps/s and the rolling episode return and
    success rate; also saves the model every ``save_every_s`` seconds (at rollout ends), so an
    interrupted overnight run keeps what it learned."""

    def __init__(self, *, total: int, enabled: bool, save_path: Path | None, save_every_s: float = 600.0,
                 description: str = "training") -> None:
        super().__init__()
        self.total, self.enabled, self.description = total, enabled, description
        self.save_path, self.save_every_s = save_path, save_every_s
        self._progress: Any = None
        self._t0 = self._last_save = self._last_draw = 0.0
        # SB3's on-policy algorithms never fill their own success buffer (they do not pass
        # `dones` to it), so the callback keeps one: info["is_success"] of finished episodes.
        self.successes: deque[float] = deque(maxlen=100)

    def _on_training_start(self) -> None:
        self._t0 = self._last_save = time.monotonic()
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
            self._task = self._progress.add_task(self.description, total=self.total, live="")

    def live(self) -> dict[str, float]:
        """Steps/s so far and the rolling (last 100 episodes) return and success rate."""
        model = self.model
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        returns = [ep["r"] for ep in model.ep_info_buffer] if model.ep_info_buffer else []
        success = list(self.successes)
        return {
            "steps_per_second": self.num_timesteps / elapsed,
            "episode_return": float(sum(returns) / len(returns)) if returns else math.nan,
            "success": float(sum(success) / len(success)) if success else math.nan,
        }

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

    def _on_rollout_end(self) -> None:
        if self.save_path is not None and time.monotonic() - self._last_save > self.save_every_s:
            self.model.save(self.save_path)
            self._last_save = time.monotonic()

    def _on_training_end(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=min(self.num_timesteps, self.total))
            self._progress.__exit__(None, None, None)
            self._progress = None


def train_expert(recipe: ExpertRecipe, *, out: Path, progress: bool = True) -> dict[str, Any]:
    """Train the recipe's PPO expert, save it to ``out/expert.zip``, evaluate it on the test split.

    Returns:
        The figures also written to ``out/results.json``: ``timesteps``, ``n_envs``,
        ``train_seconds``, ``steps_per_second``, the rolling training ``train_return`` and
        ``train_success`` (last 100 episodes), and ``test`` (``{metric: {mean, std, ci95, n}}``,
        empty when ``eval_episodes`` is 0).

    Raises:
        RunDirError: ``out`` already holds an expert, or cannot be written.
        ConfigError: PPO rejected its settings.
        GatekitError: an env worker process died.
    """
    import torch
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from gatekit.runs.rundir import check_run_dir

    out = Path(out)
    if (out / "expert.zip").exists():
        raise RunDirError(f"'{out}' already holds an expert.zip; pass another --out")
    check_run_dir(out)
    n_envs = recipe.n_envs or os.cpu_count() or 1
    resolved = {**recipe.to_dict(), "n_envs": n_envs}
    (out / "recipe.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    fns: list[Callable[[], Any]] = [EnvFactory(recipe.env, "train", recipe.seed + i) for i in range(n_envs)]
    zip_path = out / "expert.zip"
    try:
        venv = SubprocVecEnv(fns, start_method=start_method())
    except (EOFError, BrokenPipeError, ConnectionResetError):
        raise GatekitError("env: a training env worker process died while starting (its traceback is above); fix the env settings") from None
    # The env workers occupy the cores; PPO's small MLP batches gain nothing from torch's
    # intra-op threads, which would only spin against the workers (measured: several times
    # slower on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        try:
            model = _sb3.PPO(env=venv, seed=recipe.seed, **ppo_kwargs(recipe))
        except (AssertionError, ValueError, TypeError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"recipe: ppo: PPO rejected the settings ({text})") from None
        callback = ProgressCallback(total=recipe.total_timesteps, enabled=progress, save_path=zip_path,
                                    description=recipe.name)
        t0 = time.monotonic()
        try:
            model.learn(total_timesteps=recipe.total_timesteps, callback=callback)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise GatekitError("env: a training env worker process died (its traceback is above)") from None
        train_seconds = time.monotonic() - t0
        model.save(zip_path)
        live = callback.live()
    finally:
        venv.close()
        torch.set_num_threads(threads)

    results: dict[str, Any] = {
        "name": recipe.name, "algo": recipe.algo, "env": recipe.env.id, "seed": recipe.seed,
        "timesteps": int(model.num_timesteps), "n_envs": n_envs, "train_seconds": train_seconds,
        "steps_per_second": model.num_timesteps / max(train_seconds, 1e-9),
        "train_return": live["episode_return"], "train_success": live["success"],
        "expert": str(zip_path), "test": {},
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
