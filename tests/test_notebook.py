"""notebooks/quickstart.ipynb: in sync with its jupytext source, and runs end to end (smoke mode, CPU)."""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_notebook_matches_its_jupytext_source():
    ipynb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    source = jupytext.read(NOTEBOOKS / "quickstart.py")
    cells = [(c.cell_type, c.source) for c in ipynb.cells]
    assert cells == [(c.cell_type, c.source) for c in source.cells], (
        "notebooks/quickstart.ipynb is out of date: run `jupytext --sync notebooks/quickstart.py`"
    )
    assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )


@pytest.mark.slow
def test_notebook_runs_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("FWI_JAX_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("FWI_JAX_NOTEBOOK_WORKDIR", str(tmp_path))
    repo = str(NOTEBOOKS.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(
        o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )
    assert "| MAE |" in text and "m/s predictions" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 4
    assert (tmp_path / "notebook_quickstart" / "predicted_velocity.npy").exists()
