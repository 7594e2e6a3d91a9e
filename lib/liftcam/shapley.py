"""SHAP-CAM: Shapley values of the activation maps, the paper's ground-truth coefficients.

The game is ``v(S) = F^c(A_S)``: the target logit of the head on the maps in S, the others
zeroed (docs/paper.md, sections 1-2). Three ways to get its Shapley values ``phi`` (B, K):

- ``liftcam.explain(s, x, method="shap-cam", nsamples=..., seed=0)``: the shap library's
  KernelSHAP over K binary features per image (background: all maps absent; instance: all
  present), ``l1_reg`` off, seeded; the caller's numpy RNG is left as it was.
- :func:`exact_shapley`: all 2^K coalitions, for K <= 20 (tests, tiny heads); :func:`coalition_values`
  evaluates the game itself.
- :func:`ground_truth`: KernelSHAP per image, cached on disk (one file per image), resumable;
  :func:`ground_truth_seeds`: its mean over several seeds, with an error estimate per image.
- :func:`exact_ground_truth`: :func:`exact_shapley` of a SplitModel's images (K <= 20), cached
  on disk like :func:`ground_truth` (the controlled benchmark at K = 16).
- :func:`closed_form_shapley`: exact values when the head is additive in the maps (global average
  pooling then a linear layer: ``phi_k = w_ck mean(A_k)``), checked before they are returned.

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

__all__ = ["shap_cam", "exact_shapley", "coalition_values", "ground_truth", "ground_truth_seeds",
           "closed_form_shapley", "exact_ground_truth", "default_nsamples", "cache_folder", "VERSION",
           "MAX_EXACT_MAPS", "EXACT_ESTIMATORS", "LocalAccuracyError", "NotAdditiveError"]

#: Bumped whenever a change alters the SHAP values computed here; part of every cache key.
VERSION = 2
#: exact_shapley enumerates 2^K coalitions: 2^20 ~ 1e6 head evaluations per image at most.
MAX_EXACT_MAPS = 20
#: Ground-truth estimators whose values are exact (no sampling error): the closed form of an additive
#: head (:func:`closed_form_shapley`) and the enumeration of all 2^K coalitions (:func:`exact_ground_truth`).
EXACT_ESTIMATORS = ("closed-form", "exact")
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
    member = (codes[:, None] & (1 << torch.arange(K, device=A.device))).ne(0)    # (n, K): k in S
    v = torch.empty(B, n, dtype=torch.float64, device=A.device)      # v(S) per image
    factored = _factor_head(head)
    with _eval(head), torch.no_grad():
        for b in range(B):
            fast = factored(A[b]) if factored is not None else None
            if fast is not None and not _factored_agrees(head, fast, A[b], int(t[b]), K):
                fast = None                                          # never trusted unchecked
            for sl in chunks(n, batch_size):
                z = member[sl].to(A.dtype)                           # (n', K)
                v[b, sl] = (fast(z) if fast is not None else head(z[:, :, None, None] * A[b][None]))[:, t[b]].double()
    v = v.cpu()                                                      # one copy, for the sums below

    # phi_k = sum_S v(S) c_k(S): c_k = w(|S| - 1) if k in S, -w(|S|) if not, w(s) = s!(K-s-1)!/K!
    w = torch.tensor([math.factorial(s) * math.factorial(K - s - 1) / math.factorial(K) for s in range(K)],
                     dtype=torch.float64)
    member = member.cpu()
    size = member.sum(1)                                             # |S|
    w_in = w[(size - 1).clamp(min=0)]                                # weight when k in S (|S| >= 1)
    w_out = -w[size.clamp(max=K - 1)]                                # weight when k not in S (|S| <= K-1)
    phi = v @ torch.where(member, w_in[:, None], w_out[:, None])     # (B, K)
    return phi.to(A.device, dtype), v[:, 0].to(A.device, dtype)


#: Modules that act on each map separately and keep a zero map zero (in eval mode): masking maps commutes with them.
_CHANNELWISE = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.ReLU, nn.ReLU6,
                nn.Identity, nn.Dropout, nn.Dropout2d)


def _factor_head(head):
    """For a head ``tail(W flatten(pre(A)) + b)`` whose ``pre`` is a chain of :data:`_CHANNELWISE` modules
    (a traced :class:`torch.fx.GraphModule`, as :func:`liftcam.models.split` makes): a function
    ``a (K, h, w) -> (z (n, K) -> head(z * a))`` that evaluates coalitions without running ``pre`` and the
    first linear layer on every masked copy: ``W flatten(pre(z * a)) = sum_k z_k W_k flatten(pre(a))_k``, as
    ``pre`` maps a zero map to zero, one map at a time. None when the head has another form."""
    import torch.fx as fx

    if not isinstance(head, fx.GraphModule):
        return None
    nodes = list(head.graph.nodes)
    if not nodes or nodes[0].op != "placeholder" or sum(n.op == "placeholder" for n in nodes) != 1:
        return None
    cur, prefix, flat, linear = nodes[0], [], False, None
    for node in nodes[1:]:
        if len(cur.users) != 1 or node.all_input_nodes != [cur] or not node.args or node.args[0] is not cur:
            return None
        mod = head.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(mod, nn.Linear) and flat and len(node.args) == 1 and not node.kwargs:
            linear = node
            break
        if isinstance(mod, _CHANNELWISE) and not flat and len(node.args) == 1 and not node.kwargs:
            prefix.append(mod)
        elif (not flat and node.op == "call_function" and node.target is torch.flatten and tuple(node.args[1:]) == (1,)
              and not node.kwargs) or (not flat and isinstance(mod, nn.Flatten) and mod.start_dim == 1
                                       and mod.end_dim == -1):
            flat = True
            prefix.append(lambda x: torch.flatten(x, 1))
        else:
            return None
        cur = node
    if linear is None:
        return None
    graph, env = fx.Graph(), {}
    env[linear] = graph.placeholder("pre")
    try:
        for node in nodes[nodes.index(linear) + 1:]:
            if node.op == "output":
                graph.output(fx.node.map_arg(node.args[0], lambda m: env[m]))
                break
            env[node] = graph.node_copy(node, lambda m: env[m])
    except KeyError:                                                 # the tail reads a tensor from before
        return None
    tail = fx.GraphModule(head, graph)
    fc = head.get_submodule(linear.target)

    def factored(a: Tensor):
        x = a[None]
        for f in prefix:
            x = f(x)                                                 # (1, K * m), map k in block k
        K = a.shape[0]
        if x.dim() != 2 or x.shape[1] != fc.in_features or x.shape[1] % K:
            return None
        per_map = (fc.weight.view(fc.out_features, K, -1) * x.view(1, K, -1)).sum(-1).T   # (K, out)
        bias = fc.bias if fc.bias is not None else torch.zeros(fc.out_features, dtype=x.dtype, device=x.device)
        return lambda z: tail(torch.addmm(bias, z.to(per_map.dtype), per_map))

    return factored


def _factored_agrees(head, fast, a: Tensor, target: int, K: int) -> bool:
    """``fast`` equals the head on the empty, full and 6 seeded random coalitions (1e-4 of the scale + 1e-5)."""
    gen = torch.Generator().manual_seed(K)
    z = torch.cat([torch.zeros(1, K), torch.ones(1, K), (torch.rand(6, K, generator=gen) < 0.5).float()])
    z = z.to(a.device, a.dtype)
    want = head(z[:, :, None, None] * a[None])[:, target].double()
    got = fast(z)[:, target].double()
    return bool((got - want).abs().max() <= 1e-4 * want.abs().max() + 1e-5)


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
    ``seed``, ``cached`` (B,) bool, ``files`` and ``estimator`` (``"kernel"``).

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
              "cached": torch.tensor(cached), "files": files, "estimator": "kernel"}
    return Explanation(torch.stack(maps), torch.stack(raws), torch.stack(phis), torch.stack(ts),
                       torch.stack(logit_rows), "shap-cam", extras)


def exact_ground_truth(model: SplitModel, images: Tensor, targets=None, *, batch_size: int | None = 4096,
                       cache_dir: str | os.PathLike | None = None, key: str | None = None,
                       progress: bool = True) -> Explanation:
    """Exact SHAP-CAM of each image by :func:`exact_shapley` (all 2^K coalitions), cached one file per image.

    The ground truth without sampling error for any head, when K <= :data:`MAX_EXACT_MAPS`
    (2^16 = 65536 head evaluations per image at K = 16); a larger K is a ``ValueError`` that names K
    and points to KernelSHAP (:func:`ground_truth`) or, for an additive head, :func:`closed_form_shapley`.
    Files and keys as :func:`ground_truth`'s (same folder, ``"estimator": "exact"`` in the key, no
    nsamples or seed), checked for local accuracy when read. Returns an
    :class:`~liftcam.core.Explanation` with ``extras`` ``phi0`` (B,), ``cached`` (B,) bool, ``files``
    and ``estimator`` (``"exact"``).

        >>> gt = exact_ground_truth(s, x)              # s = liftcam.models.load("controlled_vgg_k16")
    """
    if not isinstance(model, SplitModel):
        raise TypeError("exact_ground_truth needs a liftcam SplitModel (liftcam.models.split / load), "
                        f"got {type(model).__name__}")
    images = check_images(images)
    B = images.shape[0]
    with evaluating(model), torch.no_grad():
        A, logits = forward(model, images)
    K = A.shape[1]
    if K > MAX_EXACT_MAPS:
        raise ValueError(f"the exact ground truth enumerates all 2^K coalitions, and {model.name} at {model.layer!r} "
                         f"has K = {K} maps (2^{K} head evaluations per image; at most K = {MAX_EXACT_MAPS}). "
                         "Use shap_estimator='kernel' (KernelSHAP, with shap_nsamples) or, for a head that is global "
                         "average pooling + a linear layer, shap_estimator='closed-form'")
    t = resolve_targets(targets, logits)
    folder = cache_folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cache.clean_stale(folder)
    ident = {"version": VERSION, "estimator": "exact", "layer": model.layer,
             "model": key if key is not None else f"{model.name}:{cache.model_digest(model)}"}
    phi = torch.empty(B, K, dtype=torch.float64)
    phi0 = torch.empty(B, dtype=torch.float64)
    cached, files = [], []
    for i in tqdm(range(B), desc="exact SHAP", unit="image", disable=not progress):
        target, full = int(t[i]), float(logits[i, t[i]])
        k = cache.key_string({**ident, "image": cache.image_digest(images[i]), "target": target})
        path = cache.path_for(folder, k)
        got = cache.read(path, k, phi=(K,), phi0=())
        if got is None:
            p, p0 = exact_shapley(model.head, A[i:i + 1], [target], batch_size=batch_size)
            p, p0 = p[0].double().cpu().numpy(), float(p0[0])
            _check_efficiency(p, p0, full, f"image {i} (target {target})")
            cache.write(path, k, phi=p, phi0=np.float64(p0), full=np.float64(full), target=np.int64(target))
        else:
            p, p0 = got["phi"], float(got["phi0"])
            try:
                _check_efficiency(p, p0, full, f"image {i} (target {target})")
            except LocalAccuracyError as e:
                raise LocalAccuracyError(f"{e}\nThe cached result {path} does not fit this model: delete it, "
                                         "or pass another key= if the weights changed") from None
        phi[i], phi0[i] = torch.as_tensor(p), p0
        cached.append(got is not None), files.append(path)
    alpha = phi.to(A.device, A.dtype)
    maps, raw = cam_maps(A, alpha, images.shape[-2:])
    extras = {"phi0": phi0.to(A.device, A.dtype), "cached": torch.tensor(cached, dtype=torch.bool), "files": files,
              "estimator": "exact"}
    return Explanation(maps, raw, alpha, t, logits, "shap-cam", extras, model.layer)


def ground_truth_seeds(model: SplitModel, images: Tensor, targets=None, *, nsamples: int, seeds,
                       batch_size: int | None = DEFAULT_BATCH_SIZE, cache_dir: str | os.PathLike | None = None,
                       key: str | None = None, progress: bool = True) -> Explanation:
    """:func:`ground_truth` once per seed (each cached and resumable as there), averaged: a ground truth
    that carries its own error bar.

    KernelSHAP's error at a fixed budget is hard to know in advance (it depends on K, the head and
    the image); the spread of S independent estimates measures it per image. The coefficients are
    the mean over ``seeds`` (distinct ints); maps and raw maps are rebuilt from that mean with
    :func:`~liftcam.core.cam_maps`, as :func:`ground_truth` builds them. ``extras``:

    - ``phi0`` (B,) (the mean over seeds; F^c(0) does not depend on the seed), ``nsamples``,
      ``estimator`` (``"kernel"``), ``seeds`` (list), ``files`` (per image, one path per seed);
    - ``per_seed`` (S, B, K): each seed's coefficients;
    - ``error`` (B,): the estimated relative L2 error of the mean, the standard error
      ``sqrt(sum_s ||phi_s - mean||^2 / (S - 1)) / sqrt(S) / ||mean||`` (S = 2:
      ``||phi_a - phi_b|| / 2 / ||mean||``); NaN for a single seed;
    - ``cached`` (B,) bool: every seed of the image was read from the cache.

        >>> gt = ground_truth_seeds(s, x, nsamples=8192, seeds=[0, 1])
        >>> gt.extras["error"]                        # (B,) e.g. tensor([0.004, 0.006])
    """
    if not isinstance(seeds, (list, tuple, range)) or not seeds \
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of ints (S seeds from 0: list(range(S))), got {seeds!r}")
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct (a repeated seed repeats its estimate and hides the error), "
                         f"got {seeds}")
    runs = [ground_truth(model, images, targets, nsamples=nsamples, seed=s, batch_size=batch_size,
                         cache_dir=cache_dir, key=key, progress=progress) for s in seeds]
    first = runs[0]
    per_seed = torch.stack([r.coefficients for r in runs])                # (S, B, K)
    phi = per_seed.double().mean(0)                                        # (B, K)
    S = len(seeds)
    if S > 1:
        spread = (per_seed.double() - phi).pow(2).sum((0, 2)) / (S - 1)   # (B,) sum_s ||phi_s - mean||^2 / (S-1)
        error = spread.sqrt() / math.sqrt(S) / phi.norm(dim=1)
    else:
        error = torch.full((phi.shape[0],), math.nan, dtype=torch.float64, device=phi.device)
    alpha = phi.to(per_seed.dtype)
    size = check_images(images).shape[-2:]
    maps, raws = [], []
    with evaluating(model):
        for i in range(alpha.shape[0]):                                  # one image at a time, as ground_truth
            A, _ = forward(model, images[i:i + 1])
            m, r = cam_maps(A, alpha[i:i + 1].to(A.device), size)
            maps.append(m[0]), raws.append(r[0])
    extras = {"phi0": torch.stack([r.extras["phi0"] for r in runs]).double().mean(0).to(first.extras["phi0"].dtype),
              "nsamples": first.extras["nsamples"], "estimator": "kernel", "seeds": seeds, "per_seed": per_seed,
              "error": error.to(per_seed.dtype), "cached": torch.stack([r.extras["cached"] for r in runs]).all(0),
              "files": [list(f) for f in zip(*(r.extras["files"] for r in runs))]}
    return Explanation(torch.stack(maps), torch.stack(raws), alpha, first.targets, first.logits, "shap-cam", extras,
                       model.layer)


# --------------------------------------------------------------------------------------------
# Exact values on an additive head

class NotAdditiveError(ValueError):
    """The head is not additive in the maps at this layer: :func:`closed_form_shapley` does not apply."""


#: Random coalitions on which :func:`closed_form_shapley` checks additivity, per image.
ADDITIVITY_CHECKS = 8


def closed_form_shapley(model: SplitModel, images: Tensor, targets=None, *, batch_size: int = 128,
                        checks: int = ADDITIVITY_CHECKS, seed: int = 0) -> Explanation:
    """Exact SHAP-CAM when the head is additive in the maps: ``phi_k = v({k}) - v(empty)``.

    When the head after the split is global average pooling followed by a linear layer (ResNet50
    at ``layer4``, EfficientNet-Lite0 at ``bn2``), ``v(S) = F^c(A_S) = b_c + sum_{k in S} w_ck
    mean(A_k)`` is additive, so the Shapley value of map k is its singleton value ``w_ck
    mean(A_k)`` and ``phi_0 = v(empty) = b_c``: K + 1 head evaluations per image instead of
    thousands of sampled coalitions, with no sampling error. The values come from the head itself
    (K copies of the maps with only map k kept, ``batch_size`` per call, plus the empty
    coalition), so any :class:`~liftcam.models.SplitModel` on any device is accepted, and
    additivity is *verified* before they are returned: on ``checks`` random coalitions per image
    (half the maps each, a generator seeded with ``seed``) ``v(S) - v(empty)`` must equal
    ``sum_{k in S} phi_k``, and local accuracy ``phi_0 + sum_k phi_k = F^c(A)`` must hold, within
    ``1e-4`` of the logits' scale ``+ 1e-5`` (64 eps of a float16 / bfloat16 head's dtype).
    Otherwise :class:`NotAdditiveError` (a ValueError) says so and points to KernelSHAP (:func:`ground_truth`).

    ``targets`` as for :func:`liftcam.explain`. Returns an :class:`~liftcam.core.Explanation` like
    :func:`ground_truth`'s, with ``extras`` ``phi0`` (B,) and ``estimator`` (``"closed-form"``).

        >>> s = liftcam.models.load("efficientnet_lite0", layer="bn2")
        >>> e = closed_form_shapley(s, x)              # e.coefficients (B, 1280), exact
    """
    if not isinstance(model, SplitModel):
        raise TypeError("closed_form_shapley needs a liftcam SplitModel (liftcam.models.split / load), "
                        f"got {type(model).__name__}")
    if isinstance(checks, bool) or not isinstance(checks, (int, np.integer)) or checks < 0:
        raise ValueError(f"checks must be a non-negative int (random coalitions per image), got {checks!r}")
    A, logits = forward(model, images)                                # checks the images
    t = resolve_targets(targets, logits)
    B, K = A.shape[:2]
    head = model.head
    gen = torch.Generator().manual_seed(int(seed))
    phi = torch.empty(B, K, dtype=torch.float64, device=A.device)
    phi0 = torch.empty(B, dtype=torch.float64, device=A.device)
    with evaluating(model), torch.no_grad():
        empty = head(torch.zeros_like(A[:1]))[0].double()            # (C,) v(empty) for every image
        for b in range(B):
            c = int(t[b])
            for sl in chunks(K, batch_size):
                k = torch.arange(sl.start, sl.stop, device=A.device)
                X = torch.zeros(len(k), *A.shape[1:], dtype=A.dtype, device=A.device)
                X[torch.arange(len(k), device=A.device), k] = A[b, k]   # only map k kept
                phi[b, sl] = head(X)[:, c].double() - empty[c]
            phi0[b] = empty[c]
            z = (torch.rand(checks, K, generator=gen) < 0.5).to(A.device, A.dtype)    # (checks, K)
            got = torch.cat([head(z[sl, :, None, None] * A[b][None])[:, c] for sl in chunks(checks, batch_size)]) \
                if checks else A.new_zeros(0)
            _check_additive(model, b, c, z, got.double() - empty[c], z.double() @ phi[b], float(logits[b, c]),
                            float(empty[c]), float(phi[b].sum()), rtol=_additive_rtol(A.dtype))
    alpha = phi.to(A.dtype)
    maps, raw = cam_maps(A, alpha, images.shape[-2:])
    return Explanation(maps, raw, alpha, t, logits, "shap-cam",
                       {"phi0": phi0.to(A.dtype), "estimator": "closed-form"}, model.layer)


def _additive_rtol(dtype: torch.dtype) -> float:
    """The additivity check's relative tolerance: 1e-4, or 64 eps for a float16 / bfloat16 head (its rounding)."""
    return max(1e-4, 64 * torch.finfo(dtype).eps)


