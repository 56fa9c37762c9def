"""Classify SQL before it is replicated: read or write, its parameters, and whether it can be
replicated at all.

The leader runs :func:`classify` on every statement of every request, so it is cached by
SQL text: analysis costs 75-450 us a statement (up to ~1 ms with sqlglot), a cache hit
about a microsecond. Rejections are cached too, so a client repeating bad SQL cannot make
the leader parse it again and again. Clients that write values into the SQL text instead
of parameters miss that cache every time, so a second cache keys DML by its *shape*: the
tokens with every string and number literal blanked. A literal cannot change what the
analysis decides (verb, parameters, tables, function calls), so one analysis serves
``INSERT ... VALUES (1, 'a')`` and ``(2, 'b')`` alike; the lexing it costs is ~10x cheaper
than the analysis. The SQL text itself is never changed: the log carries the original text, because
regenerating SQL (sqlglot can) may change its meaning (STRICT dropped, ``INT PRIMARY KEY``
turned into a rowid alias).

One SQL string holds one statement. A string with several is rejected with a message that
says how to send them (a list of statements, which one request applies as one
transaction); :func:`split_script` turns a script into such a list without rewriting it.
This keeps parameters unambiguous (each statement binds its own) and results one per
statement.

The analysis is layered, each layer doing what it is best at:

1. lexer.py (SQLite's tokenizer rules): statement count, the verb (read or write, even
   behind ``WITH``), the parameters, and every statement-level refusal (ATTACH, DETACH,
   BEGIN/COMMIT/ROLLBACK/SAVEPOINT/RELEASE, VACUUM [INTO], TEMP objects, PRAGMAs outside the
   allow-list, names of raftsql's internal tables).
2. SQLite itself: the statement is compiled (``EXPLAIN``, never run) on a scratch
   in-memory database under the same authorizer the state machine uses. That yields
   SQLite's own syntax errors, and when the statement does not depend on the schema
   (``SELECT random()``, ``CREATE TABLE`` with its defaults and CHECKs) SQLite's complete
   list of the functions it calls.
3. sqlglot: when SQLite cannot resolve the statement without the schema (``INSERT INTO t``),
   sqlglot's parse tree says which names are function calls, and trigger bodies and view
   definitions are parsed statement by statement. sqlglot misreads some SQLite syntax, so
   what it reports is only trusted where the source text agrees (``name(`` appears), and a
   statement it cannot parse is passed on unanalysed.
4. The state machine's authorizer on every node, which sees everything (it is SQLite
   compiling the statement against the real schema, triggers and views included): what
   the layers above could not see is rejected there, deterministically.

Decisions on node-dependent functions: changes(), total_changes(), last_insert_rowid()
are refused everywhere (they report connection state; results carry rowcount and
lastrowid). sqlite_version() and the other build-describing functions are allowed in reads
and refused in writes, where the stored value could differ between nodes running different
SQLite builds. random(), randomblob(), 'now' and CURRENT_TIMESTAMP are allowed: the state
machine pins them per command (environment.py).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apsw
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from raftsql.errors import ForbiddenSQL, ParameterError, RaftsqlError, SQLError
from raftsql.sql import lexer, rules
from raftsql.sql.authorizer import Authorizer, Mode
from raftsql.sql.command import Params, Value
from raftsql.sql.environment import configure
from raftsql.sql.lexer import Kind, ParamStyle, Token, split_script

__all__ = [
    "Classification",
    "ParamStyle",
    "cache_info",
    "check_params",
    "classify",
    "split_script",
]

CACHE_SIZE = 4096
MAX_CACHED_SQL = 64 * 1024
"""Longer SQL texts are analysed every time instead of cached, bounding the cache's memory
(at most CACHE_SIZE * MAX_CACHED_SQL characters)."""

_READ_VERBS = frozenset({"SELECT", "VALUES", "EXPLAIN"})
_WRITE_VERBS = frozenset(
    {"INSERT", "REPLACE", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "ANALYZE", "REINDEX"}
)
_TRANSACTION_VERBS = frozenset({"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"})


@dataclass(frozen=True, slots=True)
class Classification:
    """What the leader needs to know about one SQL statement."""

    sql: str
    verb: str
    """SELECT, INSERT, CREATE, PRAGMA ... (for ``WITH``, the verb of the main statement)."""
    is_write: bool
    """True if the statement goes through the log; False if query() can run it locally."""
    param_style: ParamStyle
    param_count: int
    """How many parameters SQLite will expect (the largest index, for ?NNN)."""
    param_names: tuple[str, ...]
    """For named parameters, their names without the : @ $ prefix (the mapping's keys)."""
    functions: frozenset[str]
    """The functions the statement was seen to call (lower case), as far as analysis went."""
    analyzed_by: str
    """The deepest layer that checked the statement: "sqlite" (complete), "sqlglot"
    (function calls checked from the parse tree), or "tokens" (statement level only, which
    is complete for PRAGMA; otherwise the state machine's authorizer checks the rest when
    the statement runs)."""


@dataclass(frozen=True, slots=True)
class _Rejected:
    """A cached refusal: re-raised as a fresh exception on every hit."""

    cls: type[RaftsqlError]
    message: str


def classify(sql: str) -> Classification:
    """Classify one SQL statement, or raise SQLError / ForbiddenSQL / ParameterError."""
    if not isinstance(sql, str):
        raise SQLError(f"SQL must be a string, not {type(sql).__name__}")
    outcome = _classify_cached(sql) if len(sql) <= MAX_CACHED_SQL else _outcome(sql)
    if isinstance(outcome, _Rejected):
        raise outcome.cls(outcome.message)
    return outcome


@functools.lru_cache(maxsize=CACHE_SIZE)
def _classify_cached(sql: str) -> Classification | _Rejected:
    shape = _shape(sql)
    if shape is not None:
        known = _shapes.get(shape)
        if known is not None:
            return dataclasses.replace(known, sql=sql)
    outcome = _outcome(sql)
    if shape is not None and isinstance(outcome, Classification):
        if len(_shapes) >= CACHE_SIZE:
            del _shapes[next(iter(_shapes))]  # the oldest: insertion order
        _shapes[shape] = outcome
    return outcome


_shapes: dict[tuple[tuple[str, str], ...], Classification] = {}
"""Successful classifications of DML by shape (see the module doc); failures are never
generalised: a refused statement is refused by its own text only."""
_SHAPED_VERBS = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE", "SELECT", "VALUES"})
_LITERALS = (Kind.STRING, Kind.NUMBER)


def _shape(sql: str) -> tuple[tuple[str, str], ...] | None:
    """The statement's tokens with string and number literals blanked, or None when it is
    not plain DML with literals in it (then only the exact text is cached)."""
    try:
        tokens = lexer.tokenize(sql)
    except RaftsqlError:
        return None  # the full analysis reports it
    if not tokens or tokens[0].upper not in _SHAPED_VERBS:
        return None
    if not any(t.kind in _LITERALS for t in tokens):
        return None
    return tuple((t.kind.value, "" if t.kind in _LITERALS else t.value) for t in tokens)


def cache_info() -> Any:
    """Hit/miss counters of the classification cache (functools.lru_cache's)."""
    return _classify_cached.cache_info()


def _outcome(sql: str) -> Classification | _Rejected:
    try:
        return _analyze(sql)
    except RaftsqlError as exc:
        return _Rejected(type(exc), exc.message)


# ---------------------------------------------------------------------------------------------
# Layer 1: tokens


def _analyze(sql: str) -> Classification:
    statements = lexer.split(lexer.tokenize(sql))
    if not statements:
        raise SQLError("no SQL statement to run (the text is empty or only comments)")
    if len(statements) > 1:
        raise ForbiddenSQL(
            f"one SQL string must hold exactly one statement, this one holds "
            f"{len(statements)}: send them as a list of statements (a request runs them "
            "all as one transaction), or split a script with split_script()"
        )
    tokens = statements[0]
    params = lexer.parameters(tokens)
    verb = lexer.verb_of(tokens)
    is_write = _check_verb(verb, tokens)
    for tok in tokens:
        name = tok.name
        if name is None:
            continue
        problem = rules.internal_name_problem(name) if is_write else None
        if problem is None and name[:7].lower() == "pragma_":
            problem = rules.table_function_problem(name, is_write)
        if problem is not None:
            raise problem[0](problem[1])
    if verb == "PRAGMA":
        functions: frozenset[str] = frozenset()
        analyzed_by = "tokens"  # the pragma allow-list decides everything
    else:
        functions, analyzed_by = _deep_check(sql, tokens, verb, is_write, params)
    return Classification(
        sql=sql,
        verb=verb,
        is_write=is_write,
        param_style=params.style,
        param_count=params.count,
        param_names=params.names,
        functions=functions,
        analyzed_by=analyzed_by,
    )


def _check_verb(verb: str, tokens: list[Token]) -> bool:
    """Refuse statements that cannot replicate; otherwise say whether it is a write."""
    if verb in _READ_VERBS:
        return False
    if verb in _WRITE_VERBS:
        if verb == "CREATE":
            _check_create(tokens)
        return True
    if verb == "PRAGMA":
        return _check_pragma(tokens)
    if verb == "WITH":
        return True  # no main statement found: let SQLite report the syntax error
    if verb == "ATTACH":
        raise ForbiddenSQL(rules.ATTACH_MESSAGE)
    if verb == "DETACH":
        raise ForbiddenSQL(rules.DETACH_MESSAGE)
    if verb in _TRANSACTION_VERBS:
        raise ForbiddenSQL(rules.TRANSACTION_MESSAGE.format(verb=verb))
    if verb == "VACUUM":
        if any(tok.upper == "INTO" for tok in tokens):
            raise ForbiddenSQL(rules.VACUUM_INTO_MESSAGE)
        raise ForbiddenSQL(rules.VACUUM_MESSAGE)
    word = tokens[0].value if tokens else ""
    raise SQLError(f'near "{word}": syntax error (not a statement raftsql can run)')


def _check_create(tokens: list[Token]) -> None:
    """CREATE TEMP ... and CREATE ... temp.name are refused; so is any schema but main."""
    words = [tok.upper for tok in tokens[:8]]
    if len(words) > 1 and words[1] in ("TEMP", "TEMPORARY"):
        raise ForbiddenSQL(rules.TEMP_MESSAGE)
    # Find the object name: after TABLE/INDEX/VIEW/TRIGGER and an optional IF NOT EXISTS.
    i = 1
    while i < len(tokens) and tokens[i].upper in ("UNIQUE", "VIRTUAL"):
        i += 1
    i += 1  # TABLE / INDEX / VIEW / TRIGGER
    if [t.upper for t in tokens[i : i + 3]] == ["IF", "NOT", "EXISTS"]:
        i += 3
    if i + 2 < len(tokens) and tokens[i + 1].kind is Kind.OP and tokens[i + 1].value == ".":
        schema = tokens[i].name or ""
        if schema.lower() == "temp":
            raise ForbiddenSQL(rules.TEMP_MESSAGE)
        if schema.lower() != "main":
            raise ForbiddenSQL(f"schema {schema!r} is not allowed: only the main database exists")


def _check_pragma(tokens: list[Token]) -> bool:
    """``PRAGMA [schema.]name [= value | (value)]`` against the allow-list; True if it
    writes (an allowed assignment such as ``user_version = 3``)."""
    rest = tokens[1:]
    schema: str | None = None
    if len(rest) >= 3 and rest[1].kind is Kind.OP and rest[1].value == ".":
        schema = rest[0].name
        rest = rest[2:]
    if not rest or rest[0].name is None:
        raise SQLError("incomplete PRAGMA: expected a pragma name")
    name = rest[0].name or ""
    tail = rest[1:]
    arg: str | None = None
    if tail:
        value_tokens = tail[1:-1] if tail[0].value == "(" else tail[1:]
        arg = "".join(tok.value for tok in value_tokens) or ""
    problem = rules.pragma_problem(name, arg, schema, writing=True)
    if problem is not None:
        raise problem[0](problem[1])
    return arg is not None and name.lower() in rules.WRITE_PRAGMAS


# ---------------------------------------------------------------------------------------------
# Layer 2: SQLite on a scratch database


class _Recorder(Authorizer):
    """The state machine's authorizer, also noting which functions SQLite resolved."""

    __slots__ = ("functions",)

    def __init__(self, mode: Mode) -> None:
        super().__init__(mode)
        self.functions: set[str] = set()

    def __call__(
        self, op: int, p1: str | None, p2: str | None, db: str | None, source: str | None
    ) -> int:
        if op == apsw.mapping_authorizer_function["SQLITE_FUNCTION"] and p2:
            self.functions.add(p2.lower())
        return super().__call__(op, p1, p2, db, source)


class _Scratch:
    """An empty in-memory database for compiling statements (never running them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn = apsw.Connection(":memory:")
        configure(self.conn)
        self.builtins = frozenset(
            row[0].lower() for row in self.conn.execute("SELECT name FROM pragma_function_list")
        )


@functools.cache
def _scratch() -> _Scratch:
    return _Scratch()


_SCHEMA_FREE_ERRORS = ("syntax error", "incomplete input", "unrecognized token")
_NO_SUCH_FUNCTION = re.compile(r"no such function: (\S+)")


def _sqlite_check(
    sql: str, verb: str, is_write: bool, params: lexer.Params
) -> frozenset[str] | None:
    """Compile ``sql`` on the scratch database. Returns the functions it calls if SQLite
    could resolve the whole statement, None if it needs the real schema; raises for
    syntax errors, unknown functions and anything the authorizer refuses."""
    scratch = _scratch()
    mode = Mode.EXPLAIN if verb == "EXPLAIN" else Mode.WRITE if is_write else Mode.READ
    recorder = _Recorder(mode)
    text = sql if verb == "EXPLAIN" else "EXPLAIN " + sql
    with scratch.lock:
        scratch.conn.authorizer = recorder
        try:
            cursor = scratch.conn.cursor()
            cursor.execute(text, _null_bindings(params), can_cache=False)
            cursor.close()
        except apsw.Error as exc:
            if recorder.denied is not None:
                raise recorder.error(str(exc)) from None
            message = str(exc)
            unknown = _NO_SUCH_FUNCTION.match(message)
            if unknown:
                raise _unknown_function(unknown.group(1)) from None
            if any(marker in message for marker in _SCHEMA_FREE_ERRORS):
                raise SQLError(message) from None
            return None  # "no such table" and friends: only the real schema can tell
        finally:
            scratch.conn.authorizer = None
    return frozenset(recorder.functions)


def _null_bindings(params: lexer.Params) -> tuple[None, ...] | dict[str, None]:
    """NULL for every parameter: EXPLAIN compiles the statement, it never uses them."""
    if params.style is ParamStyle.NAMED:
        return dict.fromkeys(params.names)
    return (None,) * params.count


def _unknown_function(name: str) -> ForbiddenSQL:
    return ForbiddenSQL(
        f"unknown function {name}(): replicated SQL can call only SQLite's built-in "
        "functions (user-defined functions would have to exist on every node)"
    )


# ---------------------------------------------------------------------------------------------
# Layer 3: sqlglot


def _deep_check(
    sql: str, tokens: list[Token], verb: str, is_write: bool, params: lexer.Params
) -> tuple[frozenset[str], str]:
    resolved = _sqlite_check(sql, verb, is_write, params)
    defines_code = verb == "CREATE" and _creates(tokens) in ("TRIGGER", "VIEW")
    if resolved is not None and not defines_code:
        return resolved, "sqlite"
    if verb == "EXPLAIN":
        return frozenset(), "tokens"  # a read that never runs its statement
    calls = _call_sites(tokens)
    if verb == "CREATE" and _creates(tokens) == "TRIGGER":
        pieces = _trigger_pieces(sql, tokens)
    else:
        pieces = [_analysis_text(sql, tokens)]
    found: set[str] = set(resolved or ())
    complete = True
    for piece in pieces:
        names = _sqlglot_functions(piece, calls, is_write)
        if names is None:
            complete = False
        else:
            found |= names
    for name in sorted(found):
        problem = rules.function_problem(name, is_write)
        if problem is not None:
            raise problem[0](problem[1])
        if name not in _scratch().builtins and name != "raise":
            raise _unknown_function(name)
    return frozenset(found), ("sqlglot" if complete else "tokens")


def _creates(tokens: list[Token]) -> str:
    """What a CREATE statement creates: TABLE, INDEX, VIEW, TRIGGER or VIRTUAL."""
    for tok in tokens[1:4]:
        if tok.upper in ("TABLE", "INDEX", "VIEW", "TRIGGER", "VIRTUAL"):
            return tok.upper
    return ""


def _call_sites(tokens: list[Token]) -> frozenset[str]:
    """Lower-cased names written directly before '(' in the source: every function call
    is one (but so are table names with column lists, hence only a cross-check)."""
    out = set()
    for tok, nxt in itertools.pairwise(tokens):
        if nxt.kind is Kind.OP and nxt.value == "(" and tok.name is not None:
            out.add(tok.name.lower())
    return frozenset(out)


def _analysis_text(sql: str, tokens: list[Token]) -> str:
    """The statement rewritten for sqlglot's benefit only (never executed): parameters in a
    form sqlglot reads, and REPLACE INTO spelled INSERT OR REPLACE INTO."""
    parts: list[str] = []
    pos = tokens[0].start
    for i, tok in enumerate(tokens):
        parts.append(sql[pos : tok.start])
        if tok.kind is Kind.PARAM:
            parts.append("?" if tok.value[0] == "?" else f":p{i}")
        elif i == 0 and tok.upper == "REPLACE":
            parts.append("INSERT OR REPLACE")
        else:
            parts.append(sql[tok.start : tok.end])
        pos = tok.end
    return "".join(parts)


def _trigger_pieces(sql: str, tokens: list[Token]) -> list[str]:
    """The WHEN condition and each body statement of a CREATE TRIGGER, as separate texts
    sqlglot can parse (it cannot parse CREATE TRIGGER itself)."""
    pieces: list[str] = []
    depth = 0
    begin = when = None
    for i, tok in enumerate(tokens):
        if tok.kind is Kind.OP and tok.value in "()":
            depth += 1 if tok.value == "(" else -1
        elif depth == 0 and tok.upper == "WHEN" and when is None:
            when = i
        elif depth == 0 and tok.upper == "BEGIN":
            begin = i
            break
    if begin is None:
        return [_analysis_text(sql, tokens)]
    if when is not None and begin > when + 1:
        cond = tokens[when + 1 : begin]
        pieces.append("SELECT " + _analysis_text(sql, cond))
    body = tokens[begin + 1 :]
    if body and body[-1].upper == "END":
        body = body[:-1]
    current: list[Token] = []
    for tok in body:
        if tok.kind is Kind.SEMI:
            if current:
                pieces.append(_analysis_text(sql, current))
            current = []
        else:
            current.append(tok)
    if current:
        pieces.append(_analysis_text(sql, current))
    return pieces


_HEAD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


class _QuietFallbacks(logging.Filter):
    """Drops sqlglot's "falling back to parsing as a Command" warnings raised by our own
    parses (a thread-local flag marks them): an unparsable statement is an expected,
    handled case here, and logging it for every cache miss would only be noise."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "active", False)


_quiet = _QuietFallbacks()
logging.getLogger("sqlglot").addFilter(_quiet)


def _sqlglot_functions(text: str, calls: frozenset[str], is_write: bool) -> set[str] | None:
    """Function names sqlglot finds in ``text`` and the source confirms, after checking
    table-valued functions; None if sqlglot cannot parse it."""
    _quiet.local.active = True
    try:
        tree = sqlglot.parse_one(text, read="sqlite", error_level=ErrorLevel.IMMEDIATE)
    except SqlglotError:
        return None
    finally:
        _quiet.local.active = False
    if tree is None or isinstance(tree, exp.Command):
        return None
    names: set[str] = set()
    for node in tree.find_all(exp.Func):
        if isinstance(node, exp.Anonymous):
            name = str(node.this).lower()
        else:
            try:
                rendered = node.sql(dialect="sqlite", unsupported_level=ErrorLevel.IGNORE)
            except SqlglotError:
                continue
            head = _HEAD.match(rendered)
            if head is None:
                continue  # an operator or keyword form, not a call
            name = head.group(1).lower()
        if name not in calls:
            continue  # sqlglot's naming, not the user's: not a call in the source
        if isinstance(node.parent, exp.Table):
            problem = rules.table_function_problem(name, is_write)
            if problem is not None:
                raise problem[0](problem[1])
            continue
        names.add(name)
    return names


# ---------------------------------------------------------------------------------------------
# Parameters

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def check_params(
    classification: Classification,
    params: Sequence[Any] | Mapping[str, Any] | None,
) -> Params:
    """Check ``params`` against the statement and return them in wire form (a tuple or a
    dict of SQLite values), or raise ParameterError saying exactly what is wrong.

    Positional statements (``?``, ``?NNN``) take a sequence of exactly ``param_count``
    values; named statements take a mapping with every name (extra keys are ignored, as in
    Python's sqlite3, and dropped). Values must be None, int (64-bit), float, str or bytes;
    bool becomes 0/1 and bytearray/memoryview become bytes.
    """
    style = classification.param_style
    if params is None:
        params = ()
    if style is ParamStyle.NAMED:
        if not isinstance(params, Mapping):
            raise ParameterError(
                f"this statement uses named parameters "
                f"({', '.join(':' + n for n in classification.param_names)}): pass a mapping"
            )
        missing = [name for name in classification.param_names if name not in params]
        if missing:
            raise ParameterError(
                f"missing value for named parameter {', '.join(':' + n for n in missing)}"
            )
        return {name: _value(params[name], f":{name}") for name in classification.param_names}
    if isinstance(params, Mapping):
        if style is ParamStyle.NONE and not params:
            return ()
        raise ParameterError(
            "this statement uses positional (?) parameters: pass a sequence, not a mapping"
            if style is ParamStyle.QMARK
            else "this statement takes no parameters, but a mapping was given"
        )
    if isinstance(params, str | bytes) or not isinstance(params, Sequence):
        raise ParameterError(
            f"parameters must be a sequence or a mapping, not {type(params).__name__}"
        )
    if len(params) != classification.param_count:
        raise ParameterError(
            f"this statement takes {classification.param_count} parameter"
            f"{'' if classification.param_count == 1 else 's'}, {len(params)} given"
        )
    return tuple(_value(v, f"#{i + 1}") for i, v in enumerate(params))


def _value(value: Any, where: str) -> Value:
    kind = type(value)
    if value is None or kind is float or kind is bytes:
        return value  # type: ignore[no-any-return]
    if kind is str:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ParameterError(
                    f"parameter {where}: the string is not valid Unicode (lone surrogate)"
                ) from None
        return value  # type: ignore[no-any-return]
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ParameterError(
                f"parameter {where}: {value} does not fit in SQLite's 64-bit integer"
            )
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return int(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    # Subclasses (IntEnum, str-based enums ...) bind as their base value.
    if isinstance(value, int):
        return _value(int(value), where)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return _value(str.__str__(value), where)
    if isinstance(value, bytes):
        return bytes(value)
    raise ParameterError(
        f"parameter {where} has unsupported type {kind.__name__}: "
        "use None, int, float, str or bytes"
    )
