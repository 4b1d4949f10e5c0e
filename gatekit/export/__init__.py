"""Records as other libraries' datasets: ``imitation`` Transitions (behaviour cloning)."""

from gatekit.export.imitation import to_transitions

__all__ = ["to_transitions"]
