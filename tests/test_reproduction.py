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
    assert rp.decide(-0.1, 0.3, 10) == "interval contains 0"
    assert rp.decide(0.1, 0.3, 9) == f"n < {rp.MIN_N}"           # no verdict below MIN_N, whatever the interval
    assert rp.decide(float("nan"), float("nan"), float("nan")) == "not run"
    assert rp.decide(0.01, 0.03, 50, margin=0.05) == "within ground-truth error"
    assert rp.decide(0.06, 0.09, 50, margin=0.05) == "for"
    assert rp.decide(0.06, 0.09, 50, margin=None) == "ground-truth error unknown"


def test_claim_verdict_rules(claims):
    c3 = _by_id(claims, "claim3")
    assert rp.claim_verdict(c3, _table(["for"] * 4))[0] == "holds"
    assert rp.claim_verdict(c3, _table(["for", "for", "against", "interval contains 0"]))[0] == "contradicted"
    assert rp.claim_verdict(c3, _table(["for", "interval contains 0"])) == ("not resolved", "interval contains 0: 1 of 2")
    # the reasons say what stopped each comparison, most frequent first, with the counts
    why = rp.claim_verdict(c3, _table(["tie", "equivalent", "tie", "cannot be decided with 9 photographs, 10 needed"]))
    assert why == ("not resolved", "tie: 2 of 4; equivalent: 1 of 4; cannot be decided with 9 photographs, 10 needed: "
                                   "1 of 4")
    assert rp.claim_verdict(c3, _table(["tie"] * 3)) == ("not resolved", "tie")
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
        assert t.loc[cid, "verdict"] == "not resolved" and t.loc[cid, "shown as"].startswith(f"not resolved (n < {rp.MIN_N}")


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
    both = pd.concat([f.assign(setting="conv-head"), f.assign(setting="linear-head", mean=-1.0, low=-2.0, high=-0.5)])
    both.to_csv(folder / "faithfulness_claims.csv", index=False)
    settings = rp.read_settings({"demo": folder})
    assert [s.name for s in settings] == ["demo: conv-head", "demo: linear-head"]
    v = rp.verdicts(claims, settings, n_boot=50)["verdict"]
    assert v["claim1", "demo: conv-head"] == "holds" and v["claim1", "demo: linear-head"] == "contradicted"
    assert v["claim4", "demo: conv-head"] == v["claim4", "demo: linear-head"] == "not resolved"   # shared table


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
    # 0.06 / 0.05 < 2: not decided from notebook 07's table, where notebook 03's (9.88 / 0.0456) said "for"
    assert comp.loc[("Score-CAM", "seconds per image"), "decision"] == "within a factor of 2"
    assert comp.loc[("Ablation-CAM", "seconds per image"), "decision"] == "for"           # 0.5 / 0.05 = 10


# --------------------------------------------------------------------------------------------
# Sign-flip tables: decided here with the claims file's margins; G, smallest p and family shown

def _signflip_folder(folder: Path, claims, *, photographs=9, views=12, lift_gap=5.0, pointing_gap=0.002) -> Path:
    """Tables as notebooks 05 and 06 write them now (compare_family with sign-flip p-values), from known per-image data."""
    from liftcam import metrics

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = photographs * views
    clusters = np.repeat(np.arange(photographs), views)
    cols = {}
    for b in BASELINES:
        for m in METRICS:
            cols[(b, m)] = rng.normal(size=n) + 50.0
            cols[("lift-cam", m)] = cols.get(("lift-cam", m), rng.normal(size=n) + 50.0)
    for m in METRICS:                                # LIFT-CAM better by lift_gap whatever the direction
        cols[("lift-cam", m)] = cols[("grad-cam", m)] + (lift_gap if metrics.HIGHER_IS_BETTER[m] else -lift_gap)
        cols[("shap-cam", m)] = cols[("lift-cam", m)]
    df = pd.DataFrame(cols)
    dirs = {m: metrics.HIGHER_IS_BETTER[m] for m in METRICS}
    fam = pd.concat([metrics.compare_family(df, a, BASELINES, dirs, clusters=clusters, n_boot=100).assign(claim=c)
                     for c, a in [(1, "shap-cam"), (3, "lift-cam")]], ignore_index=True)
    fam = fam.rename(columns={"versus": "baseline"})
    fam["method"], fam["baseline"] = fam["method"].map(label), fam["baseline"].map(label)
    fam.set_index(["claim", "method", "baseline", "metric"]).to_csv(folder / "faithfulness_claims.csv")
    _prov(folder / "faithfulness_claims.json", n_boot=100)
    base = rng.uniform(0.2, 0.6, size=n)
    pg = pd.DataFrame({(b, "pointing"): base for b in BASELINES} | {("lift-cam", "pointing"): base + pointing_gap})
    for rule, stem in [(None, "pointing_game_claims"), ("empty maps score 0", "pointing_game_claims_sensitivity")]:
        c = metrics.compare_family(pg if rule is None else pg.assign(**{}), "lift-cam", BASELINES, {"pointing": True},
                                   clusters=clusters, n_boot=100)
        c["method"], c["versus"] = c["method"].map(label), c["versus"].map(label)
        c = c.drop(columns="metric")
        if rule:
            c["rule"] = rule
        c.set_index(["method", "versus"]).to_csv(folder / f"{stem}.csv")
        _prov(folder / f"{stem}.json", n_boot=100)
    return folder


