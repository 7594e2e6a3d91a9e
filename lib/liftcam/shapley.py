"""SHAP-CAM: Shapley values of the activation maps, the paper's ground-truth coefficients.

The game is ``v(S) = F^c(A_S)``: the target logit of the head on the maps in S, the others
zeroed (docs/paper.md, sections 1-2). Three ways to get its Shapley values ``phi`` (B, K):

- ``liftcam.explain(s, x, method="shap-cam", nsamples=..., seed=0)``: the shap library's
  KernelSHAP over K binary features per image (background: all maps absent; instance: all
  present), ``l1_reg`` off, seeded; the caller's numpy RNG is left as it was.
- :func:`exact_shapley`: all 2^K coalitions, for K <= 20 (tests, tiny heads); :func:`coalition_values`
  evaluates the game itself.
- :func:`ground_truth`: KernelSHAP per image, cached on disk (one file per image), resumable.

Every result satisfies local accuracy: ``sum_k phi_k = F^c(A) - F^c(0)`` (``phi_0 = F^c(0)``).

    >>> e = liftcam.explain(s, x, method="shap-cam", nsamples=4096, seed=0)
    >>> e.coefficients.sum(1) + e.extras["phi0"]    # == the explained logits
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import cache
from .core import Batch, Explanation, cam_maps, check_images, chunks, evaluating, forward, numpy_seed, register, resolve_targets
from .models import SplitModel

__all__ = ["shap_cam", "exact_shapley", "coalition_values", "ground_truth", "default_nsamples", "cache_folder",
           "VERSION", "MAX_EXACT_MAPS", "LocalAccuracyError"]

#: Bumped whenever a change alters the SHAP values computed here; part of every cache key.
VERSION = 2
#: exact_shapley enumerates 2^K coalitions: 2^20 ~ 1e6 head evaluations per image at most.
MAX_EXACT_MAPS = 20
#: Rows of masked maps per head call (KernelSHAP); 256 VGG16 rows (512 x 14 x 14) are ~100 MB.
DEFAULT_BATCH_SIZE = 256


def default_nsamples(K: int) -> int:
    """shap's own "auto" budget, ``2 K + 2048`` model evaluations per image, stated explicitly.

    Explicit so that it is recorded (``extras["nsamples"]``, cache keys) and does not change
    with shap's defaults. Ground truth for K in the hundreds needs more: pick it with a
    convergence study. For K <= 11 it exceeds 2^K - 2 and shap enumerates every coalition.
    """
    return 2 * K + 2048


# --------------------------------------------------------------------------------------------
# KernelSHAP on one image

@contextlib.contextmanager
def _quiet_shap():
    """Hide shap's per-sample info/debug logging (a notebook at INFO level would print per image)."""
    log = logging.getLogger("shap")
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def _masked_scores(head: Callable, a: Tensor, target: int, batch_size: int | None) -> Callable:
    """The KernelSHAP model ``z (n, K) in {0, 1} -> F^c(z * A) (n,)`` for one image's maps (K, h, w)."""
    def f(z: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(np.asarray(z), dtype=a.dtype, device=a.device)      # (n, K)
        out = np.empty(z.shape[0], dtype=np.float64)
        with torch.no_grad():
            for sl in chunks(z.shape[0], batch_size):
                logits = head(z[sl, :, None, None] * a[None])                     # (n', C)
                out[sl] = logits[:, target].cpu().double().numpy()
        return out
    return f


def _kernel_shap(head: Callable, a: Tensor, target: int, *, nsamples: int, seed: int,
                 batch_size: int | None) -> tuple[np.ndarray, float, float]:
    """KernelSHAP values of one image's maps a (K, h, w): (phi (K,), F^c(0), F^c(A)) in float64."""
    import shap

    K = a.shape[0]
    f = _masked_scores(head, a, int(target), batch_size)
    with numpy_seed(seed), _quiet_shap():
        explainer = shap.KernelExplainer(f, np.zeros((1, K)))
        phi = explainer.shap_values(np.ones(K), nsamples=int(nsamples), l1_reg=False, silent=True)
    return np.asarray(phi, dtype=np.float64).reshape(K), float(explainer.fnull[0]), float(explainer.fx[0])


class LocalAccuracyError(RuntimeError):
    """Shapley values whose sum misses ``F^c(A) - F^c(0)``: a wrong target, mask, or a head that is
    not deterministic (dropout, batch statistics), or a cached result made for another model."""


def _check_efficiency(phi: np.ndarray, phi0: float, full: float, where: str) -> None:
    """Local accuracy ``sum phi = F^c(A) - F^c(0)``; ``full`` is the logit from the forward pass.

    The tolerance covers float32 heads run at other batch sizes (and TF32 convolutions on GPU);
    it catches a wrong target, a wrong mask or a head that depends on the batch.
    """
    total, want = float(np.sum(phi)), full - phi0
    tol = 1e-3 * max(1.0, abs(full), abs(phi0))
    if not abs(total - want) <= tol:
        raise LocalAccuracyError(f"SHAP local accuracy fails for {where}: sum(phi) = {total:.6g} but "
                             f"F_c(A) - F_c(0) = {full:.6g} - {phi0:.6g} = {want:.6g} (tolerance {tol:.2g}). "
                             "Is the head deterministic and in eval mode (dropout, batch statistics)?")


def _resolve_nsamples(nsamples, K: int) -> int:
    if nsamples is None or nsamples == "auto":
        return default_nsamples(K)
    if isinstance(nsamples, bool) or not isinstance(nsamples, (int, np.integer)) or nsamples < 1:
        raise ValueError(f"nsamples must be a positive int (model evaluations per image) or None, got {nsamples!r}")
    return int(nsamples)


# SHAP-CAM is the ground truth, not a CAM to compare: it lives here with exact_shapley and its cache.
@register("shap-cam", label="SHAP-CAM", colour="#000000", cost="sampling", random=True, rank=3)
def shap_cam(batch: Batch, *, nsamples: int | None = None, seed: int = 0,
             batch_size: int | None = DEFAULT_BATCH_SIZE, progress: bool | None = None):
    """SHAP-CAM: alpha_k = phi_k, the KernelSHAP value of map k in ``v(S) = F^c(A_S)``.

    Lundberg & Lee (2017) KernelSHAP via ``shap.KernelExplainer``, used as ground truth by
    Jung & Oh (ICCV 2021, Sec. 3): one binary feature per map, background "all maps zero",
    ``l1_reg=False``. ``nsamples``: model evaluations per image (default
    :func:`default_nsamples`, ``2K + 2048``); once it reaches 2^K - 2 every coalition is
    enumerated and phi is exact. Each image uses numpy seed ``seed`` (so an image's values do
    not depend on its batch); the caller's numpy RNG state is restored. ``batch_size``: masked
    rows per head call. ``progress``: a bar over images (default: when more than one).

        >>> e = liftcam.explain(s, x, method="shap-cam", nsamples=4096, seed=0)
        >>> e.extras["phi0"]                         # (B,) F^c(0)
    """
    A, t = batch.activations, batch.targets                          # (B, K, h, w), (B,)
    B, K = A.shape[:2]
    n = _resolve_nsamples(nsamples, K)
    full = batch.scores(batch.logits).cpu().double().numpy()         # (B,) F^c(A)
    phi, phi0 = np.zeros((B, K)), np.zeros(B)
    bar = tqdm(range(B), desc="SHAP-CAM", unit="image", disable=not (B > 1 if progress is None else progress))
    for i in bar:
        phi[i], phi0[i], _ = _kernel_shap(batch.head, A[i], int(t[i]), nsamples=n, seed=seed, batch_size=batch_size)
        _check_efficiency(phi[i], phi0[i], full[i], f"image {i} (target {int(t[i])})")
    alpha = torch.as_tensor(phi, dtype=A.dtype, device=A.device)
    return alpha, {"phi0": torch.as_tensor(phi0, dtype=A.dtype, device=A.device), "nsamples": n, "seed": seed}


# --------------------------------------------------------------------------------------------
# Exact Shapley values by enumeration

def exact_shapley(head: Callable, A: Tensor, targets, *, batch_size: int | None = 4096) -> tuple[Tensor, Tensor]:
    """Exact Shapley values of the K maps in ``v(S) = F^c(A_S)`` from all 2^K coalitions.

    ``phi_k = sum_{S not containing k} |S|! (K - |S| - 1)! / K! * (v(S + k) - v(S))``.
    ``head``: any callable (N, K, h, w) -> (N, C) (an ``nn.Module`` is run in eval mode, its
    flags restored); ``A`` (B, K, h, w), cast to the head's dtype; ``targets`` as for
    :func:`liftcam.explain` (None: the predicted classes; an int; one per image). The head runs on
    A's device, ``batch_size`` coalitions per call; the sums are taken in float64. Returns
    ``(phi (B, K), phi0 (B,))`` in A's dtype and device, ``phi0 = v(empty) = F^c(0)``.
    For K > 20 use ``method="shap-cam"``.

        >>> phi, phi0 = exact_shapley(s.head, s.body(x), targets=[3])
    """
    _head_input(head, A)
    B, K = A.shape[:2]
    if K > MAX_EXACT_MAPS:
        raise ValueError(f"exact_shapley evaluates all 2^K coalitions; K = {K} maps would need 2^{K} head "
                         f"evaluations per image (at most K = {MAX_EXACT_MAPS} here). Estimate the values "
                         "with KernelSHAP instead: liftcam.explain(..., method='shap-cam', nsamples=...)")
    A, dtype = _head_input(head, A)
    with _eval(head), torch.no_grad():
        t = resolve_targets(targets, head(A))                         # None: the predicted classes
    n = 1 << K
    codes = torch.arange(n, device=A.device)                         # coalition S as a bit mask
    bits = 1 << torch.arange(K, device=A.device)
    v = torch.empty(B, n, dtype=torch.float64, device=A.device)      # v(S) per image
    with _eval(head), torch.no_grad():
        for b in range(B):
            for sl in chunks(n, batch_size):
                z = (codes[sl, None] & bits).ne(0).to(A.dtype)       # (n', K)
                v[b, sl] = head(z[:, :, None, None] * A[b][None])[:, t[b]].double()
    v = v.cpu()                                                      # one copy, for the sums below

    # phi_k = sum_S v(S) c_k(S): c_k = w(|S| - 1) if k in S, -w(|S|) if not, w(s) = s!(K-s-1)!/K!
    w = torch.tensor([math.factorial(s) * math.factorial(K - s - 1) / math.factorial(K) for s in range(K)],
                     dtype=torch.float64)
    codes, bits = codes.cpu(), bits.cpu()
    size = torch.zeros(n, dtype=torch.long)                          # |S|
    for k in range(K):
        size += (codes >> k) & 1
    w_in = w[(size - 1).clamp(min=0)]                                # weight when k in S (|S| >= 1)
    w_out = -w[size.clamp(max=K - 1)]                                # weight when k not in S (|S| <= K-1)
    phi = torch.empty(B, K, dtype=torch.float64)
    for k in range(K):
        inside = (codes & (1 << k)).ne(0)
        phi[:, k] = v @ torch.where(inside, w_in, w_out)
    return phi.to(A.device, dtype), v[:, 0].to(A.device, dtype)


def _eval(head):
    """Eval mode for an ``nn.Module`` head (flags restored); nothing for another callable."""
    return evaluating(head) if isinstance(head, nn.Module) else contextlib.nullcontext()


def _head_input(head, A: Tensor) -> tuple[Tensor, torch.dtype]:
    """(A detached and cast to the head's parameter dtype, A's own dtype for the results)."""
    if not isinstance(A, Tensor) or not A.is_floating_point() or A.dim() != 4:
        raise ValueError(f"A must be float activation maps (B, K, h, w), got "
                         f"{tuple(A.shape) if isinstance(A, Tensor) else type(A).__name__}")
    params = [p for p in head.parameters() if p.is_floating_point()] if isinstance(head, nn.Module) else []
    return (A.detach().to(params[0].dtype) if params else A.detach()), A.dtype


def coalition_values(head: Callable, A: Tensor, targets, z, *,
                     batch_size: int | None = DEFAULT_BATCH_SIZE) -> Tensor:
    """The game itself: ``v(z) = F^c(z * A)`` for coalitions ``z`` (n, K) in {0, 1}, per image: (B, n).

    Row ``z`` keeps map k where ``z_k = 1`` and zeroes it (the reference) where ``z_k = 0``:
    ``v(1) = F^c(A)``, ``v(0) = F^c(0) = phi_0``. What the additive explanation model
    ``g(z) = phi_0 + sum_k phi_k z_k`` approximates (exactly when the head is linear).
    ``head``: any callable (N, K, h, w) -> (N, C), an ``nn.Module`` is run in eval mode;
    ``A`` (B, K, h, w); ``targets`` (B,) ints (or one int). Values in A's dtype and device.

        >>> v = coalition_values(s.head, A, targets, torch.ones(1, A.shape[1]))   # (B, 1) == logits
    """
    _head_input(head, A)
    B, K = A.shape[:2]
    z = torch.as_tensor(z)
    if z.dim() != 2 or z.shape[1] != K:
        raise ValueError(f"z must hold coalitions (n, K = {K}) of 0s and 1s, got shape {tuple(z.shape)}")
    A, dtype = _head_input(head, A)
    with _eval(head):
        with torch.no_grad():
            t = resolve_targets(targets, head(A))
        rows = [_masked_scores(head, A[b], int(t[b]), batch_size)(z.cpu().numpy()) for b in range(B)]
    return torch.as_tensor(np.stack(rows), dtype=dtype, device=A.device)                     # (B, n)


# --------------------------------------------------------------------------------------------
# Ground truth cached on disk

def cache_folder(path: str | os.PathLike | None = None) -> Path:
    """Where :func:`ground_truth` keeps its files: ``path``, else ``$LIFTCAM_CACHE/shap``, else
    ``<repo>/data/cache/shap`` (git-ignored)."""
    return Path(path) if path is not None else cache.folder("shap")


#: kept for callers of the old names; the digests live in :mod:`liftcam.cache`
model_digest, image_digest = cache.model_digest, cache.image_digest


def ground_truth(model: SplitModel, images: Tensor, targets=None, *, nsamples: int, seed: int = 0,
                 batch_size: int | None = DEFAULT_BATCH_SIZE, cache_dir: str | os.PathLike | None = None,
                 key: str | None = None, progress: bool = True) -> Explanation:
    """SHAP-CAM of each image as by ``explain(..., method="shap-cam")``, cached one file per image.

    An image's result is identified by: ``key`` (default: the model's name and a sha256 of its
    weights), the layer, a sha256 of the image (bytes of the float32 CPU tensor and its shape),
    the target class, ``nsamples`` (None: :func:`default_nsamples`), ``seed``, :data:`VERSION`
    and the shap version. The file is ``<sha256 of that key>.npz`` (arrays ``phi`` (K,),
    ``phi0``, ``full``, ``target``, ``key``) in :func:`cache_folder` (``cache_dir``, else
    ``$LIFTCAM_CACHE/shap``, else ``<repo>/data/cache/shap``). Files are written atomically
    (temp file, fsync, rename), so an interrupted run resumes at the first missing image and
    never reads a partial file; a cached result is checked for local accuracy against the
    model's logit. Each image runs the body once (for its target and map), cached or not.
    Returns an :class:`~liftcam.core.Explanation` with ``extras`` ``phi0`` (B,), ``nsamples``,
    ``seed``, ``cached`` (B,) bool and ``files``.

        >>> gt = ground_truth(s, x, nsamples=8192, seed=0)   # again: read from disk
        >>> gt.coefficients                                   # (B, K)
    """
    if not isinstance(model, SplitModel):
        raise TypeError("ground_truth needs a liftcam SplitModel (liftcam.models.split / load), "
                        f"got {type(model).__name__}")
    images = check_images(images)
    B = images.shape[0]
    per = [None] * B if targets is None else resolve_targets(targets, n=B, num_classes=model.num_classes).tolist()
    folder = cache_folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cache.clean_stale(folder)
    import shap

    ident = {"version": VERSION, "shap": shap.__version__, "layer": model.layer,
             "model": key if key is not None else f"{model.name}:{cache.model_digest(model)}"}
    device = model.device
    phis, phi0s, ts, logit_rows, maps, raws, cached, files = [], [], [], [], [], [], [], []
    with evaluating(model):
        bar = tqdm(range(B), desc="SHAP ground truth", unit="image", disable=not progress)
        for i in bar:
            A, logits = forward(model, images[i:i + 1])              # (1, K, h, w), (1, C)
            t = resolve_targets(per[i], logits)                      # (1,)
            target, K = int(t[0]), A.shape[1]
            n = _resolve_nsamples(nsamples, K)
            full = float(logits[0, target])
            k = cache.key_string({**ident, "image": cache.image_digest(images[i]), "target": target,
                                  "nsamples": n, "seed": int(seed)})
            path = cache.path_for(folder, k)
            got = cache.read(path, k, phi=(K,), phi0=())
            if got is None:
                phi, phi0, _ = _kernel_shap(model.head, A[0], target, nsamples=n, seed=seed, batch_size=batch_size)
                _check_efficiency(phi, phi0, full, f"image {i} (target {target})")
                cache.write(path, k, phi=phi, phi0=np.float64(phi0), full=np.float64(full), target=np.int64(target))
            else:
                phi, phi0 = got["phi"], float(got["phi0"])
                try:  # a key given by hand may hide changed weights
                    _check_efficiency(phi, phi0, full, f"image {i} (target {target})")
                except LocalAccuracyError as e:
                    raise LocalAccuracyError(f"{e}\nThe cached result {path} does not fit this model: delete it, "
                                             "or pass another key= if the weights changed") from None
            alpha = torch.as_tensor(phi, dtype=A.dtype, device=device)[None]   # (1, K)
            m, r = cam_maps(A, alpha, images.shape[-2:])             # keep maps, not the (K, h, w) A
            phis.append(alpha[0]), phi0s.append(phi0), ts.append(t[0]), logit_rows.append(logits[0])
            maps.append(m[0]), raws.append(r[0]), cached.append(got is not None), files.append(path)
            bar.set_postfix(cached=sum(cached))
    extras = {"phi0": torch.tensor(phi0s, dtype=phis[0].dtype, device=device), "nsamples": n, "seed": int(seed),
              "cached": torch.tensor(cached), "files": files}
    return Explanation(torch.stack(maps), torch.stack(raws), torch.stack(phis), torch.stack(ts),
                       torch.stack(logit_rows), "shap-cam", extras)
