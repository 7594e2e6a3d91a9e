"""The reproduction report: each claim of the paper, its evidence in the figures' tables, and a verdict.

Reads what notebooks 01-06 wrote (``figures/*.csv`` and the ``.json`` provenance beside each) and
``data/paper_claims.yaml``; writes ``REPORT.md`` and the verdict table. Nothing here computes a
method or a metric on images: every number comes from those files (the paired bootstrap of claim 2
re-reads notebook 03's per-image values), so the same files give the same report.

    >>> claims = read_claims("data/paper_claims.yaml")
    >>> settings = read_settings({"demo": "figures"})            # one setting per figures folder
    >>> table = verdicts(claims, settings)                       # claim x setting -> verdict
    >>> text = write_report(claims, settings, "REPORT.md")

Verdict rules (:data:`RULES`, printed in the report): a claim is a set of paired comparisons
(claimed method against each other method, on each metric), one Holm family per claim and setting,
with p-values from an exact sign-flip test over source photographs (``liftcam.metrics.decide``
gives each comparison's decision: for, against, equivalent, tie, cannot be decided with G
photographs, ...). The claim *holds* when every comparison is for it by more than its metric's
margin (``margins`` of the claims file), is *contradicted* when any is against it by more than the
margin, is *not resolved* otherwise (the reasons say which rule stopped it), and is *not run* when
none of its tables exists. :func:`outcome_lines` turns the verdict table into the README's summary.
"""
from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import metrics
from .models import CONTROLLED_MODELS, MODELS
from .plots import label

__all__ = ["MIN_N", "TIME_FACTOR", "RULES", "VERDICTS", "TABLES", "Setting", "read_claims", "read_setting",
           "read_settings", "decide", "claim_kind", "ground_truth_error", "reference_check", "comparisons", "claim_verdict",
           "verdicts", "verdict_table", "write_report", "seconds_per_image", "outcome_lines", "write_outcome",
           "OUTCOME_MARKERS", "family_arguments"]

#: below this many images a comparison decides nothing, whatever its interval
MIN_N = 10
#: a time ordering is decided when one method is at least this many times faster (one timed run, no interval)
TIME_FACTOR = 2
VERDICTS = ("holds", "contradicted", "not resolved", "not run", "not reproduced offline")
RULES = [
    "Each quantitative claim is a set of paired comparisons: the claimed method against each method it is "
    "compared with, on each metric, over the images both explain (the tables of notebooks 03, 05 and 06; "
    "advantage > 0 means the claimed method is better, whatever the metric's direction).",
    "The views of one photograph are not independent: the unit of every test is the source photograph (G of them). "
    "Intervals are {ci:g}% bootstrap intervals that resample whole photographs; p-values come from an exact sign-flip "
    "(randomisation) test on the photographs' mean differences (all 2^G sign patterns; G = 9 can give no p below "
    "2 / 512), never from counting bootstrap resamples. The comparisons of one claim in one setting are one family "
    "(its size is shown) and their p-values are Holm-corrected. A comparison whose smallest attainable p times the "
    "family size exceeds {alpha:g}% **cannot be decided with G photographs**, whatever the data, and the number of "
    "independent photographs that would be needed is given; below {min_n} images it gives no decision "
    "(**n < {min_n}**).",
    "Each metric has a margin, the smallest difference that matters (`margins` in the claims file, with the reason "
    "for each). A comparison is **for** the claim when its Holm-adjusted p is below {alpha:g}% and its whole interval "
    "lies above the margin, **against** when below minus the margin; **equivalent** when its interval lies inside "
    "(-margin, margin); **tie** when the two methods give the same value on every image (identical by construction); "
    "otherwise not decided, with the reason: **interval contains 0** or **not significant after Holm** (Holm p at "
    "or above {alpha:g}%), **not clear of the margin** (significant, but the interval reaches inside the margin).",
    "An empty (all-zero) map is scored in every metric, never dropped: AD, IC and ADD see the image through it, "
    "deletion and insertion order its pixels by index, and in the pointing game, where its share is 0 / 0, it "
    "scores the box's share of the frame (the score of a constant map: it carries no information). Each table "
    "counts the empty maps per method; a sensitivity row gives the verdict when an empty map scores 0 instead.",
    "Agreement with SHAP-CAM (claim 2) is measured against a ground truth with an error of its own: the mean of "
    "several KernelSHAP seeds (its error on each advantage is the spread of that advantage over the seeds, "
    "divided by the square root of their number), or exact values: the closed form on a linear head, or all 2^K "
    "coalitions evaluated when K is small (the controlled benchmark); their error is float32 rounding, so exact ties "
    "stay ties. An "
    "ordering is decided only when the advantage is at least three times that error; otherwise it is **within "
    "ground-truth error**, and with one seed the error is unknown (**ground-truth error unknown**).",
    "Times (claim 2) are notebook 07's batched calls (seconds per image, medians of a few calls for the "
    "one-head-pass methods, one call for the costlier ones) in one run, without an interval: an ordering is decided "
    "when one method takes at least {factor} times the other's seconds per image. The bound 'about the cost of "
    "Grad-CAM' states no factor (paper_value and factor are null): its ratio is shown, and it enters no verdict.",
    "A claim **holds** only when every comparison is for it by more than its margin; it is **contradicted** when "
    "any comparison is against it by more than its margin; otherwise it is **not resolved**, with the reasons in "
    "brackets (the rule that stopped each comparison, most frequent first); it is **not run** when none of its tables "
    "exists in the setting's figures folder. A qualitative claim (claim 5) is not resolved by a number; a claim "
    "that cannot be tested offline (claim 6) is **not reproduced offline**.",
]

