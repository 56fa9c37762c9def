"""``.restore``'s reading side, without a cluster: what a dump file or SQLite file yields,
what is counted, what is refused before anything is sent, and how batches go out."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from raftsql import errors
from raftsql.shell.errors import ShellError
from raftsql.shell.loading import BATCH_STATEMENTS, read_restore_file, restore

pytestmark = pytest.mark.timeout(30)


class RecordingClient:
    """Takes ``write`` calls like ``Client``; fails the ``fail_at``-th one (1-based)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.batches: list[list[tuple[str, Any]]] = []
        self.fail_at = fail_at

    def write(self, stmts: list[tuple[str, Any]], atomic: bool = True) -> list[Any]:
        assert atomic
        if self.fail_at is not None and len(self.batches) + 1 == self.fail_at:
            raise errors.ConstraintError("UNIQUE constraint failed: t.k", statement=2)
        self.batches.append(stmts)
        return []


def test_a_sql_dump_is_counted_and_read_again_as_it_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "dump.sql"
    path.write_text(
        "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t (k INTEGER);\n"
        + "".join(f"INSERT INTO t VALUES({k});\n" for k in range(1200))
        + "COMMIT;\n"
    )
    source = read_restore_file(path)
    assert not source.sqlite
    assert source.total == 1201  # CREATE + 1,200 INSERTs; PRAGMA, BEGIN, COMMIT are not sent
    client, err = RecordingClient(), io.StringIO()
    done = restore(client, source.statements(), err, total=source.total)  # type: ignore[arg-type]
    assert done == 1201
    assert [len(b) for b in client.batches] == [BATCH_STATEMENTS, BATCH_STATEMENTS, 201]
    assert client.batches[0][0] == ("CREATE TABLE t (k INTEGER);", ())
    assert client.batches[0][1] == ("INSERT INTO t VALUES(?)", (0,))  # literals as parameters
    assert "1201/1201 statements (100%" in err.getvalue()


def test_a_dump_holding_a_dot_command_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "script.sql"
    path.write_text("CREATE TABLE t (k INTEGER);\n.headers on\nINSERT INTO t VALUES (1);\n")
    with pytest.raises(ShellError, match=r"holds the dot-command \.headers"):
        read_restore_file(path)


def test_a_sqlite_file_is_dumped_as_it_is_sent_and_its_count_estimated(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    con.execute("CREATE INDEX t_v ON t (v)")
    con.executemany("INSERT INTO t VALUES (?, ?)", ((k, f"v{k}") for k in range(700)))
    con.commit()
    con.close()
    source = read_restore_file(path)
    assert source.sqlite
    assert source.total == 702  # 700 rows, the table, the index
    statements = list(source.statements())
    assert statements[0].startswith("CREATE TABLE t") and "CREATE INDEX t_v" in statements[-1]
    client, err = RecordingClient(), io.StringIO()
    assert restore(client, statements, err) == 702  # type: ignore[arg-type]
    assert "702/702 statements (100%" in err.getvalue()


def test_a_failed_batch_says_how_far_the_restore_got(tmp_path: Path) -> None:
    path = tmp_path / "dump.sql"
    path.write_text("".join(f"INSERT INTO t VALUES({k});\n" for k in range(1100)))
    source = read_restore_file(path)
    client = RecordingClient(fail_at=2)
    with pytest.raises(ShellError) as failed:
        restore(client, source.statements(), io.StringIO(), total=source.total)  # type: ignore[arg-type]
    message = str(failed.value)
    assert f"statement {BATCH_STATEMENTS + 3} of 1100" in message  # the failing one, 1-based
    assert f"The first {BATCH_STATEMENTS} statements were applied" in message
    assert len(client.batches) == 1
