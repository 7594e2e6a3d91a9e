"""Agreement of coefficient vectors, e.g. a CAM's alpha against SHAP-CAM's: cosine, Spearman, top-k."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .checks import _out, _positive_int


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


def relative_error(a: Tensor, b: Tensor) -> Tensor:
    """Relative L2 error of each row of ``a`` against the reference row of ``b``: ``|a - b| / |b|``.

    Unlike the cosine it sees scale: LIFT-CAM and SHAP-CAM both add up to ``F(A) - F(0)``
    (completeness), so their coefficients are on one scale; a zero reference row gives NaN.

        >>> relative_error(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
        tensor([1.])
    """
    a, b = _check_pair(a, b, "relative_error")
    den = b.norm(dim=1)
    return _out(torch.where(den > 0, (a - b).norm(dim=1) / den, torch.nan))


#: the error :func:`reference_error` gives an exact reference: float32 rounding, well above its 1.2e-7 epsilon
#: (a closed form and a method that equals it differ by about 1e-7 relative, after a pass through the head)
EXACT_ERROR = 1e-5
#: the agreement measures of :func:`agreement_per_image` -> is higher better
AGREEMENT = {"relative error": False, "cosine": True, "spearman": True, "top-k overlap": True}


def count_empty_maps(maps) -> int:
    """How many of ``maps`` (n, H, W), one per scored image, are empty (all zero): the count every table shows.

    An empty map is scored, never dropped (docs/paper.md); the count says how much of a method's score
    rests on images it explains with nothing. A NaN map (not run) is not empty.
    """
    maps = torch.as_tensor(maps)
    if maps.dim() < 2:
        raise ValueError(f"maps must be (n, H, W) or (n, K), one per image, got shape {tuple(maps.shape)}")
    if len(maps) == 0:
        return 0
    return int((maps.detach().flatten(1).abs().amax(1) == 0).sum())


def agreement_per_image(coefficients: dict, reference: Tensor, *, top_k: int = 10, names=None):
    """Every method's agreement with a reference, per image: a DataFrame indexed by (method, image).

    ``coefficients``: ``{method: (n_m, K)}`` (a method may cover only the first n_m images);
    ``reference``: (B, K), e.g. the SHAP-CAM ground truth. Columns are the keys of
    :data:`AGREEMENT` (``top-k overlap`` with ``top_k``).
    """
    import pandas as pd

    names = list(range(len(reference))) if names is None else list(names)
    parts = {}
    for m, a in coefficients.items():
        a = a.detach().cpu().double()
        r = reference[:len(a)].detach().cpu().double()
        # a method that returned the zero vector (e.g. LIME-CAM's Lasso keeping no map) ran and agrees in nothing: 0,
        # not NaN (NaN here means "not run on that image" and would drop the image from the comparison)
        zero = (a.abs().amax(1) == 0) & (r.abs().amax(1) > 0)
        cos, rho = (torch.where(zero, torch.zeros_like(v), v) for v in (cosine_similarity(a, r), spearman(a, r)))
        parts[m] = pd.DataFrame({"relative error": relative_error(a, r).numpy(), "cosine": cos.numpy(),
                                 "spearman": rho.numpy(), "top-k overlap": top_k_overlap(a, r, top_k).numpy()},
                                index=pd.Index(names[:len(a)], name="image"))
    return pd.concat(parts, names=["method", "image"])


def reference_error(coefficients: dict, per_seed: Tensor, method: str, versus, *, top_k: int = 10,
                    exact: bool = False) -> dict:
    """How much the reference's own noise moves each paired advantage: ``{(versus, measure): error}``.

    ``per_seed`` (S, B, K) holds S independent estimates of the reference (e.g. KernelSHAP with S
    seeds); the reference used is their mean. For each image the advantage of ``method`` over a
    method of ``versus`` (positive = closer, whatever the measure's direction) is measured against
    each seed's estimate; its spread over the seeds, ``std / sqrt(S)``, is the error it carries
    from the mean reference. The mean over the images both methods cover is returned (NaN with
    one seed: the error is then unknown). ``exact=True`` (e.g. the closed form on a linear head):
    every error is :data:`EXACT_ERROR`, the float32 rounding of an exact reference and of methods
    that equal it (a tie at that level is not an ordering).
    """
    if exact:
        return {(other, measure): EXACT_ERROR for other in versus if method in coefficients and other in coefficients
                for measure in AGREEMENT}
    S = per_seed.shape[0]
    tables = [agreement_per_image(coefficients, per_seed[s], top_k=top_k) for s in range(S)]
    out = {}
    for other in versus:
        if method not in coefficients or other not in coefficients:
            continue
        n = min(len(coefficients[method]), len(coefficients[other]))
        for measure, higher in AGREEMENT.items():
            adv = torch.from_numpy(np.stack([(t.loc[method, measure].to_numpy()[:n] - t.loc[other, measure].to_numpy()[:n])
                                * (1 if higher else -1) for t in tables]))                  # (S, n)
            out[other, measure] = float("nan") if S < 2 else float((adv.std(0) / S ** 0.5).nanmean())
    return out