#: the tables a setting's verdicts read: key -> file in its figures folder (provenance: the .json beside it)
TABLES = {
    "faithfulness_claims": "faithfulness_claims.csv",
    "pointing_game_claims": "pointing_game_claims.csv",
    "pointing_game_claims_sensitivity": "pointing_game_claims_sensitivity.csv",
    "approximation_quality": "approximation_quality.csv",
    "cost": "cost.csv",
    "approximation_claims": "approximation_claims.csv",
    "approximation_per_image": "approximation_vs_time.data.csv",
    "shap_convergence": "shap_convergence.data.csv",
    "shap_ground_truth": "shap_ground_truth.csv",
    "shap_reference": "shap_reference.csv",
    "toy_agreement": "toy_agreement.csv",
}
#: which tables and figures each kind of claim stands on (links of the report, in this order)
EVIDENCE = {
    "faithfulness": ["faithfulness_claims.md", "faithfulness.md", "faithfulness_curves.png"],
    "approximation": ["approximation_claims.md", "approximation_quality.md", "approximation_vs_time.png", "cost.md",
                      "shap_ground_truth.md", "shap_reference.md",
                      "shap_convergence.png", "toy_agreement.md", "toy_agreement_scatter.png"],
    "pointing": ["pointing_game_claims.md", "pointing_game.md", "pointing_game.png"],
    "qualitative": ["qualitative_maps.png"],
    "offline": [],
}
FAITHFULNESS = {"AD", "IC", "ADD", "deletion", "insertion"}
AGREEMENT = {"cosine", "spearman", "relative error", "top-k overlap"}
TIME = "seconds per image"
#: the budgets of a run, read from the provenance of the tables (parameter -> what it sets)
BUDGETS = {
    "eval_images": "images evaluated (null: every image of the set)",
    "views": "images per bundled photograph: itself and its exact views (null: the photographs only)",
    "shap_images": "images with a SHAP-CAM ground truth (null: every image)",
    "shap_seeds": "KernelSHAP seeds averaged into the ground truth",
    "shap_estimator": "ground truth: KernelSHAP (kernel), the exact closed form of a linear head (closed-form) or "
                      "all 2^K coalitions (exact)",
    "lime_cam_images": "images LIME-CAM runs on (null: every image)",
    "curve_images": "images with deletion / insertion curves (null: every image)",
    "sensitivity_images": "images of the check of the curves' step against 224 pixels per step",
    "shap_nsamples": "KernelSHAP head evaluations per image of the SHAP-CAM ground truth",
    "convergence_reference": "KernelSHAP evaluations of the convergence study's reference",
    "convergence_nsamples": "budgets of the convergence study",
    "convergence_images": "images of the convergence study",
    "score_cam_images": "images Score-CAM runs on (null: every image)",
    "pixels_per_step": "deletion / insertion pixels per step",
    "n_boot": "bootstrap resamples of the intervals",
    "timing_images": "images per timed call (seconds per image)",
    "timing_repeats": "timed calls per method",
}
#: the level of every bootstrap interval in the tables (liftcam.metrics.compare's default, which the notebooks use)
CI = inspect.signature(metrics.compare).parameters["ci"].default
#: the family-wise level of the verdicts (liftcam.metrics.compare_family's default, which the notebooks use)
ALPHA = inspect.signature(metrics.compare_family).parameters["alpha"].default
DECISIONS = ("for", "against", "equivalent", "tie", "interval contains 0", "not significant after Holm",
             "not clear of the margin", "within ground-truth error", "ground-truth error unknown",
             f"within a factor of {TIME_FACTOR}", "not run",
             "undecided")                      # the label of tables written before the sign-flip test
#: the decisions of liftcam.metrics.decide are these, "n < MIN_N" and "cannot be decided with G photographs (...)"
UNDECIDABLE = ("n < ", "cannot be decided with ", "photographs < ")
#: the tables of the sensitivity rows (the other rule for empty maps), by kind of claim; each has a `rule` column
SENSITIVITY = {"pointing": "pointing_game_claims_sensitivity"}
#: the README's outcome summary lies between these lines (written by write_outcome)
OUTCOME_MARKERS = ("<!-- outcome -->", "<!-- /outcome -->")


# --------------------------------------------------------------------------------------------
# Reading

def read_claims(path) -> list[dict]:
    """The claims of ``data/paper_claims.yaml`` (a list of dicts, in file order).

    Each metric entry gets its ``margin`` (the smallest difference that matters) from the file's
    ``margins`` unless it states its own; a metric with no margin anywhere is a ValueError.
    """
    doc = yaml.safe_load(Path(path).read_text())
    margins = doc.get("margins") or {}
    claims = list(doc["claims"])
    for c in claims:
        for m in c["metrics"]:
            if "margin" not in m:
                if m["name"] not in margins:
                    raise ValueError(f"{path}: metric {m['name']!r} of {c['id']} has no margin; add it under `margins:` "
                                     "(the smallest difference that matters, with the reason in a comment)")
                m["margin"] = margins[m["name"]]
    return claims


def family_arguments(claim: dict, available=None) -> dict:
    """The arguments of ``liftcam.metrics.compare_family`` for one claim: its family, directions and margins.

    ``available``: the methods that ran (others are left out of the family). The notebooks build a
    claim's family from this, so that the claims file alone says what is compared and what matters.

        >>> family_arguments({"method": "a", "versus": ["b", "c"], "metrics": [
        ...     {"name": "AD", "better": "lower", "margin": 1.0}]}, available=["a", "b"])
        {'method': 'a', 'versus': ['b'], 'higher_is_better': {'AD': False}, 'effect_margins': {'AD': 1.0}}
    """
    versus = [v for v in claim["versus"] if available is None or v in available]
    names = [m for m in claim["metrics"] if m["name"] != TIME]           # times have their own rule (no test)
    return {"method": claim["method"], "versus": versus,
            "higher_is_better": {m["name"]: m["better"] == "higher" for m in names},
            "effect_margins": {m["name"]: m.get("margin") or 0.0 for m in names}}


@dataclass
class Setting:
    """One setting's evidence: its tables (None where a file is missing) and their provenance."""

    name: str
    folder: Path
    tables: dict = field(default_factory=dict)        # key of TABLES -> DataFrame or None
    provenance: dict = field(default_factory=dict)    # key of TABLES -> dict or None

    def parameter(self, name: str, default=None):
        """A run parameter from the first table's provenance that records it."""
        for p in self.provenance.values():
            if p and name in p.get("parameters", {}):
                return p["parameters"][name]
        return default

    @property
    def model(self) -> str | None:
        """The model of the run (provenance)."""
        return self.parameter("model")

    @property
    def layer(self) -> str | None:
        """The layer of the run; a null layer is the model's default (``liftcam.models.MODELS``)."""
        layer = self.parameter("layer")
        if layer is None and self.model in MODELS:
            return MODELS[self.model].layer
        if layer is None and self.model in CONTROLLED_MODELS:
            from .controlled import LAYERS
            return LAYERS[CONTROLLED_MODELS[self.model][0]]
        return layer

    def _distinct(self, key: str) -> list:
        return sorted({p[key] for p in self.provenance.values() if p and p.get(key)})

    @property
    def commits(self) -> list[str]:
        """The git commits recorded by the tables read (usually one)."""
        return self._distinct("commit")

    @property
    def dates(self) -> list[str]:
        """The creation times recorded by the tables read, sorted."""
        return self._distinct("created")

    def budgets(self) -> dict:
        """Parameter -> {json value: [tables recording it]}, for the parameters of :data:`BUDGETS`."""
        out = {}
        for name in BUDGETS:
            seen = {}
            for key, p in self.provenance.items():
                if p and name in p.get("parameters", {}):
                    seen.setdefault(json.dumps(p["parameters"][name]), []).append(Path(TABLES[key]).name)
            if seen:
                out[name] = seen
        return out

    def link(self, file: str, start) -> str | None:
        """Relative path from folder ``start`` to ``file`` of this setting, None when it does not exist."""
        path = self.folder / file
        if not path.is_file() and file.startswith("toy_"):
            path = self.folder.parent / file                # notebook 01 runs once per profile, beside the settings
        return Path(os.path.relpath(path, start)).as_posix() if path.is_file() else None


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    df = pd.read_csv(path)
    return df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed")])


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read_setting(folder, name: str | None = None) -> list[Setting]:
    """The settings of one figures folder: one, or one per value of a ``setting`` column in its tables."""
    folder = Path(folder)
    name = name or folder.name
    tables, prov = {}, {}
    for key, file in TABLES.items():
        where = folder
        if key.startswith("toy_") and not (folder / file).is_file():
            where = folder.parent                      # notebook 01 runs once per profile, beside the settings
        tables[key] = _read_csv(where / file)
        prov[key] = _read_json(where / (file.split(".")[0] + ".json"))
    values = sorted({str(v) for df in tables.values() if df is not None and "setting" in df
                     for v in df["setting"].dropna().unique()})
    if not values:
        return [Setting(name, folder, tables, prov)]

    def part(df, v):
        if df is None or "setting" not in df:
            return df
        return df[df["setting"].astype(str) == v].drop(columns="setting").reset_index(drop=True)

    return [Setting(f"{name}: {v}", folder, {k: part(df, v) for k, df in tables.items()}, prov) for v in values]


