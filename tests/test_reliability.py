"""No silent wrong answers (issue 21): a split that follows the model, cache keys that cover what changes
the result, NaN never passed on, work kept when a write fails, and messages that name the problem.

Tiny random models on 16 x 16 images. Each numbered case's tests fail on the library before these fixes
(the invariants marked so hold on both).
"""
import hashlib
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import liftcam
from liftcam import cache, core
from liftcam.explaining import explain_cached
from liftcam.methods.propagation import CompletenessError
from liftcam.metrics import average_drop_in_deletion, energy_pointing_game, faithfulness, summarize
from liftcam.models import SplitError, split
from liftcam.shapley import closed_form_shapley, exact_ground_truth


def net_with_head(seed=0):
    """Conv-ReLU (the layer, "1") then a head with a conv, LeakyReLU, a padded AvgPool2d, GAP and fc."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.LeakyReLU(0.1),
                         nn.AvgPool2d(3, stride=1, padding=1), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(24, 5)).eval()


def images(B=2, seed=1, size=16):
    return torch.rand(B, 3, size, size, generator=torch.Generator().manual_seed(seed))


def fresh(net, layer, x, method="lift-cam", **options):
    """The reference: an explanation from a split made now."""
    return liftcam.explain(split(net, layer, example=x[:1]), x, method, **options)


# --------------------------------------------------------------------------------------------
# 1 and the "done when": explain(net, x, layer=...) follows the network

def _weight_data_mul(net):
    net[2].weight.data.mul_(-1)


def _weight_data_assign(net):
    net[7].weight.data = torch.randn_like(net[7].weight)


def _slope(net):
    net[3].negative_slope = 0.7


def _count_include_pad(net):
    net[4].count_include_pad = False


def _padding(net):
    net[2].padding = (2, 2)


def _double(net):
    net.double()


@pytest.mark.parametrize("change", [_weight_data_mul, _weight_data_assign, _slope, _count_include_pad, _padding,
                                    _double], ids=lambda f: f.__name__.strip("_"))
def test_explain_with_a_layer_follows_a_changed_network(change):
    net, x = net_with_head(), images()
    liftcam.explain(net, x, layer="1")                                # split and remembered
    change(net)
    for method in ("lift-cam", "grad-cam"):
        e = liftcam.explain(net, x, method, layer="1")
        with torch.no_grad():
            want = net(x.to(e.logits.dtype))
        torch.testing.assert_close(e.logits, want, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(e.coefficients, fresh(net, "1", x.to(e.logits.dtype), method).coefficients)


def test_explain_raises_when_even_a_fresh_split_disagrees_with_the_network():
    """An invariant (held before too: the probe caught it)."""
    class Noisy(nn.Module):                              # the head draws noise: no split reproduces net(x)
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)

        def forward(self, x):
            a = self.conv(x)
            return self.fc((a + torch.rand_like(a)).mean((2, 3)))

    torch.manual_seed(0)
    with pytest.raises(SplitError, match="does not reproduce"):
        liftcam.explain(Noisy().eval(), images(), layer="conv")


# --------------------------------------------------------------------------------------------
# 4: every forward pass is checked, not one probe

class Capped(nn.Module):
    """An in-place clamp_ on a view of the layer's output: torch.fx loses it, so the split holds only where
    no activation reaches the cap."""

    def __init__(self, cap):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.relu, self.fc, self.cap = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4, 3), cap
        with torch.no_grad():
            self.conv.weight.abs_()                                 # brighter images, larger activations

    def forward(self, x):
        a = self.relu(self.conv(x))
        a.view(-1).clamp_(max=self.cap)
        return self.fc(a.mean((2, 3)))


def test_a_split_that_holds_on_the_probe_but_not_on_other_images_is_caught():
    dark, white = images(1) * 0.1, torch.ones(1, 3, 16, 16)
    probe = Capped(cap=1e9)
    with torch.no_grad():
        lo = probe.relu(probe.conv(dark)).max().item()
        hi = probe.relu(probe.conv(white)).max().item()
    assert lo < hi
    s = split(Capped(cap=(lo + hi) / 2).eval(), "relu", example=dark)
    assert s.verified                                                 # the probe passes
    liftcam.explain(s, dark)                                          # and so do images under the cap
    with pytest.raises(SplitError, match="does not reproduce the model on these images"):
        liftcam.explain(s, white)
    with pytest.raises(SplitError):
        explain_cached(s, white, "grad-cam", cache_dir=None)


# --------------------------------------------------------------------------------------------
# 2 and 7: model and image keys cover every setting, at the stored precision

class Gain(nn.Module):
    """A leaf module whose setting is a plain attribute (no extra_repr)."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return torch.relu(x) * self.k


