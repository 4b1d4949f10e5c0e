"""The training loop: gate, record, learn, evaluate, checkpoint, resume.

One run is one process (plus an evaluation worker). A run folder holds:

=================== =====================================================================
file                what
=================== =====================================================================
recipe.yaml         the resolved recipe (after ``--set`` overrides and ``--seed``)
records.gkr         every step, expert-labelled ones durable as they happen (gatekit.data)
checkpoint.pt       learner, criterion, RNG, schedules, evaluations (atomic; torch tensors
                    and plain values only, loaded with ``weights_only=True``)
novice_final.pt     the learner's state at the end; ``novice_best.pt``: at its best evaluation
progress.csv        one row per training episode
eval.csv            one row per evaluation
tb/                 TensorBoard event files
results.json        the run's figures, schema :data:`RESULTS_SCHEMA` (see docs/results.md)
*.png               take-over rate over training; test success vs expert-involved steps
=================== =====================================================================

Resume (:func:`train` with ``resume=RUN_DIR``): the record log is the truth. Counters (steps,
expert-involved steps, queries, switches, episodes) are recomputed from it; the learner and the
criterion come back from the last checkpoint; steps recorded after that checkpoint are kept
and used by the next update; the interrupted episode is not continued (the simulator's state
cannot be restored), the next one starts fresh.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from gatekit.config import Recipe, build, load_recipe
from gatekit.criteria import CRITERIA
from gatekit.data import RecordStore
from gatekit.data.log import fsync_dir
from gatekit.envs import ENVS
from gatekit.errors import GatekitError, RunDirError
from gatekit.evaluation import EvalWorker, Stat, evaluate, summarize
from gatekit.experts import EXPERTS
from gatekit.learners import LEARNERS
from gatekit.wrappers.intervention import InterventionWrapper, Totals

RESULTS_SCHEMA = "gatekit.results/1"
CHECKPOINT_FORMAT = 1
MIN_FREE_BYTES = 64 * 2**20


@dataclass
class RunState:
    """Mutable bookkeeping of a run that is not in the record log."""

    evals: list[dict[str, Any]] = field(default_factory=list)
    best_success: float = -math.inf
    wall_seconds: float = 0.0
    next_eval: int = 0
    next_checkpoint: int = 0
    update_metrics: dict[str, float] = field(default_factory=dict)


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of training episode ``episode``: random-looking, reproducible, resumable."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def check_run_dir(path: Path) -> None:
    """Fail before training if ``path`` cannot hold a run (unwritable, full)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-probe"
        with open(probe, "wb") as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"output folder '{path}' is not writable ({exc.strerror}); pass --out DIR with a writable folder") from None
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise RunDirError(f"output folder '{path}' has only {free // 2**20} MiB free; free space or pass --out DIR elsewhere")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def default_run_dir(recipe: Recipe, root: Path = Path("runs")) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{recipe.name}-s{recipe.seed}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


