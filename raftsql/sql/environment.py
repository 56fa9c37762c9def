"""The pinned environment a replicated command runs in: the leader's clock and seed.

Rewriting SQL to remove non-determinism (rqlite's approach) misses ``ORDER BY random()``,
``DEFAULT CURRENT_TIMESTAMP`` column defaults and trigger bodies: the statement text does
not show them. Instead the state machine changes what SQLite sees underneath:

* The clock. Every SQLite notion of "now" ('now', CURRENT_TIMESTAMP, CURRENT_DATE,
  unixepoch(), column defaults, trigger bodies) asks the connection's VFS for the current
  time (xCurrentTimeInt64). :class:`PinnedClockVFS` inherits everything from the default
  VFS and answers that one question with the command's leader-stamped ``time_ns``.
* Randomness. random() and randomblob() are replaced on the apply connection by
  :class:`SeededRandom`, a counter-mode keyed hash (BLAKE2b / SHAKE-256) seeded by the
  command's seed. Hash functions are specified byte for byte, so the stream is the same on
  every node, platform and Python version (unlike e.g. the ``random`` module). The
  functions are registered as non-deterministic, so SQLite never constant-folds them, and
  as innocuous, so triggers, views and column defaults may still use them.

SQLite evaluates "now" once per statement, so all rows of one statement see one time, and
every statement of a command sees the same time (the command's).

Known limit: SQLite draws on its own internal PRNG in one data-visible case, choosing a new
rowid after the maximum rowid 9223372036854775807 has been used. A table that reaches
that rowid can diverge; AUTOINCREMENT tables fail instead, which is deterministic.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import time

import apsw

UNIX_EPOCH_JULIAN_MS = 210_866_760_000_000
"""The Unix epoch (1970-01-01 00:00 UTC) as a Julian day number times 86,400,000."""

_MS_PER_DAY = 86_400_000
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_vfs_ids = itertools.count()


def unix_ns_to_julian_ms(time_ns: int) -> int:
    """What SQLite's xCurrentTimeInt64 returns for a Unix time in nanoseconds."""
    return UNIX_EPOCH_JULIAN_MS + time_ns // 1_000_000


class PinnedClockVFS(apsw.VFS):
    """The default VFS with a clock the state machine can set.

    Each state machine registers its own instance (VFS names are process-global, and
    several machines share a process in tests and in the simulator). File operations go
    straight to the default VFS; only the two clock methods are Python.
    """

    def __init__(self) -> None:
        self.vfs_name = f"raftsql-pinned-{os.getpid()}-{next(_vfs_ids)}"
        self.pinned_ns: int | None = None
        """The time SQLite sees, or None for the real clock (outside apply)."""
        super().__init__(self.vfs_name, "")

    def xCurrentTimeInt64(self) -> int:
        ns = self.pinned_ns
        return unix_ns_to_julian_ms(time.time_ns() if ns is None else ns)

    def xCurrentTime(self) -> float:
        return self.xCurrentTimeInt64() / _MS_PER_DAY


_LEADING_INT = re.compile(rb"\s*([+-]?\d+)")


def _sqlite_int64(value: object) -> int:
    """sqlite3_value_int64() of a SQL value, as randomblob(N) reads its argument."""
    if value is None:
        return 0
    if isinstance(value, int):
        return max(_INT64_MIN, min(_INT64_MAX, value))
    if isinstance(value, float):
        if value != value:  # NaN
            return 0
        if value >= 2.0**63:
            return _INT64_MAX
        if value <= -(2.0**63):
            return _INT64_MIN
        return int(value)
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    else:
        return 0
    match = _LEADING_INT.match(raw)
    return max(_INT64_MIN, min(_INT64_MAX, int(match.group(1)))) if match else 0


class SeededRandom:
    """random() and randomblob() as a deterministic stream keyed by the command's seed.

    Call ``i`` of random() returns the first 8 bytes of BLAKE2b(key=seed, i) as a signed
    integer; call ``i`` of randomblob(n) returns n bytes of SHAKE-256(seed, i). The counter
    is shared, so the order of calls within a command matters, exactly as it would for
    SQLite's own generator, and that order is the same on every node.
    """

    __slots__ = ("_counter", "_key", "max_length")

    def __init__(self, max_length: int = 1_000_000_000) -> None:
        self._key = b"\0" * 8
        self._counter = 0
        self.max_length = max_length
        """SQLite's length limit: a bigger randomblob() fails like SQLite's own would."""

    def reset(self, seed: int) -> None:
        self._key = (seed % 2**64).to_bytes(8, "little")
        self._counter = 0

    def _next(self) -> bytes:
        c = self._counter
        self._counter = c + 1
        return c.to_bytes(8, "little")

    def random(self) -> int:
        digest = hashlib.blake2b(self._next(), key=self._key, digest_size=8).digest()
        return int.from_bytes(digest, "little", signed=True)

    def randomblob(self, n: object) -> bytes:
        size = _sqlite_int64(n)
        if size < 1:
            size = 1  # SQLite: randomblob(N) for N < 1 is one byte
        if size > self.max_length:
            raise apsw.TooBigError("string or blob too big")
        return hashlib.shake_256(self._key + self._next()).digest(size)


def configure(conn: apsw.Connection) -> None:
    """Settings that change what SQL means, set explicitly on every connection that reads or
    judges replicated SQL (apply, query, the classifier's scratch database), so that they
    never depend on how a node's SQLite was compiled.

    Double-quoted string literals are off (``"x"`` is always an identifier, as in the
    sqlite3 shell since 3.41), and defensive mode is on (no writable_schema, no direct page
    writes: nothing that could corrupt the file behind SQLite's back).
    """
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)
    conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)


class Environment:
    """The clock and PRNG of one apply connection, pinned per command."""

    def __init__(self) -> None:
        self.vfs = PinnedClockVFS()
        self.random = SeededRandom()

    @property
    def vfs_name(self) -> str:
        return self.vfs.vfs_name

    def install(self, conn: apsw.Connection) -> None:
        """Replace random()/randomblob() on ``conn`` (which must use ``vfs_name``)."""
        self.random.max_length = conn.limit(apsw.SQLITE_LIMIT_LENGTH)
        flags = apsw.SQLITE_INNOCUOUS
        conn.create_scalar_function("random", self.random.random, 0, flags=flags)
        conn.create_scalar_function("randomblob", self.random.randomblob, 1, flags=flags)

    def pin(self, time_ns: int, seed: int) -> None:
        """From now on SQLite sees ``time_ns`` as the time and ``seed``'s random stream."""
        self.vfs.pinned_ns = time_ns
        self.random.reset(seed)

    def unpin(self) -> None:
        self.vfs.pinned_ns = None

    def close(self) -> None:
        """Unregister the VFS (after every connection using it is closed)."""
        self.vfs.unregister()
