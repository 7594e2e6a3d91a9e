"""Explanation maps drawn over their photographs: one overlay, and the image-by-method grid.

    >>> rgb = overlay(x[0], e.maps[0])                    # (H, W, 3) in [0, 1]
    >>> fig = map_grid(x, {"Grad-CAM": g.maps, "LIFT-CAM": l.maps}, ["tabby", "espresso"])
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["LABELS", "COLOURS", "label", "colour", "overlay", "map_grid", "map_summary", "curve_panels", "interval_plot"]

class _Trait(Mapping):
    """A read-only view ``{method: trait}`` of the registry (:func:`liftcam.core.register`)."""

    def __init__(self, trait: str):
        self.trait = trait

    def __getitem__(self, method):
        from .core import REGISTRY
        return getattr(REGISTRY[method], self.trait)

    def __iter__(self):
        from .core import RULES
        return iter(RULES)

    def __len__(self):
        from .core import RULES
        return len(RULES)


#: The published names of the methods, for titles and legends (declared at registration).
LABELS = _Trait("label")
#: One colour per method, the same in every figure (declared at registration): the paper's method
#: red, the ground truth black.
COLOURS = _Trait("colour")


def colour(method: str, i: int = 0) -> str:
    """The colour of a method in every figure (:data:`COLOURS`; others cycle through tab10)."""
    import matplotlib.pyplot as plt
    return COLOURS.get(method, plt.get_cmap("tab10").colors[i % 10])


def label(method: str) -> str:
    """The published name of a method (``"lift-cam"`` -> ``"LIFT-CAM"``); unknown names unchanged."""
    return LABELS.get(method, method)


def _hwc(image) -> np.ndarray:
    """An image (3, H, W) or (H, W, 3), tensor or array, in [0, 1] -> float64 array (H, W, 3)."""
    a = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"image must be (3, H, W) or (H, W, 3), got shape {a.shape}")
    return a


def overlay(image, heat, *, alpha: float = 0.6, dim: float = 0.6, cmap: str = "jet") -> np.ndarray:
    """A map (H, W) in [0, 1] drawn over an image (3, H, W) or (H, W, 3) in [0, 1]: (H, W, 3) in [0, 1].

    Each pixel blends the dimmed photograph with the map's colour, weighted by the map's value:
    ``out = (1 - alpha m) dim x + alpha m cmap(m)``. Where the map is 0 the (dimmed) photograph
    shows unchanged, so what the map leaves out stays visible.
    """
    import matplotlib

    x = _hwc(image)
    m = np.asarray(heat.detach().cpu() if hasattr(heat, "detach") else heat, dtype=np.float64)
    if m.shape != x.shape[:2]:
        raise ValueError(f"map {m.shape} and image {x.shape[:2]} must have the same (H, W)")
    if not (0 <= alpha <= 1 and 0 <= dim <= 1):
        raise ValueError(f"alpha and dim must be in [0, 1], got alpha={alpha}, dim={dim}")
    m = np.clip(np.nan_to_num(m), 0, 1)
    colour = matplotlib.colormaps[cmap](m)[..., :3]                            # (H, W, 3)
    w = alpha * m[..., None]
    return np.clip((1 - w) * dim * np.clip(x, 0, 1) + w * colour, 0, 1)


def map_grid(images, columns: dict, row_labels, *, photo_title: str = "image", size: float = 1.6,
             cmap: str = "jet", alpha: float = 0.6, dim: float = 0.6):
    """The qualitative figure: one row per image, the photograph then one overlay per column.

    ``images`` (B, 3, H, W) in [0, 1]; ``columns`` ``{title: maps (n, H, W)}`` in order, where a
    column with n < B maps (or None) shows "not computed" in the rows it lacks; ``row_labels``
    one string per image (e.g. the explained class). A colour bar gives the map's scale.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    B = len(images)
    if len(row_labels) != B:
        raise ValueError(f"row_labels must give one label per image: {B} images, got {len(row_labels)}")
    titles = list(columns)
    fig, axes = plt.subplots(B, 1 + len(titles), figsize=(size * (1 + len(titles)) + 0.6, size * B + 0.4),
                             squeeze=False)
    for i in range(B):
        photo = _hwc(images[i])
        axes[i, 0].imshow(np.clip(photo, 0, 1))
        axes[i, 0].set_ylabel(row_labels[i], fontsize=9)
        for j, t in enumerate(titles, start=1):
            maps = columns[t]
            if maps is not None and i < len(maps):
                axes[i, j].imshow(overlay(photo, maps[i], alpha=alpha, dim=dim, cmap=cmap))
            else:
                axes[i, j].imshow(np.full_like(photo, 0.93))
                axes[i, j].text(0.5, 0.5, "not\ncomputed", ha="center", va="center", fontsize=8, color="0.4",
                                transform=axes[i, j].transAxes)
    for j, t in enumerate([photo_title, *titles]):
        axes[0, j].set_title(t, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.subplots_adjust(wspace=0.04, hspace=0.04, left=0.03, right=0.92, top=0.92, bottom=0.02)
    cax = fig.add_axes([0.935, 0.25, 0.01, 0.5])
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=cax).set_label("map value", fontsize=8)
    cax.tick_params(labelsize=7)
    return fig


