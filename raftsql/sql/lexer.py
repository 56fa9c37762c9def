"""A small SQLite-faithful tokenizer: statement boundaries, parameters, and the leading verb.

Why not let sqlglot do this? sqlglot is a general SQL parser and it disagrees with SQLite on
exactly the details that matter here: it cannot read ``?NNN`` parameters, it splits a
``CREATE TRIGGER ... BEGIN ...; ...; END`` body into several statements, and it turns
``REPLACE INTO`` or ``ALTER TABLE ... ADD COLUMN`` into an opaque ``Command``. The facts that
decide routing (how many statements, read or write, which parameters) therefore come from
this module, which follows SQLite's own tokenizer (``tokenize.c``) rule for rule: the same
quoting, comments, identifier characters and parameter forms. It knows nothing of the
grammar beyond the few keywords it needs.

The state machine also uses :func:`leading_verb` at apply time (to decide whether a
statement's ``changes()`` is its rowcount), so this module must stay deterministic and must
not depend on sqlglot, whose verdicts may change between versions.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from raftsql.errors import ParameterError, SQLError


class Kind(Enum):
    """What a token is, at the level of detail the classifier needs."""

    WORD = "word"  # bare identifier or keyword; ``upper`` holds the keyword spelling
    QUOTED = "quoted"  # "ident", `ident` or [ident]; ``value`` holds the unquoted name
    STRING = "string"  # 'text'
    BLOB = "blob"  # x'00ff'
    NUMBER = "number"
    PARAM = "param"  # ?, ?NNN, :name, @name, $name
    OP = "op"  # punctuation and operators, one or more characters
    SEMI = "semi"  # ;


class Token(NamedTuple):
    kind: Kind
    start: int
    end: int
    value: str
    """The token text, except for QUOTED where it is the identifier without its quotes."""

    @property
    def upper(self) -> str:
        """Keyword spelling (upper case) of a bare word; empty for every other kind."""
        return self.value.upper() if self.kind is Kind.WORD else ""

    @property
    def name(self) -> str | None:
        """The identifier this token names (bare or quoted), or None if it names nothing."""
        if self.kind is Kind.WORD or self.kind is Kind.QUOTED:
            return self.value
        return None


# SQLite's character classes: identifiers start with a letter, '_' or any character beyond
# ASCII, and continue with those, digits and '$'.
_ID_START = r"[A-Za-z_\u0080-\U0010ffff]"
_ID_CHAR = r"[A-Za-z0-9_$\u0080-\U0010ffff]"

_TOKEN = re.compile(
    rf"""
      (?P<skip> \s+ | --[^\n]* | /\*.*?(?:\*/|\Z) )   # an unclosed comment runs to the end
    | (?P<semi> ; )
    | (?P<blob> [xX]'[^']*' )
    | (?P<string> '(?:[^']|'')*' )
    | (?P<dquoted> "(?:[^"]|"")*" )
    | (?P<bquoted> `(?:[^`]|``)*` )
    | (?P<squared> \[[^\]]*\] )
    | (?P<bad> ['"`\[] )                                  # an unterminated quote
    | (?P<number> (?: 0[xX][0-9A-Fa-f_]* | (?:\d[\d_]*(?:\.[\d_]*)? | \.\d[\d_]*)
                      (?:[eE][+-]?\d+)? ) {_ID_CHAR}* )    # "12abc" is one (bad) token
    | (?P<param> \?\d* | [:@]{_ID_CHAR}+ | \${_ID_CHAR}+ (?:::{_ID_CHAR}+)* (?:\([^)]*\))? )
    | (?P<word> {_ID_START}{_ID_CHAR}* )
    | (?P<op> ->> | \|\| | <= | >= | <> | != | == | << | >> | -> | . )
    """,
    re.VERBOSE | re.DOTALL,
)

_KINDS = {
    "semi": Kind.SEMI,
    "blob": Kind.BLOB,
    "string": Kind.STRING,
    "number": Kind.NUMBER,
    "param": Kind.PARAM,
    "word": Kind.WORD,
    "op": Kind.OP,
}


def tokenize(sql: str) -> list[Token]:
    """Split ``sql`` into tokens, dropping whitespace and comments.

    Raises SQLError for input SQLite would refuse to tokenize (an unterminated string or
    quoted identifier), with a message in SQLite's spirit.
    """
    tokens: list[Token] = []
    append = tokens.append
    for match in _TOKEN.finditer(sql):
        group = match.lastgroup
        if group == "skip":
            continue
        start, end = match.span()
        text = match.group()
        if group == "dquoted" or group == "bquoted":
            quote = text[0]
            append(Token(Kind.QUOTED, start, end, text[1:-1].replace(quote * 2, quote)))
        elif group == "squared":
            append(Token(Kind.QUOTED, start, end, text[1:-1]))
        elif group == "bad":
            what = "string literal" if text == "'" else "quoted identifier"
            raise SQLError(f"unrecognized token: {sql[start : start + 20]!r} (unterminated {what})")
        else:
            append(Token(_KINDS[group], start, end, text))  # type: ignore[index]
    return tokens


# ---------------------------------------------------------------------------------------------
# Statements


def split(tokens: list[Token]) -> list[list[Token]]:
    """Group tokens into statements, dropping empty ones (``;;``).

    A ``;`` ends a statement, except inside a ``CREATE TRIGGER`` body. Unlike
    ``sqlite3_complete()``, which ends a trigger at any ``END ;``, this counts ``CASE`` ...
    ``END`` pairs inside the body so that ``SELECT CASE ... END;`` does not cut it short.
    """
    out: list[list[Token]] = []
    cur: list[Token] = []
    trigger = False  # the current statement is CREATE [TEMP] TRIGGER
    in_body = False  # we are between its BEGIN and its END
    body_done = False
    case_depth = 0
    depth = 0  # parentheses
    for tok in tokens:
        if tok.kind is Kind.SEMI:
            if in_body and not body_done:
                cur.append(tok)  # separates the statements of a trigger body
                continue
            if cur:
                out.append(cur)
            cur = []
            trigger = in_body = body_done = False
            case_depth = depth = 0
            continue
        cur.append(tok)
        if tok.kind is Kind.OP:
            if tok.value == "(":
                depth += 1
            elif tok.value == ")":
                depth = max(0, depth - 1)
            continue
        word = tok.upper
        if not word:
            continue
        if len(cur) <= 3 and word == "TRIGGER" and cur[0].upper == "CREATE":
            trigger = True
        elif trigger and not in_body and depth == 0 and word == "BEGIN":
            in_body = True
        elif in_body and not body_done:
            if word == "CASE":
                case_depth += 1
            elif word == "END":
                if case_depth:
                    case_depth -= 1
                else:
                    body_done = True
    if cur:
        out.append(cur)
    return out


def split_script(sql: str) -> list[str]:
    """Split a script into its statements' original text (without the trailing ``;``).

    Replicated requests take one statement per string; shells and ``executescript`` use
    this to turn a script into such a list without ever rewriting the SQL.
    """
    return [sql[stmt[0].start : stmt[-1].end] for stmt in split(tokenize(sql))]


# ---------------------------------------------------------------------------------------------
# Parameters


class ParamStyle(Enum):
    """How a statement's parameters are bound: by position (a sequence) or by name (a dict)."""

    NONE = "none"
    QMARK = "qmark"  # ? and/or ?NNN: bind a sequence
    NAMED = "named"  # :name, @name, $name: bind a mapping


