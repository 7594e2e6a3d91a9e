"""liftcam.timing: what is timed (warm-up excluded, order statistics) and what memory is counted."""
import time

import numpy as np
import pytest
import torch

from liftcam import timing


def test_measure_excludes_warmup_and_reports_order_statistics():
    calls = []
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])     # three timed calls: 3 s, 1 s, 2 s

    t = timing.measure(lambda: calls.append(1), repeats=3, warmup=2, clock=lambda: next(ticks))
    assert len(calls) == 5                                 # 2 warm-up + 3 timed
    assert t.times == [3.0, 1.0, 2.0]
    assert (t.median, t.min, t.max) == (2.0, 1.0, 3.0)
    assert timing.Timing([4.0, 1.0]).median == 2.5         # even count: the mean of the middle two


def test_interleaved_takes_turns_after_every_warmup():
    order = []
    ticks = iter(range(100))
    out = timing.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=2, warmup=1,
                             clock=lambda: float(next(ticks)))
    assert order == ["a", "b", "a", "b", "a", "b"]          # warm-ups first, then turns
    assert out["a"].times == [1.0, 1.0] and out["b"].times == [1.0, 1.0]


def test_measure_rejects_no_repeats():
    with pytest.raises(ValueError, match="repeats"):
        timing.measure(lambda: None, repeats=0)


def test_peak_memory_sees_a_transient_allocation_and_returns_the_result():
    def allocate():
        a = np.ones(200 * 2**20 // 8)                      # 200 MiB, touched, then freed
        return float(a[-1])

    m = timing.peak_memory(allocate, interval=0.001)
    assert m.result == 1.0
    assert 0 < m.seconds < 60                              # the call's own wall time
    assert m.rss >= 150 * 2**20
    assert m.cuda is None
    small = timing.peak_memory(lambda: torch.zeros(10).sum())
    assert small.rss < 50 * 2**20


def test_rss_tracks_held_memory():
    before = timing.rss()
    held = np.ones(100 * 2**20 // 8)
    assert timing.rss() - before >= 80 * 2**20
    del held


# --------------------------------------------------------------------------------------------
# The cost table of notebook 07

def test_method_floor_is_built_from_the_measured_pieces():
    pieces = {"forward": 0.5, "model per input": 0.25, "head per evaluation": 0.01}
    assert timing.method_floor("score-cam", 40, pieces) == ("K forward passes", 10.0)          # 40 x 0.25
    assert timing.method_floor("grad-cam", 40, pieces) == ("one forward pass", 0.5)
    assert timing.method_floor("ablation-cam", 40, pieces) == ("forward + 40 head evaluations", pytest.approx(0.9))
    assert timing.method_floor("lime-cam", 40, pieces) == ("forward + 40 head evaluations", pytest.approx(0.9))
    name, sec = timing.method_floor("lime-cam", 40, pieces, {"n_samples": 100})
    assert (name, sec) == ("forward + 100 head evaluations", pytest.approx(1.5))
    name, sec = timing.method_floor("shap-cam", 40, pieces, {"nsamples": 300})
    assert (name, sec) == ("forward + 300 head evaluations", pytest.approx(3.5))


def test_cost_table_times_every_method_at_batch_1_and_batched(resnet50):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    methods = ["grad-cam", "lift-cam", "ablation-cam"]
    df = timing.cost_table(resnet50, x, methods, batched=3, costly_batched=2, repeats=1, progress=False,
                           options={"ablation-cam": {"batch_size": 512}})
    m = df[df.row == "method"].set_index(["method", "call"])
    assert set(m.index) == {(a, c) for a in methods for c in ("batch 1", "batched")}
    assert m.loc[("grad-cam", "batched"), "images"] == 3 and m.loc[("ablation-cam", "batched"), "images"] == 2
    assert (m["x Grad-CAM"].loc["grad-cam"] == 1).all()
    np.testing.assert_allclose(m["x floor"], m["seconds per image"] / m["floor seconds per image"])
    K = df.attrs["K"]
    assert K == 2048
    floor = m.loc[("ablation-cam", "batch 1")]
    assert floor["floor"] == f"forward + {K} head evaluations"
    p = df.attrs["pieces"]
    assert floor["floor seconds per image"] == pytest.approx(p["forward"] + K * p["head per evaluation"])
    floors = df[df.row == "floor"]
    assert set(floors["method"]) == {"one forward pass", f"forward + {K} head evaluations"}
    assert (floors["seconds per image"] > 0).all()
    with pytest.raises(ValueError, match="at least one image"):
        timing.cost_table(resnet50, x[:0], methods, progress=False)


# --------------------------------------------------------------------------------------------
# One protocol for notebooks 03 and 07 (issue 22): every method warmed up, floors of the work done

def test_method_seconds_warms_up_every_method_so_a_first_call_cost_is_not_timed(resnet50, monkeypatch):
    """A method whose first call pays set-up (as LIME-CAM's imports) gets the same time as later calls."""
    seen = []

    def fake_explain(model, x, method, **_):
        seen.append((method, len(x)))
        time.sleep(0.3 if [m for m, _ in seen].count(method) == 1 else 0.01)   # first call: set-up

    monkeypatch.setattr(timing, "explain", fake_explain)
    x = torch.rand(2, 3, 32, 32)
    t = timing.method_seconds(resnet50, x, ["grad-cam", "lime-cam"], repeats=2, forward=True)
    assert list(t) == ["forward", "grad-cam", "lime-cam"]
    assert seen[0] == ("grad-cam", 2) and ("lime-cam", 1) in seen          # warm-ups before any timed call
    assert seen.index(("lime-cam", 1)) < seen.index(("lime-cam", 2))
    assert len(t["grad-cam"].times) == 2 and len(t["lime-cam"].times) == 1
    for m in ["grad-cam", "lime-cam"]:
        assert t[m].max < 0.1, m                                           # per image: 0.01 s / 2 images
    cold = timing.method_seconds(resnet50, x, ["xgrad-cam"], repeats=1, warmup=False)["xgrad-cam"]
    assert cold.median > 0.1                                               # what notebook 03 timed before
    with pytest.raises(ValueError, match="at least one image"):
        timing.method_seconds(resnet50, x[:0], ["grad-cam"])


def test_score_cam_floor_counts_the_passes_it_makes(small_photos):
    """Score-CAM skips constant maps: its floor counts the forward passes it actually runs."""
    import liftcam

    effnet = liftcam.models.load("efficientnet_lite0", layer="blocks.6.0.bn2")      # ReLU6 maps (conv_head)
    x = small_photos[:1]
    rows = []
    hook = effnet.register_forward_hook(lambda mod, inp, out: rows.append(len(inp[0])))
    try:
        liftcam.explain(effnet, x, method="score-cam", batch_size=512)
    finally:
        hook.remove()
    passes = timing.score_cam_passes(effnet, x)
    K = effnet.body(x[:1]).shape[1]
    assert 0 < passes < K                                                  # a ReLU6 layer zeroes some maps
    assert sum(rows) - len(x) == pytest.approx(passes * len(x), abs=2)     # minus the explained forward pass
    pieces = {"forward": 0.5, "model per input": 0.25, "head per evaluation": 0.01}
    name, sec = timing.method_floor("score-cam", K, pieces, passes=passes)
    assert sec == pytest.approx(passes * 0.25) and f"of {K}" in name
