"""The notebooks: each runs top to bottom with small settings (its assert cells check what it states), and each
committed notebook carries its pictures and no error outputs.

A notebook's first code cell (tagged 'parameters') sets its defaults; the test runs a cell with SMALL's values
right after it, as papermill would.
"""
import glob
import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
SMALL = {  # notebook -> the parameters the test runs it with
    "autoencoders.ipynb": {"STEPS": 200},
    "gans.ipynb": {"STEPS": 60, "DCGAN_STEPS": 10, "SNAPSHOTS": 2},
    "evaluation.ipynb": {"STEPS": 100, "CLASSIFIER_EPOCHS": 4.0, "NUM_SAMPLES": 300},
    "pure_functions.ipynb": {"STEPS": 60},
    "translation.ipynb": {"STEPS": 600, "SR_STEPS": 400},
}


def with_parameters(nb, values: dict):
    """`nb` with a cell assigning `values` inserted after its 'parameters' cell (the first code cell if none)."""
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    tagged = [i for i in code if "parameters" in nb.cells[i].metadata.get("tags", [])]
    at = (tagged or code)[0] + 1
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    nb.cells.insert(at, nbformat.v4.new_code_cell(source))
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_with_small_settings(path, tmp_path):
    nb = with_parameters(nbformat.read(path, as_version=4),
                         {**SMALL.get(os.path.basename(path), {}), "WORKDIR": str(tmp_path)})
    # A failing cell (an assert cell included) raises CellExecutionError naming the cell and its traceback.
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path)}}).execute()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_committed_notebook_has_pictures_and_no_errors(path):
    cells = json.load(open(path))["cells"]
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"], "committed with an error output"
    assert any("image/png" in o.get("data", {}) for o in outputs), "committed without pictures (run it first)"
    assert all(c.get("execution_count") for c in cells if c["cell_type"] == "code"), "not run top to bottom"
