"""The CAM methods: each checked against an oracle (a reference implementation, completeness, a closed form)."""
import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LRP, DeepLift, Lime
from torch import nn

import liftcam
from conftest import noise
from liftcam import models
from liftcam.methods import CompletenessError

warnings.filterwarnings("ignore", module="captum")


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_methods_listed():
    assert set(liftcam.METHODS) >= {"lift-cam", "lrp-cam", "lime-cam", "grad-cam", "grad-cam++", "xgrad-cam",
                                    "score-cam", "ablation-cam", "cam"}


# ----------------------------------------------------------------------------------------------------------
# LIFT-CAM


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_lift_cam_equals_authors_algorithm(name, request):
    """The authors' code: captum DeepLift on the head, zero baseline, contributions summed over space."""
    s = request.getfixturevalue(name)
    x = noise(2, 224)
    e = liftcam.explain(s, x, method="lift-cam")
    A = s.body(x).detach()
    ref = DeepLift(copy.deepcopy(s.head)).attribute(A, torch.zeros_like(A), target=e.targets).sum((2, 3))
    assert ref.abs().max() > 0
    assert rel_err(e.coefficients, ref) <= 1e-5


def _completeness(s, x):
    e = liftcam.explain(s, x, method="lift-cam")
    with torch.no_grad():
        A = s.body(x)
        delta = s.head(A)[range(len(x)), e.targets] - s.head(torch.zeros_like(A))[range(len(x)), e.targets]
    err = (e.coefficients.sum(1) - delta).abs()
    return e, err, delta


def test_lift_cam_completeness_on_efficientnet(effnet, photos):
    e, err, delta = _completeness(effnet, photos)
    assert (err <= 1e-4 * delta.abs().clamp(min=1)).all()
    # captum's DeepLift breaks here: ReLU6 falls back to plain gradients
    A = effnet.body(photos).detach()
    captum = DeepLift(copy.deepcopy(effnet.head)).attribute(A, torch.zeros_like(A), target=e.targets).sum((1, 2, 3))
    assert ((captum - delta).abs() > 1e-2 * delta.abs().clamp(min=1)).any()


