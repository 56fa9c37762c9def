"""Run the real ``raftsql`` command line as a child process, with its own RAFTSQL_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RAFTSQL_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "raftsql", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env=env,
        check=False,
    )
