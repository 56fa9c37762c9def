"""`raftsql shell`: an SQL prompt on a raftsql cluster, in the spirit of sqlite3's CLI.

With no hosts it starts (or reuses) the embedded local cluster, whose data persists from
one shell session to the next. Statements end at ``;`` and may span lines (a trigger body
is one statement); ``BEGIN; ...; COMMIT;`` is sent as one atomic request (``ROLLBACK``
drops it). Errors are printed and the shell stays up. Non-interactive use:
``raftsql shell < script.sql`` or ``-c "SQL"``.

The shell talks to the cluster only through raftsql.client: like the client, it must not
need the server's SQL layer (sqlglot, apsw). Modules: repl (the loop and the Shell),
splitter (where statements end), formatting (.mode), dotcommands, dump (.dump/.backup),
loading (.restore/.import), schema and completion (Tab), sqlwords (keywords, quoting).
"""

from raftsql.shell.formatting import format_rows, format_table
from raftsql.shell.repl import Shell, run_shell
from raftsql.shell.splitter import is_complete, split_sql, split_statements

__all__ = [
    "Shell",
    "format_rows",
    "format_table",
    "is_complete",
    "run_shell",
    "split_sql",
    "split_statements",
]
