"""Faithfulness: does the model's confidence follow the explanation? AD, IC, ADD, deletion, insertion.

Each metric is one formula (:func:`_average_drop`, :func:`_increase`, :func:`_drop_in_deletion`
on the probabilities), used by its own function and by :func:`faithfulness`, which runs them all
with one forward pass for the unperturbed images.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import chunks
from .checks import _broadcast, _check_batch_size, _inference, _out, _positive_int, _prepare, _probabilities

#: Perturbed images per forward pass of :func:`deletion` / :func:`insertion` by default.
DEFAULT_BATCH_SIZE = 64


class Curves(NamedTuple):
    """What :func:`deletion` / :func:`insertion` return with ``return_curves=True``."""

    auc: Tensor     # (B,) normalised area under each curve
    curves: Tensor  # (B, n_steps + 1) target probability after 0, p, 2p, ... pixels changed


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
    return _out(_average_drop(Y.exp(), O.exp()))


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
    return _out(_increase(Y.exp(), O.exp()))


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
    return _out(_drop_in_deletion(Y, D))


def _average_drop(Y: Tensor, O: Tensor) -> Tensor:
    """AD's formula: 100 max(0, Y - O) / Y."""
    return 100 * (Y - O).clamp(min=0) / Y


def _increase(Y: Tensor, O: Tensor) -> Tensor:
    """IC's formula: 100 [Y < O]."""
    return 100 * (Y < O).double()


def _drop_in_deletion(log_Y: Tensor, log_D: Tensor) -> Tensor:
    """ADD's formula, 100 (Y - D) / Y = -100 expm1(log D - log Y), from the log-probabilities: finite where Y
    underflows to 0 (a target logit hundreds below the largest). NaN, with a warning, where even the ratio
    D / Y overflows float64 (D / Y > 1e308: the value is below -1e310 %)."""
    add = -100 * torch.expm1(log_D - log_Y)
    bad = ~torch.isfinite(add)
    if bad.any():
        warnings.warn(f"ADD is undefined for image(s) {bad.nonzero().flatten().tolist()[:10]}: the target's probability "
                      f"on the image (log {log_Y[bad][0].item():.4g}) is so far below that on the deleted image "
                      f"(log {log_D[bad][0].item():.4g}) that the ratio overflows; those values are NaN", stacklevel=3)
        add = torch.where(bad, torch.full_like(add, float("nan")), add)
    return add


def _confidences(model, images, maps, targets, batch_size, *, keep: bool) -> tuple[Tensor, Tensor]:
    """(log Y, log P) float64 (B,): log target probability on the images and on ``maps * x`` (keep) or
    ``(1 - maps) * x``."""
    images, maps, targets = _prepare(model, images, maps, targets)
    _check_batch_size(batch_size)
    Y, P = [], []
    with _inference(model):
        for sl in chunks(len(images), batch_size):
            x, m = images[sl], maps[sl][:, None]                     # (n, 3, H, W), (n, 1, H, W)
            Y.append(_probabilities(model, x, targets[sl], targets, log=True))
            P.append(_probabilities(model, x * (m if keep else 1 - m), targets[sl], targets, log=True))
    return torch.cat(Y), torch.cat(P)


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


#: Whether a higher value is better, for each metric of :func:`faithfulness` and the pointing game.
HIGHER_IS_BETTER = {"AD": False, "IC": True, "ADD": True, "deletion": False, "insertion": True, "pointing": True}


