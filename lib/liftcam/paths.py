"""Where the repository's folders are, computed once: ``REPO`` (the root), ``DATA``, ``FIGURES``."""
from pathlib import Path

__all__ = ["REPO", "DATA", "FIGURES"]

#: the repository root (lib/liftcam/paths.py -> ../..)
REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
FIGURES = REPO / "figures"
