"""A training run's checkpoint (``checkpoint/model.zip`` and ``checkpoint/state.json``) and
the SB3 callback that takes it every ``checkpoint_every_s`` seconds while drawing the progress
bar (see "Checkpoints and resuming" in :mod:`gatekit.expert_training`)."""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from gatekit.runs.stop import StopFlag

CHECKPOINT_DIR = "checkpoint"


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

    With ``stop``, training ends at the first env step
    after a signal; :meth:`save_last_update` then checkpoints the last PPO update.

    With ``log``, each checkpoint is also reported in one line (:meth:`checkpoint_line`): a run
    without a progress bar, in the background for hours, says how far it is.
    """

    def __init__(self, *, total: int, enabled: bool, checkpointer: Checkpointer | None, checkpoint_every_s: float = 600.0,
                 description: str = "training", state: dict[str, Any] | None = None, stop: StopFlag | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.stop = stop
        self.log = log
        self.total, self.enabled, self.description = total, enabled, description
        self.checkpointer, self.checkpoint_every_s = checkpointer, checkpoint_every_s
        state = state or {}
        self._progress: Any = None
        self._t0 = self._last_save = self._last_draw = 0.0
        self._start_timesteps = self._rollout_start = 0
        self._saved_timesteps = -1
        # Training seconds of earlier sessions (a resumed run), so the totals span all of them.
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self.resumes: list[int] = [int(t) for t in state.get("resumes", [])]
        # SB3's on-policy algorithms never fill their own success buffer (they do not pass
        # `dones` to it), so the callback keeps one: info["is_success"] of finished episodes.
        self.successes: deque[float] = deque((float(x) for x in state.get("successes", [])), maxlen=100)

    def _on_training_start(self) -> None:
        self._t0 = self._last_save = time.monotonic()
        self._start_timesteps = self._saved_timesteps = self._rollout_start = int(self.model.num_timesteps)
        if self.enabled:
            from gatekit.progress import live_bar

            self._progress = live_bar()
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
        return self.stop is None or self.stop.signal is None  # False: learn() stops here

    def _on_rollout_start(self) -> None:
        self._rollout_start = int(self.model.num_timesteps)
        if (self.checkpointer is not None and self.model.num_timesteps > self._saved_timesteps
                and time.monotonic() - self._last_save >= self.checkpoint_every_s):
            self.checkpointer.save(self.model, self.state())
            self._saved_timesteps = int(self.model.num_timesteps)
            self._last_save = time.monotonic()
            if self.log is not None:
                self.log(self.checkpoint_line())

    def checkpoint_line(self) -> str:
        """The line a checkpoint is reported with, e.g. ``checkpoint at 1,003,520 of 5,000,000
        steps (20%): 418 steps/s, training return 102.3, success 0.31 (last 100 episodes)``."""
        live, n = self.live(), int(self.model.num_timesteps)
        text = (f"checkpoint at {n:,} of {self.total:,} steps ({n / max(self.total, 1):.0%}): "
                f"{live['steps_per_second']:,.0f} steps/s, training return {live['episode_return']:.1f}, "
                f"success {live['success']:.2f} (last 100 episodes)")
        return text.replace("nan", "-")

    def save_last_update(self) -> int:
        """After a stopped ``learn()``: checkpoint the model as it was at the start of the
        rollout under way (its weights are those of the last update; the steps collected since
        are dropped and re-collected on resume), unless that is already saved. Returns the
        checkpoint's step count (0: no update yet and no checkpoint)."""
        self.model.num_timesteps = self._rollout_start
        if self.checkpointer is not None and self._rollout_start > self._saved_timesteps:
            self.checkpointer.save(self.model, self.state())
            self._saved_timesteps = self._rollout_start
        return self._saved_timesteps if self.checkpointer is not None and self.checkpointer.exists() else 0

    def _on_training_end(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=min(self.num_timesteps, self.total))
            self._progress.__exit__(None, None, None)
            self._progress = None


__all__ = ["CHECKPOINT_DIR", "Checkpointer", "ProgressCallback"]
