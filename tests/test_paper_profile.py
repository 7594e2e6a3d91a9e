"""The paper profiles at work, on fakes: random-weight VGG16 and ResNet50 checkpoints under torchvision's file
names in a temporary TORCH_HOME, fake ILSVRC validation folders in the three layouts (flat with
LOC_val_solution.csv, one folder per class, per-image XML boxes; grayscale and CMYK JPEGs among them), and
``make reproduce PROFILE=vgg16|resnet50 IMAGENET=... EVAL_IMAGES=...`` end to end with budgets that a CPU
runs in a couple of minutes (a PARAMS= override file). Also: memory bounded by the batch (forward in
chunks; notebook 00 on a folder of thousands of files reads only the sampled images).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from PIL import Image

import liftcam
from liftcam import core, data, explaining
from test_data import ESPRESSO, TABBY, TENCH, _csv, _val, _xml

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent                      # the environment running these tests
CLASSES = [TENCH, TABBY, ESPRESSO]
N_IMAGES = 6
# budgets small enough for a CPU: the paper's pipeline, not its statistics
BUDGETS = dict(
    n_boot=50, figure_images=1, score_cam_images=0, lime_cam_images=1, curve_images=1, pixels_per_step=25088,
    sensitivity_images=0, sensitivity_methods=[], timing_images=1, timing_repeats=1, cost_batched=1,
    cost_costly_batched=1, cost_repeats=1, toy_epochs=1, toy_images=4, toy_check_images=1, toy_coalitions=8,
    toy_convergence_nsamples=[32], toy_convergence_seeds=2, toy_convergence_images=1, convergence_seeds=2,
    convergence_images=1, shap_images=1, gallery_images=1, batch_size=16,
    # three methods through every notebook: the paper's, a gradient CAM and the ground truth (the others are
    # tested on these models in test_methods; here they would cost minutes of VGG16 passes on a CPU)
    methods=["lift-cam", "grad-cam", "shap-cam"], convergence_methods=["lift-cam"],
)
PER_MODEL = {"vgg16": dict(shap_nsamples=1100, convergence_nsamples=[1100], convergence_reference=2200),   # K = 512
             "resnet50": dict(shap_nsamples=4200, convergence_nsamples=[4200], convergence_reference=4200)}  # 2048


# --- fakes -------------------------------------------------------------------------------------

def _photo(i: int, mode: str) -> Image.Image:
    rng = np.random.default_rng(i)
    im = Image.fromarray(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8))
    return im.convert(mode)


def fake_imagenet(root: Path, layout: str, n: int = N_IMAGES) -> tuple[Path, Path | None]:
    """A fake ILSVRC validation folder: (images folder, annotations to pass or None when found by itself).

    ``layout``: "flat" (LOC_val_solution.csv beside it), "per_class" (one sub-folder per WordNet id, the
    CSV beside it for the boxes) or "xml" (flat, one bbox XML per image in a folder elsewhere). Image 2 is
    grayscale, image 3 CMYK.
    """
    val = root / layout / "val"
    rows, xml = {}, root / layout / "bbox_elsewhere"
    for i in range(1, n + 1):
        wnid = CLASSES[(i * 7) % 3]
        where = val / wnid if layout == "per_class" else val
        where.mkdir(parents=True, exist_ok=True)
        _photo(i, {2: "L", 3: "CMYK"}.get(i, "RGB")).save(where / f"{_val(i)}.JPEG", quality=90)
        box = (wnid, 30 + i, 20, 200, 170)
        rows[_val(i)] = [box]
        if layout == "xml":
            _xml(xml / f"{_val(i)}.xml", [box], size=(240, 180))
    if layout != "xml":
        _csv(val.parent / "LOC_val_solution.csv", rows)
    return val, (xml if layout == "xml" else None)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    """TORCH_HOME with random-weight checkpoints under torchvision's names, and the three folder layouts."""
    root = tmp_path_factory.mktemp("paper")
    ckpt = root / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    for arch, weights in (("vgg16", torchvision.models.VGG16_Weights.IMAGENET1K_V1),
                          ("resnet50", torchvision.models.ResNet50_Weights.IMAGENET1K_V1)):
        torch.manual_seed(0)
        torch.save(getattr(torchvision.models, arch)().state_dict(), ckpt / Path(weights.url).name)
    return root, {layout: fake_imagenet(root, layout) for layout in ("flat", "per_class", "xml")}


def _env(root: Path) -> dict:
    return {**os.environ, "TORCH_HOME": str(root / "torch"), "LIFTCAM_UNVERIFIED_WEIGHTS": "1"}


def _make(root: Path, *args) -> subprocess.CompletedProcess:
    """make in the repository with this test's environment (VENV=, and a stamp that skips the install)."""
    stamp = root / "installed.stamp"
    stamp.touch()
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), f"VENV={VENV}", f"STAMP={stamp}", *args],
                          env=_env(root), capture_output=True, text=True, timeout=1200)


