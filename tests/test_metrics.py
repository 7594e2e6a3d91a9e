"""liftcam.metrics against hand-computed oracles on toy models whose probabilities are known in closed form.

Most models here output logits ``(log m, log(1 - m))`` with ``m`` a weighted mean of the pixels,
so the softmax probability of class 0 is exactly ``m`` and every expected number below is
derived by hand in the comments, never by the code under test.
"""
import doctest
import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

import liftcam.metrics as metrics
from liftcam.metrics import (
    average_drop,
    average_drop_in_deletion,
    compare,
    cosine_similarity,
    deletion,
    energy_pointing_game,
    increase_in_confidence,
    insertion,
    spearman,
    summarize,
    top_k_overlap,
)

D64 = torch.float64


class WeightedMean(nn.Module):
    """p(class 0) = sum_ij w_ij * mean_c x_cij, p(class 1) = 1 - p(class 0), exactly (logits are their logs)."""

    def __init__(self, weights):
        super().__init__()
        w = torch.as_tensor(weights, dtype=D64)
        self.register_buffer("w", w / w.sum())                       # (H, W), sums to 1

    def forward(self, x):                                             # (N, 3, H, W) -> (N, 2)
        m = (x.mean(1) * self.w).sum((1, 2))
        return torch.stack([m.log(), torch.log1p(-m)], 1)


def mean_model(H, W):
    return WeightedMean(torch.ones(H, W))


def gray(rows):
    """(1, 3, H, W) float64 image with the same values in every channel."""
    t = torch.tensor(rows, dtype=D64)
    return t.expand(3, *t.shape)[None].clone()


def amap(rows):
    return torch.tensor(rows, dtype=D64)[None]                        # (1, H, W)


class Recorder(nn.Module):
    """Wraps a model and records the batch size of every forward pass."""

    def __init__(self, model):
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x):
        self.sizes.append(len(x))
        return self.model(x)


def close(actual, expected, atol=1e-5):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=torch.float32), atol=atol, rtol=0,
                               equal_nan=True)


# --------------------------------------------------------------------------------------------
# AD, IC, ADD


def _ad_case():
    # 2 x 3 images, all pixels 0.9; the model reads row 0 only, weights (1, 2, 3) / 6: Y(class 0) = 0.9.
    model = WeightedMean([[1, 2, 3], [0, 0, 0]])
    images = torch.cat([gray([[0.9] * 3] * 2)] * 3)                   # (3, 3, 2, 3)
    maps = torch.cat([amap([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]]),
                      amap([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]),
                      amap([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])])        # (3, 2, 3)
    return model, images, maps, torch.tensor([0, 1, 0])


def test_average_drop_increase_and_drop_in_deletion_by_hand():
    model, images, maps, targets = _ad_case()
    # Image 0, class 0: Y = 0.9. O = 0.9 * (1*1 + 2*0.5 + 3*0) / 6 = 0.3 -> AD = 100 * 0.6 / 0.9 = 66.667,
    #   IC = 0. D = 0.9 * (1*0 + 2*0.5 + 3*1) / 6 = 0.6 -> ADD = 100 * 0.3 / 0.9 = 33.333.
    # Image 1, class 1: Y = 1 - 0.9 = 0.1. O = 1 - 0.9 * 0.5 = 0.55 > Y -> AD = max(0, -0.45) = 0, IC = 100.
    #   D = 1 - 0.9 * (1 - 0.5) = 0.55 -> ADD = 100 * (0.1 - 0.55) / 0.1 = -450 (not clipped).
    # Image 2, class 0, map of ones: O = Y exactly -> AD = 0 and IC = 0 (strict "<");
    #   D on a black image = 0 -> ADD = 100.
    # (Row 1 of each map is a decoy: the model never sees it, so a row/column mix-up changes O.)
    close(average_drop(model, images, maps, targets), [200 / 3, 0.0, 0.0], atol=1e-4)
    close(increase_in_confidence(model, images, maps, targets), [0.0, 100.0, 0.0])
    close(average_drop_in_deletion(model, images, maps, targets), [100 / 3, -450.0, 100.0], atol=1e-3)