def _pooled(pool, layer_module=None):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), layer_module or nn.ReLU(), pool, nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 5)).eval()


PAIRS = {
    "count_include_pad": (nn.AvgPool2d(3, 1, 1), nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
    "ceil_mode": (nn.AvgPool2d(3, 2, 1), nn.AvgPool2d(3, 2, 1, ceil_mode=True)),
    "divisor_override": (nn.AvgPool2d(3, 1, 1), nn.AvgPool2d(3, 1, 1, divisor_override=2)),
    "align_corners": (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                      nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)),
}


@pytest.mark.parametrize("setting", [*PAIRS, "cut_layer_attribute"])
def test_two_models_that_differ_only_in_a_hidden_setting_do_not_share_cached_results(tmp_path, setting):
    if setting == "cut_layer_attribute":
        a, b = _pooled(nn.Identity(), Gain(1.0)), _pooled(nn.Identity(), Gain(3.0))
    else:
        a, b = (_pooled(p) for p in PAIRS[setting])
    x = images()
    sa, sb = split(a, "1", example=x[:1]), split(b, "1", example=x[:1])
    assert cache.model_digest(sa) != cache.model_digest(sb)
    explain_cached(sa, x, "lift-cam", cache_dir=tmp_path)
    got = explain_cached(sb, x, "lift-cam", cache_dir=tmp_path)
    assert not got.extras["cached"].any()
    torch.testing.assert_close(got.coefficients, liftcam.explain(sb, x, "lift-cam").coefficients)
    exact_ground_truth(sa, x, cache_dir=tmp_path / "shap", progress=False)
    gt = exact_ground_truth(sb, x, cache_dir=tmp_path / "shap", progress=False)
    assert not gt.extras["cached"].any()


def test_keys_see_a_float64_change_of_1e_12_and_keep_float32_keys_as_they_were():
    net = net_with_head().double()
    s = split(net, "1", example=images(1).double())
    before = cache.model_digest(s)
    with torch.no_grad():
        s.head.get_submodule("7").bias[0] += 1e-12
    assert cache.model_digest(s) != before
    x = images(1)[0].double()
    assert cache.image_digest(x) != cache.image_digest(x + 1e-12)
    # a float32 image keeps the key of earlier versions (shape, then the float32 bytes): old caches stay valid
    x32 = images(1)[0]
    old = hashlib.sha256(f"{tuple(x32.shape)}".encode() + x32.numpy().tobytes()).hexdigest()
    assert cache.image_digest(x32) == old
    assert cache.image_digest(x32.double()) == old                  # float32 holds those float64 values exactly


def test_model_keys_are_the_same_in_every_split_of_the_same_network():
    """An invariant: the new settings in the key hold no addresses or counters."""
    net, x = net_with_head(), images(1)
    assert cache.model_digest(split(net, "1", example=x)) == cache.model_digest(split(net, "1", example=x))


# --------------------------------------------------------------------------------------------
# 3: the rule digest covers methods reached through attributes and module-level tables

def test_the_rule_key_covers_batch_scores_and_module_tables(monkeypatch, tmp_path):
    from liftcam.methods import propagation

    grad, lift = cache.source_digest(core.RULES["grad-cam"]), cache.source_digest(core.RULES["lift-cam"])
    s, x = split(net_with_head(), "1", example=images(1)), images()
    explain_cached(s, x, "grad-cam", cache_dir=tmp_path)

    def log_softmax_scores(self, logits, targets=None):
        t = self.targets if targets is None else targets
        return logits.log_softmax(1).gather(1, t.view(-1, 1)).squeeze(1)

    monkeypatch.setattr(core.Batch, "scores", log_softmax_scores)
    assert cache.source_digest(core.RULES["grad-cam"]) != grad
    e = explain_cached(s, x, "grad-cam", cache_dir=tmp_path)
    assert not e.extras["cached"].any()
    torch.testing.assert_close(e.coefficients, liftcam.explain(s, x, "grad-cam").coefficients)
    monkeypatch.undo()
    monkeypatch.setattr(propagation, "ACTIVATION_MODULES", propagation.ACTIVATION_MODULES[1:])
    assert cache.source_digest(core.RULES["lift-cam"]) != lift
    monkeypatch.undo()
    monkeypatch.setattr(propagation, "LINEAR_FUNCTIONS", propagation.LINEAR_FUNCTIONS - {torch.flatten})
    assert cache.source_digest(core.RULES["lift-cam"]) != lift


