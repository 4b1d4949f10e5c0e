"""An append-only, self-describing binary log of fixed-size records.

Expert-labelled steps are a person's time, so the log is built to lose none of them to a
crash and to stay usable after one.

File layout (all integers little-endian)::

    b"GATEKIT-RECORDS 1\\n"                      magic line, format version 1
    u32 schema_length, u32 crc32(schema)        then schema_length bytes of UTF-8 JSON
    frame, frame, ...                           one frame per record, appended in order

    frame = u32 payload_length, u32 crc32(payload), payload
    payload = each field's raw little-endian bytes, concatenated in schema order

The JSON schema holds ``format`` (1), ``record_size`` (payload bytes, the same for every frame),
``fields`` (a list of ``{"name", "dtype", "shape"}``, ``dtype`` a numpy dtype string such as
``"<f4"``) and free-form metadata (gatekit puts the spaces there). The file is readable without
gatekit; with numpy alone::

    raw = open(path, "rb").read()
    n = int.from_bytes(raw[18:22], "little")          # 18 == len(magic)
    schema = json.loads(raw[26:26 + n])
    dtype = np.dtype({"names": [f["name"] for f in schema["fields"]],
                      "formats": [(f["dtype"], tuple(f["shape"])) for f in schema["fields"]],
                      "offsets": <8 + running sum of field sizes>,
                      "itemsize": 8 + schema["record_size"]})
    records = np.frombuffer(raw, dtype, offset=26 + n, count=(len(raw) - 26 - n) // dtype.itemsize)

(then check each frame's length and CRC, as :func:`read_log` does).

Durability. Every frame goes to the kernel with one ``os.write`` (looped over short writes)
before :meth:`RecordLog.append` returns; nothing is buffered in user space. Hence:

* **Process crash, SIGKILL, OOM kill**: every record whose ``append`` returned is in the file.
  At most one frame (the one being written) is torn.
* **Power loss or OS crash**: only records not yet fsynced can be lost. A record is
  *expert-labelled* when the caller says so (gatekit: the expert acted or was queried). With
  ``max_unsynced = k``, whenever no ``append`` is running, at most ``k`` expert-labelled records
  that ``append`` returned from are not yet covered by a completed ``fsync``; ``k = 0`` fsyncs
  before ``append`` returns on every expert-labelled record. Novice-only records never trigger
  an fsync on their own: they become durable with the next expert-labelled record's fsync, on
  :meth:`~RecordLog.sync`/:meth:`~RecordLog.close`, or by the timer below.
* **Time bound**: when ``0 < sync_seconds < inf``, a background thread fsyncs the file once the
  oldest un-fsynced record has waited ``sync_seconds``, so (scheduling delays and the fsync's
  own duration aside) no record stays un-fsynced longer than ``sync_seconds``, even while the
  caller is busy elsewhere (training). ``append`` also checks the age itself.
  ``sync_seconds = 0`` fsyncs every record; ``math.inf`` disables the timer.

What a power loss can lose is thus bounded by ``max(k expert-labelled records, sync_seconds of
records)``. A crash leaves at worst a torn tail: :func:`read_log` reports it (``torn_bytes``)
and never raises for it. :meth:`RecordLog.open` copies such a tail to a side file
(``<name>.torn-<offset>-<time>``, so nothing is ever destroyed) before truncating it and
appending after the last intact record.

Damage. A damaged record costs that record only. A frame whose length or CRC is wrong
anywhere in the file (a flipped bit, a zeroed block, even inserted or deleted bytes) is
skipped: the reader resynchronises on the next intact frame (see :class:`_Frames` for why a
false match is practically impossible) and reads every intact record before and after it.
:class:`LogReport` says what was skipped: the damaged regions between intact records (count
and byte ranges) apart from the torn tail. Reopening for append leaves damaged regions in
place (nothing is moved or rewritten) and only cuts the torn tail. Damage in the header
(magic line, schema) is a one-line :class:`~gatekit.errors.RunDirError`: without the schema
no record can be read.

Write errors (disk full, permission, I/O) raise :class:`~gatekit.errors.RunDirError` with one
line naming the file and the fix; a half-written frame is truncated away, so the log stays
readable and a later ``append`` (after freeing space) continues it. A failed ``fsync`` leaves the
log refusing further writes (the kernel may have dropped the data): resume from the file.
"""

from __future__ import annotations

import errno
import json
import math
import os
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gatekit.errors import RunDirError

try:  # advisory lock against two runs appending to one file; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["FORMAT_VERSION", "MAGIC", "LogReport", "RecordLog", "RecordLogWarning", "make_schema", "read_log",
           "scan_log"]

