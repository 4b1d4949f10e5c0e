"""What a run writes as it goes: CSV rows, TensorBoard scalars, and (optionally) W&B.

Each CSV row goes to the kernel when it is written (one ``write`` per row), so a killed run
loses no row; a row cut short by the kill is dropped when the file is opened again. On resume
``eval.csv`` is rewritten from the checkpoint's evaluations (:meth:`RunLogs.reset_evaluations`):
evaluations that finished after the last checkpoint are run again, so keeping their rows would
count them twice, and ``results.json`` and ``eval.csv`` always agree.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gatekit.runs.rundir import atomic_write_bytes

if TYPE_CHECKING:
    from gatekit.data import RecordStore


class RunLogs:
    """The run's CSV files (``progress.csv`` per training episode, ``eval.csv`` per evaluation),
    TensorBoard events (``tb/``, when enabled and installed) and a W&B run (``wandb``: a
    :class:`~gatekit.runs.wandb_log.WandbLog`, when the recipe asks for one)."""

    EP_FIELDS = ("step", "episode", "return", "length", "expert_steps", "expert_queries", "switches",
                 "takeover_rate", "total_expert_steps", "total_switches", "env")
    EVAL_FIELDS = ("step", "expert_steps", "switches", "episodes", "test_success", "test_return", "wall_seconds")

    def __init__(self, run_dir: Path, *, tensorboard: bool, wandb: Any = None) -> None:
        self.run_dir = run_dir
        self.wandb = wandb
        self._files: dict[str, Any] = {}
        self._writers: dict[str, csv.DictWriter] = {}
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                self.tb = None

    def _writer(self, name: str, fields: tuple[str, ...]) -> csv.DictWriter:
        if name not in self._writers:
            path = self.run_dir / name
            _drop_torn_row(path)
            new = not path.exists() or path.stat().st_size == 0
            fh = open(path, "a", newline="")
            w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
            if new:
                w.writeheader()
            self._files[name], self._writers[name] = fh, w
        return self._writers[name]

    def episode(self, row: dict[str, Any]) -> None:
        self._writer("progress.csv", self.EP_FIELDS).writerow(row)
        self._files["progress.csv"].flush()
        if self.tb is not None:
            step = row["step"]
            for k in ("return", "length", "takeover_rate", "switches"):
                self.tb.add_scalar(f"train/episode_{k}", row[k], step)
            self.tb.add_scalar("train/total_expert_steps", row["total_expert_steps"], step)
        if self.wandb is not None:
            self.wandb.log({**{f"train/episode_{k}": row[k] for k in ("return", "length", "takeover_rate", "switches")},
                            "train/total_expert_steps": row["total_expert_steps"]}, row["step"])

    def restore_episodes(self, store: RecordStore) -> int:
        """Write the row of every finished episode of ``store`` (the record log) that
        ``progress.csv`` lacks, rebuilt from its records, and return how many.

        A run killed between an episode's last record and its row leaves the log one episode
        ahead of ``progress.csv``; a resumed run calls this first, so that the file again has a
        row for every finished episode. The rebuilt row is the one the run would have written
        (:meth:`episode`: the same fields, the same sums in the same order)."""
        writer = self._writer("progress.csv", self.EP_FIELDS)  # drops a torn last row first
        text = (self.run_dir / "progress.csv").read_bytes().decode("utf-8", "replace")  # damage read, not raised
        have = {line.split(",")[1] for line in text.splitlines()[1:] if "," in line}  # numeric rows: no quoting
        ended = np.flatnonzero(store.terminated | store.truncated)
        missing = [int(i) for i in ended if str(int(store.episode[i])) not in have]
        if not missing:
            return 0
        ids, of = np.unique(store.episode, return_inverse=True)  # per episode, in one pass each:
        length = np.bincount(of)
        ep_return = np.bincount(of, weights=store.reward)  # summed in log order, as the loop sums
        expert_steps, queries, switches = (np.bincount(of, weights=store.column(c)).astype(np.int64)
                                           for c in ("intervened", "expert_queried", "switched"))
        total_expert, total_switches = np.cumsum(store.intervened), np.cumsum(store.switched)
        for i in missing:
            k = of[i]
            writer.writerow({"step": int(store.step[i]) + 1, "episode": int(ids[k]), "return": float(ep_return[k]),
                             "length": int(length[k]), "expert_steps": int(expert_steps[k]),
                             "expert_queries": int(queries[k]), "switches": int(switches[k]),
                             "takeover_rate": int(expert_steps[k]) / int(length[k]),
                             "total_expert_steps": int(total_expert[i]), "total_switches": int(total_switches[i]),
                             "env": int(store.env[i])})
        self._files["progress.csv"].flush()
        return len(missing)

    def evaluation(self, row: dict[str, Any]) -> None:
        flat = {k: (v["mean"] if isinstance(v, dict) else v) for k, v in row.items()}
        self._writer("eval.csv", self.EVAL_FIELDS).writerow(flat)
        self._files["eval.csv"].flush()
        if self.tb is not None:
            for k, v in flat.items():
                if k.startswith("test_") and isinstance(v, float):
                    self.tb.add_scalar(f"eval/{k[5:]}", v, row["step"])
                    self.tb.add_scalar(f"eval_vs_expert_steps/{k[5:]}", v, row["expert_steps"])
        if self.wandb is not None:
            self.wandb.log({**{f"eval/{k[5:]}": v for k, v in flat.items() if k.startswith("test_") and isinstance(v, float)},
                            "eval/expert_steps": row["expert_steps"]}, row["step"])

    def reset_evaluations(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite ``eval.csv`` to hold exactly ``rows`` (the checkpoint's evaluations; rows
        tagged ``expert`` are not part of it), atomically."""
        fh = self._files.pop("eval.csv", None)
        self._writers.pop("eval.csv", None)
        if fh is not None:
            fh.close()
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=list(self.EVAL_FIELDS), extrasaction="ignore")
        w.writeheader()
        for row in rows:
            if row.get("tag") != "expert":
                w.writerow({k: (v["mean"] if isinstance(v, dict) else v) for k, v in row.items()})
        atomic_write_bytes(self.run_dir / "eval.csv", buf.getvalue().encode())

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"update/{k}", v, step)
        if self.wandb is not None and metrics:
            self.wandb.log({f"update/{k}": v for k, v in metrics.items()}, step)

    def flush(self) -> None:
        for fh in self._files.values():
            fh.flush()
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        """Flush and close every file (idempotent)."""
        self.flush()
        for fh in self._files.values():
            fh.close()
        self._files.clear()
        self._writers.clear()
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.close()
            self.wandb = None


def _drop_torn_row(path: Path) -> None:
    """Cut a last row that a kill left without its newline (the next row would join it)."""
    try:
        with open(path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass
