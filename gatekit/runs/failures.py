"""How a run ends: its status, the one-line error, what is saved, and the exit code.

A process that ran a run never leaves it ``running``:

============ ===================================================================================
status       when, and what is saved
============ ===================================================================================
finished     the budget was spent and the final evaluation succeeded: ``novice_final.pt``,
             checkpoint, ``results.json``
interrupted  SIGINT / SIGTERM (or Ctrl-C): checkpoint and ``results.json`` (with ``signal``);
             the CLI exits 130 / 143. A person closing the expert's window
             (:class:`~gatekit.errors.PersonLeft`) too, without ``signal``; exit 130
failed       anything raised: the checkpoint at the failure and ``results.json`` with the
             error; the CLI prints that one line and exits 2. A failed final evaluation is
             ``failed`` too, so ``--resume`` runs it again
============ ===================================================================================

A component that raises is named in that line (:func:`describe`): the env, the expert, the
criterion or the learner (``plugin 'pkg.mod:Class'`` for plugins), found by walking the
traceback to the innermost frame of one of them; the original exception is kept as the
``__cause__`` for ``gatekit --traceback``. A full disk frees :class:`~gatekit.runs.rundir.DiskReserve`
first, so that the checkpoint and ``results.json`` still fit. A resume that was refused (the
checks of :func:`~gatekit.runs.checkpoint.resume_from`) writes nothing at all.
"""

from __future__ import annotations

import signal as signal_mod
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from gatekit.errors import EvaluationError, GatekitError, PersonLeft, RunDirError, RunFailed
from gatekit.runs.integrity import seal
from gatekit.runs.results import RunResult, run_result
from gatekit.runs.rundir import atomic_torch_save, is_disk_full

if TYPE_CHECKING:
    from gatekit.runs.loop import Run

ROLES = ("env", "expert", "criterion", "learner")


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def component_of(exc: BaseException, run: Any) -> str | None:
    """The role (``env``, ``expert``, ``criterion``, ``learner``) whose code raised ``exc``:
    the innermost frame of the traceback that is a method of one of the run's components."""
    owners: dict[int, str] = {}
    for role in ROLES:
        obj = getattr(run, role, None)
        while obj is not None and id(obj) not in owners:
            owners[id(obj)] = role
            # an env's wrappers and the env inside them are all "the env"
            obj = getattr(obj, "env", None) if role == "env" and isinstance(obj, gym.Wrapper) else None
    frames = [f for f, _ in traceback.walk_tb(exc.__traceback__)]
    for frame in reversed(frames):
        found = owners.get(id(frame.f_locals.get("self")))
        if found is not None:
            return found
    return None


def describe(exc: BaseException, run: Any) -> str:
    """One line for an unexpected exception of a run: who raised what, where, and the fix."""
    role = component_of(exc, run)
    totals = getattr(getattr(run, "envs", None), "totals", None)
    wrapper = getattr(run, "wrapper", None)  # one env in this process: its episode is known
    where = "" if totals is None else f" at step {totals.steps}" + (
        f" (episode {max(wrapper.episode, 0)})" if wrapper is not None else "")
    resume = f"gatekit train --resume {run.run_dir}"
    if role is None:
        return (f"the run stopped{where} on {_first_line(exc)} inside gatekit (please report it, with the output of "
                f"`gatekit --traceback ...`); the run is saved: {resume}")
    comp = getattr(run.recipe, role)
    who = f"plugin '{comp.id}' ({role})" if ":" in comp.id else f"{role} '{comp.id}'"
    return f"{who} raised {_first_line(exc)}{where}; the run is saved at that step: fix the {role}, then {resume}"


@dataclass
class Ending:
    """How the run is ending (filled in as it goes; read by :func:`close_run`)."""

    status: str = "running"
    error: str | None = None
    signal: int | None = None
    started: bool = False
    """The run got past its start (a new run: claimed its folder; a resumed one: passed every
    check of resume_from). Before that nothing is saved: a refused resume changes nothing."""
    disk_full: bool = False
    problems: list[GatekitError] = field(default_factory=list)

    def interrupted(self, signum: int | None) -> None:
        self.status, self.signal = "interrupted", signum or signal_mod.SIGINT

    def finished(self) -> None:
        self.status = "finished"

    def fail(self, exc: BaseException, run: Run, *, signum: int | None) -> BaseException | None:
        """Record ``exc``; returns the exception the run raises (None: end normally, interrupted)."""
        if isinstance(exc, KeyboardInterrupt):
            self.interrupted(signum)
            return None
        if isinstance(exc, PersonLeft):  # the person closed the expert's window: a deliberate stop
            self.status = "interrupted"
            return None
        self.status = "failed"
        self.disk_full = is_disk_full(exc)
        if isinstance(exc, GatekitError):
            self.error = str(exc)
            if isinstance(exc, EvaluationError) and self.started:
                self.error += f"; the run is saved: gatekit train --resume {run.run_dir} runs it again"
                return EvaluationError(self.error)
            return exc
        self.error = describe(exc, run)
        # SystemExit too: a component calling sys.exit() must not end gatekit with its code
        return RunFailed(self.error) if isinstance(exc, (Exception, SystemExit)) else exc


