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
    assert _family(b + noise * 0.01, b + noise * 0.01)["verdict"] == "undecided"


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
    assert row["n"] == 40 and row["n_clusters"] == 4 and row["verdict"] == "photographs < 5"
    assert _family(a, b, clusters=np.repeat(np.arange(8), 5))["verdict"] == "for"


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
    runs = re.findall(r'echo "== notebooks/(\d\d)_\w+\.ipynb \((\w+)(?: (\w+))?\)"', out)
    import yaml
    settings = yaml.safe_load((REPO / "params" / f"{profile}.yaml").read_text())["settings"]
    per = sorted({p.name[:2] for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")} - {"01", "09"})
    assert runs[0] == ("01", profile, "") and runs[-1] == ("09", profile, "")
    assert runs[1:-1] == [(nb, profile, t) for t in settings for nb in per]
    for t in settings:
        assert (REPO / "params" / profile / f"{t}.yaml").is_file()
        assert f"-f params/{profile}/{t}.yaml" in out
