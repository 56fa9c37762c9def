"""The tables and columns the completer offers, fetched from the cluster.

Completion runs inside prompt_toolkit's key handling and must never wait for the network,
so it only reads this cache. The shell refreshes it between prompts: at the start, after
any DDL it ran (CREATE, DROP, ALTER, .restore, .import) and once a minute (another client
may have changed the schema). A refresh that fails (no leader yet, node down) keeps the
old names and is not retried until one of those events: a dead cluster must not make
every prompt wait for a timeout.
"""

from __future__ import annotations

import time

from raftsql import errors
from raftsql.client.client import Client
from raftsql.shell.dump import is_internal

REFRESH_SECONDS = 60.0
REFRESH_TIMEOUT = 2.0


class Schema:
    """Table (and view) names with their columns, in schema order."""

    def __init__(self) -> None:
        self.tables: dict[str, list[str]] = {}
        self.dirty = True
        self.fetched_at = 0.0

    def columns(self, table: str) -> list[str]:
        for name, cols in self.tables.items():
            if name.lower() == table.lower():
                return cols
        return []

    def stale(self) -> bool:
        return self.dirty or time.monotonic() - self.fetched_at > REFRESH_SECONDS

    def refresh(self, client: Client) -> None:
        """One read for every table's columns, with a short timeout."""
        self.dirty = False
        self.fetched_at = time.monotonic()
        saved = client.timeout
        client.timeout = min(saved, REFRESH_TIMEOUT)
        try:
            rows = client.query(
                "SELECT m.name, p.name FROM sqlite_schema AS m, pragma_table_info(m.name) AS p"
                " WHERE m.type IN ('table', 'view') ORDER BY m.name, p.cid"
            ).rows
        except errors.RaftsqlError:
            return
        finally:
            client.timeout = saved
        tables: dict[str, list[str]] = {}
        for table, column in rows:
            if not is_internal(str(table)):
                tables.setdefault(str(table), []).append(str(column))
        self.tables = tables
