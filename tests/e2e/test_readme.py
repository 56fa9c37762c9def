"""The README's quickstart, exactly as written: `scripts/run` and the first queries."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)


def readme_session() -> list[str]:
    """The lines typed at the ``raftsql>`` prompt in the README's quickstart block."""
    text = (ROOT / "README.md").read_text()
    return [m.group(1) for m in re.finditer(r"^raftsql> (.*)$", text, re.MULTILINE)]


def test_the_readme_quickstart_works_as_written(tmp_path: Path) -> None:
    typed = readme_session()
    assert any(line.startswith("CREATE TABLE") for line in typed), typed
    env = dict(os.environ, RAFTSQL_HOME=str(tmp_path / "home"))
    # scripts/run is the README's main command: it installs into .venv when needed (the
    # test command already did) and opens the shell on the embedded local cluster
    run = [str(ROOT / "scripts" / "run")]
    try:
        first = subprocess.run(
            run,
            input="\n".join(typed) + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=150,
            check=False,
        )
        assert first.returncode == 0, first.stdout + first.stderr
        assert "hello" in first.stdout and "replicated" in first.stdout, first.stdout
        assert "leader" in first.stdout  # .status
        # the data persists into the next shell session, as the README promises
        again = subprocess.run(
            [*run, "-c", "SELECT count(*) FROM notes"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert again.returncode == 0 and "2" in again.stdout, again.stdout + again.stderr
    finally:
        subprocess.run(
            [sys.executable, "-m", "raftsql", "cluster", "down", "--dir", str(tmp_path / "home")],
            capture_output=True,
            timeout=60,
            check=False,
            env=env,
        )
