"""gatekit: pluggable intervention gates for interactive imitation learning.

The public names; everything else is reachable through its subpackage.
"""

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

__all__ = [
    "CRITERIA", "ENVS", "EXPERTS", "LEARNERS", "ConfigError", "Criterion", "Decision", "Expert", "ExpertError",
    "GateContext", "GatekitError", "InterventionWrapper", "Learner", "Policy", "Recipe", "RunDirError",
    "SpaceMismatchError", "Transition", "Verdict", "as_policy", "load_recipe",
]