def test_single_step_metrics_do_not_depend_on_batch_size():
    model, images, maps, targets = _ad_case()
    for metric in (average_drop, increase_in_confidence, average_drop_in_deletion):
        whole = metric(model, images, maps, targets)
        torch.testing.assert_close(metric(model, images, maps, targets.tolist(), batch_size=1), whole)


def test_average_drop_uses_softmax_probabilities_not_logits():
    # Logits (2 * mean, 0): on a 0.5 image Y = sigmoid(1) = 0.731059; with the map at 0.5 everywhere,
    # O = sigmoid(0.5) = 0.622459 -> AD = 100 * (0.731059 - 0.622459) / 0.731059 = 14.8552.
    model = lambda x: torch.stack([2 * x.mean((1, 2, 3)), torch.zeros(len(x), dtype=x.dtype)], 1)
    images = torch.full((1, 3, 2, 2), 0.5, dtype=D64)
    maps = torch.full((1, 2, 2), 0.5, dtype=D64)
    close(average_drop(model, images, maps, [0]), [14.8552], atol=1e-3)


def test_model_mode_restored_and_no_gradients_kept():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 2 * 2, 3)).train()
    images, maps = torch.rand(2, 3, 2, 2), torch.rand(2, 2, 2)
    a = average_drop(model, images, maps, [0, 2])
    b = average_drop(model, images, maps, [0, 2])
    torch.testing.assert_close(a, b)                                  # dropout was off: eval mode
    assert model.training and model[1].training                       # ... and the flags came back
    assert not a.requires_grad and a.device.type == "cpu" and a.dtype == torch.float32


# --------------------------------------------------------------------------------------------
# Deletion and insertion


X14 = [[0.4, 0.8, 0.2, 0.6]]          # 1 x 4 image: pixel sum 2.0, mean 0.5
M14 = [[0.1, 0.9, 0.5, 0.3]]          # saliency order: pixel 1, 2, 3, 0


def test_deletion_curve_and_auc_by_hand():
    # One pixel per step, removed (set to 0) in the order 1, 2, 3, 0; p = (remaining sum) / 4:
    #   0 removed: 2.0 / 4 = 0.5;  -0.8 -> 1.2 / 4 = 0.3;  -0.2 -> 0.25;  -0.6 -> 0.1;  -0.4 -> 0.
    # AUC = trapezoids of width 1/4: ((.5+.3) + (.3+.25) + (.25+.1) + (.1+0)) / 2 / 4 = 1.8 / 8 = 0.225.
    auc, curves = deletion(mean_model(1, 4), gray(X14), amap(M14), [0], pixels_per_step=1, return_curves=True)
    close(curves, [[0.5, 0.3, 0.25, 0.1, 0.0]])
    close(auc, [0.225])
    close(deletion(mean_model(1, 4), gray(X14), amap(M14), [0], pixels_per_step=1), [0.225])


def test_deletion_last_step_smaller():
    # 3 pixels per step on 4 pixels: ceil(4 / 3) = 2 steps. 0 removed: 0.5; pixels 1, 2, 3 removed:
    # 0.4 / 4 = 0.1; all removed: 0. AUC = ((0.5 + 0.1) + (0.1 + 0)) / 2 / 2 = 0.175.
    auc, curves = deletion(mean_model(1, 4), gray(X14), amap(M14), [0], pixels_per_step=3, return_curves=True)
    close(curves, [[0.5, 0.1, 0.0]])
    close(auc, [0.175])


