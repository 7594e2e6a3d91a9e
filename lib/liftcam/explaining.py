"""Explanations of an image set computed once and kept on disk, so that several notebooks share them.

:func:`explain_cached` is :func:`liftcam.explain` with one small file per (model, layer, image,
method, options, target) holding the coefficients alpha (K,). The map is rebuilt from them with
the same ReLU, upsampling and min-max as :func:`liftcam.explain` (:func:`~liftcam.core.cam_maps`
on the activations of a fresh forward pass), so a cached explanation equals a fresh one, and a
file is a few kilobytes. :func:`explain_all` runs a list of methods that way, SHAP-CAM (the
ground truth, :func:`liftcam.shapley.ground_truth` and its variants) included.

    >>> e = explain_cached(s, x, "score-cam", cache_dir="data/cache")   # computed, then saved
    >>> e = explain_cached(s, x, "score-cam", cache_dir="data/cache")   # read back
    >>> e.extras["cached"]                                               # tensor([True, ...])
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import cache
from .core import (
    HOW_OPTIONS,
    REGISTRY,
    RULES,
    Batch,
    Explanation,
    cam_maps,
    explain_batch,
    forward,
    forward_batch_size,
    lookup,
    resolve_targets,
)
from .models import SplitModel

__all__ = ["explain_cached", "explain_all", "to_npz", "cache_folder", "VERSION", "NOT_IN_KEY", "SHAP_ESTIMATORS"]

#: Bumped whenever a change alters what is stored; part of every cache key.
VERSION = 2
#: Options that change how a result is computed, not the result: they do not enter the cache key.
NOT_IN_KEY = HOW_OPTIONS
#: explain_all's ways to compute SHAP-CAM: KernelSHAP (any head), the closed form (additive heads), or the
#: enumeration of all 2^K coalitions (any head, K <= 20); the exact ones are ``liftcam.shapley.EXACT_ESTIMATORS``
SHAP_ESTIMATORS = ("kernel", "closed-form", "exact")


def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`explain_cached` keeps its files: ``<cache_dir>/maps``, else
    ``$LIFTCAM_CACHE/maps``, else ``<repo>/data/cache/maps`` (git-ignored)."""
    return cache.folder("maps", cache_dir)


def explain_cached(model: SplitModel, images: Tensor, method: str, targets=None, *,
                   cache_dir: str | os.PathLike | None = None, key: str | None = None,
                   **options) -> Explanation:
    """:func:`liftcam.explain` of ``images`` with ``method``, each image's coefficients cached on disk.

    An image's result is identified by ``key`` (default: the model's name and
    :func:`liftcam.cache.model_digest`: weights, split code and module settings), the layer, a
    sha256 of the image, the method, :func:`liftcam.cache.source_digest` of its rule, the
    ``options`` with their defaults (except :data:`NOT_IN_KEY`), the target class and
    :data:`VERSION`; a damaged or non-finite file is recomputed. Missing images are explained on the
    maps already computed (a method of cost ``"head"`` in one :func:`~liftcam.core.explain_batch`
    call, a costly one image by image), and each image's alpha (K,) is written atomically to
    ``<sha256 of the key>.npz`` in :func:`cache_folder` as soon as it is computed; a write that fails
    (a full disk) is a warning, the result is still returned, and ``extras["stored"]`` (B,) bool says
    which are on disk; maps are rebuilt from alpha with :func:`~liftcam.core.cam_maps` on the
    activations of one forward pass, as :func:`liftcam.explain` builds them. ``extras`` holds
    ``cached`` (B,) bool and ``files`` (a method's own extras are not kept).

        >>> e = explain_cached(s, x, "lime-cam", cache_dir="data/cache", seed=0)
    """
    _check_method(model, method)
    A, logits = forward(model, images)                                # checks the images once
    images = images.to(A.device, A.dtype)
    return _explain_cached(model, images, A, logits, resolve_targets(targets, logits), method, cache_dir,
                           _model_key(model) if key is None else key, options)