def _check_additive(model: SplitModel, b: int, c: int, z: Tensor, moved: Tensor, summed: Tensor, full: float,
                    empty: float, total: float, rtol: float = 1e-4) -> None:
    """Raise NotAdditiveError unless ``v(S) - v(0) == sum_{k in S} phi_k`` on each checked coalition
    and ``v(0) + sum_k phi_k == F^c(A)`` (the full coalition), within ``rtol`` of the logits' scale + 1e-5
    (:func:`_additive_rtol`: 1e-4, wider for a float16 / bfloat16 head)."""
    scale = max(abs(full - empty), abs(full), abs(empty), float(moved.abs().max()) if len(moved) else 0.0)
    tol = rtol * scale + 1e-5
    worst = float((moved - summed).abs().max()) if len(moved) else 0.0
    what = None
    if not worst <= tol:
        i = int((moved - summed).abs().argmax())
        what = (f"on a random coalition of {int(z[i].sum())} of {z.shape[1]} maps v(S) - v(empty) = "
                f"{float(moved[i]):.6g} but the sum of its maps' singleton values is {float(summed[i]):.6g}")
    elif not abs(empty + total - full) <= tol:
        worst = abs(empty + total - full)
        what = f"phi_0 + sum_k phi_k = {empty + total:.6g} but F^c(A) = {full:.6g}"
    if what is not None:
        raise NotAdditiveError(
            f"the head of {model.name} after layer {model.layer!r} is not additive in the maps (image {b}, "
            f"target {c}): {what} (difference {worst:.3g}, tolerance {tol:.2g}). The closed form phi_k = "
            "v({k}) - v(empty) is exact only for a head that is linear in the maps, such as global average "
            "pooling followed by a linear layer (EfficientNet-Lite0 at 'bn2', ResNet50 at 'layer4'); estimate "
            "the Shapley values with KernelSHAP instead: liftcam.shapley.ground_truth(model, images, "
            "nsamples=...) (or explain_all(..., shap_estimator='kernel')).")


