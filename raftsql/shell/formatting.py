"""How the shell prints results: ``.mode table | csv | json | line``.

``table`` is for people: aligned columns in a box that fits the terminal (wide columns are
cut with an ellipsis; ``.mode line`` shows whole values). ``csv`` and ``json`` are for
programs, so they never cut anything and carry no decoration. Values look the same in every
text mode: NULL for None and ``x'..'`` for blobs, as in SQL; JSON uses null and, for blobs,
the same ``x'..'`` text (JSON has no bytes).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

try:  # wide (CJK) characters take two columns; prompt_toolkit brings wcwidth along
    from wcwidth import wcswidth as _wcswidth
except ImportError:  # pragma: no cover - the shell's dependencies include it
    _wcswidth = None

MODES = ("table", "csv", "json", "line")

MIN_WIDTH = 4
"""The narrowest a column gets when the table is squeezed to fit the terminal."""


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal."""
    if _wcswidth is not None and not text.isascii():
        width = _wcswidth(text)
        if width >= 0:
            return width
    return len(text)


def cell(value: Any) -> str:
    """A value as SQL people read it: NULL, x'..' for blobs, numbers and text as they are."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "x'" + value.hex() + "'"
    if isinstance(value, float):
        return _float(value)
    return str(value)


def _float(value: float) -> str:
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(value)


_CONTROL = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x00": "\\0"})


def _one_line(text: str) -> str:
    """Table cells must stay on one line, so control characters are shown escaped."""
    return text.translate(_CONTROL)


def column_names(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    if columns:
        return list(columns)
    return [f"c{k}" for k in range(len(rows[0]) if rows else 0)]


def fit_widths(natural: list[int], width: int | None) -> list[int]:
    """Column widths that fit a box of ``width`` terminal columns.

    The box costs ``3 * n + 1`` columns of borders. If the natural widths do not fit, the
    widest columns are cut first (a common cap is lowered until the total fits), so narrow
    columns such as ids stay whole; columns never get narrower than MIN_WIDTH, so a very
    wide result may still overflow (``.mode line`` is the answer then).
    """
    n = len(natural)
    if width is None or n == 0:
        return natural
    budget = width - (3 * n + 1)
    if sum(natural) <= budget:
        return natural
    lo, hi = MIN_WIDTH, max(natural)
    while lo < hi:  # the largest cap whose total still fits
        mid = (lo + hi + 1) // 2
        if sum(min(w, mid) for w in natural) <= budget:
            lo = mid
        else:
            hi = mid - 1
    widths = [min(w, lo) for w in natural]
    spare = budget - sum(widths)
    for k, w in enumerate(natural):  # hand out what is left, one column each
        if spare <= 0:
            break
        if w > widths[k]:
            widths[k] += 1
            spare -= 1
    return widths


def _fit(text: str, width: int, right: bool) -> str:
    w = display_width(text)
    if w > width:
        if text.isascii():
            text = text[: width - 1] + "…"
        else:
            kept: list[str] = []
            used = 0
            for ch in text:
                cw = max(display_width(ch), 0)
                if used + cw > width - 1:
                    break
                kept.append(ch)
                used += cw
            text = "".join(kept) + "…"
        w = display_width(text)
    pad = " " * max(0, width - w)
    return pad + text if right else text + pad


def format_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None
) -> str:
    """Rows in a box, like sqlite3's ``.mode table``; numbers aligned right.

    ``width`` is the terminal's width (None: do not cut anything, e.g. output to a file).
    """
    names = [_one_line(c) for c in column_names(columns, rows)]
    cells = [[_one_line(cell(v)) for v in row] for row in rows]
    numeric = [_is_numeric([r[k] for r in rows]) for k in range(len(names))]
    natural = [
        max([display_width(name)] + [display_width(r[k]) for r in cells])
        for k, name in enumerate(names)
    ]
    widths = fit_widths(natural, width)
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: list[str], align: list[bool]) -> str:
        parts = (_fit(v, w, a) for v, w, a in zip(values, widths, align, strict=True))
        return "| " + " | ".join(parts) + " |"

    out = [rule, line(names, [False] * len(names)), rule]
    out.extend(line(r, numeric) for r in cells)
    if cells:
        out.append(rule)
    return "\n".join(out)


def _is_numeric(values: list[Any]) -> bool:
    """Right-align a column whose values are all numbers (NULLs aside)."""
    seen = False
    for v in values:
        if isinstance(v, (int, float)):
            seen = True
        elif v is not None:
            return False
    return seen


def format_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A header line, then one line per row (RFC 4180 quoting; NULL is an empty field)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(column_names(columns, rows))
    for row in rows:
        writer.writerow(["" if v is None else cell(v) for v in row])
    return buf.getvalue().rstrip("\n")


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return cell(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no Inf or NaN
    return value


def format_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array with one object per row (one per line, like sqlite3's ``.mode json``)."""
    names = column_names(columns, rows)
    if not rows:
        return "[]"
    objects = [
        json.dumps(
            {n: _json_value(v) for n, v in zip(names, row, strict=True)},
            ensure_ascii=False,
        )
        for row in rows
    ]
    return "[" + ",\n".join(objects) + "]"


def format_line(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """One ``name = value`` line per column, a blank line between rows (sqlite3's
    ``.mode line``): the way to read rows too wide for a table."""
    names = column_names(columns, rows)
    pad = max((display_width(n) for n in names), default=0)
    blocks = []
    for row in rows:
        blocks.append(
            "\n".join(
                " " * (pad - display_width(n)) + f"{n} = {cell(v)}"
                for n, v in zip(names, row, strict=True)
            )
        )
    return "\n\n".join(blocks)


def format_rows(
    mode: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None
) -> str:
    """Rows in the given mode (one of MODES)."""
    if mode == "csv":
        return format_csv(columns, rows)
    if mode == "json":
        return format_json(columns, rows)
    if mode == "line":
        return format_line(columns, rows)
    return format_table(columns, rows, width)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
