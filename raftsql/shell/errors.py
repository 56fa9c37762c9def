"""The one error the shell raises itself."""

from __future__ import annotations


class ShellError(Exception):
    """A problem the shell found before asking the cluster: a bad dot-command argument, a
    file it cannot read, a CSV row with the wrong number of fields. The shell prints it as
    ``error: ...`` like any server error and carries on."""