# --- memory bounded by the batch -----------------------------------------------------------------

def test_forward_goes_in_chunks_and_equals_one_pass(vgg16):
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    seen = []
    hook = vgg16.body.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    try:
        A, logits = core.forward(vgg16, x, batch_size=2)
    finally:
        hook.remove()
    assert seen == [2, 2, 1]                                    # never more than batch_size images through the body
    A1, logits1 = core.forward(vgg16, x, batch_size=5)
    assert torch.allclose(A, A1, rtol=1e-5, atol=1e-6) and torch.allclose(logits, logits1, rtol=1e-5, atol=1e-5)
    assert core.forward_batch_size("cpu") == core.FORWARD_BATCH["cpu"]


def test_explain_all_passes_images_through_the_body_in_chunks(vgg16):
    """explain_all's forward pass is chunked by batch_size (capped by the device's default)."""
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    seen = []
    hook = vgg16.body.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    try:
        got = explaining.explain_all(vgg16, x, ["lift-cam", "grad-cam"], batch_size=2)
    finally:
        hook.remove()
    assert max(seen) <= 2 and sum(seen) >= 5
    want = liftcam.explain(vgg16, x, "lift-cam")
    assert torch.allclose(got["lift-cam"].coefficients, want.coefficients, rtol=1e-4, atol=1e-6)


def test_notebook_00_on_thousands_of_files_reads_only_the_sample(tmp_path):
    """Notebook 00 with eval_images = 3 on a folder of 3000 tiny files: 3 images in its tables (it read the
    whole folder before: 50,000 ImageNet images are about 30 GB of input)."""
    import papermill

    folder = tmp_path / "many"
    folder.mkdir()
    tiny = tmp_path / "tiny.JPEG"
    Image.new("RGB", (8, 8), (90, 20, 20)).save(tiny)
    for i in range(3000):
        (folder / f"{_val(i + 1)}.JPEG").write_bytes(tiny.read_bytes())
    params = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    params.update(profile="smoke", images=str(folder), eval_images=3, figures_dir=str(tmp_path / "figures"))
    papermill.execute_notebook(str(REPO / "notebooks" / "00_inspect_models_and_data.ipynb"),
                               str(tmp_path / "00.ipynb"), parameters=params, kernel_name="python3", cwd=str(REPO),
                               progress_bar=False)
    top5 = pd.read_csv(tmp_path / "figures" / "samples_top5.csv")
    assert len(top5) == 3
    assert list(top5["image"]) == data.image_set(liftcam.models.load("efficientnet_lite0"), folder, sample=3).names


# --- the three layouts --------------------------------------------------------------------------

def test_the_three_layouts_give_the_same_labelled_subset(fakes):
    root, folders = fakes
    model = liftcam.models.split(torchvision.models.resnet18(), "layer4",
                                 normalize=(liftcam.models.IMAGENET_MEAN, liftcam.models.IMAGENET_STD))
    sets = {k: data.image_set(model, v, annotations=a, sample=4, seed=3) for k, (v, a) in folders.items()}
    names = {k: s.names for k, s in sets.items()}
    assert names["flat"] == names["per_class"] == names["xml"]
    assert sets["flat"].labels == sets["per_class"].labels == sets["xml"].labels
    assert sets["flat"].boxes == sets["per_class"].boxes == sets["xml"].boxes
    assert all(torch.equal(sets["flat"].images, s.images) for s in sets.values())


@pytest.mark.parametrize("layout", ["flat", "per_class", "xml"])
def test_make_check_inputs_passes_on_each_layout_and_is_keyed_on_the_model(fakes, tmp_path, layout):
    root, folders = fakes
    val, annotations = folders[layout]
    extra = [f"ANNOTATIONS={annotations}"] if annotations else []
    ok = _make(root, "check-inputs", "PROFILE=vgg16", f"IMAGENET={val}", f"EVAL_IMAGES={N_IMAGES}", *extra)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"images: {N_IMAGES}, labelled: {N_IMAGES}, with_boxes: {N_IMAGES}" in ok.stdout
    # a copy of the profile under another name (PARAMS= on the demo profile, model: resnet50) is checked too
    mine = tmp_path / "mine.yaml"
    mine.write_text("model: resnet50\n")
    bad = _make(root, "check-inputs", "PROFILE=demo", f"PARAMS={mine}", f"IMAGENET={val}", "EVAL_IMAGES=2000", *extra)
    assert bad.returncode != 0 and f"the profile draws 2000 images but {str(val)!r} holds {N_IMAGES}" in bad.stderr


# --- the paper profiles end to end --------------------------------------------------------------