def test_deletion_default_step_is_the_width_on_a_non_square_image():
    # 2 x 3 image (sum 2.1, mean 0.35); default step = W = 3 pixels -> 2 steps, 3 points.
    # Order by map: (0,1)=1.0 [0.2], (1,2)=0.8 [0.6], (1,0)=0.6 [0.4], (1,1)=0.4, (0,0)=0.2, (0,2)=0.0.
    # Step 1 removes 0.2 + 0.6 + 0.4 = 1.2 -> 0.9 / 6 = 0.15. AUC = ((0.35 + 0.15) + (0.15 + 0)) / 4 = 0.1625.
    image = gray([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    m = amap([[0.2, 1.0, 0.0], [0.6, 0.4, 0.8]])
    auc, curves = deletion(mean_model(2, 3), image, m, [0], return_curves=True)
    close(curves, [[0.35, 0.15, 0.0]])
    close(auc, [0.1625])


def test_deletion_breaks_ties_by_pixel_index():
    # A flat map: pixels go in index order 0, 1, 2, 3. Sums 2.0, 1.6, 0.8, 0.6, 0 -> p = sum / 4.
    # AUC = (0.5 + 0.4 + 0.2 + 0.15 + 0 - (0.5 + 0) / 2) / 4 = 1.0 / 4 = 0.25.
    auc, curves = deletion(mean_model(1, 4), gray(X14), amap([[0.5] * 4]), [0], pixels_per_step=1,
                           return_curves=True)
    close(curves, [[0.5, 0.4, 0.2, 0.15, 0.0]])
    close(auc, [0.25])


def test_deletion_ties_by_pixel_index_on_a_larger_map():
    # 8 x 8: map 0.7 on columns 0-3, 0.3 on columns 4-7; image 1 on rows 0-1, 0 elsewhere (16 ones).
    # Order: the left half row by row (ties by index), then the right half; 8 pixels (= W) per step.
    # Step 1 removes rows 0-1 of the left half (8 ones): 8 / 64 = .125; steps 2-4 remove zeros;
    # step 5 removes rows 0-1 of the right half: 0. Curve .25, .125 x 4, 0 x 4.
    # AUC = (0.25 + 4 * 0.125 - (0.25 + 0) / 2) / 8 = 0.625 / 8 = 0.078125. (64 pixels: an unstable
    # sort reorders ties here.)
    image = torch.zeros(1, 3, 8, 8, dtype=D64)
    image[:, :, :2] = 1.0
    m = torch.full((1, 8, 8), 0.3, dtype=D64)
    m[:, :, :4] = 0.7
    auc, curves = deletion(mean_model(8, 8), image, m, [0], return_curves=True)
    close(curves, [[0.25, 0.125, 0.125, 0.125, 0.125, 0.0, 0.0, 0.0, 0.0]])
    close(auc, [0.078125])


def test_deletion_substrate():
    # White substrate: pixels 1, 2, 3, 0 become 1: sums 2.0, 2.2, 3.0, 3.4, 4.0 -> p 0.5, 0.55, 0.75, 0.85, 1.
    # AUC = (3.65 - (0.5 + 1) / 2) / 4 = 0.725.
    model, image, m = mean_model(1, 4), gray(X14), amap(M14)
    auc, curves = deletion(model, image, m, [0], pixels_per_step=1, substrate=1.0, return_curves=True)
    close(curves, [[0.5, 0.55, 0.75, 0.85, 1.0]])
    close(auc, [0.725])
    # One colour per channel, (3, 1, 1): (0.2, 0.5, 0.8) has channel mean 0.5, the value the model sees.
    # Sums: 2.0; 0.8 -> 0.5: 1.7; 0.2 -> 0.5: 2.0; 0.6 -> 0.5: 1.9; 0.4 -> 0.5: 2.0.
    colour = torch.tensor([0.2, 0.5, 0.8]).view(3, 1, 1)
    _, curves = deletion(model, image, m, [0], pixels_per_step=1, substrate=colour, return_curves=True)
    close(curves, [[0.5, 0.425, 0.5, 0.475, 0.5]])


def test_insertion_from_a_blurred_start_by_hand():
    # Kernel 3 with sigma = 1 / sqrt(2 ln 2): exp(-1 / (2 sigma^2)) = 1/2, weights (1/4, 1/2, 1/4).
    # Replicate padding of [.4 .8 .2 .6] -> [.4 | .4 .8 .2 .6 | .6]; the vertical pass of a 1-row image
    # is the identity. Blurred: .1+.2+.2 = .5, .1+.4+.05 = .55, .2+.1+.15 = .45, .05+.3+.15 = .5.
    # Model weights (.4, .3, .2, .1): start .2 + .165 + .09 + .05 = .505;
    #   insert pixel 1 (.55 -> .8): + .3 * .25 = .58;  pixel 2 (.45 -> .2): - .05 = .53;
    #   pixel 3 (.5 -> .6): + .01 = .54;  pixel 0 (.5 -> .4): - .04 = .50 (= the original image).
    # AUC = (.505 + .58 + .53 + .54 + .5 - (.505 + .5) / 2) / 4 = 2.1525 / 4 = 0.538125.
    model = WeightedMean([[0.4, 0.3, 0.2, 0.1]])
    sigma = 1 / math.sqrt(2 * math.log(2))
    auc, curves = insertion(model, gray(X14), amap(M14), [0], pixels_per_step=1, blur_kernel=3,
                            blur_sigma=sigma, return_curves=True)
    close(curves, [[0.505, 0.58, 0.53, 0.54, 0.50]])
    close(auc, [0.538125])


def test_insertion_explicit_start():
    # Start black; insert pixels 1, 2, 3, 0: sums 0, 0.8, 1.0, 1.6, 2.0 -> p 0, .2, .25, .4, .5.
    # AUC = (1.35 - (0 + 0.5) / 2) / 4 = 0.275.
    auc, curves = insertion(mean_model(1, 4), gray(X14), amap(M14), [0], pixels_per_step=1,
                            start=torch.zeros(3, 1, 4), return_curves=True)
    close(curves, [[0.0, 0.2, 0.25, 0.4, 0.5]])
    close(auc, [0.275])


def test_default_blur_keeps_a_flat_image_flat():
    # 11 x 11, sigma 5 on a 6 x 7 image of 0.3: replicate padding keeps every pixel at 0.3 (RISE's zero
    # padding would darken the border), so the curve is flat at 0.3 and so is its normalised AUC.
    image = torch.full((1, 3, 6, 7), 0.3, dtype=D64)
    auc, curves = insertion(mean_model(6, 7), image, torch.rand(1, 6, 7, dtype=D64), [0], return_curves=True)
    assert curves.shape == (1, 7)                                     # ceil(42 / 7) + 1 points
    close(curves, torch.full((1, 7), 0.3))
    close(auc, [0.3])


def test_gaussian_blur_of_a_delta_on_a_non_square_image():
    # Weights (1/4, 1/2, 1/4) per axis: a 1 at row 1, column 2 of a 3 x 5 image spreads to the outer
    # product (1, 2, 1)^T (1, 2, 1) / 16 over rows 0-2, columns 1-3; columns 0 and 4 stay 0.
    x = torch.zeros(1, 3, 3, 5, dtype=D64)
    x[:, :, 1, 2] = 1.0
    out = metrics._gaussian_blur(x, 3, 1 / math.sqrt(2 * math.log(2)))
    expected = torch.tensor([[0, 1, 2, 1, 0], [0, 2, 4, 2, 0], [0, 1, 2, 1, 0]], dtype=D64) / 16
    torch.testing.assert_close(out, expected.expand(1, 3, 3, 5))


@pytest.mark.parametrize("curve", [deletion, insertion])
def test_curves_do_not_depend_on_batch_size(curve):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 5))
    images = torch.rand(3, 3, 4, 5)
    maps = torch.randint(0, 4, (3, 4, 5)).float() / 3                 # few levels: many ties
    targets = torch.tensor([0, 3, 4])
    # 20 pixels, 3 per step -> 7 steps, 8 points per curve, 24 perturbed images in all.
    ref = curve(model, images, maps, targets, pixels_per_step=3, batch_size=1, return_curves=True)
    assert ref.curves.shape == (3, 8)
    for bs in (3, None, 7, 100):
        rec = Recorder(model)
        out = curve(rec, images, maps, targets, pixels_per_step=3, batch_size=bs, return_curves=True)
        torch.testing.assert_close(out.curves, ref.curves, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(out.auc, ref.auc, rtol=1e-6, atol=1e-7)
        assert sum(rec.sizes) == 24
        assert max(rec.sizes) == min(24, 8 if bs is None else bs)     # None: one curve's worth per pass
    # Each image's curve is its own: alone it gives the same numbers as in the batch.
    alone = curve(model, images[1:2], maps[1:2], targets[1:2], pixels_per_step=3, return_curves=True)
    torch.testing.assert_close(alone.curves, ref.curves[1:2], rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Energy-based pointing game

E35 = [[0.0, 0.2, 0.4, 0.0, 1.0],
       [0.1, 0.5, 0.3, 0.0, 0.0],
       [0.0, 0.0, 0.0, 0.5, 0.0]]    # 3 rows x 5 columns, sum 3.0


def test_energy_pointing_game_by_hand_on_a_non_square_map():
    maps = torch.tensor([E35] * 6)
    boxes = [
        [(1, 0, 3, 2)],               # rows 0-1, columns 1-2: .2 + .4 + .5 + .3 = 1.4 -> 1.4 / 3
        [(4, 0, 5, 1)],               # row 0, column 4: 1.0 -> 1/3 (x/y swapped it would be empty)
        [(3, 2, 4, 3)],               # row 2, column 3: 0.5 -> 1/6
        [(1, 0, 3, 2), (2, 0, 5, 2)],  # union: rows 0-1, columns 1-4: 2.4 -> 0.8 (counted twice: 3.1 / 3)
        [(3, 1, 99, 99), (-5, -5, 2, 1)],  # clipped: rows 1-2 x columns 3-4 = 0.5, row 0 x columns 0-1 = 0.2
        [],                           # no boxes: undefined
    ]
    close(energy_pointing_game(maps, boxes), [1.4 / 3, 1 / 3, 1 / 6, 0.8, 0.7 / 3, float("nan")])


def test_energy_pointing_game_refuses_boxes_it_cannot_score():
    """A box wholly outside the map used to score 0 (where no box scores NaN); an empty box counted nothing."""
    maps = torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match="entirely outside"):
        energy_pointing_game(maps, [[(5, 5, 9, 9)]])
    with pytest.raises(ValueError, match="empty or inverted"):
        energy_pointing_game(maps, [[(2, 1, 2, 3)]])
    close(energy_pointing_game(maps, [[(2, 2, 9, 9)]]), [maps[0, 2:, 2:].sum() / maps.sum()])   # clipped


def test_energy_pointing_game_scores_an_empty_map():
    """An all-zero map is scored, never dropped: the box's share of the frame (a constant map's score) by
    default, 0 under the other rule; dropping (NaN) only on request. An image without boxes stays NaN."""
    maps = torch.zeros(3, 3, 5)
    maps[1, 0, 0] = 1.0
    boxes = [[(0, 0, 2, 3)], [(0, 0, 1, 1)], []]              # box of image 0: 2 columns x 3 rows of 15 pixels
    close(energy_pointing_game(maps, boxes), [6 / 15, 1.0, float("nan")])
    close(energy_pointing_game(torch.ones(1, 3, 5), boxes[:1]), [6 / 15])       # = a constant map
    close(energy_pointing_game(maps, boxes, empty="zero"), [0.0, 1.0, float("nan")])
    close(energy_pointing_game(maps, boxes, empty="nan"), [float("nan"), 1.0, float("nan")])
    with pytest.raises(ValueError, match="empty must be one of"):
        energy_pointing_game(maps, boxes, empty="drop")


# --------------------------------------------------------------------------------------------
# Agreement


def test_cosine_similarity_by_hand_and_against_torch():
    a = torch.tensor([[1.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -2.0, -3.0], [1.0, 2.0, 3.0]])
    close(cosine_similarity(a, b), [1 / math.sqrt(2), -1.0, float("nan")])   # zero vector: NaN
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 9, generator=g), torch.randn(5, 9, generator=g)
    close(cosine_similarity(a, b), torch.nn.functional.cosine_similarity(a, b, dim=1))


