"""gatekit: pluggable intervention gates for interactive imitation learning.

The public names; everything else is reachable through its subpackage.
"""

from typing import Any

from gatekit.config import Recipe, load_recipe
from gatekit.criteria import CRITERIA, Criterion
from gatekit.envs import ENVS
from gatekit.errors import ConfigError, ExpertError, GatekitError, RunDirError, SpaceMismatchError
from gatekit.experts import EXPERTS, Expert
from gatekit.learners import LEARNERS, Learner
from gatekit.policies import Policy, as_policy
from gatekit.types import Decision, GateContext, Transition, Verdict
from gatekit.wrappers import InterventionWrapper

__version__ = "0.1.0"

# The front doors, imported on first use (they pull in torch and the run machinery).
_LAZY = {"train": "gatekit.runs", "validate": "gatekit.runs", "RunResult": "gatekit.runs",
         "run_comparison": "gatekit.compare", "evaluate": "gatekit.evaluation"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gatekit' has no attribute {name!r}")

__all__ = [
    "RunResult", "evaluate", "run_comparison", "train", "validate",
    "CRITERIA", "ENVS", "EXPERTS", "LEARNERS", "ConfigError", "Criterion", "Decision", "Expert", "ExpertError",
    "GateContext", "GatekitError", "InterventionWrapper", "Learner", "Policy", "Recipe", "RunDirError",
    "SpaceMismatchError", "Transition", "Verdict", "as_policy", "load_recipe",
]
