"""What replicated SQL may and may not do: one list, read by both lines of defence.

The leader's classifier (statements.py) rejects forbidden SQL before it costs a log entry;
the state machine's authorizer (authorizer.py) enforces the same rules inside SQLite on
every node, deterministically, for whatever the classifier could not see (trigger bodies,
views, column defaults, statements sqlglot cannot parse). Keeping the rules here means the
two can never disagree about what is allowed, only about how early they notice.

A rule returns None when something is allowed, or ``(error class, message)`` when it is not.
Messages name the construct, say why it cannot replicate, and where possible what to do
instead.
"""

from __future__ import annotations

from raftsql.errors import ForbiddenSQL, NonDeterministicSQL

Problem = tuple[type[ForbiddenSQL], str] | None

INTERNAL_PREFIX = "_raftsql_"
"""Tables whose name starts with this belong to the state machine (applied index, client
sessions). User SQL may read them but never create, change or drop them."""

# --- PRAGMAs ---------------------------------------------------------------------------------

READ_PRAGMAS_WITH_ARG = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
    }
)
"""Read-only pragmas that take a table/index name (or a limit) as their argument."""

READ_PRAGMAS_NO_ARG = frozenset(
    {
        "user_version",
        "application_id",
        "schema_version",
        "page_count",
        "page_size",
        "freelist_count",
        "encoding",
        "collation_list",
        "function_list",
        "module_list",
        "pragma_list",
        "compile_options",
    }
)
"""Pragmas that are read-only when given no argument (with one, most would change settings)."""

WRITE_PRAGMAS = frozenset({"user_version", "application_id"})
"""Pragmas that may be assigned in a replicated write: they store a number in the database
header, inside the transaction, exactly like a row would. Migration tools rely on
user_version."""


def pragma_problem(name: str, arg: str | None, schema: str | None, writing: bool) -> Problem:
    """Whether ``PRAGMA [schema.]name [= arg | (arg)]`` may run (in a write or in a read)."""
    lname = name.lower()
    if schema is not None and schema.lower() != "main":
        return ForbiddenSQL, f"PRAGMA {schema}.{name} is not allowed: only the main database exists"
    if lname in READ_PRAGMAS_WITH_ARG:
        return None
    if lname in READ_PRAGMAS_NO_ARG and arg is None:
        return None
    if lname in WRITE_PRAGMAS and arg is not None:
        if writing:
            return None
        return ForbiddenSQL, (
            f"PRAGMA {name} = ... changes the database: send it as a write, not a query"
        )
    return ForbiddenSQL, (
        f"PRAGMA {name} is not allowed: it reads or changes this node's connection or file "
        "settings, which raftsql manages identically on every node (allowed: read-only "
        "pragmas such as table_info, index_list, foreign_key_check, integrity_check, "
        "user_version; and user_version/application_id assignments in writes)"
    )


# --- Functions -------------------------------------------------------------------------------

_FUNCTIONS_NEVER: dict[str, tuple[type[ForbiddenSQL], str]] = {
    "load_extension": (
        ForbiddenSQL,
        "load_extension() is not allowed: it would load native code into one node only",
    ),
    "changes": (
        NonDeterministicSQL,
        "changes() is not allowed: it reports this node's connection state, not the data; "
        "use the rowcount in the result instead",
    ),
    "total_changes": (
        NonDeterministicSQL,
        "total_changes() is not allowed: it counts this node's connection history, not the data",
    ),
    "last_insert_rowid": (
        NonDeterministicSQL,
        "last_insert_rowid() is not allowed: it reports this node's connection state; use "
        "the lastrowid in the result, or INSERT ... RETURNING",
    ),
    "sqlite_log": (
        ForbiddenSQL,
        "sqlite_log() is not allowed: it writes to the node's own error log",
    ),
    "fts3_tokenizer": (
        ForbiddenSQL,
        "fts3_tokenizer() is not allowed: it can register native tokenizer pointers",
    ),
}