def test_spearman_by_hand_and_against_scipy():
    # Ties: ranks of (1, 2, 2, 3) are (1, 2.5, 2.5, 4); against (1, 2, 3, 4), centred ranks
    # (-1.5, 0, 0, 1.5) and (-1.5, -.5, .5, 1.5): 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    b = torch.tensor([[10.0, 20.0, 30.0, 45.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    close(spearman(a, b), [1.0, -1.0, math.sqrt(0.9), float("nan")])         # constant row: NaN
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 5, (6, 12), generator=g).double()                   # many ties
    b = torch.randint(0, 5, (6, 12), generator=g).double()
    expected = [scipy.stats.spearmanr(a[i].numpy(), b[i].numpy()).statistic for i in range(6)]
    close(spearman(a, b), expected)


def test_top_k_overlap_by_hand():
    a = torch.tensor([[5.0, 1.0, 4.0, 3.0], [1.0, 1.0, 1.0, 0.0], [-9.0, 1.0, 2.0, 3.0]])
    b = torch.tensor([[5.0, 4.0, 0.0, 9.0], [0.0, 1.0, 1.0, 1.0], [9.0, 1.0, 2.0, 3.0]])
    # Row 0: top2 {0, 2} vs {3, 0}: 1/2. Row 1 (ties to the lower index): {0, 1} vs {1, 2}: 1/2.
    # Row 2 (by value, not magnitude): {3, 2} vs {0, 3}: 1/2.
    close(top_k_overlap(a, b, 2), [0.5, 0.5, 0.5])
    # k = 3: {0, 2, 3} vs {3, 0, 1}: 2/3; {0, 1, 2} vs {1, 2, 3}: 2/3; {3, 2, 1} vs {0, 3, 2}: 2/3.
    close(top_k_overlap(a, b, 3), [2 / 3, 2 / 3, 2 / 3])
    close(top_k_overlap(a, b, 4), [1.0, 1.0, 1.0])


