"""liftcam.data.views: every view's boxes cover exactly the object's pixels (found by colour in a
synthetic photograph, never by re-running the mapping code); crops are exact windows of the
photograph; views come round robin with their source photograph; image_set(views=n) expands the
bundled photographs and records each image's source."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from liftcam import data
from liftcam.data import ImageSet, image_set, views
from liftcam.models import ImageTransform

NAMES = ["chelsea", "coffee", "rocket", "astronaut", "camera", "motorcycle", "china", "flower",
         "grace_hopper"]

W, H = 200, 150
BOX = (50, 40, 120, 100)       # asymmetric: its mirror image (80, 40, 150, 100) is elsewhere
MARK = (50, 40, 70, 100)       # the box's left 20 columns are blue, the rest red: shows a flip


def _photo(boxes=(BOX,), mark=MARK, seed=0):
    """Grey noise (R = G = B, never coloured) with each box filled red, ``mark`` blue."""
    g = np.random.default_rng(seed).integers(20, 236, (H, W), dtype=np.uint8)
    a = np.repeat(g[..., None], 3, axis=2)
    for x1, y1, x2, y2 in boxes:
        a[y1:y2, x1:x2] = (255, 0, 0)
    if mark:
        x1, y1, x2, y2 = mark
        a[y1:y2, x1:x2] = (0, 0, 255)
    return Image.fromarray(a)


def _record(name="syn", boxes=(BOX,), mark=MARK, seed=0):
    return (name, _photo(boxes, mark, seed), 7, [7, 8], [tuple(b) for b in boxes])


def _object(img):
    """Pixels more object than grey: R + B - 2 G > 127 (red and blue of weight a on any grey give 255 a)."""
    a = np.asarray(img, dtype=np.int64)
    return a[..., 0] + a[..., 2] - 2 * a[..., 1] > 127


def _blue(img):
    a = np.asarray(img, dtype=np.int64)
    return a[..., 2] - a[..., 0] > 127


def _mask(box, size):
    m = np.zeros((size[1], size[0]), bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    return m


def _valid(box, size):
    x1, y1, x2, y2 = box
    return 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]


def _window(view, photo):
    """(x0, y0, flipped) such that ``view`` is exactly ``photo``'s window there (mirrored when flipped), or None."""
    v, p = np.asarray(view), np.asarray(photo)
    h, w = v.shape[:2]
    for flipped, target in ((False, v), (True, v[:, ::-1])):
        for y0 in range(p.shape[0] - h + 1):
            for x0 in range(p.shape[1] - w + 1):
                if np.array_equal(p[y0:y0 + h, x0:x0 + w], target):
                    return x0, y0, flipped
    return None


def _kind(name):
    return name.split("~")[1].rstrip("0123456789") if "~" in name else "photo"


# --- each kind of view: boxes map exactly ------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_views():
    """8 views (photo, flip, 3 crops, 3 placements) of the synthetic photograph, for 6 seeds."""
    return {seed: views([_record()], 8, seed=seed) for seed in range(6)}


def test_photo_and_flip_are_exact(synthetic_views):
    rec = _record()
    for vs in synthetic_views.values():
        (n0, im0, *_, b0, s0), (n1, im1, *_, b1, s1) = vs[:2]
        assert (n0, n1, s0, s1) == ("syn", "syn~flip1", "syn", "syn")
        assert np.array_equal(np.asarray(im0), np.asarray(rec[1])) and b0 == [BOX]
        assert np.array_equal(np.asarray(im1), np.asarray(rec[1])[:, ::-1])
        assert b1 == [(W - BOX[2], BOX[1], W - BOX[0], BOX[3])]
        assert np.array_equal(_object(im1), _mask(b1[0], (W, H)))