def test_signflip_tables_are_decided_with_the_claims_margins(claims, tmp_path):
    nine = rp.read_settings({"nine": _signflip_folder(tmp_path / "nine", claims)})
    t = rp.verdicts(claims, nine, n_boot=50).xs("nine", level="setting")
    # 9 photographs, a family of 25: 25 x 2 / 512 > 5%: no data could decide claims 1 and 3; 10 photographs would
    assert t.loc["claim3", "shown as"] == "not resolved (cannot be decided with 9 photographs, 10 needed)"
    # the cell shows G, the smallest attainable p and the family size
    assert "G = 9" in t.loc["claim3", "reproduced"] and "smallest p = 0.0039" in t.loc["claim3", "reproduced"]
    assert "family = 25" in t.loc["claim3", "reproduced"]
    # claim 4, a family of 5: decidable with 9 photographs (5 x 2 / 512 < 5%), but a +0.002 gap is inside the
    # pointing margin (0.01): equivalent, not "for"
    comp = rp.comparisons(_by_id(claims, "claim4"), nine[0])
    assert set(comp["decision"]) == {"equivalent"} and set(comp["family"]) == {5}
    assert t.loc["claim4", "shown as"] == "not resolved (equivalent)"
    # the sensitivity row: the same claim under the other rule for empty maps, read from its own table
    assert "claim4 (sensitivity)" in t.index and "empty maps score 0" in t.loc["claim4 (sensitivity)", "metric"]
    # 12 photographs (25 x 2 / 4096 < 5%): decided, and gaps beyond the margin hold
    twelve = rp.read_settings({"twelve": _signflip_folder(tmp_path / "twelve", claims, photographs=12, views=2,
                                                          pointing_gap=0.05)})
    t = rp.verdicts(claims, twelve, n_boot=50).xs("twelve", level="setting")
    assert t.loc["claim4", "verdict"] == "holds" and t.loc["claim3", "verdict"] == "holds"
    assert "G = 12" in t.loc["claim3", "reproduced"] and "smallest p = 0.0005" in t.loc["claim3", "reproduced"]


def test_a_tie_by_construction_is_called_a_tie(claims, tmp_path):
    folder = _signflip_folder(tmp_path / "tie", claims, photographs=12, views=2, pointing_gap=0.0)
    comp = rp.comparisons(_by_id(claims, "claim4"), rp.read_settings({"t": folder})[0])
    assert set(comp["decision"]) == {"tie"}
    assert rp.claim_verdict(_by_id(claims, "claim4"), comp) == ("not resolved", "tie")


def test_every_metric_of_the_claims_file_has_a_margin(claims, tmp_path):
    for c in claims:
        for m in c["metrics"]:
            assert "margin" in m and (m["margin"] is None or m["margin"] > 0), (c["id"], m)
    bad = tmp_path / "claims.yaml"
    bad.write_text("claims:\n  - {id: x, metrics: [{name: AD, better: lower}]}\n")
    with pytest.raises(ValueError, match="no margin"):
        rp.read_claims(bad)


def test_readme_outcome_block_is_generated_from_the_verdict_table(claims, tmp_path):
    s = rp.read_settings({"A": make_folder(tmp_path / "a", lift_against="score-cam")})
    table = rp.verdicts(claims, s, n_boot=50)
    lines = rp.outcome_lines(table)
    assert len(lines) == len(claims) and lines[2] == "- **Claim 3**: A: contradicted."
    readme = tmp_path / "README.md"
    start, end = rp.OUTCOME_MARKERS
    readme.write_text(f"# Title\n\nintro\n{start}\nstale line\n{end}\nrest\n")
    rp.write_outcome(readme, lines)
    text = readme.read_text()
    block = text.split(start)[1].split(end)[0]
    assert block.strip("\n").splitlines() == lines                   # exactly what the table gives, nothing stale
    assert text.startswith("# Title\n\nintro\n") and text.endswith(f"{end}\nrest\n")
    assert rp.write_outcome(readme, lines) == text                   # a second run changes nothing
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="outcome"):
        rp.write_outcome(readme, lines)