class TinyHead(nn.Module):
    """conv -> target layer -> [conv, non-linearity, pool, fc]: the head's non-linearity is a parameter."""

    def __init__(self, act, functional=False, twice=False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.conv = nn.Conv2d(6, 8, 3, padding=1)
        self.act, self.functional, self.twice = act, functional, twice
        self.fc = nn.Linear(8, 5)
        with torch.no_grad():             # reach the non-linear ranges (ReLU6 saturates at 6)
            self.conv.weight.mul_(20)
            self.fc.weight.mul_(20)

    def forward(self, x):
        x = self.conv(self.body(x))
        x = self.act(x)
        if self.twice:                    # one module used twice in one forward pass
            x = self.act(x * 1.5 - 0.3)
        x = F.max_pool2d(x, 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("act", [nn.ReLU6(), nn.Hardswish(), nn.SiLU(), nn.GELU(), nn.Sigmoid(), nn.Tanh(),
                                 F.silu, F.gelu, torch.sigmoid, F.relu6, F.hardswish],
                         ids=lambda a: getattr(a, "__name__", type(a).__name__))
@pytest.mark.parametrize("twice", [False, True])
def test_lift_cam_completeness_any_nonlinearity(act, twice):
    torch.manual_seed(0)
    net = TinyHead(act, twice=twice).eval()
    s = models.split(net, "body")
    x = noise(3, 8, seed=1)
    e, err, delta = _completeness(s, x)
    assert delta.abs().min() > 0.1
    assert (err <= 1e-4 * delta.abs().clamp(min=1)).all(), err
    if isinstance(act, nn.Module) and not isinstance(act, (nn.Sigmoid, nn.Tanh)) or twice:
        # captum's DeepLift (module hooks, listed non-linearities) misses this: the test can tell
        A = s.body(x).detach()
        try:
            captum = DeepLift(copy.deepcopy(s.head)).attribute(A, torch.zeros_like(A), target=e.targets)
            assert ((captum.sum((1, 2, 3)) - delta).abs() > 1e-3 * delta.abs()).any()
        except RuntimeError as error:     # captum refuses a module used twice
            assert "more than once" in str(error)


def test_lift_cam_products_of_varying_tensors():
    """Squeeze-and-excitation style gating x * sigmoid(fc(pool(x))): the product rule keeps completeness."""
    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv2d(3, 4, 3)
            self.squeeze = nn.Conv2d(4, 4, 1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            a = self.body(x)
            a = a * torch.sigmoid(self.squeeze(a.mean((2, 3), keepdim=True)))
            return self.fc(a.relu().mean((2, 3)))

    torch.manual_seed(0)
    s = models.split(SE().eval(), "body")
    e, err, delta = _completeness(s, noise(2, 7))
    assert (err <= 1e-4 * delta.abs().clamp(min=1)).all()


def test_lift_cam_raises_naming_the_operation_without_rule():
    class Soft(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            a = torch.softmax(self.body(x).flatten(2), -1).sum(-1) * 5 + self.body(x).mean((2, 3)) ** 2
            return self.fc(a)

    torch.manual_seed(0)
    with pytest.raises(ValueError, match="called 2 times"):
        models.split(Soft().eval(), "body")

    class Soft2(Soft):
        def forward(self, x):
            a = self.body(x)
            return self.fc(torch.softmax(a.flatten(2) * 3, -1).amax(-1) * a.mean((2, 3)))

    s = models.split(Soft2().eval(), "body")
    with pytest.raises(CompletenessError, match="softmax"):
        liftcam.explain(s, noise(2, 6), method="lift-cam")


@pytest.mark.parametrize("name, layer", [("resnet50", "layer4"), ("effnet", "bn2")])
def test_lift_cam_on_linear_head_is_weight_times_mean(name, layer, request):
    s = request.getfixturevalue("resnet50") if name == "resnet50" else models.load("efficientnet_lite0", layer=layer)
    x = noise(2, 64)
    e = liftcam.explain(s, x, method="lift-cam")
    fc = s.head.fc if name == "resnet50" else s.head.classifier
    A = s.body(x).detach()
    expected = fc.weight[e.targets] * A.mean((2, 3))
    assert rel_err(e.coefficients, expected) <= 1e-5


# ----------------------------------------------------------------------------------------------------------
# LRP-CAM, LIME-CAM: the authors' captum settings


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_lrp_cam_equals_captum_lrp(name, request):
    s = request.getfixturevalue(name)
    x = noise(2, 224, seed=3)
    e = liftcam.explain(s, x, method="lrp-cam")
    A = s.body(x).detach()
    ref = LRP(copy.deepcopy(s.head)).attribute(A, target=e.targets).sum((2, 3))
    assert ref.abs().max() > 0
    assert rel_err(e.coefficients, ref) <= 1e-5


def test_lrp_cam_runs_on_efficientnet_head(effnet, photos):
    """captum's LRP rejects this head (ReLU6, functional batch norm); ours follows the epsilon rule through it."""
    e = liftcam.explain(effnet, photos[:1], method="lrp-cam")
    R = liftcam.methods.lrp_relevance(liftcam.core.Batch(effnet, photos[:1], effnet.body(photos[:1]).detach(),
                                                         e.targets, e.logits))
    assert torch.allclose(R.sum((2, 3)), e.coefficients)
    assert torch.isfinite(e.coefficients).all() and e.coefficients.abs().max() > 0


def test_lime_cam_equals_authors_call_and_is_seeded(resnet50):
    x = noise(2, 64, seed=4)
    e = liftcam.explain(resnet50, x, method="lime-cam", seed=7)
    A = resnet50.body(x).detach()
    K = A.shape[1]
    mask = torch.arange(K).view(1, K, 1, 1).expand_as(A[:1])
    for b in range(2):
        torch.manual_seed(7)
        ref = Lime(resnet50.head).attribute(A[b:b + 1], baselines=torch.zeros_like(A[b:b + 1]), n_samples=K,
                                            target=int(e.targets[b]), feature_mask=mask, return_input_shape=False)
        # batched head evaluations round differently from captum's one-at-a-time ones
        assert torch.allclose(e.coefficients[b], ref[0], rtol=1e-3, atol=1e-4 * ref.abs().max().item())
    state = torch.get_rng_state()
    again = liftcam.explain(resnet50, x, method="lime-cam", seed=7, batch_size=5)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG must be left alone"
    # other head batch sizes round differently (about 1e-6 of the largest coefficient)
    assert torch.allclose(again.coefficients, e.coefficients, atol=1e-5 * e.coefficients.abs().max().item())
    other = liftcam.explain(resnet50, x, method="lime-cam", seed=8)
    assert not torch.allclose(other.coefficients, e.coefficients)


# ----------------------------------------------------------------------------------------------------------
# Grad-CAM family, Score-CAM, Ablation-CAM against pytorch-grad-cam


def reference_maps(cls, net, mean, std, layer, x, **kwargs):
    """pytorch-grad-cam's maps for a pixel-space model Normalize -> net (a fresh copy)."""
    net = copy.deepcopy(net).eval()
    model = nn.Sequential(models.Normalize(mean, std), net)
    with cls(model=model, target_layers=[net.get_submodule(layer)], **kwargs) as c:
        return torch.from_numpy(c(input_tensor=x, targets=None))


PGC = {"grad-cam": "GradCAM", "grad-cam++": "GradCAMPlusPlus", "xgrad-cam": "XGradCAM"}
IMAGENET = (models.IMAGENET_MEAN, models.IMAGENET_STD)


@pytest.mark.parametrize("method", list(PGC))
@pytest.mark.parametrize("name, layer, size", [("vgg16", "features.29", 224), ("resnet50", "layer4", 224)])
def test_gradient_methods_equal_pytorch_grad_cam(method, name, layer, size, request):
    import pytorch_grad_cam

    s, net = request.getfixturevalue(name), request.getfixturevalue(f"{name}_net")
    x = noise(2, size, seed=5)
    ours = liftcam.explain(s, x, method=method).maps
    ref = reference_maps(getattr(pytorch_grad_cam, PGC[method]), net, *IMAGENET, layer, x)
    assert (ours - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("method", list(PGC))
def test_gradient_methods_equal_pytorch_grad_cam_on_efficientnet(method, effnet, effnet_net, photos):
    import pytorch_grad_cam

    net = effnet_net
    ours = liftcam.explain(effnet, photos, method=method).maps
    ref = reference_maps(getattr(pytorch_grad_cam, PGC[method]), net, (0.5,) * 3, (0.5,) * 3, "blocks.6", photos)
    assert (ours - ref).abs().max() <= 1e-4


def test_score_cam_pytorch_grad_cam_variant(vgg16, vgg16_net):
    from pytorch_grad_cam import ScoreCAM

    x = noise(1, 32, seed=6)                       # 2 x 2 maps: 512 masked inputs
    ours = liftcam.explain(vgg16, x, method="score-cam", variant="pytorch-grad-cam", batch_size=128)
    ref = reference_maps(ScoreCAM, vgg16_net, *IMAGENET, "features.29", x)
    assert (ours.maps - ref).abs().max() <= 1e-4


def test_score_cam_on_efficientnet(effnet, effnet_net, small_photos):
    from pytorch_grad_cam import ScoreCAM

    x = small_photos[:1]
    ours = liftcam.explain(effnet, x, method="score-cam", variant="pytorch-grad-cam", batch_size=64)
    ref = reference_maps(ScoreCAM, effnet_net, (0.5,) * 3, (0.5,) * 3, "blocks.6", x)
    assert (ours.maps - ref).abs().max() <= 1e-4
    # the paper's definition, by hand for two maps: p_c(x * normalised upsampled A_k)
    paper = liftcam.explain(effnet, x, method="score-cam", batch_size=100)
    A = effnet.body(x).detach()
    for k in (0, 17):
        up = F.interpolate(A[:, k:k + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)
        H = (up - up.min()) / (up.max() - up.min())
        p = effnet(x * H).softmax(1)[0, paper.targets[0]]
        assert torch.allclose(paper.coefficients[0, k], p, atol=1e-6)
    base = liftcam.explain(effnet, x, method="score-cam", variant="baseline", batch_size=100)
    p0 = effnet(torch.zeros_like(x)).softmax(1)[0, paper.targets[0]]
    assert torch.allclose(base.coefficients, paper.coefficients - p0, atol=1e-6)


def test_ablation_cam_equals_pytorch_grad_cam(vgg16, vgg16_net, effnet, effnet_net, small_photos):
    from pytorch_grad_cam import AblationCAM

    x = noise(1, 32, seed=8)                        # post-ReLU maps: both ablate to zero
    ours = liftcam.explain(vgg16, x, method="ablation-cam")
    ref = reference_maps(AblationCAM, vgg16_net, *IMAGENET, "features.29", x)
    assert (ours.maps - ref).abs().max() <= 1e-4
    # EfficientNet's block output is signed: pytorch-grad-cam ablates to min - 1e7, an option here.
    # (Its batch_size=1: with more, each row of its batch is filled 1e7 lower than the one before.)
    x = small_photos[1:2]
    ours = liftcam.explain(effnet, x, method="ablation-cam", ablation="pytorch-grad-cam")
    ref = reference_maps(AblationCAM, effnet_net, (0.5,) * 3, (0.5,) * 3, "blocks.6", x, batch_size=1)
    assert (ours.maps - ref).abs().max() <= 1e-4
    # the paper's definition by hand for one map: (y - y_k) / y with map k zeroed
    paper = liftcam.explain(effnet, x, method="ablation-cam")
    A = effnet.body(x).detach()
    c = paper.targets[0]
    y = effnet.head(A)[0, c]
    A[:, 5] = 0
    assert torch.allclose(paper.coefficients[0, 5], (y - effnet.head(A)[0, c]) / y, atol=1e-5)


def test_cam_is_fc_weights_on_gap_head(resnet50):
    x = noise(2, 64)
    e = liftcam.explain(resnet50, x, method="cam")
    assert torch.allclose(e.coefficients, resnet50.head.fc.weight[e.targets], atol=1e-6)


def test_cam_rejects_non_gap_heads(vgg16, effnet, photos):
    with pytest.raises(ValueError, match="global average pooling followed by a linear layer"):
        liftcam.explain(vgg16, noise(1, 32), method="cam")
    with pytest.raises(ValueError, match="'bn2'"):
        liftcam.explain(effnet, photos[:1], method="cam")


# ----------------------------------------------------------------------------------------------------------
# Shared mechanics: batching, chunking, maps, side effects, bad input


FAST = ["lift-cam", "lrp-cam", "grad-cam", "grad-cam++", "xgrad-cam", "ablation-cam", "lime-cam", "score-cam"]


@pytest.mark.parametrize("method", FAST)
def test_same_answer_for_any_batch_and_chunk_size(method, effnet, photos, small_photos):
    opts = {"batch_size": 37} if method in ("ablation-cam", "lime-cam", "score-cam") else {}
    x = photos if method != "score-cam" else small_photos[:2]
    whole = liftcam.explain(effnet, x, method=method, **opts)
    for i in range(len(x)):
        one = liftcam.explain(effnet, x[i:i + 1], method=method,
                              **({"batch_size": 320} if opts else {}))
        assert torch.allclose(one.coefficients[0], whole.coefficients[i], rtol=1e-4,
                              atol=1e-5 * whole.coefficients[i].abs().max().item())
        assert (one.maps[0] - whole.maps[i]).abs().max() <= 1e-4


def test_maps_are_relu_upsampled_minmax(effnet, photos):
    e = liftcam.explain(effnet, photos[:2], method="grad-cam")
    A = effnet.body(photos[:2]).detach()
    raw = (e.coefficients[:, :, None, None] * A).sum(1)
    assert torch.allclose(e.raw, raw, atol=1e-5)
    up = F.interpolate(raw.clamp(min=0)[:, None], size=(224, 224), mode="bilinear", align_corners=False)[:, 0]
    lo, hi = up.flatten(1).min(1).values, up.flatten(1).max(1).values
    assert torch.allclose(e.maps, (up - lo[:, None, None]) / (hi - lo)[:, None, None], atol=1e-5)
    assert e.maps.min() == 0 and e.maps.amax((1, 2)).eq(1).all()


def test_constant_map_is_zeros_not_nan():
    maps, _ = liftcam.cam_maps(torch.ones(2, 3, 4, 4), torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]), (8, 8))
    assert torch.equal(maps, torch.zeros(2, 8, 8))


def test_targets(effnet, photos):
    x = photos[:2]
    e = liftcam.explain(effnet, x, method="grad-cam")
    assert torch.equal(e.targets, e.logits.argmax(1))
    assert torch.equal(liftcam.explain(effnet, x, method="grad-cam", targets=3).targets, torch.tensor([3, 3]))
    e2 = liftcam.explain(effnet, x, method="grad-cam", targets=[5, 9])
    assert torch.equal(e2.targets, torch.tensor([5, 9]))
    one = liftcam.explain(effnet, x[1:], method="grad-cam", targets=[9])
    assert torch.allclose(one.coefficients[0], e2.coefficients[1], atol=1e-6)
    with pytest.raises(ValueError, match="one class per image"):
        liftcam.explain(effnet, x, method="grad-cam", targets=[1, 2, 3])
    with pytest.raises(ValueError, match="1000 is out of range.*1000 classes"):
        liftcam.explain(effnet, x, method="grad-cam", targets=1000)
    with pytest.raises(ValueError, match="out of range"):
        liftcam.explain(effnet, x, method="grad-cam", targets=[-1, 2])


def test_bad_input_is_explained(effnet, photos):
    with pytest.raises(ValueError, match="unknown method 'gradcam'.*grad-cam"):
        liftcam.explain(effnet, photos, method="gradcam")
    with pytest.raises(ValueError, match=r"images\[None\]"):
        liftcam.explain(effnet, photos[0], method="grad-cam")
    with pytest.raises(TypeError, match="uint8"):
        liftcam.explain(effnet, (photos * 255).to(torch.uint8), method="grad-cam")
    with pytest.raises(ValueError, match=r"\[0, 1\] pixel space"):
        liftcam.explain(effnet, (photos - 0.5) / 0.5, method="grad-cam")
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        liftcam.explain(effnet, photos[:, :1], method="grad-cam")
    with pytest.raises(ValueError, match="unknown Score-CAM variant"):
        liftcam.explain(effnet, photos[:1], method="score-cam", variant="softmax")
    with pytest.raises(TypeError, match="does not take the option"):
        liftcam.explain(effnet, photos[:1], method="grad-cam", nsamples=3)


def test_side_effects_restored(resnet50):
    s = resnet50
    s.train()
    s.body[1].layer1.eval()
    flags = [m.training for m in s.modules()]
    x = noise(1, 64)
    liftcam.explain(s, x, method="grad-cam")
    assert [m.training for m in s.modules()] == flags
    with pytest.raises(ValueError):
        liftcam.explain(s, x, method="score-cam", variant="nope")
    assert [m.training for m in s.modules()] == flags
    s.eval()
    assert all(p.grad is None for p in s.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in s.modules())


def test_explain_accepts_a_plain_module_with_layer(resnet50_net):
    x = noise(1, 64)
    e = liftcam.explain(resnet50_net, x, method="grad-cam", layer="layer4")
    assert e.coefficients.shape == (1, 2048)
    with pytest.raises(ValueError, match="layer="):
        liftcam.explain(resnet50_net, x, method="grad-cam")


# ---------------------------------------------------------------------------------------------
# No silent wrong answers

class _PosHead(nn.Module):
    """A -> ReLU(A + pos) -> MaxPool2d((1, 2)) -> Linear(1, 1) = 1 * x: the max of a 1 x 2 window."""

    def __init__(self, pos):
        super().__init__()
        self.body = nn.Identity()
        self.pool = nn.MaxPool2d((1, 2))
        self.fc = nn.Linear(1, 1)
        self.register_buffer("pos", torch.tensor(pos, dtype=torch.float32).view(1, 1, 1, 2))
        with torch.no_grad():
            self.fc.weight.fill_(1.0)
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.body(x) + self.pos)).flatten(1))


def _batch(s, A):
    return liftcam.core.Batch(s, torch.zeros(len(A), 3, *A.shape[2:]), A, torch.zeros(len(A), dtype=torch.long),
                              s.head(A).detach())


@pytest.mark.parametrize("pos", [[0.0, 1.0], [0.0, 1e-5]])
def test_max_pool_keeps_summation_to_delta_when_the_winner_does_not_move(pos):
    """A = [0, -5]: x = [0, 0], reference r = pos. The input's winner (position 0) has Δx = 0, but
    Δy = 0 - max(pos) != 0: it must go to the window's other input, not vanish."""
    s = models.split(_PosHead(pos).eval(), "body", example=torch.zeros(1, 1, 1, 2))
    C, delta = liftcam.methods.deeplift_contributions(_batch(s, torch.tensor([[[[0.0, -5.0]]]])))
    assert delta.item() == pytest.approx(-max(pos))
    assert C.sum().item() == pytest.approx(delta.item(), rel=1e-6)


def test_max_pool_rule_on_random_windows_is_complete_in_float64():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(12, 4)).double().eval()
    s = models.split(net, "0", example=torch.rand(1, 2, 4, 4, dtype=torch.float64))
    A = torch.randn(16, 3, 4, 4, dtype=torch.float64)                  # signed maps: maxima move both ways
    C, delta = liftcam.methods.deeplift_contributions(_batch(s, A))
    torch.testing.assert_close(C.sum((1, 2, 3)), delta, rtol=1e-10, atol=1e-12)