def test_crop_is_an_exact_window_and_its_box_is_the_object(synthetic_views):
    photo, flips = _photo(), set()
    for vs in synthetic_views.values():
        crops = [v for v in vs if _kind(v[0]) == "crop"]
        assert [c[0] for c in crops] == ["syn~crop2", "syn~crop4", "syn~crop6"]
        for name, img, label, accept, boxes, source in crops:
            assert (label, accept, source) == (7, [7, 8], "syn")
            w, h = img.size
            assert 0.6 * W - 1 <= w <= 0.9 * W + 1 and 0.6 * H - 1 <= h <= 0.9 * H + 1, (name, img.size)
            found = _window(img, photo)
            assert found is not None, f"{name} is not a window of the photograph"
            x0, y0, flipped = found
            flips.add(flipped)
            # independent oracle: the box clipped to the window, in window pixels, mirrored if flipped
            x1, y1 = max(BOX[0], x0) - x0, max(BOX[1], y0) - y0
            x2, y2 = min(BOX[2], x0 + w) - x0, min(BOX[3], y0 + h) - y0
            expected = (w - x2, y1, w - x1, y2) if flipped else (x1, y1, x2, y2)
            assert boxes == [expected], name
            assert (x2 - x1) * (y2 - y1) >= 0.5 * (BOX[2] - BOX[0]) * (BOX[3] - BOX[1]), name
            assert np.array_equal(_object(img), _mask(boxes[0], img.size)), name   # exactly the red pixels
    assert flips == {False, True}   # both happen over 18 crops


def test_placement_box_holds_the_object_within_a_pixel(synthetic_views):
    flips = set()
    for vs in synthetic_views.values():
        places = [v for v in vs if _kind(v[0]) == "place"]
        assert [p[0] for p in places] == ["syn~place3", "syn~place5", "syn~place7"]
        for name, img, label, accept, boxes, source in places:
            assert img.size == (W, H) and (label, accept, source) == (7, [7, 8], "syn")
            (box,) = boxes
            assert _valid(box, img.size), (name, box)
            x1, y1, x2, y2 = box
            scale_x, scale_y = (x2 - x1) / (BOX[2] - BOX[0]), (y2 - y1) / (BOX[3] - BOX[1])
            assert 0.5 - 0.02 <= scale_x <= 0.8 + 0.02 and abs(scale_x - scale_y) < 0.02, (name, box)
            obj = _object(img)
            outer = _mask((math.floor(x1) - 1, math.floor(y1) - 1, math.ceil(x2) + 1, math.ceil(y2) + 1), img.size)
            inner = _mask((math.ceil(x1) + 1, math.ceil(y1) + 1, math.floor(x2) - 1, math.floor(y2) - 1), img.size)
            assert not (obj & ~outer).any(), f"{name}: object pixels outside its box {box}"
            assert obj[inner].all(), f"{name}: box {box} holds background"
            # the blue mark sits on the box's left when not flipped, on its right when flipped
            cols = np.nonzero(_blue(img).any(axis=0))[0]
            mark_w = (MARK[2] - MARK[0]) * scale_x
            flipped = cols.mean() > (x1 + x2) / 2
            flips.add(flipped)
            edge = x2 - mark_w if flipped else x1 + mark_w
            assert (cols.min() >= edge - 1) if flipped else (cols.max() <= edge + 1), name
    assert flips == {False, True}


def test_placement_background_is_a_texture_and_the_photo_is_scaled(synthetic_views):
    name, img, *_ = synthetic_views[0][3]
    a = np.asarray(img, dtype=np.int64)
    grey = (a[..., 0] == a[..., 1]) & (a[..., 1] == a[..., 2])
    assert grey.mean() > 0.3                    # texture (grayscale) around the smaller photograph
    textures = [np.asarray(t)[..., 0] for t in data._textures(None)]
    assert all(t.shape == (512, 512) and t.std() > 10 for t in textures)


def test_backgrounds_can_be_given():
    plain = Image.new("RGB", (10, 10), (0, 200, 0))
    for name, img, *_ in views([_record()], 6, backgrounds=[plain])[3::2]:
        assert (np.asarray(img) == (0, 200, 0)).all(-1).mean() > 0.3, name   # at least 1 - 0.8 ** 2 of it
    with pytest.raises(ValueError, match="backgrounds"):
        views([_record()], 4, backgrounds=[])


