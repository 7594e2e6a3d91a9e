"""A controlled benchmark: generated scenes with exact object boxes, and small CNNs trained on them.

Each image holds one object of one of :data:`CLASSES` (a flat-coloured shape drawn as a numpy
mask) pasted at a random position, size and colour onto a random crop of a photograph or
texture that ships with scikit-image, plus class-neutral distractor blobs. The class is a
function of the object's shape alone, and the box is the tight box of the pasted pixels. Two
network shapes mirror the paper's heads at a width where exact Shapley values are feasible
(K = 16 maps: 2^16 coalitions):

- ``"vgg"``: conv-BN-ReLU blocks; the target layer is the ReLU after the last conv, then
  max-pooling and an fc-ReLU-Dropout-fc-ReLU-Dropout-fc head (VGG16 after ``features.29``).
- ``"resnet"``: residual blocks; the target layer ``layer4`` is the last block's post-ReLU
  output, then global average pooling and fc, a linear head (ResNet50 after ``layer4``).

    >>> scenes = generate(8, seed=0)                  # scenes.images (8, 3, 64, 64) in [0, 1]
    >>> scenes.boxes[0], scenes.labels[0]             # [(x1, y1, x2, y2)], class index
    >>> s = load("resnet", K=16)                      # trained once (~1 min), then from the cache
    >>> phi, phi0 = liftcam.exact_shapley(s.head, s.body(scenes.images), scenes.labels)

Everything is drawn from a seed (image i of a seed does not depend on how many are drawn) and
training is deterministic for a seed on CPU. Trained weights are cached under a key that hashes
the configuration and this file's source, so a change to the generator or to training retrains.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import cache
from .cache import atomic_write
from .data import ImageSet, _package_file, load_image
from .models import ImageTransform, SplitModel, split

__all__ = ["CLASSES", "BACKGROUNDS", "SHAPES", "LAYERS", "ObjectSpec", "Scenes", "Config", "generate", "render",
           "shape_mask", "backgrounds", "heldout", "vgg_net", "resnet_net", "net", "train", "load",
           "cache_folder", "cache_key", "accuracy", "default_config"]

#: The object classes, in label order.
CLASSES = ("disc", "ring", "square", "frame", "triangle", "diamond", "cross", "star", "crescent", "bars")
#: Background pictures: files bundled in the scikit-image wheel (read from disk, never downloaded).
BACKGROUNDS = ("brick", "grass", "gravel", "moon", "camera", "astronaut", "chelsea", "coffee", "hubble_deep_field",
               "ihc", "motorcycle_left", "retina", "rocket")
_BACKGROUND_FILES = {"hubble_deep_field": "hubble_deep_field.jpg", "retina": "retina.jpg", "rocket": "rocket.jpg"}
#: The network shapes and their target layers.
SHAPES = ("vgg", "resnet")
LAYERS = {"vgg": "features.13", "resnet": "layer4"}
#: Background pictures are scaled to this shorter side before cropping.
_BACKGROUND_SIDE = 256


# --------------------------------------------------------------------------------------------
# Drawing

def _polygon(u: np.ndarray, v: np.ndarray, vertices) -> np.ndarray:
    """Even-odd point-in-polygon test of the points (u, v) for a closed polygon [(u, v), ...]."""
    inside = np.zeros(u.shape, dtype=bool)
    vs = list(vertices)
    for (u1, v1), (u2, v2) in zip(vs, vs[1:] + vs[:1]):
        crosses = (v1 > v) != (v2 > v)
        at = (u2 - u1) * (v - v1) / np.where(v2 != v1, v2 - v1, 1.0) + u1
        inside ^= crosses & (u < at)
    return inside


_STAR = [(r * np.sin(a), -r * np.cos(a)) for i in range(10)
         for r, a in [((1.0 if i % 2 == 0 else 0.42), i * np.pi / 5)]]


def shape_mask(name: str, side: int) -> np.ndarray:
    """The boolean mask (side, side) of object class ``name`` drawn in a square window.

    Coordinates u (across) and v (down) run over [-1, 1] at pixel centres; no anti-aliasing,
    so every pixel is either object or not.
    """
    c = (np.arange(side) + 0.5) / side * 2 - 1
    u, v = np.meshgrid(c, c)                                          # (side, side): u = column, v = row
    r2 = u * u + v * v
    if name == "disc":
        m = r2 <= 0.95 ** 2
    elif name == "ring":
        m = (r2 <= 0.95 ** 2) & (r2 >= 0.55 ** 2)
    elif name == "square":
        m = (abs(u) <= 0.8) & (abs(v) <= 0.8)
    elif name == "frame":
        m = (abs(u) <= 0.85) & (abs(v) <= 0.85) & ~((abs(u) <= 0.45) & (abs(v) <= 0.45))
    elif name == "triangle":
        m = _polygon(u, v, [(0.0, -0.9), (0.95, 0.85), (-0.95, 0.85)])
    elif name == "diamond":
        m = abs(u) + abs(v) <= 0.97
    elif name == "cross":
        m = ((abs(u) <= 0.28) & (abs(v) <= 0.95)) | ((abs(v) <= 0.28) & (abs(u) <= 0.95))
    elif name == "star":
        m = _polygon(u, v, [(0.98 * a, 0.05 + 0.98 * b) for a, b in _STAR])
    elif name == "crescent":
        m = (r2 <= 0.95 ** 2) & ((u - 0.45) ** 2 + (v + 0.1) ** 2 > 0.7 ** 2)
    elif name == "bars":
        m = (abs(u) <= 0.9) & ((abs(v) <= 0.2) | ((abs(v) >= 0.55) & (abs(v) <= 0.92)))
    else:
        raise ValueError(f"unknown object class {name!r}; choose one of {', '.join(CLASSES)}")
    return m


def _blob_mask(rng: np.random.Generator, side: int) -> np.ndarray:
    """An irregular blob (side, side): smoothed noise above a threshold, its largest part kept roughly round."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal((side, side)), sigma=side / 5, mode="wrap")
    c = (np.arange(side) + 0.5) / side * 2 - 1
    u, v = np.meshgrid(c, c)
    m = (noise - noise.mean()) / (noise.std() + 1e-12) + 1.2 * (1 - (u * u + v * v)) > 0.9
    return m if m.any() else (u * u + v * v <= 0.25)


