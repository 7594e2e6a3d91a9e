"""SHAP-CAM from several seeds (ground_truth_seeds, explain_all(shap_seeds=...)) and Score-CAM's
skipping of constant maps, both against plain reference computations."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import liftcam
from liftcam import explaining, shapley
from liftcam.core import cam_maps
from liftcam.models import split
from test_shapley import Counting  # the head wrapper that counts evaluated rows


def tiny_cnn(K=8, classes=5, seed=0):
    """conv 3x3 -> ReLU (the split, K maps of 6x6 for 8x8 images) -> non-linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, K, 3), nn.ReLU(), nn.Conv2d(K, 6, 1), nn.ReLU(),
                         nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(24, classes))


def images(B=3, size=8, seed=1):
    torch.manual_seed(seed)
    return torch.rand(B, 3, size, size)


# ------------------------------------------------------------------------------------------
# ground_truth_seeds

def test_ground_truth_seeds_is_the_mean_of_the_seeds_with_its_standard_error(tmp_path):
    s = split(tiny_cnn(K=8), "1")
    x = images(3)
    n = 64                                                           # < 2^8 - 2: sampled, so the seeds differ
    runs = [shapley.ground_truth(s, x, nsamples=n, seed=seed, cache_dir=tmp_path / "single", progress=False,
                                 key="tiny") for seed in (0, 1)]
    e = shapley.ground_truth_seeds(s, x, nsamples=n, seeds=[0, 1], cache_dir=tmp_path / "seeds", progress=False)
    a, b = runs[0].coefficients, runs[1].coefficients
    mean = (a + b) / 2
    assert not torch.allclose(a, b)
    torch.testing.assert_close(e.coefficients, mean)
    torch.testing.assert_close(e.extras["per_seed"], torch.stack([a, b]))
    want = (a - b).double().norm(dim=1) / 2 / mean.double().norm(dim=1)            # S = 2: ||a - b|| / 2 / ||mean||
    torch.testing.assert_close(e.extras["error"].double(), want, rtol=1e-5, atol=0)
    assert (e.extras["error"] > 0).all()
    # maps rebuilt from the mean as ground_truth builds them
    maps, raw = cam_maps(s.body(x), mean, x.shape[-2:])
    torch.testing.assert_close(e.maps, maps)
    torch.testing.assert_close(e.raw, raw)
    assert torch.equal(e.targets, runs[0].targets) and torch.equal(e.logits, runs[0].logits)
    torch.testing.assert_close(e.extras["phi0"], runs[0].extras["phi0"])
    assert e.extras["seeds"] == [0, 1] and e.extras["nsamples"] == n and e.extras["estimator"] == "kernel"
    assert e.method == "shap-cam" and not e.extras["cached"].any()
    assert len(e.extras["files"]) == 3 and all(len(f) == 2 for f in e.extras["files"])
    # local accuracy survives the mean: it is linear
    torch.testing.assert_close(e.coefficients.sum(1) + e.extras["phi0"], e.logits[torch.arange(3), e.targets],
                               rtol=1e-4, atol=1e-4)

    # the single-seed files are ground_truth's own: a call on them reads all of them
    s.head = Counting(s.head)                # a wrapped head is another model digest: key= keeps the entries
    again = shapley.ground_truth_seeds(s, x, nsamples=n, seeds=[0, 1], cache_dir=tmp_path / "single",
                                       progress=False, key="tiny")
    assert again.extras["cached"].all()
    torch.testing.assert_close(again.coefficients, e.coefficients)
    assert s.head.rows == 3 * 3   # forward passes only (one per image per seed, one for the maps), no SHAP row


