"""liftcam.timing: what is timed (warm-up excluded, order statistics) and what memory is counted."""
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
    assert m.rss >= 150 * 2**20
    assert m.cuda is None
    small = timing.peak_memory(lambda: torch.zeros(10).sum())
    assert small.rss < 50 * 2**20


def test_rss_tracks_held_memory():
    before = timing.rss()
    held = np.ones(100 * 2**20 // 8)
    assert timing.rss() - before >= 80 * 2**20
    del held
