"""Tab completion: keywords, functions, tables, columns and dot-commands.

Context is guessed cheaply from the text before the cursor, the way litecli does: after
FROM/JOIN/INTO/UPDATE/TABLE tables come first; after ``name.`` only that table's columns
(``name`` may be an alias from ``FROM t AS name``); otherwise the columns of the tables the
statement mentions, then tables, keywords and functions. Keywords keep the case the user
started typing in. Everything comes from the Schema cache (no network here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from raftsql.shell.formatting import MODES
from raftsql.shell.schema import Schema
from raftsql.shell.sqlwords import FUNCTIONS, KEYWORDS, TYPE_NAMES, quote_ident

_WORD = re.compile(r'(?:("?)([\w$]+)\1\.)?"?([\w$]*)$')
_TABLE_REF = re.compile(
    r'\b(?:FROM|JOIN|UPDATE|INTO|TABLE)\s+"?([\w$]+)"?(?:\s+(?:AS\s+)?([\w$]+))?',
    re.IGNORECASE,
)
_TABLE_CONTEXT = frozenset({"FROM", "JOIN", "INTO", "UPDATE", "TABLE", "ON"})
_KEYWORD_LIST = sorted(KEYWORDS | set(TYPE_NAMES))

DOT_ARGS: dict[str, tuple[str, ...]] = {
    ".mode": MODES,
    ".consistency": ("linearizable", "stale"),
    ".timer": ("on", "off"),
}
TABLE_ARG = frozenset({".schema", ".indexes", ".dump", ".tables"})
FILE_ARG = frozenset({".read", ".restore", ".backup", ".import"})


def _matches(prefix: str, names: Iterable[str]) -> Iterator[str]:
    low = prefix.lower()
    for name in names:
        if name.lower().startswith(low):
            yield name


class SqlCompleter(Completer):
    """prompt_toolkit completer over a Schema and the dot-command names."""

    def __init__(self, schema: Schema, commands: Iterable[str]) -> None:
        self.schema = schema
        self.commands = sorted(commands)
        self.paths = PathCompleter(expanduser=True)

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        before = document.text_before_cursor
        if before.lstrip().startswith(".") and "\n" not in before:
            yield from self._dot(before.lstrip(), complete_event)
            return
        m = _WORD.search(before)
        if m is None:
            return
        qualifier, prefix = m.group(2), m.group(3)
        start = -len(prefix) - (1 if before[: len(before) - len(prefix)].endswith('"') else 0)
        if qualifier:
            table = self._aliases(document.text).get(qualifier.lower(), qualifier)
            for col in _matches(prefix, self.schema.columns(table)):
                yield Completion(quote_ident(col), -len(prefix), display_meta="column")
            return
        if not prefix and not complete_event.completion_requested:
            return
        previous = re.findall(r"[\w$]+", before[: m.start(3)])
        after_table_word = bool(previous) and previous[-1].upper() in _TABLE_CONTEXT
        seen: set[str] = set()

        def emit(names: Iterable[str], meta: str) -> Iterator[Completion]:
            for name in _matches(prefix, names):
                if name.lower() not in seen:
                    seen.add(name.lower())
                    yield Completion(quote_ident(name), start, display_meta=meta)

        mentioned = set(self._aliases(document.text).values())
        if after_table_word:
            yield from emit(self.schema.tables, "table")
        for table in self.schema.tables:
            if table.lower() in mentioned:
                yield from emit(self.schema.tables[table], f"{table} column")
        yield from emit(self.schema.tables, "table")
        if prefix:
            upper = not prefix[0].islower()
            for kw in _matches(prefix, _KEYWORD_LIST):
                if kw.lower() not in seen:
                    yield Completion(kw if upper else kw.lower(), start, display_meta="keyword")
            for fn in _matches(prefix, FUNCTIONS):
                yield Completion(fn if not upper else fn.upper(), start, display_meta="function")

    def _aliases(self, text: str) -> dict[str, str]:
        """alias (or table name) -> table, lower-cased, from FROM/JOIN/... clauses."""
        out: dict[str, str] = {}
        for table, alias in _TABLE_REF.findall(text):
            out[table.lower()] = table.lower()
            if alias and alias.upper() not in KEYWORDS:
                out[alias.lower()] = table.lower()
        return out

    def _dot(self, text: str, event: CompleteEvent) -> Iterator[Completion]:
        parts = text.split(" ")
        if len(parts) == 1:
            for name in _matches(text, self.commands):
                yield Completion(name, -len(text), display_meta="command")
            return
        command, arg = parts[0], parts[-1]
        position = len(parts) - 1  # which argument is being typed (1 = the first)
        if command in DOT_ARGS and position == 1:
            for value in _matches(arg, DOT_ARGS[command]):
                yield Completion(value, -len(arg))
        elif command in TABLE_ARG or (command == ".import" and position == 2):
            for table in _matches(arg, self.schema.tables):
                yield Completion(quote_ident(table), -len(arg), display_meta="table")
        elif command in FILE_ARG and position == 1:
            yield from self.paths.get_completions(Document(arg, len(arg)), event)
