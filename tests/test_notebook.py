"""wool in a real Jupyter kernel (ipykernel, driven by nbclient): a pool opened in one cell
serves later cells (each cell with a top-level `await` runs in its own copy of the context,
ipykernel issue 749); routines defined and redefined in cells, a global of an earlier cell, a
remote async generator; and no process is left once the kernel has shut down."""

from __future__ import annotations

import copy
from pathlib import Path

import psutil
import pytest
from helpers import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]

NOTEBOOK = REPO / "examples" / "notebook.ipynb"
PROBE = "import os as _os\n_os.getpid()"  # a cell of the test's own: the kernel's pid


def text_of(cell: object) -> list[str]:
    """What a code cell displayed: its results' text, or the name of the error it raised."""
    shown = []
    for output in cell.outputs:  # type: ignore[attr-defined]
        if output.output_type == "error":
            shown.append(f"{output.ename}: {output.evalue}")
        elif "data" in output:
            shown.append(output.data["text/plain"])
        else:
            shown.append(output.text)
    return shown


def run_cells(cells: list[object], cwd: Path) -> tuple[list[list[str]], list[psutil.Process]]:
    """Execute `cells` in a fresh kernel, the probe after the first; return what each cell
    showed and the kernel's process tree as it was after the last cell."""
    notebook = nbformat.v4.new_notebook(cells=[cells[0], nbformat.v4.new_code_cell(PROBE), *cells[1:]])
    client = nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
            if cell.outputs and cell.outputs[0].get("output_type") == "error":
                break
        kernel = psutil.Process(int(text_of(notebook.cells[1])[0]))
        tree = [kernel, *kernel.children(recursive=True)]
    shown = [text_of(c) for i, c in enumerate(notebook.cells) if i != 1]
    return shown, tree


def code_cells() -> list[object]:
    return [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]


def test_pool_opened_in_one_cell_serves_the_later_ones(tmp_path: Path) -> None:
    shown, tree = run_cells(code_cells(), tmp_path)
    assert shown == [
        ["2"],  # two workers
        ["'hello, ada'"],
        ["3.0"],  # a global of the cell before
        ["'goodbye, ada'"],  # the redefined routine's new body
        ["[3, 2, 1]"],  # a remote async generator
        ["True"],  # it ran on one of the pool's workers
        ["[]"],  # closed
    ]
    assert len(tree) >= 1
    gone, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, f"left running after the kernel shut down: {alive}"


def test_kernel_shut_down_with_the_pool_open_leaves_no_process(tmp_path: Path) -> None:
    """Also: a cell without `await` opens a second pool with `with` and runs a call on it."""
    blocking = nbformat.v4.new_code_cell("with wool.WorkerPool(size=1) as other:\n    answer = other.run(greet('bob'))\nanswer")
    cells = [*copy.deepcopy(code_cells()[:2]), blocking]
    shown, tree = run_cells(cells, tmp_path)
    assert shown == [["2"], ["'hello, ada'"], ["'hello, bob'"]]
    assert len(tree) >= 4  # the kernel, the worker template and two workers
    gone, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, f"left running after the kernel shut down: {alive}"