def map_summary(maps) -> dict:
    """Numbers that describe each map (B, H, W) in [0, 1], per map: what a map figure shows.

    ``peak_row``, ``peak_col`` (the first maximum in row-major order), ``mean`` (overall level),
    ``area_50`` (share of pixels >= 0.5: how spread the hot region is) and ``centroid_row``,
    ``centroid_col`` (the map's centre of mass; NaN for an all-zero map). Each a list of B values.
    """
    m = np.asarray(maps.detach().cpu() if hasattr(maps, "detach") else maps, dtype=np.float64)
    if m.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {m.shape}")
    B, H, W = m.shape
    flat = m.reshape(B, -1)
    peak = flat.argmax(1)
    total = flat.sum(1)
    rows, cols = np.arange(H)[:, None], np.arange(W)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        cr = (m * rows).sum((1, 2)) / total
        cc = (m * cols).sum((1, 2)) / total
    return {"peak_row": (peak // W).tolist(), "peak_col": (peak % W).tolist(), "mean": flat.mean(1).tolist(),
            "area_50": (flat >= 0.5).mean(1).tolist(), "centroid_row": cr.tolist(), "centroid_col": cc.tolist()}


def curve_panels(curves, panels, labels: dict | None = None, *, x: str = "fraction", by: str = "method",
                 xlabel: str = "", ylabel: str = "", highlight=(), size: tuple = (4.2, 3.4)):
    """One panel per column of ``panels`` in a long table ``curves``, one line per ``by`` group.

    ``curves``: a DataFrame with columns ``by``, ``x`` and each name in ``panels`` (e.g. mean
    deletion and insertion curves per method). ``labels`` maps a group to its legend text
    (default: :func:`label`); groups in ``highlight`` are drawn thick. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    labels = labels or {}
    groups = list(dict.fromkeys(curves[by]))
    fig, axes = plt.subplots(1, len(panels), figsize=(size[0] * len(panels), size[1]), squeeze=False)
    for ax, col in zip(axes[0], panels):
        for i, g in enumerate(groups):
            d = curves[curves[by] == g]
            thick = g in highlight
            ax.plot(d[x], d[col], color=colour(g, i), lw=2.4 if thick else 1.2,
                    zorder=3 if thick else 2, label=labels.get(g, label(g)))
        ax.set_title(col), ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
        ax.set_xlim(0, 1), ax.set_ylim(bottom=0), ax.grid(alpha=0.3)
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def interval_plot(values, summary, *, labels: dict | None = None, xlabel: str = "", reference=None,
                  reference_label: str = "reference", highlight=(), xlim=None, size: tuple = (6.0, 0.42)):
    """Per-image values as dots and each row's mean with its interval, one row per method.

    ``values``: a DataFrame, one column per method (rows: images; NaN = none). ``summary``:
    ``{method: {"mean", "low", "high", "n"}}`` (:func:`liftcam.metrics.summarize`). An optional
    ``reference`` Series (per image, same rows) is drawn the same way in grey at the bottom.
    ``xlim``: the x range (e.g. (0, 1) for a share). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    labels = labels or {}
    cols = list(values.columns)
    rows = cols + (["__reference__"] if reference is not None else [])
    fig, ax = plt.subplots(figsize=(size[0], 0.8 + size[1] * len(rows)))
    rng = np.random.default_rng(0)                                        # jitter only, fixed
    for i, c in enumerate(rows):
        y = len(rows) - 1 - i
        ref = c == "__reference__"
        v = np.asarray(reference if ref else values[c], dtype=float)
        v = v[~np.isnan(v)]
        c_ = "0.55" if ref else colour(c, i)
        ax.scatter(v, y + rng.uniform(-0.15, 0.15, len(v)), s=14, color=c_, alpha=0.45, lw=0, zorder=2)
        sm = {"mean": float(np.mean(v)) if len(v) else np.nan, "low": np.nan, "high": np.nan} if ref else summary[c]
        ax.errorbar(sm["mean"], y, xerr=[[sm["mean"] - sm["low"]], [sm["high"] - sm["mean"]]] if not ref else None,
                    fmt="D", color="0.3" if ref else c_, ms=7 if c in highlight else 5, capsize=4,
                    lw=2.2 if c in highlight else 1.4, zorder=3)
    names = [reference_label if c == "__reference__" else f"{labels.get(c, label(c))} (n={summary[c]['n']})" for c in rows]
    ax.set_yticks(range(len(rows))[::-1], names)
    ax.set_xlabel(xlabel), ax.grid(axis="x", alpha=0.3), ax.set_ylim(-0.6, len(rows) - 0.4)
    if xlim is not None:
        ax.set_xlim(*xlim)
    fig.tight_layout()
    return fig
