"""Exact Shapley values on an additive head (GAP + linear): the closed form against enumeration,
the weights by hand and KernelSHAP, its refusal on a non-linear head, and EfficientNet-Lite0 at bn2."""
import time

import pytest
import torch
from torch import nn

import liftcam
from liftcam import explaining, shapley
from liftcam.models import split


def linear_cnn(K=6, classes=4, seed=0):
    """conv -> ReLU (the split, K maps of 6x6 for 8x8 images) -> GAP -> Linear: an additive head."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, K, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(K, classes))


def mlp_cnn(K=6, classes=4, seed=4):
    """conv -> ReLU (the split) -> GAP -> Linear -> ReLU -> Linear: not additive in the maps."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, K, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(K, 16), nn.ReLU(), nn.Linear(16, classes))


def images(B=3, seed=1):
    torch.manual_seed(seed)
    return torch.rand(B, 3, 8, 8)


def rel_l2(a, b):
    return float((a - b).double().norm() / b.double().norm())


def test_closed_form_equals_enumeration_weights_and_kernel_shap(tmp_path):
    K = 6
    model = linear_cnn(K=K)
    s = split(model, "1")
    x, targets = images(3), [3, 1, 0]
    e = shapley.closed_form_shapley(s, x, targets)
    A = s.body(x).detach()
    W, bias = model[4].weight.detach(), model[4].bias.detach()
    by_hand = torch.stack([W[t] * A[b].mean((1, 2)) for b, t in enumerate(targets)])
    torch.testing.assert_close(e.coefficients, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(e.extras["phi0"], bias[targets], rtol=1e-5, atol=1e-6)
    assert e.extras["estimator"] == "closed-form" and e.method == "shap-cam" and e.layer == "1"
    assert e.targets.tolist() == targets and e.maps.shape == (3, 8, 8)

    phi, phi0 = liftcam.exact_shapley(s.head, A, targets)            # all 2^6 coalitions
    torch.testing.assert_close(e.coefficients, phi, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(e.extras["phi0"], phi0, rtol=1e-5, atol=1e-5)
    ref = liftcam.explain(s, x, method="lift-cam", targets=targets)  # the same maps as any alpha = phi
    torch.testing.assert_close(e.maps, liftcam.core.cam_maps(A, phi, x.shape[-2:])[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(e.coefficients, ref.coefficients, rtol=1e-4, atol=1e-6)

    # KernelSHAP on an additive game is exact once shap enumerates the singletons and their
    # complements (2K = 12 samples); below that (8 = K + 2, 10) it is not (about 1e-3 off here).
    for n in (2 * K, 2 ** K):
        gt = shapley.ground_truth(s, x, targets, nsamples=n, seed=0, cache_dir=tmp_path, progress=False)
        torch.testing.assert_close(gt.coefficients, e.coefficients, rtol=1e-4, atol=1e-6)

    # the batch of singletons does not matter; the predicted classes by default
    torch.testing.assert_close(shapley.closed_form_shapley(s, x, targets, batch_size=4).coefficients,
                               e.coefficients, rtol=1e-6, atol=1e-7)
    pred = shapley.closed_form_shapley(s, x)
    assert torch.equal(pred.targets, s(x).argmax(1))


def test_closed_form_in_explain_all_and_a_float64_model(tmp_path):
    s = split(linear_cnn(K=5), "1")
    x = images(2)
    got = explaining.explain_all(s, x, ["shap-cam", "lift-cam"], cache_dir=tmp_path, shap_nsamples=123,
                                 shap_estimator="closed-form")
    e = got["shap-cam"]
    torch.testing.assert_close(e.coefficients, shapley.closed_form_shapley(s, x).coefficients)
    assert e.extras["estimator"] == "closed-form" and not (tmp_path / "shap").exists()   # nothing cached
    s64 = split(linear_cnn(K=5).double(), "1")
    e64 = shapley.closed_form_shapley(s64, x.double())
    assert e64.coefficients.dtype == torch.float64
    torch.testing.assert_close(e64.coefficients.float(), e.coefficients, rtol=1e-5, atol=1e-6)


def test_closed_form_refuses_a_head_that_is_not_additive():
    s = split(mlp_cnn(), "1")
    with pytest.raises(shapley.NotAdditiveError, match=r"not additive in the maps.*ground_truth") as err:
        shapley.closed_form_shapley(s, images(3))
    assert isinstance(err.value, ValueError) and "KernelSHAP" in str(err.value)
    # the usual non-linear head too: conv 1x1 -> ReLU -> max pool -> linear
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 1), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(24, 5))
    with pytest.raises(ValueError, match="not additive"):
        shapley.closed_form_shapley(split(tiny, "1"), images(2))
    with pytest.raises(ValueError, match="not additive"):
        explaining.explain_all(s, images(1), ["shap-cam"], shap_estimator="closed-form")
    with pytest.raises(TypeError, match="SplitModel"):
        shapley.closed_form_shapley(mlp_cnn(), images(1))


@pytest.fixture(scope="module")
def effnet_bn2():
    return liftcam.models.load("efficientnet_lite0", layer="bn2")


def test_efficientnet_lite0_at_bn2_closed_form_and_kernel_shap(effnet_bn2, tmp_path):
    s = effnet_bn2
    x = liftcam.data.image_set(s, "samples", limit=1).images          # one bundled photograph
    start = time.perf_counter()
    e = shapley.closed_form_shapley(s, x)
    closed = time.perf_counter() - start
    A = s.body(x).detach()                                           # (1, 1280, 7, 7)
    assert A.shape[1] == 1280
    fc = s.head.classifier
    c = int(e.targets[0])
    by_hand = fc.weight.detach()[c] * A[0].mean((1, 2))
    assert rel_l2(e.coefficients[0], by_hand) < 1e-5
    torch.testing.assert_close(e.extras["phi0"][0], fc.bias.detach()[c], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(e.coefficients.sum() + e.extras["phi0"][0], e.logits[0, c], rtol=1e-4, atol=1e-4)

    start = time.perf_counter()
    gt = shapley.ground_truth(s, x, nsamples=4096, seed=0, cache_dir=tmp_path, progress=False)
    kernel = time.perf_counter() - start
    err = rel_l2(gt.coefficients, e.coefficients)
    print(f"\nEfficientNet-Lite0 bn2, K = 1280: closed form {closed:.2f} s; KernelSHAP nsamples=4096 "
          f"{kernel:.2f} s, relative L2 error vs closed form {err:.2e}")
    assert gt.targets.tolist() == e.targets.tolist()
    assert err < 1e-3