def _check_method(model, method: str) -> None:
    if not isinstance(model, SplitModel):
        raise TypeError(f"explain_cached needs a liftcam SplitModel (liftcam.models.load / split), "
                        f"got {type(model).__name__}")
    lookup(method)
    if method == "shap-cam":
        raise ValueError("SHAP-CAM has its own cache: use liftcam.shapley.ground_truth (or explain_all)")


def _model_key(model: SplitModel) -> str:
    """The default model key, as :func:`liftcam.shapley.ground_truth` makes it."""
    return f"{model.name}:{cache.model_digest(model)}"


def _explain_cached(model, images, A, logits, t, method, cache_dir, key, options) -> Explanation:
    """explain_cached on images whose activations A and logits are known (one forward pass for many methods)."""
    B, K = A.shape[:2]
    folder = cache_folder(cache_dir)
    cache.clean_stale(folder)
    spec = REGISTRY[method]
    ident = {"version": VERSION, "method": method, "rule": cache.source_digest(spec.rule), "layer": model.layer,
             "model": key, "options": cache.key_string(spec.key_options(options))}
    keys = [cache.key_string({**ident, "image": cache.image_digest(images[i]), "target": int(t[i])})
            for i in range(B)]
    files = [cache.path_for(folder, k) for k in keys]
    alpha = torch.empty(B, K, dtype=A.dtype, device=A.device)
    cached = torch.zeros(B, dtype=torch.bool)
    for i in range(B):
        got = cache.read(files[i], keys[i], alpha=(K,))
        if got is not None:
            alpha[i], cached[i] = torch.as_tensor(got["alpha"], dtype=A.dtype), True
    missing = (~cached).nonzero().flatten().tolist()
    # a head-cost method runs all missing images at once; a costly one image by image, each stored when done
    groups = [missing] if spec.cost == "head" else [[i] for i in missing]
    unstored = []
    for group in (g for g in groups if g):
        m = torch.tensor(group, device=A.device)                      # the maps are known: no second forward pass
        e = explain_batch(Batch(model, images[m], A[m], t[m], logits[m]), method, **options)
        alpha[m] = e.coefficients.to(A.dtype)
        for j, i in enumerate(group):
            try:
                cache.write(files[i], keys[i], alpha=_storable(e.coefficients[j]))
            except OSError as err:                                    # a full disk, a folder it cannot create
                unstored.append((i, err))
    if unstored:
        warnings.warn(f"explain_cached computed {method} for {len(missing)} image(s) but could not store "
                      f"{len(unstored)} of them (image(s) {[i for i, _ in unstored][:10]}; first error: "
                      f"{unstored[0][1]}); the results are returned, and extras['stored'] says which are on disk",
                      stacklevel=3)
    stored = cached.clone()
    stored[torch.tensor([i for i in missing if i not in {u for u, _ in unstored}], dtype=torch.long)] = True
    maps, raw = cam_maps(A, alpha, images.shape[-2:])
    return Explanation(maps, raw, alpha, t, logits, method, {"cached": cached, "files": files, "stored": stored},
                       model.layer, spec.key_options(options))


def _storable(alpha: Tensor) -> np.ndarray:
    """alpha (K,) as a numpy array: float16 / bfloat16 (which numpy lacks or npz cannot hold) as float32."""
    a = alpha.detach().cpu()
    return (a.float() if a.dtype in (torch.float16, torch.bfloat16) else a).numpy()


