"""The replicated state machine: committed log entries in, one SQLite database out.

Every node applies the same entries in the same order and must end with the same database,
byte for byte. Everything here serves that promise or exactly-once application.

Storage and durability
    The database is a SQLite file in WAL mode with ``synchronous=NORMAL``: a commit is not
    fsync'd, a checkpoint is. A power loss may therefore lose the last few applied batches,
    but never tears one: the applied index lives in the database (``_raftsql_meta``) and is
    updated in the same transaction as the data, so after a restart ``applied_index`` says
    exactly what the file holds and the server re-applies the log from ``applied_index + 1``.
    The Raft log is the durability source. The one rule this puts on the server: the log
    may only be compacted up to an index the state machine has made durable, by
    :meth:`StateMachine.sync` or by writing a snapshot (fsync'd) at that index.

One batch, one transaction
    :meth:`StateMachine.apply` takes a batch of committed entries and applies them in one
    SQLite transaction (one commit, however many entries). Each command runs inside its
    own SAVEPOINT: a command whose statement fails (constraint, SQL error, forbidden
    construct) is rolled back alone and its error becomes its result, identically on
    every node. Every command is all-or-nothing: a request of several statements is one
    transaction whether or not the client set ``atomic``, which keeps the semantics simple
    and the same everywhere. (``atomic`` stays in the protocol for a possible future
    "independent statements" mode.)

    Batch boundaries differ between nodes (they depend on timing), so nothing may depend on
    them: the applied index is written once per entry, not once per batch, so the page
    history is the same whatever the batching. The one thing SQLite itself counts per
    transaction is the file change counter in the database header (bytes 24-27, with its
    copy at 92-95), which is metadata, not data; :meth:`StateMachine.content_digest` masks
    it, and nodes applying the same batches have fully identical files.

    A statement with ``ON CONFLICT ROLLBACK`` (or ``RAISE(ROLLBACK)`` in a trigger) makes
    SQLite roll back the whole transaction, other commands of the batch included. The
    machine detects this, re-applies the batch's earlier commands (deterministic, so with
    the same results) and records the failing command as failed: ROLLBACK then means
    "abort this request", as on a node that happened to apply it in a batch of its own.

    Deferred foreign keys are checked at the end of each command (not at the batch's
    COMMIT, which would fail the whole batch): a violation fails that command only.

    Errors of the node rather than of the SQL (disk full, I/O error, corruption, a bug)
    must not become a result: another node would not have them. They abort the batch's
    transaction and raise :class:`MachineError`; ``applied_index`` says what was applied.

Exactly once
    A command carries ``(session, seq)``. The sessions table keeps, per session, the latest
    seq applied and its encoded result, written in the same transaction. A command whose
    seq equals the stored one is not run again: the stored result is returned. An older seq
    gets StaleRequest (its result is gone). Clients therefore use increasing seqs with one
    request outstanding per session. Sessions idle for ``session_ttl_ns`` (by the leader's
    clock stamped on commands) are forgotten when a command runs at an index that is a
    multiple of ``expire_every``, so the table stays bounded and every node forgets the
    same sessions at the same entry. A retry arriving after its session was forgotten
    runs again: exactly-once holds within the TTL.
    An empty session opts out of deduplication.

The pinned environment
    Each command runs with the clock pinned to its ``time_ns`` and random()/randomblob()
    seeded by its ``seed`` (environment.py).

Reads
    :meth:`StateMachine.query` runs on a second, read-only connection. In WAL mode it sees
    the last committed batch and never a batch in progress, so it may even run in another
    thread while apply runs. Its clock and random() are the real ones: a read is not
    replicated.

Defence in depth
    apply never consults sqlglot (its verdicts may change between versions, and every node
    must decide alike). The authorizer (authorizer.py) enforces the rules inside SQLite. A
    CREATE TRIGGER or CREATE VIEW is followed by a probe that compiles statements that
    would fire the trigger or read the view, so a trigger body calling a forbidden
    function fails at creation rather than on every later insert.

Snapshots
    :meth:`StateMachine.begin_snapshot` checkpoints the WAL into the database file and
    opens a read transaction that pins that state (a WAL reader that ignores the log: no
    checkpoint may write the file while it lives). The file is then copied page for page,
    possibly in another thread, while writes continue into the WAL. The copy is
    fsync'd and renamed into place. :meth:`StateMachine.restore_from` replaces the database
    file with a snapshot, so a restored node is byte-identical to the node that took it
    (SQLite's backup API would rewrite header counters and break that).

Threads: apply, begin_snapshot, restore_from, sync and close belong to one thread (the
apply thread). query may run concurrently from one other thread, and Snapshot.write_to from
any thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import time
import urllib.parse
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import apsw

from raftsql.errors import (
    ConstraintError,
    ForbiddenSQL,
    ParameterError,
    ProtocolError,
    RaftsqlError,
    SQLError,
    StaleRequest,
)
from raftsql.sql import lexer
from raftsql.sql.authorizer import Authorizer, Mode
from raftsql.sql.command import CommandResult, Statement, StatementResult, Value, WriteCommand
from raftsql.sql.environment import Environment, configure

FORMAT = 1
"""Layout of the internal tables; stored in ``_raftsql_meta``."""

META_TABLE = "_raftsql_meta"
SESSIONS_TABLE = "_raftsql_sessions"

DEFAULT_SESSION_TTL_NS = 24 * 3600 * 10**9
DEFAULT_EXPIRE_EVERY = 1024
BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_PAGES = 1000
"""WAL size (pages) from which :attr:`StateMachine.checkpoint_due` asks for a checkpoint
(SQLite's own autocheckpoint threshold, which we replace: see :meth:`checkpoint`)."""
PROGRESS_STEPS = 1000
"""SQLite VM steps between two looks at an apply's deadline (a few microseconds of work)."""
COPY_CHUNK = 1 << 20

_HEADER_COUNTERS = ((24, 28), (92, 96))
"""Database header bytes that count write transactions (file change counter and
version-valid-for): they depend on batch boundaries, not on the data."""

_DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (
    apsw.SQLError,
    apsw.MismatchError,
    apsw.TooBigError,
    apsw.RangeError,
    apsw.AbortError,
)
"""SQLite errors that depend only on the SQL and the data, so every node gets them alike.
Everything else (I/O, full disk, corruption, locking, out of memory) is the node's own."""

_ONE_STATEMENT = (
    "one SQL string must hold exactly one statement: send several statements as a list "
    "in one request instead"
)


class MachineError(Exception):
    """The node itself failed to apply or read (disk full, I/O error, corrupt file, a bug).

    Never a result: another node would not have failed, so turning it into a result would
    make the nodes diverge. The failed batch's transaction was rolled back; whether to
    retry, restore a snapshot or stop is the server's decision.
    """


class _StatementFailed(Exception):
    def __init__(self, index: int, error: RaftsqlError) -> None:
        super().__init__(error.message)
        self.index = index
        self.error = error


class _TransactionLost(Exception):
    """A user statement's ROLLBACK conflict resolution ended the batch's transaction."""

    def __init__(self, command: WriteCommand, error: RaftsqlError) -> None:
        super().__init__(error.message)
        self.command = command
        self.error = error


class _Trace:
    """exec_trace hook: refuses a second statement in one string, and grabs the column
    names before the first step (apsw forgets them once a statement has finished)."""

    __slots__ = ("columns", "count", "problem", "read_only")

    def __init__(self, read_only: bool) -> None:
        self.read_only = read_only
        self.count = 0
        self.columns: list[str] = []
        self.problem: RaftsqlError | None = None

    def __call__(self, cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        self.count += 1
        if self.count > 1:
            self.problem = ForbiddenSQL(_ONE_STATEMENT)
            return False
        if self.read_only and not cursor.is_readonly and not cursor.is_explain:
            self.problem = ForbiddenSQL(
                "this is a read-only query: statements that change the database must be "
                "sent as writes, through the replicated log"
            )
            return False
        self.columns = [name for name, _decltype in cursor.get_description()]
        return True


def _user_error(exc: BaseException, auth: Authorizer, trace: _Trace | None) -> RaftsqlError | None:
    """The user-facing error for an exception raised by user SQL, or None if the failure is
    the node's own (see _DETERMINISTIC_ERRORS)."""
    if isinstance(exc, RaftsqlError):
        return exc
    if isinstance(exc, apsw.ExecTraceAbort) and trace is not None and trace.problem:
        return trace.problem
    if isinstance(exc, apsw.AuthError | apsw.SQLError) and auth.denied is not None:
        # SQLite reports some denials as SQLITE_AUTH, others (functions) as SQLITE_ERROR
        # "not authorized to use function": either way the authorizer knows the reason.
        return auth.error(str(exc))
    if isinstance(exc, apsw.ConstraintError):
        return ConstraintError(str(exc))
    if isinstance(exc, _DETERMINISTIC_ERRORS):
        return SQLError(str(exc))
    if isinstance(exc, apsw.BindingsError | TypeError | OverflowError):
        return ParameterError(str(exc))
    if isinstance(exc, KeyError):
        return ParameterError(f"missing value for named parameter :{exc.args[0]}")
    return None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class QueryOverBudget(Exception):
    """A query ran past its deadline and was interrupted (nothing is wrong with it: run
    it again without a deadline, elsewhere)."""


class _OverBudget(Exception):
    """The apply's deadline passed; its current run was rolled back."""


@dataclass
class _Speculation:
    batch: list[tuple[int, bytes | None]]
    results: list[bytes | None]


class StateMachine:
    """One node's replicated SQLite database. See the module docstring for the design."""

    def __init__(
        self,
        path: str,
        *,
        session_ttl_ns: int = DEFAULT_SESSION_TTL_NS,
        expire_every: int = DEFAULT_EXPIRE_EVERY,
    ) -> None:
        """Open (creating if needed) the database at ``path``.

        ``session_ttl_ns`` and ``expire_every`` decide which sessions are forgotten when,
        which is part of the replicated state: they must be the same on every node.
        """
        self.path = os.path.abspath(path)
        self.session_ttl_ns = session_ttl_ns
        self.expire_every = expire_every
        self._env = Environment()
        self._auth = Authorizer(Mode.INTERNAL)
        self._read_auth = Authorizer(Mode.READ)
        # apsw caches prepared statements by text, and the authorizer only runs when a
        # statement is prepared. Our own statements carry a secret tag so that no user text
        # can ever match (and reuse) one prepared with everything allowed.
        self._tag = f"/* raftsql internal {secrets.token_hex(8)} */ "
        self._snapshots: weakref.WeakSet[Snapshot] = weakref.WeakSet()
        self._applied = 0
        """The last entry applied, inside the open transaction while a batch runs."""
        self._committed = 0
        """The last entry applied *and committed*: what a new read transaction sees. The
        two differ while a batch runs, which may be in another thread (the server's disk
        worker) than the one that asks ``applied_index`` to release reads."""
        self._closed = False
        self._deadline: float | None = None
        self._over_budget = False
        self._read_deadline: float | None = None
        self._speculation: _Speculation | None = None
        """Entries run ahead of their commit in a transaction still open (``speculate``)."""
        self.speculations = {"started": 0, "kept": 0, "dropped": 0}
        """How speculations ended (status counters: were they worth their work?)."""
        self.wal_pages = 0
        """Pages in the WAL after the last commit (from SQLite's WAL hook)."""
        self._open()

    # --- lifecycle ---------------------------------------------------------------------

    def _open(self) -> None:
        db = apsw.Connection(
            self.path,
            flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE,
            vfs=self._env.vfs_name,
        )
        try:
            db.set_busy_timeout(BUSY_TIMEOUT_MS)
            configure(db)
            self._env.install(db)
            self._auth.mode = Mode.INTERNAL
            db.authorizer = self._auth
            self._db = db
            self._setup()
            # Replaces SQLite's autocheckpoint, which would run inside a COMMIT: commits
            # may happen on the server's event loop, checkpoints (fsyncs) must not.
            db.set_wal_hook(self._wal_hook)
            db.set_progress_handler(self._past_deadline, PROGRESS_STEPS)
        except BaseException:
            db.close(True)
            raise
        reader = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
        reader.set_busy_timeout(BUSY_TIMEOUT_MS)
        configure(reader)
        reader.authorizer = self._read_auth
        reader.set_progress_handler(self._read_past_deadline, PROGRESS_STEPS)
        self._reader = reader
        checkpointer = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READWRITE)
        checkpointer.set_busy_timeout(BUSY_TIMEOUT_MS)
        # a connection opens its file (and the WAL index) lazily: until it has read
        # something, its checkpoints silently do nothing
        checkpointer.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        self._checkpointer = checkpointer

    def _setup(self) -> None:
        """Connection settings and internal tables. Everything that changes what SQL means
        or how pages are laid out is set explicitly, never left to compile-time defaults,
        because every node must agree on it."""
        run = self._exec
        # Only effective on a new, empty database; fixed for its life afterwards.
        run("PRAGMA page_size = 4096")
        run("PRAGMA auto_vacuum = NONE")
        run("PRAGMA encoding = 'UTF-8'")
        mode = run("PRAGMA journal_mode = WAL")[0][0]
        if str(mode).lower() != "wal":
            raise MachineError(f"cannot switch {self.path} to WAL mode (got {mode!r})")
        run("PRAGMA synchronous = NORMAL")
        run("PRAGMA journal_size_limit = 67108864")
        run("PRAGMA foreign_keys = ON")
        run("PRAGMA recursive_triggers = OFF")
        run("PRAGMA reverse_unordered_selects = OFF")
        run("PRAGMA secure_delete = OFF")
        run("PRAGMA trusted_schema = OFF")
        run("PRAGMA legacy_alter_table = OFF")
        if not self._db.table_exists("main", META_TABLE):
            run("BEGIN IMMEDIATE")
            run(
                f"CREATE TABLE {META_TABLE}("
                "id INTEGER PRIMARY KEY CHECK (id = 0), "
                "applied_index INTEGER NOT NULL, "
                "format INTEGER NOT NULL)"
            )
            run(f"INSERT INTO {META_TABLE} VALUES (0, 0, {FORMAT})")
            run(
                f"CREATE TABLE {SESSIONS_TABLE}("
                "session BLOB PRIMARY KEY, "
                "seq INTEGER NOT NULL, "
                "time_ns INTEGER NOT NULL, "
                "result BLOB NOT NULL)"
            )
            run("COMMIT")
        applied, fmt = run(f"SELECT applied_index, format FROM {META_TABLE}")[0]
        if fmt != FORMAT:
            raise MachineError(f"{self.path}: internal table format {fmt}, expected {FORMAT}")
        self._applied = self._committed = applied

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for snap in list(self._snapshots):
            snap.close()
        self._reader.close(True)
        self._checkpointer.close(True)
        self._db.close(True)
        self._env.close()

    def __enter__(self) -> StateMachine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- small helpers -----------------------------------------------------------------

    def _exec(self, sql: str, params: Sequence[Value] | Mapping[str, Value] = ()) -> list[Any]:
        """Run one of our own statements (tagged, everything allowed) and fetch all rows."""
        return self._db.execute(self._tag + sql, params).fetchall()

    @property
    def applied_index(self) -> int:
        """The index of the last entry applied and committed to the database: a read
        started now sees every entry up to it (never one of a batch still running)."""
        return self._committed

    def _set_applied(self, index: int) -> None:
        self._exec(f"UPDATE {META_TABLE} SET applied_index = ? WHERE id = 0", (index,))
        self._applied = index

    # --- apply -------------------------------------------------------------------------

    def apply(
        self, batch: Sequence[tuple[int, bytes | None]], deadline: float | None = None
    ) -> list[bytes | None]:
        """Apply committed entries ``(index, payload)`` in one transaction; return each
        entry's encoded CommandResult (None for a no-op entry, ``payload=None``).

        Indices must continue ``applied_index`` without gaps. Raises MachineError if the
        node fails (nothing of the failed run is applied; see ``applied_index``).

        ``deadline`` (a ``time.perf_counter()`` value) lets the server apply on its event
        loop without ever stalling it: once the deadline passes, SQLite is interrupted, the
        unfinished transaction rolled back, and only the results of the entries already
        committed are returned (a shorter list; often empty). The caller applies the rest
        elsewhere, with no deadline. Nothing depends on where a batch was cut: a rolled
        back run leaves no trace, and the redo computes the same results.

        An open speculation (:meth:`speculate`) is committed first if ``batch`` starts
        with exactly its entries, and rolled back otherwise.
        """
        if self._closed:
            raise MachineError("the state machine is closed")
        if not batch:
            return []
        if self._speculation is not None:
            done = self._take_speculation(batch)
            if done:
                return done + self.apply(batch[len(done) :], deadline)
        first = self._applied + 1
        for k, (index, _payload) in enumerate(batch):
            if index != first + k:
                raise ValueError(
                    f"entries must follow applied index {self._applied} without gaps; "
                    f"got index {index} at position {k}"
                )
        results: list[bytes | None] = [None] * len(batch)
        pos = 0
        self._deadline, self._over_budget = deadline, False
        try:
            while pos < len(batch):
                pos = self._apply_run(batch, pos, results)
        except _OverBudget:
            return results[:pos]
        finally:
            self._deadline = None
        return results

    def speculate(self, batch: Sequence[tuple[int, bytes | None]], deadline: float) -> bool:
        """Run entries that Raft has not committed yet, in a transaction left open.

        Why: on the leader a write waits ~0.5-1 ms for a follower's ack; running its
        statements meanwhile leaves only the COMMIT for after the quorum. Nothing is
        visible (reads use their own connection, ``applied_index`` is unchanged) until a
        later :meth:`apply` of the same entries commits it. Determinism makes this safe:
        the same payloads applied in the same order to the same state give the same
        effects, so :meth:`apply` keeps the work only for entries whose payloads are
        equal to the speculated ones (whichever term they come from) and rolls it back
        otherwise. Returns False (nothing left open) when the batch does not follow the
        committed state, a speculation is open already, the deadline passes, or anything
        fails: the ordinary apply will then do (or report) it.
        """
        if self._closed or self._speculation is not None or not batch:
            return False
        if batch[0][0] != self._committed + 1 or self._applied != self._committed:
            return False
        results: list[bytes | None] = []
        self._deadline, self._over_budget = deadline, False
        try:
            self._exec("BEGIN IMMEDIATE")
            for index, payload in batch:
                results.append(self._apply_entry(index, payload))
        except Exception:
            self._rollback()
            return False
        finally:
            self._deadline = None
        self._speculation = _Speculation(list(batch), results)
        self.speculations["started"] += 1
        return True

    @property
    def speculating(self) -> bool:
        """A speculation is open (see :meth:`speculate`)."""
        return self._speculation is not None

    def abandon_speculation(self) -> None:
        """Roll back what :meth:`speculate` left open (before anything else uses the
        writer connection: snapshots, restores, serialization)."""
        if self._speculation is not None:
            self._speculation = None
            self.speculations["dropped"] += 1
            self._rollback()

    def _take_speculation(self, batch: Sequence[tuple[int, bytes | None]]) -> list[bytes | None]:
        """Commit the open speculation if ``batch`` starts with exactly its entries and
        return their results; otherwise roll it back and return [].

        A batch shorter than the speculation (a commit index that covers only part of
        it) drops it too: a transaction commits whole, and the entries past the commit
        index must not become visible."""
        spec = self._speculation
        assert spec is not None
        n = len(spec.batch)
        if len(batch) < n or any(a != b for a, b in zip(batch, spec.batch, strict=False)):
            self.abandon_speculation()
            return []
        self._speculation = None
        self.speculations["kept"] += 1
        try:
            self._commit()
        except BaseException as exc:
            self._rollback()
            raise MachineError(
                f"committing entries up to {spec.batch[-1][0]} failed: {exc!r}"
            ) from exc
        return spec.results

    def _rollback(self) -> None:
        """End the open transaction, if SQLite has not already: back to what is committed."""
        if self._db.in_transaction:
            with contextlib.suppress(apsw.Error):
                self._exec("ROLLBACK")
        self._applied = self._committed

    def _past_deadline(self) -> bool:
        """SQLite's progress handler: True interrupts the statement running."""
        if self._deadline is not None and time.perf_counter() > self._deadline:
            self._over_budget = True
            return True
        return False

    def _read_past_deadline(self) -> bool:
        """The reader's progress handler (see ``query``'s ``deadline``)."""
        return self._read_deadline is not None and time.perf_counter() > self._read_deadline

    def _commit(self) -> None:
        """COMMIT with the deadline off: an interrupted COMMIT could leave us unsure
        whether it happened, and by then the work is done anyway."""
        deadline, self._deadline = self._deadline, None
        try:
            self._exec("COMMIT")
            self._committed = self._applied
        finally:
            self._deadline = deadline

    def _wal_hook(self, _conn: apsw.Connection, _name: str, pages: int) -> int:
        self.wal_pages = pages
        return apsw.SQLITE_OK

    @property
    def checkpoint_due(self) -> bool:
        """The WAL has grown enough that :meth:`checkpoint` should run."""
        return self.wal_pages >= CHECKPOINT_PAGES

    def checkpoint(self) -> None:
        """Copy the WAL's committed pages into the database file (PASSIVE: it never waits
        for, or blocks, the writer or the readers). Runs on a connection of its own, so
        call it from any one thread, while applies go on elsewhere."""
        try:
            self._checkpointer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        except apsw.Error as exc:
            raise MachineError(f"checkpoint failed: {exc!r}") from exc

    def _apply_run(
        self,
        batch: Sequence[tuple[int, bytes | None]],
        start: int,
        results: list[bytes | None],
    ) -> int:
        """Apply ``batch[start:]`` in one transaction; return where the next run starts
        (earlier than the end only after a transaction-ending ROLLBACK, see module doc)."""
        before = self._applied
        try:
            self._exec("BEGIN IMMEDIATE")
            for i in range(start, len(batch)):
                try:
                    results[i] = self._apply_entry(*batch[i])
                except _TransactionLost as lost:
                    # SQLite has already rolled back everything since BEGIN: redo the
                    # batch's earlier entries (same results, they are deterministic), then
                    # record this command as failed, exactly as if its own savepoint had
                    # been rolled back.
                    self._applied = before
                    self._exec("BEGIN IMMEDIATE")
                    for j in range(start, i):
                        results[j] = self._apply_entry(*batch[j])
                    results[i] = self._finish(
                        batch[i][0], lost.command, CommandResult(error=lost.error)
                    )
                    self._commit()
                    return i + 1
            self._commit()
            return len(batch)
        except BaseException as exc:
            self._rollback()  # back to ``before``: every run starts at the committed index
            if self._over_budget:
                raise _OverBudget from exc
            if isinstance(exc, MachineError | KeyboardInterrupt | SystemExit):
                raise
            raise MachineError(f"applying entries from {batch[start][0]} failed: {exc!r}") from exc

    def _apply_entry(self, index: int, payload: bytes | None) -> bytes | None:
        if payload is None:
            self._set_applied(index)
            return None
        try:
            cmd = WriteCommand.decode(payload)
        except ProtocolError as exc:
            self._set_applied(index)
            return CommandResult(error=exc).encode()
        session = _session_key(cmd.session)
        if session is not None:
            rows = self._exec(
                f"SELECT seq, result FROM {SESSIONS_TABLE} WHERE session = ?", (session,)
            )
            if rows:
                seq, stored = rows[0]
                if seq == cmd.seq:
                    self._set_applied(index)  # a retry: same answer, nothing runs again
                    return bytes(stored)
                if seq > cmd.seq:
                    self._set_applied(index)
                    stale = StaleRequest(
                        f"request seq {cmd.seq} is older than seq {seq}, the last one applied "
                        "for this session; its result is no longer kept"
                    )
                    return CommandResult(error=stale).encode()
        return self._finish(index, cmd, self._execute(cmd))

    def _finish(self, index: int, cmd: WriteCommand, result: CommandResult) -> bytes:
        """Record a command's result (sessions table, applied index); return it encoded."""
        encoded = result.encode()
        session = _session_key(cmd.session)
        if session is not None:
            self._exec(
                f"INSERT INTO {SESSIONS_TABLE}(session, seq, time_ns, result) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(session) DO UPDATE SET "
                "seq = excluded.seq, time_ns = excluded.time_ns, result = excluded.result",
                (session, cmd.seq, cmd.time_ns, encoded),
            )
        if self.expire_every > 0 and index % self.expire_every == 0:
            self._exec(
                f"DELETE FROM {SESSIONS_TABLE} WHERE time_ns < ?",
                (cmd.time_ns - self.session_ttl_ns,),
            )
        self._set_applied(index)
        return encoded

    def _execute(self, cmd: WriteCommand) -> CommandResult:
        """Run a command's statements in a savepoint, in its pinned environment."""
        self._env.pin(cmd.time_ns, cmd.seed)
        self._exec("SAVEPOINT raftsql_command")
        try:
            results = []
            for k, st in enumerate(cmd.stmts):
                try:
                    results.append(self._run(st))
                except RaftsqlError as exc:
                    raise _StatementFailed(k, exc) from None
            if self._db.status(apsw.SQLITE_DBSTATUS_DEFERRED_FKS)[0]:
                raise _StatementFailed(
                    len(cmd.stmts) - 1,
                    ConstraintError("FOREIGN KEY constraint failed (deferred, at end of request)"),
                )
            self._exec("RELEASE raftsql_command")
            return CommandResult(tuple(results))
        except _StatementFailed as failed:
            error = type(failed.error)(
                failed.error.message, **{**failed.error.details, "statement": failed.index}
            )
            if not self._db.in_transaction:
                raise _TransactionLost(cmd, error) from None
            self._exec("ROLLBACK TO raftsql_command")
            self._exec("RELEASE raftsql_command")
            return CommandResult(error=error)
        finally:
            self._env.unpin()

    def _run(self, st: Statement) -> StatementResult:
        """Run one user statement under the WRITE rules; user errors raise RaftsqlError,
        anything else is the node's own failure and propagates."""
        verb = lexer.leading_verb(st.sql)
        db = self._db
        code_before = self._code_objects() if verb == "CREATE" else None
        db.set_last_insert_rowid(0)  # so lastrowid never leaks an earlier command's value
        trace = _Trace(read_only=False)
        cursor = db.cursor()
        cursor.exec_trace = trace
        self._auth.mode = Mode.WRITE
        self._auth.denied = None
        try:
            cursor.execute(st.sql, st.params)
            rows = cursor.fetchall()
        except Exception as exc:
            error = _user_error(exc, self._auth, trace)
            if error is None:
                raise
            raise error from None
        finally:
            self._auth.mode = Mode.INTERNAL
        if verb in lexer.DML_VERBS:
            rowcount = db.changes()
            lastrowid = db.last_insert_rowid() if verb in ("INSERT", "REPLACE") else None
            if not rowcount:
                lastrowid = None
        else:
            rowcount, lastrowid = -1, None
        if code_before is not None:
            self._probe(self._code_objects() - code_before)
        return StatementResult(rows, trace.columns, rowcount, lastrowid)

    # --- probing new triggers and views --------------------------------------------------

    def _code_objects(self) -> set[tuple[str, str, str]]:
        rows = self._exec(
            "SELECT type, name, tbl_name FROM sqlite_schema WHERE type IN ('trigger', 'view')"
        )
        return {tuple(row) for row in rows}

    def _probe(self, created: set[tuple[str, str, str]]) -> None:
        """Compile (EXPLAIN, never run) statements that would fire each new trigger or read
        each new view, under the WRITE rules. SQLite compiles trigger bodies and views into
        the statements that use them, so this is where a forbidden function inside them
        shows; failing here fails the CREATE instead of every later write."""
        for kind, name, table in sorted(created):
            if kind == "view":
                probes = [f"SELECT * FROM {_quote(name)}"]
            else:
                probes = self._trigger_probes(table)
            for sql in probes:
                self._auth.mode = Mode.WRITE
                self._auth.denied = None
                try:
                    cursor = self._db.cursor()
                    cursor.execute("EXPLAIN " + sql, can_cache=False)
                    cursor.close(True)
                except (*_DETERMINISTIC_ERRORS, apsw.AuthError, apsw.ConstraintError) as exc:
                    if self._auth.denied is not None:
                        raise self._auth.error(str(exc)) from None
                    continue  # e.g. a view without INSTEAD OF triggers cannot be modified
                finally:
                    self._auth.mode = Mode.INTERNAL

    def _trigger_probes(self, table: str) -> list[str]:
        columns = [
            name
            for name, hidden in self._exec(
                "SELECT name, hidden FROM pragma_table_xinfo(?)", (table,)
            )
            if not hidden
        ]
        quoted = _quote(table)
        probes = [f"INSERT INTO {quoted} DEFAULT VALUES", f"DELETE FROM {quoted}"]
        if columns:
            sets = ", ".join(f"{_quote(c)} = {_quote(c)}" for c in columns)
            probes.append(f"UPDATE {quoted} SET {sets}")
        return probes

    # --- reads ---------------------------------------------------------------------------

    def query(
        self,
        sql: str,
        params: Sequence[Value] | Mapping[str, Value] | None = None,
        max_rows: int | None = None,
        deadline: float | None = None,
    ) -> StatementResult:
        """Run one read-only statement on the last committed state.

        ``max_rows`` bounds the rows returned (``truncated`` says more existed). Raises the
        user-facing error (SQLError, ForbiddenSQL, ParameterError ...) or MachineError.
        Past ``deadline`` (a ``time.perf_counter()`` value) the query is interrupted and
        :class:`QueryOverBudget` raised: how the server tries reads on its event loop.
        """
        if self._closed:
            raise MachineError("the state machine is closed")
        auth = self._read_auth
        auth.mode = Mode.EXPLAIN if lexer.leading_verb(sql) == "EXPLAIN" else Mode.READ
        auth.denied = None
        trace = _Trace(read_only=True)
        cursor = self._reader.cursor()
        cursor.exec_trace = trace
        rows: list[tuple[Value, ...]] = []
        truncated = False
        self._read_deadline = deadline
        try:
            cursor.execute(sql, params if params is not None else ())
            if max_rows is None:
                rows = cursor.fetchall()
            else:
                for row in cursor:
                    if len(rows) >= max_rows:
                        truncated = True
                        break
                    rows.append(row)
        except Exception as exc:
            if isinstance(exc, apsw.InterruptError) and self._read_past_deadline():
                raise QueryOverBudget(sql) from None
            error = _user_error(exc, auth, trace)
            if error is None:
                raise MachineError(f"query failed: {exc!r}") from exc
            raise error from None
        finally:
            self._read_deadline = None
            cursor.close(True)  # ends the statement, and with it the read transaction
        return StatementResult(rows, trace.columns, -1, None, truncated)

    # --- durability, snapshots, comparison ---------------------------------------------

    def sync(self) -> int:
        """Make everything applied durable (checkpoint the WAL into the database file,
        fsync'd); return the applied index that is now safe to compact the log up to."""
        self.abandon_speculation()
        self._checkpoint()
        return self._committed

    def _checkpoint(self) -> None:
        try:
            self._db.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        except apsw.Error as exc:
            raise MachineError(f"checkpoint failed: {exc!r}") from exc

    def begin_snapshot(self) -> Snapshot:
        """Freeze the current state for copying (see module doc); cheap, call it between
        batches from the apply thread. Close the returned Snapshot when done."""
        if self._closed:
            raise MachineError("the state machine is closed")
        if any(not snap.closed for snap in self._snapshots):
            # Its pinned read would keep our checkpoint from emptying the WAL.
            raise MachineError("a snapshot is already open: close it first")
        self.abandon_speculation()
        self._checkpoint()
        conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            conn.execute("BEGIN")
            index = conn.execute(f"SELECT applied_index FROM {META_TABLE}").fetchall()[0][0]
            size = conn.pragma("page_count") * conn.pragma("page_size")
            wal = self.path + "-wal"
            if os.path.exists(wal) and os.path.getsize(wal) > 0:
                # Someone wrote between our checkpoint and our read: the file alone is not
                # the state we pinned. Cannot happen when called between batches.
                raise MachineError("the database changed while the snapshot was starting")
            fd = os.open(self.path, os.O_RDONLY)
        except BaseException:
            conn.close(True)
            raise
        snap = Snapshot(conn, fd, index, size)
        self._snapshots.add(snap)
        return snap

    def snapshot_to(self, path: str) -> int:
        """Write a page-identical copy of the database to ``path`` (fsync'd, atomically
        renamed into place); return its size in bytes. Its applied index is the current
        one (also available from :func:`snapshot_index`)."""
        with self.begin_snapshot() as snap:
            return snap.write_to(path)

    def restore_from(self, path: str) -> int:
        """Replace the whole database with the snapshot at ``path``; return the snapshot's
        applied index, which becomes ``applied_index``. Sessions come with it, so exactly-
        once holds across the restore."""
        if any(not snap.closed for snap in self._snapshots):
            raise MachineError("close open snapshots before restoring")
        snapshot_index(path)  # refuse a file that is not a raftsql snapshot, before closing
        self.abandon_speculation()
        tmp = self.path + ".restore-tmp"
        shutil.copyfile(path, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        self._checkpoint()
        self._reader.close(True)
        self._checkpointer.close(True)
        self._db.close(True)
        try:
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path + suffix)
            os.replace(tmp, self.path)
            _fsync_dir(self.path)
        finally:
            self._open()
        return self._committed

    def serialize(self) -> bytes:
        """The whole database as bytes (SQLite's serialization: the pages in order)."""
        self.abandon_speculation()
        return self._db.serialize("main")

    def content_digest(self) -> str:
        """A hash of the database pages with the header's transaction counters masked:
        equal on every node that applied the same entries, however they were batched.

        Only the header is copied to be masked; the rest is hashed in place (hashlib lets
        other threads run while it hashes a large buffer). The two whole-image copies this
        made before held the GIL too, each as long as the serialization itself (~40 ms
        for 70 MB in a quiet process, more on a busy machine): the node's event loop, and
        its heartbeats, waited meanwhile."""
        image = memoryview(self.serialize())
        header_end = max(end for _, end in _HEADER_COUNTERS)
        header = bytearray(image[:header_end])
        for start, end in _HEADER_COUNTERS:
            header[start:end] = bytes(end - start)
        digest = hashlib.blake2b(header, digest_size=32)
        digest.update(image[header_end:])
        return digest.hexdigest()


class Snapshot:
    """A pinned, consistent state of the database, ready to be copied to a file.

    While it is open, checkpoints cannot touch the database file (new writes accumulate in
    the WAL), so copying the file yields exactly the pinned state. Close it promptly.
    """

    def __init__(self, conn: apsw.Connection, fd: int, index: int, size: int) -> None:
        self._conn: apsw.Connection | None = conn
        self._fd = fd
        self.index = index
        """The applied index of the pinned state."""
        self.size = size
        """Its size in bytes (page count times page size)."""

    def write_to(self, path: str) -> int:
        """Copy the pinned state to ``path`` (via a temporary file, fsync'd, renamed);
        return the number of bytes written."""
        if self._conn is None:
            raise MachineError("snapshot is closed")
        tmp = path + ".tmp"
        with open(tmp, "wb") as out:
            offset = 0
            while offset < self.size:
                chunk = os.pread(self._fd, min(COPY_CHUNK, self.size - offset), offset)
                if not chunk:
                    raise MachineError(f"database file shorter than its {self.size} bytes")
                out.write(chunk)
                offset += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(path)
        return self.size

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close(True)
            os.close(self._fd)
            self._conn = None

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def snapshot_index(path: str) -> int:
    """The applied index stored in a snapshot file (raises MachineError if it is not one)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?immutable=1"
    try:
        conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        try:
            rows = conn.execute(f"SELECT applied_index, format FROM {META_TABLE}").fetchall()
        finally:
            conn.close(True)
    except apsw.Error as exc:
        raise MachineError(f"{path} is not a raftsql snapshot: {exc}") from exc
    if not rows or rows[0][1] != FORMAT:
        raise MachineError(f"{path} is not a raftsql snapshot of format {FORMAT}")
    return int(rows[0][0])


def _session_key(session: bytes | str) -> bytes | None:
    if isinstance(session, str):
        session = session.encode("utf-8")
    return session or None
