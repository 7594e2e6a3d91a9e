"""ShapleyCAM: a second-order Taylor estimate of each map's Shapley value (gradient and Hessian-vector product).

Not one of the paper's methods: a later one (Cai, 2025) that makes the same promise as LIFT-CAM, that
its coefficients are the Shapley values of the activation maps, and is judged here against the
exact values (notebook 03, REPORT.md "Beyond the paper").
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..core import Batch, register

__all__ = ["shapley_cam", "shapley_cam_rest", "shapley_gradients", "SHAPLEY_TARGETS"]

#: the scores ShapleyCAM can explain: the target's logit, or ReST (Cai 2025, Eq. 10: y_c - CE(y, c))
SHAPLEY_TARGETS = ("logit", "rest")


def _score(batch: Batch, out: Tensor, target: str) -> Tensor:
    """The explained score per row (N,): the logit y_c, or ReST u = y_c - CE(y, c) = 2 y_c - logsumexp(y)."""
    y = batch.scores(out)
    return y if target == "logit" else 2 * y - torch.logsumexp(out, dim=1)


def shapley_gradients(batch: Batch, target: str = "logit") -> tuple[Tensor, Tensor]:
    """(g = d u / d A, H A = d g / d A applied to A), both (B, K, h, w), through the head alone.

    ``H A`` is the Hessian-vector product ``autograd.grad(g, A, grad_outputs=A)``, as in
    pytorch-grad-cam's ``ShapleyCAM``; zeros where ``g`` does not depend on ``A`` (a linear head)
    or depends on it only through piecewise-constant derivatives (ReLU, max-pool: their second
    derivative is zero wherever it exists).
    """
    if target not in SHAPLEY_TARGETS:
        raise ValueError(f"ShapleyCAM's target must be one of {', '.join(map(repr, SHAPLEY_TARGETS))} "
                         f"(the logit, or ReST = logit - cross-entropy), got {target!r}")
    A = batch.activations.clone().requires_grad_(True)
    with torch.enable_grad():
        u = _score(batch, batch.head(A), target)
        (g,) = torch.autograd.grad(u.sum(), A, create_graph=True)
        # rows are independent (eval mode), so the summed score's Hessian is block-diagonal: one HVP for the batch
        hvp = torch.autograd.grad(g, A, grad_outputs=A.detach(), allow_unused=True)[0] if g.requires_grad else None
    return g.detach(), torch.zeros_like(A) if hvp is None else hvp.detach()


@register("shapley-cam", label="ShapleyCAM", colour="#393b79", cost="head", rank=4)
def shapley_cam(batch: Batch, *, target: str = "logit") -> Tensor:
    """ShapleyCAM (Cai, 2025, arXiv 2501.06261, Eq. 9): alpha_k = mean_ij (g - 1/2 H A)_k(i, j).

    ``g = d u / d A`` and ``H A`` the Hessian-vector product of the explained score ``u`` at the
    maps: the second-order Taylor expansion of ``u`` around ``A``, whose Shapley values per map
    are ``A_k . (g - 1/2 H A)_k``; averaged over space as Grad-CAM averages ``g``. ``target``:
    ``"logit"`` (``u = y_c``, as every other method here) or ``"rest"`` (``u = y_c - CE(y, c)``,
    the ReST score of the ShapleyCAM paper and pytorch-grad-cam's ``ClassifierOutputReST``).

    On a head that is piecewise linear in A (ReLU, ReLU6, max-pool, batch-norm, conv and linear
    layers: VGG16's, ResNet50's and EfficientNet-Lite0's heads) ``H A`` vanishes almost everywhere,
    so with the logit target ShapleyCAM *equals Grad-CAM* there; only the smooth log-sum-exp of the
    ReST target (or a smooth activation in the head) makes it differ. Equal to pytorch-grad-cam's
    ``ShapleyCAM`` (tests/test_shapley_cam.py).

        >>> liftcam.explain(model, images, method="shapley-cam", target="rest").coefficients   # (B, K)
    """
    g, hvp = shapley_gradients(batch, target)
    return (g - 0.5 * hvp).mean((2, 3))


@register("shapley-cam-rest", label="ShapleyCAM (ReST)", colour="#8c6d31", cost="head", rank=5)
def shapley_cam_rest(batch: Batch) -> Tensor:
    """ShapleyCAM with its paper's ReST target: ``shapley_cam(batch, target="rest")``, a name of its own so that
    the tables, caches and timings show both targets side by side.

        >>> liftcam.explain(model, images, method="shapley-cam-rest")
    """
    return shapley_cam(batch, target="rest")
