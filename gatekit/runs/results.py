"""``results.json``: one typed reader and writer (schema ``gatekit.results/1``, docs/results.md).

:class:`RunResult` is what a run reports: its counters, the final evaluation of the novice
alone (``test``), the expert's own figures on the same episodes (``expert_test``), the
learning curve (``evaluations``) and its status. The CLI table, the plots, ``gatekit compare``
and the benchmarks all read it through :meth:`RunResult.read`; nothing else parses the file.

The JSON layout is flat and stable (fields are only ever added): test metrics are
``test_<metric>`` objects ``{"mean", "std", "ci95", "n"}``, the expert's are
``expert_test_<metric>``, and each evaluation of the curve is a flat row of means.

Example:
    >>> r = RunResult(status="finished", recipe="demo", seed=0, env="echo", expert="echo",
    ...               criterion="aim", learner="aim", total_steps=100, expert_steps=25,
    ...               expert_queries=30, switches=4, episodes=10, wall_seconds=1.5,
    ...               test={"success": Stat(0.5, 0.5, 0.25, 16)})
    >>> d = r.to_json()
    >>> d["takeover_rate"], d["test_success"]["mean"]
    (0.25, 0.5)
    >>> RunResult.from_json(d) == r
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekit.errors import RunDirError
from gatekit.evaluation import Stat

if TYPE_CHECKING:
    from gatekit.runs.loop import Run

RESULTS_SCHEMA = "gatekit.results/1"
STATUSES = ("running", "finished", "interrupted", "failed")


@dataclass(frozen=True)
class EvalPoint:
    """One point of the learning curve: where training stood, and the test metrics' means."""

    step: int
    expert_steps: int
    switches: int
    metrics: dict[str, float] = field(default_factory=dict)
    """Mean of each test metric (``success``, ``return``, ...), without the ``test_`` prefix."""
    episodes: int = 0
    """Test episodes behind the means (0: not recorded, results of older runs)."""
    tag: str = ""
    """``step-N`` for a periodic evaluation, ``final`` for the final one ("" in older results)."""

    @property
    def final(self) -> bool:
        return self.tag == "final"

    def get(self, metric: str, default: float = math.nan) -> float:
        return float(self.metrics.get(metric, default))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "expert_steps": self.expert_steps, "switches": self.switches,
                               **{f"test_{k}": v for k, v in self.metrics.items()}}
        if self.episodes:
            out["episodes"] = self.episodes
        if self.tag:
            out["tag"] = self.tag
        return out

    @staticmethod
    def from_json(d: dict[str, Any]) -> EvalPoint:
        return EvalPoint(step=int(d["step"]), expert_steps=int(d["expert_steps"]), switches=int(d.get("switches", 0)),
                         metrics={k[5:]: float(v) for k, v in d.items() if k.startswith("test_")},
                         episodes=int(d.get("episodes", 0)), tag=str(d.get("tag", "")))