def test_crop_falls_back_to_the_centred_window_then_to_the_whole_image():
    # two boxes that only the centred 90 % window (x 10..190, y 7..142) keeps at half their area
    corners = [(0, 7, 20, 142), (180, 7, 200, 142)]
    name, img, *_, boxes, _ = views([_record(boxes=corners, mark=None)], 3)[2]
    x0, y0, _ = _window(img, _photo(corners, None))
    assert (x0, y0, img.size) == (10, 7, (180, 135))
    assert sorted(boxes) == [(0, 0, 10, 135), (170, 0, 180, 135)]   # the same set mirrored or not
    assert np.array_equal(_object(img), _mask(boxes[0], img.size) | _mask(boxes[1], img.size))
    # opposite small corners: no window of at most 90 % keeps both: the whole image
    corners = [(0, 0, 10, 10), (190, 140, 200, 150)]
    for seed in range(3):
        name, img, *_, boxes, _ = views([_record(boxes=corners, mark=None)], 3, seed=seed)[2]
        assert img.size == (W, H) and sorted(boxes) in (corners, sorted([(190, 0, 200, 10), (0, 140, 10, 150)]))
        assert np.array_equal(_object(img), _mask(boxes[0], img.size) | _mask(boxes[1], img.size))


def test_views_of_the_bundled_photographs_keep_valid_boxes():
    recs = [(s.name, s.image, s.label, s.accept, s.boxes) for s in data.samples()]
    out = views(recs, 6, seed=1)
    assert len(out) == 54
    for name, img, label, accept, boxes, source in out:
        src = recs[NAMES.index(source)]
        assert (label, accept) == (src[2], src[3]) and len(boxes) == len(src[4]), name
        assert all(_valid(b, img.size) for b in boxes), (name, boxes, img.size)


# --- order, names, determinism ----------------------------------------------------------------

def test_round_robin_order_and_names():
    recs = [_record(n, seed=i) for i, n in enumerate(["a", "b", "c"])]
    out = views(recs, 5)
    assert [v[0] for v in out] == ["a", "b", "c", "a~flip1", "b~flip1", "c~flip1", "a~crop2", "b~crop2", "c~crop2",
                                   "a~place3", "b~place3", "c~place3", "a~crop4", "b~crop4", "c~crop4"]
    assert [v[5] for v in out] == ["a", "b", "c"] * 5
    assert [v[0] for v in views(recs, 1)] == ["a", "b", "c"]


def _bytes(vs):
    return [(v[0], v[1].size, v[1].tobytes(), v[4]) for v in vs]


def test_deterministic_per_seed_and_independent_of_the_other_records():
    a, b = _record("a", seed=1), _record("b", seed=2)
    first = _bytes(views([a, b], 6, seed=3))
    assert first == _bytes(views([a, b], 6, seed=3))                      # same bytes twice
    assert _bytes(views([b, a], 6, seed=3))[1::2] == first[0::2]           # a's views do not depend on the order
    assert _bytes(views([a], 6, seed=3)) == first[0::2]                    # nor on the other records
    assert _bytes(views([a], 4, seed=3)) == first[0:8:2]                   # fewer views: the first ones
    other = _bytes(views([a, b], 6, seed=4))
    assert other[:4] == first[:4] and other[4:] != first[4:]               # photo and flip fixed, the rest drawn


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3", None])
def test_n_views_must_be_a_positive_whole_number(bad):
    with pytest.raises(ValueError, match=r"n_views=.*positive whole number"):
        views([_record()], bad)


def test_bad_records_are_named():
    with pytest.raises(ValueError, match="'syn'.*inverted or empty"):
        views([_record(boxes=[(30, 10, 20, 40)], mark=None)], 2)
    with pytest.raises(ValueError, match="two records are named 'syn'"):
        views([_record(), _record()], 2)


# --- ImageSet.sources and image_set(views=) -------------------------------------------------------

def _model(transform=None):
    """The part of a SplitModel that image_set uses: its preprocess (as in tests/test_data.py)."""
    return SimpleNamespace(preprocess=transform or ImageTransform(resize=(32, 32)))


