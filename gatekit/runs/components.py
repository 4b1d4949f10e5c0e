"""Checking a recipe's component arguments without building the components.

``gatekit train --dry-run`` builds every component (a simulator, an expert's network): right
for one recipe, too slow for a sweep's every grid point. :func:`check_arguments` resolves a
component's id in its registry and checks its keyword arguments against the factory's
signature and annotations, as building it would, and builds nothing.
"""

from __future__ import annotations

from gatekit.arguments import check_kwargs
from gatekit.config import Recipe

# what gatekit passes to each component itself (a recipe may not set these)
PROVIDED = {"env": ("split", "seed"), "expert": ("env",), "criterion": (),
            "learner": ("observation_space", "action_space", "seed")}


def check_arguments(recipe: Recipe, section: str) -> None:
    """Check the ``section`` component's id and keyword arguments (``env``, ``expert``,
    ``criterion`` or ``learner``).

    Raises:
        ConfigError: an unknown id, an unknown argument (naming the nearest valid one), a
            wrong type, or a missing required argument.
    """
    from gatekit.criteria import CRITERIA
    from gatekit.envs import ENVS
    from gatekit.experts import EXPERTS
    from gatekit.learners import LEARNERS

    registry = {"env": ENVS, "expert": EXPERTS, "criterion": CRITERIA, "learner": LEARNERS}[section]
    comp = getattr(recipe, section)
    check_kwargs(registry.get(comp.id, field=f"{section}.id"), dict(comp.kwargs), section, provided=PROVIDED[section])


__all__ = ["PROVIDED", "check_arguments"]
