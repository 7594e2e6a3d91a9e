"""The controlled benchmark as a setting: models.load / data.image_set("controlled") / explain_all(shap_estimator="exact"),
and the per-setting notebooks on a tiny controlled setting.

Training the real models takes about a minute each, so the tests put a few-step model (TINY) into a temporary
``$LIFTCAM_CACHE`` under the file name and key of the default configuration: ``models.load`` then reads it as if
trained (what is checked here is the plumbing, not accuracy; tests/test_controlled.py checks training).
"""
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import liftcam
from liftcam import controlled, explaining, models, shapley
from liftcam.data import image_set
from test_controlled import TINY, _brute_force_shapley

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """A $LIFTCAM_CACHE folder holding few-step vgg and resnet K = 16 nets under the default configuration's key."""
    root = tmp_path_factory.mktemp("liftcam_cache")
    for shape in controlled.SHAPES:
        net, report = controlled.train(shape, 16, TINY, progress=False)
        key = controlled.cache_key(shape, 16)
        buf = io.BytesIO()
        torch.save({"key": key, "state_dict": net.state_dict(), "report": json.dumps(report)}, buf)
        folder = controlled.cache_folder(root / "controlled")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{shape}16-{key[:16]}.pt").write_bytes(buf.getvalue())
    return root


@pytest.fixture
def cached_env(model_cache, monkeypatch):
    monkeypatch.setenv("LIFTCAM_CACHE", str(model_cache))
    return model_cache


@pytest.mark.parametrize("name, layer", [("controlled_vgg_k16", "features.13"), ("controlled_resnet_k16", "layer4")])
def test_models_load_controlled(cached_env, name, layer):
    s = models.load(name, device="cpu")
    assert s.layer == layer and s.report["cached"] is True
    assert s.categories == list(controlled.CLASSES) and s.device == torch.device("cpu")
    x = controlled.heldout(n=3).images
    A = s.body(x)
    assert A.shape == (3, 16, 8, 8)
    assert s.head(A).shape == (3, len(controlled.CLASSES))
    if name == "controlled_vgg_k16":
        other = models.load(name, layer="features.10")            # another layer of the same net: 64 maps
        assert other.body(x).shape == (3, 64, 8, 8)
        assert torch.allclose(other(x), s(x), atol=1e-5)


def test_unknown_model_lists_the_controlled_names():
    with pytest.raises(ValueError, match="unknown model 'controlled_vgg_k8'.*efficientnet_lite0.*controlled_vgg_k16.*"
                                         "controlled_resnet_k128"):
        models.load("controlled_vgg_k8")


class _Identity:
    preprocess = models.ImageTransform(resize=(64, 64))


def _tight(mask: np.ndarray) -> tuple:
    rows, cols = np.nonzero(mask)
    return (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)


def test_image_set_controlled_is_the_heldout_stream():
    data = image_set(_Identity(), "controlled", sample=5, seed=3)
    n_train = controlled.Config().n_train
    assert isinstance(data, controlled.Scenes) and len(data) == 5
    assert data.images.shape == (5, 3, 64, 64)
    assert data.names == [f"controlled-0-{i}" for i in range(n_train, n_train + 5)]   # after the training images
    assert data.sources == data.names
    for obj, label, accept, (box,), mask, x in zip(data.objects, data.labels, data.accept, data.boxes,
                                                    data.masks.numpy(), data.images):
        assert label == list(controlled.CLASSES).index(obj.shape) and accept == [label]
        assert box == _tight(mask)
        assert np.allclose(x.permute(1, 2, 0).numpy()[mask], np.asarray(obj.color, dtype=np.float32))
    # limit and sample both take the first n; the seed does not change the scenes
    again = image_set(_Identity(), "controlled", limit=3)
    assert torch.equal(again.images, data.images[:3]) and again.boxes == data.boxes[:3]
    assert len(image_set(_Identity(), "controlled", sample=5, limit=2)) == 2
    assert len(image_set(_Identity(), "controlled")) == controlled.Config().n_test
    assert len(image_set(_Identity(), "controlled", limit=2, views=1)) == 2
    with pytest.raises(ValueError, match="views"):
        image_set(_Identity(), "controlled", limit=2, views=12)


def test_image_set_controlled_for_a_model_of_another_size():
    class Bigger:
        preprocess = models.ImageTransform(resize=(128, 128))

    small = image_set(_Identity(), "controlled", limit=4)
    big = image_set(Bigger(), "controlled", limit=4)
    assert big.images.shape == (4, 3, 128, 128) and big.masks.shape == (4, 128, 128)
    assert big.boxes == [[tuple(2 * v for v in b)] for (b,) in small.boxes]
    assert [[_tight(m)] for m in big.masks.numpy()] == big.boxes


