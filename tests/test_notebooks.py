"""Every notebook's code cells run top to bottom (headless, matplotlib Agg)."""
import glob
import json
import os

import matplotlib
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb"))),
                         ids=os.path.basename)
def test_notebook_runs(path):
    matplotlib.use("Agg")
    cells = json.load(open(path))["cells"]
    namespace = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), path, "exec"), namespace)
