"""How good is an explanation: faithfulness, localisation and agreement metrics (PAPER.md section 4).

Every metric returns one value per image, a float tensor (B,) on the CPU; :func:`summarize` turns
such a vector into a mean with a seeded bootstrap confidence interval.

Inputs shared by the faithfulness metrics:

- ``model``: any callable mapping images (N, 3, H, W) to logits (N, C). A :class:`SplitModel`
  normalises inside, so perturbations act on pixels. The model runs under ``torch.no_grad``, in
  eval mode (each submodule's flag is restored afterwards), on its device when it is an
  ``nn.Module`` with parameters (images and maps are moved there, and cast to its float dtype).
- ``images``: (B, 3, H, W) floats in [0, 1] pixel space.
- ``maps``: (B, H, W) explanation maps in [0, 1] at the image resolution.
- ``targets``: (B,) long tensor or sequence of ints (an int means that class for every image).
- ``Y``: softmax probability of the target on the image; every score below is a softmax
  probability, never a logit.

    >>> import torch
    >>> def model(x):                        # p(class 0) = mean pixel value, exactly
    ...     m = x.mean((1, 2, 3))
    ...     return torch.stack([m.log(), (1 - m).log()], 1)
    >>> images = torch.full((1, 3, 2, 2), 0.5)
    >>> maps = torch.tensor([[[1.0, 0.5], [0.5, 0.0]]])
    >>> average_drop(model, images, maps, [0])           # Y = 0.5, O = 0.5 * mean(map) = 0.25
    tensor([50.])
    >>> summarize(torch.tensor([1.0, 2.0, float("nan")]))["n_nan"]
    1
"""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core import check_images, chunks, evaluating

__all__ = [
    "Curves", "average_drop", "increase_in_confidence", "average_drop_in_deletion", "deletion",
    "insertion", "energy_pointing_game", "cosine_similarity", "spearman", "top_k_overlap", "summarize",
    "faithfulness", "HIGHER_IS_BETTER", "compare",
]

#: Tolerance for maps slightly outside [0, 1] (rounding after upsampling); they are clipped.
TOLERANCE = 1e-6

#: Perturbed images per forward pass of :func:`deletion` / :func:`insertion` by default.
DEFAULT_BATCH_SIZE = 64


class Curves(NamedTuple):
    """What :func:`deletion` / :func:`insertion` return with ``return_curves=True``."""

    auc: Tensor     # (B,) normalised area under each curve
    curves: Tensor  # (B, n_steps + 1) target probability after 0, p, 2p, ... pixels changed


# --------------------------------------------------------------------------------------------
# Confidence change under one perturbation: AD, IC, ADD


def average_drop(model, images: Tensor, maps: Tensor, targets, *, batch_size: int | None = None) -> Tensor:
    """Average Drop (%) per image, lower is better: ``100 * max(0, Y - O) / Y``.

    Chattopadhyay et al., "Grad-CAM++" (WACV 2018): ``Average Drop = 100/N sum_i max(0, Y_i - O_i)
    / Y_i``, with ``O`` the target's softmax probability on ``maps * images`` (the image seen only
    through its explanation). The mean over images is :func:`summarize`'s job. Unlike
    pytorch-grad-cam's ``DropInConfidence``, the drop is divided by ``Y`` (the paper's
    definition), so it is a relative drop in [0, 100]. ``Y == 0`` (underflow) gives NaN.
    ``batch_size`` images per forward pass (all at once when None).

        >>> model = lambda x: torch.stack([x.mean((1, 2, 3)).log(), (1 - x.mean((1, 2, 3))).log()], 1)
        >>> average_drop(model, torch.full((1, 3, 1, 2), 0.5), torch.tensor([[[1.0, 0.0]]]), [0])
        tensor([50.])
    """
    Y, O = _confidences(model, images, maps, targets, batch_size, keep=True)
    return _out(100 * (Y - O).clamp(min=0) / Y)


