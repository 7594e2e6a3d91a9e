"""liftcam.data: load_image converts every mode to the right RGB pixels; the shipped photographs
are the packages' own pictures; their labels, names and boxes are consistent; the offline model
agrees with the labels of the unambiguous photographs."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from liftcam import data
from liftcam.data import ImageReadError, PaperInputsError, check_paper_inputs, image_set, imagenet_wnids, load_image, samples
from liftcam.models import ImageTransform

NAMES = ["chelsea", "coffee", "rocket", "astronaut", "camera", "motorcycle", "china", "flower",
         "grace_hopper"]

#: Photographs whose label is unambiguous and which the offline model gets right. Left out:
#: astronaut and flower (no ImageNet class), grace_hopper (the model answers 400 academic gown).
MODEL_CHECKED = ["chelsea", "coffee", "camera", "rocket", "motorcycle", "china"]


def _rgb(img):
    return np.asarray(img, dtype=np.int64)


# --- load_image -----------------------------------------------------------------------------

def test_grayscale_png_becomes_equal_channels(tmp_path):
    gray = np.arange(30 * 20, dtype=np.uint8).reshape(20, 30)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.mode == "RGB" and img.size == (30, 20)
    assert (_rgb(img) == gray[..., None]).all()


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[0, :, 3] = 255            # opaque row: the colour itself
    rgba[1, :, 3] = 0              # transparent row: white
    rgba[2, :, 3] = 128            # half: blend with white
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    px = _rgb(load_image(tmp_path / "a.png"))
    assert (px[0] == (200, 0, 0)).all()
    assert (px[1] == 255).all()
    half = 128 / 255
    assert np.allclose(px[2], (200 * half + 255 * (1 - half), 255 * (1 - half), 255 * (1 - half)), atol=1)


def test_palette_png_gives_palette_colours(tmp_path):
    idx = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([10, 20, 30, 40, 50, 60, 250, 0, 5] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "p.png")
    px = _rgb(load_image(tmp_path / "p.png"))
    colours = np.array([(10, 20, 30), (40, 50, 60), (250, 0, 5)])
    assert (px == colours[idx]).all()


def test_palette_transparency_is_white(tmp_path):
    im = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    im.putpalette([10, 20, 30, 40, 50, 60] + [0] * (256 * 3 - 6))
    im.save(tmp_path / "t.png", transparency=0)
    assert _rgb(load_image(tmp_path / "t.png")).tolist() == [[[255, 255, 255], [40, 50, 60]]]


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "i16.png")
    assert _rgb(load_image(tmp_path / "i16.png"))[0, :, 0].tolist() == [0, 100, 255]


def test_cmyk_jpeg_and_odd_size(tmp_path):
    Image.new("CMYK", (37, 23), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    img = load_image(tmp_path / "c.jpg")
    assert img.mode == "RGB" and img.size == (37, 23)
    assert np.abs(_rgb(img) - (255, 0, 0)).max() <= 8  # pure red after JPEG rounding


def test_odd_sized_rgb_keeps_pixels(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (7, 13, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "odd.png")
    img = load_image(str(tmp_path / "odd.png"))
    assert img.size == (13, 7) and (np.asarray(img) == a).all()


def test_missing_path_names_the_path(tmp_path):
    p = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="no such file") as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_directory_names_the_path_and_suggests_a_file(tmp_path):
    Image.new("RGB", (2, 2)).save(tmp_path / "inside.png")
    with pytest.raises(IsADirectoryError, match="directory") as e:
        load_image(tmp_path)
    assert str(tmp_path) in str(e.value) and "inside.png" in str(e.value)


def test_text_file_named_jpg_is_a_value_error(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("not an image\n")
    with pytest.raises(ImageReadError, match="not a readable image") as e:
        load_image(p)
    assert isinstance(e.value, ValueError) and str(p) in str(e.value)


def test_truncated_png_is_a_value_error(tmp_path):
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(tmp_path / "full.png")
    raw = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        load_image(tmp_path / "cut.png")


# --- samples --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def all_samples():
    return {s.name: s for s in samples()}


def test_all_photographs_present_in_order(all_samples):
    assert list(all_samples) == NAMES == data.sample_names()


def test_boxes_inside_images_and_labels_consistent(all_samples):
    from torchvision.models import ResNet50_Weights
    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    for s in all_samples.values():
        assert s.image.mode == "RGB", s.name
        w, h = s.image.size
        assert s.boxes, s.name
        for x1, y1, x2, y2 in s.boxes:
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, (s.name, (x1, y1, x2, y2), (w, h))
        assert all(0 <= c < 1000 for c in s.accept), s.name
        if s.label is None:
            assert s.label_name is None and s.accept == [], s.name
        else:
            assert s.label in s.accept and categories[s.label] == s.label_name, s.name
        assert s.note and s.source, s.name


def test_images_are_the_packages_own_pictures(all_samples):
    """Reading the files directly gives exactly what each package's accessor returns."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    sk = load_sample_images()
    accessors = {
        "chelsea": skimage.data.chelsea, "coffee": skimage.data.coffee,
        "rocket": skimage.data.rocket, "astronaut": skimage.data.astronaut,
        "camera": lambda: np.repeat(skimage.data.camera()[..., None], 3, axis=2),
        "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
        "china": lambda: sk.images[0], "flower": lambda: sk.images[1],
        "grace_hopper": lambda: np.asarray(Image.open(
            matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")),
    }
    assert set(accessors) == set(all_samples)
    for name, get in accessors.items():
        assert np.array_equal(np.asarray(all_samples[name].image), get()), name


def test_names_filter_keeps_order_and_accepts_one_string():
    assert [s.name for s in samples(["grace_hopper", "coffee"])] == ["grace_hopper", "coffee"]
    assert [s.name for s in samples("camera")] == ["camera"]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown sample name") as e:
        samples(["coffee", "dog"])
    assert "'dog'" in str(e.value) and all(n in str(e.value) for n in NAMES)


def test_annotation_override(tmp_path):
    doc = json.loads(data.ANNOTATIONS.read_text())
    doc["samples"] = [dict(r, boxes=[[1, 2, 3, 4]]) for r in doc["samples"] if r["name"] == "coffee"]
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(doc))
    (s,) = samples(annotations=p)
    assert s.name == "coffee" and s.boxes == [(1, 2, 3, 4)]
    with pytest.raises(FileNotFoundError, match="annotations="):
        samples(annotations=tmp_path / "missing.json")


# --- the offline model agrees with the labels -----------------------------------------------

@pytest.fixture(scope="module")
def top1():
    import liftcam
    s = liftcam.models.load("efficientnet_lite0")
    chosen = samples(MODEL_CHECKED)
    x = torch.stack([s.preprocess(c.image) for c in chosen])  # (B, 3, 224, 224) in [0, 1]
    with torch.no_grad():
        pred = s(x).argmax(1).tolist()
    return {c.name: (p, c.accept) for c, p in zip(chosen, pred)}


@pytest.mark.parametrize("name", MODEL_CHECKED)
def test_model_top1_is_accepted(top1, name):
    pred, accept = top1[name]
    assert pred in accept, (name, pred, accept)


# --- image folders: ILSVRC-2012 validation layouts, labels and boxes -----------------------
# Fixtures are written in the real formats: JPEG files named like ILSVRC's, Kaggle's
# LOC_val_solution.csv, ILSVRC's per-image bbox XML files.


TENCH, TABBY, ESPRESSO = "n01440764", "n02123045", "n07920052"   # classes 0, 281, 967


def _model(transform=None):
    """The part of a SplitModel that image_set uses: its preprocess."""
    return SimpleNamespace(preprocess=transform or ImageTransform(resize=(32, 32)))


def _val(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}"


def _jpeg(path, size=(64, 48), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)
    return path


def _csv(path, rows):
    """rows: {image id: [(wnid, x1, y1, x2, y2), ...]} -> Kaggle's LOC_val_solution.csv."""
    lines = ["ImageId,PredictionString"]
    lines += [f"{k}," + " ".join(" ".join(str(v) for v in g) for g in groups) for k, groups in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _xml(path, objects, size=(64, 48)):
    """objects: [(wnid, x1, y1, x2, y2), ...] -> one ILSVRC / PASCAL-VOC bbox file."""
    objs = "".join(f"<object><name>{w}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
                   f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
                   for w, a, b, c, d in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>val</folder><filename>{path.stem}</filename><source><database>ILSVRC_2012"
                    f"</database></source><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth>"
                    f"</size><segmented>0</segmented>{objs}</annotation>")
    return path


@pytest.fixture
def flat_val(tmp_path):
    """A flat validation folder of 3 JPEGs (64 x 48) with LOC_val_solution.csv beside it (in the parent)."""
    val = tmp_path / "val"
    for i in (1, 2, 3):
        _jpeg(val / f"{_val(i)}.JPEG")
    _csv(tmp_path / "LOC_val_solution.csv", {
        _val(1): [(TABBY, 0, 0, 32, 24)],
        _val(2): [(TENCH, 10, 6, 42, 30), (TENCH, 0, 0, 64, 48)],
        _val(3): [(ESPRESSO, 16, 12, 48, 36)],
    })
    return val


def test_wnids_are_the_imagenet_1k_class_order():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids == sorted(set(wnids))
    assert (wnids.index(TENCH), wnids.index(TABBY), wnids.index(ESPRESSO)) == (0, 281, 967)
    # independent check: timm's lemma of each wnid names torchvision's category of the same index
    from torchvision.models import ResNet50_Weights
    lemmas = dict(line.split("\t", 1) for line in data._package_file(
        "timm", "data/_info/imagenet_synset_to_lemma.txt").read_text().splitlines() if "\t" in line)
    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    agree = sum(categories[i].lower() in lemmas[w].lower() for i, w in enumerate(wnids))
    assert agree >= 950, agree


def test_flat_folder_with_csv_beside_it(flat_val):
    d = image_set(_model(), flat_val)
    assert d.names == [f"{_val(i)}.JPEG" for i in (1, 2, 3)]
    assert d.labels == [281, 0, 967] and d.accept == [[281], [0], [967]]
    assert d.images.shape == (3, 3, 32, 32)
    # 64 x 48 -> 32 x 32: x halves, y scales by 2/3
    assert d.boxes == [[(0, 0, 16, 16)], [(5, 4, 21, 20), (0, 0, 32, 32)], [(8, 8, 24, 24)]]


def test_csv_inside_the_folder_and_given_explicitly(flat_val, tmp_path):
    (flat_val / "LOC_val_solution.csv").write_text((tmp_path / "LOC_val_solution.csv").read_text())
    (tmp_path / "LOC_val_solution.csv").unlink()
    assert image_set(_model(), flat_val).labels == [281, 0, 967]
    moved = tmp_path / "elsewhere.csv"
    (flat_val / "LOC_val_solution.csv").rename(moved)
    assert image_set(_model(), flat_val, annotations=moved).labels == [281, 0, 967]


def test_per_class_folders_give_labels(tmp_path):
    val = tmp_path / "val"
    _jpeg(val / TABBY / f"{_val(1)}.JPEG")
    _jpeg(val / TENCH / f"{_val(2)}.JPEG")
    _jpeg(val / ESPRESSO / f"{_val(3)}.JPEG")
    (val / "notes").mkdir()  # not a WordNet id: ignored
    d = image_set(_model(), val, require_labels=True)
    # by file name whatever the layout (as a flat copy of the same files would list them)
    assert d.names == [f"{_val(1)}.JPEG", f"{_val(2)}.JPEG", f"{_val(3)}.JPEG"]
    assert d.labels == [281, 0, 967] and d.accept == [[281], [0], [967]] and d.boxes == [[], [], []]
    # with the CSV beside it: boxes too; a folder that disagrees with the CSV is an error
    _csv(tmp_path / "LOC_val_solution.csv", {_val(1): [(TABBY, 0, 0, 32, 24)], _val(2): [(TENCH, 0, 0, 64, 48)],
                                             _val(3): [(ESPRESSO, 0, 0, 64, 48)]})
    assert image_set(_model(), val).boxes[0] == [(0, 0, 16, 16)]
    _csv(tmp_path / "LOC_val_solution.csv", {_val(1): [(TENCH, 0, 0, 32, 24)], _val(2): [(TENCH, 0, 0, 64, 48)],
                                             _val(3): [(ESPRESSO, 0, 0, 64, 48)]})
    with pytest.raises(ValueError, match=f"{_val(1)}.JPEG.*class folder {TABBY}.*{TENCH}"):
        image_set(_model(), val)


def test_xml_box_files(tmp_path):
    val, xml = tmp_path / "val", tmp_path / "bbox" / "val"
    _jpeg(val / f"{_val(1)}.JPEG")
    _jpeg(val / f"{_val(2)}.JPEG", size=(48, 64))
    _xml(xml / f"{_val(1)}.xml", [(TABBY, 0, 0, 64, 48), (TABBY, 32, 24, 64, 48)])
    _xml(xml / f"{_val(2)}.xml", [(ESPRESSO, 12, 16, 36, 48)], size=(48, 64))
    d = image_set(_model(), val, annotations=tmp_path / "bbox")   # found recursively
    assert d.labels == [281, 967] and d.accept == [[281], [967]]
    assert d.boxes == [[(0, 0, 32, 32), (16, 16, 32, 32)], [(8, 8, 24, 24)]]
    # boxes of a resized copy would be wrong: the annotated size must match the file
    _xml(xml / f"{_val(2)}.xml", [(ESPRESSO, 12, 16, 36, 48)], size=(96, 128))
    with pytest.raises(ValueError, match=f"{_val(2)}.JPEG.*48 x 64.*96 x 128"):
        image_set(_model(), val, annotations=xml)
    # two classes in one validation image
    _xml(xml / f"{_val(2)}.xml", [(ESPRESSO, 12, 16, 36, 48), (TENCH, 0, 0, 4, 4)], size=(48, 64))
    with pytest.raises(ValueError, match="2 classes"):
        image_set(_model(), val, annotations=xml)


def test_image_without_label(flat_val, tmp_path):
    _jpeg(flat_val / f"{_val(4)}.JPEG")
    with pytest.raises(ValueError, match=f"{_val(4)}.JPEG.*no entry in csv"):
        image_set(_model(), flat_val)
    # no annotation source at all: unlabelled images are allowed unless labels are required
    plain = tmp_path / "other" / "plain"   # not beside the CSV
    _jpeg(plain / "a.jpg")
    assert image_set(_model(), plain).labels == [None]
    with pytest.raises(ValueError, match="'a.jpg' has no label"):
        image_set(_model(), plain, require_labels=True)


def test_wnid_outside_the_1000_classes(flat_val, tmp_path):
    _csv(tmp_path / "LOC_val_solution.csv", {_val(1): [("n99999999", 0, 0, 8, 8)], _val(2): [(TENCH, 0, 0, 8, 8)],
                                             _val(3): [(TENCH, 0, 0, 8, 8)]})
    with pytest.raises(ValueError, match=f"{_val(1)}.JPEG.*n99999999.*not one of the 1000"):
        image_set(_model(), flat_val)
    other = tmp_path / "byclass"
    _jpeg(other / "n99999999" / "x.JPEG")
    with pytest.raises(ValueError, match="n99999999.*not one of the 1000"):
        image_set(_model(), other)


def test_malformed_csv(flat_val, tmp_path):
    (tmp_path / "LOC_val_solution.csv").write_text(f"ImageId,PredictionString\n{_val(1)},{TABBY} 1 2 3\n")
    with pytest.raises(ValueError, match="line 2.*groups of 'wnid x1 y1 x2 y2'"):
        image_set(_model(), flat_val)


def test_seeded_random_subset(tmp_path):
    val = tmp_path / "val"
    for i in range(1, 11):
        _jpeg(val / f"{_val(i)}.JPEG", colour=(i * 20, 0, 0))
    every = image_set(_model(), val).names
    a = image_set(_model(), val, sample=4, seed=0).names
    assert a == image_set(_model(), val, sample=4, seed=0).names                  # reproducible
    assert len(a) == 4 and set(a) <= set(every) and a == sorted(a, key=every.index)  # a subset, in file order
    assert any(image_set(_model(), val, sample=4, seed=s).names != a for s in (1, 2, 3))
    assert image_set(_model(), val, sample=4, seed=0, limit=2).names == a[:2]    # limit: the first of the sample
    assert image_set(_model(), val, limit=3).names == every[:3]
    with pytest.raises(ValueError, match="sample=11 but .* holds only 10 images"):
        image_set(_model(), val, sample=11)


@pytest.mark.parametrize("limit", [-1, 0])
def test_limit_must_be_positive(tmp_path, limit):
    """limit=-1 used to drop the last image silently (a Python slice)."""
    for i in (1, 2, 3):
        _jpeg(tmp_path / f"{_val(i)}.JPEG")
    with pytest.raises(ValueError, match=f"limit={limit}: must be a positive"):
        image_set(_model(), tmp_path, limit=limit)
    with pytest.raises(ValueError, match="must be a positive"):
        image_set(_model(), "samples", limit=limit)
    with pytest.raises(TypeError, match="whole number"):
        image_set(_model(), tmp_path, limit=2.5)


def _annotated(tmp_path, boxes, size=(64, 48)):
    _jpeg(tmp_path / "img.png", size=size)
    (tmp_path / "annotations.json").write_text(json.dumps({"samples": [{"name": "img.png", "label": 1,
                                                                         "accept": [1], "boxes": boxes}]}))
    return tmp_path


@pytest.mark.parametrize("box", [[30, 10, 20, 40], [10, 40, 30, 10], [10, 10, 10, 40]])
def test_inverted_or_empty_box_is_an_error(tmp_path, box):
    """Such boxes used to vanish in map_boxes, while the pointing game rejects them."""
    with pytest.raises(ValueError, match=r"'img.png'.*inverted or empty") as e:
        image_set(_model(), _annotated(tmp_path, [box]))
    assert str(box) in str(e.value)


@pytest.mark.parametrize("box", [[70, 0, 90, 10], [-20, -20, 0, 10], [0, 48, 10, 60]])
def test_box_outside_the_image_is_an_error(tmp_path, box):
    with pytest.raises(ValueError, match=r"'img.png'.*wholly outside the 64 x 48 image") as e:
        image_set(_model(), _annotated(tmp_path, [box]))
    assert str(box) in str(e.value)


def test_box_partly_outside_is_clipped(tmp_path):
    d = image_set(_model(), _annotated(tmp_path, [[-10, -6, 32, 24], [32, 24, 100, 100]]))
    assert d.boxes == [[(0, 0, 16, 16), (16, 16, 32, 32)]]


def test_box_cut_off_by_the_centre_crop_is_dropped_with_a_warning(tmp_path):
    # 64 x 32 -> shorter side 32 (scale 1) -> centre crop 32: columns 16..47 are kept
    folder = _annotated(tmp_path, [[0, 0, 10, 10], [20, 0, 40, 32]], size=(64, 32))
    with pytest.warns(UserWarning, match=r"1 box\(es\).*img.png \(0, 0, 10, 10\)"):
        d = image_set(_model(ImageTransform(resize=32, crop=32)), folder)
    assert d.boxes == [[(4, 0, 24, 32)]]
    (folder / "annotations.json").write_text(json.dumps({"samples": [{"name": "img.png", "label": 1, "accept": [1],
                                                                       "boxes": [[0, 0, 10, 10]]}]}))
    with pytest.warns(UserWarning, match="not counted by the pointing game"):
        assert image_set(_model(ImageTransform(resize=32, crop=32)), folder).boxes == [[]]


def test_flat_box_list_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"'img.png'.*one flat box.*\[\[1, 2, 30, 40\]\]"):
        image_set(_model(), _annotated(tmp_path, [1, 2, 30, 40]))


def test_mixed_image_sizes_name_the_files_and_the_fix(tmp_path):
    _jpeg(tmp_path / "big.jpg", size=(64, 48))
    _jpeg(tmp_path / "small.jpg", size=(20, 10))
    with pytest.raises(ValueError, match=r"2 sizes.*3x48x64: big.jpg.*3x10x20: small.jpg.*resize=\(224, 224\)"):
        image_set(_model(ImageTransform()), tmp_path)


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder .* not found"):
        image_set(_model(), tmp_path / "nope")
    (tmp_path / "cats").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files.*cats.*not named by WordNet ids"):
        image_set(_model(), tmp_path)


def test_imagenet_placeholder_reads_the_environment(flat_val, monkeypatch):
    monkeypatch.delenv("IMAGENET", raising=False)
    with pytest.raises(FileNotFoundError, match="IMAGENET"):
        image_set(_model(), "imagenet")
    monkeypatch.setenv("IMAGENET", str(flat_val))
    assert image_set(_model(), "imagenet").labels == [281, 0, 967]


# --- check_paper_inputs ----------------------------------------------------------------------

def test_paper_inputs_lists_everything_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(PaperInputsError) as e:
        check_paper_inputs("vgg16", None)
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "ImageNet folder: none given" in msg and "IMAGENET=" in msg


def test_paper_inputs_pass_with_weights_and_a_labelled_folder(flat_val, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save({"w": torch.zeros(3)}, ckpt / "resnet50-19c8e357.pth")   # the legacy name counts
    monkeypatch.setenv("LIFTCAM_UNVERIFIED_WEIGHTS", "1")              # weights made here: no sha256 match
    summary = check_paper_inputs("resnet50", flat_val)
    assert summary["weights"] == str(ckpt / "resnet50-19c8e357.pth")
    assert (summary["images"], summary["labelled"], summary["with_boxes"]) == (3, 3, 3)
    # an unlabelled image and missing vgg16 weights: both listed in one error
    _jpeg(flat_val / f"{_val(9)}.JPEG")
    with pytest.raises(PaperInputsError) as e:
        check_paper_inputs("vgg16", flat_val)
    msg = str(e.value)
    assert "vgg16 weights" in msg and "labels: 1 of 4 images" in msg and f"{_val(9)}.JPEG" in msg


def test_paper_inputs_folder_without_boxes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _jpeg(tmp_path / "val" / TABBY / "a.JPEG")
    with pytest.raises(PaperInputsError, match="boxes: 1 of 1 images have no box") as e:
        check_paper_inputs("efficientnet_lite0", tmp_path / "val")
    assert "weights" not in str(e.value)
    assert check_paper_inputs("efficientnet_lite0", tmp_path / "val", boxes=False)["labelled"] == 1


def test_the_command_line_check_names_what_is_missing(tmp_path, monkeypatch, capsys):
    from liftcam.__main__ import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["check-inputs", "vgg16", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "vgg16-397923af.pth" in err and "nowhere" in err


def test_paper_inputs_check_the_checkpoint_sha256_prefix(flat_val, tmp_path, monkeypatch):
    """torchvision's file names carry the first hex digits of their sha256: a truncated copy is named now."""
    import hashlib

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("LIFTCAM_UNVERIFIED_WEIGHTS", raising=False)
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    whole = tmp_path / "w.pth"
    torch.save({"w": torch.arange(1000.0)}, whole)
    digest = hashlib.sha256(whole.read_bytes()).hexdigest()
    named = ckpt / f"mine-{digest[:8]}.pth"
    named.write_bytes(whole.read_bytes())
    assert data._checkpoint_problem(named) is None                    # the name's prefix matches
    named.write_bytes(whole.read_bytes()[:-100])                       # truncated: the prefix no longer matches
    assert "sha256 starts with" in data._checkpoint_problem(named)
    (ckpt / "vgg16-397923af.pth").write_bytes(whole.read_bytes())      # a complete file, but not torchvision's
    with pytest.raises(PaperInputsError, match="vgg16-397923af.pth: its sha256 starts with"):
        check_paper_inputs("vgg16", flat_val)
    monkeypatch.setenv("LIFTCAM_UNVERIFIED_WEIGHTS", "1")              # weights made by hand: complete is enough
    assert check_paper_inputs("vgg16", flat_val)["weights"].endswith("vgg16-397923af.pth")
    (ckpt / "vgg16-397923af.pth").write_bytes(whole.read_bytes()[:-100])
    with pytest.raises(PaperInputsError, match="not a complete torch checkpoint"):
        check_paper_inputs("vgg16", flat_val)


def test_paper_inputs_decode_images_and_check_eval_images(flat_val, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert check_paper_inputs("efficientnet_lite0", flat_val, eval_images=3)["images"] == 3
    with pytest.raises(PaperInputsError, match="eval_images: the profile draws 2000 images but .* holds 3.*EVAL_IMAGES=3"):
        check_paper_inputs("efficientnet_lite0", flat_val, eval_images=2000)
    good = (flat_val / f"{_val(2)}.JPEG").read_bytes()
    (flat_val / f"{_val(2)}.JPEG").write_bytes(good[:len(good) // 3])   # truncated JPEG
    with pytest.raises(PaperInputsError, match=f"images: cannot read image .*{_val(2)}"):
        check_paper_inputs("efficientnet_lite0", flat_val)


def test_seeded_subset_is_the_same_in_every_layout(tmp_path):
    """sample=n draws by file name: a flat and a per-class copy of the same files give the same images."""
    classes = [TENCH, TABBY, ESPRESSO]
    for i in range(1, 13):
        _jpeg(tmp_path / "flat" / f"{_val(i)}.JPEG", colour=(i * 20, 0, 0))
        _jpeg(tmp_path / "per_class" / classes[(i * 7) % 3] / f"{_val(i)}.JPEG", colour=(i * 20, 0, 0))
    for seed in (0, 1, 2):
        flat = image_set(_model(), tmp_path / "flat", sample=5, seed=seed)
        per_class = image_set(_model(), tmp_path / "per_class", sample=5, seed=seed)
        assert flat.names == per_class.names
        assert torch.equal(flat.images, per_class.images)


def test_a_csv_with_a_byte_order_mark_is_read(flat_val, tmp_path):
    csv_file = tmp_path / "LOC_val_solution.csv"
    csv_file.write_bytes(b"\xef\xbb\xbf" + csv_file.read_bytes())        # as Excel saves UTF-8
    assert image_set(_model(), flat_val).labels == [281, 0, 967]


@pytest.mark.parametrize("where", ["in", "parent", "sibling", "kaggle"])
def test_xml_boxes_are_found_in_or_beside_the_folder(tmp_path, where):
    val = tmp_path / ("ILSVRC/Data/CLS-LOC/val" if where == "kaggle" else "val")
    xml = {"in": val, "parent": val.parent, "sibling": tmp_path / "ILSVRC2012_bbox_val_v3" / "val",
           "kaggle": tmp_path / "ILSVRC/Annotations/CLS-LOC/val"}[where]
    for i, w in ((1, TABBY), (2, TENCH)):
        _jpeg(val / f"{_val(i)}.JPEG")
        _xml(xml / f"{_val(i)}.xml", [(w, 0, 0, 32, 24)])
    d = image_set(_model(), val)
    assert d.labels == [281, 0] and d.boxes == [[(0, 0, 16, 16)], [(0, 0, 16, 16)]]
    assert check_paper_inputs("efficientnet_lite0", val)["annotations"] == f"xml {str(xml)!r}"


def test_make_s_annotations_reach_the_imagenet_images(tmp_path, monkeypatch):
    """make reproduce ... ANNOTATIONS=/path exports IMAGENET_ANNOTATIONS; images='imagenet' reads it."""
    val, boxes = tmp_path / "images" / "val", tmp_path / "boxes"
    _jpeg(val / f"{_val(1)}.JPEG")
    _xml(boxes / f"{_val(1)}.xml", [(ESPRESSO, 0, 0, 32, 24)])
    monkeypatch.setenv("IMAGENET", str(val))
    assert image_set(_model(), "imagenet").labels == [None]
    monkeypatch.setenv("IMAGENET_ANNOTATIONS", str(boxes))
    assert image_set(_model(), "imagenet").labels == [967]


def test_a_wrong_imagenet_path_suggests_the_make_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGENET", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="IMAGENET=/path/to/ILSVRC2012/val"):
        image_set(_model(), "imagenet")


def test_the_command_line_check_takes_annotations_and_eval_images(tmp_path, monkeypatch, capsys):
    from liftcam.__main__ import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    val, boxes = tmp_path / "val", tmp_path / "elsewhere"
    _jpeg(val / f"{_val(1)}.JPEG")
    _xml(boxes / f"{_val(1)}.xml", [(ESPRESSO, 0, 0, 32, 24)])
    assert main(["check-inputs", "efficientnet_lite0", str(val)]) == 1           # no labels without the XML
    assert main(["check-inputs", "efficientnet_lite0", str(val), "--annotations", str(boxes)]) == 0
    assert "images: 1, labelled: 1, with_boxes: 1" in capsys.readouterr().out
    assert main(["check-inputs", "efficientnet_lite0", str(val), "--annotations", str(boxes), "--eval-images", "5"]) == 1
    assert "eval_images" in capsys.readouterr().err


def test_only_the_sampled_images_of_a_large_folder_are_decoded(tmp_path, monkeypatch):
    """A folder of thousands of tiny files, 3 images drawn: 3 decodes, and Python's peak memory does not grow
    with the folder (only the listing does: names and paths, not pixels)."""
    import tracemalloc

    def folder(n):
        f = tmp_path / f"many{n}"
        f.mkdir()
        tiny = _jpeg(tmp_path / "tiny.JPEG", size=(8, 8)).read_bytes()
        for i in range(n):
            (f / f"{_val(i + 1)}.JPEG").write_bytes(tiny)
        return f

    small, large = folder(300), folder(3000)
    decoded = []
    real = data.load_image
    monkeypatch.setattr(data, "load_image", lambda p: decoded.append(p) or real(p))
    peaks = {}
    for f in (small, large):
        decoded.clear()
        tracemalloc.start()
        d = image_set(_model(), f, sample=3, seed=0)
        peaks[f] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(d) == 3 and len(decoded) == 3
    # 2700 more files cost their listing (a few hundred bytes each), never their pixels
    assert peaks[large] - peaks[small] < 2700 * 2000
