"""liftcam.plots: the overlay formula, the layouts, and what every figure promises: registry colours, only the
images every method explains, intervals where the legend says so, every drawn value in the data."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
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


def colourbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_grid_has_one_colourbar_for_the_unit_scale_and_a_title():
    x = torch.stack([photo(seed=0), photo(seed=1)])
    fig = plots.map_grid(x, {"Grad-CAM": torch.rand(2, 5, 4)}, ["a", "b"], title="T", note="numbers: probabilities")
    (bar,) = colourbars(fig)
    assert bar.get_ylim() == (0, 1) and "map value" in bar.get_ylabel()
    assert fig._suptitle.get_text() == "T" and "probabilities" in [t.get_text() for t in fig.texts][-1]
    plt.close(fig)


def test_gallery_draws_each_map_over_its_image_with_one_colourbar():
    x = torch.stack([photo(seed=i) for i in range(3)])
    m = torch.rand(3, 5, 4)
    fig = plots.map_gallery(x, m, ["a", "b", "c"], cols=2, title="SHAP-CAM")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4 and [ax.get_title() for ax in panels[:3]] == ["a", "b", "c"] and not panels[3].images
    np.testing.assert_allclose(panels[2].images[0].get_array(), plots.overlay(x[2], m[2]))
    assert len(colourbars(fig)) == 1 and colourbars(fig)[0].get_ylim() == (0, 1)
    with pytest.raises(ValueError, match="one map and one title"):
        plots.map_gallery(x, m[:2], ["a", "b", "c"])
    plt.close(fig)


def test_setting_names_the_model_layer_and_sign():
    assert plots.setting_title("efficientnet_lite0", "blocks.6", 9) == "EfficientNet-Lite0 at blocks.6 (signed maps), 9 images"
    assert plots.setting_title("vgg16", "features.29", 1) == "VGG16 at features.29, 1 image"
    assert plots.setting("my_net", "layer3", signed=True) == "my_net at layer3 (signed maps)"


def test_common_images_drop_unrun_methods_and_partial_rows():
    v = pd.DataFrame({"a": [1, 2, 3.0], "b": [1, np.nan, 3], "c": [np.nan] * 3}, index=["x", "y", "z"])
    kept, left_out = plots.common_images(v)
    assert list(kept.index) == ["x", "z"] and list(kept.columns) == ["a", "b"] and left_out == ["c"]


def per_image_curves():
    x = np.linspace(0, 1, 5)
    rows = []
    for m, k, imgs in [("grad-cam", 0.5, ["i0", "i1", "i2"]), ("lift-cam", 0.8, ["i0", "i1", "i2"]),
                       ("score-cam", 0.2, ["i0"])]:
        for j, img in enumerate(imgs):
            rows.append(pd.DataFrame({"method": m, "image": img, "fraction": x, "deletion": (1 - x) * k * (j + 1),
                                      "insertion": x * k * (j + 1)}))
    return pd.concat(rows, ignore_index=True), x


def test_curve_panels_average_only_the_common_images_in_registry_colours():
    curves, x = per_image_curves()
    fig, data = plots.curve_panels(curves, ["deletion", "insertion"], groups=["grad-cam", "lift-cam", "score-cam", "cam"],
                                   highlight=["lift-cam"], title="EfficientNet-Lite0 at blocks.6")
    left, right = fig.axes[:2]
    assert [ax.get_title() for ax in (left, right)] == ["deletion", "insertion"]
    g, l, sc = right.lines
    np.testing.assert_allclose(l.get_ydata(), x * 0.8)                  # image i0 only: the one Score-CAM has
    np.testing.assert_allclose(left.lines[0].get_ydata(), (1 - x) * 0.5)
    assert [ln.get_color() for ln in right.lines] == [plots.colour(m) for m in ["grad-cam", "lift-cam", "score-cam"]]
    assert l.get_linewidth() > g.get_linewidth()
    # the legend's numbers are the areas under the drawn curves, and its title says so
    legend = right.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["Grad-CAM (0.250 / 0.250)", "LIFT-CAM (0.400 / 0.400)",
                                                          "Score-CAM (0.100 / 0.100)"]
    assert "mean AUC" in legend.get_title().get_text()
    title = fig._suptitle.get_text()
    assert "n = 1 image " in title and "CAM" in title.split("not run on these images:")[1]  # "cam" had no rows
    assert set(data["n"]) == {1}
    np.testing.assert_allclose(data.loc[data["method"] == "lift-cam", "insertion"], x * 0.8)
    np.testing.assert_allclose(data.loc[data["method"] == "lift-cam", "insertion AUC"], 0.4)
    plt.close(fig)


def test_interval_plot_uses_common_images_and_draws_every_interval():
    values = pd.DataFrame({"grad-cam": [0.2, 0.4, 0.9], "score-cam": [0.6, 0.8, np.nan], "lime-cam": [np.nan] * 3},
                          index=["a", "b", "c"])
    fig, data = plots.interval_plot(values, reference=pd.Series([0.5, 0.5, 0.1], index=values.index),
                                    reference_label="box", xlim=(0, 1), n_boot=200, title="VGG16 at features.29",
                                    common=True)
    ax = fig.axes[0]
    rows = dict(zip(ax.get_yticks().tolist(), [t.get_text() for t in ax.get_yticklabels()]))
    assert rows == {2: "Grad-CAM (n = 2)", 1: "Score-CAM (n = 2)", 0: "box (n = 2)"}   # LIME-CAM (no image) left out
    assert "n = 2 images" in ax.get_title() and "LIME-CAM" in ax.get_title() and "VGG16" in ax.get_title()
    dots = [c for c in ax.collections if c.get_offsets().shape[0] == 2]
    assert sorted(np.asarray(dots[0].get_offsets())[:, 0].tolist()) == [0.2, 0.4]   # image c is not common
    assert dots[0].get_facecolor()[0][:3].tolist() == list(matplotlib.colors.to_rgb(plots.colour("grad-cam")))
    means = [(l.get_xdata()[0], l.get_ydata()[0]) for l in ax.lines if l.get_marker() == "D"]
    np.testing.assert_allclose(means, [(0.3, 2), (0.7, 1), (0.5, 0)])
    bars = [seg for c in ax.collections if hasattr(c, "get_segments") for seg in c.get_segments()]
    for method, y in [("grad-cam", 2), ("score-cam", 1)]:                 # every row has its interval, as the legend says
        low, high = data.loc[data["method"] == method, ["low", "high"]].iloc[0]
        assert low < high and any(np.allclose(seg, [[low, y], [high, y]]) for seg in bars)
    assert "interval" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert set(data["image"]) == {"a", "b"} and len(data) == 6 and set(data["n"]) == {2}
    jitter = data.loc[data["method"] == "grad-cam", "jitter"]
    assert jitter.nunique() == 2                                           # dots at equal values do not coincide
    assert ax.get_xlim() == (0, 1)
    plt.close(fig)


def test_agreement_vs_cost_keeps_every_row_but_draws_the_common_ones():
    idx = pd.MultiIndex.from_tuples([(m, i) for m in ["lift-cam", "grad-cam", "score-cam"] for i in "abc"][:-2],
                                    names=["method", "image"])
    per_image = pd.DataFrame({"cosine": np.linspace(0.1, 0.7, 7), "map pearson": np.linspace(0.2, 0.8, 7)}, index=idx)
    seconds = {"lift-cam": 0.03, "grad-cam": 0.031, "score-cam": 10.0, "shap-cam": 3.0}
    fig, data = plots.agreement_vs_cost(per_image, seconds, [("cosine", "cos"), ("map pearson", "r")],
                                        reference=("SHAP-CAM", 3.0), n_boot=100)
    assert len(data) == 7 and data["drawn"].sum() == 3 and set(data.loc[data["drawn"], "image"]) == {"a"}
    assert set(data["seconds per image"]) == {0.03, 0.031, 10.0} and set(data["reference line (s)"]) == {3.0}
    ax = fig.axes[0]
    at = {c.get_label(): c.lines[0].get_xdata()[0] for c in ax.containers}
    assert at == {plots.label(m): seconds[m] for m in ["lift-cam", "grad-cam", "score-cam"]}   # at the measured times
    tags = {t.get_text(): t for t in ax.texts if t.get_text() in at}
    assert tags["LIFT-CAM"].xyann[1] != tags["Grad-CAM"].xyann[1]          # near-equal times: labels apart
    means = {c.get_label(): c.lines[0].get_color() for c in ax.containers}
    assert means == {plots.label(m): plots.colour(m) for m in ["lift-cam", "grad-cam", "score-cam"]}
    assert "n = 1 image " in fig._suptitle.get_text()
    np.testing.assert_allclose(data.loc[data["method"] == "grad-cam", "cosine mean"], per_image.loc[("grad-cam", "a"), "cosine"])
    plt.close(fig)


def test_convergence_panels_put_the_reference_lines_in_the_data():
    runs = pd.DataFrame({"nsamples": [64, 64, 256, 256], "seed": [0, 1, 0, 1], "image": "a",
                         "vs reference": [0.4, 0.5, 0.2, 0.25], "cosine vs reference": [0.9, 0.88, 0.97, 0.96]})
    spread = pd.DataFrame({"nsamples": [64, 256], "image": "a", "seed-to-seed / sqrt 2": [0.3, 0.15]})
    cos_to = pd.DataFrame({"lift-cam": [0.8, 0.9], "lrp-cam": [0.79, 0.91]}, index=pd.Index([64, 256], name="nsamples"))
    fig, data = plots.convergence_panels(runs, spread, {"lift-cam": 0.3, "lrp-cam": 0.6}, cos_to,
                                         {"lift-cam": 0.95, "lrp-cam": 0.97}, budget=256, reference=1024, title="T")
    ref = data[data["series"] == "lift-cam vs reference"]
    assert set(ref["y"]) == {0.3, 0.95} and ref["x"].isna().all()     # both horizontal lines of LIFT-CAM
    assert data.loc[data["series"] == "budget used (shap_nsamples)", "x"].tolist() == [256]
    est = data[data["series"] == "estimate"]
    assert len(est) == 4 and est["nsamples"].notna().all() and data.loc[data["series"] != "estimate", "nsamples"].isna().all()
    ax, bx = fig.axes[:2]
    hlines = {(l.get_color(), l.get_ydata()[0]) for l in ax.lines + bx.lines
              if l.get_linestyle() == "--" and len(set(l.get_ydata())) == 1}
    assert (plots.colour("lift-cam"), 0.3) in hlines and (plots.colour("lrp-cam"), 0.97) in hlines
    assert "T" in fig._suptitle.get_text()
    plt.close(fig)


def test_convergence_panels_titles_apart_and_legends_inside_the_figure():
    """shap_convergence.png had overlapping panel titles and a legend cut at the figure's edge (issue 22)."""
    runs = pd.DataFrame({"nsamples": [4096, 4096, 16384, 16384], "seed": [0, 1, 0, 1], "image": "a",
                         "vs reference": [0.4, 0.5, 0.2, 0.25], "cosine vs reference": [0.9, 0.88, 0.97, 0.96]})
    spread = pd.DataFrame({"nsamples": [4096, 16384], "image": "a", "seed-to-seed / sqrt 2": [0.3, 0.15]})
    methods = ["lift-cam", "lrp-cam", "ablation-cam"]
    cos_to = pd.DataFrame({m: [0.8, 0.9] for m in methods}, index=pd.Index([4096, 16384], name="nsamples"))
    fig, data = plots.convergence_panels(runs, spread, dict.fromkeys(methods, 0.3), cos_to, dict.fromkeys(methods, 0.95),
                                         budget=16384, reference="independent reference: mean of 4 seed(s) at "
                                         "nsamples = 65536, seeds no estimate uses", floor=0.1, reference_error=0.05,
                                         ground_truth=0.12, title="EfficientNet-Lite0 at blocks.6.0.bn2")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ax, bx = fig.axes[:2]
    a, b = ax.title.get_window_extent(r), bx.title.get_window_extent(r)
    assert a.x1 < b.x0, (a, b)                                         # the two panel titles do not overlap
    whole = fig.bbox
    for leg in (ax.get_legend(), bx.get_legend()):
        e = leg.get_window_extent(r)
        assert e.x0 >= whole.x0 and e.x1 <= whole.x1 and e.y0 >= whole.y0, (e, whole)   # nothing cut
    assert a.y1 <= fig._suptitle.get_window_extent(r).y0 + 1            # titles below the figure title
    assert data.loc[data["series"] == "reference's own error", "y"].tolist() == [0.05]
    assert data.loc[data["series"] == "ground truth vs reference", ["x", "y"]].values.tolist() == [[16384, 0.12]]
    plt.close(fig)


