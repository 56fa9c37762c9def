"""The notebooks in notebooks/ run top to bottom against a real local cluster.

Each one is executed with nbclient in a kernel that runs this interpreter (so it sees the
same raftsql and the same PYTHONPATH); any cell error, a failing ``assert`` included, fails
the test. The saved notebooks must carry no outputs, so outputs are never committed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from raftsql.cluster import LocalCluster

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["quickstart.ipynb", "failover.ipynb"]

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A "python3" kernelspec for sys.executable, found first through JUPYTER_PATH."""
    jupyter = tmp_path / "jupyter"
    spec = jupyter / "kernels" / "python3"
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    work = tmp_path / "work"
    work.mkdir()
    # The notebooks' tempfile.mkdtemp() lands here, so clusters they leave behind after a
    # failing cell can be found and stopped.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    yield work
    for state in scratch.rglob("cluster.json"):
        LocalCluster(directory=state.parent).stop()


@pytest.mark.parametrize("name", NAMES)
def test_saved_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{name} has no code cells"
    for cell in code:
        assert cell.outputs == [], f"{name}: committed outputs in cell {cell.get('id')}"
        assert cell.execution_count is None, f"{name}: execution_count in {cell.get('id')}"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str, kernel_env: Path) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(kernel_env)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    errors = [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert not errors
    images = [
        out
        for cell in code
        for out in cell.outputs
        if out.output_type == "display_data" and "image/png" in out.get("data", {})
    ]
    assert images, f"{name} drew no figure"