MAGIC = b"GATEKIT-RECORDS 1\n"
FORMAT_VERSION = 1
_U32X2 = struct.Struct("<II")
_MAX_SCHEMA_BYTES = 1 << 20  # a corrupt length must not make us allocate gigabytes
_DTYPE_KINDS = "biufc"  # plain numbers only: object/void/string dtypes cannot be raw bytes
_READ_CHUNK_BYTES = 16 << 20
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)

_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


# -- schema ---------------------------------------------------------------------------------


def _le(dtype: Any) -> np.dtype:
    """``dtype`` with little-endian byte order (a no-op for one-byte types)."""
    dt = np.dtype(dtype)
    if dt.kind not in _DTYPE_KINDS:
        raise TypeError(f"record field dtype {dt} is not a plain number type (bool, int, uint, float, complex)")
    return dt.newbyteorder("<")


def make_schema(fields: Sequence[tuple[str, Any, Sequence[int]]], **meta: Any) -> dict[str, Any]:
    """Build a log schema from ``(name, dtype, shape)`` triples plus JSON-able metadata.

    Args:
        fields: the record's fields, in payload order.
        **meta: extra top-level keys stored in the header (must not shadow the reserved ones).

    Returns:
        The schema dict, as stored in the header and returned by :func:`read_log`.
    """
    names = [name for name, _, _ in fields]
    if len(set(names)) != len(names):
        raise ValueError(f"record field names must be unique, got {names}")
    reserved = {"format", "record_size", "fields"} & set(meta)
    if reserved:
        raise ValueError(f"schema metadata may not use the reserved keys {sorted(reserved)}")
    out = []
    size = 0
    for name, dtype, shape in fields:
        dt = _le(dtype)
        shp = [int(s) for s in shape]
        if any(s < 0 for s in shp):
            raise ValueError(f"record field {name!r} has a negative dimension in shape {shp}")
        out.append({"name": str(name), "dtype": dt.str, "shape": shp})
        size += dt.itemsize * math.prod(shp)
    return {"format": FORMAT_VERSION, "record_size": size, "fields": out, **meta}


def _encode_header(schema: Mapping[str, Any]) -> bytes:
    body = json.dumps(schema, sort_keys=True, allow_nan=False, separators=(",", ":")).encode()
    return MAGIC + _U32X2.pack(len(body), zlib.crc32(body)) + body


def _payload_dtype(schema: Mapping[str, Any]) -> np.dtype:
    """Structured dtype of one whole frame whose named fields are the payload's fields."""
    names, formats, offsets = [], [], []
    off = _U32X2.size
    for f in schema["fields"]:
        dt = np.dtype(f["dtype"])
        shape = tuple(f["shape"])
        names.append(f["name"])
        formats.append((dt, shape) if shape else dt)
        offsets.append(off)
        off += dt.itemsize * math.prod(shape)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": off})


def _check_magic(magic: bytes, path: Path, corrupt: Any) -> None:
    """The magic line: this format and version, or a one-line error saying what it is."""
    if magic == MAGIC:
        return
    if magic.startswith(b"GATEKIT-RECORDS ") and magic.endswith(b"\n"):
        version = magic[len(b"GATEKIT-RECORDS "):-1].decode(errors="replace")
        raise RunDirError(f"record log '{path}' has format version {version}, this gatekit reads "
                          f"version {FORMAT_VERSION}; use the gatekit release that wrote it")
    if len(magic) < len(MAGIC) and MAGIC.startswith(magic):
        raise corrupt("file ends inside the magic line")
    raise RunDirError(f"'{path}' is not a gatekit record log (bad magic line); point gatekit at a "
                      f"run folder's records.gkr or start a new run folder")


def _check_schema(schema: Any) -> None:
    """Raise ValueError unless ``schema`` is a valid field list whose sizes add up."""
    if not isinstance(schema, dict) or schema.get("format") != FORMAT_VERSION:
        raise ValueError("format")
    fields = schema["fields"]
    size = 0
    for f in fields:
        dt = np.dtype(str(f["dtype"]))
        if dt.kind not in _DTYPE_KINDS or dt != _le(dt) or not isinstance(f["name"], str):
            raise ValueError("dtype")
        shape = [int(s) for s in f["shape"]]
        if any(s < 0 for s in shape):
            raise ValueError("shape")
        size += dt.itemsize * math.prod(shape)
    if size != schema["record_size"] or len({f["name"] for f in fields}) != len(fields):
        raise ValueError("size")


