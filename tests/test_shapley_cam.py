"""ShapleyCAM (Cai 2025) against pytorch-grad-cam's ShapleyCAM, a quadratic head's exact Shapley values, and Grad-CAM."""
import copy

import pytest
import torch
from torch import nn

import liftcam
from conftest import noise
from liftcam import models
from liftcam.core import Batch
from liftcam.methods import shapley_gradients


def _smooth_net(seed: int = 0) -> nn.Module:
    """A tiny CNN whose head (after features.1) is smooth in the maps: SiLU, Tanh, average pooling, linear."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU()),
        nn.Conv2d(8, 8, 1), nn.SiLU(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def _reference(net, mean, std, layer, x, target):
    """pytorch-grad-cam's ShapleyCAM maps (B, H, W) of a pixel-space Normalize -> net (a fresh copy)."""
    from pytorch_grad_cam import ShapleyCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST, ClassifierOutputTarget

    net = copy.deepcopy(net).eval()
    model = nn.Sequential(models.Normalize(mean, std), net)
    with torch.no_grad():
        classes = model(x).argmax(1).tolist()
    wrap = ClassifierOutputTarget if target == "logit" else ClassifierOutputReST
    with ShapleyCAM(model=model, target_layers=[net.get_submodule(layer)]) as c:
        return torch.from_numpy(c(input_tensor=x, targets=[wrap(k) for k in classes]))


def _batch(s, x) -> Batch:
    A, logits = liftcam.core.forward(s, x)
    return Batch(s, x, A, logits.argmax(1), logits)


@pytest.mark.parametrize("target", ["logit", "rest"])
def test_shapley_cam_equals_pytorch_grad_cam_on_a_smooth_head(target):
    net = _smooth_net()
    s = models.split(net, "0", normalize=((0.5,) * 3, (0.5,) * 3))
    x = noise(3, 16, seed=1)
    g, hvp = shapley_gradients(_batch(s, x), target)
    assert hvp.abs().max() > 0.05 * g.abs().max(), "the head must be curved for this test to see the Hessian term"
    ours = liftcam.explain(s, x, method="shapley-cam", target=target)
    ref = _reference(net, (0.5,) * 3, (0.5,) * 3, "0", x, target)
    assert ref.abs().max() > 0 and (ours.maps - ref).abs().max() <= 1e-4
    # and it is not Grad-CAM there: the Hessian term moves the coefficients
    grad = liftcam.explain(s, x, method="grad-cam").coefficients
    assert not torch.allclose(ours.coefficients, grad, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("target", ["logit", "rest"])
def test_shapley_cam_equals_pytorch_grad_cam_on_vgg16(target, vgg16, vgg16_net):
    x = noise(2, 224, seed=5)
    ours = liftcam.explain(vgg16, x, method="shapley-cam", target=target).maps
    ref = _reference(vgg16_net, models.IMAGENET_MEAN, models.IMAGENET_STD, "features.29", x, target)
    assert (ours - ref).abs().max() <= 1e-4


def test_shapley_cam_rest_is_the_rest_target(vgg16):
    x = noise(2, 64, seed=3)
    a = liftcam.explain(vgg16, x, method="shapley-cam-rest")
    b = liftcam.explain(vgg16, x, method="shapley-cam", target="rest")
    torch.testing.assert_close(a.coefficients, b.coefficients)
    assert liftcam.REGISTRY["shapley-cam"].options == {"target": "logit"}


def test_shapley_cam_is_grad_cam_on_a_piecewise_linear_head(vgg16, effnet, photos):
    """VGG16's head (max-pool, linear, ReLU) and EfficientNet-Lite0's after blocks.6.0.bn2 (ReLU6, 1x1 convs,
    batch-norm, pooling, linear) are piecewise linear: H A = 0, so the logit target gives Grad-CAM exactly.
    The ReST target's log-sum-exp is curved, so ShapleyCAM (ReST) is not Grad-CAM even there."""
    x = noise(2, 224, seed=7)
    for s, images in [(vgg16, x), (models.load("efficientnet_lite0", layer="blocks.6.0.bn2"), photos)]:
        _, hvp = shapley_gradients(_batch(s, images))
        assert torch.count_nonzero(hvp) == 0
        ours = liftcam.explain(s, images, method="shapley-cam")
        grad = liftcam.explain(s, images, method="grad-cam")
        torch.testing.assert_close(ours.coefficients, grad.coefficients, rtol=0, atol=0)
        rest = liftcam.explain(s, images, method="shapley-cam-rest")
        assert not torch.allclose(rest.coefficients, grad.coefficients, rtol=1e-3, atol=0)


def test_shapley_cam_on_a_smooth_head_is_not_grad_cam():
    s = models.split(_smooth_net(), "0")
    x = noise(3, 16, seed=2)
    ours = liftcam.explain(s, x, method="shapley-cam").coefficients
    grad = liftcam.explain(s, x, method="grad-cam").coefficients
    assert (ours - grad).abs().max() > 1e-2 * grad.abs().max()


def test_second_order_terms_are_the_exact_shapley_values_of_a_quadratic_head():
    """For a head quadratic in A the second-order Taylor expansion is exact, so A_k . (g - 1/2 H A)_k (summed over
    space) is map k's exact Shapley value: the identity ShapleyCAM rests on, checked by enumerating all 2^K coalitions."""
    torch.manual_seed(0)
    K, C = 5, 3

    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(K * 4, C)
            self.quad = nn.Parameter(torch.randn(C, K * 4, K * 4) / 4)

        def forward(self, A):                                  # (N, K, 2, 2) -> (N, C)
            a = A.flatten(1)
            return self.lin(a) + 0.5 * torch.einsum("ni,cij,nj->nc", a, self.quad, a)

    head = Quadratic().eval()
    A = torch.rand(2, K, 2, 2)
    logits = head(A)
    t = logits.argmax(1)
    batch = Batch(type("M", (), {"head": head, "layer": "x"})(), torch.zeros(2, 3, 4, 4), A, t, logits)
    g, hvp = shapley_gradients(batch)
    phi, _ = liftcam.exact_shapley(head, A, t)
    torch.testing.assert_close((A * (g - 0.5 * hvp)).sum((2, 3)), phi, rtol=1e-4, atol=1e-5)
    # the rule averages the same terms over space, as Grad-CAM averages g
    torch.testing.assert_close(liftcam.methods.shapley_cam(batch), (g - 0.5 * hvp).mean((2, 3)))


def test_shapley_cam_refuses_an_unknown_target(vgg16):
    with pytest.raises(ValueError, match="'logit', 'rest'"):
        liftcam.explain(vgg16, noise(1, 32), method="shapley-cam", target="softmax")


def test_shapley_cam_same_answer_for_any_batch(effnet, photos):
    whole = liftcam.explain(effnet, photos, method="shapley-cam-rest")
    for i in range(len(photos)):
        one = liftcam.explain(effnet, photos[i:i + 1], method="shapley-cam-rest")
        torch.testing.assert_close(one.coefficients[0], whole.coefficients[i], rtol=1e-4,
                                   atol=1e-5 * whole.coefficients[i].abs().max().item())
