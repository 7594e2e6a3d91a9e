"""ROAD (Rong et al. 2022) against pytorch-grad-cam's ROAD, and its imputation against a hand-computed case."""
import importlib

import numpy as np
import pytest
import torch
from torch import nn

from liftcam import metrics, models

# pytorch-grad-cam's thresholding calls np.float32 on a tensor (numpy 2 deprecates how that converts)
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")
faith = importlib.import_module("liftcam.metrics.faithfulness")   # the module (metrics.faithfulness is the function)


def _model(seed: int = 0) -> nn.Module:
    """A small pixel-space classifier (normalisation inside, as a SplitModel)."""
    torch.manual_seed(seed)
    return nn.Sequential(models.Normalize(models.IMAGENET_MEAN, models.IMAGENET_STD), nn.Conv2d(3, 8, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 6)).eval()


def _inputs(B=3, H=20, W=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, 3, H, W, generator=g)
    maps = torch.nn.functional.interpolate(torch.rand(B, 1, 4, 5, generator=g), size=(H, W), mode="bilinear")[:, 0]
    return x, (maps - maps.amin((1, 2), keepdim=True)) / (maps.amax((1, 2), keepdim=True) - maps.amin((1, 2), keepdim=True))


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_imputation_equals_pytorch_grad_cams(noise):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    x, maps = _inputs(B=1, H=17, W=23)                       # not square: rows and columns are not swapped
    keep = torch.rand(17, 23, generator=torch.Generator().manual_seed(3)) > 0.6
    torch.manual_seed(11)
    ref = NoisyLinearImputer(noise=noise)(x[0], keep.float())
    ours = faith.noisy_linear_imputation(x[0], keep, noise=noise, generator=torch.Generator().manual_seed(11))
    assert (ours - ref).abs().max() <= 1e-5
    assert torch.equal(ours[:, keep], x[0][:, keep]), "kept pixels are untouched"
    assert (ours[:, ~keep] - x[0][:, ~keep]).abs().max() > 1e-3


def test_imputation_refills_a_linear_ramp_exactly():
    """The neighbours' weights are symmetric, so a linear image is its own weighted mean at every interior pixel:
    holes away from the border are refilled exactly (noise 0)."""
    r, c = torch.meshgrid(torch.arange(12.0), torch.arange(15.0), indexing="ij")
    img = torch.stack([0.02 * r + 0.03 * c, 0.5 - 0.01 * r, 0.04 * c]).float()
    keep = torch.ones(12, 15, dtype=torch.bool)
    keep[3:8, 4:11] = False
    keep[9, 2] = False
    out = faith.noisy_linear_imputation(img, keep, noise=0.0)
    assert (out - img).abs().max() <= 1e-5
    assert torch.equal(faith.noisy_linear_imputation(img, torch.ones_like(keep)), img), "nothing removed: unchanged"


def test_road_equals_pytorch_grad_cams_road():
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    net = _model()
    x, maps = _inputs()
    with torch.no_grad():
        t = net(x).argmax(1)
    pct = [20, 50, 80]
    ours = metrics.road(net, x, maps, t, percentiles=pct, seed=4)
    targets = [ClassifierOutputSoftmaxTarget(int(k)) for k in t]
    ref = {}
    for key, cls in [("ROAD MoRF", ROADMostRelevantFirstAverage), ("ROAD LeRF", ROADLeastRelevantFirstAverage)]:
        torch.manual_seed(4)                                 # the reference draws its noise from the global RNG
        ref[key] = torch.from_numpy(cls(pct)(x, maps.numpy(), targets, net))
        assert (ours[key] - ref[key]).abs().max() <= 1e-5, key
    assert ref["ROAD MoRF"].abs().max() > 1e-3
    # ROADCombined: (LeRF - MoRF) / 2
    torch.testing.assert_close(ours["ROAD"], (ref["ROAD LeRF"] - ref["ROAD MoRF"]) / 2, atol=1e-5, rtol=0)
    assert ours["morf_curves"].shape == (3, 3)
    torch.testing.assert_close(ours["ROAD MoRF"], ours["morf_curves"].mean(1))


def test_road_percentiles_remove_the_right_pixels():
    m = torch.arange(100.0).view(10, 10) / 99
    assert (~faith._road_keep(m, 80, "morf")).sum() == 20 and not faith._road_keep(m, 80, "morf")[9, 9]
    assert (~faith._road_keep(m, 80, "lerf")).sum() == 20 and not faith._road_keep(m, 80, "lerf")[0, 0]


def test_road_is_seeded_and_batch_size_free():
    net = _model()
    x, maps = _inputs()
    a = metrics.road(net, x, maps, 1, percentiles=[30, 70], seed=0, batch_size=2)
    b = metrics.road(net, x, maps, 1, percentiles=[30, 70], seed=0, batch_size=None)
    c = metrics.road(net, x, maps, 1, percentiles=[30, 70], seed=1)
    torch.testing.assert_close(a["ROAD"], b["ROAD"], atol=1e-6, rtol=0)
    assert not torch.allclose(a["ROAD"], c["ROAD"])
    assert metrics.HIGHER_IS_BETTER["ROAD"] and not metrics.HIGHER_IS_BETTER["ROAD MoRF"]


def test_road_refuses_bad_percentiles():
    x, maps = _inputs(B=1)
    with pytest.raises(ValueError, match=r"percentiles .* \(0, 100\)"):
        metrics.road(_model(), x, maps, 0, percentiles=[0, 50])
    assert np.isfinite(metrics.road(_model(), x, maps, 0, percentiles=[50])["ROAD"].numpy()).all()


def test_an_image_removed_whole_is_noise_as_in_pytorch_grad_cam():
    """An empty map removes every pixel at every percentile: nothing is left to interpolate from, and the reference's
    singular system gives zeros; here it is not solved at all, with the same noise drawn."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    x, _ = _inputs(B=1, H=9, W=11)
    keep = faith._road_keep(torch.zeros(9, 11), 50, "morf")
    assert not keep.any()
    torch.manual_seed(2)
    ref = NoisyLinearImputer()(x[0], keep.float())
    ours = faith.noisy_linear_imputation(x[0], keep, generator=torch.Generator().manual_seed(2))
    assert (ours - ref).abs().max() <= 1e-6 and ours.abs().max() < 0.1
