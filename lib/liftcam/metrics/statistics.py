"""Statistics of per-image values: bootstrap summaries (also by cluster), paired comparisons, Holm.

Intervals are percentile-bootstrap intervals; p-values never come from counting bootstrap resamples
(with G clusters a bootstrap p is 0 as soon as no resample crosses 0, whatever G): they come from an
exact sign-flip randomisation test on the cluster means of the paired differences
(:func:`sign_flip_test`), whose smallest attainable two-sided p is ``2 / 2^G``.
"""
from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from .checks import _positive_int


def _bootstrap_means(x: np.ndarray, clusters: np.ndarray | None, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` means of resamples of ``x`` (n,): of images, or of whole clusters when given."""
    rng = np.random.default_rng(seed)
    n = x.size
    if clusters is None:
        # Resample in blocks so that n_boot x n indices never exceed ~4M entries at once.
        block = max(1, (1 << 22) // n)
        return np.concatenate([x[rng.integers(0, n, size=(min(block, n_boot - i), n))].mean(1)
                               for i in range(0, n_boot, block)])
    ids, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=x, minlength=ids.size)                  # per cluster
    counts = np.bincount(inverse, minlength=ids.size).astype(np.float64)
    draws = rng.integers(0, ids.size, size=(n_boot, ids.size))                  # clusters with replacement
    return sums[draws].sum(1) / counts[draws].sum(1)


def _clusters(clusters, n: int) -> np.ndarray | None:
    if clusters is None:
        return None
    c = np.asarray(clusters).ravel()
    if c.size != n:
        raise ValueError(f"clusters must give one label per value ({n}), got {c.size}; e.g. the source photograph "
                         "of each image")
    return c


def summarize(values, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0, clusters=None) -> dict:
    """Mean of per-image values with a seeded percentile-bootstrap confidence interval.

    NaN values (undefined cases, e.g. an image without boxes) are left out and counted in
    ``n_nan``; ``n`` is the number used. The interval is the ``(1 - ci) / 2`` and ``(1 + ci) / 2``
    percentiles of ``n_boot`` means of resamples with replacement (Efron's percentile bootstrap),
    drawn with ``numpy.random.default_rng(seed)``. All NaN (or empty): mean, low, high are NaN.

    ``clusters`` (one label per value, e.g. the source photograph of each view of it) resamples
    whole clusters instead of images (the cluster bootstrap): images that share a source are not
    independent, and the interval then says so. ``n_clusters`` (only then) counts the clusters used.

        >>> summarize(torch.tensor([2.0, 2.0, float("nan")]))
        {'mean': 2.0, 'low': 2.0, 'high': 2.0, 'n': 2, 'n_nan': 1}
    """
    v = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float64)
    if np.isinf(v).any():                       # a mean of -inf and a NaN interval would be passed on quietly
        raise ValueError(f"values hold {int(np.isinf(v).sum())} infinite value(s): a metric divided by zero; "
                         "pass NaN for an undefined case (it is left out and counted in n_nan)")
    s, _ = _summary(values, n_boot, ci, seed, clusters)
    return s


def _summary(values, n_boot, ci, seed, clusters) -> tuple[dict, np.ndarray | None]:
    """(the summary, the bootstrap means or None)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu()
    v = np.asarray(values, dtype=np.float64).ravel()
    c = _clusters(clusters, v.size)
    n_boot = _positive_int(n_boot, "n_boot")
    if not (isinstance(ci, (int, float)) and 0 < ci < 1):
        raise ValueError(f"ci must be a confidence level strictly between 0 and 1, got {ci!r} (e.g. 0.95)")
    nan = np.isnan(v)
    x = v[~nan]
    c = None if c is None else c[~nan]
    n = int(x.size)
    n_clusters = n if c is None else int(np.unique(c).size)
    extra = {} if c is None else {"n_clusters": n_clusters}
    if n == 0:
        return dict(mean=float("nan"), low=float("nan"), high=float("nan"), n=0, n_nan=int(nan.sum()),
                    **{k: 0 for k in extra}), None
    means = _bootstrap_means(x, c, n_boot, seed)
    low, high = np.percentile(means, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return dict(mean=float(x.mean()), low=float(low), high=float(high), n=n, n_nan=int(nan.sum()), **extra), means


#: up to this many clusters the sign-flip test enumerates all 2^G sign patterns; above, it draws SIGN_FLIP_DRAWS
EXACT_MAX_CLUSTERS = 20
#: random sign patterns above EXACT_MAX_CLUSTERS clusters (p = (hits + 1) / (draws + 1))
SIGN_FLIP_DRAWS = 20_000


def _cluster_means(x: np.ndarray, clusters: np.ndarray | None) -> np.ndarray:
    """The mean of ``x`` (n,) within each cluster (G,), or ``x`` itself without clusters."""
    if clusters is None:
        return x
    _, inverse = np.unique(clusters, return_inverse=True)
    return np.bincount(inverse, weights=x) / np.bincount(inverse)


def smallest_p(n_clusters: int, *, draws: int = SIGN_FLIP_DRAWS) -> float:
    """The smallest two-sided p a sign-flip test can reach with G clusters: ``2 / 2^G`` (1 when G = 0).

    Above :data:`EXACT_MAX_CLUSTERS` clusters the test draws ``draws`` random patterns, and its
    p-value is at least ``1 / (draws + 1)``.

        >>> smallest_p(9), smallest_p(3)
        (0.00390625, 0.25)
    """
    if n_clusters <= 0:
        return 1.0
    exact = min(1.0, 2.0 / 2.0 ** n_clusters)
    return exact if n_clusters <= EXACT_MAX_CLUSTERS else max(exact, 1.0 / (draws + 1))


def clusters_needed(family: int, *, alpha: float = 0.05) -> int:
    """The fewest independent clusters whose smallest sign-flip p, times ``family`` (Holm), is at most ``alpha``.

        >>> clusters_needed(25), clusters_needed(1)
        (10, 6)
    """
    family = max(1, int(family))
    return int(math.ceil(math.log2(2.0 * family / alpha) - 1e-12))


def sign_flip_test(d, clusters=None, *, draws: int = SIGN_FLIP_DRAWS, seed: int = 0) -> float:
    """Two-sided p-value of "no difference" from paired differences ``d`` (n,): an exact sign-flip test.

    Fisher's randomisation test for paired data, by cluster: under the null the G cluster means
    ``m_g`` of the differences are symmetric about 0, so each sign pattern ``s`` in {-1, 1}^G is as
    likely as the observed one. ``p`` is the share of patterns with ``|sum_g s_g m_g| >= |sum_g m_g|``:
    all 2^G of them when ``G <= EXACT_MAX_CLUSTERS`` (exact), otherwise ``draws`` seeded random
    ones with ``p = (hits + 1) / (draws + 1)``. NaN values are left out; no value left: NaN. Each
    cluster weighs the same (its mean), which is what makes the test valid when views of one
    photograph are correlated. The smallest attainable p is :func:`smallest_p` (2 / 512 at G = 9).

        >>> sign_flip_test([1.0, 2.0, 3.0])                 # G = 3, all positive: 2 of 8 patterns
        0.25
    """
    d = np.asarray(d.detach().cpu() if isinstance(d, Tensor) else d, dtype=np.float64).ravel()
    c = _clusters(clusters, d.size)
    ok = ~np.isnan(d)
    d = d[ok]
    if d.size == 0:
        return float("nan")
    m = _cluster_means(d, None if c is None else c[ok])               # (G,)
    observed = abs(m.sum())
    # patterns whose statistic equals the observed one up to rounding count as hits (ties of the null)
    tol = 1e-9 * max(np.abs(m).sum(), 1e-300)
    G = m.size
    if G <= EXACT_MAX_CLUSTERS:
        hits = 0
        bits = np.arange(G)
        chunk = 1 << 16
        for start in range(0, 1 << G, chunk):
            codes = np.arange(start, min(start + chunk, 1 << G))
            signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)                    # (chunk, G)
            hits += int((np.abs(signs @ m) >= observed - tol).sum())
        return hits / float(1 << G)
    rng = np.random.default_rng(seed)
    hits = 0
    total = m.sum()
    for start in range(0, draws, 4096):
        # random bits, 8 per byte: a flipped cluster (bit 1) moves the sum by -2 m_g
        raw = rng.integers(0, 256, size=(min(4096, draws - start), (G + 7) // 8), dtype=np.uint8)
        flipped = np.unpackbits(raw, axis=1, count=G).astype(np.float64)         # (chunk, G)
        hits += int((np.abs(total - 2.0 * (flipped @ m)) >= observed - tol).sum())
    return (hits + 1) / (draws + 1)


def compare(a, b, *, higher_is_better: bool = True, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
            min_n: int = 2, clusters=None, pvalue: bool = False) -> dict:
    """Paired comparison of two methods' per-image values: how much better ``a`` is than ``b``.

    The advantage of each image is ``a_i - b_i`` (``b_i - a_i`` when lower is better); images
    where either value is NaN (not computed, undefined) are left out. Returns :func:`summarize`
    of the advantages (``mean``, ``low``, ``high``, ``n``, ``n_nan``; by cluster, with
    ``n_clusters``, when ``clusters`` is given), with ``pvalue=True`` also ``p``: the two-sided
    p-value of "no difference" from the exact sign-flip test on the cluster (or image) means of
    the advantages (:func:`sign_flip_test`; feed a family of them to :func:`holm`) and ``p_min``,
    the smallest p that test can give with these clusters (:func:`smallest_p`), and ``better``:
    True when the whole interval lies above 0 (a is
    better), False when below 0 (b is better), None when it contains 0 or fewer than ``min_n``
    images (or clusters) are left (one image gives an interval of zero width, which decides
    nothing). With a handful of images the percentile bootstrap interval is too narrow (n = 3
    has only 10 distinct resamples): read ``n`` next to the verdict.

        >>> compare([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])["better"]
        True
    """
    a = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if isinstance(b, Tensor) else b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"compare needs two per-image vectors of the same length (one value per image, in the "
                         f"same order), got shapes {a.shape} and {b.shape}; use NaN where a value is missing")
    d = a - b if higher_is_better else b - a
    s, means = _summary(d, n_boot, ci, seed, clusters)
    used = s.get("n_clusters", s["n"])
    better = None if used < min_n else True if s["low"] > 0 else False if s["high"] < 0 else None
    if pvalue:                            # never from the bootstrap means: with G clusters they give p = 0 too easily
        s["p"] = float("nan") if means is None else sign_flip_test(d, clusters, seed=seed)
        s["p_min"] = float("nan") if means is None else smallest_p(used)
    return {**s, "better": better}


def holm(p) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values of one family of comparisons (NaN stays NaN, order kept).

    Holm (1979): sort the m p-values, multiply the i-th smallest by ``m - i`` (i from 0), make the
    sequence non-decreasing, cap at 1. Rejecting where the adjusted value is below alpha controls
    the family-wise error at alpha.

        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(q[order] * (m - np.arange(m))))
    res = np.empty(m)
    res[order] = adjusted
    out[ok] = res
    return out


#: below this many images a comparison decides nothing
MIN_N = 10
#: with clusters, below this many a comparison decides nothing (kept for callers; the sign-flip test's smallest p,
#: 2 / 2^G, already rules out G < 6 for a family of one at 5%: "cannot be decided with G photographs")
MIN_CLUSTERS = 5
#: two per-image vectors whose differences are all within this (relative to their size) are the same by construction
TIE_TOLERANCE = 1e-6


def cannot_decide(n_clusters: int, family: int = 1, alpha: float = 0.05) -> str:
    """The decision of a comparison that no data could decide with ``n_clusters`` photographs, and how many would.

        >>> cannot_decide(9, 25)
        'cannot be decided with 9 photographs, 10 needed'
    """
    return f"cannot be decided with {int(n_clusters)} photographs, {clusters_needed(family, alpha=alpha)} needed"


def decide(mean: float, low: float, high: float, *, n: int, n_clusters: int, p_holm: float, family: int,
           alpha: float = 0.05, margin: float = 0.0, error: float = 0.0, tie: bool = False,
           min_n: int = MIN_N) -> str:
    """The decision of one comparison of a family, in this order (the first that applies):

    - ``not run`` (n = 0), ``n < min_n``;
    - ``tie``: the two methods give the same value on every image (identical by construction);
    - ``cannot be decided with G photographs``: the sign-flip test's smallest p with G clusters,
      times the family size (Holm's factor for the smallest p), exceeds ``alpha``, whatever the data;
    - ``equivalent``: the interval lies inside ``(-margin, margin)``, the smallest difference that matters;
    - ``interval contains 0`` / ``not significant after Holm``: ``p_holm >= alpha``;
    - ``ground-truth error unknown`` (``error`` NaN) / ``within ground-truth error``: the reference's own
      error on this advantage exceeds a third of it;
    - ``not clear of the margin``: significant, but the interval reaches inside the margin;
    - ``for`` / ``against``: significant and the whole interval beyond ``+margin`` / ``-margin``.

        >>> decide(0.5, 0.2, 0.8, n=30, n_clusters=9, p_holm=0.01, family=1, margin=0.1)
        'for'
        >>> decide(0.5, 0.2, 0.8, n=30, n_clusters=9, p_holm=0.1, family=25)
        'cannot be decided with 9 photographs, 10 needed'
    """
    if n == 0:
        return "not run"
    if n < min_n:
        return f"n < {min_n}"
    if tie:
        return "tie"
    if smallest_p(n_clusters) * max(int(family), 1) > alpha:
        return cannot_decide(n_clusters, family, alpha)
    margin = float(margin or 0.0)
    if margin > 0 and -margin < low and high < margin:
        return "equivalent"
    if not p_holm < alpha:
        return "interval contains 0" if low <= 0 <= high else "not significant after Holm"
    if error is None or np.isnan(error):
        return "ground-truth error unknown"
    if error and not (3 * error <= abs(mean)):
        return "within ground-truth error"
    if (mean > 0 and low > margin) or (mean < 0 and high < -margin):
        return "for" if mean > 0 else "against"
    return "not clear of the margin"


def _tie(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` agree on every image both have, up to float rounding (the same by construction)."""
    ok = ~(np.isnan(a) | np.isnan(b))
    if not ok.any():
        return False
    scale = max(float(np.abs(a[ok]).max()), float(np.abs(b[ok]).max()), 1.0)
    return bool(np.abs(a[ok] - b[ok]).max() <= TIE_TOLERANCE * scale)


#: two maps agree by construction when they differ by at most this share of their largest value on every pixel
MAP_TIE_TOLERANCE = 1e-4


def tied_by_maps(maps: dict, method: str, versus, *, atol: float = MAP_TIE_TOLERANCE) -> set:
    """The methods of ``versus`` whose maps equal ``method``'s on every image both explain, up to float rounding.

    ``maps`` maps a method to its (n, H, W) maps (a method may cover a prefix of the images). Two
    methods whose coefficients are proportional (LIFT-CAM, LRP-CAM, SHAP-CAM and Ablation-CAM on a
    linear head) give the same normalised maps, yet float32 rounding moves their scores by ~1e-5
    (and reorders tied pixels in deletion / insertion): a tie is recognised on the maps, not on
    the scores. Pass the result as ``compare_family(..., ties=...)``.
    """
    if method not in maps:
        return set()
    a = maps[method]
    a = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    out = set()
    for other in versus:
        if other == method or other not in maps:
            continue
        b = maps[other]
        b = np.asarray(b.detach().cpu() if isinstance(b, Tensor) else b, dtype=np.float64)
        n = min(len(a), len(b))
        if n == 0 or a.shape[1:] != b.shape[1:]:
            continue
        x, y = a[:n].reshape(n, -1), b[:n].reshape(n, -1)
        scale = np.maximum(np.abs(x).max(1), np.abs(y).max(1))                   # (n,)
        if np.all(np.abs(x - y).max(1) <= atol * np.maximum(scale, 1e-12)):
            out.add(other)
    return out


COLUMNS = ["method", "versus", "metric", "mean", "low", "high", "n", "n_clusters", "p", "p_min", "family", "p_holm",
           "margin", "effect margin", "verdict"]


def compare_family(per_image, method: str, versus, higher_is_better: dict, *, clusters=None, n_boot: int = 1000,
                   ci: float = 0.95, seed: int = 0, alpha: float = 0.05, min_n: int = MIN_N,
                   min_clusters: int = MIN_CLUSTERS, margins=None, effect_margins=None, ties=()):
    """One claim's family of paired comparisons, Holm-corrected: ``method`` against each of ``versus``.

    ``per_image`` maps ``(method, metric)`` to a per-image vector (a pandas DataFrame with those
    two-level columns, or a dict; NaN where a method did not run on an image); ``higher_is_better``
    maps each metric to its direction. Each row is :func:`compare` (``p`` from the exact sign-flip
    test on the cluster means, e.g. by source photograph; the interval from the cluster bootstrap)
    plus ``n_clusters`` (G), ``p_min`` (the smallest p attainable with G clusters), ``family`` (the
    number of p-values Holm corrects over: every baseline x metric of the claim), ``p_holm``,
    ``margin`` (``margins[(versus, metric)]``: the error the ground truth itself puts on the
    advantage; NaN when unknown), ``effect margin`` (``effect_margins[metric]``: the smallest
    difference that matters) and the ``verdict`` of :func:`decide`; a method of ``ties`` (identical to
    ``method`` by construction, e.g. :func:`tied_by_maps`), or one whose values equal ``method``'s on
    every image, is a ``tie`` on every metric. ``min_clusters`` is kept for
    callers: the sign-flip rule ("cannot be decided with G photographs") already covers it.

    Returns a DataFrame with columns :data:`COLUMNS`, in the order of ``versus`` x ``higher_is_better``.

        >>> import pandas as pd
        >>> df = pd.DataFrame({("a", "m"): range(12), ("b", "m"): [x - 1.0 for x in range(12)]})
        >>> compare_family(df, "a", ["b"], {"m": True})["verdict"].tolist()
        ['for']
    """
    import pandas as pd

    margins = dict(margins or {})
    effect_margins = dict(effect_margins or {})
    rows = []
    for other in versus:
        for metric, higher in higher_is_better.items():
            if (method, metric) not in per_image or (other, metric) not in per_image:
                continue
            a = np.asarray(per_image[method, metric], dtype=np.float64)
            b = np.asarray(per_image[other, metric], dtype=np.float64)
            c = compare(a, b, higher_is_better=higher, n_boot=n_boot, ci=ci, seed=seed, clusters=clusters,
                        pvalue=True, min_n=1)
            rows.append({"method": method, "versus": other, "metric": metric, "mean": c["mean"], "low": c["low"],
                         "high": c["high"], "n": c["n"], "n_clusters": c.get("n_clusters", c["n"]), "p": c["p"],
                         "p_min": c["p_min"], "margin": margins.get((other, metric), 0.0),
                         "effect margin": float(effect_margins.get(metric, 0.0) or 0.0),
                         "tie": other in ties or _tie(a, b)})
    df = pd.DataFrame(rows, columns=[*COLUMNS[:-1], "tie"])
    df["family"] = int(df["p"].notna().sum())
    df["p_holm"] = holm(df["p"].to_numpy()) if len(df) else []
    df["verdict"] = [decide(r["mean"], r["low"], r["high"], n=r["n"], n_clusters=r["n_clusters"], p_holm=r["p_holm"],
                            family=r["family"], alpha=alpha, margin=r["effect margin"], error=r["margin"], tie=r["tie"],
                            min_n=min_n) for _, r in df.iterrows()] if len(df) else []
    return df[COLUMNS]
