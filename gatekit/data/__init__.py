"""The durable data layer: every step recorded in columns, expert labels safe on disk.

* :class:`RecordStore`: the run's columnar record store, optionally backed by a log file.
* :func:`read_log`: read a record log (a torn tail after a crash is skipped and reported).
* :func:`to_transitions`: selected steps as ``imitation`` Transitions for behaviour cloning.
"""

from gatekit.data.log import read_log
from gatekit.data.store import RecordStore, to_transitions

__all__ = ["RecordStore", "read_log", "to_transitions"]
