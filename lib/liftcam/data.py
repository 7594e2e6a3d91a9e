"""Images in: :func:`load_image` for any picture file, :func:`samples` for the real photographs
that ship inside installed packages, with ImageNet labels and hand-drawn object boxes.

    >>> image = load_image("photo.jpg")              # PIL RGB, any size
    >>> s = samples(["chelsea", "coffee"])           # [Sample(name='chelsea', label=281, ...), ...]
    >>> s[1].boxes                                   # [(173, 18, 408, 303), (77, 72, 479, 388)]

The photographs come from scikit-image, scikit-learn and matplotlib; they are read from the
installed packages' own files (no network, no import of those packages). Labels and boxes live
in ``data/samples.json`` at the repository root; boxes are ``(x1, y1, x2, y2)`` pixels of the
original image, x = column, y = row, end-exclusive.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["Sample", "ImageSet", "ImageReadError", "load_image", "samples", "sample_names", "image_set",
           "ANNOTATIONS"]

#: The shipped annotation file: ``<repository>/data/samples.json``.
ANNOTATIONS = Path(__file__).resolve().parents[2] / "data" / "samples.json"

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
    """Evaluation images ready for a model: pixels in [0, 1] and boxes in the same pixels."""

    images: "torch.Tensor"          # (B, 3, H, W) in [0, 1]
    names: list[str]
    labels: list[int | None]
    accept: list[list[int]]
    boxes: list[list[Box]]          # per image, (x1, y1, x2, y2) in pixels of ``images``

    def __len__(self):
        return len(self.names)


def image_set(model, images: str = "samples", *, limit: int | None = None) -> ImageSet:
    """The profile's evaluation images for ``model`` (a SplitModel: its ``preprocess`` is used).

    ``images="samples"``: the bundled photographs. Otherwise a folder of image files (ImageNet
    validation images, say), read in sorted order; an optional ``annotations.json`` in it with
    the schema of ``data/samples.json`` (``name`` = file name) gives labels and boxes. ``limit``
    keeps the first n images.
    """
    import torch

    if images == "samples":
        records = [(s.name, s.image, s.label, s.accept, s.boxes) for s in samples()]
    else:
        folder = Path(images).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder {str(folder)!r} not found; set `images` to a folder of "
                                    "image files (e.g. ImageNet validation images) or to 'samples'")
        notes = {}
        if (folder / "annotations.json").is_file():
            notes = {a["name"]: a for a in _annotations(folder / "annotations.json")}
        files = sorted(q for q in folder.iterdir() if q.suffix.lower() in Image.registered_extensions())
        if not files:
            raise FileNotFoundError(f"no image files in {str(folder)!r}")
        records = []
        for q in files[:limit]:
            a = notes.get(q.name, {})
            records.append((q.name, load_image(q), a.get("label"), list(a.get("accept", [])),
                            [tuple(int(v) for v in b) for b in a.get("boxes", [])]))
    records = records[:limit]
    mapper = getattr(model.preprocess, "map_boxes", None)
    x = torch.stack([model.preprocess(r[1]) for r in records])
    boxes = [mapper(r[4], r[1].size) if mapper else [] for r in records]
    return ImageSet(x, [r[0] for r in records], [r[2] for r in records], [r[3] for r in records], boxes)