# --------------------------------------------------------------------------------------------
# 5: NaN is refused, never cached

def test_ablation_cam_at_a_zero_logit_is_an_error_not_nan(tmp_path):
    net = net_with_head()
    with torch.no_grad():
        net[7].weight[2] = 0
        net[7].bias[2] = 0                                           # class 2's logit is exactly 0
    s, x = split(net, "1", example=images(1)), images()
    with pytest.raises(ValueError, match="divides by the target logit"):
        liftcam.explain(s, x, "ablation-cam", targets=2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        explain_cached(s, x, "ablation-cam", targets=2, cache_dir=tmp_path)
    assert not list((tmp_path / "maps").glob("*.npz"))               # no NaN file written


def test_lrp_cam_with_epsilon_zero_on_a_zero_pre_activation_is_an_error_not_nan():
    net = net_with_head()
    with torch.no_grad():
        net[2].weight[1] = 0
        net[2].bias[1] = 0                                          # the head's conv gives z = 0 in channel 1
    s, x = split(net, "1", example=images(1)), images()
    assert not torch.isnan(liftcam.explain(s, x, "lrp-cam").coefficients).any()
    with pytest.raises(ValueError, match="positive epsilon"):
        liftcam.explain(s, x, "lrp-cam", epsilon=0.0)


def test_the_cache_refuses_to_write_nan(tmp_path):
    with pytest.raises(ValueError, match="NaN or inf"):
        cache.write(tmp_path / "x.npz", "k", alpha=np.array([1.0, np.nan]))


# --------------------------------------------------------------------------------------------
# 6: ADD when the target probability underflows

def _far_model(low, high):
    """Logits (0, t) with t = high on a black image and t = low on a white one (linear in the mean pixel)."""
    return lambda x: torch.stack([torch.zeros(len(x), dtype=x.dtype), high + (low - high) * x.mean((1, 2, 3))], 1)


def test_add_is_finite_when_the_target_probability_underflows():
    x, m = torch.ones(2, 3, 4, 4), torch.ones(2, 4, 4)               # deleting the whole image
    got = average_drop_in_deletion(_far_model(-800.0, -790.0), x, m, [1, 1])
    want = -100 * np.expm1(10.0)                                      # 100 (Y - D) / Y = 100 (1 - e^10)
    torch.testing.assert_close(got, torch.full((2,), want, dtype=torch.float32))
    add = faithfulness(_far_model(-800.0, -790.0), x, m, [1, 1], curve_images=0)["ADD"]
    torch.testing.assert_close(add, got)
    s = summarize(add)
    assert np.isfinite([s["mean"], s["low"], s["high"]]).all()


def test_add_beyond_float64_is_nan_with_a_warning_and_summarize_refuses_inf():
    x, m = torch.ones(1, 3, 4, 4), torch.ones(1, 4, 4)
    with pytest.warns(UserWarning, match="ADD is undefined"):
        got = average_drop_in_deletion(_far_model(-1000.0, 0.0), x, m, [1])
    assert torch.isnan(got).all()
    with pytest.raises(ValueError, match="infinite"):
        summarize(torch.tensor([1.0, -float("inf")]))


# --------------------------------------------------------------------------------------------
# 8: a failing write keeps the computed results

@pytest.mark.parametrize("method", ["lift-cam", "ablation-cam"])
def test_a_write_that_fails_keeps_the_computed_results(monkeypatch, tmp_path, method):
    s, x = split(net_with_head(), "1", example=images(1)), images(3)
    real, calls = cache.write, []

    def full_disk(path, key, **arrays):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real(path, key, **arrays)

    monkeypatch.setattr(cache, "write", full_disk)
    with pytest.warns(UserWarning, match="could not store 2 of them"):
        e = explain_cached(s, x, method, cache_dir=tmp_path)
    torch.testing.assert_close(e.coefficients, liftcam.explain(s, x, method).coefficients)
    assert e.extras["stored"].tolist() == [True, False, False]
    monkeypatch.undo()
    again = explain_cached(s, x, method, cache_dir=tmp_path)
    assert again.extras["cached"].tolist() == [True, False, False]


# --------------------------------------------------------------------------------------------
# 9-15: messages, and heads that used to fail

def test_a_layer_whose_output_is_a_list_is_named():
    class Branches(nn.Module):
        def forward(self, x):
            return [x, x * 2]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.branches, self.fc = nn.Conv2d(3, 4, 3), Branches(), nn.Linear(4, 3)

        def forward(self, x):
            a, b = self.branches(self.stem(x))
            return self.fc((a + b).mean((2, 3)))

    with pytest.raises(ValueError, match="a list of 2 values"):
        split(Net().eval(), "branches", example=images(1))


class ShapeInts(nn.Module):
    """A head that multiplies by ints read from the maps' shape (k * x, then 1 / (h w) of a sum)."""

    def __init__(self, by_hand=False):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.relu, self.fc, self.by_hand = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4, 3), by_hand

    def forward(self, x):
        a = self.relu(self.conv(x))
        if self.by_hand:                                            # the same numbers as constants
            return self.fc((a * 4).sum((2, 3)) * (1 / 196))
        h, w = a.shape[2], a.shape[3]
        return self.fc((a * a.shape[1]).sum((2, 3)) * (1 / (h * w)))


