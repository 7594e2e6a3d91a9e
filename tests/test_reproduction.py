"""liftcam.reproduction: the verdict rules on hand-made tables, a report built from a fixture folder of known
values (every number in it comes from the inputs), missing files give "not run", and a second run changes nothing."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from liftcam import reproduction as rp
from liftcam.plots import label

ROOT = Path(__file__).resolve().parents[1]
CLAIMS_FILE = ROOT / "data" / "paper_claims.yaml"
BASELINES = ["grad-cam", "grad-cam++", "xgrad-cam", "score-cam", "ablation-cam"]
METRICS = ["AD", "IC", "ADD", "deletion", "insertion"]
IMAGES = [f"img{i}" for i in range(12)]


@pytest.fixture(scope="module")
def claims():
    return rp.read_claims(CLAIMS_FILE)


def _by_id(claims, cid):
    return next(c for c in claims if c["id"] == cid)


def _table(decisions, n=12):
    return pd.DataFrame({"versus": "X", "metric": "m", "mean": 0.0, "low": 0.0, "high": 0.0, "n": n,
                         "reproduced": "", "side": "across", "decision": decisions})


# --------------------------------------------------------------------------------------------
# A fixture folder: the tables notebooks 02, 03, 05 and 06 write, with known values

def _prov(path: Path, **parameters):
    base = {"profile": "fixture", "model": "efficientnet_lite0", "layer": None, "images": "samples", "seed": 0}
    path.write_text(json.dumps({"parameters": {**base, **parameters}, "commit": "c0ffee" * 6 + "abcd",
                                "created": "2031-01-02T03:04:05+00:00"}))


def make_folder(folder: Path, *, lift_against: str | None = None, n: int = 12, gap: float = 0.01) -> Path:
    """Claim 1: SHAP-CAM for on every comparison; claim 3: LIFT-CAM too, except against ``lift_against`` on AD;
    claim 4: every interval contains 0; claim 2: LIFT-CAM beats LRP-CAM by ``gap`` and LIME-CAM by 0.2 in cosine."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for claim, method in [(1, "SHAP-CAM"), (3, "LIFT-CAM")]:
        for j, b in enumerate(BASELINES):
            for k, m in enumerate(METRICS):
                mean = 0.3 + 0.01 * j + 0.001 * k + (0.1 if claim == 3 else 0)
                low, high = mean - 0.2, mean + 0.2
                if claim == 3 and b == lift_against and m == "AD":
                    mean, low, high = -0.777, -0.888, -0.666
                rows.append({"claim": claim, "method": method, "baseline": label(b), "metric": m, "mean": mean,
                             "low": low, "high": high, "n": n, "n_nan": 0, "verdict": "x"})
    pd.DataFrame(rows).set_index(["claim", "method", "baseline", "metric"]).to_csv(folder / "faithfulness_claims.csv")
    _prov(folder / "faithfulness_claims.json", shap_nsamples=512, score_cam_images=7, pixels_per_step=4321, n_boot=300)
    pg = [{"method": "LIFT-CAM", "versus": label(b), "mean": 0.0123, "low": -0.0456, "high": 0.0789, "n": n,
           "n_nan": 0, "verdict": "undecided"} for b in BASELINES]
    pd.DataFrame(pg).set_index(["method", "versus"]).to_csv(folder / "pointing_game_claims.csv")
    _prov(folder / "pointing_game_claims.json", n_boot=300)
    per_image = []
    for i, img in enumerate(IMAGES[:n]):
        base = 0.5 + 0.01 * i
        for m, c in [("lift-cam", base + gap), ("lrp-cam", base), ("lime-cam", base + gap - 0.2)]:
            per_image.append({"method": m, "image": img, "cosine": c, "spearman": c, "relative error": 1 - c,
                              "top-k overlap": c, "seconds per image": 0.0})
    pd.DataFrame(per_image).to_csv(folder / "approximation_vs_time.data.csv")
    _prov(folder / "approximation_vs_time.json", shap_nsamples=512)
    quality = pd.DataFrame({"method": ["LIFT-CAM", "LRP-CAM", "LIME-CAM", "Grad-CAM", "Score-CAM", "Ablation-CAM",
                                       "SHAP-CAM"],
                            "images": n, "cosine": [0.9111, 0.9012, 0.7111, 0.1, 0.2, 0.3, np.nan],
                            "cosine low": [0.8222, 0.8, 0.6, 0.0, 0.1, 0.2, np.nan],
                            "cosine high": [0.9333, 0.95, 0.8, 0.2, 0.3, 0.4, np.nan],
                            "seconds per image": [0.0456, 0.04, 1.2345, 0.0321, 9.8765, 0.5678, 3.4567]})
    quality.set_index("method").to_csv(folder / "approximation_quality.csv")
    _prov(folder / "approximation_quality.json", shap_nsamples=512, timing_images=2, timing_repeats=3)
    pd.DataFrame({"nsamples": [256, 512], "seed": [0, 0], "image": ["img0", "img0"], "vs reference": [0.4, 0.3141],
                  "cosine vs reference": [0.9, 0.95], "seed-to-seed / sqrt 2": [0.35, 0.2718]}
                 ).to_csv(folder / "shap_convergence.data.csv")
    _prov(folder / "shap_convergence.json", shap_nsamples=512, convergence_reference=2048)
    return folder