def increase_in_confidence(model, images: Tensor, maps: Tensor, targets, *, batch_size: int | None = None) -> Tensor:
    """Increase in Confidence per image, higher is better: ``100 * [Y < O]`` (0 or 100).

    Chattopadhyay et al., "Grad-CAM++" (WACV 2018): ``100/N sum_i 1[Y_i < O_i]``, ``O`` on
    ``maps * images`` as in :func:`average_drop`; the mean over images is the paper's percentage.
    The inequality is strict: an unchanged probability is no increase.

        >>> model = lambda x: torch.stack([x.mean((1, 2, 3)).log(), (1 - x.mean((1, 2, 3))).log()], 1)
        >>> increase_in_confidence(model, torch.full((1, 3, 1, 2), 0.5), torch.tensor([[[1.0, 0.0]]]), [1])
        tensor([100.])
    """
    Y, O = _confidences(model, images, maps, targets, batch_size, keep=True)
    return _out(100 * (Y < O).double())


def average_drop_in_deletion(model, images: Tensor, maps: Tensor, targets, *,
                             batch_size: int | None = None) -> Tensor:
    """Average Drop in Deletion (%) per image, higher is better: ``100 * (Y - D) / Y``.

    Jung & Oh, "Towards Better Explanations of Class Activation Mapping" (ICCV 2021):
    ``ADD = 100/N sum_i (Y_i - D_i) / Y_i`` with ``D`` the target's probability on
    ``(1 - maps) * images`` (the explanation removed). Not clipped at 0, as in the paper: removing
    the explained region may raise the probability, and that counts against the map.

        >>> model = lambda x: torch.stack([x.mean((1, 2, 3)).log(), (1 - x.mean((1, 2, 3))).log()], 1)
        >>> average_drop_in_deletion(model, torch.full((1, 3, 1, 2), 0.5), torch.tensor([[[1.0, 0.0]]]), [1])
        tensor([-50.])
    """
    Y, D = _confidences(model, images, maps, targets, batch_size, keep=False)
    return _out(100 * (Y - D) / Y)


def _confidences(model, images, maps, targets, batch_size, *, keep: bool) -> tuple[Tensor, Tensor]:
    """(Y, P) float64 (B,): target probability on the images and on ``maps * x`` (keep) or ``(1 - maps) * x``."""
    images, maps, targets = _prepare(model, images, maps, targets)
    _check_batch_size(batch_size)
    Y, P = [], []
    with _inference(model):
        for sl in chunks(len(images), batch_size):
            x, m = images[sl], maps[sl][:, None]                     # (n, 3, H, W), (n, 1, H, W)
            Y.append(_probabilities(model, x, targets[sl], targets))
            P.append(_probabilities(model, x * (m if keep else 1 - m), targets[sl], targets))
    return torch.cat(Y), torch.cat(P)


# --------------------------------------------------------------------------------------------
# RISE deletion and insertion curves


