"""liftcam.models: the split reproduces the full model, leaves the caller's model alone, loads weights offline."""
import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

import liftcam
from conftest import noise
from liftcam import models


def _normalize(x):
    mean, std = torch.tensor(models.IMAGENET_MEAN), torch.tensor(models.IMAGENET_STD)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def _state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(n, m.training, getattr(m, "inplace", None), len(m._forward_hooks), len(m._forward_pre_hooks),
              len(m._backward_hooks)) for n, m in model.named_modules()])


@pytest.mark.parametrize("arch, layer, shape", [("vgg16", "features.29", (512, 14, 14)),
                                                ("resnet50", "layer4", (2048, 7, 7)),
                                                ("resnet50", "layer3", (1024, 14, 14))])
def test_head_of_body_is_the_model(arch, layer, shape, request):
    net = request.getfixturevalue(f"{arch}_net")
    s = models.split(net, layer, normalize=(models.IMAGENET_MEAN, models.IMAGENET_STD))
    x = noise(2, 224)
    A = s.body(x)
    assert A.shape == (2, *shape)
    with torch.no_grad():
        expected = net(_normalize(x))
        got = s.head(A)
    assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max().item())
    assert torch.equal(s(x), got)


def test_efficientnet_lite0_real_weights_split(effnet, photos):
    net = models._efficientnet_lite0()
    with torch.no_grad():
        expected = net((photos - 0.5) / 0.5)
        A = effnet.body(photos)
        got = effnet.head(A)
    assert A.shape == (3, 320, 7, 7)
    assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max().item())
    assert effnet.categories[got[0].argmax()] in ("tabby", "tiger cat", "Egyptian cat")


def test_efficientnet_bn2_layer_has_linear_head(effnet, photos):
    s = models.load("efficientnet_lite0", layer="bn2")
    with torch.no_grad():
        A = s.body(photos[:1])
        assert A.shape == (1, 1280, 7, 7)
        assert torch.allclose(s.head(A), effnet(photos[:1]), atol=1e-4)
        # the head is GAP + fc: F(A) = W mean(A) + b
        fc = s.head.classifier
        assert torch.allclose(s.head(A), A.mean((2, 3)) @ fc.weight.T + fc.bias, atol=1e-4)


class Functional(nn.Module):
    """A head with functional calls after the target layer and an in-place ReLU before it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 5, 1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = self.act(self.conv(x))
        x = self.conv2(x)
        x = F.relu(x, inplace=True)
        x = F.max_pool2d(x, 2)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def test_split_with_functional_ops_and_inplace():
    torch.manual_seed(0)
    net = Functional().eval()
    s = models.split(net, "conv2")
    x = noise(2, 10)
    A = s.body(x)
    assert A.shape == (2, 5, 8, 8)
    assert torch.allclose(s.head(A.clone()), net(x), atol=1e-6)
    A0 = A.clone()
    s.head(A)
    assert torch.equal(A, A0), "the head must not modify the maps in place"


def test_split_leaves_caller_model_unchanged(vgg16_net):
    net = copy.deepcopy(vgg16_net).train()
    before = _state(net)
    s = models.split(net, "features.29")
    s.head(s.body(noise(1, 32)))
    after = _state(net)
    assert before[1] == after[1]
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert net.features[29].inplace is True            # the copy is changed, not the caller's model
    assert all(p.grad is None for p in net.parameters())


def test_unknown_layer_lists_valid_names(resnet50_net):
    with pytest.raises(ValueError, match="unknown layer 'layer5'.*layer4"):
        models.split(resnet50_net, "layer5")


def test_layer_inside_skip_connection_is_not_a_cut_point(resnet50_net):
    with pytest.raises(ValueError, match="not a cut point"):
        models.split(resnet50_net, "layer4.0.conv1")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'vgg19'.*efficientnet_lite0"):
        models.load("vgg19")


@pytest.mark.parametrize("arch, file, layer, shape", [("vgg16", "vgg16-397923af.pth", "features.29", (512, 14, 14)),
                                                      ("resnet50", "resnet50-0676ba61.pth", "layer4", (2048, 7, 7)),
                                                      ("resnet50", "resnet50-19c8e357.pth", "layer4", (2048, 7, 7))])
def test_torchvision_weights_from_torch_cache(arch, file, layer, shape, tmp_path, monkeypatch):
    """The standard torchvision path: a checkpoint under $TORCH_HOME/hub/checkpoints is used, offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    net = getattr(torchvision.models, arch)().eval()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(net.state_dict(), tmp_path / "hub" / "checkpoints" / file)
    s = models.load(arch, download=False)
    assert s.layer == layer and len(s.categories) == 1000 and s.categories[0] == "tench"
    x = noise(1, 224)
    with torch.no_grad():
        A = s.body(x)
        assert A.shape == (1, *shape)
        assert torch.allclose(s.head(A), net(_normalize(x)), atol=1e-5)


def test_missing_torchvision_weights_name_file_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(models.WeightsNotFoundError) as e:
        models.load("vgg16", download=False)
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg and "TORCH_HOME" in msg
    with pytest.raises(models.WeightsNotFoundError, match="resnet50-0676ba61.pth or resnet50-19c8e357.pth"):
        models.load("resnet50", download=False)


def test_preprocess_paper_resize_and_boxes():
    t = models.ImageTransform(resize=(224, 224))
    img = Image.new("RGB", (448, 112), (255, 0, 0))
    x = t(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.ones(224, 224)) and x[1:].abs().max() == 0
    # x scales by 1/2, y by 2
    assert t.map_boxes([(0, 0, 448, 112), (100, 10, 200, 20)], (448, 112)) == [(0, 0, 224, 224), (50, 20, 100, 40)]


