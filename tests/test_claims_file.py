"""data/paper_claims.yaml: one well-formed entry per claim; every method is one liftcam runs, every
metric direction agrees with liftcam.metrics, and no paper number has been typed in."""
import numbers
from pathlib import Path

import pytest
import yaml

import liftcam
from liftcam import metrics

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"id", "text", "where", "method", "versus", "metrics", "expected", "paper_value",
        "reproducible_offline", "reason", "evidence"}


@pytest.fixture(scope="module")
def claims():
    doc = yaml.safe_load((ROOT / "data" / "paper_claims.yaml").read_text())
    return doc["claims"]


def test_ids_are_claim1_to_claim6_once_each(claims):
    assert [c["id"] for c in claims if not c.get("own")] == [f"claim{i}" for i in range(1, 7)]
    own = [c["id"] for c in claims if c.get("own")]                      # this project's questions, after the paper's
    assert len(set(own)) == len(own) and not any(i.startswith("claim") for i in own)
    assert [c.get("own", False) for c in claims] == sorted(c.get("own", False) for c in claims)


def test_every_claim_has_the_keys_and_text(claims):
    for c in claims:
        assert KEYS <= set(c), (c["id"], KEYS - set(c))
        for k in ("text", "where", "expected", "reason"):
            assert isinstance(c[k], str) and c[k].strip(), (c["id"], k)
        assert isinstance(c["reproducible_offline"], bool), c["id"]


def test_paper_values_are_null_or_numbers(claims):
    for c in claims:
        v = c["paper_value"]
        assert v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)), c["id"]


def test_every_method_named_is_a_liftcam_method(claims):
    for c in claims:
        named = [c["method"], *c["versus"], *([c["reference"]] if "reference" in c else [])]
        for m in c["metrics"]:
            named += [*m.get("versus", []), *([m["against"]] if "against" in m else [])]
        if "bound" in c:
            named.append(c["bound"]["relative_to"])
        unknown = [m for m in named if m not in liftcam.METHODS]
        assert not unknown, (c["id"], unknown)
        assert c["method"] not in c["versus"], c["id"]


def test_metric_directions_agree_with_liftcam_metrics(claims):
    for c in claims:
        for m in c["metrics"]:
            assert m["better"] in ("lower", "higher"), (c["id"], m)
            if m["name"] in metrics.HIGHER_IS_BETTER:
                assert (m["better"] == "higher") == metrics.HIGHER_IS_BETTER[m["name"]], (c["id"], m)


def test_quantitative_claims_compare_against_something(claims):
    for c in claims:
        if c["metrics"]:
            assert c["versus"] or all(m.get("versus") for m in c["metrics"]), c["id"]


def test_evidence_points_at_existing_notebooks(claims):
    for c in claims:
        if c["reproducible_offline"]:
            assert (ROOT / c["evidence"]["notebook"]).is_file(), c["id"]
            assert c["evidence"]["output"].startswith("figures/"), c["id"]
        else:
            assert c["evidence"] is None, c["id"]


def test_evidence_output_is_a_file_its_notebook_writes(claims):
    """Each setting writes its tables to figures/<setting>/: the output names that folder and a file its notebook saves."""
    for c in claims:
        if c["reproducible_offline"]:
            folder, _, name = c["evidence"]["output"].rpartition("/")
            assert folder == "figures/<setting>", c["id"]
            source = (ROOT / c["evidence"]["notebook"]).read_text()
            assert f'\\"{name.rsplit(".", 1)[0]}\\"' in source, (c["id"], name)