def read_settings(folders: dict) -> list[Setting]:
    """Settings from ``{name: figures folder}``, in the order given (each may split by a ``setting`` column)."""
    return [s for name, folder in folders.items() for s in read_setting(folder, name)]


# --------------------------------------------------------------------------------------------
# Deciding

def decide(low: float, high: float, n, *, margin: float | None = 0.0, min_n: int = MIN_N) -> str:
    """The decision of one paired comparison from its interval of the advantage and its n (see RULES).

    For tables without p-values (older runs); new tables carry ``liftcam.metrics.decide``'s decision.

        >>> decide(0.1, 0.3, 20), decide(-0.3, -0.1, 20), decide(-0.1, 0.3, 20), decide(0.1, 0.3, 9)
        ('for', 'against', 'interval contains 0', 'n < 10')
    """
    if n is None or (isinstance(n, float) and math.isnan(n)) or low is None or math.isnan(low):
        return "not run"
    if n < min_n:
        return f"n < {min_n}"
    if margin is None:                                   # the ground truth's error is unknown: nothing is decided
        return "ground-truth error unknown"
    if low > margin:
        return "for"
    if high < -margin:
        return "against"
    return "within ground-truth error" if (low > 0 or high < 0) else "interval contains 0"


def _side(low, high, margin=0.0, n=None) -> str | None:
    """Where an interval lies, regardless of MIN_N: above / below the margin, within it (but off 0), across 0."""
    if low is None or math.isnan(low):
        return None
    if n is not None and n < 2:                            # one image: an interval of zero width shows nothing
        return "across"
    margin = margin or 0.0
    if low > margin:
        return "above"
    if high < -margin:
        return "below"
    return "within" if (low > 0 or high < 0) else "across"


def claim_kind(claim: dict) -> str:
    """What evidence a claim needs: faithfulness, approximation, pointing, qualitative or offline."""
    names = {m["name"] for m in claim["metrics"]}
    if not claim["reproducible_offline"]:
        return "offline"
    if not names:
        return "qualitative"
    if names <= FAITHFULNESS:
        return "faithfulness"
    if names == {"pointing"}:
        return "pointing"
    if names <= AGREEMENT | {TIME}:
        return "approximation"
    raise ValueError(f"{claim['id']}: no rule reads the metrics {sorted(names)}")


def ground_truth_error(setting: Setting) -> dict | None:
    """The SHAP-CAM ground truth's own error at the budget used, from notebook 02's convergence study.

    Returns ``nsamples``, ``reference`` (the study's reference budget), ``cosine`` (median cosine of the
    estimates with the reference), ``relative`` (median relative L2 error against the reference),
    ``seed_to_seed`` (median seed-to-seed distance / sqrt 2, when recorded), ``n`` (estimates) and
    ``margin`` = 1 - cosine; None when the study is missing or did not include that budget.
    """
    gt = setting.tables.get("shap_ground_truth")
    if gt is not None and "ground-truth error" in gt:      # per image, from the spread of its seeds (0: exact)
        est = setting.parameter("shap_estimator", "kernel")
        err = pd.to_numeric(gt["ground-truth error"], errors="coerce")
        rel = float(err.median()) if err.notna().any() else float("nan")
        return {"estimator": est, "nsamples": setting.parameter("shap_nsamples"), "seeds": setting.parameter("shap_seeds"),
                "reference": None, "cosine": float("nan"), "relative": rel, "seed_to_seed": float("nan"),
                "n": int(err.notna().sum()), "margin": rel}
    runs = setting.tables.get("shap_convergence")
    nsamples = setting.parameter("shap_nsamples")
    if runs is None or nsamples is None:
        return None
    at = runs[runs["nsamples"] == nsamples]
    if at.empty:
        return None
    cos = float(at["cosine vs reference"].median())
    prov = setting.provenance.get("shap_convergence") or {}
    seed = at["seed-to-seed / sqrt 2"].median() if "seed-to-seed / sqrt 2" in at else float("nan")
    return {"nsamples": nsamples, "reference": prov.get("parameters", {}).get("convergence_reference"),
            "cosine": cos, "relative": float(at["vs reference"].median()), "seed_to_seed": float(seed),
            "n": len(at), "margin": 1.0 - cos}


def reference_check(setting: Setting) -> str:
    """The sentence of the report on notebook 02's independent convergence check (``shap_reference.csv``).

    Quotes the reference's own error, the ground truth's measured error against it (both median
    relative L2 errors) and the methods whose agreement with the estimate still rises at the largest
    budget by more than its seed error (``liftcam.shapley.still_rising``); where the ground truth is exact,
    that rise is the sampled estimates' convergence, not the ground truth's. "" when the table is absent.
    """
    ref = setting.tables.get("shap_reference")
    if ref is None or ref.empty:
        return ""
    first = ref.iloc[0]
    budgets = sorted(int(str(c).rsplit(" ", 1)[1]) for c in ref.columns if str(c).startswith("cosine at "))
    seeds, own = first.get("reference seeds"), first.get("reference own error")
    exact = pd.isna(first.get("reference nsamples")) or not seeds
    if exact:                                                           # notebook 02 checked against the exact values
        text = "the convergence check against the exact Shapley values (no error of their own) gives the ground truth"
    else:
        text = (f"the independent convergence check (reference: nsamples = {_fmt(first.get('reference nsamples'))}, mean "
                f"of {_fmt(seeds)} seed(s) that no estimate uses) gives the reference an own error of "
                + ("unknown (one seed)" if pd.isna(own) else _fmt(own)) + " and the ground truth")
    text += f" an error of {_fmt(first.get('ground truth vs reference'))} against it (median relative errors)"
    rising = ref[ref["still rising"].astype(str).str.lower() == "true"] if "still rising" in ref else ref.iloc[:0]
    names = rising["method"] if "method" in rising else rising.index
    if not budgets:
        return text
    top = f"nsamples = {budgets[-1]}"
    if rising.empty:
        return text + f"; no method's agreement with the estimate still rises at the largest budget ({top})"
    steps = [" → ".join(_fmt(r[f"cosine at {b}"]) for b in budgets[-2:]) for _, r in rising.iterrows()]
    return (text + f"; the agreement with the estimate still rises at the largest budget ({top}) for "
            + ", ".join(f"{m} (cosine {st})" for m, st in zip(names, steps))
            + (": these are the KernelSHAP estimates of the study, still approaching the exact values; the ground "
               "truth itself is exact" if exact else ": for these the ground truth has not converged"))


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer() and abs(v) >= 1):
        return str(int(v))
    return format(float(v), f".{digits}f")