@pytest.mark.parametrize("profile,layout", [("vgg16", "xml"), ("resnet50", "per_class")])
def test_make_reproduce_runs_a_paper_profile_on_fakes(fakes, tmp_path, profile, layout):
    """make reproduce PROFILE=<paper profile> IMAGENET=... EVAL_IMAGES=2 PARAMS=budgets.yaml: every notebook runs,
    and the report names the profile, its model and layer, and the budgets the run used."""
    root, folders = fakes
    val, annotations = folders[layout]
    figures = tmp_path / "figures"
    overrides = tmp_path / "budgets.yaml"
    overrides.write_text(yaml.safe_dump({**BUDGETS, **PER_MODEL[profile], "figures_dir": str(figures),
                                         "cache_dir": str(tmp_path / "cache")}))
    build = tmp_path / "build"
    run = _make(root, "reproduce", f"PROFILE={profile}", f"IMAGENET={val}", "EVAL_IMAGES=2", f"PARAMS={overrides}",
                f"BUILD={build}", *([f"ANNOTATIONS={annotations}"] if annotations else []))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    executed = sorted(p.name for p in build.glob("*.ipynb"))
    assert executed == sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    report = (build / "REPORT.md").read_text()
    layer = {"vgg16": "features.29", "resnet50": "layer4"}[profile]
    assert profile in report and layer in report
    # its budgets: the run's beside its own profile's (not always params/vgg16.yaml)
    assert f"paper profile (params/{profile}.yaml)" in report
    assert any(line.startswith("| `eval_images` |") and line.rstrip().endswith("| 2 | 2000 |") for line in report.splitlines())
    assert "ran; no image counted" in report or "n = 0" in report     # random weights: no image is explained as its label
    top5 = pd.read_csv(figures / "samples_top5.csv")             # notebook 00 read the 2 evaluated images only
    assert len(top5) == 2
    # the run's budgets, as its tables record them (EVAL_IMAGES= over the profile's 2000, PARAMS= over the rest)
    prov = json.loads((figures / "faithfulness_per_image.json").read_text())
    assert '"eval_images": 2' in json.dumps(prov) and '"pixels_per_step": 25088' in json.dumps(prov)
    assert f'"shap_estimator": "{"closed-form" if profile == "resnet50" else "kernel"}"' in \
        json.dumps(json.loads((figures / "shap_ground_truth.json").read_text()))


def test_make_passes_the_overrides_to_every_notebook(tmp_path):
    """PARAMS=, EVAL_IMAGES= and LIFTCAM_CACHE reach every papermill call, after the profile's own file."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("n_boot: 10\n")
    run = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(REPO), "reproduce", "PROFILE=smoke",
                          f"PARAMS={mine}", "EVAL_IMAGES=7", f"BUILD={tmp_path / 'build'}"],
                         env={**os.environ, "LIFTCAM_CACHE": str(tmp_path / "cache")}, capture_output=True, text=True)
    calls = [line for line in run.stdout.splitlines() if "papermill " in line]
    assert len(calls) >= len(list((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    for line in calls:
        profile = line.index("-f params/smoke.yaml")
        assert profile < line.index(f"-f {mine}") < line.index("-p eval_images 7") < \
            line.index(f"-p cache_dir {tmp_path / 'cache'}")
    assert (tmp_path / "build" / "overrides.txt").read_text().split() == \
        ["-f", str(mine), "-p", "eval_images", "7", "-p", "cache_dir", str(tmp_path / "cache")]


def test_the_cost_model_counts_the_calls_of_a_profile():
    """benchmarks/paper_cost.hours: hand-counted calls for unit pieces (1 s each, no speed-up)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from paper_cost import METHODS, hours

    p = {"forward": 1.0, "model per input": 1.0, "head per evaluation": 1.0, "shap host": 10.0, "lime host": 5.0,
         "shap nsamples": 100, "K": 4}
    profile = {"eval_images": 3, "pixels_per_step": 224 * 224 // 2, "shap_nsamples": 100, "shap_seeds": 2,
               "convergence_nsamples": [100], "convergence_seeds": 2, "convergence_images": 1,
               "convergence_reference": 200, "score_cam_images": 1}
    h = {k: v * 3600 for k, v in hours(profile, p, speedup={}).items()}
    assert h["02 ground truth"] == pytest.approx(3 * 2 * (100 + 10) + (2 * (100 + 10) + (200 + 20)))
    assert h["03-06 explanations"] == pytest.approx(1 * 4 + 3 * 4 + 3 * (4 + 5) + 3 * 4)
    assert h["05 curves"] == pytest.approx(METHODS * 3 * (2 * 3 + 6))
    closed = {k: v * 3600 for k, v in hours({**profile, "shap_estimator": "closed-form"}, p, speedup={}).items()}
    assert closed["02 ground truth"] == pytest.approx(3 * 5 + (2 * (100 + 10) + (200 + 20)))
