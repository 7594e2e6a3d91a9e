"""liftcam.report: atomic writes and provenance."""
import json

import pandas as pd


def test_atomic_write_replaces_whole_files_with_the_usual_mode(tmp_path):
    import os

    from liftcam import report

    path = report.atomic_write(tmp_path / "sub" / "table.md", "one\n")
    report.atomic_write(path, b"two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["table.md"], "no temporary file left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_table_has_numbers_markdown_and_provenance(tmp_path):
    from liftcam import report

    df = pd.DataFrame({"method": ["a", "b"], "score": [0.5, float("nan")]}).set_index("method")
    report.save_table(df, tmp_path / "t", {"seed": 3}, title="T")
    assert pd.read_csv(tmp_path / "t.csv", index_col=0)["score"].iloc[0] == 0.5
    md = (tmp_path / "t.md").read_text()
    assert "| method | score |" in md and "| a | 0.500 |" in md and "| b | nan |" in md
    prov = json.loads((tmp_path / "t.json").read_text())
    assert prov["parameters"] == {"seed": 3} and prov["versions"]["torch"] and "commit" in prov


def test_tidy_executed_drops_run_times_and_keeps_outputs(tmp_path):
    from liftcam import report

    nb = {"metadata": {"papermill": {"start_time": "t0", "end_time": "t1", "duration": 3.0, "parameters": {"a": 1}}},
          "cells": [{"cell_type": "code", "source": "1", "id": "f3a9c2d1",
                     "outputs": [{"text": "1"}, {"output_type": "stream", "name": "stderr", "text": ["\rbar: 50%"]},
                                 {"output_type": "stream", "name": "stderr",
                                  "text": [str(report.REPO / "x.py") + ":1: Warning: w\n"]}],
                     "metadata": {"papermill": {"duration": 0.5, "status": "completed"},
                                  "execution": {"iopub.status.busy": "t"}}}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    out = json.loads(report.tidy_executed(path).read_text())
    assert out["metadata"]["papermill"] == {"parameters": {"a": 1}}
    assert out["cells"][0]["metadata"] == {"papermill": {"status": "completed"}} and out["cells"][0]["id"] == "cell-0"
    assert out["cells"][0]["outputs"] == [{"text": "1"}, {"output_type": "stream", "name": "stderr",
                                                          "text": "x.py:1: Warning: w\n"}]
