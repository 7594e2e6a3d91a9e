"""The CAM methods, each a coefficient rule registered with :func:`liftcam.core.register`.

Import order fixes the order of ``liftcam.METHODS``: the paper's method first, then its
baselines (``rank`` at ``register``). ShapleyCAM (``hessian``) is a later method, not the paper's.
"""
from .gradient import cam, grad_cam, grad_cam_plus_plus, head_gradients, xgrad_cam
from .hessian import shapley_cam, shapley_cam_rest, shapley_gradients
from .perturbation import ablation_cam, lime_cam, score_cam
from .propagation import CompletenessError, deeplift_contributions, lift_cam, lrp_cam, lrp_relevance

__all__ = ["lift_cam", "lrp_cam", "lime_cam", "grad_cam", "grad_cam_plus_plus", "xgrad_cam", "score_cam",
           "ablation_cam", "cam", "deeplift_contributions", "lrp_relevance", "head_gradients", "CompletenessError",
           "shapley_cam", "shapley_cam_rest", "shapley_gradients"]