# --------------------------------------------------------------------------------------------
# summarize


def test_summarize_excludes_and_counts_nan():
    s = summarize(torch.tensor([1.0, 2.0, 3.0, float("nan")]))
    assert (s["mean"], s["n"], s["n_nan"]) == (2.0, 3, 1)
    assert 1.0 <= s["low"] < 2.0 < s["high"] <= 3.0
    assert summarize([2.0, 2.0, float("nan")]) == dict(mean=2.0, low=2.0, high=2.0, n=2, n_nan=1)
    empty = summarize([float("nan")] * 3)
    assert math.isnan(empty["mean"]) and math.isnan(empty["low"]) and (empty["n"], empty["n_nan"]) == (0, 3)


def test_summarize_bootstrap_is_seeded_and_matches_the_normal_interval():
    # 400 normal quantiles: mean 0, sd ~1, so the 95% interval is ~ +-1.96 / sqrt(400) = +-0.098.
    x = scipy.stats.norm.ppf((np.arange(400) + 0.5) / 400)
    s = summarize(x, n_boot=2000)
    half = 1.96 * x.std() / math.sqrt(400)
    assert s["mean"] == pytest.approx(0.0, abs=1e-12)
    assert s["low"] == pytest.approx(-half, rel=0.15) and s["high"] == pytest.approx(half, rel=0.15)
    assert summarize(x, n_boot=2000) == s                             # same seed, same interval
    assert summarize(x, n_boot=2000, seed=1)["low"] != s["low"]
    narrow = summarize(x, n_boot=2000, ci=0.5)
    assert s["low"] < narrow["low"] < narrow["high"] < s["high"]


