"""The project's figures: one colour per method, the setting in every title, the numbers behind each.

Every figure function returns ``(fig, data)``: ``data`` is a DataFrame of every value drawn, for
``report.save_figure(fig, stem, params, data=data)``. Where methods are compared in one figure,
only the images every method explains are drawn (:func:`common_images`), and the title says n.

    >>> rgb = overlay(x[0], e.maps[0])                    # (H, W, 3) in [0, 1]
    >>> fig = map_grid(x, {"Grad-CAM": g.maps, "LIFT-CAM": l.maps}, ["tabby", "espresso"])
    >>> fig, data = interval_plot(per_image, title=setting_title("efficientnet_lite0", "blocks.6"))
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np

__all__ = ["LABELS", "COLOURS", "MODEL_LABELS", "label", "colour", "setting", "setting_title", "common_images",
           "overlay", "map_grid", "map_gallery", "map_summary", "curve_panels", "interval_plot",
           "agreement_vs_cost", "cost_bars", "convergence_panels"]

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


#: the published names of the project's models, for titles
MODEL_LABELS = {"efficientnet_lite0": "EfficientNet-Lite0", "vgg16": "VGG16", "resnet50": "ResNet50"}
#: (model, layer) whose activation maps take both signs (no ReLU at the layer): titles say so
SIGNED_LAYERS = {("efficientnet_lite0", "blocks.6")}


def setting(model: str, layer: str, *, signed: bool | None = None) -> str:
    """The model and layer a figure explains, in words: ``"EfficientNet-Lite0 at blocks.6 (signed maps)"``.

    ``signed`` (default: whether ``(model, layer)`` is in :data:`SIGNED_LAYERS`) adds "(signed maps)".
    """
    signed = (model, layer) in SIGNED_LAYERS if signed is None else signed
    return f"{MODEL_LABELS.get(model, model)} at {layer}" + (" (signed maps)" if signed else "")


def setting_title(model: str, layer: str, n: int | None = None, *, noun: str = "images", signed: bool | None = None) -> str:
    """:func:`setting` and the number of images: ``"EfficientNet-Lite0 at blocks.6 (signed maps), 9 images"``."""
    n_part = "" if n is None else f", {n} {noun[:-1] if n == 1 and noun.endswith('s') else noun}"
    return setting(model, layer, signed=signed) + n_part


def common_images(values):
    """The rows every method has a value in: ``(values restricted to them, methods left out)``.

    ``values``: a DataFrame, one row per image and one column per method (NaN: not run on that
    image). A column with no value at all (a method run on no image) is left out, and named in
    the second element; the rows kept are those where every remaining column has a value.
    """
    present = [c for c in values.columns if values[c].notna().any()]
    left_out = [c for c in values.columns if c not in present]
    kept = values[present]
    return kept[kept.notna().all(axis=1)], left_out


def _n(n: int) -> str:
    return f"n = {n} image" + ("" if n == 1 else "s")


def _left_out_note(left_out) -> str:
    return f"; not run on these images: {', '.join(label(m) for m in left_out)}" if len(left_out) else ""


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


CBAR_LABEL = "map value (min-max normalised)"


def _colourbar(fig, cmap: str, rect=(0.935, 0.25, 0.01, 0.5)):
    """One colour bar for the figure's [0, 1] map scale, in its own axes at ``rect``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = fig.add_axes(list(rect), label="<colorbar>")                  # matplotlib's own name for such axes
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=cax)
    bar.set_label(CBAR_LABEL, fontsize=8)
    cax.tick_params(labelsize=7)
    return bar


EMPTY_LABEL = "empty map\n(all zero)"


def _is_empty(m) -> bool:
    """Whether a map (H, W) is all zero (or NaN): nothing to overlay, drawn as "empty map"."""
    a = np.nan_to_num(np.asarray(m.detach().cpu() if hasattr(m, "detach") else m, dtype=np.float64))
    return not np.any(a)


