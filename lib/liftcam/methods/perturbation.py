"""Perturbation CAMs: Score-CAM, Ablation-CAM and LIME-CAM.

Ablation-CAM and LIME-CAM perturb the maps and re-run the head only; Score-CAM masks the image in
pixel space and runs the whole model, in chunks of ``batch_size`` perturbed inputs.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..core import Batch, chunks, numpy_seed, register

__all__ = ["score_cam", "ablation_cam", "lime_cam", "SCORE_CAM_VARIANTS", "ABLATION_VALUES"]

SCORE_CAM_VARIANTS = ("score-cam", "baseline", "pytorch-grad-cam")
ABLATION_VALUES = ("zero", "pytorch-grad-cam")


def _pairs(B: int, K: int, size: int | None, progress: bool | None = False, desc: str = "",
           keep: Tensor | None = None):
    """Chunks of (image, map) index pairs: all B * K of them, or those where ``keep`` (B, K) is true,
    in row-major order (a progress bar if asked; None: when there are more than 16 chunks)."""
    idx = torch.arange(B * K) if keep is None else keep.reshape(-1).nonzero().flatten().cpu()
    slices = list(chunks(len(idx), size))
    show = len(slices) > 16 if progress is None else progress
    for sl in tqdm(slices, desc=desc, unit="batch", disable=not show, leave=False):
        i = idx[sl]
        yield i // K, i % K


def _masked(x: Tensor, H: Tensor) -> Tensor:
    """x (n, 3, H, W) * H (n, 1, H, W), written channels-last (a faster layout for the convolutions)."""
    out = torch.empty_like(x, memory_format=torch.channels_last)
    return torch.mul(x, H, out=out)


@register("score-cam", label="Score-CAM", colour="#bcbd22", cost="per-map", rank=13)
def score_cam(batch: Batch, *, variant: str = "score-cam", batch_size: int = 64,
              progress: bool | None = None) -> Tensor:
    """Score-CAM (Wang et al., CVPRW 2020, Eq. 5-7): alpha_k = p_c(x * H_k).

    ``H_k`` is ``A_k`` upsampled (bilinear) to the image and min-max normalised to [0, 1]; the
    masked image ``x * H_k`` goes through the full model. Variants:

    - ``"score-cam"`` (default, the paper's released code): the softmax probability of c;
      a constant map gets alpha_k = 0.
    - ``"baseline"``: the paper's Eq. 5 with the black image as baseline, p_c(x * H_k) - p_c(0).
    - ``"pytorch-grad-cam"``: as pytorch-grad-cam: the logit of c on ``x * H_k`` (H_k upsampled
      with align_corners=True), softmax over the K maps.

    ``batch_size`` masked images go through the model at a time; ``progress`` shows a bar
    (default: when there are more than 16 batches). Nearly all the time is the forward passes,
    so the masked images are built channels-last (the layout oneDNN's and cuDNN's convolutions
    and pooling run fastest on; the same scores up to float rounding).

    A map that is constant over space (e.g. a channel that a ReLU6 zeroes everywhere: a third or
    more of EfficientNet-Lite0's 1152 maps at ``blocks.6.0.bn2``) skips its forward pass when its
    upsampled map is exactly constant too: alpha_k = 0 in ``"score-cam"`` and ``"baseline"``, and
    in ``"pytorch-grad-cam"`` H_k = 0 masks the whole image, whose logit comes from one pass of
    the black image shared by all such maps. Bilinear rounding can leave the upsampled copy of a
    constant non-zero map a few ulps uneven (with align_corners=True, or a scale factor that is
    not an integer); such a map still goes through the model, its rounding noise min-max
    stretched into a mask, as in the paper's code and pytorch-grad-cam, so the scores stay theirs.
    """
    if variant not in SCORE_CAM_VARIANTS:
        raise ValueError(f"unknown Score-CAM variant {variant!r}; choose one of {', '.join(SCORE_CAM_VARIANTS)}")
    A, x, model = batch.activations, batch.images, batch.model
    B, K = A.shape[:2]
    size = x.shape[-2:]
    align = variant == "pytorch-grad-cam"

    def upsample(b, k):                                             # (n, 1, H, W) and its range (n, 1, 1, 1)
        up = F.interpolate(A[b, k][:, None], size=size, mode="bilinear", align_corners=align)
        return up, up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)

    flat = A.flatten(2)
    constant = flat.amax(2) <= flat.amin(2)                         # (B, K): constant maps, then those that
    scores = torch.zeros(B, K, device=A.device, dtype=A.dtype)      # stay constant once upsampled
    with torch.no_grad():
        for b, k in _pairs(B, K, batch_size, False, keep=constant):  # no forward pass: cheap
            b, k = b.to(A.device), k.to(A.device)
            _, lo, hi = upsample(b, k)
            constant[b, k] = (hi <= lo).view(-1)
        for b, k in _pairs(B, K, batch_size, progress, "Score-CAM", keep=~constant):
            b, k = b.to(A.device), k.to(A.device)
            up, lo, hi = upsample(b, k)
            if align:
                H = (up - lo) / (hi - lo + 1e-8)
            else:
                H = (up - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
            logits = model(_masked(x[b], H))                        # (n, C)
            s = logits if align else logits.softmax(1)
            scores[b, k] = s.gather(1, batch.targets[b].view(-1, 1)).squeeze(1)
            constant[b, k] = (hi <= lo).view(-1)                    # a map that upsampling flattened
        black = None                                                # logits (C,) of the black image, once
        if variant == "baseline" or (align and constant.any()):
            black = model(torch.zeros_like(x[:1], memory_format=torch.channels_last))[0]
        if align:
            if black is not None:                                   # H_k = 0: x * H_k is the black image
                scores = torch.where(constant, black[batch.targets][:, None], scores)
            return scores.softmax(1)
        scores = torch.where(constant, torch.zeros_like(scores), scores)
        if variant == "baseline":
            p0 = black.softmax(0)[batch.targets]                    # (B,)
            scores = torch.where(constant, scores, scores - p0[:, None])
    return scores


@register("ablation-cam", label="Ablation-CAM", colour="#8c564b", cost="per-map", rank=14)
def ablation_cam(batch: Batch, *, ablation: str = "zero", batch_size: int = 64) -> Tensor:
    """Ablation-CAM (Desai & Ramaswamy, WACV 2020, Eq. 3): alpha_k = (y^c - y^c_k) / y^c.

    ``y^c_k`` is the logit with map k removed, computed by re-running the head only.
    ``ablation="zero"`` (the paper) sets the map to zero; ``"pytorch-grad-cam"`` uses that
    library's value: zero if the image's smallest activation is 0, else that minimum - 1e7
    (pytorch-grad-cam lowers the value by another 1e7 for each further map ablated in the same
    forward batch; here every map gets minimum - 1e7, its value at batch_size=1).
    """
    if ablation not in ABLATION_VALUES:
        raise ValueError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATION_VALUES)}")
    A = batch.activations
    B, K = A.shape[:2]
    y = batch.scores(batch.logits)                                  # (B,)
    if ablation == "zero":
        fill = torch.zeros(B, device=A.device, dtype=A.dtype)
    else:
        lo = A.flatten(1).amin(1)
        fill = torch.where(lo == 0, lo, lo - 1e7)
    ablated = torch.empty(B, K, device=A.device, dtype=A.dtype)
    with torch.no_grad():
        for b, k in _pairs(B, K, batch_size):
            b, k = b.to(A.device), k.to(A.device)
            X = A[b].clone()                                        # (n, K, h, w)
            X[torch.arange(len(b), device=A.device), k] = fill[b].view(-1, 1, 1)
            ablated[b, k] = batch.scores(batch.head(X), batch.targets[b])
    return (y[:, None] - ablated) / y[:, None]


@register("lime-cam", label="LIME-CAM", colour="#e377c2", cost="sampling", random=True, rank=2)
def lime_cam(batch: Batch, *, n_samples: int | None = None, seed: int = 0, batch_size: int = 64) -> Tensor:
    """LIME-CAM (Jung & Oh, ICCV 2021, baseline): LIME on the head, one feature per map.

    The authors' settings: captum's ``Lime`` with the zero map as baseline, ``n_samples = K``
    Bernoulli(0.5) coalitions, a Lasso (alpha 0.01) surrogate and an exponential cosine kernel
    (width 1). Each image uses its own generator seeded with ``seed`` (results do not depend on
    the batch), and the global torch and numpy RNGs are left as they were.
    """
    from captum.attr import Lime

    A = batch.activations
    B, K, h, w = A.shape
    if n_samples is None:
        n_samples = K
    elif isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int (coalitions per image) or None (K = {K}, the "
                         f"authors' setting), got {n_samples!r}")
    mask = torch.arange(K, device=A.device).view(1, K, 1, 1).expand(1, K, h, w)
    lime = Lime(batch.head)
    devices = [A.device] if A.device.type == "cuda" else []
    out = torch.empty(B, K, device=A.device, dtype=A.dtype)
    for b in range(B):
        with torch.random.fork_rng(devices=devices), numpy_seed(seed):   # the caller's RNGs are left as they were
            torch.manual_seed(seed)
            out[b] = lime.attribute(A[b:b + 1], baselines=0.0, target=int(batch.targets[b]),
                                    feature_mask=mask, n_samples=int(n_samples),
                                    perturbations_per_eval=batch_size, return_input_shape=False)[0]
    return out