# --------------------------------------------------------------------------------------------
# Validation


CURVES_AND_STEPS = [average_drop, increase_in_confidence, average_drop_in_deletion, deletion, insertion]


@pytest.mark.parametrize("metric", CURVES_AND_STEPS)
def test_bad_inputs_raise_clear_errors(metric):
    model = mean_model(2, 3)
    x, m, t = torch.full((2, 3, 2, 3), 0.5), torch.full((2, 2, 3), 0.5), [0, 1]
    cases = [
        ((model, x[0], m, t), "4-D .*images\\[None\\]"),
        ((model, x[:, :1], m, t), "3 \\(RGB\\) channels"),
        ((model, x, m[:1], t), "same length"),
        ((model, x, m.transpose(1, 2), t), "spatial size \\(2, 3\\)"),
        ((model, x, m + 0.6, t), "maps must be in \\[0, 1\\].*normalise"),
        ((model, x, m[:, None], t), "maps\\[:, 0\\]"),
        ((model, x, m, [0]), "one class per image"),
        ((model, x, m, [0, 2]), "out of range.*2 classes"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            metric(*args)
    with pytest.raises(TypeError, match="integer class indices"):
        metric(model, x, m, [0.0, 1.0])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        metric(model, x, m, t, batch_size=0)
    metric(model, x, m + (1 + 1e-7 - 0.5), t)                          # within the 1e-6 tolerance


def test_curve_options_are_checked():
    model, x, m = mean_model(2, 3), torch.full((1, 3, 2, 3), 0.5), torch.full((1, 2, 3), 0.5)
    with pytest.raises(ValueError, match="pixels_per_step must be a positive integer"):
        deletion(model, x, m, [0], pixels_per_step=0)
    with pytest.raises(ValueError, match="blur_kernel must be odd"):
        insertion(model, x, m, [0], blur_kernel=4)
    with pytest.raises(ValueError, match="substrate must be .* broadcastable"):
        deletion(model, x, m, [0], substrate=torch.zeros(2, 1, 1))


def test_pointing_game_and_agreement_inputs_are_checked():
    maps = torch.full((2, 3, 5), 0.5)
    with pytest.raises(ValueError, match="one list of .* per map: 2 maps, got 1"):
        energy_pointing_game(maps, [[(0, 0, 1, 1)]])
    with pytest.raises(ValueError, match="inverted"):
        energy_pointing_game(maps, [[(3, 0, 1, 1)], []])
    with pytest.raises(ValueError, match="whole-pixel"):
        energy_pointing_game(maps, [[(0.5, 0, 1, 1)], []])
    with pytest.raises(ValueError, match="maps must be in \\[0, 1\\]"):
        energy_pointing_game(maps * 3, [[], []])
    a = torch.rand(2, 4)
    with pytest.raises(ValueError, match="same shape"):
        spearman(a, a[:, :3])
    with pytest.raises(ValueError, match="a\\[None\\]"):
        cosine_similarity(a[0], a[0])
    with pytest.raises(ValueError, match="k must be at most"):
        top_k_overlap(a, a, 5)
    with pytest.raises(ValueError, match="ci must be"):
        summarize([1.0], ci=95)


def test_docstring_examples():
    import importlib
    attempted = 0
    for name in ("", ".faithfulness", ".localisation", ".agreement", ".statistics"):
        module = importlib.import_module("liftcam.metrics" + name)
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, extraglobs={"torch": torch})
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted > 10


def test_cluster_bootstrap_and_holm():
    """Two clusters of identical values: resampling clusters gives the two cluster means' range, not a
    narrow interval from pretending the 10 images are independent; Holm against a hand computation."""
    v = [0.0] * 5 + [1.0] * 5
    by_image = summarize(v, seed=0)
    by_source = summarize(v, seed=0, clusters=["a"] * 5 + ["b"] * 5)
    assert by_source["n_clusters"] == 2 and "n_clusters" not in by_image
    assert by_source["low"] == 0.0 and by_source["high"] == 1.0            # all-a or all-b resamples occur
    assert by_image["high"] - by_image["low"] < 0.8
    c = compare([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], clusters=[0, 0, 1, 1], pvalue=True)
    # p from the exact sign-flip test on the 2 cluster means: 2 of 4 patterns, never the bootstrap's 0
    assert c["better"] is True and c["p"] == 0.5 and c["p_min"] == 0.5 and c["n_clusters"] == 2
    np.testing.assert_allclose(metrics.holm([0.01, 0.04, 0.03, float("nan")]), [0.03, 0.06, 0.06, float("nan")])
    np.testing.assert_allclose(metrics.holm([0.5, 0.001]), [0.5, 0.002])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_models_device_and_returns_cpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 5))
    images, maps, targets = torch.rand(2, 3, 4, 5), torch.rand(2, 4, 5), [1, 2]
    cpu = deletion(model, images, maps, targets, pixels_per_step=3, return_curves=True)
    gpu = deletion(model.cuda(), images, maps, targets, pixels_per_step=3, return_curves=True)
    assert gpu.auc.device.type == "cpu" and gpu.curves.device.type == "cpu"
    torch.testing.assert_close(gpu.curves, cpu.curves, rtol=1e-4, atol=1e-5)
    out = average_drop(model, images, maps, targets)
    assert out.device.type == "cpu"


