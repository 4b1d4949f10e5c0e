"""RecordStore: every step of a run, columnar in memory and (optionally) durable on disk.

The store keeps one numpy array per :class:`~gatekit.types.Transition` field, grown by
doubling, so learners and criteria read whole columns without per-step Python objects. Given a
``path`` it also writes each step to a :class:`~gatekit.data.log.RecordLog` as it is appended
(see that module for the durability bound; expert-labelled steps, where the expert acted or
was queried, are the ones ``max_unsynced`` counts).

Columns (``store.column(name)`` or the attribute of the same name; read-only views of the
filled prefix, so they do not see later appends):

================ ===============================================================================
step, episode    int64: the wrapper's global step index and episode id
obs, next_obs    the observation space's dtype and shape (Discrete: int64 scalars)
novice_action    the action space's dtype and shape (Discrete: int64 scalars)
expert_action    same; where the expert was not queried: NaN (float actions), -1 (signed
                 integer actions), the dtype's maximum (unsigned) or False (bool)
executed_action  same as novice_action
intervened       bool: the expert's action was executed
expert_queried   bool: the expert looked at this step (``expert_action`` is real)
switched         bool: control passed novice -> expert on this step
reward, score    float64
terminated,      bool
truncated
================ ===============================================================================

Example:
    >>> import numpy as np, gymnasium as gym
    >>> from gatekit.types import Transition
    >>> store = RecordStore(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3))
    >>> store.append(Transition(step=0, episode=0, obs=np.zeros(2, np.float32), novice_action=1,
    ...     expert_action=2, executed_action=2, intervened=True, expert_queried=True,
    ...     switched=True, reward=0.0, next_obs=np.ones(2, np.float32), terminated=False,
    ...     truncated=False))
    >>> len(store), store.expert_action.tolist(), store.counts()["expert_steps"]
    (1, [2], 1)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

from gatekit.data.log import LogReport, RecordLog, RecordLogWarning
from gatekit.data.schema import describe, fill_value, record_schema
from gatekit.errors import RunDirError, nearest
from gatekit.types import Labels, Transition

__all__ = ["COLUMNS", "RecordStore"]

COLUMNS = ("step", "episode", "obs", "next_obs", "novice_action", "expert_action", "executed_action",
           "intervened", "expert_queried", "switched", "reward", "terminated", "truncated", "score", "env")
_ARRAY_FIELDS = ("obs", "next_obs", "novice_action", "executed_action")  # validated per append
_MIN_CAPACITY = 256


class RecordStore:
    """Columnar store of :class:`~gatekit.types.Transition` records, optionally durable.

    Args:
        observation_space: the env's observation space (Box, Discrete, MultiDiscrete or
            MultiBinary; flatten others first).
        action_space: the env's action space (same kinds).
        path: if given, a new record log is created there and every append is written to it.
            An existing file is never overwritten: use :meth:`open` to continue it.
        max_unsynced: at most this many expert-labelled steps wait for fsync (0: fsync each).
        sync_seconds: fsync pending steps at least this often.

    Raises:
        ConfigError: an unsupported space.
        RunDirError: ``path`` exists already, or its folder is missing or unwritable.

    Attributes:
        recovered_torn_bytes: bytes of torn tail cut off when the log was reopened (0 if none).
        recovered_torn_path: the side file those bytes were saved to (None if none).
        log_report: what :meth:`open` found in the log (a
            :class:`~gatekit.data.log.LogReport`: intact records, damaged regions with byte
            ranges, torn tail); None for a store that read no log (in memory or just created).
        lost_steps: steps whose records were lost to damage between intact records (0 unless
            :meth:`open` found such damage); :meth:`counts` includes them in ``total_steps``.
    """

    _log: RecordLog | None

    if TYPE_CHECKING:  # the column properties, installed after the class body
        step: np.ndarray
        episode: np.ndarray
        obs: np.ndarray
        next_obs: np.ndarray
        novice_action: np.ndarray
        expert_action: np.ndarray
        executed_action: np.ndarray
        intervened: np.ndarray
        expert_queried: np.ndarray
        switched: np.ndarray
        reward: np.ndarray
        terminated: np.ndarray
        truncated: np.ndarray
        score: np.ndarray
        env: np.ndarray

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, *,
                 path: str | os.PathLike[str] | None = None, max_unsynced: int = 8,
                 sync_seconds: float = 2.0) -> None:
        schema = record_schema(observation_space, action_space)
        self._init(observation_space, action_space, schema)
        self._alloc(_MIN_CAPACITY)
        if path is not None:
            self._log = RecordLog.create(path, schema, max_unsynced=max_unsynced, sync_seconds=sync_seconds)

    def _init(self, observation_space: gym.Space, action_space: gym.Space, schema: dict[str, Any]) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.schema = schema
        self._fields = {f["name"]: (np.dtype(f["dtype"]), tuple(f["shape"])) for f in schema["fields"]}
        self._log = None
        self._closed = False
        self._n = 0
        self._cols: dict[str, np.ndarray] = {}
        self._fill = fill_value(self._fields["expert_action"][0])
        self._expert_steps = self._expert_queries = self._switches = 0
        self._episode_ids: set[int] = set()
        self._last_episode: int | None = None
        self.recovered_torn_bytes = 0
        self.recovered_torn_path: Path | None = None
        self.log_report: LogReport | None = None
        self.lost_steps = 0
        self._lost_episodes = 0

    def _alloc(self, capacity: int) -> None:
        self._cols = {name: np.empty((capacity, *shape), dtype=dt) for name, (dt, shape) in self._fields.items()}
        # Payload order is the schema's field order.
        self._order = [self._cols[f["name"]] for f in self.schema["fields"]]

    @classmethod
    def open(cls, path: str | os.PathLike[str], observation_space: gym.Space, action_space: gym.Space, *,
             max_unsynced: int = 8, sync_seconds: float = 2.0,
             on_damage: Literal["warn", "raise", "ignore"] = "warn") -> RecordStore:
        """Load an existing record log and keep appending to it.

        A torn tail (a crash mid-write) is reported in :attr:`recovered_torn_bytes`, saved to
        a side file and cut off; every complete record before it is loaded. Damaged records
        between intact ones are skipped, every intact record on both sides is loaded, and the
        damaged bytes stay in the file (:attr:`log_report` says where).

        Step ids are never reused. The wrapper numbers steps by ``counts()["total_steps"]``;
        after damage between intact records that count is ``len(store) + lost_steps``, where
        :attr:`lost_steps` is the larger of the damaged records counted from the bytes and the
        gap the step column shows (last intact ``step + 1 - len(store)``), so numbering goes on
        after the last intact record. Likewise ``counts()["episodes"]`` is at least the last
        intact episode id + 1. A torn tail is cut as before and its step id is used again (its
        record never finished writing; its bytes are kept in the side file).

        Args:
            path: the log file.
            observation_space: the env's observation space (must match the log's).
            action_space: the env's action space (must match the log's).
            max_unsynced: see :class:`RecordStore`.
            sync_seconds: see :class:`RecordStore`.
            on_damage: when records were lost beyond a crash's torn write
                (:attr:`LogReport.damaged <gatekit.data.log.LogReport.damaged>`): ``"warn"``
                emits one :class:`~gatekit.data.log.RecordLogWarning` naming how many records
                were skipped and where; ``"raise"`` raises :class:`~gatekit.errors.RunDirError`
                before the file is touched; ``"ignore"`` leaves it to the caller
                (:attr:`log_report`).

        Raises:
            RunDirError: no log there, a corrupt header, another process writing it, a log
                written for different spaces (the run folder belongs to another env), or
                damage with ``on_damage="raise"``.
        """
        if on_damage not in ("warn", "raise", "ignore"):
            raise ValueError(f"on_damage must be 'warn', 'raise' or 'ignore', got {on_damage!r}")
        schema = record_schema(observation_space, action_space)
        p = Path(path)

        def check(found: dict[str, Any]) -> None:
            if found.get("spaces") == schema["spaces"] and found.get("fields") != schema["fields"]:
                def names(fields: Any) -> set[str]:
                    return {str(f.get("name")) if isinstance(f, dict) else str(f) for f in fields or []}

                diff = sorted(names(found.get("fields")) ^ names(schema["fields"]))
                raise RunDirError(
                    f"record log '{p}' has another record layout (columns {', '.join(diff) or 'in another order'} "
                    f"differ): it was written by another gatekit version; read it with that version, or start a "
                    f"new run folder (the file was not changed)")
            if found.get("fields") != schema["fields"] or found.get("spaces") != schema["spaces"]:
                have = found.get("spaces") or {}
                raise RunDirError(
                    f"record log '{p}' was written for observation {describe(have.get('observation', {}))} "
                    f"and action {describe(have.get('action', {}))}, but this env has observation "
                    f"{describe(schema['spaces']['observation'])} and action "
                    f"{describe(schema['spaces']['action'])}; this run folder belongs to another env: "
                    f"use a new run folder")

        def inspect(report: LogReport) -> None:
            if on_damage == "raise" and report.damaged:
                raise RunDirError(f"{report.summary()}; nothing was changed: inspect it with `gatekit check` "
                                  f"on the run folder, or open it with on_damage='warn' to keep the intact records")

        log, columns, info = RecordLog.open(p, max_unsynced=max_unsynced, sync_seconds=sync_seconds, check=check,
                                            inspect=inspect)
        self = cls.__new__(cls)
        self._init(observation_space, action_space, schema)
        self._cols = columns
        self._order = [columns[f["name"]] for f in schema["fields"]]
        self._n = n = int(info["records"])
        self._log = log
        self.recovered_torn_bytes = int(info["torn_bytes"])
        self.recovered_torn_path = info["torn_saved_to"]
        self._expert_steps = int(columns["intervened"][:n].sum())
        self._expert_queries = int(columns["expert_queried"][:n].sum())
        self._switches = int(columns["switched"][:n].sum())
        self._episode_ids = set(np.unique(columns["episode"][:n]).tolist())
        self._last_episode = int(columns["episode"][n - 1]) if n else None
        report: LogReport = info["report"]
        self.log_report = report
        if report.damaged_records:
            # Continue numbering after the last intact record: the byte count is exact for
            # flipped or zeroed bytes, the step column's gap for inserted or deleted ones.
            steps = columns["step"][:n]
            self.lost_steps = max(report.damaged_records, int(steps.max()) + 1 - n if n else 0)
            top = max(self._episode_ids, default=-1)
            self._lost_episodes = max(0, int(top) + 1 - len(self._episode_ids))
        if on_damage == "warn" and report.damaged:
            # warn_explicit with no source line: stderr shows exactly one line, which still
            # goes through the warning filters (-W error::..., pytest.warns, "ignore").
            warnings.warn_explicit(f"{report.summary()}; the intact records were kept and nothing was moved",
                                   RecordLogWarning, filename="gatekit", lineno=0, module="gatekit.data.store")
        return self

    # -- writing -------------------------------------------------------------------------
    def _grow(self) -> None:
        n = self._n
        old = self._cols
        self._alloc(max(_MIN_CAPACITY, 2 * len(old["step"])))
        for name, col in self._cols.items():
            col[:n] = old[name][:n]

    def _put(self, name: str, row: int, value: Any) -> None:
        col = self._cols[name]
        arr = np.asarray(value)
        if arr.shape != col.shape[1:]:
            raise ValueError(f"Transition.{name} has shape {arr.shape}, the space stores shape "
                             f"{col.shape[1:]}; record values of the env's spaces")
        if not np.can_cast(arr.dtype, col.dtype, casting="same_kind"):
            raise TypeError(f"Transition.{name} has dtype {arr.dtype}, which would be truncated to the "
                            f"space's {col.dtype}; record values of the env's spaces")
        col[row] = arr

    def append(self, t: Transition) -> None:
        """Add one step (and write it to the log, if any) before returning.

        Validates shapes and dtypes against the spaces (finiteness is the wrapper's job).

        ``expert_action`` is stored only where ``expert_queried`` (elsewhere the fill value).

        Raises:
            ValueError, TypeError: a field does not fit the spaces; nothing is recorded.
            RunDirError: the log could not be written (the step is recorded nowhere; every
                earlier one is intact) or, after writing it, not fsynced (the step is in memory
                and in the file; the store refuses further appends: resume from the file).
        """
        if self._closed:
            raise ValueError("RecordStore is closed; open the log again with RecordStore.open to append")
        if t.expert_queried and t.expert_action is None:
            raise ValueError(f"Transition at step {t.step} has expert_queried=True but no expert_action; "
                             f"record the expert's action")
        n = self._n
        if n == len(self._cols["step"]):
            self._grow()
        cols = self._cols
        # Fill row n (beyond len(self), so invisible) and commit only after the log accepted it.
        cols["step"][n] = t.step
        cols["episode"][n] = t.episode
        for name in _ARRAY_FIELDS:
            self._put(name, n, getattr(t, name))
        if not t.expert_queried:  # expert_queried defines which expert_action rows are real
            cols["expert_action"][n] = self._fill
        else:
            self._put("expert_action", n, t.expert_action)
        cols["intervened"][n] = t.intervened
        cols["expert_queried"][n] = t.expert_queried
        cols["switched"][n] = t.switched
        cols["reward"][n] = t.reward
        cols["terminated"][n] = t.terminated
        cols["truncated"][n] = t.truncated
        cols["score"][n] = t.score
        cols["env"][n] = t.env
        if self._log is not None:
            payload = b"".join([c[n].tobytes() for c in self._order])
            written = self._log.records
            try:
                self._log.append(payload, expert=bool(t.intervened) or bool(t.expert_queried))
            except BaseException:
                if self._log.records > written:  # written, only its fsync failed: keep memory = file
                    self._commit(t, n)
                raise
        self._commit(t, n)

    def _commit(self, t: Transition, n: int) -> None:
        self._n = n + 1
        self._expert_steps += bool(t.intervened)
        self._expert_queries += bool(t.expert_queried)
        self._switches += bool(t.switched)
        episode = int(t.episode)
        if episode != self._last_episode:
            self._episode_ids.add(episode)
            self._last_episode = episode

    def sync(self) -> None:
        """fsync every step appended so far (no-op without a log)."""
        if self._log is not None and not self._log.closed:
            self._log.sync()

    def close(self) -> None:
        """fsync and close the log; the columns stay readable, appends are refused (idempotent)."""
        self._closed = True
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The record log's path (None for an in-memory store)."""
        return None if self._log is None else self._log.path

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        where = f"'{self.path}'" if self.path is not None else "memory"
        return f"RecordStore({self._n} steps, {where})"

    def column(self, name: str) -> np.ndarray:
        """A read-only view of column ``name``'s filled rows (see the module docstring)."""
        try:
            col = self._cols[name]
        except KeyError:
            raise KeyError(f"RecordStore has no column {name!r}; {nearest(name, COLUMNS)}") from None
        view = col[:self._n]
        view.flags.writeable = False
        return view

    def expert_labelled(self, *, source: Labels = "intervened") -> tuple[np.ndarray, np.ndarray]:
        """``(obs, expert_action)`` copies of the steps that carry an expert label.

        Args:
            source: ``"intervened"``: the steps where the expert acted (its action is the one
                executed); ``"queried"``: every step where the expert was queried.
        """
        n = self._n
        if source == "intervened":
            mask = self._cols["intervened"][:n]
            return self._cols["obs"][:n][mask], self._cols["executed_action"][:n][mask]
        if source == "queried":
            mask = self._cols["expert_queried"][:n]
            return self._cols["obs"][:n][mask], self._cols["expert_action"][:n][mask]
        raise ValueError(f"source must be 'intervened' or 'queried', got {source!r}")

    def label_mask(self, labels: Labels) -> np.ndarray:
        """Read-only boolean mask of the rows that carry an expert label of kind ``labels``:
        ``"intervened"`` (the expert acted) or ``"queried"`` (the expert labelled the step)."""
        if labels == "intervened":
            return self.column("intervened")
        if labels == "queried":
            return self.column("expert_queried")
        raise ValueError(f"labels must be 'intervened' or 'queried', got {labels!r}")

    def count(self, labels: Labels) -> int:
        """How many steps carry an expert label of kind ``labels`` (see :meth:`label_mask`)."""
        if labels == "intervened":
            return self._expert_steps
        if labels == "queried":
            return self._expert_queries
        raise ValueError(f"labels must be 'intervened' or 'queried', got {labels!r}")

    def counts(self) -> dict[str, int]:
        """``total_steps``, ``expert_steps`` (intervened), ``expert_queries``, ``switches`` and
        ``episodes`` (distinct episode ids seen).

        After :meth:`open` found damage between intact records, ``total_steps`` and
        ``episodes`` include what was lost (:attr:`lost_steps`; episode ids up to the last
        intact one), so that numbering continues after the last intact record; the other
        counts can only count the intact records. Otherwise ``total_steps == len(store)``.
        """
        return {"total_steps": self._n + self.lost_steps, "expert_steps": self._expert_steps,
                "expert_queries": self._expert_queries, "switches": self._switches,
                "episodes": len(self._episode_ids) + self._lost_episodes}


def _column_property(name: str) -> property:
    def get(self: RecordStore) -> np.ndarray:
        return self.column(name)

    return property(get, doc=f"Read-only view of the ``{name}`` column (see :meth:`RecordStore.column`).")


for _name in COLUMNS:
    setattr(RecordStore, _name, _column_property(_name))
del _name
