"""LIFT-CAM reproduction: CAM methods as coefficient rules over one layer's activation maps.

    >>> import liftcam
    >>> s = liftcam.models.load("efficientnet_lite0")
    >>> e = liftcam.explain(s, images, method="lift-cam")     # e.maps (B, H, W) in [0, 1]
"""
from . import data, explanations, metrics, models, plots, report, timing, toy
from .core import RULES, Batch, Explanation, cam_maps, explain, register
from . import methods  # registers the coefficient rules
from . import shapley  # registers "shap-cam"
from .shapley import exact_shapley

#: The method names accepted by :func:`explain`.
METHODS = tuple(RULES)

__all__ = ["METHODS", "Batch", "Explanation", "cam_maps", "explain", "register", "exact_shapley",
           "data", "explanations", "metrics", "models", "methods", "plots", "report", "shapley", "timing", "toy"]