# --------------------------------------------------------------------------------------------
# faithfulness (all metrics at once) and compare (paired advantage)


def test_faithfulness_equals_the_single_metrics_with_fewer_passes():
    model, images, maps, targets = _ad_case()
    rec = Recorder(model)
    got = metrics.faithfulness(rec, images, maps, targets, pixels_per_step=2, batch_size=64)
    assert rec.sizes[0] == 9                                           # Y, O and D once each for AD, IC, ADD, one pass
    for batch_size in (1, 4, None):                                    # the same values for any chunking
        again = metrics.faithfulness(model, images, maps, targets, pixels_per_step=2, batch_size=batch_size)
        for k in ("AD", "IC", "ADD"):
            torch.testing.assert_close(again[k], got[k])
    close(got["AD"], [200 / 3, 0.0, 0.0], atol=1e-4)                   # the hand values above
    close(got["IC"], [0.0, 100.0, 0.0])
    close(got["ADD"], [100 / 3, -450.0, 100.0], atol=1e-3)
    dele = deletion(model, images, maps, targets, pixels_per_step=2, return_curves=True)
    ins = insertion(model, images, maps, targets, pixels_per_step=2, return_curves=True)
    torch.testing.assert_close(got["deletion"], dele.auc)
    torch.testing.assert_close(got["insertion"], ins.auc)
    torch.testing.assert_close(got["deletion_curves"], dele.curves)
    torch.testing.assert_close(got["insertion_curves"], ins.curves)
    assert set(metrics.HIGHER_IS_BETTER) >= {"AD", "IC", "ADD", "deletion", "insertion"}


