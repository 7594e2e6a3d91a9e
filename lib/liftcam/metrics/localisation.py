"""Localisation: how much of an explanation's energy falls inside the object's boxes."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .checks import _check_maps, _out

#: what an all-zero map scores in the pointing game (its share 0 / 0 is undefined): see energy_pointing_game
EMPTY_RULES = ("box share", "zero", "nan")


def energy_pointing_game(maps: Tensor, boxes: Sequence, *, empty: str = "box share") -> Tensor:
    """Energy-based pointing game per image, higher is better: the share of the map's sum inside the boxes.

    Wang et al., "Score-CAM" (CVPR-W 2020): ``Proportion = sum_{(i,j) in bbox} E(i,j) /
    sum_{(i,j)} E(i,j)``. ``boxes[b]`` is a list of ``(x1, y1, x2, y2)`` in map pixels: x is the
    column, y the row, ends exclusive, so a box covers ``map[y1:y2, x1:x2]`` (Score-CAM's released
    code indexes rows by x; we do not); ``boxes[b]`` may be an (n, 4) array, and ``boxes`` one array whose first
    axis is the images: (B, 4) one box per image, (B, n, 4) n per image (an (n, 4) array with n != B is
    refused, never read as one image's boxes). Several boxes count as their union (a pixel inside two
    boxes counts once). Boxes are clipped to the map; an empty, inverted or wholly outside box is
    a ValueError (as in :func:`liftcam.data.image_set`). An image without boxes gives NaN (nothing
    to point at; :func:`summarize` skips NaN).

    An all-zero (empty) map is scored, never dropped, as in every metric of this package (AD, IC
    and ADD see the image through it, deletion and insertion order its pixels by index). Its share
    is 0 / 0, so ``empty`` says what it scores: ``"box share"`` (the default) is the share of a map
    that carries no information, a constant map: the box's share of the frame, the limit of
    ``(m + eps) / sum(m + eps)`` as ``eps -> 0``; it neither rewards a method for pointing nowhere
    nor punishes it more than chance. ``"zero"`` scores it as pointing wholly outside the boxes (the
    sensitivity check of that choice); ``"nan"`` drops it (the rule before; never for a verdict).

        >>> maps = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])    # (1, 2, 3): 2 rows, 3 columns
        >>> energy_pointing_game(maps, [[(2, 0, 3, 1)]])                 # the pixel at row 0, column 2
        tensor([0.5000])
    """
    maps = _check_maps(maps)
    B, H, W = maps.shape
    if isinstance(boxes, (Tensor, np.ndarray)):
        boxes = _array_boxes(boxes, B)
    if not isinstance(boxes, Sequence) or isinstance(boxes, str) or len(boxes) != B:
        given = f"{len(boxes)} (a {type(boxes).__name__})" if hasattr(boxes, "__len__") else type(boxes).__name__
        raise ValueError(f"boxes must be a list with one list of (x1, y1, x2, y2) boxes (or one (n, 4) array) per map: "
                         f"{B} maps, got {given}; use [] for an image without boxes")
    if empty not in EMPTY_RULES:
        raise ValueError(f"empty must be one of {EMPTY_RULES} (what an all-zero map scores), got {empty!r}")
    maps = maps.detach().to("cpu", torch.float64)
    out = torch.full((B,), float("nan"), dtype=torch.float64)
    for i, (m, image_boxes) in enumerate(zip(maps, boxes)):                     # m: (H, W)
        inside = torch.zeros(H, W, dtype=torch.bool)
        for box in (image_boxes if image_boxes is not None else []):
            x1, y1, x2, y2 = _box(box, i, H, W)
            inside[y1:y2, x1:x2] = True                # rows are y, columns are x; a mask makes the union
        total = m.sum()
        if image_boxes is None or len(image_boxes) == 0:
            continue
        if total > 0:
            out[i] = m[inside].sum() / total
        elif empty != "nan":
            out[i] = inside.double().mean() if empty == "box share" else 0.0
    return _out(out)


def _array_boxes(boxes, B: int) -> list:
    """Boxes given as one array, its first axis the images: (B, 4) is one box per image, (B, n, 4) n per image.

    An (n, 4) array with n != B is refused rather than read as the n boxes of one image: the first axis
    always counts images, so a batch of the wrong size is never scored against another image's boxes.
    """
    a = np.asarray(boxes.detach().cpu() if isinstance(boxes, Tensor) else boxes)
    if a.ndim == 2 and a.shape == (B, 4):
        return [[row] for row in a.tolist()]
    if a.ndim == 3 and a.shape[0] == B and a.shape[2] == 4:
        return a.tolist()
    raise ValueError(f"boxes as one array must be ({B}, 4) (one (x1, y1, x2, y2) box per map) or ({B}, n, 4) (n boxes "
                     f"per map) for {B} maps, got an array of shape {a.shape}; for the boxes of one image give a list "
                     "with one (n, 4) array per map: [boxes_0, boxes_1, ...]")


def _box(box, i: int, H: int, W: int) -> tuple[int, int, int, int]:
    """One (x1, y1, x2, y2) box as ints clipped to the (H, W) map."""
    try:
        values = [float(v) for v in box]
    except TypeError:
        values = None
    if values is None or len(values) != 4:
        raise ValueError(f"boxes[{i}] must hold (x1, y1, x2, y2) boxes, got {box!r}; "
                         "wrap a single box in a list: [[(x1, y1, x2, y2)]]")
    if any(not math.isfinite(v) or v != int(v) for v in values):
        raise ValueError(f"box {box!r} of image {i} must have whole-pixel coordinates in map pixels; "
                         "map them with ImageTransform.map_boxes or round them")
    x1, y1, x2, y2 = (int(v) for v in values)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {box!r} of image {i} is empty or inverted: expected (x1, y1, x2, y2) with x1 < x2 and "
                         "y1 < y2 (x = column, y = row, ends exclusive)")
    clipped = min(max(x1, 0), W), min(max(y1, 0), H), min(max(x2, 0), W), min(max(y2, 0), H)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise ValueError(f"box {box!r} of image {i} lies entirely outside the {H} x {W} map; boxes are in map "
                         "pixels (x = column, y = row): map them with ImageTransform.map_boxes, or leave the image "
                         "without boxes ([]) to score it NaN")
    return clipped