@dataclass(frozen=True, slots=True)
class Params:
    style: ParamStyle
    count: int
    """SQLite's ``sqlite3_bind_parameter_count``: the largest parameter index."""
    names: tuple[str, ...]
    """For NAMED, the names without their prefix character, in order of first use (this is
    how apsw looks them up in the mapping)."""


def parameters(tokens: list[Token]) -> Params:
    """Number and style of the parameters, following SQLite's numbering rules.

    ``?`` takes the next index after the largest so far, ``?NNN`` takes index NNN, and each
    distinct named parameter takes the next index. Mixing positional and named parameters
    in one statement is legal SQLite but cannot be bound from one Python value, so it is a
    ParameterError here.
    """
    count = 0
    seen_named: dict[str, int] = {}
    positional = False
    for tok in tokens:
        if tok.kind is not Kind.PARAM:
            continue
        text = tok.value
        if text[0] == "?":
            positional = True
            if len(text) == 1:
                count += 1
            else:
                number = int(text[1:])
                if not 1 <= number <= 32766:
                    raise ParameterError(f"parameter {text} is out of range (1..32766)")
                count = max(count, number)
        elif text not in seen_named:
            count += 1
            seen_named[text] = count
    if positional and seen_named:
        raise ParameterError(
            "this statement mixes positional (?) and named (:name) parameters; "
            "use one style so that the parameters can be a sequence or a mapping"
        )
    if seen_named:
        names: list[str] = []
        for text in seen_named:
            key = text[1:]
            if key not in names:  # :a and @a both bind params["a"]
                names.append(key)
        return Params(ParamStyle.NAMED, count, tuple(names))
    if positional:
        return Params(ParamStyle.QMARK, count, ())
    return Params(ParamStyle.NONE, 0, ())


# ---------------------------------------------------------------------------------------------
# Verbs

_MAIN_VERBS = frozenset({"SELECT", "VALUES", "INSERT", "REPLACE", "UPDATE", "DELETE"})
DML_VERBS = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE"})
"""Statements whose ``changes()`` count is their rowcount."""


def verb_of(tokens: list[Token]) -> str:
    """The statement's kind as SQLite would run it: the first keyword, except that for
    ``WITH ...`` it is the keyword of the main statement after the common table expressions
    (found as the first SELECT/VALUES/INSERT/REPLACE/UPDATE/DELETE outside parentheses)."""
    if not tokens:
        return ""
    first = tokens[0].upper
    if first != "WITH":
        return first
    depth = 0
    for tok in tokens[1:]:
        if tok.kind is Kind.OP:
            if tok.value == "(":
                depth += 1
            elif tok.value == ")":
                depth -= 1
        elif depth == 0 and tok.upper in _MAIN_VERBS:
            return tok.upper
    return "WITH"


@functools.lru_cache(maxsize=4096)
def leading_verb(sql: str) -> str:
    """:func:`verb_of` for the first statement in ``sql`` (cached by text; used at apply
    time, where the same few statements repeat)."""
    try:
        stmts = split(tokenize(sql))
    except SQLError:
        return ""
    return verb_of(stmts[0]) if stmts else ""
