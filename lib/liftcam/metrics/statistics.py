"""Statistics of per-image values: bootstrap summaries (also by cluster), paired comparisons, Holm."""
from __future__ import annotations

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


def compare(a, b, *, higher_is_better: bool = True, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
            min_n: int = 2, clusters=None, pvalue: bool = False) -> dict:
    """Paired comparison of two methods' per-image values: how much better ``a`` is than ``b``.

    The advantage of each image is ``a_i - b_i`` (``b_i - a_i`` when lower is better); images
    where either value is NaN (not computed, undefined) are left out. Returns :func:`summarize`
    of the advantages (``mean``, ``low``, ``high``, ``n``, ``n_nan``; by cluster, with
    ``n_clusters``, when ``clusters`` is given), with ``pvalue=True`` also ``p``: the two-sided
    bootstrap p-value of "no difference" (twice the smaller share of bootstrap means on either
    side of 0, at most 1; feed a family of them to :func:`holm`), and ``better``: True when the whole interval lies above 0 (a is
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
    s, means = _summary(a - b if higher_is_better else b - a, n_boot, ci, seed, clusters)
    used = s.get("n_clusters", s["n"])
    better = None if used < min_n else True if s["low"] > 0 else False if s["high"] < 0 else None
    if pvalue:
        s["p"] = float("nan") if means is None else float(min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean())))
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
#: with a cluster bootstrap, below this many clusters (source photographs) a comparison decides nothing:
#: k clusters give at most C(2k - 1, k) distinct resamples (10 for k = 3, 126 for k = 5)
MIN_CLUSTERS = 5


def compare_family(per_image, method: str, versus, higher_is_better: dict, *, clusters=None, n_boot: int = 1000,
                   ci: float = 0.95, seed: int = 0, alpha: float = 0.05, min_n: int = MIN_N,
                   min_clusters: int = MIN_CLUSTERS, margins=None):
    """One claim's family of paired comparisons, Holm-corrected: ``method`` against each of ``versus``.

    ``per_image`` maps ``(method, metric)`` to a per-image vector (a pandas DataFrame with those
    two-level columns, or a dict; NaN where a method did not run on an image); ``higher_is_better``
    maps each metric to its direction. Each row is :func:`compare` (with ``clusters``: the cluster
    bootstrap, e.g. by source photograph) plus ``p_holm``, the Holm-adjusted p-value over the
    whole family (every baseline x metric), and a ``verdict``:

    - ``n < min_n``: fewer than ``min_n`` images decide nothing;
    - ``photographs < min_clusters``: with ``clusters``, fewer than ``min_clusters`` of them decide
      nothing either (a bootstrap over 3 clusters has 10 distinct resamples);
    - ``for`` / ``against``: ``p_holm < alpha`` and the advantage is positive / negative;
    - ``within ground-truth error``: it would be decided, but ``margins[(versus, metric)]`` (the
      error the reference itself puts on this advantage) exceeds a third of the advantage;
      ``ground-truth error unknown`` when that margin is NaN (not measured);
    - ``undecided`` otherwise.

    Returns a DataFrame with columns method, versus, metric, mean, low, high, n, n_clusters, p,
    p_holm, margin, verdict, in the order of ``versus`` x ``higher_is_better``.

        >>> import pandas as pd
        >>> df = pd.DataFrame({("a", "m"): range(12), ("b", "m"): [x - 1.0 for x in range(12)]})
        >>> compare_family(df, "a", ["b"], {"m": True})["verdict"].tolist()
        ['for']
    """
    import pandas as pd

    margins = dict(margins or {})
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
                         "margin": margins.get((other, metric), 0.0)})
    df = pd.DataFrame(rows, columns=["method", "versus", "metric", "mean", "low", "high", "n", "n_clusters", "p",
                                     "margin"])
    df["p_holm"] = holm(df["p"].to_numpy()) if len(df) else []

    def verdict(r):
        if r["n"] == 0:
            return "not run"
        if r["n"] < min_n:
            return f"n < {min_n}"
        if clusters is not None and r["n_clusters"] < min_clusters:
            return f"photographs < {min_clusters}"
        if not r["p_holm"] < alpha:
            return "undecided"
        if np.isnan(r["margin"]):
            return "ground-truth error unknown"
        if r["margin"] and not (3 * r["margin"] <= abs(r["mean"])):
            return "within ground-truth error"
        return "for" if r["mean"] > 0 else "against"

    df["verdict"] = [verdict(r) for _, r in df.iterrows()] if len(df) else []
    return df[["method", "versus", "metric", "mean", "low", "high", "n", "n_clusters", "p", "p_holm", "margin",
               "verdict"]]
