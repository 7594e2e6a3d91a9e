"""Targets beyond one class (liftcam.targets, core.resolve_targets): linear combinations, callables, ReST."""
import numpy as np
import pytest
import torch
from torch import nn

import liftcam
from liftcam import models
from liftcam.targets import Combination, ReST


def tiny(C: int = 6, gap: bool = False, seed: int = 0) -> nn.Module:
    """A small CNN: maps of layer '3' (5 x 16 x 16 after ReLU), a non-linear head (or GAP + fc)."""
    torch.manual_seed(seed)
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, C)] if gap else \
        [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, C)]
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 3, padding=1), nn.ReLU(),
                         *head).eval()


@pytest.fixture(scope="module")
def net():
    return tiny()


@pytest.fixture(scope="module")
def s(net):
    return models.split(net, "3")


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", ["lift-cam", "lrp-cam", "grad-cam", "xgrad-cam", "cam"])
def test_a_combination_of_classes_is_the_same_combination_of_their_coefficients(method, s, x):
    split = models.split(tiny(gap=True), "3") if method == "cam" else s
    one = {c: liftcam.explain(split, x, method, targets=c).coefficients for c in (1, 4)}
    want = 2.0 * one[1] - 0.5 * one[4]
    forms = [Combination({1: 2.0, 4: -0.5}), {1: 2.0, 4: -0.5}, torch.tensor([0, 2.0, 0, 0, -0.5, 0]).expand(3, 6),
             lambda y: 2 * y[1] - 0.5 * y[4] + 3.0]                  # affine: the offset changes no coefficient
    for form in forms:
        e = liftcam.explain(split, x, method, targets=form)
        torch.testing.assert_close(e.coefficients, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())
        assert e.targets.tolist() == [-1, -1, -1]
        torch.testing.assert_close(e.logits, split(x))               # the model's logits, not the widened ones
    if method == "lift-cam":                                          # completeness over the combination
        y, y0 = split(x), split.head(torch.zeros_like(split.body(x[:1])))
        delta = 2 * (y[:, 1] - y0[:, 1]) - 0.5 * (y[:, 4] - y0[:, 4])
        torch.testing.assert_close(e.coefficients.sum(1), delta, rtol=1e-4, atol=1e-6)


def test_classifier_output_target_is_that_class(s, x):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    e = liftcam.explain(s, x, "lift-cam", targets=ClassifierOutputTarget(2))
    assert e.targets.tolist() == [2, 2, 2]
    assert torch.equal(e.coefficients, liftcam.explain(s, x, "lift-cam", targets=2).coefficients)
    mixed = liftcam.explain(s, x, "lift-cam", targets=[ClassifierOutputTarget(0), 5, lambda y: y[3]])
    assert mixed.targets.tolist() == [0, 5, 3]


def test_rest_target_equals_pytorch_grad_cams_and_the_chain_rule(net, s, x):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST

    e = liftcam.explain(s, x, "grad-cam", targets=ReST(2))
    with GradCAM(model=net, target_layers=[net[3]]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputReST(2)] * 3)
    assert np.abs(e.maps.numpy() - ref).max() <= 1e-4
    # d(2 y_c - logsumexp y) = 2 dy_c - sum_i p_i dy_i: the same combination of the per-class Grad-CAMs
    per = torch.stack([liftcam.explain(s, x, "grad-cam", targets=c).coefficients for c in range(6)], 1)  # (B, C, K)
    p = s(x).softmax(1)
    want = 2 * per[:, 2] - (p[:, :, None] * per).sum(1)
    torch.testing.assert_close(e.coefficients, want, rtol=1e-4, atol=1e-7)
    y = s(x)
    torch.testing.assert_close(e.extras["scores"], 2 * y[:, 2] - y.logsumexp(1))
    # pytorch-grad-cam's own object gives the same, one per image, mixed with a class
    mixed = liftcam.explain(s, x, "grad-cam", targets=[ClassifierOutputReST(2), ReST(2), 4])
    assert mixed.targets.tolist() == [-1, -1, 4]
    torch.testing.assert_close(mixed.coefficients[:2], e.coefficients[:2], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(mixed.coefficients[2], per[2, 4], rtol=1e-5, atol=1e-8)


def test_perturbation_methods_take_any_target(s, x):
    # Ablation-CAM: (y - y_k) / y of the target's score, with y the ReST score
    e = liftcam.explain(s, x[:1], "ablation-cam", targets=ReST(1))
    A = s.body(x[:1])
    score = lambda a: ReST(1)(s.head(a))[0]                          # noqa: E731
    want = torch.stack([(score(A) - score(A * (torch.arange(5) != k).view(1, 5, 1, 1))) / score(A) for k in range(5)])
    torch.testing.assert_close(e.coefficients[0], want.detach(), rtol=1e-4, atol=1e-6)
    # SHAP-CAM: efficiency over the target's score (checked inside), exact at K = 5 with enough samples
    e = liftcam.explain(s, x[:1], "shap-cam", targets=ReST(1), nsamples=64)
    torch.testing.assert_close(e.coefficients.sum(), (score(A) - score(torch.zeros_like(A))).detach(), rtol=1e-4,
                               atol=1e-5)


def test_what_a_method_cannot_explain_is_refused_with_the_reason(s, x):
    for method in ["lift-cam", "lrp-cam", "cam"]:
        with pytest.raises(ValueError, match="needs a target that is linear in the logits.*ReST"):
            liftcam.explain(s, x, method, targets=ReST(1))
    with pytest.raises(ValueError, match="linear in the logits"):
        liftcam.explain(s, x, "lift-cam", targets=lambda y: y.softmax(0)[1])
    with pytest.raises(ValueError, match="score-cam.*one class's logit only"):
        liftcam.explain(s, x, "score-cam", targets=Combination({1: 1, 2: 1}))
    with pytest.raises(ValueError, match="empty sequence"):
        liftcam.explain(s, x, "grad-cam", targets=[])
    with pytest.raises(ValueError, match="not one score"):
        liftcam.explain(s, x, "grad-cam", targets=lambda y: y)
    with pytest.raises(ValueError, match="class 6 .* out of range"):
        liftcam.explain(s, x, "grad-cam", targets={6: 1.0})
    with pytest.raises(ValueError, match="one target per image"):
        liftcam.explain(s, x, "grad-cam", targets=[ReST(1), 2])
    with pytest.raises(ValueError, match=r"\(3, 6\)"):
        liftcam.explain(s, x, "grad-cam", targets=torch.ones(3, 5))
    with pytest.raises(TypeError, match="not a differentiable torch function"):
        liftcam.explain(s, x, "grad-cam", targets=lambda y: float(np.asarray(y.detach())[1]) * torch.ones(()))
    # where only class indices make sense, the same check says so
    with pytest.raises(TypeError, match="class indices only"):
        liftcam.exact_shapley(s.head, s.body(x), ReST(1))
    with pytest.raises(TypeError, match="class indices only"):
        liftcam.metrics.average_drop(s, x, torch.rand(3, 16, 16), ReST(1))