def _draw_map(ax, photo, m, *, alpha, dim, cmap) -> bool:
    """An overlay of ``m`` on ``photo``, or, for an all-zero map, a blank panel that says so (an empty map
    over a dimmed photograph looks like a weak map). Returns whether the map was empty."""
    if _is_empty(m):
        ax.imshow(np.full_like(photo, 0.97))
        ax.text(0.5, 0.5, EMPTY_LABEL, ha="center", va="center", fontsize=8, color="0.25", transform=ax.transAxes)
        return True
    ax.imshow(overlay(photo, m, alpha=alpha, dim=dim, cmap=cmap))
    return False


def map_grid(images, columns: dict, row_labels, *, photo_title: str = "image", size: float = 1.6,
             cmap: str = "jet", alpha: float = 0.6, dim: float = 0.6, title: str = "", note: str = ""):
    """The qualitative figure: one row per image, the photograph then one overlay per column.

    ``images`` (B, 3, H, W) in [0, 1]; ``columns`` ``{title: maps (n, H, W)}`` in order, where a
    column with n < B maps (or None) shows "not computed" in the rows it lacks; ``row_labels``
    one string per image (e.g. the explained class); an all-zero map is drawn as a blank panel
    labelled "empty map (all zero)". One colour bar gives the maps' [0, 1] scale;
    ``title`` goes above, ``note`` (what the row labels' numbers are) below.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

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
                _draw_map(axes[i, j], photo, maps[i], alpha=alpha, dim=dim, cmap=cmap)
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
    top = 1 - 0.35 / (size * B + 0.4)
    fig.subplots_adjust(wspace=0.04, hspace=0.04, left=0.03, right=0.92, top=top - (0.3 / (size * B + 0.4) if title else 0),
                        bottom=0.02 + (0.3 / (size * B + 0.4) if note else 0))
    if title:
        fig.suptitle(title, fontsize=10, y=0.995)
    if note:
        fig.text(0.03, 0.005, note, fontsize=8, color="0.3", va="bottom")
    _colourbar(fig, cmap)
    return fig


def map_gallery(images, maps, titles, *, cols: int = 5, size: float = 2.4, cmap: str = "jet", alpha: float = 0.6,
                dim: float = 0.6, title: str = ""):
    """One method's maps (B, H, W) in [0, 1] over their images (B, 3, H, W), ``cols`` to a row, each
    with its title, and one colour bar for the [0, 1] scale. Returns the Figure."""
    import matplotlib.pyplot as plt

    B = len(images)
    if len(maps) != B or len(titles) != B:
        raise ValueError(f"need one map and one title per image: {B} images, {len(maps)} maps, {len(titles)} titles")
    cols = max(1, min(cols, B))
    rows = (B + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 0.7, (size + 0.45) * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, xi, m, t in zip(axes.flat, images, maps, titles):
        _draw_map(ax, _hwc(xi), m, alpha=alpha, dim=dim, cmap=cmap), ax.set_title(t, fontsize=8.5)
    h = (size + 0.45) * rows + 0.4
    fig.subplots_adjust(wspace=0.05, hspace=0.25, left=0.01, right=0.91, top=1 - 0.75 / h, bottom=0.01)
    if title:
        fig.suptitle(title, fontsize=10)
    _colourbar(fig, cmap, rect=(0.925, 0.2, 0.012, 0.6))
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


def _trapezoid(y, x) -> float:
    """The area under ``y`` over ``x`` by the trapezoid rule (RISE's AUC on x = 0, 1/n, ..., 1)."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def curve_panels(curves, panels, *, x: str = "fraction", by: str = "method", image: str = "image", groups=None,
                 xlabel: str = "", ylabel: str = "", highlight=(), title: str = "", size: tuple = (4.2, 3.4)):
    """The mean curve of each method, one panel per column of ``panels``, over the images every method explains.

    ``curves``: a long DataFrame of per-image curves, columns ``by``, ``image``, ``x`` and each name in
    ``panels`` (e.g. deletion and insertion). Only the images that every group has are averaged
    (``groups``, default the groups present: a group listed there with no rows is named as left out).
    The legend gives each group's area under its drawn mean curve in each panel (trapezoid rule);
    groups in ``highlight`` are drawn thick. Returns ``(fig, data)``: ``data`` holds the drawn mean
    curves, the areas and n.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    present = list(dict.fromkeys(curves[by]))
    groups = [g for g in (groups or present)]
    left_out = [g for g in groups if g not in present]
    groups = [g for g in groups if g in present]
    sets = [set(curves.loc[curves[by] == g, image]) for g in groups]
    common = set.intersection(*sets) if sets else set()
    kept = curves[curves[image].isin(common) & curves[by].isin(groups)]
    mean = kept.groupby([by, x], sort=False)[list(panels)].mean().reset_index()
    mean["n"] = len(common)
    for col in panels:
        area = {g: _trapezoid(d[col], d[x]) for g, d in mean.groupby(by, sort=False)}
        mean[f"{col} AUC"] = mean[by].map(area)
    fig, axes = plt.subplots(1, len(panels), figsize=(size[0] * len(panels), size[1]), squeeze=False)
    for ax, col in zip(axes[0], panels):
        for i, g in enumerate(groups):
            d = mean[mean[by] == g]
            thick = g in highlight
            aucs = " / ".join(f"{v:.3f}" for v in d[[f"{c} AUC" for c in panels]].iloc[0]) if len(d) else ""
            ax.plot(d[x], d[col], color=colour(g, i), lw=2.4 if thick else 1.2, zorder=3 if thick else 2,
                    label=f"{label(g)} ({aucs})")
        ax.set_title(col), ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
        ax.set_xlim(0, 1), ax.set_ylim(bottom=0), ax.grid(alpha=0.3)
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False,
                       title="method (mean AUC: " + " / ".join(panels) + ")", title_fontsize=8)
    head = f"{title}: " if title else ""
    fig.suptitle(f"{head}mean over the {_n(len(common))} every method explains{_left_out_note(left_out)}",
                 fontsize=9.5)
    fig.tight_layout()
    return fig, pd.DataFrame(mean)


def interval_plot(values, *, reference=None, reference_label: str = "reference", n_boot: int = 1000, seed: int = 0,
                  ci: float = 0.95, xlabel: str = "", highlight=(), xlim=None, title: str = "", size: tuple = (6.4, 0.42),
                  common: bool = False):
    """Per-image values as dots and each method's mean with its bootstrap interval, one row per method.

    Each row is drawn on the images its method has a value for (NaN = none), the images its paired
    comparisons use, with its n in the row's label; ``common=True`` draws only the images every
    method has (:func:`common_images`). ``values``: a DataFrame, one column per method (rows:
    images). An optional ``reference`` Series (per image, same rows) is drawn the same way in grey
    at the bottom, on every image that any drawn row has. The means and ``ci`` intervals are
    :func:`liftcam.metrics.summarize` of the drawn values (``n_boot``, ``seed``). ``xlim``: the x
    range (e.g. (0, 1) for a share). A ``ValueError`` when no method has a value (a figure with
    nothing in it is never drawn). Returns ``(fig, data)``: ``data`` one row per drawn dot, with
    its row's mean, low, high and n.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.lines import Line2D

    from .metrics import summarize

    kept, left_out = common_images(values)
    if not common:
        kept = values[list(kept.columns)]
        kept = kept[kept.notna().any(axis=1)]
    if kept.shape[1] == 0 or len(kept) == 0:
        raise ValueError("interval_plot: no method has a value on any image (nothing to draw); "
                         f"methods given: {', '.join(map(str, values.columns)) or 'none'}")
    cols = list(kept.columns)
    rows = cols + (["__reference__"] if reference is not None else [])
    fig, ax = plt.subplots(figsize=(size[0], 1.2 + size[1] * len(rows)))
    rng = np.random.default_rng(0)                                        # jitter only, fixed
    records = []
    for i, c in enumerate(rows):
        y = len(rows) - 1 - i
        ref = c == "__reference__"
        v = pd.Series(reference, index=values.index).loc[kept.index] if ref else kept[c].dropna()
        sm = summarize(v.to_numpy(dtype=float), n_boot=n_boot, ci=ci, seed=seed)
        c_ = "0.45" if ref else colour(c, i)
        jitter = rng.uniform(-0.18, 0.18, len(v))
        ax.scatter(v, y + jitter, s=14, color=c_, alpha=0.5, lw=0, zorder=2)
        thick = c in highlight
        ax.errorbar(sm["mean"], y, xerr=[[sm["mean"] - sm["low"]], [sm["high"] - sm["mean"]]], fmt="D", color=c_,
                    ms=7 if thick else 5, capsize=4, lw=2.2 if thick else 1.4, zorder=3)
        name = reference_label if ref else c
        records += [{"method": name, "image": img, "value": float(val), "row": y, "jitter": float(j),
                     "mean": sm["mean"], "low": sm["low"], "high": sm["high"], "n": sm["n"]}
                    for img, val, j in zip(v.index, v.to_numpy(dtype=float), jitter)]
    counts = {r["method"]: r["n"] for r in records}
    names = {c: reference_label if c == "__reference__" else c for c in rows}
    ax.set_yticks(range(len(rows))[::-1], [f"{label(names[c])} (n = {counts.get(names[c], 0)})" for c in rows])
    ax.set_xlabel(xlabel), ax.grid(axis="x", alpha=0.3), ax.set_ylim(-0.6, len(rows) - 0.4)
    if xlim is not None:
        ax.set_xlim(*xlim)
    key = [Line2D([], [], ls="", marker="o", ms=4, color="0.5", alpha=0.6, label="one image"),
           Line2D([], [], ls="-", marker="D", ms=5, color="0.3", label=f"mean, {ci:.0%} bootstrap interval")]
    ax.legend(handles=key, loc="upper center", bbox_to_anchor=(0.5, -0.1 - 0.25 / len(rows)), ncol=2, fontsize=8,
              frameon=False)
    head = f"{title}\n" if title else ""
    which = (f"{_n(len(kept))} every method explains" if common else
             f"each row on the images its method is scored on (n per row; {_n(len(kept))} in all)")
    ax.set_title(f"{head}{which}{_left_out_note(left_out)}", fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(records)


MARKERS = "o*sDv^PX<>hp"


def _label_means(ax, x: dict, y: dict, *, near: float = 0.3, gap: float = 0.05) -> None:
    """Each method's name beside its mean at ``(x[m], y[m])``; the names of methods whose times lie within
    ``near`` decades are stacked ``gap`` of the y range apart (highest mean on top), each with a thin
    line to its marker, so that no name hides another and no marker is moved."""
    if not y:
        return
    span = (max(y.values()) - min(y.values())) or 1.0
    lo, hi = ax.get_ylim()
    step = gap * max(hi - lo, span)
    done = set()
    for m in sorted(y, key=lambda k: x[k]):
        if m in done:
            continue
        group = [o for o in y if o not in done and abs(np.log10(x[o]) - np.log10(x[m])) < near]
        done.update(group)
        at = None
        for o in sorted(group, key=lambda k: -y[k]):
            at = y[o] if at is None else min(y[o], at - step)
            ax.annotate(label(o), (x[o], y[o]), xytext=(max(x[g] for g in group) * 10 ** 0.12, at), textcoords="data",
                        fontsize=7, color=colour(o), va="center",
                        arrowprops=dict(arrowstyle="-", lw=0.5, color=colour(o), shrinkA=0, shrinkB=3))


def agreement_vs_cost(per_image, seconds: dict, panels, *, reference=None, n_boot: int = 1000, seed: int = 0,
                      ci: float = 0.95, xlabel: str = "seconds per image", highlight=("lift-cam",), title: str = ""):
    """Each method's agreement (y) against its cost (x, log): its mean with a bootstrap interval and its
    images as dots, one panel per ``(column, axis label)`` in ``panels``.

    ``per_image``: a DataFrame indexed by ``(method, image)`` with the ``panels`` columns; ``seconds``:
    ``{method: seconds per image}``; ``reference``: an optional ``(text, seconds)`` drawn as a vertical
    line (e.g. SHAP-CAM's own cost). Only the images every method explains are drawn. Every marker
    sits at its method's measured time (x is a measurement: nothing is moved along it); each mean is
    labelled with its method's name, the names of methods with near-equal times stacked apart
    (:func:`_label_means`).
    Returns ``(fig, data)``: every per-image row (``drawn`` marks the images in the figure), and
    each method's means and intervals.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .metrics import summarize

    methods = list(dict.fromkeys(per_image.index.get_level_values(0)))
    first = panels[0][0]
    wide = per_image[first].unstack(0).reindex(columns=methods)
    kept, left_out = common_images(wide)
    methods = list(kept.columns)
    common = list(kept.index)
    x = {m: seconds[m] for m in methods}                            # measured: drawn where measured
    data = per_image.reset_index()
    data["seconds per image"] = data["method"].map(seconds)
    data["drawn"] = data["method"].isin(methods) & data["image"].isin(common)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    for ax, (k, name) in zip(axes[0], panels):
        means = {}
        for j, m in enumerate(methods):
            d = data[(data["method"] == m) & data["drawn"]]
            sm = summarize(d[k].to_numpy(dtype=float), n_boot=n_boot, ci=ci, seed=seed)
            for s_, v in sm.items():
                if s_ in ("mean", "low", "high"):
                    data.loc[data["method"] == m, f"{k} {s_}"] = v
            c, mk, big = colour(m, j), MARKERS[j % len(MARKERS)], m in highlight
            ax.scatter(np.full(len(d), x[m]), d[k], s=10, color=c, alpha=0.35, lw=0)
            ax.errorbar(x[m], sm["mean"], yerr=[[sm["mean"] - sm["low"]], [sm["high"] - sm["mean"]]], fmt=mk, color=c,
                        ms=9 if big else 7, capsize=3, zorder=3, label=label(m), mec="white" if big else c, mew=0.6)
            means[m] = sm["mean"]
        _label_means(ax, x, means)
        if reference is not None:
            ax.axvline(reference[1], color=colour("shap-cam"), ls=":", lw=1)
            ax.annotate(reference[0], (reference[1], 0.02), xycoords=("data", "axes fraction"), textcoords="offset points",
                        xytext=(-4, 0), ha="right", fontsize=8)
        ax.set_xscale("log"), ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel(xlabel), ax.set_ylabel(name), ax.grid(alpha=0.3, which="both")
    data["n drawn"] = len(common)
    if reference is not None:
        data["reference line (s)"] = reference[1]
    handles, labels_ = axes[0, 0].get_legend_handles_labels()
    handles += [Line2D([], [], ls="", marker="o", ms=4, color="0.5", alpha=0.5),
                Line2D([], [], ls="-", marker="|", ms=8, color="0.3")]
    labels_ += ["one image", f"{ci:.0%} bootstrap interval of the mean"]
    fig.legend(handles, labels_, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=5, fontsize=9, frameon=False)
    head = f"{title}\n" if title else ""
    fig.suptitle(f"{head}{_n(len(common))} every method explains{_left_out_note(left_out)}; each method at its "
                 "measured time", fontsize=10)
    fig.tight_layout()
    return fig, data


def cost_bars(table, *, title: str = "", xlabel: str = "seconds per image"):
    """Seconds per image of each method (bars, log scale) at batch 1 and batched, each with its cost
    floor (a black tick): the table of :func:`liftcam.timing.cost_table`.

    One row per method, fastest first (by its batch-1 time); two bars per method (batch 1, batched),
    the floor of each bar drawn as a tick on it. Returns ``(fig, data)``: the drawn rows of the table.
    """
    import matplotlib.pyplot as plt

    rows = table[table["row"] == "method"]
    order = rows[rows["call"] == "batch 1"].sort_values("seconds per image")["method"].tolist()
    order += [m for m in dict.fromkeys(rows["method"]) if m not in order]
    calls = [c for c in ("batch 1", "batched") if (rows["call"] == c).any()]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(order) * len(calls) + 1.6))
    h = 0.8 / len(calls)
    for j, c in enumerate(calls):
        d = rows[rows["call"] == c].set_index("method").reindex(order)
        y = np.arange(len(order)) + (j - (len(calls) - 1) / 2) * h
        sizes = ", ".join(map(str, sorted(set(d["images"].dropna().astype(int)))))
        ax.barh(y, d["seconds per image"], height=h * 0.9, color=[colour(m, i) for i, m in enumerate(order)],
                alpha=1.0 if j == 0 else 0.55, hatch=None if j == 0 else "//", edgecolor="white",
                label=c if c == "batch 1" else f"{c} ({sizes} images per call)")
        ax.scatter(d["floor seconds per image"], y, marker="|", s=140, color="black", zorder=3,
                   label="floor (what the method must at least compute)" if j == 0 else None)
    ax.set_yticks(np.arange(len(order)), [label(m) for m in order])
    ax.invert_yaxis()
    ax.set_xscale("log"), ax.set_xlabel(xlabel), ax.grid(alpha=0.3, axis="x", which="both")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig, rows[rows["method"].isin(order)].reset_index(drop=True)


def convergence_panels(runs, spread, approx_error: dict, cos_to, cos_ref: dict, *, budget: int, reference,
                       title: str = "", floor: float | None = None, reference_error: float | None = None,
                       ground_truth: float | None = None):
    """KernelSHAP's error against its budget (left) and the approximations' cosine with it (right).

    ``runs``: one row per estimate (``nsamples``, ``seed``, ``image``, ``vs reference``, ``cosine vs
    reference``); ``spread``: the seed-to-seed distance / sqrt 2 per ``nsamples`` and ``image``
    (may be empty); ``approx_error``: ``{method: median relative error vs the reference}`` (a
    horizontal line each); ``cos_to``: a DataFrame indexed by ``nsamples``, one column per method
    (its cosine with the estimate at that budget); ``cos_ref``: ``{method: cosine with the reference}``
    (horizontal lines); ``budget``: the budget used (vertical line); ``reference``: its budget (an
    int) or what it is (a str); ``floor``: the ground truth's own error (a horizontal line; None or
    NaN: not drawn); ``reference_error``: the reference's own error (a horizontal line, the
    resolution of the left panel: errors below it cannot be measured); ``ground_truth``: the
    ground truth's measured error against an independent reference (a star at ``budget``).
    Methods are keys of the registry. Titles are wrapped and each legend has its own space below its
    panel, so nothing overlaps or is cut.
    Returns ``(fig, data)``: every estimate (one row each, with its seed-to-seed spread) and, below,
    every other drawn value (``series``, ``x``, ``y``; ``x`` empty for a horizontal line).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    shap = colour("shap-cam")
    est = runs.merge(spread, on=["nsamples", "image"], how="left") if len(spread) else runs.assign(
        **{"seed-to-seed / sqrt 2": np.nan})
    curve = est.groupby("nsamples")[["vs reference", "seed-to-seed / sqrt 2"]].median()
    n_img = est["image"].nunique()
    lines = []                                                          # (panel, series, x, y)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 7.6))
    seeds = sorted(est["seed"].unique())
    off = {sd: 2 ** ((i - (len(seeds) - 1) / 2) * 0.04) for i, sd in enumerate(seeds)}   # dodge the seeds' dots
    ax.scatter(est["nsamples"] * est["seed"].map(off), est["vs reference"], s=14, color=shap, alpha=0.4, lw=0,
               label="one estimate (image, seed) vs reference")
    ax.plot(curve.index, curve["vs reference"], "o-", color=shap, label="median vs reference")
    lines += [("error", "median vs reference", n, v) for n, v in curve["vs reference"].items()]
    if curve["seed-to-seed / sqrt 2"].notna().any():
        ax.plot(curve.index, curve["seed-to-seed / sqrt 2"], "s--", color=shap, alpha=0.6,
                label="median seed-to-seed / $\\sqrt{2}$ (no reference)")
        lines += [("error", "median seed-to-seed / sqrt 2", n, v) for n, v in curve["seed-to-seed / sqrt 2"].items()]
    n0, e0 = curve.index[0], curve["vs reference"].iloc[0]
    guide = e0 * np.sqrt(n0 / curve.index.to_numpy(dtype=float))
    ax.plot(curve.index, guide, ":", color="0.5", label="$\\propto 1/\\sqrt{n}$ through the first median")
    lines += [("error", "1/sqrt(n) guide", n, v) for n, v in zip(curve.index, guide)]
    for m, v in approx_error.items():
        ax.axhline(v, color=colour(m), ls="--", lw=1.2, label=f"{label(m)} vs reference (median)")
        lines.append(("error", f"{m} vs reference", np.nan, v))
    if floor is not None and np.isfinite(floor) and floor > 0:
        ax.axhline(floor, color="0.2", ls="-.", lw=1.2, label="ground truth's own error, from its seeds (median)")
        lines.append(("error", "ground truth's own error", np.nan, floor))
    if reference_error is not None and np.isfinite(reference_error) and reference_error > 0:
        ax.axhline(reference_error, color="0.55", ls=(0, (1, 1)), lw=1.4, label="reference's own error (median)")
        lines.append(("error", "reference's own error", np.nan, reference_error))
    if ground_truth is not None and np.isfinite(ground_truth):
        ax.scatter([budget], [ground_truth], marker="*", s=130, color="0.1", zorder=4,
                   label="ground truth (mean of its seeds) vs reference (median)")
        lines.append(("error", "ground truth vs reference", budget, ground_truth))
    for a in (ax, bx):
        a.axvline(budget, color="0.2", lw=1.2, label=f"budget used: shap_nsamples = {budget}" if a is ax else None)
    lines.append(("both", "budget used (shap_nsamples)", budget, np.nan))
    ax.set_xscale("log", base=2), ax.set_yscale("log")
    ax.set_xlabel("head evaluations per image (nsamples)"), ax.set_ylabel("relative L2 error")
    ref = reference if isinstance(reference, str) else f"nsamples = {reference}"
    ax.set_title("KernelSHAP's error against the reference\n" + textwrap.fill(f"reference: {ref}", 60), fontsize=9.5)
    ax.grid(alpha=0.3, which="both"), ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    methods = list(cos_to.columns)
    for j, m in enumerate(methods):
        xs = cos_to.index.to_numpy(dtype=float) * 2 ** ((j - (len(methods) - 1) / 2) * 0.04)   # dodged markers
        bx.plot(xs, cos_to[m], "o-", color=colour(m), label=f"{label(m)} vs SHAP-CAM at nsamples (mean)")
        bx.axhline(cos_ref[m], color=colour(m), ls="--", lw=1.2, label=f"{label(m)} vs reference (mean)")
        lines += [("cosine", f"{m} vs SHAP-CAM(nsamples)", n, v) for n, v in cos_to[m].items()]
        lines.append(("cosine", f"{m} vs reference", np.nan, cos_ref[m]))
    bx.set_xscale("log", base=2), bx.set_xlabel("head evaluations per image (nsamples)")
    bx.set_ylabel("cosine similarity of coefficients")
    bx.set_title("approximations: cosine with SHAP-CAM\nestimated at nsamples, and with the reference", fontsize=9.5)
    bx.grid(alpha=0.3), bx.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    head = f"{title}: " if title else ""
    fig.suptitle(f"{head}KernelSHAP convergence on {n_img} image{'s' if n_img != 1 else ''}, "
                 f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} per budget", fontsize=10.5)
    # room for the legends below the panels (one entry a line, ~0.16 in each) and the two-line titles
    rows = max(len(ax.get_legend().get_texts()), len(bx.get_legend().get_texts()))
    height = 5.0 + 0.16 * rows + 0.8
    fig.set_size_inches(11, height)
    fig.subplots_adjust(left=0.08, right=0.97, wspace=0.28, top=1 - 1.05 / height, bottom=(0.8 + 0.16 * rows) / height)
    drawn = pd.DataFrame(lines, columns=["panel", "series", "x", "y"])
    return fig, pd.concat([est.assign(series="estimate"), drawn], ignore_index=True)