_FUNCTIONS_NOT_IN_WRITES = frozenset(
    {
        "sqlite_version",
        "sqlite_source_id",
        "sqlite_compileoption_get",
        "sqlite_compileoption_used",
        "fts5_source_id",
    }
)
"""Functions that describe the node's SQLite build: fine to look at in a read, but a write
would store a value that differs on a node running another build."""


def function_problem(name: str, writing: bool) -> Problem:
    """Whether SQL may call the function ``name`` (case-insensitive)."""
    lname = name.lower()
    problem = _FUNCTIONS_NEVER.get(lname)
    if problem is not None:
        return problem
    if writing and lname in _FUNCTIONS_NOT_IN_WRITES:
        return NonDeterministicSQL, (
            f"{lname}() is not allowed in a write: nodes may run different SQLite builds, so "
            "the stored value would differ between them (it is allowed in reads)"
        )
    return None


# --- Virtual tables and table-valued functions ----------------------------------------------

VTAB_MODULES = frozenset(
    {"fts3", "fts4", "fts4aux", "fts5", "fts5vocab", "rtree", "rtree_i32", "geopoly"}
)
"""Modules CREATE VIRTUAL TABLE may use: they keep their data in ordinary shadow tables, so
they replicate like any other table."""


def vtab_problem(module: str) -> Problem:
    if module.lower() in VTAB_MODULES:
        return None
    allowed = ", ".join(sorted(VTAB_MODULES))
    return ForbiddenSQL, f"virtual table module {module!r} is not allowed (allowed: {allowed})"


TABLE_FUNCTIONS = frozenset(
    {"json_each", "json_tree", "jsonb_each", "jsonb_tree", "generate_series", "dbstat"}
)
"""Eponymous table-valued functions besides ``pragma_<name>``."""


def table_function_problem(name: str, writing: bool) -> Problem:
    """Whether ``FROM name(...)`` may be used; ``pragma_x(...)`` follows the PRAGMA rules."""
    lname = name.lower()
    if lname.startswith("pragma_"):
        # A table-valued pragma is always a read of that pragma (with its argument, if any).
        pname = lname.removeprefix("pragma_")
        if pname in READ_PRAGMAS_WITH_ARG or pname in READ_PRAGMAS_NO_ARG:
            return None
        return pragma_problem(pname, None, None, writing)
    if lname == "dbstat" and writing:
        return ForbiddenSQL, "dbstat is not allowed in a write: it describes the file layout"
    if lname in TABLE_FUNCTIONS:
        return None
    return ForbiddenSQL, f"unknown table-valued function {name}()"


# --- Statements --------------------------------------------------------------------------

TRANSACTION_MESSAGE = (
    "{verb} is not allowed: every request already runs as one transaction on every node; "
    "send several statements in one request (atomic) instead"
)
ATTACH_MESSAGE = (
    "ATTACH is not allowed: each node has only its own replicated database; "
    "attached files would differ between nodes"
)
ATTACH_OR_VACUUM_INTO_MESSAGE = (
    "ATTACH and VACUUM INTO are not allowed: each node has only its own replicated "
    "database, and files opened or written beside it would differ between nodes"
)
DETACH_MESSAGE = "DETACH is not allowed: there is nothing attached to detach"
VACUUM_MESSAGE = (
    "VACUUM is not allowed: it cannot run inside the replicated transaction, and raftsql "
    "keeps the file layout identical on every node"
)
VACUUM_INTO_MESSAGE = (
    "VACUUM INTO is not allowed: it writes a file on each node's disk; take a snapshot instead"
)
TEMP_MESSAGE = (
    "TEMP objects are not allowed: they would live in one node's connection only and "
    "vanish on restart; create an ordinary table instead"
)
INTERNAL_MESSAGE = "{name} is internal to raftsql: it cannot be created, changed or dropped"


def internal_name_problem(name: str | None) -> Problem:
    if name is not None and name.lower().startswith(INTERNAL_PREFIX):
        return ForbiddenSQL, INTERNAL_MESSAGE.format(name=name)
    return None