def _parse_header(fh: Any, path: Path) -> tuple[dict[str, Any], int]:
    """Read and validate the header at the start of ``fh``; returns (schema, header_bytes)."""

    def corrupt(what: str) -> RunDirError:
        return RunDirError(f"record log '{path}' has a corrupt header ({what}); restore the file from a "
                           f"backup or start a new run folder")

    _check_magic(fh.read(len(MAGIC)), path, corrupt)
    head = fh.read(_U32X2.size)
    if len(head) < _U32X2.size:
        raise corrupt("file ends before the schema length")
    length, crc = _U32X2.unpack(head)
    if length > _MAX_SCHEMA_BYTES:
        raise corrupt(f"schema length {length} is implausible")
    body = fh.read(length)
    if len(body) < length:
        raise corrupt("file ends inside the schema")
    if zlib.crc32(body) != crc:
        raise corrupt("schema checksum mismatch")
    try:
        schema = json.loads(body.decode())
        _check_schema(schema)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise corrupt("schema is not a valid field list") from None
    return schema, len(MAGIC) + _U32X2.size + length


# -- reading --------------------------------------------------------------------------------


class RecordLogWarning(UserWarning):
    """A record log lost records beyond the one torn write a crash can leave (see :class:`LogReport`)."""


@dataclass(frozen=True)
class LogReport:
    """What reading a record log found: intact records, damage in the middle, a torn tail.

    Byte offsets are from the start of the file; ranges are half-open ``[start, end)``.

    Attributes:
        path: the log file.
        records: intact frames read (length and CRC both good).
        damaged_records: records lost to damage *between* intact records. Exact when the damage
            kept the frame grid (flipped or zeroed bytes: each damaged region is a whole number
            of frames); rounded up when bytes were inserted or deleted.
        damaged_ranges: the byte range of each damaged region between intact records, in file
            order. These bytes stay in the file: nothing is moved or rewritten.
        torn_tail_bytes: bytes after the last intact record that hold no intact frame (0: none).
            Fewer than ``frame_bytes`` is the trace of a crash mid-write; more means complete
            records at the end failed their check (a power loss, or damage).
        torn_tail_offset: where the torn tail starts (``file_bytes`` when there is none).
        header_bytes: bytes of the magic line and schema.
        frame_bytes: bytes per frame (8 + the schema's ``record_size``).
        file_bytes: the file's size when it was read.
        torn_saved_to: the side file :meth:`RecordLog.open` copied the torn tail to before cutting
            it off (None when nothing was cut).
    """

    path: str
    records: int
    damaged_records: int
    damaged_ranges: tuple[tuple[int, int], ...]
    torn_tail_bytes: int
    torn_tail_offset: int
    header_bytes: int
    frame_bytes: int
    file_bytes: int
    torn_saved_to: str | None = None

    @property
    def torn_tail_records(self) -> int:
        """Frames the torn tail spans, rounded up (a partly written one counts)."""
        return -(-self.torn_tail_bytes // self.frame_bytes)

    @property
    def skipped_records(self) -> int:
        """Every record not read: ``damaged_records + torn_tail_records``."""
        return self.damaged_records + self.torn_tail_records

    @property
    def clean(self) -> bool:
        """Every byte after the header belongs to an intact frame."""
        return not self.damaged_ranges and not self.torn_tail_bytes

    @property
    def damaged(self) -> bool:
        """Records were lost beyond the one torn write a crash can leave: damage between intact
        records, or a torn tail of at least one whole frame."""
        return bool(self.damaged_ranges) or self.torn_tail_bytes >= self.frame_bytes

    def summary(self, *, max_ranges: int = 3) -> str:
        """One line: what was kept, what was skipped and where."""
        parts = [f"record log '{self.path}': {self.records} intact records"]
        if self.damaged_ranges:
            shown = ", ".join(f"{a}-{b}" for a, b in self.damaged_ranges[:max_ranges])
            more = len(self.damaged_ranges) - max_ranges
            n = len(self.damaged_ranges)
            parts.append(f"{self.damaged_records} damaged record{'s' * (self.damaged_records != 1)} skipped in "
                         f"{n} region{'s' * (n != 1)} at bytes {shown}{f' (+{more} more)' if more > 0 else ''}")
        if self.torn_tail_bytes:
            what = "torn tail" if self.torn_tail_bytes < self.frame_bytes else \
                f"damaged tail ({self.torn_tail_records} records)"
            saved = f", saved to '{self.torn_saved_to}'" if self.torn_saved_to else ""
            parts.append(f"{what} of {self.torn_tail_bytes} bytes at byte {self.torn_tail_offset}{saved}")
        if self.clean:
            parts.append("no damage")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for results.json): the fields plus ``torn_tail_records``,
        ``skipped_records``, ``clean`` and ``damaged``; ranges as ``[start, end]`` lists."""
        out = asdict(self)
        out["damaged_ranges"] = [list(r) for r in self.damaged_ranges]
        out.update(torn_tail_records=self.torn_tail_records, skipped_records=self.skipped_records,
                   clean=self.clean, damaged=self.damaged)
        return out


def _frame_dtype(record_size: int) -> np.dtype:
    """Length, CRC and opaque payload of one frame."""
    if record_size:
        return np.dtype([("length", "<u4"), ("crc", "<u4"), ("payload", f"V{record_size}")])
    return np.dtype([("length", "<u4"), ("crc", "<u4")])


class _Frames:
    """Finds the intact frames of a log body, resynchronising after damage.

    A frame is intact when its length field equals the schema's record size and the CRC32 of
    its payload matches. After a bad frame at offset ``p`` the scan looks for the next intact
    frame at any offset after ``p`` (so inserted or deleted bytes are survived too), and takes
    the first candidate ``q`` that is either

    * on the old grid (``q - p`` a multiple of the frame size): exactly the test every frame of
      an undamaged log passes, so resynchronising adds no false positive there; or
    * off the grid, and *confirmed*: the frame after it is intact too, or ``q`` ends exactly at
      the end of the file, or only a partial frame (whose length field, if present, is right)
      follows. A false candidate would need a matching length and CRC twice over
      (about 2**-64 per offset), or within one frame of the end of the file.

    Everything between intact frames is a damaged region; a region that runs to the end of
    the file is the torn tail.
    """

    def __init__(self, fh: Any, start: int, end: int, record_size: int) -> None:
        self.fh, self.start, self.end = fh, start, end
        self.record_size = record_size
        self.frame = _U32X2.size + record_size
        self.pattern = struct.pack("<I", record_size)
        self.spans: list[tuple[int, int]] = []  # [start, end) of each run of intact frames

    def _pread(self, offset: int, size: int) -> bytes:
        self.fh.seek(offset)
        return bytes(self.fh.read(max(0, min(size, self.end - offset))))

    def _intact_at(self, buf: bytes, i: int) -> bool:
        """The frame at ``buf[i:]`` is complete, has the right length and a matching CRC."""
        f = self.frame
        if len(buf) < i + f or buf[i:i + 4] != self.pattern:
            return False
        return zlib.crc32(memoryview(buf)[i + _U32X2.size:i + f]) == struct.unpack_from("<I", buf, i + 4)[0]

    def _confirmed(self, buf: bytes, j: int, offset: int) -> bool:
        """What follows an off-grid candidate (at ``buf[j:]``, file ``offset``) backs it up."""
        rest = self.end - offset
        if rest == 0:
            return True
        if rest < self.frame:
            return rest < 4 or buf[j:j + 4] == self.pattern
        return self._intact_at(buf, j)

    def _resync(self, p: int) -> int | None:
        """Offset of the first acceptable frame after the bad one at ``p``; None: there is none."""
        f = self.frame
        window = max(_READ_CHUNK_BYTES, f)
        pos = p + 1
        while self.end - pos >= f:
            buf = self._pread(pos, window + 2 * f)
            i = buf.find(self.pattern)
            while 0 <= i < window:
                q = pos + i
                if self.end - q < f:
                    return None
                if self._intact_at(buf, i) and ((q - p) % f == 0 or self._confirmed(buf, i + f, q + f)):
                    return q
                i = buf.find(self.pattern, i + 1)
            pos += window
        return None

    def _intact_prefix(self, buf: bytes, k: int) -> int:
        """How many of the ``k`` frames at the start of ``buf`` are intact, in a row."""
        heads = np.frombuffer(buf, dtype=_frame_dtype(self.record_size), count=k)
        good = k
        bad_len = np.flatnonzero(heads["length"] != self.record_size)
        if bad_len.size:
            good = int(bad_len[0])
        mv = memoryview(buf)
        size, f = self.record_size, self.frame
        for i, crc in enumerate(heads["crc"][:good].tolist()):
            start = i * f + _U32X2.size
            if zlib.crc32(mv[start:start + size]) != crc:
                return i
        return good

    def runs(self) -> Iterator[tuple[int, bytes, int]]:
        """Yield ``(offset, buf, count)``: ``count`` intact frames at the start of ``buf``,
        found at file ``offset``; in file order."""
        f = self.frame
        per_chunk = max(1, _READ_CHUNK_BYTES // f)
        p = self.start
        while self.end - p >= f:
            want = min(per_chunk, (self.end - p) // f)
            buf = self._pread(p, want * f)
            k = len(buf) // f
            good = self._intact_prefix(buf, k) if k else 0
            if good:
                if self.spans and self.spans[-1][1] == p:
                    self.spans[-1] = (self.spans[-1][0], p + good * f)
                else:
                    self.spans.append((p, p + good * f))
                yield p, buf, good
                p += good * f
            if k < want:  # the file shrank while we read it: what is left is a tail
                self.end = min(self.end, p + len(buf) - good * f)
                break
            if good == k:
                continue
            q = self._resync(p)
            if q is None:
                break
            p = q

    def report(self, path: Path, header_bytes: int) -> LogReport:
        """The damaged regions and torn tail around :attr:`spans` (call after :meth:`runs`)."""
        f = self.frame
        gaps, prev = [], self.start
        for a, b in self.spans:
            if a > prev:
                gaps.append((prev, a))
            prev = b
        tail_at = prev
        records = sum(b - a for a, b in self.spans) // f
        return LogReport(path=str(path), records=records, damaged_records=sum(-(-(b - a) // f) for a, b in gaps),
                         damaged_ranges=tuple(gaps), torn_tail_bytes=max(self.end - tail_at, 0),
                         torn_tail_offset=tail_at, header_bytes=header_bytes, frame_bytes=f,
                         file_bytes=self.end)


def _read(fh: Any, path: Path, *, spare: bool = False, columns: bool = True,
          check: Callable[[dict[str, Any]], None] | None = None,
          ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """Read a whole log from the open binary file ``fh``.

    With ``spare`` the column arrays get room to grow (their first ``records`` rows are the
    data); otherwise they have exactly ``records`` rows. Without ``columns`` only the frames
    are checked (the arrays are empty). ``check`` sees the schema before the body is read and
    may raise.
    """
    schema, header_bytes = _parse_header(fh, path)
    if check is not None:
        check(schema)
    record_size = int(schema["record_size"])
    frame = _U32X2.size + record_size
    file_bytes = os.fstat(fh.fileno()).st_size
    n_max = max(file_bytes - header_bytes, 0) // frame if columns else 0
    capacity = max(256, 2 * n_max) if spare else n_max
    dtype = _payload_dtype(schema)
    cols = {f["name"]: np.empty((capacity, *f["shape"]), dtype=np.dtype(f["dtype"])) for f in schema["fields"]}
    frames = _Frames(fh, header_bytes, file_bytes, record_size)
    n = 0
    for _, buf, good in frames.runs():
        if columns:
            rows = np.frombuffer(buf, dtype=dtype, count=good)
            for name, col in cols.items():
                col[n:n + good] = rows[name]
        n += good
    report = frames.report(path, header_bytes)
    info = {"records": n, "torn_bytes": report.torn_tail_bytes, "torn_offset": report.torn_tail_offset,
            "header_bytes": header_bytes, "frame_bytes": frame, "file_bytes": report.file_bytes,
            "report": report}
    if not spare:
        cols = {name: col[:n] for name, col in cols.items()}
    return schema, cols, info


def _reading(path: str | os.PathLike[str], **kw: Any) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return _read(fh, p, **kw)
    except OSError as exc:
        if isinstance(exc, RunDirError):
            raise
        raise _io_error(p, exc, doing="read", fix="check the path and its permissions") from exc


def read_log(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """Read a record log: every intact record, past any damage, which is skipped and reported.

    Never raises for damage after the header: a torn tail (a crash mid-write) and damaged
    regions between intact records (a flipped bit, a zeroed block) are skipped, and every
    intact record before and after them is read. Nothing is written. :func:`read_log` does
    not warn: look at ``info["report"]``.

    Args:
        path: the log file.

    Returns:
        ``(schema, columns, info)``: the header's schema dict; one array per field, of shape
        ``(records, *field_shape)`` (intact records in file order); and ``info`` with
        ``records`` (intact frames read), ``torn_bytes`` and ``torn_offset`` (the torn tail,
        as in :class:`LogReport`), ``header_bytes``, ``frame_bytes``, ``file_bytes`` and
        ``report`` (the :class:`LogReport`, with the damaged regions between intact records).

    Raises:
        RunDirError: the file is missing or unreadable, or its header is corrupt.
    """
    return _reading(path)


def scan_log(path: str | os.PathLike[str]) -> LogReport:
    """Check every frame of a record log without loading it (constant memory).

    Raises:
        RunDirError: the file is missing or unreadable, or its header is corrupt.
    """
    return _reading(path, columns=False)[2]["report"]


# -- writing --------------------------------------------------------------------------------


def _io_error(path: Path, exc: OSError, *, doing: str, fix: str | None = None) -> RunDirError:
    """One-line RunDirError for an OSError while ``doing`` something with ``path``."""
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc) or type(exc).__name__
    if fix is None:
        if exc.errno in _FULL:
            fix = "free space on that disk, then resume the run"
        elif exc.errno in _DENIED:
            fix = "make the run folder writable, then resume the run"
        elif exc.errno == errno.ENOENT:
            fix = "check that the run folder exists"
        else:
            fix = "check the disk, then resume the run"
    return RunDirError(f"cannot {doing} '{path}': {reason}{f' [{code}]' if code else ''}; {fix}")


def fsync_dir(directory: Path) -> None:
    """Make a created/renamed directory entry durable (not supported everywhere: best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> int:
    """``os.write`` until done; returns the bytes written, raising with ``.written`` set."""
    view = memoryview(data)
    done = 0
    try:
        while done < len(data):
            n = os.write(fd, view[done:])
            if n <= 0:
                raise OSError(errno.EIO, "write made no progress")
            done += n
    except BaseException as exc:
        exc.written = done  # type: ignore[attr-defined]
        raise
    return done


def _link_new(tmp: Path, path: Path) -> None:
    """Give the complete file ``tmp`` the name ``path`` only if no file has it: two runs
    starting in one folder at once must not replace each other's log (``os.replace`` would)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network or FAT mounts): exclusive rename is impossible
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(tmp, path)


def _lock(fd: int, path: Path) -> None:
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunDirError(f"record log '{path}' is open for writing by another process or store; "
                          f"stop that run (or close that store) first") from None
    except OSError:
        pass  # filesystems without flock (some network mounts): run unlocked rather than not at all


def _check_knobs(max_unsynced: int, sync_seconds: float) -> tuple[int, float]:
    if isinstance(max_unsynced, bool) or not isinstance(max_unsynced, (int, np.integer)) or max_unsynced < 0:
        raise ValueError(f"max_unsynced must be an int >= 0, got {max_unsynced!r}")
    sync_seconds = float(sync_seconds)
    if math.isnan(sync_seconds) or sync_seconds < 0:
        raise ValueError(f"sync_seconds must be >= 0 (math.inf disables the timer), got {sync_seconds!r}")
    return int(max_unsynced), sync_seconds


def _flush_loop(ref: weakref.ReferenceType[RecordLog], cond: threading.Condition) -> None:
    """Background timer: fsync once the oldest pending record has waited ``sync_seconds``.

    Holds only a weak reference between wake-ups, so an unclosed, dropped log is collected
    and this thread then ends.
    """
    while True:
        with cond:
            log = ref()
            if log is None or log._stopping:
                return
            if log._written == log._synced:
                delay = 1.0  # idle: poll the weakref now and then
            else:
                delay = log._pending_since + log.sync_seconds - time.monotonic()
            if delay > 0:
                del log
                cond.wait(delay)
                continue
        try:
            log._fsync()
        except (RunDirError, ValueError):
            return  # broken (recorded in log._broken; the next append/sync raises it) or closed
        finally:
            del log


class RecordLog:
    """An open, append-only record log (see the module docstring for the guarantees).

    Build one with :meth:`create` (new file) or :meth:`open` (continue an existing file).

    Attributes:
        path: the log file.
        schema: its schema dict.
        record_size: payload bytes per record.
        max_unsynced: expert-labelled records that may wait for fsync.
        sync_seconds: the longest any record waits for fsync (timer).
    """

    def __init__(self, path: Path, fd: int, schema: dict[str, Any], *, size: int, records: int,
                 max_unsynced: int, sync_seconds: float) -> None:
        self.path = path
        self.schema = schema
        self.record_size = int(schema["record_size"])
        self.max_unsynced, self.sync_seconds = max_unsynced, sync_seconds
        self._fd: int | None = fd
        self._size = size  # file offset just past the last complete frame
        self._cond = threading.Condition()
        # Monotonic counters, so that overlapping fsyncs (caller and timer) can each credit
        # exactly what was written before they started.
        self._written = self._synced = records
        self._written_expert = self._synced_expert = 0
        self._pending_since = 0.0
        self._broken: str | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        if 0 < sync_seconds < math.inf:
            self._thread = threading.Thread(target=_flush_loop, args=(weakref.ref(self), self._cond),
                                            name=f"gatekit-fsync:{path.name}", daemon=True)
            self._thread.start()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], schema: dict[str, Any], *, max_unsynced: int = 8,
               sync_seconds: float = 2.0) -> RecordLog:
        """Create a new log holding only the header, durably, and open it for appending.

        The header is written to a temporary file, fsynced and renamed into place, so the log
        either does not exist or has a complete header.

        Raises:
            RunDirError: ``path`` already exists (a previous run's data is never overwritten),
                or its folder is missing or unwritable.
        """
        max_unsynced, sync_seconds = _check_knobs(max_unsynced, sync_seconds)
        path = Path(path)
        header = _encode_header(schema)
        if path.exists():
            raise RunDirError(f"record log '{path}' already exists; resume that run (RecordStore.open) "
                              f"or choose a new run folder")
        if not path.parent.is_dir():
            raise RunDirError(f"run folder '{path.parent}' does not exist; create it first")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC | _O_BINARY, 0o644)
            try:
                _write_all(fd, header)
                os.fsync(fd)
            finally:
                os.close(fd)
            _link_new(tmp, path)
        except FileExistsError:
            raise RunDirError(f"record log '{path}' already exists (another run created it just now); resume that "
                              f"run or choose a new run folder") from None
        except OSError as exc:
            raise _io_error(path, exc, doing="create", fix=None if exc.errno in _FULL + _DENIED else
                            "check the run folder") from exc
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        fsync_dir(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | _O_CLOEXEC | _O_BINARY)
        except OSError as exc:
            raise _io_error(path, exc, doing="open") from exc
        try:
            _lock(fd, path)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, dict(json.loads(header[len(MAGIC) + _U32X2.size:])), size=len(header),
                   records=0, max_unsynced=max_unsynced, sync_seconds=sync_seconds)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, max_unsynced: int = 8, sync_seconds: float = 2.0,
             check: Callable[[dict[str, Any]], None] | None = None,
             inspect: Callable[[LogReport], None] | None = None,
             ) -> tuple[RecordLog, dict[str, np.ndarray], dict[str, Any]]:
        """Open an existing log for appending, after reading it and cutting off a torn tail.

        Damaged regions between intact records stay where they are (every intact record on
        both sides is read, and readers skip the damage again each time); only a torn tail is
        cut off, after it has been copied to a side file. New records go after the last intact
        record.

        Args:
            path: the log file.
            max_unsynced: see the module docstring.
            sync_seconds: see the module docstring.
            check: called with the file's schema before anything is modified; raise to refuse.
            inspect: called with the :class:`LogReport` before anything is modified; raise to
                refuse (e.g. to stop on damage).

        Returns:
            ``(log, columns, info)``: columns as in :func:`read_log` but with spare rows (their
            first ``info["records"]`` rows are the data), and ``info`` as there plus
            ``torn_saved_to`` (the side file holding the torn tail, or None; also in
            ``info["report"].torn_saved_to``).

        Raises:
            RunDirError: missing, unreadable or locked file, corrupt header, or an I/O error
                while cutting the tail.
        """
        max_unsynced, sync_seconds = _check_knobs(max_unsynced, sync_seconds)
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | _O_CLOEXEC | _O_BINARY)
        except FileNotFoundError:
            raise RunDirError(f"no record log at '{path}'; check the run folder, or start a new run") from None
        except OSError as exc:
            raise _io_error(path, exc, doing="open") from exc
        try:
            _lock(fd, path)  # before reading: nobody may append between our read and truncate
            try:
                with open(os.dup(fd), "rb", closefd=True) as fh:
                    fh.seek(0)
                    schema, columns, info = _read(fh, path, spare=True, check=check)
            except RunDirError:
                raise
            except OSError as exc:
                raise _io_error(path, exc, doing="read") from exc
            if inspect is not None:
                inspect(info["report"])
            saved: Path | None = None
            if info["torn_bytes"]:
                saved = cls._save_torn_tail(fd, path, info)
                try:
                    os.ftruncate(fd, info["torn_offset"])
                    os.fsync(fd)
                except OSError as exc:
                    raise _io_error(path, exc, doing="cut the torn tail of") from exc
            log = cls(path, fd, schema, size=info["torn_offset"], records=info["records"],
                      max_unsynced=max_unsynced, sync_seconds=sync_seconds)
        except BaseException:
            os.close(fd)
            raise
        report = info["report"] if saved is None else replace(info["report"], torn_saved_to=str(saved))
        return log, columns, {**info, "torn_saved_to": saved, "report": report}

    @staticmethod
    def _save_torn_tail(fd: int, path: Path, info: Mapping[str, int]) -> Path:
        """Copy the torn tail to a side file before truncating it: never destroy bytes."""
        side = path.with_name(f"{path.name}.torn-{info['torn_offset']}-{time.time_ns()}")
        try:
            tail = os.pread(fd, info["torn_bytes"], info["torn_offset"])
            out = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY, 0o644)
            try:
                _write_all(out, tail)
                os.fsync(out)
            finally:
                os.close(out)
        except OSError as exc:
            raise _io_error(side, exc, doing="save the torn tail of the record log to",
                            fix=None if exc.errno in _FULL + _DENIED else "check the disk") from exc
        fsync_dir(path.parent)
        return side

    # -- appending -------------------------------------------------------------------------
    @property
    def records(self) -> int:
        """Records written (complete frames in the file)."""
        return self._written

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def unsynced(self) -> tuple[int, int]:
        """``(records, expert_labelled_records)`` written but not yet covered by an fsync."""
        with self._cond:
            return self._written - self._synced, self._written_expert - self._synced_expert

    def _usable(self) -> int:
        if self._fd is None:
            raise ValueError(f"record log '{self.path}' is closed")
        if self._broken is not None:
            raise RunDirError(self._broken)
        return self._fd

    def append(self, payload: bytes | bytearray | memoryview, *, expert: bool) -> None:
        """Write one record's payload as a frame; fsync as the bound requires.

        Args:
            payload: exactly ``record_size`` bytes.
            expert: the record is expert-labelled (counts against ``max_unsynced``).

        Raises:
            RunDirError: the write or fsync failed (one line naming the file and the fix). A
                partly written frame has been cut off again; earlier records are intact.
        """
        if len(payload) != self.record_size:
            raise ValueError(f"record payload must be {self.record_size} bytes, got {len(payload)}")
        frame = _U32X2.pack(self.record_size, zlib.crc32(payload)) + bytes(payload)
        with self._cond:
            fd = self._usable()
            try:
                _write_all(fd, frame)
            except BaseException as exc:
                # A torn frame mid-file would shift every later record off the frame grid
                # (readers would have to resynchronise past it): cut it off (also on
                # KeyboardInterrupt, which can land between two partial writes).
                if getattr(exc, "written", 0):
                    try:
                        os.ftruncate(fd, self._size)
                    except OSError:
                        self._broken = (f"record log '{self.path}' ends in a half-written record that "
                                        f"could not be cut off; resume the run (reopening repairs it)")
                if isinstance(exc, OSError):
                    raise _io_error(self.path, exc, doing="write records to",
                                    fix=self._fix_hint(exc)) from exc
                raise
            self._size += len(frame)
            now = time.monotonic()
            if self._written == self._synced:
                self._pending_since = now
                self._cond.notify_all()  # wake the timer: something is pending now
            self._written += 1
            self._written_expert += bool(expert)
            due = (self._written_expert - self._synced_expert > self.max_unsynced
                   or now - self._pending_since >= self.sync_seconds)
        if due:
            self._fsync()

    def _fix_hint(self, exc: OSError) -> str:
        kept = f"the {self._written} records before it are kept"
        if exc.errno in _FULL:
            return f"free space on that disk, then resume the run ({kept})"
        if exc.errno in _DENIED:
            return f"make the run folder writable, then resume the run ({kept})"
        return f"check the disk, then resume the run ({kept})"

    def _fsync(self) -> None:
        """fsync and credit every record written before it started (thread-safe)."""
        with self._cond:
            fd = self._usable()
            if self._written == self._synced:
                return
            snap = (self._written, self._written_expert, time.monotonic())
        try:
            os.fsync(fd)
        except OSError as exc:
            err = _io_error(self.path, exc, doing="fsync",
                            fix=f"check the disk, then resume the run (the first {self._synced} "
                                f"records are on disk)")
            with self._cond:
                # After a failed fsync the kernel may have dropped the dirty pages; appending
                # more would pretend they are safe. Refuse until the run is resumed from disk.
                self._broken = str(err)
            raise err from exc
        with self._cond:
            if snap[0] > self._synced:
                self._synced, self._synced_expert = snap[0], snap[1]
                # Anything still pending was written after the snapshot: its age is at most this.
                self._pending_since = snap[2]

    def sync(self) -> None:
        """fsync now if anything is pending (no-op otherwise)."""
        self._fsync()

    def close(self) -> None:
        """Stop the timer, fsync what is pending, release the lock and close the file (idempotent)."""
        if self._fd is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        fd = self._fd
        try:
            if self._broken is None:
                self._fsync()
        finally:
            self._fd = None
            os.close(fd)

    def __enter__(self) -> RecordLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Dropped without close(): the data is already in the kernel; just free the descriptor.
        fd = getattr(self, "_fd", None)
        if fd is not None:
            self._fd = None
            try:
                os.close(fd)
            except OSError:
                pass