def _interval(mean, low, high, n) -> str:
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}], n = {_fmt(n)}"


def _row(versus, metric, mean, low, high, n, decision, side, reproduced=None, *, G=float("nan"),
         p_min=float("nan"), family=float("nan")) -> dict:
    return {"versus": versus, "metric": metric, "mean": mean, "low": low, "high": high, "n": n,
            "reproduced": reproduced if reproduced is not None else (
                "not run" if decision == "not run" else _interval(mean, low, high, n)),
            "side": side, "decision": decision, "G": G, "p_min": p_min, "family": family}


def _paired_rows(claim, table, method_col, versus_col, metric_of) -> list[dict]:
    """Comparisons read from a saved paired table (faithfulness_claims.csv, pointing_game_claims.csv, ...).

    A table with sign-flip p-values (a ``p_min`` column) is decided here, by ``liftcam.metrics.decide``:
    Holm over this claim's rows of it, each metric's margin from the claims file, the ground truth's
    error from its ``margin`` column; ``tie`` as the table says. An older table keeps its verdict.
    """
    hits = []
    for other in claim["versus"]:
        for m in claim["metrics"]:
            hit = None
            if table is not None:
                sel = (table[method_col] == label(claim["method"])) & (table[versus_col] == label(other))
                if metric_of is not None:
                    sel &= table[metric_of] == m["name"]
                hit = table[sel]
            hits.append((other, m, None if hit is None or hit.empty else hit.iloc[0]))
    signflip = table is not None and "p_min" in table
    found = [r for _, _, r in hits if r is not None]
    p_holm = metrics.holm([float(r["p"]) for r in found]) if signflip else []
    family = int(np.isfinite([float(r["p"]) for r in found]).sum()) if signflip else None
    rows, k = [], 0
    for other, m, r in hits:
        if r is None:
            rows.append(_row(label(other), m["name"], *[float("nan")] * 4, "not run", None))
            continue
        if int(r["n"]) == 0:       # the notebook ran but no image counted (e.g. none explained as its label): not "not run"
            k += 1                   # keeps Holm p-values aligned with the found rows
            rows.append(_row(label(other), m["name"], *[float("nan")] * 3, 0, f"n < {MIN_N}", None,
                             "ran; no image counted"))
            continue
        low, high, n, mean = float(r["low"]), float(r["high"]), int(r["n"]), float(r["mean"])
        error = float(r["margin"]) if "margin" in r and not pd.isna(r["margin"]) else (
            float("nan") if "margin" in r else 0.0)
        margin = float(m.get("margin") or 0.0)
        G = int(r["n_clusters"]) if "n_clusters" in r else n
        extra = {}
        if signflip:
            ph = float(p_holm[k])
            k += 1
            decision = metrics.decide(mean, low, high, n=n, n_clusters=G, p_holm=ph, family=family, margin=margin,
                                      error=error, tie=str(r["verdict"]) == "tie")
            extra = dict(G=G, p_min=float(r["p_min"]), family=family)
            reproduced = _interval(mean, low, high, n) + (
                f" ({G} photographs; p = {_fmt(float(r['p']), 4)}, smallest p = {_fmt(float(r['p_min']), 4)}, "
                f"family = {family}, Holm p = {_fmt(ph, 4)})")
        else:
            k += 1
            decision = str(r["verdict"]) if "p_holm" in r else decide(low, high, n)   # compare_family's verdict
            reproduced = _interval(mean, low, high, n) + (
                f" ({G} photographs; Holm p = {_fmt(float(r['p_holm']))})" if "p_holm" in r else "")
        rows.append(_row(label(other), m["name"], mean, low, high, n, decision,
                         _side(low, high, error if error == error else 0.0, n=n), reproduced, **extra))
    return rows


def seconds_per_image(setting: Setting):
    """``{method label: seconds per image}`` of a setting: notebook 07's batched calls (``cost.csv``),
    else notebook 03's times (``approximation_quality.csv``); None when neither exists."""
    cost, quality = setting.tables.get("cost"), setting.tables.get("approximation_quality")
    if cost is not None:
        rows = cost[(cost["row"] == "method") & (cost["call"] == "batched")]
        rows = rows if len(rows) else cost[cost["row"] == "method"]
        return rows.groupby("label")[TIME].last()
    return None if quality is None else quality.set_index("method")[TIME]


def _approximation_rows(claim, setting: Setting, *, n_boot: int, seed: int) -> list[dict]:
    per_image = setting.tables.get("approximation_per_image")
    gt = ground_truth_error(setting)
    margin = gt["margin"] if gt else None
    rows = []
    saved = setting.tables.get("approximation_claims")
    if saved is not None:                                   # notebook 03's family, Holm-corrected, with margins
        agreement = {**claim, "metrics": [m for m in claim["metrics"] if m["name"] in AGREEMENT]}
        rows += _paired_rows(agreement, saved, "method", "versus", "metric")
    for m in claim["metrics"]:
        if m["name"] in AGREEMENT and saved is not None:
            continue
        if m["name"] in AGREEMENT:
            for other in claim["versus"]:
                a = b = None
                if per_image is not None and m["name"] in per_image:
                    a = per_image[per_image["method"] == claim["method"]].set_index("image")[m["name"]]
                    b = per_image[per_image["method"] == other].set_index("image")[m["name"]]
                if a is None or b is None or a.empty or b.empty:
                    rows.append(_row(label(other), m["name"], *[float("nan")] * 4, "not run", None))
                    continue
                a, b = a.align(b, join="inner")
                c = metrics.compare(a.to_numpy(), b.to_numpy(), higher_is_better=m["better"] == "higher",
                                    n_boot=n_boot, seed=seed)
                rows.append(_row(label(other), m["name"], c["mean"], c["low"], c["high"], c["n"],
                                 decide(c["low"], c["high"], c["n"], margin=margin), _side(c["low"], c["high"], margin, c["n"])))
        elif m["name"] == TIME:
            t = seconds_per_image(setting)
            mine = None if t is None else t.get(label(claim["method"]))
            for other in m.get("versus", claim["versus"]):
                theirs = None if t is None else t.get(label(other))
                if mine is None or theirs is None or math.isnan(mine) or math.isnan(theirs):
                    rows.append(_row(label(other), TIME, *[float("nan")] * 4, "not run", None))
                    continue
                lower = m["better"] == "lower"
                ratio = theirs / mine if lower else mine / theirs
                decision = ("for" if ratio >= TIME_FACTOR else "against" if ratio <= 1 / TIME_FACTOR
                            else f"within a factor of {TIME_FACTOR}")
                rows.append(_row(label(other), TIME, mine, float("nan"), float("nan"), float("nan"), decision,
                                 {"for": "above", "against": "below"}.get(decision, "across"),
                                 f"{_fmt(mine)} s vs {_fmt(theirs)} s"))
    bound = claim.get("bound")
    t = seconds_per_image(setting)
    if bound and t is not None:                           # reported, never decided: no factor is stated
        mine, ref = t.get(label(claim["method"])), t.get(label(bound["relative_to"]))
        if mine is not None and ref is not None:
            factor = bound.get("factor")
            decision = ("no factor stated" if factor is None else
                        "for" if mine <= factor * ref else "against")
            rows.append(_row(f"{label(bound['relative_to'])} (bound)", bound["name"], mine, float("nan"), float("nan"),
                             float("nan"), decision, None, f"{_fmt(mine)} s vs {_fmt(ref)} s"))
    return rows