def deletion(model, images: Tensor, maps: Tensor, targets, *, pixels_per_step: int | None = None,
             substrate: float | Tensor = 0.0, batch_size: int | None = DEFAULT_BATCH_SIZE,
             return_curves: bool = False) -> Tensor | Curves:
    """Deletion AUC per image (RISE), lower is better: remove pixels by saliency, integrate the probability.

    Petsiuk, Das & Saenko, "RISE" (BMVC 2018): pixels are set to the ``substrate`` in decreasing
    order of ``maps``, ``pixels_per_step`` at a time; after each step the target's softmax
    probability is recorded. The curve has ``n_steps + 1`` points, ``n_steps = ceil(H*W / p)``,
    from 0 pixels removed to all removed (the last step may be smaller, it still counts as one
    step, as in RISE). The score is the trapezoid area over x = 0, 1/n_steps, ..., 1:
    ``AUC = (sum(y) - (y_0 + y_N) / 2) / n_steps``, normalised to [0, 1] (Quantus' AUC is not).

    - ``pixels_per_step``: default the image width, i.e. 224 at 224 x 224 as in RISE.
    - ``substrate``: default 0, black in pixel space. RISE zeroed *normalised* tensors, i.e. the
      dataset mean colour; pass ``torch.tensor(IMAGENET_MEAN).view(3, 1, 1)`` for that. A float or
      a tensor broadcastable to (B, 3, H, W).
    - Ties in ``maps`` are broken by the flat (row-major) pixel index, lowest first, so the
      result is deterministic.
    - ``batch_size``: perturbed images per forward pass, over all curves of all images; built
      chunk by chunk, never all at once. None = one curve's worth (``n_steps + 1``) per pass.
      The result does not depend on it.

    Returns the AUC (B,), or ``Curves(auc, curves)`` with the curves (B, n_steps + 1).

        >>> model = lambda x: torch.stack([x.mean((1, 2, 3)).log(), (1 - x.mean((1, 2, 3))).log()], 1)
        >>> x = torch.tensor([0.4, 0.8, 0.2, 0.6]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
        >>> m = torch.tensor([[[0.1, 0.9, 0.5, 0.3]]])
        >>> deletion(model, x, m, [0], pixels_per_step=2, return_curves=True)   # delete 0.8, 0.2 then 0.6, 0.4
        Curves(auc=tensor([0.2500]), curves=tensor([[0.5000, 0.2500, 0.0000]]))
    """
    images, maps, targets = _prepare(model, images, maps, targets)
    base = images                                                          # (B, 3, H, W)
    changed = _broadcast(substrate, images, "substrate")                   # (B, 3, H, W), a view
    return _rise(model, images, maps, targets, base, changed, pixels_per_step, batch_size, return_curves)


def insertion(model, images: Tensor, maps: Tensor, targets, *, pixels_per_step: int | None = None,
              blur_kernel: int = 11, blur_sigma: float = 5.0, start: Tensor | None = None,
              batch_size: int | None = DEFAULT_BATCH_SIZE, return_curves: bool = False) -> Tensor | Curves:
    """Insertion AUC per image (RISE), higher is better: reveal pixels by saliency on a blurred copy.

    Petsiuk, Das & Saenko, "RISE" (BMVC 2018): start from a Gaussian-blurred copy of the image and
    copy the original pixels back in decreasing order of ``maps``, ``pixels_per_step`` at a
    time; the curve, its ``n_steps + 1`` points and the normalised trapezoid AUC are as in
    :func:`deletion` (same ordering, ties and ``batch_size`` rules).

    - ``blur_kernel=11``, ``blur_sigma=5.0``: RISE's blur (an 11 x 11 Gaussian, sigma 5). We pad by
      replicating the border (RISE's conv padded with zeros, which darkens a 5-pixel frame), so
      a flat image stays flat. The kernel size must be odd.
    - ``start``: replace the blurred start by any image(s) broadcastable to (B, 3, H, W).

        >>> model = lambda x: torch.stack([x.mean((1, 2, 3)).log(), (1 - x.mean((1, 2, 3))).log()], 1)
        >>> x = torch.tensor([0.4, 0.8, 0.2, 0.6]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
        >>> m = torch.tensor([[[0.1, 0.9, 0.5, 0.3]]])
        >>> insertion(model, x, m, [0], pixels_per_step=2, start=torch.zeros(3, 1, 4), return_curves=True)
        Curves(auc=tensor([0.2500]), curves=tensor([[0.0000, 0.2500, 0.5000]]))
    """
    images, maps, targets = _prepare(model, images, maps, targets)
    if start is None:
        with torch.no_grad():
            base = _gaussian_blur(images, blur_kernel, blur_sigma)          # (B, 3, H, W)
    else:
        base = _broadcast(start, images, "start")
    return _rise(model, images, maps, targets, base, images, pixels_per_step, batch_size, return_curves)


