"""What every CAM shares: validated inputs, a coefficient rule, and the map it makes.

A CAM for class c is ``L^c = ReLU(sum_k alpha_k A_k)`` over the K activation maps ``A_k`` of one
layer (PAPER.md section 1). A method is only its *coefficient rule*: a function that takes a
:class:`Batch` (images, maps, targets, logits of one batch at the split) and returns alpha
(B, K). :func:`explain` does the rest once: the forward pass, the target classes, the map
(ReLU, bilinear upsampling to the input size, min-max to [0, 1] per image).

    >>> import liftcam
    >>> s = liftcam.models.load("efficientnet_lite0")
    >>> e = liftcam.explain(s, images, method="lift-cam")
    >>> e.maps.shape, e.coefficients.shape          # (B, 224, 224), (B, 320)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import SplitModel, split

__all__ = ["Batch", "Explanation", "RULES", "register", "explain", "explain_batch", "cam_maps", "minmax", "evaluating", "chunks",
           "check_images", "resolve_targets"]


@dataclass
class Batch:
    """What a coefficient rule sees: one batch of images at the split (all on the model's device)."""

    model: SplitModel
    images: Tensor       # (B, 3, H, W) in [0, 1] pixel space
    activations: Tensor  # (B, K, h, w), detached
    targets: Tensor      # (B,) long
    logits: Tensor       # (B, C) = head(activations), detached

    @property
    def head(self) -> nn.Module:
        return self.model.head

    def scores(self, logits: Tensor, targets: Tensor | None = None) -> Tensor:
        """The explained score of each row: the target's logit. (N, C) -> (N,)."""
        t = self.targets if targets is None else targets
        return logits.gather(1, t.view(-1, 1)).squeeze(1)


@dataclass
class Explanation:
    """The result of :func:`explain` for B images."""

    maps: Tensor          # (B, H, W) in [0, 1], at the input resolution
    raw: Tensor           # (B, h, w) sum_k alpha_k A_k, before ReLU and upsampling
    coefficients: Tensor  # (B, K) alpha
    targets: Tensor       # (B,) long, the explained classes
    logits: Tensor        # (B, C)
    method: str = ""
    extras: dict = field(default_factory=dict)  # what a method adds (SHAP-CAM: phi_0, ...)


Rule = Callable[..., "Tensor | tuple[Tensor, dict]"]
RULES: dict[str, Rule] = {}


def register(name: str):
    """Decorator: make ``fn(batch, **options) -> alpha (B, K)`` the rule of method ``name``.

    A rule may also return ``(alpha, extras)``; ``extras`` (a dict) lands in
    ``Explanation.extras``.
    """
    def deco(fn):
        RULES[name] = fn
        fn.method_name = name
        return fn
    return deco


def cam_maps(activations: Tensor, coefficients: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(A (B, K, h, w), alpha (B, K)) -> (maps (B, H, W) in [0, 1], raw (B, h, w)).

    ReLU of the weighted sum, bilinear upsampling (align_corners=False) to ``size``, min-max
    per image; a constant map becomes zeros, never NaN.
    """
    raw = torch.einsum("bk,bkhw->bhw", coefficients.to(activations.dtype), activations)
    up = F.interpolate(raw.clamp(min=0)[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return minmax(up), raw


def minmax(maps: Tensor) -> Tensor:
    """Min-max each map (B, ...) to [0, 1]; a constant map becomes zeros."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo).view(-1, *([1] * (maps.dim() - 1)))
    out = (maps - lo.view_as(span)) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, out, torch.zeros_like(out))


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Put every submodule in eval mode; restore each one's flag afterwards, also on error."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def chunks(n: int, size: int | None):
    """Slices that cover range(n) in steps of ``size`` (all at once when size is None)."""
    size = n if not size else int(size)
    if size < 1:
        raise ValueError(f"chunk size must be a positive integer, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def check_images(images) -> Tensor:
    """Images must be a float tensor (B, 3, H, W) in [0, 1] pixel space; else a clear error."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, 3, H, W) in [0, 1], got {type(images).__name__}; "
                        "use model.preprocess(pil_image) to make one")
    if not images.is_floating_point():
        raise TypeError(f"images must be floats in [0, 1], got dtype {images.dtype}; "
                        "divide uint8 images by 255 (model.preprocess does this)")
    if images.dim() != 4:
        fix = " (add the batch dimension: images[None])" if images.dim() == 3 else ""
        raise ValueError(f"images must be 4-D (B, 3, H, W), got shape {tuple(images.shape)}{fix}")
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 (RGB) channels, got shape {tuple(images.shape)}; "
                         "convert grayscale or RGBA pictures with liftcam.data.load_image or PIL's .convert('RGB')")
    if images.numel() == 0:
        raise ValueError(f"images is empty: shape {tuple(images.shape)}")
    lo, hi = images.min().item(), images.max().item()
    if lo < -1e-6 or hi > 1 + 1e-6 or images.isnan().any():
        raise ValueError(f"images must be in [0, 1] pixel space (normalisation happens inside the model), "
                         f"got values in [{lo:.3g}, {hi:.3g}]; pass unnormalised images")
    return images


def resolve_targets(targets, logits: Tensor) -> Tensor:
    """None -> predicted classes; int -> that class for all; sequence/tensor -> one per image."""
    B, C = logits.shape
    if targets is None:
        return logits.argmax(1)
    if isinstance(targets, bool):
        raise TypeError("targets must be None, an int or a sequence of ints, got a bool")
    if isinstance(targets, int):
        t = torch.full((B,), targets, dtype=torch.long, device=logits.device)
    else:
        t = torch.as_tensor(targets, device=logits.device)
        if t.dim() == 0:
            t = t.expand(B)
        if t.dim() != 1 or t.shape[0] != B:
            raise ValueError(f"targets must be None, an int or one class per image ({B}), got shape {tuple(t.shape)}")
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"targets must be integer class indices, got dtype {t.dtype}")
        t = t.long()
    bad = (t < 0) | (t >= C)
    if bad.any():
        raise ValueError(f"target class {t[bad][0].item()} is out of range: the model has {C} classes (0..{C - 1})")
    return t


def explain(model, images: Tensor, method: str = "lift-cam", targets=None, *, layer: str | None = None,
            **options) -> Explanation:
    """Explain ``images`` (B, 3, H, W) in [0, 1] with one CAM ``method``.

    ``model`` is a :class:`~liftcam.models.SplitModel` (or any ``nn.Module`` together with
    ``layer=``). ``targets``: None explains each image's predicted class; an int applies to all
    images; a sequence gives one class per image. ``options`` go to the method's rule (see
    ``liftcam.methods``). The model's train/eval flags are restored afterwards.
    """
    if method not in RULES:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(RULES)}")
    if not isinstance(model, SplitModel):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a liftcam SplitModel or a torch.nn.Module, got {type(model).__name__}")
        if layer is None:
            raise ValueError("explain needs a SplitModel (liftcam.models.split / load) or a module with layer=...")
        model = split(model, layer)
    elif layer is not None and layer != model.layer:
        raise ValueError(f"the SplitModel is cut at {model.layer!r}, not {layer!r}; split the model again at {layer!r}")
    images = check_images(images).to(model.device)
    with evaluating(model):
        with torch.no_grad():
            A = model.body(images)                      # (B, K, h, w)
            logits = model.head(A)                      # (B, C)
        return explain_batch(Batch(model, images, A, resolve_targets(targets, logits), logits), method, **options)


def explain_batch(batch: Batch, method: str, **options) -> Explanation:
    """:func:`explain` for a batch whose maps and logits are already computed (no forward pass)."""
    with evaluating(batch.model):
        out = RULES[method](batch, **options)
    alpha, extras = out if isinstance(out, tuple) else (out, {})
    alpha = alpha.detach()
    maps, raw = cam_maps(batch.activations, alpha, batch.images.shape[-2:])
    return Explanation(maps, raw, alpha, batch.targets, batch.logits, method, extras)
