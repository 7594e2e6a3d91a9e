"""The evidence layer: family comparisons with Holm and a ground-truth margin, the reference's own error,
curves on a subset and the step check, and the profile's settings in the Makefile."""
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from liftcam import metrics

REPO = Path(__file__).resolve().parents[1]


def _family(a, b, metric="m", higher=True, **kw):
    df = pd.DataFrame({("a", metric): a, ("b", metric): b})
    return metrics.compare_family(df, "a", ["b"], {metric: higher}, n_boot=500, **kw).iloc[0]


def test_compare_family_decides_by_holm_and_no_verdict_below_ten():
    rng = np.random.default_rng(0)
    b = rng.normal(size=30)
    assert _family(b + 1.0, b)["verdict"] == "for"
    assert _family(b - 1.0, b)["verdict"] == "against"
    assert _family(b + 1.0, b, higher=False)["verdict"] == "against"          # lower is better
    assert _family(b[:9] + 1.0, b[:9])["verdict"] == "n < 10"
    noise = rng.normal(size=30)
    assert _family(b + noise, b)["verdict"] == "interval contains 0"
    assert _family(b + noise * 0.01, b + noise * 0.01)["verdict"] == "tie"          # identical on every image


def test_compare_family_holm_matches_hand_adjustment():
    rng = np.random.default_rng(1)
    base = rng.normal(size=40)
    df = pd.DataFrame({("a", "x"): base + 0.3, ("b", "x"): base + rng.normal(size=40) * 0.5,
                       ("c", "x"): base + rng.normal(size=40) * 0.5})
    fam = metrics.compare_family(df, "a", ["b", "c"], {"x": True}, n_boot=400, seed=3)
    p = fam["p"].to_numpy()
    lo, hi = np.argsort(p)
    expected = np.empty(2)
    expected[lo] = min(1, 2 * p[lo])
    expected[hi] = min(1, max(expected[lo], p[hi]))
    assert np.allclose(fam["p_holm"], expected)


def test_compare_family_margin_rule_and_clusters():
    rng = np.random.default_rng(2)
    b = rng.normal(size=40)
    a = b + 1.0
    assert _family(a, b, margins={("b", "m"): 0.34})["verdict"] == "within ground-truth error"   # 3 * 0.34 > 1
    assert _family(a, b, margins={("b", "m"): 0.33})["verdict"] == "for"
    assert _family(a, b, margins={("b", "m"): float("nan")})["verdict"] == "ground-truth error unknown"
    row = _family(a, b, clusters=np.repeat(np.arange(4), 10))
    assert row["n"] == 40 and row["n_clusters"] == 4 and row["verdict"] == "cannot be decided with 4 photographs, 6 needed"
    assert row["p_min"] == 2 / 16 and row["family"] == 1
    assert _family(a, b, clusters=np.repeat(np.arange(8), 5))["verdict"] == "for"


def test_sign_flip_known_answers():
    """G = 9 clusters all of one sign: 2 of 2^9 patterns are as extreme (all + and all -); G = 3: 2 of 8."""
    assert metrics.sign_flip_test(np.arange(1.0, 10.0)) == 2 / 512
    assert metrics.sign_flip_test(-np.arange(1.0, 10.0)) == 2 / 512
    assert metrics.sign_flip_test([1.0, 2.0, 3.0]) == 0.25
    # by cluster: 27 views of 3 photographs are 3 clusters, whatever the views say
    assert metrics.sign_flip_test(np.arange(1.0, 28.0), np.repeat([0, 1, 2], 9)) == 0.25
    # by hand, G = 3, means 1, 2, -2.5: |sum| = 0.5; patterns with |s . m| >= 0.5 are all but none below: 8 / 8
    assert metrics.sign_flip_test([1.0, 2.0, -2.5]) == 1.0
    # G = 4, means 3, 1, 1, 1 (|sum| 6): only +-(3, 1, 1, 1) reach 6, 2 / 16
    assert metrics.sign_flip_test([3.0, 1.0, 1.0, 1.0]) == 2 / 16
    assert np.isnan(metrics.sign_flip_test([float("nan")]))
    assert metrics.smallest_p(9) == 2 / 512 and metrics.smallest_p(3) == 0.25
    # above 20 clusters: seeded random patterns, p = (hits + 1) / (draws + 1) >= 1 / (draws + 1)
    p = metrics.sign_flip_test(np.ones(30), draws=999)
    assert p == 1 / 1000 and metrics.sign_flip_test(np.ones(30), draws=999, seed=1) == p


