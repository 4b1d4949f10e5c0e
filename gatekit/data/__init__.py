"""The durable data layer: every step recorded in columns, expert labels safe on disk.

* :class:`RecordStore`: the run's columnar record store, optionally backed by a log file.
* :func:`read_log`: read a record log (damage is skipped, every intact record is read, and
  what was skipped is reported in a :class:`LogReport`).
* :func:`scan_log`: check a record log's frames without loading it.
"""

from gatekit.data.log import LogReport, RecordLogWarning, read_log, scan_log
from gatekit.data.store import RecordStore

__all__ = ["LogReport", "RecordLogWarning", "RecordStore", "read_log", "scan_log"]