def comparisons(claim: dict, setting: Setting, *, n_boot: int = 1000, seed: int | None = None,
                sensitivity: bool = False) -> pd.DataFrame:
    """The paired comparisons of one claim in one setting, each with its decision (see RULES).

    Columns: versus, metric, mean, low, high, n, reproduced (as printed), side (of the interval:
    above / below / across the margin, regardless of n) and decision. ``n_boot`` and ``seed`` are
    those of the paired bootstrap of claim 2 (the other claims read saved intervals); ``seed``
    defaults to the run's seed from the provenance. ``sensitivity``: read the kind's sensitivity table
    (:data:`SENSITIVITY`: the other rule for empty maps) instead; empty when there is none.
    Also G (photographs), p_min (smallest attainable p) and family (Holm's family size) where known.
    """
    kind = claim_kind(claim)
    columns = ["versus", "metric", "mean", "low", "high", "n", "reproduced", "side", "decision", "G", "p_min", "family"]
    if sensitivity:
        key = SENSITIVITY.get(kind)
        t = None if key is None else setting.tables.get(key)
        rows = [] if t is None else _paired_rows(claim, t, "method", "versus", "metric" if "metric" in t else None)
        return pd.DataFrame(rows, columns=columns)
    if kind == "faithfulness":
        rows = _paired_rows(claim, setting.tables.get("faithfulness_claims"), "method", "baseline", "metric")
    elif kind == "pointing":
        rows = _paired_rows(claim, setting.tables.get("pointing_game_claims"), "method", "versus", None)
    elif kind == "approximation":
        seed = setting.parameter("seed", 0) if seed is None else seed
        rows = _approximation_rows(claim, setting, n_boot=n_boot, seed=seed)
    else:
        rows = []
    return pd.DataFrame(rows, columns=columns)


def claim_verdict(claim: dict, table: pd.DataFrame, *, evidence_exists: bool = True) -> tuple[str, str]:
    """(verdict, reason) of one claim in one setting from its comparisons (see RULES)."""
    kind = claim_kind(claim)
    if kind == "offline":
        return "not reproduced offline", claim["reason"]
    if kind == "qualitative":
        return ("not resolved", "qualitative: judged by eye on the figure") if evidence_exists else \
            ("not run", "the figure is missing")
    d = table["decision"].astype(str)
    counted = table[d.isin(DECISIONS) | d.str.startswith(UNDECIDABLE)]
    if counted.empty or (counted["decision"] == "not run").all():
        return "not run", "none of its tables is in the figures folder"
    d = counted["decision"].astype(str)
    if (d == "against").any():
        return "contradicted", f"{(d == 'against').sum()} of {len(d)} comparisons against by more than the margin"
    if (d == "for").all():
        return "holds", f"all {len(d)} comparisons for by more than the margin"
    stopped = d[(d != "for") & (d != "not run")].value_counts(sort=False)
    stopped = stopped.iloc[np.argsort(-stopped.to_numpy(), kind="stable")]       # most frequent first, ties in order
    reasons = [why if k == len(d) else f"{why}: {k} of {len(d)}" for why, k in stopped.items()]
    missing = int((d == "not run").sum())
    if missing:
        reasons.append(f"{missing} not run")
    if not any(r.startswith("within ground-truth error") for r in reasons) and (counted["side"] == "within").any():
        reasons.append("within ground-truth error")       # also true of gaps that n < MIN_N left undecided
    return "not resolved", "; ".join(reasons)


def _summary(table: pd.DataFrame) -> str:
    """What the comparisons decided (count per decision), the range of n, and G, smallest p and family size."""
    done = table[table["decision"] != "not run"]
    if done.empty:
        return "not run"
    d = done["decision"].astype(str)
    counts = d.value_counts(sort=False)
    first = ["for", "against"] + [k for k in counts.index if k not in ("for", "against")]
    text = ", ".join(f"{int(counts.get(k, 0))} {k}" for k in first) + f" of {len(done)}"
    missing = len(table[table["decision"] == "not run"])
    if missing:
        text += f" ({missing} not run)"
    n = done["n"].dropna()
    if len(n):
        text += f"; n = {_fmt(n.min())}" + (f" to {_fmt(n.max())}" if n.max() != n.min() else "")
    for col, name, digits in [("G", "G", 3), ("p_min", "smallest p", 4), ("family", "family", 3)]:
        v = pd.to_numeric(done[col], errors="coerce").dropna() if col in done else pd.Series(dtype=float)
        if len(v):
            text += f", {name} = {_fmt(v.min(), digits)}" + (
                f" to {_fmt(v.max(), digits)}" if v.max() != v.min() else "")
    return text


def _display(verdict: str, reason: str) -> str:
    if verdict == "not resolved" and reason:
        return f"not resolved ({reason.split(';')[0]})"
    return verdict


def verdicts(claims: list[dict], settings: list[Setting], *, n_boot: int = 1000) -> pd.DataFrame:
    """One row per claim x setting: expected, paper value, what was reproduced, n, verdict, provenance."""
    rows = []
    for claim in claims:
        kind = claim_kind(claim)
        for s in settings:
            table = comparisons(claim, s, n_boot=n_boot)
            figure = s.folder / EVIDENCE["qualitative"][0]
            verdict, reason = claim_verdict(claim, table, evidence_exists=figure.is_file())
            reproduced = _summary(table) if len(table) else (
                "figure regenerated" if kind == "qualitative" and figure.is_file() else "not run"
                if kind == "qualitative" else "—")
            if kind == "approximation":
                q = s.tables.get("approximation_quality")
                row = None if q is None else q.set_index("method").reindex([label(claim["method"])]).iloc[0]
                if row is not None and not math.isnan(row["cosine"]):
                    cos = _interval(row["cosine"], row["cosine low"], row["cosine high"], row["images"])
                    reproduced = f"cosine with SHAP-CAM {cos}; {reproduced}"
            n = table["n"].dropna()
            rows.append({
                "claim": claim["id"], "setting": s.name, "profile": s.parameter("profile"), "model": s.model,
                "layer": s.layer, "metric": ", ".join(m["name"] for m in claim["metrics"]) or "—",
                "expected": claim["expected"], "paper value": "null" if claim["paper_value"] is None else claim["paper_value"],
                "reproduced": reproduced, "n": int(n.min()) if len(n) else None,
                "verdict": verdict, "shown as": _display(verdict, reason), "reason": reason,
                "commit": ", ".join(s.commits) or None, "date": (s.dates[-1] if s.dates else None)})
        rows += _sensitivity_rows(claim, settings, n_boot=n_boot)
    df = pd.DataFrame(rows).set_index(["claim", "setting"])
    df["n"] = df["n"].astype("Int64")
    return df