def test_ints_from_shapes_in_the_head_are_constants_for_lift_cam_and_lrp_cam():
    x = images(size=16)
    for method in ("lift-cam", "lrp-cam"):
        got = liftcam.explain(ShapeInts().eval(), x, method, layer="relu")
        want = liftcam.explain(ShapeInts(by_hand=True).eval(), x, method, layer="relu")
        torch.testing.assert_close(got.coefficients, want.coefficients)


def test_timm_maxpool2d_same_in_the_head_keeps_completeness():
    from timm.layers.pool2d_same import MaxPool2dSame

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), MaxPool2dSame(3, stride=2), nn.Conv2d(4, 4, 1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 7 * 7, 3)).eval()
    x = images(size=16)
    e = liftcam.explain(net, x, "lift-cam", layer="1")               # completeness is checked inside
    torch.testing.assert_close(e.coefficients.sum(1), e.extras["delta"], rtol=1e-4, atol=1e-5)
    # the same head with the 'same' padding of 14 x 14 written out (0 left/top, 1 right/bottom; zeros stand for
    # -inf after a ReLU), then a plain max-pool: the same coefficients
    padded = nn.Sequential(net[0], net[1], nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, 2),
                           net[3], net[4], net[5], net[6]).eval()
    torch.testing.assert_close(e.coefficients, liftcam.explain(padded, x, "lift-cam", layer="1").coefficients)


def test_batch_statistics_in_the_head_are_named_as_the_cause():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4, track_running_stats=False),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    with pytest.raises(CompletenessError, match="statistics of the batch.*3"):
        liftcam.explain(net, images(3), "lift-cam", layer="1")


def test_bfloat16_explain_cached_and_low_precision_closed_form(tmp_path):
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    x = images()
    s32 = split(linear, "1", example=x[:1])
    want = closed_form_shapley(s32, x).coefficients
    for dtype in (torch.bfloat16, torch.float16):
        s = split(linear.to(dtype), "1", example=x[:1])
        got = closed_form_shapley(s, x).coefficients
        torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05 * want.abs().max().item())
        linear.float()
    s16 = split(linear.to(torch.bfloat16), "1", example=x[:1])
    first = explain_cached(s16, x, "grad-cam", cache_dir=tmp_path)
    second = explain_cached(s16, x, "grad-cam", cache_dir=tmp_path)
    assert second.extras["cached"].all()
    torch.testing.assert_close(second.coefficients, first.coefficients)


def test_a_train_override_that_returns_none_is_split():
    class Frozen(nn.Sequential):
        def train(self, mode=True):                     # returns None and does not recurse
            self.training = mode

    torch.manual_seed(0)
    net = Frozen(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                 nn.Linear(4, 3))
    net[1].running_mean.fill_(0.3)                                   # eval and train modes differ
    x = images()
    e = liftcam.explain(net, x, "lift-cam", layer="2")
    with core.evaluating(net), torch.no_grad():
        torch.testing.assert_close(e.logits, net(x))


def test_forward_arguments_with_defaults_are_constants_and_required_ones_are_named():
    class Tempered(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)

        def forward(self, x, temperature=2.0):
            return self.fc(self.conv(x).mean((2, 3))) / temperature

    class Needs(Tempered):
        def forward(self, x, y):
            return super().forward(x) + y

    x = images()
    e = liftcam.explain(Tempered().eval(), x, "lift-cam", layer="conv")
    torch.testing.assert_close(e.logits, Tempered().eval()(x))
    with pytest.raises(ValueError, match="takes 'y' besides the images"):
        split(Needs().eval(), "conv")


