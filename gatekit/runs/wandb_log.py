"""Weights & Biases logging of a run, next to its CSV files and TensorBoard events (optional).

``log: {wandb: true}`` sends what the run writes to ``progress.csv``, ``eval.csv`` and
TensorBoard to a W&B run too, with the resolved recipe as its config and ``env_step`` as the
x axis of every chart (evaluations arrive after later training steps were logged, which W&B's
own step counter would refuse). The default ``wandb_mode: offline`` writes under
``<run>/wandb`` and never touches the network (``wandb sync`` uploads it later); ``online``
logs live, ``disabled`` turns it off. The ``WANDB_MODE`` environment variable overrides the
recipe, as in every W&B program.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from gatekit.errors import ConfigError, missing_extra


class WandbLog:
    """One W&B run mirroring a gatekit run's logs.

    Args:
        run_dir: the gatekit run folder (the W&B run's name, and where offline files go).
        config: the resolved recipe, as the W&B run's config.
        project: the W&B project.
        mode: ``offline``, ``online`` or ``disabled`` (``WANDB_MODE`` wins when set).
    """

    def __init__(self, run_dir: Path, *, config: dict[str, Any], project: str, mode: str) -> None:
        try:
            import wandb
        except ModuleNotFoundError as exc:
            raise (missing_extra("log.wandb", exc) or exc) from exc
        if mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"recipe: 'log.wandb_mode' must be offline, online or disabled, got {mode!r}")
        run_dir = Path(run_dir).resolve()
        # one W&B run per gatekit run folder, resumed with it
        run_id = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
        self.run = wandb.init(project=project, name=run_dir.name, id=run_id, resume="allow", dir=str(run_dir),
                              config=config, mode=os.environ.get("WANDB_MODE", mode))
        self.run.define_metric("env_step")
        self.run.define_metric("*", step_metric="env_step")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log({**metrics, "env_step": int(step)})

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