def test_compare_by_hand():
    # advantages a - b = (2, 3, 4): mean 3, every bootstrap mean lies in [2, 4] and above 0.
    c = compare([3.0, 4.0, 5.0, float("nan")], [1.0, 1.0, 1.0, 0.0])
    assert c["mean"] == 3.0 and 2.0 <= c["low"] <= c["high"] <= 4.0 and c["better"] is True
    assert c["n"] == 3 and c["n_nan"] == 1
    # Lower is better (AD, deletion): the same numbers make a worse.
    c = compare(torch.tensor([3.0, 4.0, 5.0]), torch.tensor([1.0, 1.0, 1.0]), higher_is_better=False)
    assert c["mean"] == -3.0 and c["better"] is False
    # An interval that contains 0 decides nothing; so does an empty pair.
    assert compare([1.0, -1.0, 2.0, -2.0], [0.0, 0.0, 0.0, 0.0])["better"] is None
    assert compare([float("nan")], [1.0])["better"] is None
    assert compare([5.0], [1.0])["better"] is None                      # one image: a zero-width interval
    assert compare([5.0], [1.0], min_n=1)["better"] is True
    with pytest.raises(ValueError, match="same length"):
        compare([1.0, 2.0], [1.0])


def test_count_empty_maps_counts_the_all_zero_maps():
    maps = torch.rand(6, 4, 5) + 0.1
    maps[[1, 4]] = 0.0                                  # two empty maps
    maps[2, 0, 0] = -0.0                                # a map with one signed zero is still not empty
    maps[3] = 0.0
    maps[3, 2, 3] = 1e-30                               # one tiny value: not empty
    maps[5] = float("nan")                              # not run: not empty
    assert metrics.count_empty_maps(maps) == 2
    assert metrics.count_empty_maps(torch.zeros(3, 2, 2)) == 3 and metrics.count_empty_maps(torch.zeros(0, 2, 2)) == 0
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        metrics.count_empty_maps(torch.zeros(4))