def explain_all(model: SplitModel, images: Tensor, methods, *, cache_dir: str | os.PathLike | None = None,
                limits: dict | None = None, options: dict | None = None, shap_nsamples: int | None = None,
                shap_seeds: int | list | None = None, shap_estimator: str = "kernel", seed: int = 0,
                batch_size: int | None = None, progress: bool = False) -> dict[str, Explanation]:
    """``{method: Explanation}`` for each of ``methods`` on ``images``, through the on-disk caches.

    - ``limits``: ``{method: n}`` explains only the first n images with that method (the
      expensive ones on a small budget; 0 leaves the method out of the result).
    - ``options``: ``{method: {option: value}}`` for the method's rule.
    - ``seed`` and ``batch_size`` go to every rule that takes them (LIME-CAM's coalitions;
      the perturbations per forward pass of Score-CAM, Ablation-CAM, LIME-CAM) unless
      ``options`` sets them.
    - ``"shap-cam"``: the ground truth, by ``shap_estimator``:

      - ``"kernel"`` (default): KernelSHAP, cached in ``<cache_dir>/shap``. ``shap_seeds`` None
        or 1: :func:`liftcam.shapley.ground_truth` with ``nsamples=shap_nsamples, seed=seed``;
        an int S > 1: :func:`liftcam.shapley.ground_truth_seeds` over seeds ``seed, seed + 1, ...,
        seed + S - 1`` (their mean, ``extras["error"]`` its estimated relative error per image); a
        list: those seeds. Each seed's files are the single-seed ones, so raising S reuses them.
      - ``"closed-form"``: :func:`liftcam.shapley.closed_form_shapley`, exact when the head is
        global average pooling then a linear layer (EfficientNet-Lite0 at ``bn2``, ResNet50 at
        ``layer4``) and a ``NotAdditiveError`` otherwise; ``shap_nsamples`` and ``shap_seeds``
        are not used, nothing is cached (K + 1 head passes per image).
      - ``"exact"``: :func:`liftcam.shapley.exact_ground_truth`, all 2^K coalitions through the head
        (exact for any head; K <= 20, else a ``ValueError`` naming K), cached in ``<cache_dir>/shap``;
        ``shap_nsamples`` and ``shap_seeds`` are not used.

      ``options["shap-cam"]`` goes to that function (e.g. ``key``, ``batch_size``). Whatever the
      estimator, its ``extras`` hold ``per_seed`` (S, B, K), ``error`` (B,: NaN with one seed, 0 for
      the exact estimators, :data:`liftcam.shapley.EXACT_ESTIMATORS`), ``cached`` and ``estimator``.
    - the others: :func:`explain_cached`, cached in ``<cache_dir>/maps``.

        >>> exps = explain_all(s, x, ["grad-cam", "score-cam", "shap-cam"], limits={"score-cam": 3},
        ...                    shap_nsamples=2688, cache_dir="data/cache")
    """
    from .shapley import closed_form_shapley, exact_ground_truth, ground_truth, ground_truth_seeds

    if shap_estimator not in SHAP_ESTIMATORS:
        raise ValueError(f"unknown shap_estimator {shap_estimator!r}; choose one of {', '.join(SHAP_ESTIMATORS)}")
    seeds = _shap_seeds(shap_seeds, seed)
    limits, options = dict(limits or {}), dict(options or {})
    unknown = [m for m in [*methods, *limits, *options] if m not in RULES]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(RULES)}")
    for m in methods:
        if m != "shap-cam":
            _check_method(model, m)
    # once for every method (checks the images), in chunks of at most batch_size images: memory bounded by the chunk
    A, logits = forward(model, images, batch_size=_forward_chunk(model, batch_size))
    images = images.to(A.device, A.dtype)
    t = resolve_targets(None, logits)
    key = _model_key(model)                                           # the same key as ground_truth's default
    out = {}
    for m in methods:
        n = len(images) if limits.get(m) is None else min(int(limits[m]), len(images))
        if n <= 0:
            continue
        if m == "shap-cam":
            shap_dir = None if cache_dir is None else Path(cache_dir) / "shap"
            if shap_estimator == "closed-form":
                out[m] = closed_form_shapley(model, images[:n], **options.get(m, {}))
            elif shap_estimator == "exact":
                out[m] = exact_ground_truth(model, images[:n], cache_dir=shap_dir, progress=progress,
                                            **options.get(m, {}))
            elif seeds is None:
                out[m] = ground_truth(model, images[:n], nsamples=shap_nsamples, seed=seed, cache_dir=shap_dir,
                                      progress=progress, **options.get(m, {}))
            else:
                out[m] = ground_truth_seeds(model, images[:n], nsamples=shap_nsamples, seeds=seeds,
                                            cache_dir=shap_dir, progress=progress, **options.get(m, {}))
            _ground_truth_extras(out[m])
        else:
            takes = REGISTRY[m].options
            opts = {k: v for k, v in (("seed", seed), ("batch_size", batch_size)) if k in takes and v is not None}
            out[m] = _explain_cached(model, images[:n], A[:n], logits[:n], t[:n], m, cache_dir, key,
                                     {**opts, **options.get(m, {})})
    return out