@functools.lru_cache(maxsize=None)
def _background(name: str) -> np.ndarray:
    """One background picture as float32 RGB (h, w, 3) in [0, 1], shorter side _BACKGROUND_SIDE."""
    im = load_image(_package_file("skimage", "data/" + _BACKGROUND_FILES.get(name, f"{name}.png")))
    s = _BACKGROUND_SIDE / min(im.size)
    im = im.resize((max(_BACKGROUND_SIDE, round(im.size[0] * s)), max(_BACKGROUND_SIDE, round(im.size[1] * s))),
                   Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def backgrounds() -> dict[str, np.ndarray]:
    """The background pictures, name -> float32 RGB (h, w, 3) in [0, 1] (shorter side 256 px)."""
    return {n: _background(n) for n in BACKGROUNDS}


@dataclass(frozen=True)
class ObjectSpec:
    """One pasted object: class, window side, top-left corner (x = column, y = row) and RGB colour."""

    shape: str
    side: int
    x: int
    y: int
    color: tuple[float, float, float]

    @property
    def label(self) -> int:
        """The class index: a function of the shape alone."""
        return CLASSES.index(self.shape)


def render(obj: ObjectSpec, background: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Paste ``obj`` onto ``background`` (H, W, 3) in [0, 1]: (image (H, W, 3), mask (H, W), box).

    The box ``(x1, y1, x2, y2)`` (end-exclusive) is the tight box of the mask's pixels. The
    object must lie inside the image.
    """
    H, W = background.shape[:2]
    if obj.x < 0 or obj.y < 0 or obj.x + obj.side > W or obj.y + obj.side > H:
        raise ValueError(f"{obj} does not fit into a {W} x {H} image")
    mask = np.zeros((H, W), dtype=bool)
    mask[obj.y:obj.y + obj.side, obj.x:obj.x + obj.side] = shape_mask(obj.shape, obj.side)
    image = background.copy()
    image[mask] = np.asarray(obj.color, dtype=image.dtype)
    return image, mask, _tight_box(mask)


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random crop (size, size, 3) of a random background: random scale, flip and channel gains."""
    picture = _background(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    h, w = picture.shape[:2]
    c = int(rng.integers(size, min(3 * size, h, w) + 1))
    y, x = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
    patch = picture[y:y + c, x:x + c]
    if c != size:
        patch = np.asarray(Image.fromarray((patch * 255).round().astype(np.uint8)).resize((size, size), Image.BILINEAR),
                           dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.clip(patch * rng.uniform(0.6, 1.2, size=3).astype(np.float32), 0, 1)


def _color(rng: np.random.Generator, under: np.ndarray) -> tuple[float, float, float]:
    """A random colour at least 0.35 (RGB distance) from the mean of the pixels it will cover."""
    mean = under.reshape(-1, 3).mean(0)
    for _ in range(50):
        col = rng.random(3)
        if np.linalg.norm(col - mean) >= 0.35:
            break
    return tuple(float(round(v, 4)) for v in col)


def _scene(seed: int, index: int, size: int, distractors: int) -> tuple[np.ndarray, ObjectSpec, np.ndarray]:
    """Image ``index`` of the stream of ``seed``: (image (H, W, 3), object, mask (H, W))."""
    rng = np.random.default_rng([seed, index])
    image = _crop(rng, size)
    shape = CLASSES[rng.integers(len(CLASSES))]
    side = int(rng.integers(3 * size // 8, 5 * size // 8 + 1))
    x, y = int(rng.integers(size - side + 1)), int(rng.integers(size - side + 1))
    keep_out = np.zeros((size, size), dtype=bool)
    keep_out[max(0, y - 2):y + side + 2, max(0, x - 2):x + side + 2] = True
    for _ in range(int(rng.integers(distractors + 1))):                # blobs away from the object
        b = int(rng.integers(max(3, size // 10), max(4, size // 5) + 1))
        blob = _blob_mask(rng, b)
        for _ in range(10):
            bx, by = int(rng.integers(size - b + 1)), int(rng.integers(size - b + 1))
            if not keep_out[by:by + b, bx:bx + b].any():
                region = image[by:by + b, bx:bx + b]
                region[blob] = _color(rng, region)
                break
    window = shape_mask(shape, side)
    obj = ObjectSpec(shape, side, x, y, _color(rng, image[y:y + side, x:x + side][window]))
    image, mask, _ = render(obj, image)
    return image, obj, mask


@dataclass
class Scenes(ImageSet):
    """Generated images with their objects: an :class:`~liftcam.data.ImageSet` plus exact masks."""

    masks: Tensor                   # (B, H, W) bool: the pasted object's pixels
    objects: list[ObjectSpec]       # what was pasted, to re-render it on other backgrounds


def generate(n: int, *, seed: int = 0, start: int = 0, size: int = 64, distractors: int = 3) -> Scenes:
    """Images ``start .. start + n - 1`` of the scene stream of ``seed``.

    Each image (3, size, size) in [0, 1] is a random crop of a :data:`BACKGROUNDS` picture
    (random scale, flip, channel gains), 0 to ``distractors`` irregular blobs away from the
    object, and one object of a random class of :data:`CLASSES` with side ``3/8 .. 5/8`` of ``size``
    at a random position, in a random colour that stands out from what it covers. Labels are
    the object classes, ``boxes[i] = [(x1, y1, x2, y2)]`` the tight end-exclusive box of
    ``masks[i]``. Image i depends only on ``(seed, i, size, distractors)``.

        >>> s = generate(4, seed=0)
        >>> [CLASSES[c] for c in s.labels], s.boxes
    """
    if not 32 <= size <= 256:
        raise ValueError(f"size must be between 32 and 256 pixels, got {size}")
    images, masks, objects = [], [], []
    for i in range(start, start + n):
        image, obj, mask = _scene(seed, i, size, distractors)
        images.append(image)
        masks.append(mask)
        objects.append(obj)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous() if n else torch.zeros(0, 3, size, size)
    m = torch.from_numpy(np.stack(masks)) if n else torch.zeros(0, size, size, dtype=torch.bool)
    return Scenes(images=x, names=[f"controlled-{seed}-{i}" for i in range(start, start + n)],
                  labels=[o.label for o in objects], accept=[[o.label] for o in objects],
                  boxes=[[_tight_box(mk)] for mk in masks], masks=m, objects=objects)


# --------------------------------------------------------------------------------------------
# The two network shapes

def _conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGShaped(nn.Module):
    """``features`` (conv-BN-ReLU blocks, target = its last ReLU, then max-pool), ``avgpool``,
    ``classifier`` (fc-ReLU-Dropout-fc-ReLU-Dropout-fc): torchvision's VGG16_bn layout, narrower
    and with a stride-2 first conv (training on two CPU cores has to take about a minute)."""

    def __init__(self, K: int = 16, classes: int = len(CLASSES), widths=(24, 48, 64), hidden: int = 128):
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            *_conv(3, w1, 2), nn.MaxPool2d(2),                        # 16 x 16 at 64 px
            *_conv(w1, w2), nn.MaxPool2d(2),                          # 8 x 8
            *_conv(w2, w3), *_conv(w3, K),                            # features.13: the target (B, K, 8, 8)
            nn.MaxPool2d(2))                                          # 4 x 4
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))                   # identity at 64 px, as VGG16's at 224
        self.classifier = nn.Sequential(
            nn.Linear(K * 16, hidden), nn.ReLU(inplace=True), nn.Dropout(0.2),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(0.2),
            nn.Linear(hidden, classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class ResNetShaped(nn.Module):
    """Stem conv-BN-ReLU, ``layer1..layer3`` of torchvision BasicBlocks, ``layer4`` one Bottleneck
    (as ResNet50's) with K output maps after its ReLU (the target), global average pooling and
    ``fc``: ResNet50's layout, narrower and shallower."""

    def __init__(self, K: int = 16, classes: int = len(CLASSES), widths=(16, 32, 48, 64)):
        from torchvision.models.resnet import BasicBlock, Bottleneck

        super().__init__()
        if K % Bottleneck.expansion:
            raise ValueError(f"K must be a multiple of {Bottleneck.expansion} (the Bottleneck expansion), got {K}")
        w0, w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(3, w0, 3, 2, 1, bias=False)            # 32 x 32 at 64 px
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU(inplace=True)

        def down(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        self.layer1 = nn.Sequential(BasicBlock(w0, w1, 2, down(w0, w1, 2)))              # 16 x 16
        self.layer2 = nn.Sequential(BasicBlock(w1, w2, 2, down(w1, w2, 2)))              # 8 x 8
        self.layer3 = nn.Sequential(BasicBlock(w2, w3, 1, down(w2, w3, 1)))              # 8 x 8
        self.layer4 = nn.Sequential(Bottleneck(w3, K // Bottleneck.expansion, 1, down(w3, K, 1)))  # (B, K, 8, 8)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(K, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def vgg_net(K: int = 16, classes: int = len(CLASSES)) -> VGGShaped:
    """The untrained VGG-shaped net; target layer ``features.13`` (K maps of 8 x 8 at 64 px)."""
    return VGGShaped(K, classes)


def resnet_net(K: int = 16, classes: int = len(CLASSES)) -> ResNetShaped:
    """The untrained ResNet-shaped net; target layer ``layer4`` (K maps of 8 x 8 at 64 px)."""
    return ResNetShaped(K, classes)


def net(shape: str, K: int = 16, classes: int = len(CLASSES)) -> nn.Module:
    """The untrained net of ``shape`` ("vgg" or "resnet") with K maps at the target layer."""
    if shape not in SHAPES:
        raise ValueError(f"unknown network shape {shape!r}; choose one of {', '.join(SHAPES)}")
    return (vgg_net if shape == "vgg" else resnet_net)(K, classes)


# --------------------------------------------------------------------------------------------
# Training

@dataclass(frozen=True)
class Config:
    """Everything a trained model depends on, besides its shape, K and this module's code.

    Training images are ``generate(n_train, seed=seed)``, held-out ones the next ``n_test`` of
    the same stream (``start=n_train``). ``threads``: CPU threads during training (fixed, so
    the float sums, hence the weights, do not depend on the machine's core count).
    """

    seed: int = 0
    size: int = 64
    distractors: int = 3
    n_train: int = 5000
    n_test: int = 1000
    epochs: int = 8
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 1e-4
    threads: int = 2


def default_config(shape: str, K: int) -> Config:
    """The configuration :func:`load`, :func:`train` and :func:`cache_key` use when given none: :class:`Config`,
    with a peak learning rate of 2e-3 for the VGG-shaped net at K > 16 (at 5e-3 its wide target conv trains
    unstably: 0.93 held-out accuracy, or chance with more dropout). The data, hence :func:`heldout`, are the same."""
    return Config(lr=2e-3) if shape == "vgg" and K > 16 else Config()


def heldout(config: Config = Config(), n: int | None = None) -> Scenes:
    """Held-out scenes of ``config`` (never trained on): the ``n`` (default ``n_test``) after the training images."""
    return generate(config.n_test if n is None else n, seed=config.seed, start=config.n_train, size=config.size,
                    distractors=config.distractors)


def accuracy(model: nn.Module, images: Tensor, labels, batch_size: int = 500) -> float:
    """Share of ``images`` whose arg-max logit is the label (eval mode, no grad; flags restored)."""
    from .core import evaluating

    labels = torch.as_tensor(labels)
    with evaluating(model), torch.no_grad():
        pred = torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(labels), batch_size)])
    return float((pred == labels).float().mean())


def train(shape: str, K: int = 16, config: Config | None = None, *, progress: bool = True) -> tuple[nn.Module, dict]:
    """Train :func:`net` ``(shape, K)`` on generated scenes; return ``(model in eval mode, report)``.

    AdamW with a one-cycle learning rate (peak ``config.lr``), cross-entropy, ``config.epochs``
    passes over the training images in an order drawn from the seed, ``config.threads`` CPU
    threads. The global torch RNG and thread count are left as they were. ``report``: held-out
    accuracy, training seconds (generation excluded), the configuration. ``config`` None:
    :func:`default_config`.
    """
    config = default_config(shape, K) if config is None else config
    threads = torch.get_num_threads()
    data = generate(config.n_train, seed=config.seed, size=config.size, distractors=config.distractors)
    test = heldout(config)
    x, y = data.images, torch.as_tensor(data.labels)
    try:
        torch.set_num_threads(config.threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = net(shape, K)
        g = torch.Generator().manual_seed(config.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        per_epoch = (len(y) + config.batch_size - 1) // config.batch_size
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=max(1, config.epochs * per_epoch),
                                                    pct_start=0.15)
        start = time.perf_counter()
        bar = tqdm(range(config.epochs), desc=f"train {shape} K={K}", unit="epoch", disable=not progress)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)                            # dropout masks
            model.train()
            for _ in bar:
                total = 0.0
                for idx in torch.randperm(len(y), generator=g).split(config.batch_size):
                    opt.zero_grad()
                    loss = F.cross_entropy(model(x[idx]), y[idx])
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += loss.item() * len(idx)
                bar.set_postfix(loss=f"{total / len(y):.3f}")
        seconds = time.perf_counter() - start
        model.eval()
        acc = accuracy(model, test.images, test.labels)
    finally:
        torch.set_num_threads(threads)
    report = {"shape": shape, "K": K, "layer": LAYERS[shape], "heldout_accuracy": acc, "n_heldout": len(test),
              "train_seconds": round(seconds, 2), "threads": config.threads, "config": dataclasses.asdict(config),
              "classes": list(CLASSES), "torch": torch.__version__}
    return model, report


# --------------------------------------------------------------------------------------------
# Cached trained models

def cache_folder(path: str | os.PathLike | None = None) -> Path:
    """Where :func:`load` keeps weights: ``path``, else ``$LIFTCAM_CACHE/controlled``, else
    ``<repo>/data/cache/controlled`` (git-ignored)."""
    return Path(path) if path is not None else cache.folder("controlled")


def cache_key(shape: str, K: int, config: Config | None = None) -> str:
    """sha256 of the shape, K, the configuration (None: :func:`default_config`) and this module's source
    (generator, nets, training)."""
    config = default_config(shape, K) if config is None else config
    h = hashlib.sha256(json.dumps({"shape": shape, "K": K, "config": dataclasses.asdict(config)},
                                  sort_keys=True).encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def load(shape: str = "vgg", K: int = 16, *, config: Config | None = None, cache_dir: str | os.PathLike | None = None,
         train_if_missing: bool = True, progress: bool = True, layer: str | None = None) -> SplitModel:
    """The trained ``shape`` net with K target maps, split at ``layer`` (None: its target layer, :data:`LAYERS`).

    Read from ``cache_dir`` (see :func:`cache_folder`) when trained before with the same
    :func:`cache_key`; else trained by :func:`train` (about a minute on two CPU cores with the
    default :class:`Config`) and written there, with a JSON report beside the weights. The
    SplitModel takes images (B, 3, size, size) in [0, 1] (``preprocess`` resizes a PIL image),
    its ``categories`` are :data:`CLASSES`, and ``s.report`` holds the training report
    (held-out accuracy, seconds; ``"cached": True`` when read from disk). ``config`` None:
    :func:`default_config`.

        >>> s = load("resnet", K=16)
        >>> s.report["heldout_accuracy"], s.body(heldout(n=2).images).shape   # ..., (2, 16, 8, 8)
    """
    config = default_config(shape, K) if config is None else config
    model = net(shape, K)
    key = cache_key(shape, K, config)
    path = cache_folder(cache_dir) / f"{shape}{K}-{key[:16]}.pt"
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") != key:
            raise RuntimeError(f"{path} was written for another configuration; delete it to retrain")
        model.load_state_dict(saved["state_dict"])
        report = {**json.loads(saved["report"]), "cached": True}
    elif not train_if_missing:
        raise FileNotFoundError(f"no trained {shape} K={K} model at {path}; call load(..., train_if_missing=True)")
    else:
        model, report = train(shape, K, config, progress=progress)
        report = {**report, "key": key}
        buf = io.BytesIO()
        torch.save({"key": key, "state_dict": model.state_dict(), "report": json.dumps(report)}, buf)
        atomic_write(path, buf.getvalue())
        atomic_write(path.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
        report = {**report, "cached": False}
    s = split(model.eval(), layer or LAYERS[shape], preprocess=ImageTransform(resize=(config.size, config.size)),
              categories=CLASSES, name=f"controlled-{shape}{K}")
    s.report = report
    return s