class _Logs:
    """CSV, TensorBoard and progress output of a run."""

    EP_FIELDS = ("step", "episode", "return", "length", "expert_steps", "expert_queries", "switches",
                 "takeover_rate", "total_expert_steps", "total_switches")
    EVAL_FIELDS = ("step", "expert_steps", "switches", "episodes", "test_success", "test_return", "wall_seconds")

    def __init__(self, run_dir: Path, recipe: Recipe) -> None:
        self.run_dir = run_dir
        self._files: dict[str, Any] = {}
        self._writers: dict[str, csv.DictWriter] = {}
        self.tb = None
        if recipe.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                self.tb = None

    def _writer(self, name: str, fields: tuple[str, ...]) -> csv.DictWriter:
        if name not in self._writers:
            path = self.run_dir / name
            new = not path.exists() or path.stat().st_size == 0
            fh = open(path, "a", newline="")
            w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
            if new:
                w.writeheader()
            self._files[name], self._writers[name] = fh, w
        return self._writers[name]

    def episode(self, row: dict[str, Any]) -> None:
        self._writer("progress.csv", self.EP_FIELDS).writerow(row)
        if self.tb is not None:
            step = row["step"]
            for k in ("return", "length", "takeover_rate", "switches"):
                self.tb.add_scalar(f"train/episode_{k}", row[k], step)
            self.tb.add_scalar("train/total_expert_steps", row["total_expert_steps"], step)

    def evaluation(self, row: dict[str, Any]) -> None:
        flat = {k: (v["mean"] if isinstance(v, dict) else v) for k, v in row.items()}
        self._writer("eval.csv", self.EVAL_FIELDS).writerow(flat)
        self._files["eval.csv"].flush()
        if self.tb is not None:
            for k, v in flat.items():
                if k.startswith("test_") and isinstance(v, float):
                    self.tb.add_scalar(f"eval/{k[5:]}", v, row["step"])
                    self.tb.add_scalar(f"eval_vs_expert_steps/{k[5:]}", v, row["expert_steps"])

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"update/{k}", v, step)

    def flush(self) -> None:
        for fh in self._files.values():
            fh.flush()
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.flush()
        for fh in self._files.values():
            fh.close()
        if self.tb is not None:
            self.tb.close()


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and stops at the next step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, the caller stops us
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _stat_dict(episodes: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {f"test_{k}": s.as_dict() for k, s in summarize(episodes).items()}


def validate(recipe: Recipe, *, out: Path | None = None) -> None:
    """Check that ``recipe`` can run, without training: every component builds, spaces of env,
    expert and learner agree, and the output folder (if given) is writable. Writes nothing."""
    if out is not None:
        if (Path(out) / "records.gkr").exists():
            raise RunDirError(f"'{out}' already holds a run; use --resume {out} or another --out")
        probe = Path(out)
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK):
            raise RunDirError(f"output folder '{out}' is not writable; pass --out DIR with a writable folder")
    run = _Run(recipe, Path(out or "."), resuming=False, progress=False, on_progress=None)
    run._build(store_path=None)
    run.store.close()
    run.env.close()