def test_completeness_is_checked_relative_to_the_contributions_not_an_absolute_floor():
    """LayerNorm has no rule: a classifier scaled by 1e-5 (tiny logits) must not hide that."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.LayerNorm([4, 6, 6]), nn.Flatten(), nn.Linear(144, 3))
    with torch.no_grad():
        net[4].weight.mul_(1e-5)
        net[4].bias.zero_()
    s = models.split(net.eval(), "1")
    with pytest.raises(CompletenessError, match="no DeepLIFT rule.*LayerNorm"):
        liftcam.explain(s, torch.rand(2, 3, 8, 8), method="lift-cam")


def test_stochastic_depth_is_the_identity_in_eval_mode_not_a_culprit():
    from torchvision.ops import StochasticDepth
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), StochasticDepth(0.5, "row"), nn.Conv2d(4, 4, 1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    s = models.split(net, "1")
    e = liftcam.explain(s, torch.rand(2, 3, 8, 8), method="lift-cam")
    torch.testing.assert_close(e.coefficients.sum(1), e.extras["delta"])


def test_a_constant_map_becomes_zeros_not_upsampling_noise():
    maps, _ = liftcam.cam_maps(torch.full((1, 1, 1, 1), 0.3), torch.ones(1, 1), (64, 64))
    assert torch.equal(maps, torch.zeros(1, 64, 64))
    maps, _ = liftcam.cam_maps(torch.full((1, 3, 2, 2), 0.7), torch.ones(1, 3), (37, 50))
    assert torch.equal(maps, torch.zeros(1, 37, 50))
    ramp = torch.arange(4.0).view(1, 1, 2, 2)                           # a real map keeps its range
    maps, _ = liftcam.cam_maps(ramp, torch.ones(1, 1), (8, 8))
    assert maps.min() == 0 and maps.max() == 1


def test_targets_get_the_same_check_in_explain_metrics_and_exact_shapley(vgg16):
    x = noise(2, 32)
    torch.manual_seed(0)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000)).eval()   # K = 3: exact is cheap
    A = torch.rand(2, 3, 2, 2)
    t64 = np.int64(3)
    e = liftcam.explain(vgg16, x, method="grad-cam", targets=t64)
    assert e.targets.tolist() == [3, 3]
    liftcam.metrics.average_drop(vgg16, x, e.maps, t64)                  # accepted there too
    liftcam.metrics.average_drop(vgg16, x, e.maps, np.array([3, 4]))
    for bad, err, match in [("tabby", TypeError, "string"), (2.7, TypeError, "float"), (True, TypeError, "bool"),
                            (-1, ValueError, "out of range"), (1000, ValueError, "out of range"),
                            ([1, 2, 3], ValueError, "one class per image")]:
        with pytest.raises(err, match=match):
            liftcam.explain(vgg16, x, method="grad-cam", targets=bad)
        with pytest.raises(err, match=match):
            liftcam.exact_shapley(head, A, bad)
        with pytest.raises(err, match=match):
            liftcam.metrics.average_drop(vgg16, x, e.maps, bad)
    phi, _ = liftcam.exact_shapley(head, A, t64)
    torch.testing.assert_close(phi, liftcam.exact_shapley(head, A, [3, 3])[0])
    phi_none, _ = liftcam.exact_shapley(head, A.double(), None)          # float64 maps, the predicted classes
    torch.testing.assert_close(phi_none, liftcam.exact_shapley(head, A, head(A).argmax(1))[0].double())


def test_score_cam_batch_size_must_be_positive(vgg16):
    with pytest.raises(ValueError, match="positive integer"):
        liftcam.explain(vgg16, noise(1, 32), method="score-cam", batch_size=0)


def test_lime_cam_leaves_the_callers_numpy_rng_alone(vgg16):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    liftcam.explain(vgg16, noise(1, 32), method="lime-cam", n_samples=8)
    assert np.array_equal(np.random.get_state()[1], before)


# ---------------------------------------------------------------------------------------------
# The registry

def test_methods_are_declared_once_with_their_traits():
    R = liftcam.REGISTRY
    assert liftcam.METHODS[0] == "lift-cam" and list(liftcam.METHODS) == sorted(R, key=lambda m: (R[m].rank, m))
    assert R["score-cam"].cost == "per-map" and R["lime-cam"].random and not R["grad-cam"].random
    assert R["score-cam"].options == {"variant": "score-cam", "batch_size": 64, "progress": None}
    assert liftcam.plots.label("grad-cam++") == "Grad-CAM++" and liftcam.plots.COLOURS["lift-cam"] == R["lift-cam"].colour
    with pytest.raises(ValueError, match="already registered"):
        liftcam.register("grad-cam", label="x", colour="#000", cost="head")(lambda batch: None)
    with pytest.raises(ValueError, match="cost must be one of"):
        liftcam.register("new-cam", label="x", colour="#000", cost="cheap")


def test_an_explanation_records_how_it_was_made(vgg16):
    e = liftcam.explain(vgg16, noise(1, 32), method="score-cam", variant="pytorch-grad-cam", batch_size=7)
    assert e.layer == "features.29" and e.options == {"variant": "pytorch-grad-cam"}   # batch_size: how, not what
    assert "score-cam" in repr(e) and "features.29" in repr(e) and "pytorch-grad-cam" in repr(e)
    alpha, extras = liftcam.core.coefficients(liftcam.core.Batch(vgg16, noise(1, 32), vgg16.body(noise(1, 32)),
                                                                 torch.tensor([1]), vgg16(noise(1, 32))), "grad-cam")
    assert alpha.shape == (1, 512) and extras == {}


def test_a_new_method_is_one_decorated_function(vgg16, tmp_path):
    """Registering a rule is all it takes: explain, the cache, the timing and the figures' labels
    and colours pick it up from the registry."""
    from liftcam.methods.gradient import head_gradients

    @liftcam.register("max-grad-cam", label="MaxGrad-CAM", colour="#123456", cost="head", rank=50)
    def max_grad_cam(batch, *, scale: float = 1.0):
        """Max-Grad-CAM (a test method): alpha_k = scale * max_ij d y^c / d A_k(i, j)."""
        return scale * head_gradients(batch)[0].amax((2, 3))

    try:
        x = noise(2, 32)
        e = liftcam.explain(vgg16, x, method="max-grad-cam", scale=2.0)
        g = vgg16.body(x)
        assert e.options == {"scale": 2.0} and list(liftcam.core.RULES)[-1] == "max-grad-cam"
        torch.testing.assert_close(e.coefficients, 2 * liftcam.methods.head_gradients(
            liftcam.core.Batch(vgg16, x, g.detach(), e.targets, e.logits))[0].amax((2, 3)))
        cached = liftcam.explaining.explain_cached(vgg16, x, "max-grad-cam", cache_dir=tmp_path, scale=2.0)
        torch.testing.assert_close(cached.maps, e.maps)
        assert liftcam.plots.label("max-grad-cam") == "MaxGrad-CAM" and liftcam.plots.colour("max-grad-cam") == "#123456"
        assert set(liftcam.timing.seconds_per_image(vgg16, x[:1], ["max-grad-cam"])) == {"max-grad-cam"}
    finally:
        del liftcam.core.REGISTRY["max-grad-cam"], liftcam.core.RULES["max-grad-cam"]


def test_cam_refuses_a_non_affine_head_even_with_tiny_logits():
    """GAP first (the gradient is uniform over space), then a tanh: not CAM's GAP + linear head. Scaled by
    1e-5 the mismatch is tiny in absolute terms; the check is relative, so it still refuses."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4), nn.Tanh(),
                        nn.Linear(4, 3)).eval()
    with torch.no_grad():
        net[3].weight.mul_(5)
        net[5].weight.mul_(1e-5)
        net[5].bias.zero_()
    s = models.split(net, "0")
    with pytest.raises(ValueError, match="GAP|global average pooling"):
        liftcam.explain(s, torch.rand(2, 3, 8, 8), method="cam")