# --------------------------------------------------------------------------------------------
# 16: wrappers, int layers, shared modules, LIME-CAM's n_samples, wrong-size examples

def test_data_parallel_and_compiled_models_are_split_through_the_network_they_wrap():
    net, x = net_with_head(), images()
    want = fresh(net, "1", x).coefficients
    for wrapped, layer in [(nn.DataParallel(net), "module.1"), (nn.DataParallel(net), "1"),
                           (torch.compile(net), "_orig_mod.1"), (torch.compile(net), "1")]:
        torch.testing.assert_close(liftcam.explain(wrapped, x, layer=layer).coefficients, want)


def test_an_int_layer_and_a_second_name_of_a_shared_module():
    net, x = net_with_head(), images()
    want = fresh(net, "1", x).coefficients
    torch.testing.assert_close(liftcam.explain(net, x, layer=1).coefficients, want)
    assert split(net, 1, example=x[:1]).layer == "1"

    class Shared(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.net, self.alias = inner, inner[1]                   # one ReLU, two names
        def forward(self, x):
            return self.net(x)

    torch.testing.assert_close(liftcam.explain(Shared(net), x, layer="alias").coefficients, want)
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        split(net, "nope")
    with pytest.raises(TypeError, match="module name"):
        split(net, 1.5)


@pytest.mark.parametrize("n", [-5, 0, 2.5])
def test_lime_cam_n_samples_must_be_a_positive_int(n):
    s, x = split(net_with_head(), "1", example=images(1)), images(1)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        liftcam.explain(s, x, "lime-cam", n_samples=n)


def test_an_example_of_the_wrong_size_is_named():
    with pytest.raises(ValueError, match="cannot take the example"):
        split(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)).eval(), "1",
              example=images(1, size=20))


def test_explain_leaves_no_warning_on_the_happy_path():
    """An invariant: the new checks are silent when all is well."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        liftcam.explain(net_with_head(), images(), "lift-cam", layer="1")


def test_pointing_game_boxes_as_arrays_read_the_first_axis_as_images():
    maps = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], [[0.25, 0.0, 0.0], [0.0, 0.0, 0.75]]])  # (2, 2, 3)
    want = energy_pointing_game(maps, [[(2, 0, 3, 1)], [(2, 1, 3, 2)]])                            # 1/2 and 3/4
    torch.testing.assert_close(want, torch.tensor([0.5, 0.75]))
    for boxes in [np.array([[2, 0, 3, 1], [2, 1, 3, 2]]), torch.tensor([[2, 0, 3, 1], [2, 1, 3, 2]]),
                  np.array([[[2, 0, 3, 1]], [[2, 1, 3, 2]]]), [np.array([[2, 0, 3, 1]]), np.array([[2, 1, 3, 2]])]]:
        torch.testing.assert_close(energy_pointing_game(maps, boxes), want)
    # one image's boxes as a (n, 4) array: image 0's two boxes hold 1 of its 2
    torch.testing.assert_close(energy_pointing_game(maps[:1], [np.array([[2, 0, 3, 1], [0, 0, 1, 1]])]),
                               torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"must be \(1, 4\).*\(1, n, 4\).*shape \(2, 4\)"):
        energy_pointing_game(maps[:1], np.array([[2, 0, 3, 1], [0, 0, 1, 1]]))     # 2 boxes, 1 map: refused
    with pytest.raises(ValueError, match=r"one list of .* per map: 2 maps, got 1 \(a list\)"):
        energy_pointing_game(maps, [np.array([[2, 0, 3, 1]])])


def test_images_the_head_cannot_take_are_named_with_their_size():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)).eval()
    s = split(net, "1", example=images(1))
    with pytest.raises(ValueError, match=r"images of 24 x 20 pixels .*resize the images .*model.preprocess"):
        liftcam.explain(s, torch.rand(2, 3, 20, 24))
    with pytest.raises(ValueError, match=r"images of 24 x 20 pixels"):
        liftcam.explain(net, torch.rand(2, 3, 20, 24), layer="1")

    def broken(*_):
        raise RuntimeError("something else")

    s.head.register_forward_hook(broken)               # another RuntimeError of the head propagates as it is
    with pytest.raises(RuntimeError, match="something else"):
        core._forward_chunk(s, images(1))