def test_preprocess_crop_maps_boxes_and_drops_cropped_ones():
    t = models.ImageTransform(resize=256, crop=224)
    img = Image.new("L", (512, 256))                 # grayscale becomes RGB; resized to 512 x 256
    assert t(img).shape == (3, 224, 224)
    # scale 1/2 gives 256 x 128 ... shorter side 256 -> scale 1: crop offset x = (512-224)/2 = 144, y = 16
    assert t.map_boxes([(144, 16, 368, 240), (0, 0, 100, 100), (200, 100, 300, 120)], (512, 256)) == [
        (0, 0, 224, 224), (56, 84, 156, 104)]
    with pytest.raises(TypeError, match="PIL image"):
        t(torch.zeros(3, 4, 4))


class _UnusedInplace(nn.Module):
    """forward: f = c(x); f.<op>_(); return fc(f.mean((2, 3))): the in-place result is never used."""

    def __init__(self, op: str):
        super().__init__()
        torch.manual_seed(0)
        self.c, self.fc, self.op = nn.Conv2d(3, 4, 3), nn.Linear(4, 3), op

    def forward(self, x):
        f = self.c(x)
        if self.op == "mul_":
            f.mul_(f)
        else:
            getattr(f, self.op)()
        return self.fc(f.mean((2, 3)))


@pytest.mark.parametrize("op", ["relu_", "sigmoid_", "mul_"])
def test_split_replays_in_place_operations_whose_result_is_unused(op):
    net = _UnusedInplace(op).eval()
    s = models.split(net, "c")
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(s(x), net(x))
    assert s.verified


class _InplaceOnAView(nn.Module):
    """An in-place ReLU on a view of the maps: fx cannot see that it changes f."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)

    def forward(self, x):
        f = self.c(x)
        f.view(-1).relu_()
        return self.fc(f.mean((2, 3)))


def test_a_split_that_does_not_reproduce_the_model_is_an_error_naming_the_layer():
    with pytest.raises(models.SplitError, match="layer 'c'.*does not reproduce"):
        models.split(_InplaceOnAView().eval(), "c")


def test_a_model_that_cannot_take_the_default_probe_is_verified_on_its_first_images():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()  # 8 x 8 only
    s = models.split(net, "1")
    assert not s.verified
    liftcam.explain(s, torch.rand(1, 3, 8, 8), method="grad-cam")
    assert s.verified
    bad = _InplaceOnAView().eval()
    bad.fc = nn.Sequential(bad.fc)                           # still fine at 224: verified at split time
    with pytest.raises(models.SplitError):
        models.split(bad, "c")


def test_splitting_at_the_classifier_or_a_tuple_model_says_what_to_do(resnet50_net):
    with pytest.raises(ValueError, match="not activation maps"):
        models.split(resnet50_net, "fc")

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)

        def forward(self, x):
            y = self.fc(self.c(x).relu().mean((2, 3)))
            return y, y.softmax(1)

    with pytest.raises(ValueError, match="returns tuple, not logits.*first element"):
        models.split(Pair().eval(), "c")


def test_images_too_small_for_the_network_are_a_clear_error(vgg16):
    with pytest.raises(ValueError, match="too small"):
        liftcam.explain(vgg16, torch.rand(1, 3, 8, 8), method="grad-cam")


def test_float64_images_and_low_precision_models(vgg16):
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    e32 = liftcam.explain(vgg16, x, method="grad-cam")
    e64 = liftcam.explain(vgg16, x.double(), method="grad-cam")         # cast to the model's dtype
    torch.testing.assert_close(e64.maps, e32.maps)
    bf = copy.deepcopy(vgg16).to(torch.bfloat16)
    assert bf.dtype == torch.bfloat16
    e = liftcam.explain(bf, x, method="grad-cam")                       # float32 images cast to bfloat16
    assert e.maps.dtype == torch.bfloat16
    try:
        liftcam.explain(bf, x, method="lift-cam")
    except liftcam.methods.CompletenessError as err:                    # blamed on the dtype, not the layer
        assert "bfloat16" in str(err) and "float32" in str(err) and "no DeepLIFT rule" not in str(err)


def test_a_corrupt_legacy_checkpoint_is_not_loaded_and_no_unsafe_advice_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / models.LEGACY_CHECKPOINTS["resnet50"]).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(models.WeightsNotFoundError, match="not a valid resnet50 checkpoint") as err:
        models.load("resnet50", download=False)
    assert "do not load it with weights_only=False" in str(err.value)
    assert "use weights_only=False" not in str(err.value).replace("do not load it with weights_only=False", "")


def test_explain_with_layer_reuses_the_split_until_the_network_changes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.rand(1, 3, 16, 16)
    a = liftcam.explain(net, x, method="lift-cam", layer="1")
    first = liftcam.core._SPLITS[net][1]
    liftcam.explain(net, x, method="lift-cam", layer="1")
    assert liftcam.core._SPLITS[net][1] is first                     # not traced again
    with torch.no_grad():
        net[4].weight.mul_(-1)                                      # changed in place: split again
    b = liftcam.explain(net, x, method="lift-cam", layer="1")
    assert liftcam.core._SPLITS[net][1] is not first
    torch.testing.assert_close(b.coefficients, -a.coefficients)
