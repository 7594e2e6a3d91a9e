"""Every notebook runs end to end on the smoke profile, in order, sharing one output folder.

The list comes from the file names (notebooks/NN_*.ipynb), never from a hand-kept list.
"""
import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_are_found_and_numbered():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb"
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == sorted(set(numbers)), "notebook numbers must be unique"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_with_a_parameters_cell(notebook):
    import nbformat

    nbformat.validate(nbformat.read(str(notebook), as_version=nbformat.NO_CONVERT))   # papermill warns otherwise
    nb = json.loads(notebook.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    assert sum("parameters" in c.get("metadata", {}).get("tags", []) for c in code) == 1
    title = nb["cells"][0]
    assert title["cell_type"] == "markdown" and "".join(title["source"]).lstrip().startswith("#"), "title first"


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("smoke")


def readme_outputs() -> dict[str, set[str]]:
    """README's figure / notebook / output map: {notebook stem: the output names' stems}."""
    text = (REPO / "README.md").read_text()
    rows = re.findall(r"^\|[^|\n]*\| `(\d\d_\w+)` \|([^|\n]*)\|", text, flags=re.M)
    return {nb: {name.split("/")[-1].split(".")[0] for name in re.findall(r"`([^`]+)`", outs)} for nb, outs in rows}


def _stems(folder: Path) -> set[str]:
    return {p.name.split(".")[0] for p in folder.iterdir()} if folder.is_dir() else set()


def test_the_readme_maps_every_notebook():
    assert set(readme_outputs()) == {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_smoke_profile(notebook, smoke_dir):
    """Each notebook runs, and writes exactly the outputs that the README's map lists for it."""
    import papermill

    params = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    params.update(profile="smoke", figures_dir=str(smoke_dir / "figures"), cache_dir=str(smoke_dir / "cache"),
                  report_path=str(smoke_dir / "REPORT.md"))
    before = _stems(smoke_dir / "figures") | _stems(smoke_dir)
    papermill.execute_notebook(str(notebook), str(smoke_dir / notebook.name), parameters=params,
                               kernel_name="python3", cwd=str(REPO), progress_bar=False)
    assert any((smoke_dir / "figures").iterdir()), "the notebook wrote no figure or table"
    written = (_stems(smoke_dir / "figures") | _stems(smoke_dir)) - before - {notebook.stem, "figures", "cache"}
    assert written == readme_outputs().get(notebook.stem), "README's figure / notebook / output map is out of date"