def test_sign_flip_matches_brute_force_enumeration():
    rng = np.random.default_rng(5)
    from itertools import product
    for G in (2, 5, 7):
        m = rng.normal(size=G)
        stats = [abs(np.dot(s, m)) for s in product([-1.0, 1.0], repeat=G)]
        expected = np.mean([t >= abs(m.sum()) - 1e-12 for t in stats])
        assert metrics.sign_flip_test(m) == expected


def _null_data_sets(n_sets, G=9, views=12, seed=0):
    """Paired differences under the null: a photograph's effect shared by its 12 views (correlated), plus noise."""
    rng = np.random.default_rng(seed)
    for _ in range(n_sets):
        yield np.repeat(rng.normal(size=G), views) + 0.5 * rng.normal(size=G * views)


def test_sign_flip_is_calibrated_with_nine_correlated_clusters():
    """Under the null, 9 photographs x 12 correlated views: p < 5% in at most 5% of 4000 seeded data sets.

    The bootstrap p-value this replaced (twice the smaller share of cluster-bootstrap means on either side
    of 0) rejects in about 10% of the same data sets, and gives p = 0 whenever all 9 clusters agree in sign."""
    clusters = np.repeat(np.arange(9), 12)
    data = list(_null_data_sets(4000))
    rate = np.mean([metrics.sign_flip_test(d, clusters) < 0.05 for d in data])
    assert 0.035 < rate <= 0.05                       # the exact level: 12 x 2 / 512 = 4.7%
    boot = []
    for i, d in enumerate(data[:1000]):
        means = metrics.statistics._bootstrap_means(d, clusters, 1000, i)
        boot.append(min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean())) < 0.05)
    assert np.mean(boot) > 0.07                        # what the old p-value did: anti-conservative


def test_family_records_g_smallest_p_family_and_cannot_be_decided():
    """G = 9 and a family of 25: 25 x 2 / 512 = 0.098 > 5%: no data could decide; 10 photographs would."""
    rng = np.random.default_rng(4)
    clusters = np.repeat(np.arange(9), 12)
    cols = {("a", f"m{i}"): rng.normal(size=108) + 5.0 for i in range(5)}
    cols |= {(b, f"m{i}"): rng.normal(size=108) for b in "bcdef" for i in range(5)}
    fam = metrics.compare_family(pd.DataFrame(cols), "a", list("bcdef"), {f"m{i}": True for i in range(5)},
                                 clusters=clusters, n_boot=200)
    assert (fam["family"] == 25).all() and (fam["n_clusters"] == 9).all() and (fam["p_min"] == 2 / 512).all()
    assert (fam["p"] == 2 / 512).all()                # every cluster for a
    assert (fam["verdict"] == "cannot be decided with 9 photographs, 10 needed").all()
    assert metrics.clusters_needed(25) == 10 and metrics.smallest_p(10) * 25 <= 0.05 < metrics.smallest_p(9) * 25
    # the same data, a family of 2: decided
    two = metrics.compare_family(pd.DataFrame(cols), "a", ["b", "c"], {"m0": True}, clusters=clusters, n_boot=200)
    assert (two["verdict"] == "for").all()


def test_effect_margin_equivalent_and_not_clear_of_the_margin():
    rng = np.random.default_rng(6)
    b = rng.normal(size=60)
    small = b + 0.002 + 0.0005 * rng.normal(size=60)
    assert _family(small, b, effect_margins={"m": 0.01})["verdict"] == "equivalent"
    assert _family(small, b)["verdict"] == "for"                                  # no margin: a +0.002 gap decides
    mid = b + 0.011 + 0.02 * rng.normal(size=60)                                 # interval straddles 0.01
    assert _family(mid, b, effect_margins={"m": 0.01})["verdict"] == "not clear of the margin"
    assert _family(b + 1.0, b, effect_margins={"m": 0.01})["verdict"] == "for"
    row = _family(b + 1.0, b, effect_margins={"m": 0.01})
    assert row["effect margin"] == 0.01


