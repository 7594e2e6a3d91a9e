"""Shared fixtures: random-weight VGG16/ResNet50 (no downloads) and the real offline EfficientNet-Lite0."""
import os

import pytest
import torch
import torchvision

import liftcam
from liftcam import models

torch.set_num_threads(min(2, os.cpu_count() or 1))


def _random(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return getattr(torchvision.models, arch)().eval()


@pytest.fixture(scope="session")
def vgg16_net():
    return _random("vgg16")


@pytest.fixture(scope="session")
def resnet50_net():
    return _random("resnet50")


@pytest.fixture(scope="session")
def vgg16(vgg16_net):
    return models.split(vgg16_net, "features.29", normalize=(models.IMAGENET_MEAN, models.IMAGENET_STD))


@pytest.fixture(scope="session")
def resnet50(resnet50_net):
    return models.split(resnet50_net, "layer4", normalize=(models.IMAGENET_MEAN, models.IMAGENET_STD))


@pytest.fixture(scope="session")
def effnet():
    return models.load("efficientnet_lite0")


@pytest.fixture(scope="session")
def photos(effnet):
    """Three real photographs preprocessed for EfficientNet-Lite0: (3, 3, 224, 224)."""
    import skimage.data
    from PIL import Image

    imgs = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    return torch.stack([effnet.preprocess(Image.fromarray(i)) for i in imgs])


@pytest.fixture(scope="session")
def effnet_net():
    """The unsplit EfficientNet-Lite0 (takes images normalised with mean = std = 0.5)."""
    return models._efficientnet_lite0()


@pytest.fixture(scope="session")
def small_photos(photos):
    """The photographs at 96 x 96 (3 x 3 maps): perturbation methods run one forward pass per map."""
    return torch.nn.functional.interpolate(photos, size=(96, 96), mode="bilinear", antialias=True).clamp(0, 1)


def noise(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


__all__ = ["liftcam", "noise"]
