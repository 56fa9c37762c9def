"""``ResultSet``: a query's rows, shown as an HTML table in Jupyter and as text elsewhere.

Made by ``Connection.query(sql, params)``; ``.df()`` turns it into a pandas DataFrame.
Column types are inferred from the values (SQLite is dynamically typed): ``integer``,
``real``, ``text``, ``blob``, ``null`` (only NULLs), or ``mixed``.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from typing import Any, overload

__all__ = ["ResultSet"]

HTML_ROWS = 50
"""At most this many rows are rendered by ``_repr_html_``."""
TEXT_ROWS = 10
"""At most this many rows are rendered by ``repr()``."""
_BLOB_BYTES = 16
_TEXT_WIDTH = 40

_TYPE_NAMES = {int: "integer", float: "real", str: "text", bytes: "blob", bool: "integer"}


def _type_name(values: Sequence[Any]) -> str:
    names = {_TYPE_NAMES.get(type(v), type(v).__name__) for v in values if v is not None}
    if not names:
        return "null"
    if names == {"integer", "real"}:
        return "real"
    return names.pop() if len(names) == 1 else "mixed"


def _format(value: Any) -> str:
    """One value as text: NULL, x'..' for bytes (truncated), else str()."""
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        shown = data[:_BLOB_BYTES].hex()
        return f"x'{shown}…'" if len(data) > _BLOB_BYTES else f"x'{shown}'"
    return str(value)


def _more(n: int) -> str:
    return f"… {n} more row{'s' if n != 1 else ''}"


class ResultSet:
    """The rows of one query, with column names and types inferred from the values.

    ``len(rs)`` is the number of rows, ``rs[i]`` a row (a tuple; slices give a list),
    ``iter(rs)`` the rows; ``rs.df()`` a pandas DataFrame. In a notebook it renders as an
    HTML table of the first 50 rows.
    """

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.columns: list[str] = [str(c) for c in columns]
        self.rows: list[tuple[Any, ...]] = [tuple(r) for r in rows]
        self.types: list[str] = [
            _type_name([r[i] for r in self.rows]) for i in range(len(self.columns))
        ]

    @property
    def rowcount(self) -> int:
        """The total number of rows (not only the rendered ones)."""
        return len(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)

    @overload
    def __getitem__(self, index: int) -> tuple[Any, ...]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[Any, ...]]: ...
    def __getitem__(self, index: int | slice) -> tuple[Any, ...] | list[tuple[Any, ...]]:
        return self.rows[index]

    def df(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas
        except ImportError as exc:
            raise ImportError(
                "ResultSet.df() needs pandas, which is not installed: pip install pandas"
            ) from exc
        return pandas.DataFrame.from_records(self.rows, columns=self.columns)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(
            f"<th>{esc(c)}<br><small>{esc(t)}</small></th>"
            for c, t in zip(self.columns, self.types, strict=True)
        )
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(_format(v))}</td>" for v in row) + "</tr>"
            for row in self.rows[:HTML_ROWS]
        )
        out = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        hidden = len(self.rows) - HTML_ROWS
        if hidden > 0:
            out += f"<p>{esc(_more(hidden))} ({len(self.rows)} in total)</p>"
        else:
            out += f"<p>{len(self.rows)} row{'s' if len(self.rows) != 1 else ''}</p>"
        return out

    def __repr__(self) -> str:
        def cut(s: str) -> str:
            return s if len(s) <= _TEXT_WIDTH else s[: _TEXT_WIDTH - 1] + "…"

        header = [f"{c} ({t})" for c, t in zip(self.columns, self.types, strict=True)]
        shown = [[cut(_format(v)) for v in row] for row in self.rows[:TEXT_ROWS]]
        widths = [max([len(h)] + [len(r[i]) for r in shown]) for i, h in enumerate(header)]
        lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines.append("-+-".join("-" * w for w in widths))
        lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in shown]
        hidden = len(self.rows) - TEXT_ROWS
        lines.append(
            _more(hidden) if hidden > 0 else f"({len(self.rows)} row{'s' * (len(self.rows) != 1)})"
        )
        return "\n".join(line.rstrip() for line in lines)