def _forward_chunk(model: SplitModel, batch_size: int | None) -> int:
    """Images per body pass of explain_all: ``batch_size`` capped at the device's default (a perturbation
    batch of 1024 masked maps is cheap; 1024 VGG16 images at once are not)."""
    default = forward_batch_size(model.device)
    return default if batch_size is None else max(1, min(int(batch_size), default))


def _ground_truth_extras(e: Explanation) -> None:
    """The same extras whatever the estimator: ``per_seed`` (S, B, K), ``error`` (B,) (the ground truth's own
    relative error: NaN with one seed, 0 for the exact estimators), ``cached`` (B,) and ``estimator``."""
    from .shapley import EXACT_ESTIMATORS

    x = e.extras
    x.setdefault("estimator", "kernel")
    x.setdefault("per_seed", e.coefficients.detach()[None])
    exact = x["estimator"] in EXACT_ESTIMATORS
    x.setdefault("error", torch.zeros(len(e.coefficients)) if exact else torch.full((len(e.coefficients),), torch.nan))
    x.setdefault("cached", torch.zeros(len(e.coefficients), dtype=torch.bool))


def _shap_seeds(shap_seeds, seed: int) -> list[int] | None:
    """The seeds of explain_all's SHAP-CAM: None for one run at ``seed`` (ground_truth), else the list."""
    if shap_seeds is None:
        return None
    if isinstance(shap_seeds, (int, np.integer)) and not isinstance(shap_seeds, bool):
        if shap_seeds < 1:
            raise ValueError(f"shap_seeds must be a positive int (number of seeds) or a list of seeds, got {shap_seeds}")
        return None if shap_seeds == 1 else [int(seed) + i for i in range(int(shap_seeds))]
    if isinstance(shap_seeds, (list, tuple)):
        return list(shap_seeds)                                       # ground_truth_seeds checks them
    raise TypeError(f"shap_seeds must be None, an int or a list of ints, got {type(shap_seeds).__name__}")


def to_npz(explanations: dict, names=None) -> bytes:
    """``{method: Explanation}`` as the bytes of an ``.npz`` file: what makes every map, per method.

    Arrays ``<method>.raw`` (n, h, w) (the map before ReLU, upsampling and min-max: the map follows
    from it exactly), ``<method>.coefficients`` (n, K) and ``<method>.targets`` (n,), float32 /
    int64; ``names`` (the images, optional) as ``names``. Write it with
    :func:`liftcam.report.atomic_write`.
    """
    arrays = {}
    if names is not None:
        arrays["names"] = np.array([str(n) for n in names])
    for m, e in explanations.items():
        arrays[f"{m}.raw"] = e.raw.detach().to("cpu", torch.float32).numpy()
        arrays[f"{m}.coefficients"] = e.coefficients.detach().to("cpu", torch.float32).numpy()
        arrays[f"{m}.targets"] = e.targets.detach().cpu().long().numpy()
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()
