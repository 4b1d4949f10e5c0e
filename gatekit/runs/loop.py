"""The training loop: act, step, observe, update the learner, update the criterion, then the
hooks (evaluate, checkpoint, progress). Resume from a run folder.

One run is one process (plus an evaluation worker). A run folder holds:

=================== =====================================================================
file                what
=================== =====================================================================
recipe.yaml         the resolved recipe (after ``--set`` overrides and ``--seed``)
records.gkr         every step, expert-labelled ones durable as they happen (gatekit.data)
checkpoint.pt       learner, criterion, RNG, schedules, evaluations, a person's effort
                    (atomic; torch tensors and plain values only, loaded with
                    ``weights_only=True``; sealed with a checksum); ``checkpoint.prev.pt``: the
                    one before (runs.checkpoint)
novice_final.pt     the learner's state at the end; ``novice_best.pt``: at its best evaluation
progress.csv        one row per training episode
eval.csv            one row per evaluation
tb/                 TensorBoard event files
results.json        the run's figures (:class:`~gatekit.runs.results.RunResult`, docs/results.md)
*.png               take-over rate over training; test success vs expert-involved steps
=================== =====================================================================

Resume (:func:`train` with ``resume=RUN_DIR``): the record log is the truth. Counters (steps,
expert-involved steps, queries, switches, episodes) are recomputed from it; the learner and the
criterion come back from the last checkpoint; steps recorded after that checkpoint are kept
and used by the next update; the interrupted episode is not continued (the simulator's state
cannot be restored), the next one starts fresh. :mod:`gatekit.runs.checkpoint` says which
checkpoint is used and what is refused; :mod:`gatekit.runs.failures` how a run ends (status,
what is saved, exit codes).

A person as the expert (the keyboard expert): closing its window stops the run as Ctrl-C does
(status ``interrupted``, every label kept, resumable); the person's effort goes into
``results.json`` (``person``) and the checkpoint, and a resumed run adds its own to it. The
expert is closed before the env at the end (MetaDrive's close quits pygame, the window too).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from gatekit.arguments import build
from gatekit.config import Recipe, load_recipe
from gatekit.criteria import CRITERIA
from gatekit.data import RecordStore
from gatekit.envs import ENVS
from gatekit.errors import ConfigError, RunDirError
from gatekit.experts import EXPERTS
from gatekit.learners import LEARNERS
from gatekit.runs.checkpoint import (
    CHECKPOINT_NAME,
    Resumed,
    RunState,
    check_log_present,
    resume_from,
    save_checkpoint,
)
from gatekit.runs.envs import EnvBatch, EnvWorkers, InProcessEnvs, StepOut, WorkerEnvs
from gatekit.runs.evaluator import Evaluator
from gatekit.runs.failures import Ending, build_failed, close_run
from gatekit.runs.hooks import CheckpointHook, EvaluationHook, Hook, ProgressHook
from gatekit.runs.integrity import LogDigest
from gatekit.runs.logs import RunLogs
from gatekit.runs.results import RunResult
from gatekit.runs.rundir import DiskReserve, atomic_write_bytes, check_run_dir, default_run_dir
from gatekit.runs.stop import StopFlag
from gatekit.wrappers.intervention import InterventionWrapper, Totals


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of training episode ``episode``: random-looking, reproducible, resumable."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


class Run:
    """One training run of ``recipe`` in ``run_dir`` (see the module docstring).

    Attributes:
        recipe: the run's recipe.
        run_dir: its folder.
        state: bookkeeping restored on resume (:class:`~gatekit.runs.checkpoint.RunState`).
        env, expert, criterion, learner, store, wrapper: the components (after :meth:`build`;
            ``env``, ``expert`` and ``wrapper`` only with one env in this process).
        envs: the envs the loop steps (:mod:`gatekit.runs.envs`), one or several.
        logs, evaluator: the run's outputs (during :meth:`run`).
    """

    env: Any
    expert: Any
    criterion: Any
    learner: Any
    store: RecordStore
    wrapper: InterventionWrapper
    envs: EnvBatch
    logs: RunLogs
    evaluator: Evaluator

    def __init__(self, recipe: Recipe, run_dir: Path, *, resuming: bool = False) -> None:
        self.recipe = recipe
        self.run_dir = run_dir
        self.resuming = resuming
        self.state = RunState()
        self.resumed: Resumed | None = None
        self.log_digest = LogDigest()
        self.reserve = DiskReserve(run_dir, 4 * 2**20)
        self._t0 = time.perf_counter()

    @property
    def totals(self) -> Totals:
        return self.envs.totals

    def wall(self) -> float:
        """Wall seconds of this run, earlier sessions included."""
        return self.state.wall_seconds + (time.perf_counter() - self._t0)

    # -- setup ------------------------------------------------------------------------------------
    def build(self, *, records: bool = True) -> None:
        """Seed, then build env, expert, criterion, learner, record store and the gate (in this
        order: the order fixes what each draws from the seeded RNGs). ``records=False`` keeps
        the records in memory (a dry run). With ``env.n_envs > 1`` env 0 and its expert are
        built here and the other envs with theirs in worker processes (:mod:`gatekit.runs.envs`)."""
        r = self.recipe
        torch.manual_seed(r.seed)
        np.random.seed(r.seed % 2**32)  # for third-party code that still uses the global RNG
        if r.env.n_envs > 1:
            self._build_workers(records=records)
            return
        self.env = build(ENVS, r.env, "env", split="train", seed=r.seed)
        try:
            self.expert = build(EXPERTS, r.expert, "expert", env=self.env)
            self._build_gate_parts(self.env.observation_space, self.env.action_space, records=records)
            self.wrapper = InterventionWrapper(self.env, expert=self.expert, criterion=self.criterion,
                                               store=self.store, on_nonfinite=r.on_nonfinite,
                                               warmup_steps=r.budget.warmup_steps)
            self.envs = InProcessEnvs(self.wrapper)
        except BaseException:
            try:
                if getattr(self, "expert", None) is not None:
                    self.expert.close()  # a person's window, say, when the gate refused that expert
            finally:
                self.env.close()
            raise

    def _build_workers(self, *, records: bool) -> None:
        r = self.recipe
        expert_cls = EXPERTS.get(r.expert.id, field="expert.id")
        if inspect.isclass(expert_cls) and callable(getattr(expert_cls, "claim_control", None)):
            # refused before any worker opens a window (WorkerEnvs refuses any other person too)
            raise ConfigError(f"env.n_envs: expert '{r.expert.id}' is a person at a window, which env worker "
                              f"processes cannot show; set env.n_envs: 1")
        workers = EnvWorkers(r.env.factory(), r.expert, r.env.n_envs, seed=r.seed)
        try:
            self._build_gate_parts(workers.observation_space, workers.action_space, records=records)
            self.envs = WorkerEnvs(workers, self.criterion, self.store, warmup_steps=r.budget.warmup_steps,
                                   on_nonfinite=r.on_nonfinite)
        except BaseException:
            workers.close()
            raise

    def _build_gate_parts(self, observation_space: Any, action_space: Any, *, records: bool) -> None:
        """The criterion, the learner and the record store (fresh, or the run folder's on resume)."""
        r = self.recipe
        self.criterion = build(CRITERIA, r.criterion, "criterion")
        self.learner = build(LEARNERS, r.learner, "learner", observation_space=observation_space,
                             action_space=action_space, seed=r.seed)
        path = self.run_dir / "records.gkr" if records else None
        sync = r.data
        if self.resuming and path is not None and path.exists():
            self.store = RecordStore.open(path, observation_space, action_space,
                                          max_unsynced=sync.max_unsynced, sync_seconds=sync.sync_seconds)
        else:
            self.store = RecordStore(observation_space, action_space, path=path,
                                     max_unsynced=sync.max_unsynced, sync_seconds=sync.sync_seconds)

    def restore(self) -> None:
        """Counters from the record log; learner, criterion and state from the last good
        checkpoint that matches the recipe and the log (:func:`~gatekit.runs.checkpoint.resume_from`).
        ``episodes`` counts finished episodes, as a running run does (the interrupted one is not)."""
        counts = self.store.counts()
        finished = int(np.count_nonzero(self.store.terminated | self.store.truncated))
        self.envs.restore(Totals(steps=counts["total_steps"], expert_steps=counts["expert_steps"],
                                 expert_queries=counts["expert_queries"], switches=counts["switches"],
                                 episodes=finished), episodes=counts["episodes"])
        self.resumed = resume_from(self.run_dir, store=self.store, recipe=self.recipe, learner=self.learner,
                                   criterion=self.criterion, person=self.person())
        self.state = self.resumed.state

    def start(self) -> None:
        """Resume (restore, eval.csv as the checkpoint has it, pending evaluations again) or
        begin (a first checkpoint, which records the recipe); then hold the disk reserve."""
        if self.resuming:
            self.restore()
            self.logs.restore_episodes(self.store)  # rows a kill kept from progress.csv
            self.evaluator.state = self.state
            self.logs.reset_evaluations(self.state.evals)
        self.evaluator.start()
        if self.resuming:
            self.evaluator.resubmit(self.store.observation_space, self.store.action_space)
        else:
            self.checkpoint()
        size = (self.run_dir / CHECKPOINT_NAME).stat().st_size if (self.run_dir / CHECKPOINT_NAME).exists() else 0
        self.reserve.size = max(self.reserve.size, 2 * size + 2**20)
        self.reserve.hold()

    def checkpoint(self) -> None:
        self.store.sync()
        save_checkpoint(self.run_dir, store=self.store, digest=self.log_digest, recipe=self.recipe,
                        learner=self.learner, criterion=self.criterion,
                        state=dataclasses.replace(self.state, wall_seconds=self.wall()), person=self.person())

    def person(self) -> Any | None:
        """The expert when it is a person who reports their effort (the keyboard expert), else
        None (also with ``env.n_envs > 1``, which refuses a person)."""
        expert = getattr(self, "expert", None)
        return expert if callable(getattr(expert, "effort", None)) else None

    # -- the loop ----------------------------------------------------------------------------------
    def update(self, *, learner: bool, criterion: bool) -> None:
        """Train the learner and/or the criterion; the learner first, so that a learned gate
        re-scores the novice it has just become."""
        if not (learner or criterion):
            return
        metrics: dict[str, float] = {}
        if learner:
            metrics.update(self.learner.update(self.store))
        if criterion:
            metrics.update({f"criterion/{k}": v for k, v in self.criterion.update(self.store, self.learner).items()})
        self.logs.scalars(metrics, self.totals.steps)

    def budget_spent(self) -> bool:
        """Training is over: the step budget or the expert's is spent."""
        b = self.recipe.budget
        return self.totals.steps >= b.total_steps or (b.expert_steps is not None and self.totals.expert_steps >= b.expert_steps)

    def loop(self, stop: StopFlag, hooks: list[Hook]) -> None:
        r, envs, totals = self.recipe, self.envs, self.envs.totals
        budget, warmup = r.budget.total_steps, r.budget.warmup_steps
        for hook in hooks:
            hook.start(self)
        if warmup and totals.steps >= warmup and self.learner.updates == 0:
            self.update(learner=True, criterion=True)  # resumed after the warm-up, before the first training
        returns = [0.0] * envs.n
        for i in range(envs.n):
            envs.reset(i, seed=episode_seed(r.seed, envs.next_episode))
        while not self.budget_spent() and stop.signal is None:
            before = totals.steps
            active = range(min(envs.n, budget - before))  # the last batch may step fewer envs
            actions = self.learner.act_batch([envs.obs(i) for i in active])  # one forward pass for the batch
            steps = envs.step(dict(zip(active, actions, strict=True)))
            ended = [out for out in steps if out.terminated or out.truncated]
            for out in steps:
                returns[out.env] += out.reward
                self.learner.observe(out.record, self.store)
            for k, out in enumerate(steps):  # an episode's row right after its last record, not after an update
                if out.terminated or out.truncated:
                    self._end_episode(out, returns[out.env], later=steps[k + 1:])
                    returns[out.env] = 0.0
            self._train(crossed_warmup=bool(warmup) and before < warmup <= totals.steps)
            for out in ended:
                if totals.steps < budget:
                    envs.reset(out.env, seed=episode_seed(r.seed, envs.next_episode))
            for hook in hooks:
                hook.after_step(self)

    def _train(self, *, crossed_warmup: bool) -> None:
        """At the end of the expert's warm-up both train; after it, each on its own schedule."""
        if crossed_warmup:
            self.update(learner=True, criterion=True)
        elif self.totals.steps > self.recipe.budget.warmup_steps:
            self.update(learner=self.learner.wants_update(self.store), criterion=self.criterion.wants_update(self.store))

    def _end_episode(self, out: StepOut, ep_return: float, *, later: list[StepOut]) -> None:
        """The episode's ``progress.csv`` row, its totals counted through its last record (not
        through ``later``, the batch's records after it), as
        :meth:`~gatekit.runs.logs.RunLogs.restore_episodes` rebuilds it from the log."""
        t = self.totals
        self.logs.episode({"step": out.record.step + 1, "episode": out.record.episode, "env": out.env,
                           "return": ep_return, **out.info[self.envs.info_key]["episode"],
                           "total_expert_steps": t.expert_steps - sum(int(o.record.intervened) for o in later),
                           "total_switches": t.switches - sum(int(o.record.switched) for o in later)})

    # -- a whole run ---------------------------------------------------------------------------------
    def run(self, *, progress: bool, on_progress: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
        """Build, resume if asked, train, evaluate; then save what the ending calls for
        (:mod:`gatekit.runs.failures`): never leaves the run ``running``."""
        self._prepare()
        ending, stop = Ending(), StopFlag()
        try:
            self._train_and_evaluate(ending, stop, progress=progress, on_progress=on_progress)
        except BaseException as exc:
            failure = ending.fail(exc, self, signum=stop.signal)
            if failure is exc:
                raise
            if failure is not None:
                raise failure from exc
        finally:
            result = close_run(self, ending)
        if ending.problems:  # saving at the end failed (e.g. the disk filled up): one line, exit 2
            raise ending.problems[0]
        return result

    def _prepare(self) -> None:
        """Build the components, write a new run's ``recipe.yaml``, note the provenance, open
        the logs and the evaluator. A failure here leaves nothing running to close."""
        from gatekit.components import with_defaults
        from gatekit.provenance import collect

        if not self.resuming:  # saved with every default written out: the run says all it used
            self.recipe = with_defaults(self.recipe)
        r = self.recipe
        torch.set_num_threads(1)
        try:
            self.build()  # a new run claims its folder here: records.gkr is created exclusively
        except BaseException as exc:
            err = build_failed(exc, self)
            if err is exc:
                raise
            raise err from exc
        if not self.resuming:  # once the folder is ours: a run starting beside this one cannot overwrite it
            atomic_write_bytes(self.run_dir / "recipe.yaml", yaml.safe_dump(r.to_dict(), sort_keys=False).encode())
        self.provenance = collect(expert=getattr(self, "expert", None),  # None: the experts live in env workers
                                  expert_id=r.expert.id, expert_kwargs=r.expert.kwargs)
        self._t0 = time.perf_counter()
        self.logs = RunLogs(self.run_dir, tensorboard=r.log.tensorboard, wandb=self._open_wandb())
        self.evaluator = Evaluator(r, self.run_dir, state=self.state, logs=self.logs, wall=self.wall)

    def _open_wandb(self) -> Any:
        """The Weights & Biases log when the recipe asks for one (else None); if it cannot be
        opened, the record log and the envs are closed before the error goes up."""
        r = self.recipe
        if not r.log.wandb:
            return None
        from gatekit.runs.wandb_log import WandbLog

        try:
            return WandbLog(self.run_dir, config=r.to_dict(), project=r.log.wandb_project, mode=r.log.wandb_mode)
        except BaseException:
            self.store.close()
            self.envs.close()
            raise

    def _train_and_evaluate(self, ending: Ending, stop: StopFlag, *, progress: bool,
                            on_progress: Callable[[dict[str, Any]], None] | None) -> None:
        """Start (or resume), the expert's reference evaluation, the loop, the final evaluation;
        mark ``ending`` finished, or interrupted by the signal that stopped the loop."""
        from gatekit.progress import RunProgress

        r = self.recipe
        bar = RunProgress(total=r.budget.total_steps, enabled=progress, description=r.name, start=len(self.store))
        self.evaluator.on_episode = bar.phase
        with bar:
            self.start()
            ending.started = True
            if r.eval.expert_reference:
                self.evaluator.expert_reference(self.totals)
            with stop:
                progress_hook = ProgressHook(bar, on_progress)
                self.loop(stop, [EvaluationHook(every=r.eval.every_steps, episodes=r.eval.episodes,
                                                every_expert=r.eval.every_expert_steps),
                                 CheckpointHook(every=r.data.checkpoint_every), progress_hook])
                bar.update(self.totals.steps, progress_hook.live(self))
                if stop.signal is None:  # the bar stays, showing the final evaluation's episodes
                    stop.immediate = True  # a signal during the final evaluation stops it at once
                    self.evaluator.final(self.totals, self.learner)
                    bar.update(self.totals.steps, progress_hook.live(self))
        if stop.signal is None:
            ending.finished()
        else:
            ending.interrupted(stop.signal)


# -- entry points -------------------------------------------------------------------------------------
def train(recipe: Recipe | None = None, *, out: Path | None = None, resume: Path | None = None,
          progress: bool | None = None, on_progress: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    """Run a recipe (or resume the run in ``resume``) and return its results (also written to
    ``results.json`` in the run folder).

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
        if RunResult.read_status(run_dir) == "finished":
            raise RunDirError(f"run '{run_dir}' already finished; start a new run instead of --resume")
        check_log_present(run_dir)
    else:
        if recipe is None:
            raise ValueError("train() needs a recipe or resume=RUN_DIR")
        run_dir = Path(out) if out is not None else default_run_dir(recipe.name, recipe.seed)
        if (run_dir / "records.gkr").exists():
            raise RunDirError(f"'{run_dir}' already holds a run; use --resume {run_dir} or another --out")
    check_run_dir(run_dir)
    return Run(recipe, run_dir, resuming=resume is not None).run(
        progress=recipe.log.progress if progress is None else progress, on_progress=on_progress)


__all__ = ["Run", "episode_seed", "train"]