def _sensitivity_rows(claim: dict, settings: list[Setting], *, n_boot: int) -> list[dict]:
    """The verdict rows of one claim under the other rule for empty maps (:data:`SENSITIVITY`), where a table has it."""
    key = SENSITIVITY.get(claim_kind(claim))
    if key is None or not any(s.tables.get(key) is not None for s in settings):
        return []
    rows = []
    for s in settings:
        t = s.tables.get(key)
        rule = str(t["rule"].iloc[0]) if t is not None and "rule" in t and len(t) else "the other rule"
        table = comparisons(claim, s, n_boot=n_boot, sensitivity=True)
        verdict, reason = claim_verdict(claim, table)
        n = table["n"].dropna()
        rows.append({"claim": f"{claim['id']} (sensitivity)", "setting": s.name, "profile": s.parameter("profile"),
                     "model": s.model, "layer": s.layer,
                     "metric": ", ".join(m["name"] for m in claim["metrics"]) + f" ({rule})",
                     "expected": claim["expected"],
                     "paper value": "null" if claim["paper_value"] is None else claim["paper_value"],
                     "reproduced": _summary(table) if len(table) else "not run",
                     "n": int(n.min()) if len(n) else None, "verdict": verdict, "shown as": _display(verdict, reason),
                     "reason": reason, "commit": ", ".join(s.commits) or None, "date": (s.dates[-1] if s.dates else None)})
    return rows


def outcome_lines(table: pd.DataFrame) -> list[str]:
    """The README's outcome summary, one markdown line per claim, generated from the verdict table (:func:`verdicts`).

    Each line names the claim and, per setting, its verdict with the first reason; sensitivity rows
    are left out (the report shows them). Nothing else goes in, so the summary cannot disagree with
    the table.
    """
    lines = []
    for claim, rows in table.groupby(level="claim", sort=False):
        if str(claim).endswith("(sensitivity)"):
            continue
        cells = "; ".join(f"{setting}: {r['shown as']}" for (_, setting), r in rows.iterrows())
        lines.append(f"- **{str(claim).replace('claim', 'Claim ')}**: {cells}.")
    return lines


def write_outcome(readme, lines: list[str]) -> str:
    """Rewrite the text between :data:`OUTCOME_MARKERS` in ``readme`` with ``lines`` (atomically); returns the text.

    A README without both markers, in that order, is a ValueError that says where to put them.
    """
    from .cache import atomic_write

    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    start, end = OUTCOME_MARKERS
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{path}: needs the lines {start} and {end} (in that order) around the outcome summary; "
                         "add them where the summary goes")
    new = text[:i + len(start)] + "\n" + "\n".join(lines) + "\n" + text[j:]
    if new != text:
        atomic_write(path, new)
    return new


def verdict_table(table: pd.DataFrame) -> pd.DataFrame:
    """The verdicts as claims x settings (settings become columns), for the report."""
    cells = table.apply(lambda r: f"**{r['shown as']}**: {r['reproduced']}", axis=1).unstack("setting")
    settings = list(dict.fromkeys(table.index.get_level_values("setting")))
    first = table.groupby(level="claim", sort=False).first()
    out = first[["metric", "expected", "paper value"]].join(cells[settings])
    return out.loc[list(dict.fromkeys(table.index.get_level_values("claim")))]


# --------------------------------------------------------------------------------------------
# Writing