def test_interval_plot_draws_each_method_on_its_own_images_and_refuses_an_empty_figure():
    """The pointing-game figure showed 3 common images where the verdicts use 45-46, or none at all (issue 22)."""
    values = pd.DataFrame({"lift-cam": [0.2, 0.4, 0.9, 0.5], "score-cam": [0.6, np.nan, np.nan, np.nan]},
                          index=list("abcd"))
    fig, data = plots.interval_plot(values, n_boot=100)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["LIFT-CAM (n = 4)", "Score-CAM (n = 1)"]
    assert data.groupby("method")["n"].first().to_dict() == {"lift-cam": 4, "score-cam": 1}
    assert "each row on the images its method is scored on" in ax.get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="nothing to draw"):
        plots.interval_plot(values.assign(**{"lift-cam": np.nan, "score-cam": np.nan}))
    with pytest.raises(ValueError, match="nothing to draw"):
        plots.interval_plot(values.iloc[:0])


def test_an_empty_map_is_drawn_as_empty_with_a_label():
    """An all-zero map over a dimmed photograph looked like a weak map (qualitative_maps.png, issue 22)."""
    x = torch.stack([photo(seed=0), photo(seed=1)])
    m = torch.rand(2, 5, 4)
    m[1] = 0
    fig = plots.map_grid(x, {"Grad-CAM": m}, ["a", "b"])
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [t.get_text() for t in axes[1].texts] == [] and [t.get_text() for t in axes[3].texts] == [plots.EMPTY_LABEL]
    assert np.allclose(axes[3].images[0].get_array(), 0.97)                # no photograph behind it
    plt.close(fig)
    fig = plots.map_gallery(x, m, ["a", "b"])
    assert [t.get_text() for t in fig.axes[1].texts] == [plots.EMPTY_LABEL]
    plt.close(fig)