def faithfulness(model, images: Tensor, maps: Tensor, targets, *, pixels_per_step: int | None = None,
                 substrate: float | Tensor = 0.0, blur_kernel: int = 11, blur_sigma: float = 5.0,
                 batch_size: int | None = DEFAULT_BATCH_SIZE, curve_images: int | None = None) -> dict:
    """Every faithfulness metric of one set of maps, per image: ``{"AD", "IC", "ADD", "deletion", "insertion"}``.

    The same values as :func:`average_drop`, :func:`increase_in_confidence`,
    :func:`average_drop_in_deletion`, :func:`deletion` and :func:`insertion` with these options,
    with the unperturbed probability ``Y`` computed once for AD, IC and ADD (3 model inputs per image
    instead of 6, in one forward pass). Also returns ``"deletion_curves"`` and ``"insertion_curves"``
    (B, n_steps + 1). ``batch_size`` images per forward pass, for all of them.
    :data:`HIGHER_IS_BETTER` says which direction is better for each key.

    ``curve_images=n`` runs the deletion and insertion curves (one forward pass per step) on the
    first n images only: their AUCs are NaN after that, and the curves are (n, n_steps + 1). AD,
    IC and ADD (three inputs per image) always cover every image.
    """
    images, maps, targets = _prepare(model, images, maps, targets)
    _check_batch_size(batch_size)
    n = len(images) if curve_images is None else min(len(images), _positive_int(curve_images, "curve_images")
                                                     if curve_images else 0)
    Y, O, D = [], [], []
    with _inference(model):
        # the image, the map kept and the map removed go through the model in one pass
        for sl in chunks(len(images), None if batch_size is None else max(1, batch_size // 3)):
            x, m, t = images[sl], maps[sl][:, None], targets[sl]                  # (n, 3, H, W), (n, 1, H, W)
            p = _probabilities(model, torch.cat([x, x * m, x * (1 - m)]), t.repeat(3), targets, log=True).view(3, -1)
            Y.append(p[0]), O.append(p[1]), D.append(p[2])
    Y, O, D = torch.cat(Y), torch.cat(O), torch.cat(D)
    out = {"AD": _out(_average_drop(Y.exp(), O.exp())), "IC": _out(_increase(Y.exp(), O.exp())),
           "ADD": _out(_drop_in_deletion(Y, D))}
    H, W = images.shape[-2:]
    p = W if pixels_per_step is None else pixels_per_step
    for name, curve in [("deletion", lambda sl: deletion(model, images[sl], maps[sl], targets[sl], pixels_per_step=p,
                                                         substrate=substrate, batch_size=batch_size, return_curves=True)),
                        ("insertion", lambda sl: insertion(model, images[sl], maps[sl], targets[sl], pixels_per_step=p,
                                                           blur_kernel=blur_kernel, blur_sigma=blur_sigma,
                                                           batch_size=batch_size, return_curves=True))]:
        auc = torch.full((len(images),), torch.nan)
        curves = torch.empty(0, math.ceil(H * W / _positive_int(p, "pixels_per_step")) + 1, dtype=torch.float64)
        if n:
            got = curve(slice(0, n))
            auc[:n], curves = got.auc, got.curves
        out[name], out[f"{name}_curves"] = auc, curves
    return out


def step_sensitivity(model, images: Tensor, maps: dict, targets, *, fine: int, coarse: int,
                     batch_size: int | None = DEFAULT_BATCH_SIZE, blur_kernel: int = 11, blur_sigma: float = 5.0):
    """Do deletion and insertion rank methods the same at ``coarse`` pixels per step as at ``fine``?

    ``maps``: ``{method: (B, H, W)}`` on the same images. The curves run once, at ``fine`` pixels
    per step; ``coarse`` must be a multiple of it, so the coarse curve is every
    ``coarse // fine``-th point of the fine one (the same pixels are changed by then) and its AUC
    is the trapezoid over those points, exactly what a run at ``coarse`` would give (the last
    point is the fully changed image in both). Returns a DataFrame, one row per (curve, method,
    image): ``auc fine``, ``auc coarse``.
    """
    import pandas as pd

    if coarse % fine:
        raise ValueError(f"coarse = {coarse} pixels per step must be a multiple of fine = {fine}, so that the coarse "
                         "curve is a subsample of the fine one")
    rows = []
    for m, mp in maps.items():
        for name, fn, extra in [("deletion", deletion, {}),
                                ("insertion", insertion, {"blur_kernel": blur_kernel, "blur_sigma": blur_sigma})]:
            got = fn(model, images, mp, targets, pixels_per_step=fine, batch_size=batch_size, return_curves=True, **extra)
            c = got.curves.double()
            n_pix = images.shape[-2] * images.shape[-1]
            idx = list(range(0, c.shape[1], coarse // fine))
            if idx[-1] != c.shape[1] - 1:
                idx.append(c.shape[1] - 1)
            sub = c[:, idx]
            n_steps = math.ceil(n_pix / coarse)
            coarse_auc = (sub.sum(1) - (sub[:, 0] + sub[:, -1]) / 2) / n_steps
            for i in range(len(c)):
                rows.append({"curve": name, "method": m, "image": i, "auc fine": float(got.auc[i]),
                             "auc coarse": float(coarse_auc[i])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# ROAD: remove and debias (Rong et al., ICML 2022), with noisy linear imputation

#: ROAD's noisy linear imputation: each removed pixel is the weighted mean of its 8 neighbours, edges 1/6 and
#: diagonals 1/12 ((row, column) offset, weight), as in the authors' code and pytorch-grad-cam's ``road.py``
ROAD_NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
                   ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))
#: pytorch-grad-cam's default percentiles of the ROAD averages
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def noisy_linear_imputation(image: Tensor, keep: Tensor, *, noise: float = 0.01,
                            generator: torch.Generator | None = None) -> Tensor:
    """ROAD's imputation (Rong et al., ICML 2022, section 4): refill the pixels where ``keep`` is false.

    The removed pixels solve one sparse linear system per image: each equals the weighted mean of its
    in-image neighbours (:data:`ROAD_NEIGHBOURS`; removed neighbours are unknowns too), so that the
    refilled region is smooth and carries no trace of the mask's shape; then ``noise`` times standard
    normal noise (absolute, drawn from ``generator``: shape (C, n removed)) is added to them. ``image``
    (C, H, W), ``keep`` (H, W) bool; returns (C, H, W) float32 on the CPU. The same system, noise draws
    and result as pytorch-grad-cam's ``NoisyLinearImputer`` (tests/test_road.py), set up without
    Python loops over pixels.
    """
    import numpy as np
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    img = image.detach().cpu().double()
    C, H, W = img.shape
    flat, known = img.reshape(C, -1).numpy(), keep.detach().cpu().reshape(-1).numpy().astype(bool)
    missing = np.flatnonzero(~known)                                               # (n,) flat indices
    out = img.reshape(C, -1).clone().float()
    if len(missing) == 0:
        return out.reshape(C, H, W)
    if not known.any():                  # nothing to interpolate from: the (singular) system's solution is zero
        out[:] = noise * torch.randn((C, H * W), generator=generator)
        return out.reshape(C, H, W)
    var = np.zeros(H * W, dtype=np.int64)
    var[missing] = np.arange(len(missing))                                         # flat index -> unknown
    row, col = missing // W, missing % W
    b = np.zeros((len(missing), C))
    weights = np.ones(len(missing))                                               # sum of in-image weights
    rows, cols, vals = [np.arange(len(missing))], [np.arange(len(missing))], []
    for (dr, dc), w in ROAD_NEIGHBOURS:
        inside = (row + dr >= 0) & (row + dr < H) & (col + dc >= 0) & (col + dc < W)
        weights[~inside] -= w
        i = np.flatnonzero(inside)
        nb = missing[i] + dr * W + dc
        has = known[nb]
        b[i[has]] -= w * flat[:, nb[has]].T                                       # known neighbours: right-hand side
        rows.append(i[~has]), cols.append(var[nb[~has]]), vals.append(np.full((~has).sum(), w))
    vals.insert(0, -weights)                                                       # the diagonal
    A = csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(len(missing),) * 2)
    # A is symmetric and diagonally dominant: LU without pivoting, in a fill-reducing order of A + A^T (1.5-2x faster
    # than spsolve's defaults, the same solution to rounding)
    lu = splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    res = torch.as_tensor(lu.solve(b).reshape(len(missing), C), dtype=torch.float32).t()             # (C, n)
    out[:, missing] = res + noise * torch.randn(res.shape, generator=generator)
    return out.reshape(C, H, W)


def _road_keep(m: Tensor, percentile: float, order: str) -> Tensor:
    """The pixels ROAD keeps at one percentile (H, W) bool: MoRF removes the map's values at or above its
    ``percentile``-th percentile, LeRF those of ``1 - map`` (pytorch-grad-cam's thresholds, ties removed)."""
    import numpy as np

    v = m.detach().cpu().float()
    v = v if order == "morf" else 1 - v
    return v < float(np.percentile(v.numpy(), percentile))


def road(model, images: Tensor, maps: Tensor, targets, *, percentiles=ROAD_PERCENTILES, noise: float = 0.01,
         seed: int = 0, batch_size: int | None = DEFAULT_BATCH_SIZE, progress: bool | None = None) -> dict:
    """ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022).

    Remove pixels by the map and refill them with :func:`noisy_linear_imputation` (no shape of the
    mask leaks into the image, so no retraining is needed), then read the target's softmax
    probability, at each of ``percentiles``:

    - MoRF (most relevant first): remove the pixels whose map is at or above its p-th percentile
      (the top ``100 - p`` percent); a faithful map makes the probability fall: lower is better;
    - LeRF (least relevant first): remove the bottom ``100 - p`` percent; the probability should
      stay: higher is better.

    Per image, as pytorch-grad-cam's ``ROADMostRelevantFirstAverage`` / ``ROADLeastRelevantFirstAverage`` /
    ``ROADCombined`` with ``ClassifierOutputSoftmaxTarget`` (tests/test_road.py): ``"ROAD MoRF"`` and
    ``"ROAD LeRF"``, the mean over percentiles of (probability after - probability before), and
    ``"ROAD"`` = (LeRF - MoRF) / 2 (higher is better); ``"morf_curves"``, ``"lerf_curves"`` (B, P)
    per percentile. The noise (``noise``, absolute, in pixel space here, where the model's input
    is) comes from a generator seeded with ``seed`` for each order, drawn percentile by percentile
    and image by image, so a run is deterministic. Cost: 2 P sparse solves and 2 P + 1 forward
    passes per image (``batch_size`` images per pass).
    """
    from tqdm.auto import tqdm

    images, maps, targets = _prepare(model, images, maps, targets)
    _check_batch_size(batch_size)
    percentiles = [float(p) for p in percentiles]
    if not percentiles or not all(0 < p < 100 for p in percentiles):
        raise ValueError(f"percentiles must be a non-empty list of numbers in (0, 100), got {percentiles!r}")
    B, P = len(images), len(percentiles)
    out = {}
    with _inference(model):
        Y = torch.cat([_probabilities(model, images[sl], targets[sl], targets) for sl in chunks(B, batch_size)])
        bar = tqdm(total=2 * P * B, desc="ROAD imputations", unit="image", disable=not (B * P > 40 if progress is None
                                                                                        else progress), leave=False)
        for order in ("morf", "lerf"):
            g = torch.Generator().manual_seed(int(seed))
            filled = torch.empty(P * B, *images.shape[1:], dtype=images.dtype, device=images.device)
            for j, p in enumerate(percentiles):                      # the reference's order of noise draws
                for i in range(B):
                    filled[j * B + i] = noisy_linear_imputation(images[i], _road_keep(maps[i], p, order), noise=noise,
                                                                generator=g).to(filled)
                    bar.update()
            t = targets.repeat(P)
            prob = torch.cat([_probabilities(model, filled[sl], t[sl], targets) for sl in chunks(P * B, batch_size)])
            out[f"{order}_curves"] = _out((prob.view(P, B) - Y).t())               # (B, P)
        bar.close()
    out["ROAD MoRF"], out["ROAD LeRF"] = out["morf_curves"].mean(1), out["lerf_curves"].mean(1)
    out["ROAD"] = (out["ROAD LeRF"] - out["ROAD MoRF"]) / 2
    return {k: out[k] for k in ("ROAD MoRF", "ROAD LeRF", "ROAD", "morf_curves", "lerf_curves")}


HIGHER_IS_BETTER.update({"ROAD MoRF": False, "ROAD LeRF": True, "ROAD": True})