def _md(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _links(setting: Setting, files, start) -> str:
    found = [(f, setting.link(f, start)) for f in files]
    text = ", ".join(f"[{f}]({p})" for f, p in found if p)
    missing = [f for f, p in found if not p]
    if missing:
        text += ("; " if text else "") + "missing: " + ", ".join(f"`{f}`" for f in missing)
    return text


def _settle(claim: dict) -> str:
    if claim.get("settle"):
        return claim["settle"].strip()
    if not claim["reproducible_offline"]:
        return claim["reason"]
    return ("the paper's setting: `make reproduce PROFILE=vgg16 IMAGENET=/path/to/ILSVRC2012/val` and "
            "`PROFILE=resnet50` (params/vgg16.yaml, params/resnet50.yaml), with n well above "
            f"{MIN_N} images per comparison.")


def _claim_section(claim: dict, settings: list[Setting], table: pd.DataFrame, start, *, n_boot: int) -> list[str]:
    kind = claim_kind(claim)
    number = claim["id"].removeprefix("claim")
    own = bool(claim.get("own"))                          # this project's question (Beyond the paper), not the paper's
    out = [f"### Question {claim['id']} (this project's, not the paper's): {claim['text']}" if own else
           f"## Claim {number}: {claim['text']}", "",
           f"- {'Where' if own else 'Where in the paper'}: {claim['where']}.",
           f"- Expected: {claim['expected']}; paper value: "
           f"{'null (not available to this project)' if claim['paper_value'] is None else claim['paper_value']}.",
           "- Verdict: " + "; ".join(f"{s.name}: **{table.loc[(claim['id'], s.name), 'shown as']}**"
                                      for s in settings) + ".", ""]
    if kind == "offline":
        out += [f"Not reproduced offline: {claim['reason']}.", "", f"What would settle it: {_settle(claim)}", ""]
        return out
    out += ["Evidence:", ""]
    for s in settings:
        out.append(f"- {s.name}: {_links(s, EVIDENCE[kind], start)}")
    out.append("")
    comps = {s.name: comparisons(claim, s, n_boot=n_boot) for s in settings}
    if any(len(c) for c in comps.values()):
        key = ["versus", "metric"]
        merged = None
        for name, c in comps.items():
            cell = c["reproduced"].where(c["decision"] == "not run", c["reproduced"] + " → " + c["decision"])
            c = c.assign(cell=cell)[key + ["cell"]].rename(columns={"cell": name})
            merged = c if merged is None else merged.merge(c, on=key, how="outer", sort=False)
        merged = merged.fillna("not run").rename(columns={"versus": f"{label(claim['method'])} versus"})
        what = (f"advantage of the claimed method (positive = better), {100 * CI:g}% paired bootstrap interval, n images"
                if kind != "approximation" else
                f"advantage in agreement with SHAP-CAM (paired bootstrap over images, {n_boot} resamples) "
                "or seconds per image")
        out += [f"Comparisons ({what}) → decision:", "", _md(merged)]
    caveats = []
    for s in settings:
        n = table.loc[(claim["id"], s.name), "n"]
        text = (f"{s.name}: {s.model} at {s.layer} on `{s.parameter('images')}` images" if s.model else
                f"{s.name}: model and layer not recorded (no table of notebooks 02-06 found)")
        text += f", n = {n} at the fewest" if not pd.isna(n) else ""
        if kind == "approximation":
            gt = ground_truth_error(s)
            if gt and "estimator" in gt:
                text += ("; the ground truth is the exact closed form (up to float32 rounding)"
                         if gt["estimator"] == "closed-form" else
                         "; the ground truth is exact: all 2^K coalitions evaluated (up to float32 rounding)"
                         if gt["estimator"] == "exact" else
                         f"; the ground truth (KernelSHAP, nsamples = {_fmt(gt['nsamples'])}, mean of {_fmt(gt['seeds'])} "
                         f"seed(s)) has a median relative error of {_fmt(gt['relative'])} per image ({gt['n']} images)")
            elif gt:
                text += (f"; the ground truth (KernelSHAP, nsamples = {_fmt(gt['nsamples'])}) has a median cosine of "
                         f"{_fmt(gt['cosine'])} with the reference (nsamples = {_fmt(gt['reference'])}) and a "
                         f"median relative error of {_fmt(gt['relative'])} ({gt['n']} estimates); gaps in cosine "
                         f"smaller than {_fmt(gt['margin'])} are within its error")
            else:
                text += "; the ground truth's own error is unknown (no convergence study at this budget)"
            check = reference_check(s)
            text += f"; {check}" if check else ""
            toy = s.tables.get("toy_agreement")
            if toy is not None:
                t = toy.set_index("method")
                picks = [m for m in [claim["method"], *claim["versus"]] if label(m) in t.index]
                text += ("; on the toy digits CNN, against exact Shapley values: " + ", ".join(
                    f"{label(m)} cosine {_fmt(t.loc[label(m), 'cosine (mean)'])} {t.loc[label(m), 'cosine 95% CI']}"
                    for m in picks))
        caveats.append(text)
    out += ["Caveats: " + "; ".join(caveats) + ".", ""]
    if claim.get("models"):
        out += [f"The claim is about {', '.join(claim['models'])}; the settings above are "
                f"{', '.join(sorted({str(s.model) for s in settings}))}.", ""]
    out += [f"What would settle it: {_settle(claim)}", ""]
    return out


def _deviations(settings: list[Setting], paper_params: dict | None) -> list[str]:
    paper_models = [m for m in ("vgg16", "resnet50") if m in MODELS]
    out = ["## Deviations from the paper", "", "### Model and data", ""]
    for s in settings:
        out.append(f"- {s.name}: `{s.model}` split at `{s.layer}`, images `{s.parameter('images')}` "
                   f"(profile `{s.parameter('profile')}`).")
    out.append("- The paper: " + ", ".join(f"`{m}` at `{MODELS[m].layer}`" for m in paper_models)
               + ", on ILSVRC-2012 validation images (not available offline: see docs/paper.md, section 5).")
    if any(str(s.model).startswith("controlled") for s in settings):
        out.append("- The `controlled_*` settings are not the paper's models: small VGG- and ResNet-shaped CNNs trained "
                   "here (`liftcam.controlled`) on generated 64-pixel scenes, one pasted object of 10 shape classes on "
                   "crops of bundled photographs, with exact boxes. They test the claims' orderings where the answer "
                   "is known exactly (K = 16 maps: exact Shapley values) and the images are independent, not the "
                   "paper's numbers on ImageNet.")
    if any(s.model == "efficientnet_lite0" and s.layer == "blocks.6" for s in settings):
        out.append("- EfficientNet-Lite0's `blocks.6` ends in a linear projection (no ReLU): its maps are signed, "
                   "unlike those of VGG16's and ResNet50's layers, and a CAM weighs them with signed coefficients.")
    out += ["", "### DeepLIFT", "",
            "LIFT-CAM's DeepLIFT (Rescale rule, zero reference) runs on the head's `torch.fx` graph "
            "(`liftcam.methods.propagation`), not with captum's `DeepLift`. captum applies the rule through module "
            "hooks to the non-linearities it recognises: others (ReLU6, SiLU, Hardswish, functional calls) fall back "
            "to the plain gradient, and a module used twice in one forward pass is refused or mis-attributed; the "
            "first breaks DeepLIFT's completeness (the coefficients no longer add up to F(A) - F(0)) without an error. "
            "On the graph every operation gets its rule, and completeness is tested (tests/test_methods.py).", "",
            "### Preprocessing", ""]
    for m in dict.fromkeys([s.model for s in settings if s.model in MODELS] + paper_models):
        out.append(f"- `{m}`: `{MODELS[m].preprocess!r}`.")
    if any(s.model in CONTROLLED_MODELS for s in settings):
        out.append("- `controlled_*`: the generated scenes are already at the nets' input size (64 x 64, in [0, 1]); "
                   "no resize, crop or normalisation.")
    out += ["", "The authors' code resizes VGG16's and ResNet50's inputs straight to the model's input size, without "
            "a crop, as the `vgg16` and `resnet50` entries above do; EfficientNet-Lite0 keeps its own preprocessing "
            "(shorter side resized, centre crop).",
            "", "### Budgets", "",
            "Read from the provenance (.json) of the tables each setting's verdicts read"
            + (" and, for comparison, from the paper profile's parameters file." if paper_params else ".")]
    rows = []
    for name, what in BUDGETS.items():
        row = {"parameter": f"`{name}`", "what": what}
        any_value = False
        for s in settings:
            seen = s.budgets().get(name)
            any_value |= bool(seen)
            row[s.name] = "—" if not seen else "; ".join(
                v if len(seen) == 1 else f"{v} ({', '.join(files)})" for v, files in seen.items())
        if paper_params is not None:
            row[f"paper profile ({paper_params['__file__']})"] = (json.dumps(paper_params[name])
                                                                 if name in paper_params else "—")
        if any_value:
            rows.append(row)
    out += ["", _md(pd.DataFrame(rows)) if rows else "No provenance found.", ""]
    return out


def write_report(claims: list[dict], settings: list[Setting], path, *, claims_file="data/paper_claims.yaml",
                 paper_profile=None, n_boot: int = 1000, table: pd.DataFrame | None = None) -> str:
    """REPORT.md: settings, the verdict table, the rules, one section per claim, the deviations.

    Links are relative to the report's folder. Nothing in it depends on the time of writing: the same
    input files give the same text. ``paper_profile``: a params/*.yaml whose budgets are shown beside
    the settings' (None: not shown). Returns the text (also written to ``path``).
    """
    path = Path(path)
    start = path.parent
    table = verdicts(claims, settings, n_boot=n_boot) if table is None else table
    paper_params = None
    if paper_profile is not None and Path(paper_profile).is_file():
        paper_params = {**yaml.safe_load(Path(paper_profile).read_text()), "__file__": Path(paper_profile).as_posix()}
    lines = ["# Reproduction report: Towards Better Explanations of Class Activation Mapping (LIFT-CAM)", "",
             "Jung & Oh, ICCV 2021 (arXiv 2102.05228). Written by `notebooks/09_write_reproduction_report.ipynb` "
             f"from the tables in each setting's figures folder and `{Path(claims_file).as_posix()}`; every number "
             "below is read from those files (do not edit by hand). The paper's own numbers are not available to "
             "this project (`paper_value: null`): the claims are tested as orderings with bootstrap intervals.", "",
             *_matrix_link(settings, start), "## Settings", ""]
    rel = lambda folder: Path(os.path.relpath(folder, start)).as_posix() + "/"
    srows = [{"setting": s.name, "profile": s.parameter("profile") or "—", "model": s.model or "—",
              "layer": s.layer or "—", "images": s.parameter("images") or "—",
              "figures": f"[{rel(s.folder)}]({rel(s.folder)})",
              "commit": ", ".join(f"`{c}`" for c in s.commits) or "—",
              "date": (s.dates[0] if len(s.dates) == 1 else f"{s.dates[0]} to {s.dates[-1]}") if s.dates else "—"}
             for s in settings]
    lines += [_md(pd.DataFrame(srows)), "The commit and dates are those recorded in the tables' provenance (.json).",
              "", "## Verdicts", "", _md(verdict_table(table).reset_index().rename(columns={"claim": "claim"})),
              "Each setting's cell: verdict, then how its comparisons were decided by the rules below, and n. "
              "Also in `reproduction_verdicts.csv`.", "", "How a verdict is decided:", ""]
    values = dict(min_n=MIN_N, min_clusters=metrics.MIN_CLUSTERS, factor=TIME_FACTOR, ci=100 * CI, alpha=100 * ALPHA)
    lines += [f"{i}. {r.format(**values)}" for i, r in enumerate(RULES, 1)] + [""]
    for claim in [c for c in claims if not c.get("own")]:
        lines += _claim_section(claim, settings, table, start, n_boot=n_boot)
    lines += _beyond_the_paper([c for c in claims if c.get("own")], settings, table, start, n_boot=n_boot)
    lines += _deviations(settings, paper_params)
    text = "\n".join(lines).rstrip() + "\n"
    from .cache import atomic_write
    atomic_write(path, text)
    return text


def _matrix_link(settings: list[Setting], start: Path) -> list[str]:
    """The verdict matrix (``verdict_matrix.png``, notebook 09's :func:`liftcam.plots.verdict_matrix`) at the top
    of the report, where it lies in the settings' common figures folder; nothing where it does not."""
    if not settings:
        return []
    figure = Path(os.path.commonpath([str(Path(s.folder).resolve()) for s in settings])) / "verdict_matrix.png"
    if not figure.is_file():
        return []
    link = Path(os.path.relpath(figure, Path(start).resolve())).as_posix()
    return [f"![The verdicts: claim x setting, coloured by verdict, with n and the independent units per cell]({link})",
            ""]
# --------------------------------------------------------------------------------------------
# Beyond the paper: this project's own questions and the evaluations the paper predates

#: what the "Beyond the paper" section reads beside the claims' tables (files in each setting's figures folder)
BEYOND = {"road": "faithfulness_road.csv", "sanity": "sanity_randomisation.csv"}


def _closest_table(settings: list[Setting]) -> pd.DataFrame | None:
    """Methods x settings: each method's rank by cosine with SHAP-CAM, its cosine, relative error, Spearman and
    seconds per image (notebook 03's ``approximation_quality.csv``, as saved); None when no setting has one."""
    cells = {}
    for s in settings:
        q = s.tables.get("approximation_quality")
        if q is None:
            continue
        q = q[q["method"] != label("shap-cam")].sort_values("cosine", ascending=False, na_position="last")
        for rank, (_, r) in enumerate(q.iterrows(), 1):
            nan = float("nan")
            cells.setdefault(r["method"], {})[s.name] = (
                f"{rank}. cosine {_fmt(r.get('cosine', nan))}, rel. error {_fmt(r.get('relative error', nan))}, "
                f"Spearman {_fmt(r.get('spearman', nan))}; {_fmt(r.get('seconds per image', nan))} s")
    if not cells:
        return None
    return pd.DataFrame(cells).T.reindex(columns=[s.name for s in settings]).fillna("not run").rename_axis(
        "method").reset_index()


def _beyond_the_paper(own: list[dict], settings: list[Setting], table: pd.DataFrame, start, *, n_boot: int) -> list[str]:
    """REPORT.md's "Beyond the paper": which estimator is closest to the Shapley values (with this project's own
    questions, decided by the same rules as the paper's claims), ROAD, and the model-randomisation check."""
    out = ["## Beyond the paper", "",
           "Questions and evaluations that the paper predates, not claims of it: they are marked `own: true` in the "
           "claims file, decided by the same rules as the paper's claims, and listed in the verdict table above "
           "under their own ids.", "",
           "### Which estimator is closest to the Shapley values?", "",
           "Every method's coefficients against SHAP-CAM (exact where the setting's ground truth is exact), from "
           "notebook 03 (`approximation_quality.csv`): rank by cosine (closest first), cosine, relative error, "
           "Spearman rank correlation, and seconds per image from the same run. ShapleyCAM (Cai 2025) is "
           "`shapley-cam` with the logit target and `shapley-cam-rest` with its paper's ReST target; on a head that "
           "is piecewise linear in the maps its Hessian term vanishes and, with the logit target, it is Grad-CAM.", ""]
    closest = _closest_table(settings)
    out += [_md(closest) if closest is not None else "Not run: no `approximation_quality.csv` in any setting.", ""]
    for claim in own:
        out += _claim_section(claim, settings, table, start, n_boot=n_boot)
    out += ["### ROAD", "",
            "ROAD (Rong et al., ICML 2022; notebook 05, `liftcam.metrics.road`): the change of the target's probability "
            "when the most (MoRF, lower is better) or least (LeRF, higher) relevant pixels are removed and refilled "
            "by noisy linear imputation, and ROAD = (LeRF - MoRF) / 2 (higher is better), on the first images of "
            "each method only (n below); no verdict is drawn from it.", ""]
    def road_line(s, road):
        road = road.sort_values("ROAD mean", ascending=False)
        return f"{_links(s, ['faithfulness_road.md'], start)}, best first: " + ", ".join(
            f"{r['method']} {_fmt(r['ROAD mean'])} (n = {_fmt(r['n'])})" for _, r in road.iterrows())

    out += _per_setting(settings, BEYOND["road"], road_line)
    out += ["", "### Model randomisation", "",
            "The cascading model-parameter randomisation test (Adebayo et al., NeurIPS 2018; notebook 08, "
            "`liftcam.metrics.model_randomisation`): the head re-initialised, then the body's blocks from the top "
            "down; a method **fails** a stage when most of its maps keep their ranking of the pixels (Spearman with "
            "the trained model's map at or above the notebook's threshold), **passes** when most change or vanish. "
            "A method that fails with the head randomised explains the activation maps, not the classifier.", ""]
    def sanity_line(s, sanity):
        head = sanity[sanity["depth"] == 1]
        parts = [f"{v}: " + ", ".join(f"{r['method']} (Spearman {_fmt(r['spearman mean'])}, n = {_fmt(r['compared'])})"
                                       for _, r in head[head["verdict"] == v].iterrows())
                 for v in ("fails", "passes", "no maps") if (head["verdict"] == v).any()]
        deep = sanity[sanity["depth"] == sanity["depth"].max()]
        failing = list(deep.loc[deep["verdict"] == "fails", "method"])
        return (f"{_links(s, ['sanity_randomisation.md', 'sanity_maps.png'], start)}; head randomised: " + "; ".join(parts)
                + f"; at the deepest stage ({deep['stage'].iloc[0]}) failing: " + (", ".join(failing) or "none"))

    return out + _per_setting(settings, BEYOND["sanity"], sanity_line) + [""]


def _per_setting(settings: list[Setting], file: str, line) -> list[str]:
    """One bullet per setting: ``line(setting, table)`` on its ``file``, or "not run" where the file is missing."""
    out = []
    for s in settings:
        t = _read_csv(s.folder / file)
        out.append(f"- {s.name}: " + ("not run" if t is None else line(s, t)) + ".")
    return out