def train(recipe: Recipe | None = None, *, out: Path | None = None, resume: Path | None = None,
          progress: bool | None = None, on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run a recipe (or resume the run in ``resume``) and return its ``results.json`` content.

    Args:
        recipe: the recipe to run (ignored when resuming: the run folder's recipe is used).
        out: the run folder (default ``runs/<name>-s<seed>-<time>``).
        resume: an existing run folder to continue.
        progress: show a progress bar (default: the recipe's ``log.progress``).
        on_progress: called every few steps with the live counters (for UIs and tests).
    """
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "recipe.yaml").is_file():
            raise RunDirError(f"'{run_dir}' is not a gatekit run folder (no recipe.yaml); pass the folder printed by `gatekit train`")
        recipe = load_recipe(run_dir / "recipe.yaml")
        results_path = run_dir / "results.json"
        if results_path.is_file():
            try:
                status = json.loads(results_path.read_text()).get("status")
            except (json.JSONDecodeError, UnicodeDecodeError):
                status = None
            if status == "finished":
                raise RunDirError(f"run '{run_dir}' already finished; start a new run instead of --resume")
    else:
        if recipe is None:
            raise ValueError("train() needs a recipe or resume=RUN_DIR")
        run_dir = Path(out) if out is not None else default_run_dir(recipe)
        if (run_dir / "records.gkr").exists():
            raise RunDirError(f"'{run_dir}' already holds a run; use --resume {run_dir} or another --out")
    check_run_dir(run_dir)
    return _Run(recipe, run_dir, resuming=resume is not None,
                progress=recipe.log.progress if progress is None else progress, on_progress=on_progress).run()


class _Run:
    def __init__(self, recipe: Recipe, run_dir: Path, *, resuming: bool, progress: bool,
                 on_progress: Callable[[dict[str, Any]], None] | None) -> None:
        self.recipe = recipe
        self.run_dir = run_dir
        self.resuming = resuming
        self.show_progress = progress
        self.on_progress = on_progress
        self.state = RunState()

    # -- setup ------------------------------------------------------------------------------
    def _build(self, store_path: Path | None | str = "records") -> None:
        r = self.recipe
        torch.manual_seed(r.seed)
        np.random.seed(r.seed % 2**32)  # for third-party code that still uses the global RNG
        self.env = build(ENVS, r.env, "env", split="train", seed=r.seed)
        try:
            self.expert = build(EXPERTS, r.expert, "expert", env=self.env)
            self.criterion = build(CRITERIA, r.criterion, "criterion")
            self.learner = build(LEARNERS, r.learner, "learner", observation_space=self.env.observation_space,
                                 action_space=self.env.action_space, seed=r.seed)
            path = self.run_dir / "records.gkr" if store_path is not None else None
            sync = r.data
            if self.resuming and path is not None and path.exists():
                self.store = RecordStore.open(path, self.env.observation_space, self.env.action_space,
                                              max_unsynced=sync.max_unsynced, sync_seconds=sync.sync_seconds)
            else:
                self.store = RecordStore(self.env.observation_space, self.env.action_space, path=path,
                                         max_unsynced=sync.max_unsynced, sync_seconds=sync.sync_seconds)
            self.wrapper = InterventionWrapper(self.env, expert=self.expert, criterion=self.criterion,
                                               store=self.store, on_nonfinite=r.on_nonfinite)
        except BaseException:
            self.env.close()
            raise

    def _restore(self) -> None:
        """Counters from the record log; learner and criterion from the last checkpoint."""
        counts = self.store.counts()
        gate = self.wrapper.gate
        gate.totals = Totals(steps=counts["total_steps"], expert_steps=counts["expert_steps"],
                             expert_queries=counts["expert_queries"], switches=counts["switches"],
                             episodes=counts["episodes"])
        gate.episode = counts["episodes"] - 1
        ckpt_path = self.run_dir / "checkpoint.pt"
        if ckpt_path.is_file():
            try:
                ckpt = torch.load(ckpt_path, weights_only=True)
            except Exception as exc:
                raise RunDirError(f"checkpoint '{ckpt_path}' is unreadable ({type(exc).__name__}); delete it to resume from the records alone") from None
            if ckpt.get("format") != CHECKPOINT_FORMAT:
                raise RunDirError(f"checkpoint '{ckpt_path}' has format {ckpt.get('format')}, expected {CHECKPOINT_FORMAT}")
            self.learner.load_state_dict(ckpt["learner"])
            self.criterion.load_state_dict(ckpt["criterion"])
            torch.set_rng_state(ckpt["torch_rng"])
            s = ckpt["run"]
            self.state = RunState(evals=list(s["evals"]), best_success=float(s["best_success"]),
                                  wall_seconds=float(s["wall_seconds"]), next_eval=int(s["next_eval"]),
                                  next_checkpoint=int(s["next_checkpoint"]))

    def _checkpoint(self) -> None:
        self.store.sync()
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "records": len(self.store),
            "learner": self.learner.state_dict(),
            "criterion": self.criterion.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "run": {"evals": self.state.evals, "best_success": self.state.best_success,
                    "wall_seconds": self._wall(), "next_eval": self.state.next_eval,
                    "next_checkpoint": self.state.next_checkpoint},
        }
        atomic_torch_save(ckpt, self.run_dir / "checkpoint.pt")

    def _wall(self) -> float:
        return self.state.wall_seconds + (time.perf_counter() - self._t0)

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        r = self.recipe
        if not self.resuming:
            atomic_write_bytes(self.run_dir / "recipe.yaml", yaml.safe_dump(r.to_dict(), sort_keys=False).encode())
        torch.set_num_threads(1)
        self._build()
        self._t0 = time.perf_counter()
        worker = None
        logs = _Logs(self.run_dir, r)
        status, error = "running", None
        try:
            if self.resuming:
                self._restore()
            if r.eval.in_worker and (r.eval.every_steps or r.eval.final_episodes or r.eval.expert_reference):
                worker = EvalWorker()
            self.worker = worker
            self.logs = logs
            if r.eval.expert_reference and not any(e.get("tag") == "expert" for e in self.state.evals):
                self._expert_reference()
            with _StopFlag() as stop, self._progress() as bar:
                self._loop(stop, bar)
                status = "interrupted" if stop.signal is not None else "finished"
            if status == "finished":
                self._final_eval()
        except KeyboardInterrupt:
            status = "interrupted"
        except GatekitError as exc:
            status, error = "failed", str(exc)
            raise
        finally:
            try:
                self.store.sync()
                if status != "running":
                    self._checkpoint()
                    if status == "finished":
                        atomic_torch_save(self.learner.state_dict(), self.run_dir / "novice_final.pt")
                results = self._results(status, error)
                atomic_write_bytes(self.run_dir / "results.json", json.dumps(results, indent=2).encode())
                if r.log.plots and status == "finished":
                    from gatekit.plots import plot_run

                    plot_run(self.run_dir)
            finally:
                logs.close()
                if worker is not None:
                    worker.close()
                self.store.close()
                self.env.close()
        return results

    def _progress(self) -> Any:
        from gatekit.progress import RunProgress

        return RunProgress(total=self.recipe.budget.total_steps, enabled=self.show_progress,
                           description=self.recipe.name, start=len(self.store))

    def _expert_budget_spent(self) -> bool:
        cap = self.recipe.budget.expert_steps
        return cap is not None and self.wrapper.totals.expert_steps >= cap

    def _update(self, *, learner: bool, criterion: bool) -> None:
        """Train the learner and/or the criterion; the learner first, so that a learned gate
        re-scores the novice it has just become."""
        if not (learner or criterion):
            return
        metrics: dict[str, float] = {}
        if learner:
            metrics.update(self.learner.update(self.store))
        if criterion:
            metrics.update({f"criterion/{k}": v for k, v in self.criterion.update(self.store, self.learner).items()})
        self.state.update_metrics = metrics
        self.logs.scalars(metrics, self.wrapper.totals.steps)

    def _loop(self, stop: _StopFlag, bar: Any) -> None:
        r, w, totals = self.recipe, self.wrapper, self.wrapper.totals
        budget, warmup = r.budget.total_steps, r.budget.warmup_steps
        if self.state.next_eval == 0:
            self.state.next_eval = r.eval.every_steps or budget + 1
        if self.state.next_checkpoint == 0:
            self.state.next_checkpoint = r.data.checkpoint_every
        if warmup and totals.steps >= warmup and self.learner.updates == 0:
            self._update(learner=True, criterion=True)  # resumed after warm-up but before the first training
        ep_return = 0.0
        obs, _ = w.reset(seed=episode_seed(r.seed, w.gate.episode + 1))
        while totals.steps < budget and not self._expert_budget_spent() and stop.signal is None:
            w.force_expert = totals.steps < warmup
            action = self.learner.act(obs)
            obs, reward, terminated, truncated, info = w.step(action)
            ep_return += float(reward)
            record = w.last_record
            assert record is not None
            self.learner.observe(record, self.store)
            if warmup and totals.steps == warmup:
                self._update(learner=True, criterion=True)  # the end of the expert's warm-up
            elif totals.steps > warmup:
                self._update(learner=self.learner.wants_update(self.store),
                             criterion=self.criterion.wants_update(self.store))
            if terminated or truncated:
                ep = info[w.info_key]["episode"]
                self.logs.episode({"step": totals.steps, "episode": w.gate.episode, "return": ep_return,
                                   **ep, "total_expert_steps": totals.expert_steps, "total_switches": totals.switches})
                ep_return = 0.0
                if totals.steps < budget:
                    obs, _ = w.reset(seed=episode_seed(r.seed, w.gate.episode + 1))
            if totals.steps >= self.state.next_eval:
                self.state.next_eval += r.eval.every_steps
                self._submit_eval(f"step-{totals.steps}", r.eval.episodes)
            if totals.steps >= self.state.next_checkpoint:
                self.state.next_checkpoint += r.data.checkpoint_every
                self._checkpoint()
                self.logs.flush()
            if totals.steps % 25 == 0:
                self._collect_evals(block=False)
                live = {**totals.as_dict(), "last_success": self._last_success()}
                bar.update(totals.steps, live)
                if self.on_progress is not None:
                    self.on_progress(live)
        bar.update(totals.steps, {**totals.as_dict(), "last_success": self._last_success()})

    def _last_success(self) -> float:
        for e in reversed(self.state.evals):
            if e.get("tag") != "expert":
                return e["test_success"]["mean"]
        return math.nan

    # -- evaluation --------------------------------------------------------------------------
    def _submit_eval(self, tag: str, episodes: int, *, expert: bool = False) -> None:
        t = self.wrapper.totals
        meta = {"tag": tag, "step": t.steps, "expert_steps": t.expert_steps, "switches": t.switches,
                "episodes": episodes}
        snapshot = None if expert else self.learner.state_dict()
        actor = None if expert else self.learner.policy()
        expert_comp = self.recipe.expert if expert else None
        self._pending = getattr(self, "_pending", {})
        self._pending[tag] = (meta, snapshot)
        if self.worker is not None:
            self.worker.submit(tag, self.recipe.env, actor, episodes, expert_comp=expert_comp)
        else:
            self._record_eval(tag, evaluate(self.recipe.env, actor, episodes, expert_comp=expert_comp))

    def _expert_cache_path(self, episodes: int) -> Path:
        key = json.dumps({"env": self.recipe.env.to_dict(), "expert": self.recipe.expert.to_dict(),
                          "episodes": episodes, "format": 1}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.run_dir.parent / ".expert_reference" / f"{self.recipe.env.id}-{self.recipe.expert.id}-{digest}.json"

    def _expert_reference(self) -> None:
        """The expert alone on the same test episodes. Its figures depend only on the env, the
        expert and the episode count, so they are cached beside the run folders and reused."""
        episodes = self.recipe.eval.final_episodes or self.recipe.eval.episodes
        cache = self._expert_cache_path(episodes)
        if cache.is_file():
            try:
                cached = json.loads(cache.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                cached = None
            if isinstance(cached, list) and len(cached) == episodes:
                self._pending = getattr(self, "_pending", {})
                t = self.wrapper.totals
                self._pending["expert"] = ({"tag": "expert", "step": t.steps, "expert_steps": t.expert_steps,
                                            "switches": t.switches, "episodes": episodes, "cached": True}, None)
                self._record_eval("expert", cached)
                return
        self._submit_eval("expert", episodes, expert=True)

    def _collect_evals(self, *, block: bool) -> None:
        if self.worker is None:
            return
        for tag, episodes in self.worker.poll(block=block):
            self._record_eval(tag, episodes)

    def _record_eval(self, tag: str, episodes: list[dict[str, float]]) -> None:
        meta, snapshot = self._pending.pop(tag)
        row = {**meta, **_stat_dict(episodes), "wall_seconds": self._wall()}
        self.state.evals.append(row)
        if tag == "expert" and not meta.get("cached"):
            cache = self._expert_cache_path(len(episodes))
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cache, json.dumps(episodes).encode())
        if tag != "expert":
            self.logs.evaluation(row)
            success = row["test_success"]["mean"]
            if snapshot is not None and success > self.state.best_success:
                self.state.best_success = success
                atomic_torch_save(snapshot, self.run_dir / "novice_best.pt")

    def _final_eval(self) -> None:
        n = self.recipe.eval.final_episodes
        if n:
            self._submit_eval("final", n)
        self._collect_evals(block=True)

    # -- results -------------------------------------------------------------------------------
    def _results(self, status: str, error: str | None) -> dict[str, Any]:
        t = self.wrapper.totals
        out: dict[str, Any] = {
            "schema": RESULTS_SCHEMA,
            "status": status,
            "recipe": self.recipe.name,
            "seed": self.recipe.seed,
            "env": self.recipe.env.id,
            "expert": self.recipe.expert.id,
            "criterion": self.recipe.criterion.id,
            "learner": self.recipe.learner.id,
            "total_steps": t.steps,
            "expert_steps": t.expert_steps,
            "expert_queries": t.expert_queries,
            "switches": t.switches,
            "episodes": t.episodes,
            "takeover_rate": t.takeover_rate,
            "wall_seconds": self._wall(),
            "records_recovered_torn_bytes": int(getattr(self.store, "recovered_torn_bytes", 0)),
        }
        final = next((e for e in reversed(self.state.evals) if e["tag"] == "final"), None)
        if final is not None:
            out.update({k: v for k, v in final.items() if k.startswith("test_")})
        expert = next((e for e in self.state.evals if e["tag"] == "expert"), None)
        if expert is not None:
            out.update({f"expert_{k}": v for k, v in expert.items() if k.startswith("test_")})
        out["evaluations"] = [
            {"step": e["step"], "expert_steps": e["expert_steps"], "switches": e["switches"],
             **{k: v["mean"] for k, v in e.items() if k.startswith("test_")}}
            for e in self.state.evals if e["tag"] != "expert"
        ]
        if error is not None:
            out["error"] = error
        return out


def stat_of(results: dict[str, Any], key: str) -> Stat | None:
    """Read a test metric back from ``results.json`` content as a :class:`Stat`."""
    v = results.get(key)
    if not isinstance(v, dict):
        return None
    return Stat(v["mean"], v["std"], v["ci95"], int(v["n"]))