def test_paper_profiles_can_settle_claim2(claims):
    """Several seeds (the ground truth's own error is known), and the settle text sends readers to VGG16's
    non-linear head, not to ResNet50's linear one, where LIFT-CAM and LRP-CAM tie by construction."""
    import yaml

    for name in ("vgg16", "resnet50"):
        params = yaml.safe_load((ROOT / "params" / f"{name}.yaml").read_text())
        assert params.get("shap_seeds", 1) >= 4, name
        assert params["convergence_reference"] > params["shap_nsamples"], name
    settle = _by_id(claims, "claim2")["settle"]
    assert settle.startswith("VGG16's non-linear head") and "PROFILE=vgg16" in settle and "PROFILE=resnet50" not in settle


def test_the_readme_outcome_matches_the_committed_verdicts():
    """README's outcome block (once it has the markers) is what outcome_lines gives from figures/reproduction_verdicts.csv."""
    text = (ROOT / "README.md").read_text()
    start, end = rp.OUTCOME_MARKERS
    if start not in text:
        pytest.skip("README.md has no outcome markers yet")
    table = pd.read_csv(ROOT / "figures" / "reproduction_verdicts.csv").set_index(["claim", "setting"])
    assert text.split(start)[1].split(end)[0].strip("\n").splitlines() == rp.outcome_lines(table)
def test_the_report_opens_with_the_verdict_matrix_where_notebook_08_drew_it(claims, tmp_path):
    figures = tmp_path / "figures"
    settings = rp.read_settings({"A": make_folder(figures / "A"), "B": make_folder(figures / "B")})
    out = tmp_path / "REPORT.md"
    assert "verdict_matrix" not in rp.write_report(claims, settings, out, n_boot=50)     # not drawn: no link
    (figures / "verdict_matrix.png").write_bytes(b"png")
    text = rp.write_report(claims, settings, out, n_boot=50)
    link = re.search(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert link and link.group(1) == "figures/verdict_matrix.png" and text.index(link.group(0)) < text.index("## Settings")
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


def test_the_report_quotes_the_independent_convergence_check(claims, tmp_path):
    plain = make_folder(tmp_path / "plain")
    checked = make_folder(tmp_path / "checked")
    pd.DataFrame({"method": ["LIFT-CAM", "LRP-CAM"], "cosine at 1024": [0.804, 0.9], "cosine at 4096": [0.914, 0.95],
                  "cosine at 16384": [0.958, 0.951], "cosine with reference": [0.97, 0.96],
                  "seed error at largest": [0.004, 0.004], "still rising": [True, False], "reference nsamples": 65536,
                  "reference seeds": 4, "reference own error": 0.0123, "ground truth vs reference": 0.0456,
                  "ground truth own error": 0.0321}).set_index("method").to_csv(checked / "shap_reference.csv")
    assert "shap_reference" in rp.TABLES
    text = rp.write_report(claims, rp.read_settings({"plain": plain, "checked": checked}), tmp_path / "R.md", n_boot=50)
    claim2 = text.split("## Claim 2:")[1].split("\n## ")[0]
    assert ("checked: " in claim2 and "reference: nsamples = 65536, mean of 4 seed(s) that no estimate uses" in claim2
            and "an own error of 0.012 and the ground truth an error of 0.046 against it" in claim2)
    assert ("still rises at the largest budget (nsamples = 16384) for LIFT-CAM (cosine 0.914 → 0.958): "
            "for these the ground truth has not converged" in claim2)
    assert "LRP-CAM (cosine" not in claim2                               # it does not rise
    plain_caveat = claim2.split("plain: ")[1].split("; checked: ")[0]
    assert "convergence check" not in plain_caveat                     # nothing said where the table is absent
    assert rp.reference_check(rp.read_setting(plain)[0]) == ""
    # no method rising: said so
    pd.read_csv(checked / "shap_reference.csv").assign(**{"still rising": False}).to_csv(
        checked / "shap_reference.csv", index=False)
    assert "no method's agreement with the estimate still rises" in rp.reference_check(rp.read_setting(checked)[0])
    pd.read_csv(checked / "shap_reference.csv").assign(**{"reference nsamples": np.nan, "reference seeds": 0}).to_csv(
        checked / "shap_reference.csv", index=False)                  # notebook 02 against the exact values
    assert rp.reference_check(rp.read_setting(checked)[0]).startswith(
        "the convergence check against the exact Shapley values (no error of their own) gives the ground truth an error "
        "of 0.046 against it")
    # an exact ground truth: a rising KernelSHAP grid is the estimates' convergence, never "the ground truth has not"
    pd.read_csv(checked / "shap_reference.csv").assign(**{"still rising": True}).to_csv(
        checked / "shap_reference.csv", index=False)
    said = rp.reference_check(rp.read_setting(checked)[0])
    assert "still rises at the largest budget" in said and "the ground truth itself is exact" in said
    assert "the ground truth has not converged" not in said