def test_relative_error_and_reference_error():
    ref = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert torch.allclose(metrics.relative_error(torch.tensor([[3.0, 0.0], [1.0, 0.0]]), ref), torch.tensor([0.8, 0.0]))
    coefs = {"a": torch.randn(6, 12, generator=torch.Generator().manual_seed(0)),
             "b": torch.randn(6, 12, generator=torch.Generator().manual_seed(1))}
    one = torch.randn(1, 6, 12)
    exact = metrics.reference_error(coefs, one, "a", ["b"], top_k=3, exact=True)
    assert len(exact) == 4 and all(v == metrics.agreement.EXACT_ERROR for v in exact.values())
    assert all(np.isnan(v) for v in metrics.reference_error(coefs, one, "a", ["b"], top_k=3).values())
    # two seeds: by hand, the advantage in relative error under each seed, spread / sqrt(2)
    seeds = torch.randn(2, 6, 12, generator=torch.Generator().manual_seed(2))
    got = metrics.reference_error(coefs, seeds, "a", ["b"], top_k=3)[("b", "relative error")]
    adv = torch.stack([metrics.relative_error(coefs["b"], s) - metrics.relative_error(coefs["a"], s) for s in seeds])
    assert got == pytest.approx(float((adv.std(0) / 2 ** 0.5).mean()), rel=1e-6)


def _model(x):                                          # p(class 0) = mean squared pixel value
    m = (x ** 2).mean((1, 2, 3))
    return torch.stack([m.log(), (1 - m).log()], 1)


def test_faithfulness_curve_images_covers_a_prefix():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    full = metrics.faithfulness(_model, x, maps, [0, 0, 0], pixels_per_step=8)
    part = metrics.faithfulness(_model, x, maps, [0, 0, 0], pixels_per_step=8, curve_images=2)
    assert torch.equal(full["AD"], part["AD"]) and torch.equal(full["ADD"], part["ADD"])
    assert torch.allclose(full["deletion"][:2], part["deletion"][:2]) and torch.isnan(part["deletion"][2])
    assert part["insertion_curves"].shape == (2, 9)


def test_step_sensitivity_coarse_auc_equals_a_run_at_the_coarse_step():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    maps = {"a": torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))}
    got = metrics.step_sensitivity(_model, x, maps, [0, 0], fine=4, coarse=16)
    for curve, fn in [("deletion", metrics.deletion), ("insertion", metrics.insertion)]:
        rows = got[got["curve"] == curve]
        assert np.allclose(rows["auc coarse"], fn(_model, x, maps["a"], [0, 0], pixels_per_step=16).numpy(), atol=1e-6)
        assert np.allclose(rows["auc fine"], fn(_model, x, maps["a"], [0, 0], pixels_per_step=4).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        metrics.step_sensitivity(_model, x, maps, [0, 0], fine=4, coarse=10)


@pytest.mark.parametrize("profile", ["demo", "quick"])
def test_make_runs_each_setting_chain_then_the_report(profile):
    """The Makefile reads the profile's settings: 01 once, the others per setting in order, 09 (the report) last."""
    out = subprocess.run(["make", "-n", "-B", "reproduce", f"PROFILE={profile}", "VENV=/nonexistent"], cwd=REPO,
                         capture_output=True, text=True).stdout
    runs = re.findall(r'"== notebooks/(\d\d)_\w+\.ipynb \((\w+)(?: (\w+))?\)"', out)
    import yaml
    settings = yaml.safe_load((REPO / "params" / f"{profile}.yaml").read_text())["settings"]
    per = sorted({p.name[:2] for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")} - {"01", "09"})
    assert runs[0] == ("01", profile, "") and runs[-1] == ("09", profile, "")
    assert runs[1:-1] == [(nb, profile, t) for t in settings for nb in per]
    for t in settings:
        assert (REPO / "params" / profile / f"{t}.yaml").is_file()
        assert f"-f params/{profile}/{t}.yaml" in out


def test_ties_are_recognised_on_the_maps():
    """Proportional coefficients give the same normalised maps; float32 rounding then moves their scores a little,
    so the tie is read from the maps (tied_by_maps) and forced in compare_family."""
    rng = np.random.default_rng(7)
    maps = rng.random((6, 4, 5))
    same = maps + 1e-6 * rng.random((6, 4, 5))
    other = maps.copy()
    other[2, 0, 0] += 0.1
    found = metrics.tied_by_maps({"a": maps, "b": same, "c": other, "d": same[:3]}, "a", ["b", "c", "d", "e"])
    assert found == {"b", "d"}                         # d covers a prefix of the images; e did not run
    b = rng.normal(size=40)
    rounded = b + 1e-4 * rng.normal(size=40)           # the same method's scores, moved by rounding
    assert _family(rounded, b)["verdict"] != "tie"
    assert _family(rounded, b, ties={"b"})["verdict"] == "tie"
