"""Where one SQL statement ends: the shell's answer to "is this input complete yet?".

The shell sends one statement per request, so it has to cut the text the user types (or a
script, or a dump) at the right semicolons: not inside quotes or comments, and not inside
the body of ``CREATE TRIGGER ... BEGIN ...; ...; END;``, which is one statement holding
several semicolons. The rules are those of SQLite's own ``sqlite3_complete()`` (the state
machine of complete.c), so the shell agrees with the sqlite3 CLI about where statements
end. It is a copy rather than an import because the shell must not depend on the server's
SQL layer (raftsql.sql pulls in sqlglot and apsw).

Tokens are found with one regular expression (fast enough for multi-megabyte dumps);
the state machine only needs to know semicolons, whitespace (comments included), and the
keywords EXPLAIN, CREATE, TEMP, TEMPORARY, TRIGGER and END.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)
  | (?P<quoted>'[^']*'|"[^"]*"|`[^`]*`|\[[^\]]*\])
  | (?P<semi>;)
  | (?P<word>[\w$\x80-\U0010ffff]+)
  | (?P<open>/\*|['"`\[])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
"""One token at a time. ``open`` matches only when a quote or comment is never closed: the
statement cannot be complete then."""

# Token classes and states of sqlite3_complete() (complete.c), in its order.
_SEMI, _WS, _OTHER, _EXPLAIN, _CREATE, _TEMP, _TRIGGER, _END = range(8)
_KEYWORDS = {
    "EXPLAIN": _EXPLAIN,
    "CREATE": _CREATE,
    "TEMP": _TEMP,
    "TEMPORARY": _TEMP,
    "TRIGGER": _TRIGGER,
    "END": _END,
}
_START = 1
_TRANS = (
    # SEMI WS OTHER EXPLAIN CREATE TEMP TRIGGER END
    (1, 0, 2, 3, 4, 2, 2, 2),  # 0 INVALID: nothing seen yet
    (1, 1, 2, 3, 4, 2, 2, 2),  # 1 START: just after a complete statement
    (1, 2, 2, 2, 2, 2, 2, 2),  # 2 NORMAL: inside an ordinary statement
    (1, 3, 3, 2, 4, 2, 2, 2),  # 3 EXPLAIN: after the EXPLAIN keyword
    (1, 4, 2, 2, 2, 4, 5, 2),  # 4 CREATE: after CREATE [TEMP]
    (6, 5, 5, 5, 5, 5, 5, 5),  # 5 TRIGGER: inside CREATE TRIGGER
    (6, 6, 5, 5, 5, 5, 5, 7),  # 6 SEMI: a ';' inside the trigger body
    (1, 7, 5, 5, 5, 5, 5, 5),  # 7 END: '; END' seen, the next ';' ends the trigger
)


def next_statement(text: str, pos: int = 0) -> tuple[int, int] | None:
    """``(start, end)`` of the first complete statement in ``text[pos:]``, or None.

    ``start`` skips leading whitespace and comments; ``text[start:end]`` ends with its
    ``;``. Empty statements (a lone ``;``) are skipped. None means the rest of the text is
    an unfinished statement, or nothing but whitespace and comments.
    """
    state = 0
    start: int | None = None
    for m in _TOKEN.finditer(text, pos):
        kind = m.lastgroup
        if kind == "ws":
            token = _WS
        elif kind == "semi":
            token = _SEMI
        elif kind == "open":
            return None  # an unterminated quote or comment swallows the rest
        elif kind == "word":
            token = _KEYWORDS.get(m.group().upper(), _OTHER)
        else:
            token = _OTHER
        if token != _WS and token != _SEMI and start is None:
            start = m.start()
        state = _TRANS[state][token]
        # A lone ';' (an empty statement) reaches START with nothing started: keep looking.
        if state == _START and token == _SEMI and start is not None:
            return start, m.end()
    return None


def is_blank(text: str) -> bool:
    """True if ``text`` holds only whitespace and (closed) comments."""
    return all(m.lastgroup == "ws" for m in _TOKEN.finditer(text))


def split_sql(text: str) -> tuple[list[str], str]:
    """All complete statements in ``text`` and the unfinished rest ("" if blank)."""
    out = []
    pos = 0
    while (span := next_statement(text, pos)) is not None:
        out.append(text[span[0] : span[1]])
        pos = span[1]
    rest = text[pos:]
    return out, ("" if is_blank(rest) else rest.strip())


def is_complete(text: str) -> bool:
    """Whether Enter should submit ``text`` rather than start a continuation line: it is
    blank, a dot-command, or every statement in it is finished."""
    stripped = text.strip()
    if not stripped or stripped.startswith("."):
        return True
    return not split_sql(text)[1]


def split_statements(lines: Iterable[str]) -> Iterator[str]:
    """Yield complete statements (each ending with its ``;``) and dot-commands.

    A line starting with ``.`` is a dot-command when no statement is in progress, as in
    the sqlite3 CLI. Whatever is left unfinished at the end is yielded as a last statement
    (the server then says what is wrong with it), unless it is only comments.
    """
    buf = ""
    blank = True  # buf holds only whitespace and comments (checked only while true: cheap)
    for line in lines:
        if blank and line.lstrip().startswith("."):
            buf = ""
            yield line.strip()
            continue
        buf += line
        if blank:
            blank = is_blank(buf)
        if ";" not in line:
            continue  # nothing can have ended on this line
        pos = 0
        while (span := next_statement(buf, pos)) is not None:
            yield buf[span[0] : span[1]]
            pos = span[1]
        buf = buf[pos:]
        blank = is_blank(buf)
        if blank:
            buf = ""
    if buf and not blank and not is_blank(buf):
        yield buf.strip()


def first_word(stmt: str) -> str:
    """The statement's first keyword, upper-cased, after any leading comments."""
    for m in _TOKEN.finditer(stmt):
        if m.lastgroup == "ws":
            continue
        return m.group().upper() if m.lastgroup == "word" else ""
    return ""


def words(stmt: str, n: int) -> list[str]:
    """The first ``n`` words of the statement, upper-cased (quotes and comments skipped)."""
    out: list[str] = []
    for m in _TOKEN.finditer(stmt):
        if m.lastgroup == "word":
            out.append(m.group().upper())
            if len(out) == n:
                break
        elif m.lastgroup != "ws":
            break
    return out
