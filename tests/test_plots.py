"""liftcam.plots: the overlay formula at its end points, and the grid's layout."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from liftcam import plots


def photo(H=5, W=4, seed=0):
    return torch.rand(3, H, W, generator=torch.Generator().manual_seed(seed))


def test_zero_map_shows_the_dimmed_photograph():
    x = photo()
    out = plots.overlay(x, torch.zeros(5, 4), dim=0.6)
    np.testing.assert_allclose(out, 0.6 * x.permute(1, 2, 0).double().numpy(), atol=1e-12)


def test_full_map_at_full_alpha_is_the_colour_of_one():
    out = plots.overlay(photo(), torch.ones(5, 4), alpha=1.0, cmap="jet")
    top = np.array(matplotlib.colormaps["jet"](1.0)[:3])                  # dark red
    np.testing.assert_allclose(out, np.broadcast_to(top, out.shape), atol=1e-12)


def test_overlay_blends_per_pixel_and_stays_in_range():
    x = photo()
    m = torch.linspace(0, 1, 20).view(5, 4)
    out = plots.overlay(x.permute(1, 2, 0).numpy(), m, alpha=0.5, dim=1.0)   # (H, W, 3) input works too
    assert out.shape == (5, 4, 3) and out.min() >= 0 and out.max() <= 1
    i, j = 3, 2                                                            # one pixel by hand
    w = 0.5 * float(m[i, j])
    want = (1 - w) * x[:, i, j].double().numpy() + w * np.array(matplotlib.colormaps["jet"](float(m[i, j]))[:3])
    np.testing.assert_allclose(out[i, j], want, atol=1e-12)


def test_overlay_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        plots.overlay(photo(), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="image must be"):
        plots.overlay(torch.zeros(2, 5, 4), torch.zeros(5, 4))


def test_grid_has_a_row_per_image_and_marks_missing_maps():
    x = torch.stack([photo(seed=0), photo(seed=1)])
    m = torch.rand(2, 5, 4)
    fig = plots.map_grid(x, {"Grad-CAM": m, "Score-CAM": m[:1], "LIFT-CAM": None}, ["a", "b"])
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][:8]
    assert [ax.get_title() for ax in axes[:4]] == ["image", "Grad-CAM", "Score-CAM", "LIFT-CAM"]
    assert axes[0].get_ylabel() == "a" and axes[4].get_ylabel() == "b"
    texts = [[t.get_text() for t in ax.texts] for ax in axes]
    assert texts[1] == [] and texts[2] == [] and texts[6] == ["not\ncomputed"] and texts[7] == ["not\ncomputed"]
    np.testing.assert_allclose(axes[5].images[0].get_array(), plots.overlay(x[1], m[1]))
    plt.close(fig)


def test_labels_are_the_published_names():
    assert plots.label("lift-cam") == "LIFT-CAM" and plots.label("grad-cam++") == "Grad-CAM++"
    assert plots.label("new-cam") == "new-cam"


def test_map_summary_by_hand():
    m = torch.zeros(2, 3, 4)
    m[0, 2, 1] = 1.0                                                       # one hot pixel at row 2, column 1
    m[0, 0, 3] = 0.5
    got = plots.map_summary(m)
    assert got["peak_row"] == [2, 0] and got["peak_col"] == [1, 0]        # a zero map peaks at its first pixel
    np.testing.assert_allclose(got["mean"], [1.5 / 12, 0.0])
    np.testing.assert_allclose(got["area_50"], [2 / 12, 0.0])
    # centre of mass of the first map: rows (2 * 1 + 0 * 0.5) / 1.5, columns (1 * 1 + 3 * 0.5) / 1.5
    np.testing.assert_allclose([got["centroid_row"][0], got["centroid_col"][0]], [4 / 3, 2.5 / 1.5])
    assert np.isnan(got["centroid_row"][1])


def test_curve_panels_draw_each_group_in_each_panel():
    import pandas as pd

    x = np.linspace(0, 1, 5)
    curves = pd.concat([pd.DataFrame({"method": m, "fraction": x, "deletion": (1 - x) * k, "insertion": x * k})
                        for m, k in [("grad-cam", 0.5), ("lift-cam", 0.8)]])
    fig = plots.curve_panels(curves, ["deletion", "insertion"], {"lift-cam": "LIFT-CAM (0.4)"}, highlight=["lift-cam"])
    left, right = fig.axes[:2]
    assert [ax.get_title() for ax in (left, right)] == ["deletion", "insertion"]
    (g, l) = right.lines
    np.testing.assert_allclose(l.get_ydata(), x * 0.8)                  # insertion of lift-cam, in the right panel
    np.testing.assert_allclose(left.lines[0].get_ydata(), (1 - x) * 0.5)
    assert l.get_linewidth() > g.get_linewidth() and l.get_color() == plots.COLOURS["lift-cam"]
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["Grad-CAM", "LIFT-CAM (0.4)"]
    plt.close(fig)


def test_interval_plot_marks_each_mean_with_its_interval():
    import pandas as pd

    values = pd.DataFrame({"grad-cam": [0.2, 0.4, np.nan], "lift-cam": [0.6, 0.8, 1.0]})
    summary = {"grad-cam": {"mean": 0.3, "low": 0.2, "high": 0.4, "n": 2},
               "lift-cam": {"mean": 0.8, "low": 0.6, "high": 1.0, "n": 3}}
    fig = plots.interval_plot(values, summary, reference=pd.Series([0.5, 0.5, 0.5]), reference_label="box",
                              xlim=(0, 1))
    ax = fig.axes[0]
    rows = dict(zip(ax.get_yticks().tolist(), [t.get_text() for t in ax.get_yticklabels()]))
    assert rows == {2: "Grad-CAM (n=2)", 1: "LIFT-CAM (n=3)", 0: "box"}   # top to bottom, reference last
    dots = [c.get_offsets() for c in ax.collections if c.get_offsets().shape[1] == 2 and len(c.get_offsets()) in (2, 3)]
    assert sorted(np.asarray(dots[0])[:, 0].tolist()) == [0.2, 0.4]     # NaN left out; top row is Grad-CAM
    means = [(l.get_xdata()[0], l.get_ydata()[0]) for l in ax.lines if l.get_marker() == "D"]
    assert means == [(0.3, 2), (0.8, 1), (0.5, 0)]
    bars = [seg for c in ax.collections if hasattr(c, "get_segments") for seg in c.get_segments()]
    assert any(np.allclose(seg, [[0.2, 2], [0.4, 2]]) for seg in bars)  # Grad-CAM's interval
    assert ax.get_xlim() == (0, 1)
    plt.close(fig)
