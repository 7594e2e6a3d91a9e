"""The input checks and the model call that every metric shares."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor, nn

from ..core import check_images, evaluating, resolve_targets

#: Tolerance for maps slightly outside [0, 1] (rounding after upsampling); they are clipped.
TOLERANCE = 1e-6


def _prepare(model, images, maps, targets) -> tuple[Tensor, Tensor, Tensor]:
    """Checked (images (B, 3, H, W), maps (B, H, W) in [0, 1], targets (B,) long) on the model's device."""
    if not callable(model):
        raise TypeError(f"model must be a callable mapping images (N, 3, H, W) to logits (N, C), got {type(model).__name__}")
    images = _check_images(images)
    maps = _check_maps(maps, images)
    targets = _check_targets(targets, len(images))
    device, dtype = images.device, images.dtype
    if isinstance(model, nn.Module):
        p = next((t for t in model.parameters() if t.is_floating_point()), None)
        if p is not None:
            device, dtype = p.device, p.dtype
    return images.to(device, dtype), maps.to(device, dtype), targets.to(device)


def _check_images(images) -> Tensor:
    return check_images(images).detach()


def _check_maps(maps, images: Tensor | None = None) -> Tensor:
    if not isinstance(maps, Tensor) or not maps.is_floating_point():
        raise TypeError(f"maps must be a float torch.Tensor (B, H, W) in [0, 1], got "
                        f"{getattr(maps, 'dtype', type(maps).__name__)}")
    if maps.dim() != 3:
        fix = " (drop the channel: maps[:, 0])" if maps.dim() == 4 and maps.shape[1] == 1 else \
              " (add the batch dimension: maps[None])" if maps.dim() == 2 else ""
        raise ValueError(f"maps must be 3-D (B, H, W), got shape {tuple(maps.shape)}{fix}")
    if images is not None:
        if len(maps) != len(images):
            raise ValueError(f"maps and images must have the same length, got {len(maps)} maps for {len(images)} "
                             "images; pass one map per image")
        if maps.shape[1:] != images.shape[2:]:
            raise ValueError(f"maps must match the images' spatial size {tuple(images.shape[2:])}, got "
                             f"{tuple(maps.shape[1:])}; upsample them to the input size (liftcam.cam_maps does)")
    if maps.numel() == 0:
        raise ValueError(f"maps is empty: shape {tuple(maps.shape)}")
    lo, hi = maps.min().item(), maps.max().item()
    if not (lo >= -TOLERANCE and hi <= 1 + TOLERANCE):
        raise ValueError(f"maps must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; min-max normalise them "
                         "per image (liftcam.core.minmax)")
    return maps.detach().clamp(0, 1)                                              # (B, H, W)


def _check_targets(targets, B: int) -> Tensor:
    """One class per image, checked as everywhere else (:func:`liftcam.core.resolve_targets`)."""
    return resolve_targets(targets, n=B).cpu()


def _check_batch_size(batch_size) -> None:
    if batch_size is not None:
        _positive_int(batch_size, "batch_size")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _broadcast(value, images: Tensor, name: str) -> Tensor:
    """A float or tensor as a (B, 3, H, W) view on the images' device and dtype."""
    v = torch.as_tensor(value).to(images.device, images.dtype)
    try:
        return torch.broadcast_to(v, images.shape)
    except RuntimeError:
        raise ValueError(f"{name} must be a float or a tensor broadcastable to the images {tuple(images.shape)}, "
                         f"e.g. (3, 1, 1) for one colour; got shape {tuple(v.shape)}") from None


@contextlib.contextmanager
def _inference(model):
    """no_grad, and eval mode for an nn.Module (flags restored afterwards)."""
    with torch.no_grad(), (evaluating(model) if isinstance(model, nn.Module) else contextlib.nullcontext()):
        yield


def _probabilities(model, x: Tensor, t: Tensor, all_targets: Tensor, *, log: bool = False) -> Tensor:
    """Softmax probability of class ``t`` (n,) on images ``x`` (n, 3, H, W), float64 on the CPU
    (``log``: its logarithm, finite where the probability underflows to 0)."""
    logits = model(x)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != len(x):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"the model must map images ({len(x)}, 3, H, W) to logits ({len(x)}, C), got {shape}")
    C = logits.shape[1]
    bad = (all_targets < 0) | (all_targets >= C)
    if bad.any():
        raise ValueError(f"target class {all_targets[bad][0].item()} is out of range for the model's output: it has "
                         f"{C} classes (0..{C - 1}); pass class indices of this model")
    # float64 softmax: probabilities near 0 or 1 keep their digits for the ratios and AUCs.
    p = logits.double().log_softmax(1) if log else logits.double().softmax(1)
    return p.gather(1, t.view(-1, 1).to(logits.device)).squeeze(1).cpu()


def _out(v: Tensor) -> Tensor:
    return v.detach().to("cpu", torch.float32)