def _attempt(ending: Ending, run: Run, what: str, fn: Callable[[], Any]) -> bool:
    """Run one step of closing; a failure is kept (one line), and a full disk frees the reserve
    and tries once more."""
    for attempt in range(2):
        try:
            fn()
            return True
        except Exception as exc:
            reserve = getattr(run, "reserve", None)
            if attempt == 0 and is_disk_full(exc) and reserve is not None and reserve.held:
                reserve.release()
                continue
            err = exc if isinstance(exc, GatekitError) else RunDirError(f"could not {what}: {_first_line(exc)}")
            ending.problems.append(err)
            return False
    return False


def close_run(run: Run, ending: Ending) -> RunResult:
    """Save what the ending calls for (see the module docstring), then close every part of the
    run, each on its own (one failing does not stop the others)."""
    reserve = getattr(run, "reserve", None)
    if ending.disk_full and reserve is not None:
        reserve.release()
    result: RunResult | None = None
    _attempt(ending, run, "sync the record log", run.store.sync)
    if ending.started:
        _save_novice_and_checkpoint(run, ending)
    if ending.started or not run.resuming:
        result = _write_results(run, ending)
    for what, part in (("close the logs", "logs"), ("stop the evaluation worker", "evaluator"),
                       ("close the record log", "store"), ("close the envs", "envs")):
        obj = getattr(run, part, None)
        if obj is not None:
            _attempt(ending, run, what, obj.close)
    if reserve is not None:
        reserve.release()
    if result is None:
        result = run_result(run, ending.status, ending.error)
    return result


def _save_novice_and_checkpoint(run: Run, ending: Ending) -> None:
    """A finished run's ``novice_final.pt`` (failing to save it fails the run), then the checkpoint."""
    if ending.status == "finished" and not _attempt(
            ending, run, "save novice_final.pt",
            lambda: atomic_torch_save(seal(run.learner.state_dict()), run.run_dir / "novice_final.pt")):
        ending.status, ending.error = "failed", str(ending.problems[-1])
    _attempt(ending, run, "write the checkpoint", run.checkpoint)


def _write_results(run: Run, ending: Ending) -> RunResult:
    """``results.json`` (with the signal and the resume, when there were), then a finished run's plots."""
    done = run_result(run, ending.status, ending.error)
    if ending.signal is not None and ending.status == "interrupted":
        done.extra["signal"] = signal_mod.Signals(ending.signal).name
    resumed = getattr(run, "resumed", None)
    if resumed is not None:
        done.extra["resumed"] = resumed.to_dict()
    _attempt(ending, run, "write results.json", lambda: done.write(run.run_dir / "results.json"))
    if run.recipe.log.plots and ending.status == "finished":
        from gatekit.plots import plot_run

        run.logs.close()
        _attempt(ending, run, "draw the plots", lambda: plot_run(run.run_dir))
    return done


def exit_code(result: RunResult) -> int:
    """The CLI's exit code for a run that returned: 0 finished, 128 + the signal interrupted
    (130 SIGINT, 143 SIGTERM)."""
    if result.status == "interrupted":
        name = result.extra.get("signal", "SIGINT")
        try:
            return 128 + int(signal_mod.Signals[name])
        except KeyError:
            return 130
    return 0


def build_failed(exc: BaseException, run: Run) -> BaseException:
    """The exception to raise when building the run's components failed: gatekit's own errors
    as they are, anything else as one :class:`~gatekit.errors.RunFailed` line naming the
    component (nothing was recorded yet in this session). A new run's empty log is removed."""
    remove_unstarted_log(run)
    if isinstance(exc, GatekitError) or not isinstance(exc, (Exception, SystemExit)):
        return exc
    # components are built in the order of ROLES: the first one missing is the one being built
    # (with env.n_envs > 1 the envs and experts report their own errors, as GatekitErrors)
    built_here = ROLES if run.recipe.env.n_envs <= 1 else ("criterion", "learner")
    role = component_of(exc, run) or next((r for r in built_here if not hasattr(run, r)), None)
    if role is None:
        return RunFailed(f"building the run failed on {_first_line(exc)} (run with `gatekit --traceback ...` for the "
                         f"full trace)")
    comp = getattr(run.recipe, role)
    who = f"plugin '{comp.id}' ({role})" if ":" in comp.id else f"{role} '{comp.id}'"
    return RunFailed(f"{who} raised {_first_line(exc)} while the run was being set up; fix the {role} and run again")


def remove_unstarted_log(run: Run) -> None:
    """A new run whose components failed to build after its record log was created: remove
    that log if it holds no record (it is this process's own empty file), so that the same
    ``--out`` can be used again once the recipe is fixed. Never touches a resumed run."""
    store = getattr(run, "store", None)
    if run.resuming or store is None or store.path is None or len(store):
        return
    path: Path = store.path
    store.close()
    try:
        path.unlink()
    except OSError:
        pass


__all__ = ["Ending", "build_failed", "close_run", "component_of", "describe", "exit_code", "remove_unstarted_log"]
