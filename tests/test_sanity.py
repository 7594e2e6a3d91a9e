"""The model-randomisation sanity check on a tiny net whose answer is known."""
import importlib

import numpy as np
import pytest
import torch
from torch import nn

import liftcam
from conftest import noise
from liftcam import models

sanity = importlib.import_module("liftcam.metrics.sanity")


def _net(seed: int = 0) -> nn.Module:
    """Two conv blocks, cut after the second; the head is global average pooling and a linear layer."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()),
                         nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


@pytest.fixture
def tiny():
    s = models.split(_net(), "1")
    liftcam.explain(s, noise(1, 12), method="grad-cam")           # verifies the split
    return s


def test_stages_cascade_from_the_head_down(tiny):
    stages = sanity.randomisation_stages(tiny, blocks=None, depth=1)
    assert [name for name, _ in stages] == ["head", "head + 1", "head + 1 + 0"]
    assert stages[0][1] == ["head.4"]
    assert stages[1][1] == ["head.4", "body.1.1.0"]
    assert stages[2][1] == ["head.4", "body.1.1.0", "body.1.0.0", "body.1.0.1"]
    assert len(sanity.randomisation_stages(tiny, blocks=1, depth=1)) == 2
    # two name components (blocks.6, layer4.1): here each layer with parameters is its own block
    assert [name for name, _ in sanity.randomisation_stages(tiny, blocks=None)][-1] == "head + 1.0 + 0.1 + 0.0"


def test_a_randomised_head_changes_grad_cam_to_the_new_weights_map(tiny):
    """Grad-CAM on a GAP + linear head is ReLU(sum_k w_ck A_k): after the head is re-drawn it must be the map of the
    new weights, which ranks the pixels differently; the caller's model and RNG are left alone."""
    x = noise(4, 12, seed=1)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    rng = torch.get_rng_state()
    r = sanity.randomised(tiny, ["head.4"], seed=3)
    assert all(torch.equal(v, tiny.state_dict()[k]) for k, v in before.items()), "the caller's model is never mutated"
    assert torch.equal(torch.get_rng_state(), rng)
    assert not torch.equal(r.head.get_submodule("4").weight, tiny.head.get_submodule("4").weight)
    torch.testing.assert_close(r.body(x), tiny.body(x))           # the body is untouched: the maps A are the same
    trained = liftcam.explain(tiny, x, method="grad-cam")
    e = liftcam.explain(r, x, method="grad-cam", targets=trained.targets)
    w = r.head.get_submodule("4").weight[trained.targets] / 144   # d y_c / d A_k(i, j) = w_ck / (h w)
    expect, _ = liftcam.cam_maps(tiny.body(x).detach(), w.detach(), (12, 12))
    torch.testing.assert_close(e.maps, expect)
    sim = sanity.map_similarity(trained.maps, e.maps)
    assert np.nanmean(sim["spearman"]) < 0.9
    table = sanity.model_randomisation(tiny, x, ["grad-cam"], stages=sanity.randomisation_stages(tiny, blocks=None, depth=1),
                                       seed=2, keep_maps=2).table
    assert list(table["stage"].unique()) == ["head", "head + 1", "head + 1 + 0"]
    # each map either ranks the pixels differently or is gone (a constant map: no ranking, NaN)
    assert ((table["spearman"] < 0.9) | table["randomised map empty"]).all() and table["spearman"].notna().any()
    assert torch.equal(sanity.randomised(tiny, ["head.4"], seed=3).head.get_submodule("4").weight,
                       r.head.get_submodule("4").weight), "deterministic for a seed"


def test_a_method_blind_to_the_head_fails_the_check(tiny):
    """A rule that ignores the head (every map weighted 1) gives the same map whatever the head: Spearman 1, SSIM 1
    when only the head is randomised. Randomising the body changes the maps themselves."""
    @liftcam.register("sum-of-maps", label="sum of maps", colour="#000001", cost="head", rank=99)
    def sum_of_maps(batch):
        return torch.ones(batch.activations.shape[:2])

    try:
        got = sanity.model_randomisation(tiny, noise(3, 12, seed=4), ["sum-of-maps", "grad-cam"],
                                         stages=sanity.randomisation_stages(tiny, blocks=1, depth=1), keep_maps=2)
        table = got.table
        assert set(got.maps) == {"trained", "head", "head + 1"} and got.maps["head"]["grad-cam"].shape == (2, 12, 12)
        torch.testing.assert_close(got.maps["head"]["sum-of-maps"], got.maps["trained"]["sum-of-maps"])
        summary = sanity.sanity_summary(table).set_index(["stage", "method"])
        assert summary.loc[("head", "sum-of-maps"), "verdict"] == "fails"
        assert summary.loc[("head", "grad-cam"), "verdict"] == "passes" and summary.loc[("head", "grad-cam"), "compared"] == 3
        head = table[table["stage"] == "head"].groupby("method")[["spearman", "ssim"]].mean()
        assert head.loc["sum-of-maps"].tolist() == pytest.approx([1.0, 1.0])
        assert head.loc["grad-cam", "spearman"] < 0.9
        deeper = table[table["stage"] == "head + 1"].groupby("method")["spearman"].mean()
        assert deeper["sum-of-maps"] < 0.99
    finally:
        del liftcam.core.REGISTRY["sum-of-maps"], liftcam.core.RULES["sum-of-maps"]


def test_map_similarity_of_equal_constant_and_reversed_maps():
    a = torch.rand(2, 9, 9)
    same = sanity.map_similarity(a, a)
    assert same["spearman"] == pytest.approx([1, 1]) and same["ssim"] == pytest.approx([1, 1])
    assert sanity.map_similarity(a, 1 - a)["spearman"] == pytest.approx([-1, -1])
    const = sanity.map_similarity(a, torch.zeros_like(a))
    assert np.isnan(const["spearman"]).all() and (const["ssim"] < 1).all()


def test_unknown_modules_and_unverified_splits_are_refused(tiny):
    with pytest.raises(ValueError, match="no module 'head.9'"):
        sanity.randomised(tiny, ["head.9"])
    fresh = models.split(_net(), "1")
    fresh.verified = False
    with pytest.raises(ValueError, match="verify the split first"):
        sanity.randomised(fresh, ["head.4"])
