"""liftcam.models: the split reproduces the full model, leaves the caller's model alone, loads weights offline."""
import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

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
