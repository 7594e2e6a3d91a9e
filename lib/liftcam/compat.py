"""LIFT-CAM (and every registered method) called as pytorch-grad-cam's classes are.

    >>> from liftcam.compat import LiftCAM
    >>> from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    >>> with LiftCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
    ...     grayscale_cam = cam(input_tensor=input_tensor, targets=[ClassifierOutputTarget(281)])  # (B, H, W)

``input_tensor`` is what the model takes (normalised, as in pytorch-grad-cam), ``targets`` None (the
predicted classes), one target per image (pytorch-grad-cam's target objects, any callable over one
image's logits (C,), class indices, :mod:`liftcam.targets`), or one for all; the maps are
:func:`liftcam.explain`'s, as float32 numpy (B, H, W) in [0, 1]. ``cam_class("grad-cam++")`` gives
the class of any method in ``liftcam.METHODS``. The caller's model is not changed: it is split
from a copy (split again if its weights change).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .core import REGISTRY, _split_once, evaluating, explain_targets, lookup, minmax

__all__ = ["BaseCAM", "LiftCAM", "cam_class", "layer_name"]


def layer_name(model: nn.Module, layer) -> str:
    """The dotted name of ``layer`` (a submodule of ``model``, or already its name) in ``model.named_modules()``."""
    if isinstance(layer, str):
        return layer
    for name, m in model.named_modules():
        if m is layer and name:
            return name
    raise ValueError(f"target layer {type(layer).__name__} is not a submodule of the model "
                     f"{type(model).__name__}; pass a module of this model (e.g. model.layer4[-1]) or its name")


class BaseCAM:
    """pytorch-grad-cam's calling convention over :func:`liftcam.explain` for one method (``self.method``)."""

    method = "lift-cam"

    def __init__(self, model: nn.Module, target_layers, reshape_transform=None, **options):
        lookup(self.method)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if reshape_transform is not None:
            raise ValueError("reshape_transform is not supported: a CAM here needs a layer whose output is maps "
                             "(B, K, h, w) (a convolutional layer)")
        if isinstance(target_layers, (nn.Module, str)):
            target_layers = [target_layers]
        if not target_layers:
            raise ValueError("target_layers is empty: give the layer to explain, e.g. [model.layer4[-1]]")
        self.model = model
        self.target_layers = list(target_layers)
        self.layers = [layer_name(model, m) for m in self.target_layers]
        self.options = options
        self.outputs: Tensor | None = None

    def __call__(self, input_tensor: Tensor, targets=None, aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> np.ndarray:
        """Maps (B, H, W) float32 in [0, 1] of ``input_tensor`` (B, 3, H, W) as the model takes it."""
        if aug_smooth or eigen_smooth:
            raise ValueError("aug_smooth and eigen_smooth are pytorch-grad-cam's smoothing, not part of "
                             f"{REGISTRY[self.method].label}; call without them")
        if not isinstance(input_tensor, Tensor) or input_tensor.dim() != 4 or not input_tensor.is_floating_point():
            shape = tuple(input_tensor.shape) if isinstance(input_tensor, Tensor) else type(input_tensor).__name__
            raise ValueError(f"input_tensor must be a float tensor (B, C, H, W), got {shape}")
        maps = []
        for layer in self.layers:
            s = _split_once(self.model, layer)
            x = input_tensor.to(s.device, s.dtype)
            with evaluating(s), torch.no_grad():
                A = s.body(x)                                       # (B, K, h, w)
                logits = s.head(A)                                  # (B, C)
                s.verify(x, A=A, logits=logits)
            with evaluating(s):
                e = explain_targets(s, x, A, logits, targets, self.method, **self.options)
            self.outputs = logits
            maps.append(e.maps)
        # several layers: pytorch-grad-cam's aggregation, the mean of the maps min-maxed again
        out = maps[0] if len(maps) == 1 else minmax(torch.stack(maps).mean(0))
        return out.detach().cpu().float().numpy()

    forward = __call__

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return False                                                 # no hooks are left on the model


class LiftCAM(BaseCAM):
    """LIFT-CAM (Jung & Oh, ICCV 2021) with pytorch-grad-cam's interface: ``LiftCAM(model, target_layers=[m])``."""

    method = "lift-cam"


_CLASSES: dict[str, type] = {"lift-cam": LiftCAM}


def cam_class(name: str) -> type:
    """The pytorch-grad-cam-style class of method ``name`` (any of ``liftcam.METHODS``).

        >>> with cam_class("lrp-cam")(model, target_layers=[model.layer4[-1]]) as cam:
        ...     maps = cam(input_tensor=x, targets=None)
    """
    m = lookup(name)
    if name not in _CLASSES:
        cls_name = "".join(ch for ch in m.label.replace("++", "PlusPlus") if ch.isalnum())
        _CLASSES[name] = type(cls_name, (BaseCAM,), {"method": name, "__doc__": f"{m.label} with pytorch-grad-cam's "
                                                     f"interface (liftcam.compat.cam_class({name!r}))."})
    return _CLASSES[name]
