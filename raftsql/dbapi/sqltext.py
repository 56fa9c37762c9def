"""What the driver needs to know about a statement before sending it: read, write or unknown;
whether it has a RETURNING clause; which parameters it takes.

Why the driver looks at SQL at all: outside autocommit, writes are held back until
``commit()`` while reads run at once, so the driver must tell them apart before the server
sees them. Why not import ``raftsql.sql``: that package needs sqlglot and apsw, and the
client side depends only on the wire and the error types (DESIGN.md, "arrows"). So this is
a deliberately small copy of the few rules of ``raftsql/sql/lexer.py`` that matter here:
SQLite's token rules (quotes, comments, parameters) and the verb, even behind ``WITH``.

The server stays the authority. Nothing here rejects SQL the server would accept; the
driver only uses the answer to route a statement, and routes anything it is unsure of
(``UNKNOWN``) through the read path, which never writes, so a wrong guess can cost an
error but never a write outside its transaction. tests/e2e/test_dbapi.py checks that this
module and the server's classifier agree on a corpus of statements.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

__all__ = ["Kind", "StatementInfo", "classify"]


class Kind(enum.Enum):
    """How the driver routes a statement."""

    READ = "read"  # SELECT, VALUES, EXPLAIN, reading PRAGMAs: run now
    WRITE = "write"  # goes through the replicated log: buffered in a transaction
    UNKNOWN = "unknown"  # anything else (BEGIN, ATTACH, garbage ...): let the server say


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """The driver's view of one SQL string."""

    kind: Kind
    verb: str
    """SELECT, INSERT, CREATE ... (for ``WITH``, the main statement's verb), or ""."""
    returning: bool
    """A DML statement with a RETURNING clause: it produces rows when it is applied."""
    param_style: str
    """"none", "qmark" (``?``, ``?NNN``: bind a sequence) or "named" (``:a``, ``@a``,
    ``$a``: bind a mapping); "mixed" when both appear (the server refuses that)."""
    param_count: int
    """The number of values a sequence must hold (SQLite's largest parameter index)."""
    param_names: tuple[str, ...]
    """For "named", the mapping keys the statement needs (names without their prefix)."""


_READ_VERBS = frozenset({"SELECT", "VALUES", "EXPLAIN"})
# The server's write verbs (statements.py _WRITE_VERBS); PRAGMA is decided below.
_WRITE_VERBS = frozenset(
    {"INSERT", "REPLACE", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "ANALYZE", "REINDEX"}
)
_DML_VERBS = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE"})
_MAIN_VERBS = frozenset({"SELECT", "VALUES", "INSERT", "REPLACE", "UPDATE", "DELETE"})
_WRITE_PRAGMAS = frozenset({"user_version", "application_id"})

_ID_START = r"[A-Za-z_\u0080-\U0010ffff]"
_ID_CHAR = r"[A-Za-z0-9_$\u0080-\U0010ffff]"
_TOKEN = re.compile(
    rf"""
      (?P<skip> \s+ | --[^\n]* | /\*.*?(?:\*/|\Z) )
    | (?P<semi> ; )
    | (?P<literal> [xX]'[^']*' | '(?:[^']|'')*' )
    | (?P<quoted> "(?:[^"]|"")*" | `(?:[^`]|``)*` | \[[^\]]*\] )
    | (?P<bad> ['"`\[] )
    | (?P<number> (?: 0[xX][0-9A-Fa-f_]* | (?:\d[\d_]*(?:\.[\d_]*)? | \.\d[\d_]*)
                      (?:[eE][+-]?\d+)? ) {_ID_CHAR}* )
    | (?P<param> \?\d* | [:@]{_ID_CHAR}+ | \${_ID_CHAR}+ (?:::{_ID_CHAR}+)* (?:\([^)]*\))? )
    | (?P<word> {_ID_START}{_ID_CHAR}* )
    | (?P<op> . )
    """,
    re.VERBOSE | re.DOTALL,
)

