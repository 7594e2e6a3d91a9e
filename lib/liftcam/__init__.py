"""LIFT-CAM reproduction: CAM methods as coefficient rules over one layer's activation maps.

    >>> import liftcam
    >>> s = liftcam.models.load("efficientnet_lite0")
    >>> e = liftcam.explain(s, images, method="lift-cam")     # e.maps (B, H, W) in [0, 1]
"""
# importing methods and shapley registers the coefficient rules
from . import cache, data, explaining, explanations, methods, metrics, models, paths, plots, report, shapley, timing, toy
from .core import REGISTRY, RULES, Batch, Explanation, Method, cam_maps, explain, register
from .shapley import exact_shapley

#: The method names accepted by :func:`explain`.
METHODS = tuple(RULES)

__all__ = ["METHODS", "REGISTRY", "Batch", "Explanation", "Method", "cam_maps", "explain", "register", "exact_shapley",
           "cache", "data", "explaining", "explanations", "metrics", "models", "methods", "paths", "plots", "report",
           "shapley", "timing", "toy"]