def test_ground_truth_seeds_error_formula_for_three_seeds_and_nan_for_one(tmp_path):
    s = split(tiny_cnn(K=8), "1")
    x = images(2)
    e = shapley.ground_truth_seeds(s, x, nsamples=48, seeds=[4, 5, 6], cache_dir=tmp_path, progress=False)
    P = e.extras["per_seed"].double()                                # (3, 2, K)
    m = P.mean(0)
    want = ((P - m) ** 2).sum((0, 2)).div(2).sqrt() / math.sqrt(3) / m.norm(dim=1)
    torch.testing.assert_close(e.extras["error"].double(), want, rtol=1e-5, atol=0)
    one = shapley.ground_truth_seeds(s, x, nsamples=48, seeds=[5], cache_dir=tmp_path, progress=False)
    assert one.extras["cached"].all() and one.extras["error"].isnan().all()
    torch.testing.assert_close(one.coefficients, e.extras["per_seed"][1])
    with pytest.raises(ValueError, match="distinct"):
        shapley.ground_truth_seeds(s, x, nsamples=48, seeds=[1, 1], cache_dir=tmp_path, progress=False)
    for bad in ([], 3, [0, 1.5]):
        with pytest.raises(ValueError, match="non-empty list of ints"):
            shapley.ground_truth_seeds(s, x, nsamples=48, seeds=bad, cache_dir=tmp_path, progress=False)


def test_explain_all_shap_seeds_and_estimator(tmp_path):
    s = split(tiny_cnn(K=6), "1")
    x = images(2)
    one = explaining.explain_all(s, x, ["shap-cam"], cache_dir=tmp_path, shap_nsamples=32, seed=3)["shap-cam"]
    assert one.extras["seed"] == 3 and one.extras["estimator"] == "kernel"
    # one seed: per_seed is the estimate itself, and the ground truth's own error is unknown (NaN)
    assert torch.equal(one.extras["per_seed"], one.coefficients[None]) and one.extras["error"].isnan().all()
    same = explaining.explain_all(s, x, ["shap-cam"], cache_dir=tmp_path, shap_nsamples=32, seed=3,
                                  shap_seeds=1)["shap-cam"]
    assert same.extras["cached"].all() and torch.equal(same.coefficients, one.coefficients)
    two = explaining.explain_all(s, x, ["shap-cam"], cache_dir=tmp_path, shap_nsamples=32, seed=3,
                                 shap_seeds=2)["shap-cam"]
    ref = shapley.ground_truth_seeds(s, x, nsamples=32, seeds=[3, 4], cache_dir=tmp_path / "shap", progress=False)
    assert two.extras["seeds"] == [3, 4] and ref.extras["cached"].all()   # seed 3 was reused from the single run
    torch.testing.assert_close(two.coefficients, ref.coefficients)
    torch.testing.assert_close(two.extras["per_seed"][0], one.coefficients)
    listed = explaining.explain_all(s, x, ["shap-cam"], cache_dir=tmp_path, shap_nsamples=32,
                                    shap_seeds=[4, 3])["shap-cam"]
    assert listed.extras["seeds"] == [4, 3] and listed.extras["cached"].all()
    with pytest.raises(ValueError, match="kernel, closed-form, exact"):
        explaining.explain_all(s, x, ["shap-cam"], cache_dir=tmp_path, shap_estimator="sampled")
    with pytest.raises(ValueError, match="positive int"):
        explaining.explain_all(s, x, ["shap-cam"], cache_dir=tmp_path, shap_seeds=0)


# ------------------------------------------------------------------------------------------
# Score-CAM skips the forward passes of constant maps

class Channels(nn.Module):
    """``x * scale + shift`` per channel: a scale of 0 makes a channel constant (0, or the shift)."""

    def __init__(self, scale, shift):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift


def constant_cnn(seed=0):
    """conv -> ReLU -> channels 1, 4, 6 zeroed and 7 set to 0.7 (the split, 8 maps of 10x10 for 12x12
    images) -> a non-linear head. Channels 0, 2, 3, 5 may be zero for some images too (the ReLU)."""
    torch.manual_seed(seed)
    scale = [1, 0, 1, 1, 0, 1, 0, 0]
    shift = [0, 0, 0, 0, 0, 0, 0, 0.7]
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), Channels(scale, shift), nn.Conv2d(8, 6, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5))