def _input_numbers(folder: Path) -> set[str]:
    """Every number of the fixture's files, formatted as the report formats them."""
    found = set()
    for f in folder.iterdir():
        if f.suffix == ".csv":
            for v in pd.read_csv(f).select_dtypes("number").to_numpy().ravel():
                found.add(rp._fmt(float(v)))
        elif f.suffix == ".json":
            found |= {rp._fmt(float(v)) for v in re.findall(r"-?\d+\.\d+", f.read_text())}
    return found


# --------------------------------------------------------------------------------------------
# The rules

def test_decide_reads_the_interval_the_n_and_the_margin():
    assert rp.decide(0.1, 0.3, 10) == "for"
    assert rp.decide(-0.3, -0.1, 10) == "against"
    assert rp.decide(-0.1, 0.3, 10) == "undecided"
    assert rp.decide(0.1, 0.3, 9) == f"n < {rp.MIN_N}"           # no verdict below MIN_N, whatever the interval
    assert rp.decide(float("nan"), float("nan"), float("nan")) == "not run"
    assert rp.decide(0.01, 0.03, 50, margin=0.05) == "within ground-truth error"
    assert rp.decide(0.06, 0.09, 50, margin=0.05) == "for"
    assert rp.decide(0.06, 0.09, 50, margin=None) == "ground-truth error unknown"


def test_claim_verdict_rules(claims):
    c3 = _by_id(claims, "claim3")
    assert rp.claim_verdict(c3, _table(["for"] * 4))[0] == "holds"
    assert rp.claim_verdict(c3, _table(["for", "for", "against", "undecided"]))[0] == "contradicted"
    assert rp.claim_verdict(c3, _table(["for", "undecided"])) == ("not resolved", "intervals contain 0")
    verdict, why = rp.claim_verdict(c3, _table(["for", "n < 10"]))
    assert verdict == "not resolved" and "n < 10" in why
    assert rp.claim_verdict(c3, _table(["not run"] * 3))[0] == "not run"
    assert rp.claim_verdict(c3, _table(["for", "not run"])) == ("not resolved", "1 not run")
    assert rp.claim_verdict(_by_id(claims, "claim6"), _table([]))[0] == "not reproduced offline"
    assert rp.claim_verdict(_by_id(claims, "claim5"), _table([]), evidence_exists=False)[0] == "not run"


def test_the_claims_file_is_read_and_every_claim_has_a_rule(claims):
    paper = [c for c in claims if not c.get("own")]
    assert [c["id"] for c in paper] == [f"claim{i}" for i in range(1, 7)]
    kinds = [rp.claim_kind(c) for c in paper]
    assert kinds == ["faithfulness", "approximation", "faithfulness", "pointing", "qualitative", "offline"]
    assert [rp.claim_kind(c) for c in claims if c.get("own")] == ["approximation"]      # beyond1: the generic path
    assert all(c.get("settle") for c in claims)


# --------------------------------------------------------------------------------------------
# Verdicts from a fixture folder

def test_verdicts_from_known_tables(claims, tmp_path):
    s = rp.read_settings({"A": make_folder(tmp_path / "a", lift_against="score-cam")})
    v = rp.verdicts(claims, s, n_boot=50)["verdict"].xs("A", level="setting")
    assert v["claim1"] == "holds"                    # every paired interval above 0, n = 12
    assert v["claim3"] == "contradicted"             # one interval below 0
    assert v["claim4"] == "not resolved"             # every interval contains 0
    assert v["claim5"] == "not run"                  # no qualitative figure in the folder
    assert v["claim6"] == "not reproduced offline"
    # claim 2: LIFT-CAM ahead of LRP-CAM by 0.01 in cosine on every image, but the ground truth's own error
    # (1 - 0.95 at nsamples = 512) is larger than that gap
    assert v["claim2"] == "not resolved"
    comp = rp.comparisons(_by_id(claims, "claim2"), s[0], n_boot=50).set_index(["versus", "metric"])
    assert comp.loc[("LRP-CAM", "cosine"), "decision"] == "within ground-truth error"
    assert comp.loc[("LIME-CAM", "cosine"), "decision"] == "for"
    assert comp.loc[("Score-CAM", "seconds per image"), "decision"] == "for"
    assert comp.loc[("Grad-CAM (bound)", "seconds per image"), "decision"] == "no factor stated"
    assert rp.ground_truth_error(s[0])["margin"] == pytest.approx(0.05)


