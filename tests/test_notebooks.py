"""Every planner notebook (notebooks/*.ipynb) runs top to bottom against the suite's database.

The kernel is this interpreter (the virtualenv's python, with geoservice installed), registered under a name of its
own in a temporary Jupyter path, so the run does not depend on any kernel installed on the machine. The notebook
connects as the service does: ``DATABASE_URL`` in the kernel's environment (the suite's database, demo city loaded),
and writes its exports to ``GEOSERVICE_NOTEBOOK_OUT``.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from ipykernel.kernelspec import install as install_kernelspec
from nbclient import NotebookClient

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "geoservice-test"
CELL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def executed(tmp_path_factory, settings, engine):
    """Every notebook executed once: path → (the notebook with its outputs, its export folder).

    The kernel gets a kernelspec for this interpreter, the suite's database and an export folder of its own.
    """
    done = {}
    prefix = tmp_path_factory.mktemp("jupyter")
    install_kernelspec(kernel_name=KERNEL, prefix=str(prefix))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        mp.setenv("DATABASE_URL", settings.database_url)
        mp.setenv("GEOSERVICE_BASEMAP", "none")
        for path in NOTEBOOKS:
            out = tmp_path_factory.mktemp(path.stem)
            mp.setenv("GEOSERVICE_NOTEBOOK_OUT", str(out))
            notebook = nbformat.read(path, as_version=4)
            # Raises CellExecutionError naming the cell and the error on any failure.
            NotebookClient(notebook, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            done[path.name] = (notebook, out)
    return done


def outputs(notebook) -> list[dict]:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def test_the_planner_notebook_is_there():
    assert "coverage_and_siting.ipynb" in [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(executed, path):
    notebook, _ = executed[path.name]
    assert [o for o in outputs(notebook) if o.output_type == "error"] == []
    assert all(cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code")


def test_coverage_notebook_exports_what_it_says(executed):
    notebook, out = executed["coverage_and_siting.ipynb"]
    exported = sorted(p.name for p in out.iterdir())
    assert "coverage-report.html" in exported
    assert "uncovered-streets-straight-500m.geojson" in exported and "uncovered-streets-straight-500m.csv" in exported
    assert any(name.startswith("sites-") and name.endswith(".csv") for name in exported)
    streets = json.loads((out / "uncovered-streets-straight-500m.geojson").read_text(encoding="utf-8"))
    assert streets["features"]
    # The last cell shows the exported files, as it says.
    assert "coverage-report.html" in notebook.cells[-1]["outputs"][-1]["data"]["text/plain"]
    # Four maps drawn with folium, none with a basemap offline.
    maps = [o["data"]["text/html"] for o in outputs(notebook) if "folium" in o.get("data", {}).get("text/html", "")]
    assert len(maps) == 4
    assert not any("tile.openstreetmap.org" in m for m in maps)