#: the colour of each verdict of liftcam.reproduction in the verdict matrix (others: light grey)
VERDICT_COLOURS = {"holds": "#4daf4a", "contradicted": "#e41a1c", "not resolved": "#fdd49e", "not run": "#ffffff",
                   "not reproduced offline": "#d9d9d9"}


def _units_of(claim, metric, setting) -> int | None:
    """The fewest independent units (``n_clusters``: source photographs, scenes) behind one claim's comparisons
    in a setting: from its paired table (faithfulness, approximation or pointing game, told by the claim's
    metrics), the claim's rows only where the table has a ``claim`` column; None when nothing records them."""
    from .reproduction import AGREEMENT, FAITHFULNESS, TIME

    names = {m.strip() for m in str(metric).split(",")}
    key = ("faithfulness_claims" if names & FAITHFULNESS else "approximation_claims" if names & (AGREEMENT | {TIME})
           else "pointing_game_claims" if "pointing" in str(metric) else None)
    t = getattr(setting, "tables", {}).get(key) if key else None
    if t is None or "n_clusters" not in t.columns:
        return None
    if "claim" in t.columns:
        number = "".join(ch for ch in str(claim) if ch.isdigit())
        t = t[t["claim"].astype(str).isin([str(claim), number])]
    k = t["n_clusters"].dropna()
    return int(k.min()) if len(k) else None