def _brute_force(s, x):
    """Exact SHAP-CAM of one image from the game itself: v(S) for all 2^K coalitions through the head, then
    Shapley's subset formula."""
    with torch.no_grad():
        A, logits = s.body(x), None
        logits = s.head(A)
    K, t = A.shape[1], int(logits.argmax())
    z = ((torch.arange(1 << K)[:, None] >> torch.arange(K)) & 1).float()
    v = shapley.coalition_values(s.head, A, [t], z, batch_size=8192)[0].double().numpy()
    return _brute_force_shapley(v, K), v


@pytest.mark.parametrize("name", ["controlled_vgg_k16", "controlled_resnet_k16"])
def test_exact_estimator_equals_brute_force(cached_env, tmp_path, name):
    s = models.load(name)
    x = controlled.heldout(n=1).images
    want, v = _brute_force(s, x)
    gt = explaining.explain_all(s, x, ["shap-cam"], shap_estimator="exact", cache_dir=tmp_path)["shap-cam"]
    phi = gt.coefficients[0].double().numpy()
    scale = np.abs(want).max()
    assert scale > 0
    assert np.allclose(phi, want, rtol=1e-4, atol=1e-4 * scale)
    assert float(gt.extras["phi0"][0]) == pytest.approx(v[0], rel=1e-4, abs=1e-5)
    assert gt.extras["estimator"] == "exact" and gt.extras["estimator"] in shapley.EXACT_ESTIMATORS
    assert gt.extras["per_seed"].shape == (1, 1, 16) and torch.equal(gt.extras["error"], torch.zeros(1))
    assert gt.extras["cached"].tolist() == [False]
    again = explaining.explain_all(s, x, ["shap-cam"], shap_estimator="exact", cache_dir=tmp_path)["shap-cam"]
    assert again.extras["cached"].tolist() == [True] and torch.equal(again.coefficients, gt.coefficients)
    assert list((tmp_path / "shap").glob("*.npz"))


def test_exact_shapley_on_a_head_that_is_not_factored():
    """A head starting with batch norm (a zero map does not stay zero) takes the plain path: still exact."""
    torch.manual_seed(0)
    head = nn.Sequential(nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4, 3)).eval()
    head[0].running_mean.normal_()
    gm = torch.fx.symbolic_trace(head)
    A = torch.rand(1, 5, 2, 2)
    z = ((torch.arange(32)[:, None] >> torch.arange(5)) & 1).float()
    v = shapley.coalition_values(gm, A, [1], z)[0].double().numpy()
    phi, _ = liftcam.exact_shapley(gm, A, [1])
    assert np.allclose(phi[0].double().numpy(), _brute_force_shapley(v, 5), atol=1e-5)


def test_exact_estimator_refuses_many_maps(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(24, 3)).eval()
    s = models.split(net, "1", example=torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"K = 24 maps.*shap_estimator='kernel'"):
        explaining.explain_all(s, torch.rand(1, 3, 16, 16), ["shap-cam"], shap_estimator="exact", cache_dir=tmp_path)


def test_controlled_settings_are_listed_and_sized():
    demo = yaml.safe_load((REPO / "params" / "demo.yaml").read_text())
    quick = yaml.safe_load((REPO / "params" / "quick.yaml").read_text())
    for name in ("controlled_vgg", "controlled_resnet"):
        assert name in demo["settings"] and name in quick["settings"]
        d = yaml.safe_load((REPO / "params" / "demo" / f"{name}.yaml").read_text())
        assert d["images"] == "controlled" and d["shap_estimator"] == "exact" and d["eval_images"] >= 500
        assert d["model"] in models.CONTROLLED_MODELS and models.CONTROLLED_MODELS[d["model"]][1] == 16
        assert d["views"] is None and d["figures_dir"] == f"figures/{name}"


@pytest.mark.parametrize("notebook", ["02_compute_shap_ground_truth", "03_compare_approximation_quality",
                                      "05_evaluate_faithfulness", "06_evaluate_localization"])
def test_notebook_runs_on_the_controlled_smoke_setting(notebook, cached_env, tmp_path_factory):
    import papermill

    out = tmp_path_factory.getbasetemp() / "controlled_smoke"
    out.mkdir(exist_ok=True)
    params = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    params.update(yaml.safe_load((REPO / "params" / "smoke" / "controlled.yaml").read_text()))
    params.update(profile="smoke", figures_dir=str(out / "figures"), cache_dir=str(out / "cache"),
                  report_path=str(out / "REPORT.md"), device="cpu")
    papermill.execute_notebook(str(REPO / "notebooks" / f"{notebook}.ipynb"), str(out / f"{notebook}.ipynb"),
                               parameters=params, kernel_name="python3", cwd=str(REPO), progress_bar=False)
    assert any((out / "figures").iterdir())