def test_save_figure_refuses_an_empty_data_file(tmp_path):
    """figures/<setting>/pointing_game.png was written blank beside an empty .data.csv (issue 22)."""
    from liftcam import report

    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="data is empty"):
        report.save_figure(fig, tmp_path / "blank", {}, data=pd.DataFrame(columns=["method", "value"]))
    assert not list(tmp_path.iterdir())
    report.save_figure(fig, tmp_path / "drawn", {}, data=pd.DataFrame({"value": [1.0]}))
    assert (tmp_path / "drawn.data.csv").is_file()
    plt.close(fig)
def test_verdict_matrix_colours_each_cell_by_its_verdict_with_n_and_units():
    from types import SimpleNamespace

    import matplotlib.colors as mcolors

    table = pd.DataFrame({"claim": ["claim1", "claim1", "claim4", "claim4"], "setting": ["a", "b", "a", "b"],
                          "metric": ["AD, IC", "AD, IC", "pointing", "pointing"],
                          "verdict": ["holds", "contradicted", "not resolved", "not run"],
                          "n": pd.array([10, 500, 6, None], dtype="Int64")}).set_index(["claim", "setting"])
    faith = pd.DataFrame({"claim": [1, 1, 3], "n_clusters": [9, 8, 2]})
    settings = [SimpleNamespace(name="a", tables={"faithfulness_claims": faith,
                                                  "pointing_game_claims": pd.DataFrame({"n_clusters": [3, 4]})}),
                SimpleNamespace(name="b", tables={})]
    fig, data = plots.verdict_matrix(table, settings=settings)
    units = lambda d: [None if pd.isna(v) else int(v) for v in d["units"]]   # noqa: E731
    assert units(data) == [8, None, 3, None]                 # claim 3's rows are not claim 1's; b records none
    ax = fig.axes[0]
    faces = [mcolors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert faces == [plots.VERDICT_COLOURS[v] for v in table["verdict"]]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["holds\nn = 10, 8 independent", "contradicted\nn = 500", "not resolved\nn = 6, 3 independent",
                     "not run"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    _, given = plots.verdict_matrix(table, units={"a": 9, ("claim1", "b"): 500})
    assert units(given) == [9, 500, 9, None]
    plt.close("all")
    with pytest.raises(ValueError, match="verdict table is empty"):
        plots.verdict_matrix(table.iloc[:0])
