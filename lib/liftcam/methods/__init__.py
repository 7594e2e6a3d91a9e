"""The CAM methods, each a coefficient rule registered with :func:`liftcam.core.register`.

Import order fixes the order of ``liftcam.METHODS``: the paper's method first, then its
baselines.
"""
from .propagation import lift_cam, lrp_cam, deeplift_contributions, lrp_relevance, CompletenessError
from .perturbation import lime_cam, score_cam, ablation_cam
from .gradient import grad_cam, grad_cam_plus_plus, xgrad_cam, cam, head_gradients

__all__ = ["lift_cam", "lrp_cam", "lime_cam", "grad_cam", "grad_cam_plus_plus", "xgrad_cam", "score_cam",
           "ablation_cam", "cam", "deeplift_contributions", "lrp_relevance", "head_gradients", "CompletenessError"]