def test_claim2_holds_when_the_gap_clears_the_ground_truth_error(claims, tmp_path):
    s = rp.read_settings({"A": make_folder(tmp_path / "a", gap=0.1)})
    assert rp.verdicts([_by_id(claims, "claim2")], s, n_boot=50)["verdict"].iloc[0] == "holds"


def test_fewer_than_min_n_images_decide_nothing(claims, tmp_path):
    s = rp.read_settings({"A": make_folder(tmp_path / "a", lift_against="score-cam", n=rp.MIN_N - 1)})
    t = rp.verdicts(claims, s, n_boot=50).xs("A", level="setting")
    for cid in ["claim1", "claim2", "claim3", "claim4"]:
        assert t.loc[cid, "verdict"] == "not resolved" and t.loc[cid, "shown as"] == f"not resolved (n < {rp.MIN_N})"


def test_missing_files_give_not_run(claims, tmp_path):
    empty = rp.read_settings({"empty": tmp_path / "nothing-here"})
    t = rp.verdicts(claims, empty)
    own = sum(bool(c.get("own")) for c in claims)                       # this project's questions, after the paper's
    assert t["verdict"].tolist() == ["not run"] * 5 + ["not reproduced offline"] + ["not run"] * own
    text = rp.write_report(claims, empty, tmp_path / "REPORT.md")          # writes, does not crash
    assert "not run" in text and (tmp_path / "REPORT.md").read_text() == text
    # one table missing: that claim is not run, the others still read theirs
    folder = make_folder(tmp_path / "partial")
    (folder / "pointing_game_claims.csv").unlink()
    t = rp.verdicts(claims, rp.read_settings({"p": folder}), n_boot=50)["verdict"]
    assert t["claim4", "p"] == "not run" and t["claim1", "p"] == "holds"


# --------------------------------------------------------------------------------------------
# The report

def test_report_has_every_claim_and_setting_and_only_input_numbers(claims, tmp_path):
    a = make_folder(tmp_path / "a")
    b = make_folder(tmp_path / "b", lift_against="grad-cam")
    settings = rp.read_settings({"first": a, "second": b})
    text = rp.write_report(claims, settings, tmp_path / "REPORT.md", claims_file=CLAIMS_FILE, n_boot=50)
    # the verdict table: one row per claim, one column per setting
    table = text.split("## Verdicts")[1].split("\n\n")[1]
    header = table.splitlines()[0]
    assert "| first |" in header and "| second |" in header
    for c in claims:
        row = next(line for line in table.splitlines() if line.startswith(f"| {c['id']} |"))
        assert row.count("**") == 4, row                                     # a verdict in both setting columns
    assert "**contradicted**" in table and "**holds**" in table
    for c in claims:
        heading = f"### Question {c['id']} (" if c.get("own") else f"## Claim {c['id'][-1]}:"
        assert heading in text and c["settle"].strip() in text
    assert text.index("## Beyond the paper") > text.index("## Claim 6:") and "### Model randomisation" in text
    # values of the inputs appear as read, with their interval and n
    assert "0.300 [0.100, 0.500], n = 12" in text                  # SHAP-CAM vs Grad-CAM, AD
    assert "-0.777 [-0.888, -0.666], n = 12 → against" in text
    assert "0.046 s vs 9.877 s → for" in text
    assert "`c0ffee" in text and "2031-01-02T03:04:05+00:00" in text
    assert "| `pixels_per_step` |" in text and "| 4321 |" in text and "| 2048 |" in text
    # no decimal number that is not an input value, or one derived from them by the rules: the paired
    # differences of claim 2 (constant per image: 0.010 and 0.200) and the ground-truth margin 1 - 0.95
    allowed = _input_numbers(a) | _input_numbers(b) | {"0.010", "0.200", "0.050"}
    body = text.replace("2102.05228", "")                                  # the arXiv id
    stray = sorted({x for x in re.findall(r"-?\d+\.\d+", body) if x not in allowed})
    assert not stray, stray


def test_report_and_verdicts_are_deterministic(claims, tmp_path):
    settings = rp.read_settings({"A": make_folder(tmp_path / "a", lift_against="xgrad-cam")})
    first = rp.write_report(claims, settings, tmp_path / "REPORT.md", n_boot=50)
    t1 = rp.verdicts(claims, settings, n_boot=50)
    again = rp.read_settings({"A": tmp_path / "a"})
    assert rp.write_report(claims, again, tmp_path / "REPORT.md", n_boot=50) == first
    pd.testing.assert_frame_equal(rp.verdicts(claims, again, n_boot=50), t1)