def test_imageset_sources_default_to_names():
    s = ImageSet(np.zeros((2, 3, 4, 4)), ["a", "b"], [1, 2], [[1], [2]], [[], []])   # positional, as before
    assert s.sources == ["a", "b"]
    two = ImageSet(np.zeros((2, 3, 4, 4)), ["a~flip1", "a"], [1, 1], [[1], [1]], [[], []], sources=["a", "a"])
    assert two.sources == ["a", "a"]
    with pytest.raises(ValueError, match="1 sources for 2 images"):
        ImageSet(np.zeros((2, 3, 4, 4)), ["a", "b"], [1, 2], [[1], [2]], [[], []], sources=["a"])


@pytest.fixture(scope="module")
def with_views():
    return image_set(_model(), views=3)


def test_image_set_with_views(with_views):
    d = with_views
    assert len(d) == 27 and d.images.shape == (27, 3, 32, 32)
    assert d.names[:9] == NAMES and d.names[9:18] == [f"{n}~flip1" for n in NAMES]
    assert d.names[18:] == [f"{n}~crop2" for n in NAMES]
    assert d.sources == NAMES * 3
    plain = image_set(_model())
    assert d.labels == plain.labels * 3 and d.accept == plain.accept * 3
    assert d.boxes[:9] == plain.boxes and (d.images[:9] == plain.images).all()
    # the flip of a 32 x 32 resize is (within resampling) the resize of the flip, its boxes mirrored within a pixel
    assert (d.images[9:18] - plain.images.flip(-1)).abs().max() <= 2 / 255
    for own, flipped in zip(plain.boxes, d.boxes[9:18]):
        assert len(own) == len(flipped)
        for (x1, y1, x2, y2), f in zip(own, flipped):
            assert max(abs(a - b) for a, b in zip(f, (32 - x2, y1, 32 - x1, y2))) <= 1


def test_image_set_without_views_is_unchanged():
    d = image_set(_model())
    assert d.names == NAMES and d.sources == NAMES
    assert image_set(_model(), limit=4, sample=6, seed=2).sources == image_set(_model(), limit=4, sample=6, seed=2).names


def test_sample_and_limit_choose_among_the_views(with_views):
    assert image_set(_model(), views=3, limit=11).names == with_views.names[:11]
    a, every = image_set(_model(), views=3, sample=5, seed=1), image_set(_model(), views=3, seed=1)
    assert a.names == image_set(_model(), views=3, sample=5, seed=1).names
    assert len(a) == 5 and a.names == sorted(a.names, key=every.names.index)
    assert a.sources == [n.split("~")[0] for n in a.names]
    for i, n in enumerate(a.names):   # the same view as in the full set of that seed: pixels and boxes
        k = every.names.index(n)
        assert (a.images[i] == every.images[k]).all() and a.boxes[i] == every.boxes[k]
    with pytest.raises(ValueError, match="sample=28 but views=3 of the bundled photographs"):
        image_set(_model(), views=3, sample=28)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_image_set_views_must_be_positive(bad):
    with pytest.raises(ValueError, match=rf"views={bad!r}: must be a positive whole number.*or None"):
        image_set(_model(), views=bad)


def test_image_set_views_of_a_folder(tmp_path):
    _photo().save(tmp_path / "a.png")
    _photo(seed=1).save(tmp_path / "b.png")
    (tmp_path / "annotations.json").write_text(json.dumps({"samples": [
        {"name": n, "label": 7, "accept": [7], "boxes": [list(BOX)]} for n in ("a.png", "b.png")]}))
    d = image_set(_model(ImageTransform()), tmp_path, views=2)   # no resize: boxes in the files' own pixels
    assert d.names == ["a.png", "b.png", "a.png~flip1", "b.png~flip1"] and d.sources == ["a.png", "b.png"] * 2
    assert d.boxes == [[BOX], [BOX], [(80, 40, 150, 100)], [(80, 40, 150, 100)]]