def _rise(model, images, maps, targets, base, changed, pixels_per_step, batch_size, return_curves):
    """Curves of ``base`` with the top-ranked pixels taken from ``changed``; chunked over (image, step)."""
    B, _, H, W = images.shape
    n_pix = H * W
    p = W if pixels_per_step is None else _positive_int(pixels_per_step, "pixels_per_step")
    _check_batch_size(batch_size)
    n_steps = math.ceil(n_pix / p)
    n_points = n_steps + 1
    # rank[b, i] = position of pixel i in image b's saliency order (stable: ties by index).
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)       # (B, H*W)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n_pix, device=order.device).expand(B, -1))
    curves = torch.empty(B * n_points, dtype=torch.float64)
    with _inference(model):
        # Row j of the flat (image, step) list is image j // n_points after step j % n_points;
        # each chunk's perturbed images are built here, so memory is one chunk, not all curves.
        for sl in chunks(B * n_points, n_points if batch_size is None else batch_size):
            j = torch.arange(sl.start, sl.stop, device=images.device)
            b, step = j // n_points, j % n_points                                     # (n,), (n,)
            k = (step * p).clamp(max=n_pix)                                           # pixels changed
            mask = (rank[b] < k[:, None]).view(-1, 1, H, W)                           # (n, 1, H, W)
            x = torch.where(mask, changed[b], base[b])                                # (n, 3, H, W)
            curves[sl] = _probabilities(model, x, targets[b], targets)
    curves = curves.view(B, n_points)
    # Trapezoid rule on x = 0, 1/n, ..., 1 (RISE's auc()): a curve constant at y has AUC y.
    auc = (curves.sum(1) - (curves[:, 0] + curves[:, -1]) / 2) / n_steps
    return Curves(_out(auc), _out(curves)) if return_curves else _out(auc)