def test_links_are_relative_to_the_report(claims, tmp_path):
    folder = make_folder(tmp_path / "figs")
    (folder / "faithfulness_claims.md").write_text("x")
    text = rp.write_report(claims, rp.read_settings({"A": folder}), tmp_path / "REPORT.md")
    assert "[faithfulness_claims.md](figs/faithfulness_claims.md)" in text
    assert "missing: `faithfulness.md`" in text
    assert str(tmp_path) not in text


def test_a_setting_column_splits_a_folder_into_settings(claims, tmp_path):
    folder = make_folder(tmp_path / "a")
    f = pd.read_csv(folder / "faithfulness_claims.csv")
    both = pd.concat([f.assign(setting="vgg16-shaped"), f.assign(setting="resnet50-shaped", mean=-1.0, low=-2.0, high=-0.5)])
    both.to_csv(folder / "faithfulness_claims.csv", index=False)
    settings = rp.read_settings({"demo": folder})
    assert [s.name for s in settings] == ["demo: resnet50-shaped", "demo: vgg16-shaped"]
    v = rp.verdicts(claims, settings, n_boot=50)["verdict"]
    assert v["claim1", "demo: vgg16-shaped"] == "holds" and v["claim1", "demo: resnet50-shaped"] == "contradicted"
    assert v["claim4", "demo: vgg16-shaped"] == v["claim4", "demo: resnet50-shaped"] == "not resolved"   # shared table


def test_claim2_times_come_from_notebook_07_when_it_ran(claims, tmp_path):
    folder = make_folder(tmp_path / "a")
    rows = [("method", "LIFT-CAM", "batch 1", 1, 9.0), ("method", "LIFT-CAM", "batched", 8, 0.05),
            ("method", "Grad-CAM", "batched", 8, 0.04), ("method", "Score-CAM", "batched", 2, 0.06),
            ("method", "Ablation-CAM", "batched", 2, 0.5), ("floor", "one forward pass", "batched", 8, 0.03)]
    pd.DataFrame(rows, columns=["row", "label", "call", "images", "seconds per image"]).set_index(
        ["row", "label", "call"]).to_csv(folder / "cost.csv")
    s = rp.read_settings({"A": folder})[0]
    t = rp.seconds_per_image(s)
    assert t["LIFT-CAM"] == 0.05 and "one forward pass" not in t       # the batched call, methods only
    comp = rp.comparisons(_by_id(claims, "claim2"), s, n_boot=50).set_index(["versus", "metric"])
    # 0.06 / 0.05 < 2: undecided from notebook 07's table, where notebook 03's (9.88 / 0.0456) said "for"
    assert comp.loc[("Score-CAM", "seconds per image"), "decision"] == "undecided"
    assert comp.loc[("Ablation-CAM", "seconds per image"), "decision"] == "for"           # 0.5 / 0.05 = 10


def test_beyond_the_paper_reads_road_and_sanity_tables(claims, tmp_path):
    """The section on this project's own questions: the ranking of the estimators, ROAD and the randomisation check,
    each read from its table (numbers as saved), "not run" where a setting lacks it."""
    folder = make_folder(tmp_path / "a")
    pd.DataFrame({"method": ["LIFT-CAM", "Grad-CAM"], "ROAD mean": [0.1234, 0.4321], "n": [5, 5]}).set_index(
        "method").to_csv(folder / "faithfulness_road.csv")
    pd.DataFrame({"stage": ["head", "head", "head + blocks.6", "head + blocks.6"], "method": ["LIFT-CAM", "XGrad-CAM"] * 2,
                  "depth": [1, 1, 2, 2], "images": 3, "compared": [3, 2, 3, 2], "spearman mean": [0.1111, 0.9222, 0.0, 0.7333],
                  "ssim mean": 0.5, "changed": [1.0, 0.0, 1.0, 0.0], "verdict": ["passes", "fails", "passes", "fails"]}
                 ).to_csv(folder / "sanity_randomisation.csv", index=False)
    text = rp.write_report(claims, rp.read_settings({"A": folder, "B": make_folder(tmp_path / "b")}), tmp_path / "R.md",
                           n_boot=50)
    beyond = text.split("## Beyond the paper")[1].split("## Deviations")[0]
    assert "best first: Grad-CAM 0.432 (n = 5), LIFT-CAM 0.123 (n = 5)" in beyond
    assert "fails: XGrad-CAM (Spearman 0.922, n = 2); passes: LIFT-CAM (Spearman 0.111, n = 3)" in beyond
    assert "at the deepest stage (head + blocks.6) failing: XGrad-CAM" in beyond
    assert "- B: not run." in beyond
    assert "| LIFT-CAM | 1. cosine 0.911, rel. error —, Spearman —; 0.046 s |" in beyond      # approximation_quality.csv
    assert "### Question beyond1 (" in beyond