def reference_score_cam(model, x, A, targets, variant):
    """Score-CAM map by map, every map through the model, no skipping: the paper's code and
    pytorch-grad-cam. H_k = min-max of the upsampled A_k; where the upsampled map is constant,
    alpha_k = 0 ("score-cam", "baseline") or H_k = 0 ("pytorch-grad-cam": its epsilon)."""
    B, K = A.shape[:2]
    align = variant == "pytorch-grad-cam"
    out = torch.zeros(B, K, dtype=torch.float64)
    with torch.no_grad():
        p0 = model(torch.zeros_like(x[:1]))[0].softmax(0)
        for b in range(B):
            for k in range(K):
                up = F.interpolate(A[b, k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=align)
                lo, hi = up.min(), up.max()
                if align:
                    out[b, k] = model(x[b:b + 1] * (up - lo) / (hi - lo + 1e-8))[0, targets[b]]
                elif hi > lo:
                    p = model(x[b:b + 1] * (up - lo) / (hi - lo))[0].softmax(0)[targets[b]]
                    out[b, k] = p - p0[targets[b]] if variant == "baseline" else p
    return out.softmax(1) if align else out


def flat_after_upsampling(A, size, align):
    """(B, K): the maps whose upsampled copy is exactly constant."""
    up = F.interpolate(A.flatten(0, 1)[:, None], size=size, mode="bilinear", align_corners=align)
    return (up.amax((1, 2, 3)) <= up.amin((1, 2, 3))).view(A.shape[:2])


@pytest.mark.parametrize("variant", ["score-cam", "baseline", "pytorch-grad-cam"])
def test_score_cam_skips_constant_maps_and_equals_the_reference(variant):
    s = split(constant_cnn(), "2")
    x = images(3, size=12)
    A = s.body(x).detach()
    flat = A.flatten(2)
    constant = flat.amax(2) <= flat.amin(2)                          # (B, K)
    assert constant[:, [1, 4, 6, 7]].all() and (~constant).sum() > 0
    skipped = constant & flat_after_upsampling(A, x.shape[-2:], variant == "pytorch-grad-cam")
    assert skipped[:, [1, 4, 6]].all()
    # 0.7 upsampled 10 -> 12 is a few ulps uneven: not skipped, its noise stretched as in the references
    assert not skipped[:, 7].any()
    targets = s(x).argmax(1)
    ref = reference_score_cam(s, x, A, targets, variant)

    rows = []
    hook = s.body.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        e = liftcam.explain(s, x, method="score-cam", variant=variant, batch_size=3, progress=True)
    finally:
        hook.remove()
    torch.testing.assert_close(e.coefficients.double(), ref, rtol=1e-5, atol=1e-6)
    if variant != "pytorch-grad-cam":
        assert (e.coefficients[skipped] == 0).all()
    # explain's own forward pass, then one pass per map not skipped (+ the black image once)
    passes = sum(rows) - len(x)
    black = 0 if variant == "score-cam" else 1
    assert passes == int((~skipped).sum()) + black < A.shape[0] * A.shape[1]
    # batch size does not matter
    other = liftcam.explain(s, x, method="score-cam", variant=variant, batch_size=None)
    torch.testing.assert_close(other.coefficients, e.coefficients, rtol=1e-5, atol=1e-6)


def test_score_cam_with_no_constant_map_runs_one_pass_per_map():
    s = split(tiny_cnn(K=4), "1")
    x = images(2)
    A = s.body(x)
    assert (A.flatten(2).amax(2) > A.flatten(2).amin(2)).all()
    rows = []
    hook = s.body.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        e = liftcam.explain(s, x, method="score-cam", variant="pytorch-grad-cam", batch_size=5)
    finally:
        hook.remove()
    assert sum(rows) - len(x) == 2 * 4                              # no black image when nothing is constant
    ref = reference_score_cam(s, x, A.detach(), e.targets, "pytorch-grad-cam")
    torch.testing.assert_close(e.coefficients.double(), ref, rtol=1e-5, atol=1e-6)