def _gaussian_blur(images: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W), odd ``kernel_size``, replicate padding."""
    k = _positive_int(kernel_size, "blur_kernel")
    if k % 2 == 0:
        raise ValueError(f"blur_kernel must be odd (the kernel is centred on the pixel), got {k}; use {k + 1}")
    if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"blur_sigma must be a positive number, got {sigma!r}")
    r, C = k // 2, images.shape[1]
    t = torch.arange(k, dtype=torch.float64) - r
    g = torch.exp(-t ** 2 / (2 * float(sigma) ** 2))
    g = (g / g.sum()).to(images)                                                     # (k,), sums to 1
    x = F.pad(images, (r, r, r, r), mode="replicate")                               # (B, C, H+2r, W+2r)
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(C, 1, 1, k), groups=C)               # along rows: (B, C, H+2r, W)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(C, 1, k, 1), groups=C)            # along columns: (B, C, H, W)


# --------------------------------------------------------------------------------------------
# Localisation


def energy_pointing_game(maps: Tensor, boxes: Sequence) -> Tensor:
    """Energy-based pointing game per image, higher is better: the share of the map's sum inside the boxes.

    Wang et al., "Score-CAM" (CVPR-W 2020): ``Proportion = sum_{(i,j) in bbox} E(i,j) /
    sum_{(i,j)} E(i,j)``. ``boxes[b]`` is a list of ``(x1, y1, x2, y2)`` in map pixels: x is the
    column, y the row, ends exclusive, so a box covers ``map[y1:y2, x1:x2]`` (Score-CAM's released
    code indexes rows by x; we do not). Several boxes count as their union (a pixel inside two
    boxes counts once). Boxes are clipped to the map. An image without boxes, or a map whose
    sum is 0, gives NaN (the share is undefined; :func:`summarize` skips NaN).

        >>> maps = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])    # (1, 2, 3): 2 rows, 3 columns
        >>> energy_pointing_game(maps, [[(2, 0, 3, 1)]])                 # the pixel at row 0, column 2
        tensor([0.5000])
    """
    maps = _check_maps(maps)
    B, H, W = maps.shape
    if isinstance(boxes, Tensor) or not isinstance(boxes, Sequence) or len(boxes) != B:
        n = len(boxes) if hasattr(boxes, "__len__") else type(boxes).__name__
        raise ValueError(f"boxes must be a list with one list of (x1, y1, x2, y2) boxes per map: {B} maps, got {n}; "
                         "use [] for an image without boxes")
    maps = maps.detach().to("cpu", torch.float64)
    out = torch.full((B,), float("nan"), dtype=torch.float64)
    for i, (m, image_boxes) in enumerate(zip(maps, boxes)):                     # m: (H, W)
        inside = torch.zeros(H, W, dtype=torch.bool)
        for box in (image_boxes if image_boxes is not None else []):
            x1, y1, x2, y2 = _box(box, i, H, W)
            inside[y1:y2, x1:x2] = True                # rows are y, columns are x; a mask makes the union
        total = m.sum()
        if (image_boxes is not None and len(image_boxes) > 0) and total > 0:
            out[i] = m[inside].sum() / total
    return _out(out)


def _box(box, i: int, H: int, W: int) -> tuple[int, int, int, int]:
    """One (x1, y1, x2, y2) box as ints clipped to the (H, W) map."""
    try:
        values = [float(v) for v in box]
    except TypeError:
        values = None
    if values is None or len(values) != 4:
        raise ValueError(f"boxes[{i}] must hold (x1, y1, x2, y2) boxes, got {box!r}; "
                         "wrap a single box in a list: [[(x1, y1, x2, y2)]]")
    if any(not math.isfinite(v) or v != int(v) for v in values):
        raise ValueError(f"box {box!r} of image {i} must have whole-pixel coordinates in map pixels; "
                         "map them with ImageTransform.map_boxes or round them")
    x1, y1, x2, y2 = (int(v) for v in values)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"box {box!r} of image {i} is inverted: expected (x1, y1, x2, y2) with x1 <= x2 and "
                         "y1 <= y2 (x = column, y = row, ends exclusive)")
    return min(max(x1, 0), W), min(max(y1, 0), H), min(max(x2, 0), W), min(max(y2, 0), H)


# --------------------------------------------------------------------------------------------
# Agreement between coefficient vectors (e.g. a CAM's alpha against SHAP-CAM's)


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of each row pair of (B, K) coefficient vectors: ``a.b / (|a| |b|)``.

    A zero vector has no direction: its rows give NaN (``torch.nn.functional.cosine_similarity``
    would give 0 through its eps).

        >>> cosine_similarity(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))   # 1 / sqrt(2)
        tensor([0.7071])
    """
    a, b = _check_pair(a, b, "cosine_similarity")
    den = a.norm(dim=1) * b.norm(dim=1)
    return _out(torch.where(den > 0, (a * b).sum(1) / den, torch.nan).clamp(-1, 1))


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each row pair of (B, K) vectors (average ranks for ties).

    Spearman's rho is Pearson's correlation of the ranks; tied values share their average rank,
    as in ``scipy.stats.spearmanr``. A constant row has no ranking: NaN.

        >>> spearman(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[30.0, 20.0, 10.0]]))
        tensor([-1.])
    """
    a, b = _check_pair(a, b, "spearman")
    ra, rb = _average_ranks(a), _average_ranks(b)                                  # (B, K)
    # Ranks are exact half-integers, so a constant row centres to exactly 0.
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    return _out(torch.where(den > 0, (ra * rb).sum(1) / den, torch.nan).clamp(-1, 1))


def top_k_overlap(a: Tensor, b: Tensor, k: int) -> Tensor:
    """Share of the k largest entries of each row of ``a`` that are also among the k largest of ``b``.

    ``|topk(a) ∩ topk(b)| / k`` by value, largest first (not by magnitude: a strongly negative
    coefficient is not "important" here). Ties go to the lower index, so the result is
    deterministic.

        >>> top_k_overlap(torch.tensor([[5.0, 1.0, 4.0, 3.0]]), torch.tensor([[5.0, 4.0, 0.0, 9.0]]), 2)
        tensor([0.5000])
    """
    a, b = _check_pair(a, b, "top_k_overlap")
    K = a.shape[1]
    k = _positive_int(k, "k")
    if k > K:
        raise ValueError(f"k must be at most the number of coefficients ({K}), got {k}")

    def top(v):                                                                    # (B, K) bool
        idx = torch.argsort(v, dim=1, descending=True, stable=True)[:, :k]
        return torch.zeros_like(v, dtype=torch.bool).scatter_(1, idx, True)

    return _out((top(a) & top(b)).sum(1).double() / k)


def _average_ranks(v: Tensor) -> Tensor:
    """1-based ranks of each row of (B, K), ties sharing their average rank."""
    s = v.sort(dim=1).values
    lower = torch.searchsorted(s, v, right=False)   # entries strictly smaller
    upper = torch.searchsorted(s, v, right=True)    # entries smaller or equal
    return (lower + upper + 1).double() / 2


def _check_pair(a, b, name: str) -> tuple[Tensor, Tensor]:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"{name} needs two (B, K) tensors of the same shape, one row per image, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}; use a[None] for a single vector")
    if a.shape[1] == 0:
        raise ValueError(f"{name} needs at least one coefficient per row, got shape {tuple(a.shape)}")
    a, b = a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)
    if not (a.isfinite().all() and b.isfinite().all()):
        raise ValueError(f"{name} needs finite coefficients; got NaN or inf")
    return a, b


# --------------------------------------------------------------------------------------------
# Summary


def summarize(values, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict:
    """Mean of per-image values with a seeded percentile-bootstrap confidence interval.

    NaN values (undefined cases, e.g. an image without boxes) are left out and counted in
    ``n_nan``; ``n`` is the number used. The interval is the ``(1 - ci) / 2`` and ``(1 + ci) / 2``
    percentiles of ``n_boot`` means of resamples with replacement (Efron's percentile bootstrap),
    drawn with ``numpy.random.default_rng(seed)``. All NaN (or empty): mean, low, high are NaN.

        >>> summarize(torch.tensor([2.0, 2.0, float("nan")]))
        {'mean': 2.0, 'low': 2.0, 'high': 2.0, 'n': 2, 'n_nan': 1}
    """
    if isinstance(values, Tensor):
        values = values.detach().cpu()
    v = np.asarray(values, dtype=np.float64).ravel()
    n_boot = _positive_int(n_boot, "n_boot")
    if not (isinstance(ci, (int, float)) and 0 < ci < 1):
        raise ValueError(f"ci must be a confidence level strictly between 0 and 1, got {ci!r} (e.g. 0.95)")
    nan = np.isnan(v)
    x = v[~nan]
    n = int(x.size)
    if n == 0:
        return dict(mean=float("nan"), low=float("nan"), high=float("nan"), n=0, n_nan=int(nan.sum()))
    rng = np.random.default_rng(seed)
    # Resample in blocks so that n_boot x n indices never exceed ~4M entries at once.
    block = max(1, (1 << 22) // n)
    means = np.concatenate([x[rng.integers(0, n, size=(min(block, n_boot - i), n))].mean(1)
                            for i in range(0, n_boot, block)])
    low, high = np.percentile(means, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return dict(mean=float(x.mean()), low=float(low), high=float(high), n=n, n_nan=int(nan.sum()))


# --------------------------------------------------------------------------------------------
# All faithfulness metrics at once, and paired comparisons of two methods

#: Whether a higher value is better, for each metric of :func:`faithfulness` and the pointing game.
HIGHER_IS_BETTER = {"AD": False, "IC": True, "ADD": True, "deletion": False, "insertion": True, "pointing": True}


def faithfulness(model, images: Tensor, maps: Tensor, targets, *, pixels_per_step: int | None = None,
                 substrate: float | Tensor = 0.0, blur_kernel: int = 11, blur_sigma: float = 5.0,
                 batch_size: int | None = DEFAULT_BATCH_SIZE) -> dict:
    """Every faithfulness metric of one set of maps, per image: ``{"AD", "IC", "ADD", "deletion", "insertion"}``.

    The same values as :func:`average_drop`, :func:`increase_in_confidence`,
    :func:`average_drop_in_deletion`, :func:`deletion` and :func:`insertion` with these options,
    with the unperturbed probability ``Y`` computed once for AD, IC and ADD (3 model inputs per image
    instead of 6, in one forward pass). Also returns ``"deletion_curves"`` and ``"insertion_curves"``
    (B, n_steps + 1). ``batch_size`` images per forward pass, for all of them.
    :data:`HIGHER_IS_BETTER` says which direction is better for each key.
    """
    images, maps, targets = _prepare(model, images, maps, targets)
    _check_batch_size(batch_size)
    Y, O, D = [], [], []
    with _inference(model):
        # the image, the map kept and the map removed go through the model in one pass
        for sl in chunks(len(images), None if batch_size is None else max(1, batch_size // 3)):
            x, m, t = images[sl], maps[sl][:, None], targets[sl]                  # (n, 3, H, W), (n, 1, H, W)
            p = _probabilities(model, torch.cat([x, x * m, x * (1 - m)]), t.repeat(3), targets).view(3, -1)
            Y.append(p[0]), O.append(p[1]), D.append(p[2])
    Y, O, D = torch.cat(Y), torch.cat(O), torch.cat(D)
    dele = deletion(model, images, maps, targets, pixels_per_step=pixels_per_step, substrate=substrate,
                    batch_size=batch_size, return_curves=True)
    ins = insertion(model, images, maps, targets, pixels_per_step=pixels_per_step, blur_kernel=blur_kernel,
                    blur_sigma=blur_sigma, batch_size=batch_size, return_curves=True)
    return {"AD": _out(100 * (Y - O).clamp(min=0) / Y), "IC": _out(100 * (Y < O).double()),
            "ADD": _out(100 * (Y - D) / Y), "deletion": dele.auc, "insertion": ins.auc,
            "deletion_curves": dele.curves, "insertion_curves": ins.curves}


def compare(a, b, *, higher_is_better: bool = True, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
            min_n: int = 2) -> dict:
    """Paired comparison of two methods' per-image values: how much better ``a`` is than ``b``.

    The advantage of each image is ``a_i - b_i`` (``b_i - a_i`` when lower is better); images
    where either value is NaN (not computed, undefined) are left out. Returns :func:`summarize`
    of the advantages (``mean``, ``low``, ``high``, ``n``, ``n_nan``) and ``better``: True when
    the whole interval lies above 0 (a is better), False when below 0 (b is better), None when
    it contains 0 or fewer than ``min_n`` images are left (one image gives an interval of zero
    width, which decides nothing). With a handful of images the percentile bootstrap interval is
    too narrow (n = 3 has only 10 distinct resamples): read ``n`` next to the verdict.

        >>> compare([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])["better"]
        True
    """
    a = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if isinstance(b, Tensor) else b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"compare needs two per-image vectors of the same length (one value per image, in the "
                         f"same order), got shapes {a.shape} and {b.shape}; use NaN where a value is missing")
    s = summarize(a - b if higher_is_better else b - a, n_boot=n_boot, ci=ci, seed=seed)
    better = None if s["n"] < min_n else True if s["low"] > 0 else False if s["high"] < 0 else None
    return {**s, "better": better}


# --------------------------------------------------------------------------------------------
# Validation and the model call


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
    if isinstance(targets, bool) or targets is None:
        raise TypeError(f"targets must be a (B,) long tensor or a sequence of ints, got {targets!r}")
    if isinstance(targets, int):
        return torch.full((B,), targets, dtype=torch.long)
    t = torch.as_tensor(targets)
    if t.dim() != 1 or len(t) != B:
        raise ValueError(f"targets must hold one class per image: {B} images, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"targets must be integer class indices, got dtype {t.dtype}; use .long()")
    return t.long()


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


def _probabilities(model, x: Tensor, t: Tensor, all_targets: Tensor) -> Tensor:
    """Softmax probability of class ``t`` (n,) on images ``x`` (n, 3, H, W), float64 on the CPU."""
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
    return logits.double().softmax(1).gather(1, t.view(-1, 1).to(logits.device)).squeeze(1).cpu()


def _out(v: Tensor) -> Tensor:
    return v.detach().to("cpu", torch.float32)