def verdict_matrix(table, *, settings=None, units=None, unit: str = "independent", title: str = ""):
    """The verdicts as a claim x setting grid, each cell coloured by its verdict, with its n and the number
    of independent units behind it: ``(fig, data)``.

    ``table``: :func:`liftcam.reproduction.verdicts` (index ``(claim, setting)``, columns ``verdict`` and
    ``n``). The units per cell come from ``units`` (``{(claim, setting): k}`` or ``{setting: k}``) or are
    read from ``settings`` (:func:`liftcam.reproduction.read_settings`: the fewest ``n_clusters`` in the
    claim's rows of the setting's tables); a cell without them shows n only. An empty table is a
    ValueError (no figure is drawn of nothing).

        >>> fig, data = verdict_matrix(table, settings=found)
        >>> report.save_figure(fig, "figures/verdict_matrix", params, data=data)
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.patches import Patch, Rectangle

    if table is None or len(table) == 0:
        raise ValueError("the verdict table is empty: no claim has a verdict in any setting (did notebooks 00-07 "
                         "write their tables into the settings' figures folders?); nothing to draw")
    claims = list(dict.fromkeys(table.index.get_level_values(0)))
    names = list(dict.fromkeys(table.index.get_level_values(1)))
    by_name = {getattr(s, "name", None): s for s in (settings or [])}
    rows = []
    for c in claims:
        for s in names:
            if (c, s) not in table.index:
                continue
            r = table.loc[(c, s)]
            k = None
            if units is not None:
                k = units.get((c, s), units.get(s))
            elif s in by_name:
                k = _units_of(c, r.get("metric", ""), by_name[s])
            n = r.get("n")
            rows.append({"claim": c, "setting": s, "verdict": str(r["verdict"]),
                         "n": None if n is None or pd.isna(n) else int(n), "units": k})
    data = pd.DataFrame(rows).astype({"n": "Int64", "units": "Int64"})
    fig, ax = plt.subplots(figsize=(1.2 + 1.75 * len(names), 0.6 + 0.72 * len(claims)))
    for _, r in data.iterrows():
        i, j = claims.index(r["claim"]), names.index(r["setting"])
        ax.add_patch(Rectangle((j, i), 1, 1, facecolor=VERDICT_COLOURS.get(r["verdict"], "#eeeeee"),
                               edgecolor="#555555", lw=0.8))
        lines = [r["verdict"]]
        if not pd.isna(r["n"]):
            lines.append(f"n = {r['n']}" + (f", {r['units']} {unit}" if not pd.isna(r["units"]) else ""))
        ax.text(j + 0.5, i + 0.5, "\n".join(lines), ha="center", va="center", fontsize=7.5)
    ax.set_xlim(0, len(names)), ax.set_ylim(len(claims), 0)
    ax.set_xticks(np.arange(len(names)) + 0.5, names, fontsize=8.5)
    ax.set_yticks(np.arange(len(claims)) + 0.5, claims, fontsize=8.5)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    shown = [v for v in VERDICT_COLOURS if v in set(data["verdict"])]
    ax.legend(handles=[Patch(facecolor=VERDICT_COLOURS[v], edgecolor="#555555", label=v) for v in shown],
              loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=len(shown), fontsize=8, frameon=False)
    unit_note = f"; '{unit}': the fewest independent units (source photographs, scenes) behind a cell" \
        if data["units"].notna().any() else ""
    ax.set_title((f"{title}: " if title else "") + f"verdict per claim and setting (n: fewest images{unit_note})",
                 fontsize=9, pad=24)
    fig.tight_layout()
    return fig, data


__all__ += ["verdict_matrix", "VERDICT_COLOURS"]
