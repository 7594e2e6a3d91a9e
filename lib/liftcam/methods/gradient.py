"""Gradient CAMs: Grad-CAM, Grad-CAM++, XGrad-CAM, and CAM itself.

All take ``g = d y^c / d A`` with respect to the maps only (one backward pass through the head;
the body and the parameters' ``.grad`` are untouched).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..core import Batch, register

__all__ = ["head_gradients", "grad_cam", "grad_cam_plus_plus", "xgrad_cam", "cam"]


def head_gradients(batch: Batch) -> tuple[Tensor, Tensor]:
    """(d y^c / d A (B, K, h, w), logits (B, C)) through the head alone."""
    A = batch.activations.clone().requires_grad_(True)
    with torch.enable_grad():
        out = batch.head(A)
        (g,) = torch.autograd.grad(batch.scores(out).sum(), A)
    return g, out.detach()


@register("grad-cam", label="Grad-CAM", colour="#1f77b4", cost="head", rank=10)
def grad_cam(batch: Batch) -> Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017, Eq. 1): alpha_k = mean_ij d y^c / d A_k(i, j).

        >>> liftcam.explain(model, images, method="grad-cam")
    """
    g, _ = head_gradients(batch)
    return g.mean((2, 3))


@register("grad-cam++", label="Grad-CAM++", colour="#17becf", cost="head", rank=11)
def grad_cam_plus_plus(batch: Batch, *, eps: float = 1e-6) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al., WACV 2018, Eq. 19): the closed form under y = exp(S^c).

    alpha_k = sum_ij relu(g) * g^2 / (2 g^2 + sum_ab A_k(a, b) g^3); the positive factor exp(S)
    of the exponential output does not change the normalised map. ``eps`` as pytorch-grad-cam.
    """
    g, _ = head_gradients(batch)
    A = batch.activations
    g2 = g * g
    a = g2 / (2 * g2 + A.sum((2, 3), keepdim=True) * g2 * g + eps)
    a = torch.where(g != 0, a, torch.zeros_like(a))
    return (g.clamp(min=0) * a).sum((2, 3))


@register("xgrad-cam", label="XGrad-CAM", colour="#2ca02c", cost="head", rank=12)
def xgrad_cam(batch: Batch, *, eps: float = 1e-7) -> Tensor:
    """XGrad-CAM (Fu et al., BMVC 2020, Eq. 11): alpha_k = sum_ij A_k(i, j) / sum_ab A_k(a, b) * g(i, j)."""
    g, _ = head_gradients(batch)
    A = batch.activations
    return (g * A / (A.sum((2, 3), keepdim=True) + eps)).sum((2, 3))


@register("cam", label="CAM", colour="#ff7f0e", cost="head", rank=15)
def cam(batch: Batch, *, rtol: float = 1e-4) -> Tensor:
    """CAM (Zhou et al., CVPR 2016, Eq. 2): alpha_k = w_ck, for heads that are GAP + linear.

    The weights are read from the gradient (uniform over space for GAP, ``w_ck / (h w)``); the
    head is accepted only if that gradient is spatially constant and the head is affine on this
    input (``F_c(A) - F_c(0) = sum_k w_ck mean(A_k)``), both within ``rtol`` of the size of the
    terms compared (no absolute floor beyond float epsilon); otherwise a ValueError.
    """
    g, out = head_gradients(batch)
    B, K, h, w = g.shape
    weights = g.sum((2, 3))                                       # (B, K) = w_ck
    spread = (g - g.mean((2, 3), keepdim=True)).abs().amax((1, 2, 3))
    uniform = spread <= rtol * g.abs().amax((1, 2, 3)).clamp(min=1e-12)
    with torch.no_grad():
        ref = batch.scores(batch.head(torch.zeros_like(batch.activations[:1])).expand(B, -1))
    delta = batch.scores(out) - ref
    terms = weights * batch.activations.mean((2, 3))                         # (B, K)
    eps = torch.finfo(terms.dtype).eps
    affine = (delta - terms.sum(1)).abs() <= rtol * (terms.abs().sum(1) + delta.abs()) + eps
    if not bool((uniform & affine).all()):
        raise ValueError(
            f"method 'cam' needs a head that is global average pooling followed by a linear layer "
            f"(CAM, Zhou et al. 2016); the head after layer {batch.model.layer!r} is not. Split at a layer "
            f"whose head is GAP + fc (resnet50 'layer4', efficientnet_lite0 'bn2') or use another method.")
    return weights