# --------------------------------------------------------------------------------------------
# The convergence study's independent reference (notebook 02)

__all__ += ["REFERENCE_SEED_OFFSET", "reference_seeds", "still_rising"]

#: The convergence reference's seeds start this far above the study's seed: no estimate of the study
#: and no ground-truth seed (``seed, seed + 1, ...``) can be one of them.
REFERENCE_SEED_OFFSET = 1_000_000


def reference_seeds(seed: int, n: int, used) -> list[int]:
    """``n`` KernelSHAP seeds for the convergence reference, none of them in ``used``.

    A reference that averages the seeds whose error it measures is checked against itself: its
    distance to each of them shrinks with the number of seeds, not with the error. The seeds are
    ``seed + REFERENCE_SEED_OFFSET``, ``+ 1``, ... with every seed in ``used`` (the estimates' and
    the ground truth's) skipped; deterministic for ``seed``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the convergence reference needs at least one seed (convergence_reference_seeds >= 1), got {n!r}")
    used, out, s = {int(u) for u in used}, [], int(seed) + REFERENCE_SEED_OFFSET
    while len(out) < n:
        if s not in used:
            out.append(s)
        s += 1
    return out


def still_rising(budgets, values, error: float = 0.0) -> bool:
    """Whether ``values`` (one per budget, e.g. LIFT-CAM's cosine with the estimate at that budget)
    still rise at the largest budget by more than ``error`` (the reference's own error on that scale).

    True means the estimate has not converged for this comparison: a larger budget would still
    move it. Needs at least two budgets (False with one).
    """
    order = np.argsort(np.asarray(budgets, dtype=float))
    v = np.asarray(values, dtype=float)[order]
    if len(v) < 2 or not np.isfinite(v[-2:]).all():
        return False
    return bool(v[-1] - v[-2] > max(float(error), 0.0))
