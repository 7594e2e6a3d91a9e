"""LIFT-CAM reproduction: CAM methods as coefficient rules over one layer's activation maps."""
from . import data, models

__all__ = ["data", "models"]