_UNKNOWN = StatementInfo(Kind.UNKNOWN, "", False, "none", 0, ())


@functools.lru_cache(maxsize=1024)
def classify(sql: str) -> StatementInfo:
    """The driver's view of ``sql`` (cached by text: programs repeat their statements)."""
    tokens: list[tuple[str, str]] = []  # (group, text); words are upper-cased
    for match in _TOKEN.finditer(sql):
        group = match.lastgroup or ""
        if group == "skip":
            continue
        if group == "bad":
            return _UNKNOWN  # an unterminated quote: the server words the error
        text = match.group()
        tokens.append((group, text.upper() if group == "word" else text))
    first_semi = next((i for i, (g, _) in enumerate(tokens) if g == "semi"), len(tokens))
    stmt, rest = tokens[:first_semi], [t for t in tokens[first_semi:] if t[0] != "semi"]
    if not stmt:
        return _UNKNOWN
    verb = _verb(stmt)
    if rest and not (verb == "CREATE" and ("word", "TRIGGER") in stmt[:4]):
        return _UNKNOWN  # several statements in one string: the server explains the rule
    if verb in _READ_VERBS:
        kind = Kind.READ
    elif verb in _WRITE_VERBS:
        kind = Kind.WRITE
    elif verb == "PRAGMA":
        kind = Kind.WRITE if _pragma_writes(stmt) else Kind.READ
    else:
        kind = Kind.UNKNOWN
    returning = verb in _DML_VERBS and _top_level_word(stmt, "RETURNING")
    style, count, names = _parameters(tokens)
    return StatementInfo(kind, verb, returning, style, count, names)


def _verb(stmt: list[tuple[str, str]]) -> str:
    """The first keyword, or for ``WITH`` the first main verb outside parentheses."""
    group, first = stmt[0]
    if group != "word":
        return ""
    if first != "WITH":
        return first
    depth = 0
    for group, text in stmt[1:]:
        if group == "op" and text == "(":
            depth += 1
        elif group == "op" and text == ")":
            depth -= 1
        elif group == "word" and depth == 0 and text in _MAIN_VERBS:
            return text
    return ""


def _top_level_word(stmt: list[tuple[str, str]], word: str) -> bool:
    depth = 0
    for group, text in stmt:
        if group == "op" and text == "(":
            depth += 1
        elif group == "op" and text == ")":
            depth -= 1
        elif group == "word" and depth == 0 and text == word:
            return True
    return False


def _pragma_writes(stmt: list[tuple[str, str]]) -> bool:
    """``PRAGMA [schema.]user_version = 3`` writes; reading it, or any other pragma, does
    not (the server refuses the pragmas that would change a connection)."""
    rest = stmt[1:]
    if len(rest) >= 3 and rest[1] == ("op", "."):
        rest = rest[2:]
    if not rest or rest[0][0] not in ("word", "quoted"):
        return False
    name = rest[0][1]
    if rest[0][0] == "quoted":
        name = name[1:-1]
    return len(rest) > 1 and name.lower() in _WRITE_PRAGMAS


def _parameters(tokens: list[tuple[str, str]]) -> tuple[str, int, tuple[str, ...]]:
    """SQLite's numbering: ``?`` takes the next index, ``?NNN`` index NNN, each distinct
    name the next index (``:a`` and ``@a`` both bind the key "a")."""
    count = 0
    positional = False
    seen: list[str] = []
    for group, text in tokens:
        if group != "param":
            continue
        if text[0] == "?":
            positional = True
            count = count + 1 if len(text) == 1 else max(count, int(text[1:]))
        elif text not in seen:
            seen.append(text)
            count += 1
    if positional and seen:
        return "mixed", count, ()
    if seen:
        return "named", count, tuple(dict.fromkeys(text[1:] for text in seen))
    return ("qmark", count, ()) if positional else ("none", 0, ())
