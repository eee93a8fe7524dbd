"""notebooks/evaluate.ipynb runs top to bottom (small setting) and shows what it promises."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anomaly.model.detectors import REGISTRY

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "evaluate.ipynb"


@pytest.mark.slow
def test_evaluation_notebook_runs_top_to_bottom(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("ANOMALY_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "\n".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
    images = sum("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.outputs)
    assert "false-alarm rate" in text and "event_precision" in text and "variance_burst" in text
    assert images >= 3  # the stream with its flags, the score distributions, the calibration plot
    metrics = next(str(output["data"]["text/plain"]) for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs if "event_precision" in str(output.get("data", {}).get("text/plain")))
    assert all(name in metrics for name in REGISTRY)  # every detector side by side with the ensemble
    nab_there = (Path(os.environ.get("ANOMALY_NAB_ROOT", NOTEBOOK.parent / "../../shared/data/NAB"))
                 / "labels" / "combined_windows.json").is_file()
    assert ("reward_low_FN_rate" in text) if nab_there else ("the NAB part is skipped" in text)
