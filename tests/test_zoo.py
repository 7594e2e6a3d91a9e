"""Twenty architectures at two cut points each: the split is exact, and LIFT-CAM keeps completeness
or says which operation of the head has no rule.

Random weights with BatchNorm statistics re-estimated on a few random images (so that logits are not
tiny), 64 x 64 inputs. The oracle is independent of the library's own check: the head is run on the
maps and on zero maps, and the coefficients must sum to the difference (relative to sum |alpha|).
"""
import pytest
import timm
import torch
import torchvision
from torch import nn

import liftcam
from liftcam.methods import CompletenessError

#: (architecture, the layer a CAM user picks, an earlier cut point)
ZOO = [
    ("alexnet", "features.11", "features.4"),
    ("vgg11", "features.19", "features.10"),
    ("vgg11_bn", "features.27", "features.20"),
    ("vgg16_bn", "features.42", "features.32"),
    ("resnet18", "layer4", "layer3"),
    ("resnet50", "layer4", "layer3"),
    ("resnext50_32x4d", "layer4", "layer3"),
    ("densenet121", "features", "features.denseblock3"),
    ("googlenet", "inception5b", "inception4e"),
    ("mobilenet_v2", "features.18", "features.14"),
    ("mobilenet_v3_small", "features.12", "features.9"),
    ("mobilenet_v3_large", "features.16", "features.13"),
    ("efficientnet_b0", "features.8", "features.6"),
    ("squeezenet1_1", "features.12", "features.7"),
    ("shufflenet_v2_x0_5", "conv5", "stage3"),
    ("mnasnet0_5", "layers.16", "layers.10"),
    ("regnet_x_400mf", "trunk_output", "trunk_output.block3"),
    ("regnet_y_400mf", "trunk_output", "trunk_output.block3"),
    ("convnext_tiny", "features.7", "features.5"),
    ("timm:tf_efficientnet_lite0", "blocks.6", "blocks.4"),
]
#: heads with an operation that DeepLIFT's rules do not cover: the error must name it
NO_RULE = {"convnext_tiny": "layer_norm"}


def build(arch: str) -> nn.Module:
    torch.manual_seed(0)
    if arch.startswith("timm:"):
        net = timm.create_model(arch[5:], pretrained=False)
    elif arch == "googlenet":
        net = torchvision.models.googlenet(aux_logits=False, init_weights=True)
    else:
        net = getattr(torchvision.models, arch)()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None                              # a plain average over the batches below
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    return net.eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("arch,layers", [(a, ls) for a, *ls in ZOO], ids=[a for a, *_ in ZOO])
def test_split_is_exact_and_lift_cam_is_complete_or_names_the_operation(arch, layers, images):
    net = build(arch)
    for layer in layers:
        s = liftcam.models.split(net, layer)
        with torch.no_grad():
            torch.testing.assert_close(s(images), net(images), rtol=1e-4, atol=1e-5)
        if arch in NO_RULE:
            with pytest.raises(CompletenessError, match=NO_RULE[arch]) as err:
                liftcam.explain(s, images, method="lift-cam")
            assert "stochastic_depth" not in str(err.value)      # the identity in eval mode is not a culprit
            continue
        e = liftcam.explain(s, images, method="lift-cam")
        with torch.no_grad():
            A = s.body(images)
            delta = (s.head(A) - s.head(torch.zeros_like(A))).gather(1, e.targets.view(-1, 1)).squeeze(1)
        gap = (e.coefficients.sum(1) - delta).abs() / e.coefficients.abs().sum(1)
        assert gap.max() < 1e-4, f"{arch} at {layer}: completeness gap {gap.max():.3g}"
