"""ResultSet (raftsql.dbapi.display): HTML and text rendering, types, pandas."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

import raftsql
from raftsql.dbapi.display import HTML_ROWS, ResultSet


def test_reexported() -> None:
    assert raftsql.ResultSet is ResultSet
    assert "ResultSet" in raftsql.dbapi.__all__
    assert "ResultSet" in raftsql.__all__


def test_sequence_protocol() -> None:
    rs = ResultSet(["a", "b"], [(1, "x"), [2, "y"]])
    assert len(rs) == 2 and rs.rowcount == 2
    assert list(rs) == [(1, "x"), (2, "y")]
    assert rs[1] == (2, "y") and rs[-1] == (2, "y")
    assert rs[:1] == [(1, "x")]


def test_types_inferred_from_values() -> None:
    rs = ResultSet(
        ["i", "r", "t", "b", "n", "num", "m"],
        [(1, 1.5, "s", b"\x00", None, 1, "x"), (None, 2.0, None, b"", None, 2.5, 3)],
    )
    assert rs.types == ["integer", "real", "text", "blob", "null", "real", "mixed"]
    assert ResultSet(["x"], []).types == ["null"]


def test_html_escapes_everything() -> None:
    rs = ResultSet(["<col>&"], [("<script>alert('x')</script>",)])
    out = rs._repr_html_()
    assert "<script>" not in out and "<col>" not in out
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in out
    assert "&lt;col&gt;&amp;" in out
    assert "<small>text</small>" in out
    assert "1 row" in out


def test_html_bytes_and_null() -> None:
    out = ResultSet(["b", "n"], [(bytes(range(40)), None)])._repr_html_()
    assert "x&#x27;000102030405060708090a0b0c0d0e0f…&#x27;" in out
    assert "<td>NULL</td>" in out
    assert "x&#x27;ab&#x27;" in ResultSet(["b"], [(b"\xab",)])._repr_html_()


def test_html_row_cap() -> None:
    rs = ResultSet(["n"], [(i,) for i in range(HTML_ROWS + 7)])
    out = rs._repr_html_()
    assert out.count("<tr>") == HTML_ROWS + 1  # header + capped rows
    assert f"… 7 more rows ({HTML_ROWS + 7} in total)" in out
    assert f"<td>{HTML_ROWS - 1}</td>" in out and f"<td>{HTML_ROWS}</td>" not in out
    one_more = ResultSet(["n"], [(i,) for i in range(HTML_ROWS + 1)])._repr_html_()
    assert "… 1 more row " in one_more


def test_repr_is_a_short_text_table() -> None:
    rs = ResultSet(["id", "name"], [(i, f"n{i}") for i in range(12)])
    text = repr(rs)
    lines = text.splitlines()
    assert lines[0].split() == ["id", "(integer)", "|", "name", "(text)"]
    assert len(lines) == 2 + 10 + 1
    assert lines[-1] == "… 2 more rows"
    assert repr(ResultSet(["x"], [("a" * 100,)])).splitlines()[2].endswith("…")
    assert repr(ResultSet(["x"], [])).endswith("(0 rows)")


def test_df() -> None:
    pd = pytest.importorskip("pandas")
    df = ResultSet(["a", "b"], [(1, "x"), (2, None)]).df()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["a", "b"]
    assert df["a"].tolist() == [1, 2]
    assert ResultSet(["a"], []).df().shape == (0, 1)


def test_df_without_pandas(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match="pip install pandas"):
        ResultSet(["a"], [(1,)]).df()