@dataclass(kw_only=True)
class RunResult:
    """The figures of one run (see the module docstring for the JSON layout)."""

    status: str
    recipe: str
    seed: int
    env: str
    expert: str
    criterion: str
    learner: str
    total_steps: int
    expert_steps: int
    expert_queries: int
    switches: int
    episodes: int
    wall_seconds: float
    records_recovered_torn_bytes: int = 0
    test: dict[str, Stat] = field(default_factory=dict)
    """The final evaluation of the novice alone, per metric."""
    expert_test: dict[str, Stat] = field(default_factory=dict)
    """The expert alone on the same test episodes, per metric (when measured)."""
    evaluations: list[EvalPoint] = field(default_factory=list)
    """The learning curve, the final evaluation last."""
    error: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    """What the run was made with (:func:`gatekit.provenance.collect`): the expert's id, class
    and files with their sha256, package versions, gatekit's git commit."""
    person: dict[str, Any] | None = None
    """A person's effort when a person was the expert (the keyboard expert): plain values, see
    docs/results.md; None otherwise."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further top-level fields, kept as they are (e.g. the record log's damage report)."""
    schema: str = RESULTS_SCHEMA

    @property
    def takeover_rate(self) -> float:
        """Expert-involved steps / total steps."""
        return self.expert_steps / self.total_steps if self.total_steps else 0.0

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def metric(self, name: str) -> float:
        """The final test mean of ``name`` (``success``, ``return``, ...), NaN if not measured."""
        s = self.test.get(name)
        return s.mean if s is not None else math.nan

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": self.schema, "status": self.status, "recipe": self.recipe, "seed": self.seed,
            "env": self.env, "expert": self.expert, "criterion": self.criterion, "learner": self.learner,
            "total_steps": self.total_steps, "expert_steps": self.expert_steps,
            "expert_queries": self.expert_queries, "switches": self.switches, "episodes": self.episodes,
            "takeover_rate": self.takeover_rate, "wall_seconds": self.wall_seconds,
            "records_recovered_torn_bytes": self.records_recovered_torn_bytes,
        }
        out.update({f"test_{k}": s.as_dict() for k, s in self.test.items()})
        out.update({f"expert_test_{k}": s.as_dict() for k, s in self.expert_test.items()})
        out["evaluations"] = [e.to_json() for e in self.evaluations]
        if self.provenance:
            out["provenance"] = self.provenance
        if self.person is not None:
            out["person"] = dict(self.person)
        out.update(self.extra)
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunResult:
        """Read the content of a ``results.json``; raises ``ValueError`` naming a bad field."""
        if not isinstance(d, dict):
            raise ValueError("results.json must hold a JSON object")
        known = {"schema", "status", "recipe", "seed", "env", "expert", "criterion", "learner", "total_steps",
                 "expert_steps", "expert_queries", "switches", "episodes", "takeover_rate", "wall_seconds",
                 "records_recovered_torn_bytes", "evaluations", "error", "provenance", "person"}
        try:
            return cls(
                schema=str(d.get("schema", RESULTS_SCHEMA)), status=str(d["status"]), recipe=str(d["recipe"]),
                seed=int(d["seed"]), env=str(d["env"]), expert=str(d["expert"]), criterion=str(d["criterion"]),
                learner=str(d["learner"]), total_steps=int(d["total_steps"]), expert_steps=int(d["expert_steps"]),
                expert_queries=int(d["expert_queries"]), switches=int(d["switches"]), episodes=int(d["episodes"]),
                wall_seconds=float(d["wall_seconds"]),
                records_recovered_torn_bytes=int(d.get("records_recovered_torn_bytes", 0)),
                test={k[5:]: _stat(v) for k, v in d.items() if k.startswith("test_")},
                expert_test={k[12:]: _stat(v) for k, v in d.items() if k.startswith("expert_test_")},
                evaluations=[EvalPoint.from_json(e) for e in d.get("evaluations", [])],
                error=d.get("error"),
                provenance=dict(d.get("provenance") or {}),
                person=_person(d.get("person")),
                extra={k: v for k, v in d.items()
                       if k not in known and not k.startswith("test_") and not k.startswith("expert_test_")},
            )
        except KeyError as exc:
            raise ValueError(f"results.json has no field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"results.json has a malformed field ({exc})") from None

    # -- files ----------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | Path) -> RunResult:
        """Read ``path`` (a ``results.json`` or the run folder holding one).

        Raises:
            RunDirError: the file is missing, not JSON, or not a run's results.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise RunDirError(f"'{path}' does not exist; the run has not written its results yet") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunDirError(f"'{path}' is not valid JSON; rerun the run with --resume to rewrite it") from None
        except OSError as exc:
            raise RunDirError(f"'{path}' cannot be read ({exc.strerror})") from None
        try:
            return cls.from_json(raw)
        except ValueError as exc:
            raise RunDirError(f"'{path}': {exc}") from None

    @classmethod
    def read_status(cls, path: str | Path) -> str | None:
        """The ``status`` of a run folder's ``results.json``, or None when it has none (or an
        unreadable one)."""
        try:
            return cls.read(path).status
        except RunDirError:
            return None

    def write(self, path: str | Path) -> None:
        """Write atomically to ``path`` (a file, or a run folder)."""
        from gatekit.runs.rundir import atomic_write_bytes

        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        atomic_write_bytes(path, json.dumps(self.to_json(), indent=2).encode())


def run_result(run: Run, status: str, error: str | None) -> RunResult:
    """The :class:`RunResult` of ``run`` as it stands: its counters, the evaluations its state
    holds (the last ``final`` one is ``test``, the expert's reference ``expert_test``), the
    record log's repairs and a person's effort."""
    from gatekit.runs.evaluator import EXPERT_TAG, FINAL_TAG

    t, r = run.totals, run.recipe
    evals = run.state.evals
    final = next((e for e in reversed(evals) if e["tag"] == FINAL_TAG), None)
    expert = next((e for e in evals if e["tag"] == EXPERT_TAG), None)
    extra: dict[str, Any] = {}
    report = getattr(run.store, "log_report", None)
    if report is not None and not report.clean:
        extra["record_log"] = report.to_dict()
    person = run.person()
    return RunResult(
        status=status, recipe=r.name, seed=r.seed, env=r.env.id, expert=r.expert.id, criterion=r.criterion.id,
        learner=r.learner.id, total_steps=t.steps, expert_steps=t.expert_steps, expert_queries=t.expert_queries,
        switches=t.switches, episodes=t.episodes, wall_seconds=run.wall(),
        records_recovered_torn_bytes=int(getattr(run.store, "recovered_torn_bytes", 0)),
        test=_test_stats(final), expert_test=_test_stats(expert),
        evaluations=[EvalPoint(step=e["step"], expert_steps=e["expert_steps"], switches=e["switches"],
                               metrics={k[5:]: v["mean"] for k, v in e.items() if k.startswith("test_")},
                               episodes=int(e.get("episodes", 0)), tag=str(e.get("tag", "")))
                     for e in evals if e["tag"] != EXPERT_TAG],
        error=error, provenance=getattr(run, "provenance", {}),
        person=person.effort().as_dict() if person is not None else None, extra=extra)


def _test_stats(row: dict[str, Any] | None) -> dict[str, Stat]:
    """The ``test_<metric>`` entries of an evaluation row, as stats keyed by metric."""
    if row is None:
        return {}
    return {k[5:]: _stat(v) for k, v in row.items() if k.startswith("test_")}


def _stat(v: Any) -> Stat:
    if isinstance(v, dict):
        return Stat(float(v["mean"]), float(v["std"]), float(v["ci95"]), int(v["n"]))
    return Stat(float(v), math.nan, math.nan, 1)


def _person(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ValueError(f"'person' must be an object, got {type(v).__name__}")
    return dict(v)
