"""Command line: ``python -m liftcam explain IMAGES...`` and ``python -m liftcam check-inputs MODEL [FOLDER] [options]``.

``explain`` writes a CAM of each image file (an overlay PNG and the map as ``.npy``) for a model
given by name or as a saved ``torch.nn.Module`` file. ``check-inputs`` checks, before any work,
that a paper run has its weights and images (:func:`liftcam.data.check_paper_inputs`); prints
what was found, or every missing item with its fix, and exits 1 then. Both exit 1 on bad input,
with the fix.
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    """Run the command; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m liftcam", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    _explain_parser(sub)
    c = sub.add_parser("check-inputs", help="check the weights and the ImageNet folder of a paper profile")
    c.add_argument("model", help="vgg16, resnet50 or efficientnet_lite0")
    c.add_argument("imagenet", nargs="?", default=None, help="the ILSVRC-2012 validation folder")
    c.add_argument("--annotations", default=None,
                   help="LOC_val_solution.csv or the folder of ILSVRC2012_val_*.xml box files (default: found in or "
                        "beside the folder)")
    c.add_argument("--eval-images", type=int, default=None, help="the profile's subset size: checked against the folder")
    a = p.parse_args(argv)
    if a.command == "explain":
        return explain_images(a)
    from .data import PaperInputsError, check_paper_inputs

    try:
        found = check_paper_inputs(a.model, a.imagenet or None, annotations=a.annotations or None,
                                   eval_images=a.eval_images)
    except (PaperInputsError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    print(", ".join(f"{k}: {v}" for k, v in found.items()))
    return 0


# --------------------------------------------------------------------------------------------
# explain: CAMs of the user's own image files

def _explain_parser(sub) -> None:
    e = sub.add_parser("explain", help="write the CAM of each image file: an overlay PNG and the map (.npy)",
                       description="Explain image files with one CAM method: for each IMAGE, OUT/<name>.png (the map "
                                   "over the image the model saw) and OUT/<name>.npy (the map, (H, W) float32 in [0, 1]), "
                                   "and OUT/explain.json (what was run, the class explained per image).")
    e.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, TIFF, BMP, GIF, WebP)")
    e.add_argument("--model", default="efficientnet_lite0",
                   help="a saved torch.nn.Module file (torch.save(model, path)), one of this project's models "
                        "(efficientnet_lite0: the offline default, vgg16, resnet50), or a torchvision or timm name "
                        "(their pretrained weights from the torch cache or a download)")
    e.add_argument("--layer", default=None, help="the layer to explain, a name from model.named_modules() "
                                                 "(default: the project model's target layer)")
    e.add_argument("--method", default="lift-cam", help="a method of liftcam.METHODS (default lift-cam)")
    e.add_argument("--target", type=int, default=None, help="the class to explain (default: each image's predicted class)")
    e.add_argument("--out", required=True, help="the folder to write to (created)")
    e.add_argument("--size", type=int, default=224, help="input size for a model file or a torchvision/timm model "
                                                          "without its own preprocessing (default 224)")
    e.add_argument("--untrained", action="store_true", help="a torchvision/timm name with random weights (no download)")
    e.add_argument("--device", default="auto", help="cpu, cuda, ... (default: CUDA where present, else CPU)")


class _InputError(Exception):
    """Bad input to the command: its message names the problem and the fix."""


def explain_images(a) -> int:
    """The ``explain`` subcommand; returns the exit status (1 on bad input, with the fix on stderr)."""
    try:
        _run_explain(a)
    except (_InputError, ValueError, TypeError, FileNotFoundError, IsADirectoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _run_explain(a) -> None:
    import io
    import json
    from pathlib import Path

    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from . import cache, data, plots
    from .core import RULES, explain, lookup

    try:
        lookup(a.method)
    except ValueError:
        raise _InputError(f"unknown method {a.method!r}; pass --method with one of {', '.join(RULES)}") from None
    paths = [Path(p) for p in a.images]
    stems = {}
    for p in paths:
        if p.stem in stems:
            raise _InputError(f"{str(stems[p.stem])!r} and {str(p)!r} would both be written as {p.stem}.png; "
                              "explain them in two runs with two --out folders, or rename one")
        stems[p.stem] = p
    images, bad = {}, []
    for p in paths:                                                   # every file read before any work
        try:
            images[p] = data.load_image(p)
        except (OSError, data.ImageReadError) as err:
            bad.append(str(err))
    if bad:
        raise _InputError("; ".join(bad))
    s = _load_model(a)
    if a.target is not None:                                          # before any work, not at the first image
        with torch.no_grad():
            C = s(s.preprocess(images[paths[0]])[None].to(s.device, s.dtype)).shape[1]
        if not 0 <= a.target < C:
            raise _InputError(f"--target {a.target} is out of range: the model has {C} classes (0..{C - 1}); "
                              "pass a class index in that range, or leave --target out for the predicted class")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for p in tqdm(paths, desc=f"{lookup(a.method).label} ({s.name} at {s.layer})", unit="image"):
        x = s.preprocess(images[p])[None]                             # (1, 3, H, W) in [0, 1]
        e = explain(s, x, a.method, targets=a.target)
        m = e.maps[0].detach().cpu().float().numpy()                   # (H, W) in [0, 1]
        buf = io.BytesIO()
        np.save(buf, m)
        cache.atomic_write(out / f"{p.stem}.npy", buf.getvalue())
        _save_png(out / f"{p.stem}.png", plots.overlay(x[0], m))
        c = int(e.targets[0])
        done.append({"image": str(p), "map": f"{p.stem}.npy", "overlay": f"{p.stem}.png", "class": c,
                     "class_name": s.categories[c] if s.categories and 0 <= c < len(s.categories) else None,
                     "logit": float(e.logits[0, c])})
    manifest = {"model": a.model, "layer": s.layer, "method": a.method, "target": a.target,
                "device": str(s.device), "images": done}
    cache.atomic_write(out / "explain.json", json.dumps(manifest, indent=1))
    for d in done:
        name = f" ({d['class_name']})" if d["class_name"] else ""
        print(f"{d['image']}: class {d['class']}{name} -> {out / d['overlay']}, {out / d['map']}")


def _save_png(path, rgb) -> None:
    import io

    import numpy as np
    from PIL import Image

    from . import cache

    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(buf, format="PNG")
    cache.atomic_write(path, buf.getvalue())


def _load_model(a):
    """The SplitModel of ``--model`` at ``--layer`` on ``--device``; a clear _InputError otherwise."""
    from pathlib import Path

    import torch
    from torch import nn

    from . import models

    device = models.device(a.device)
    known = [*models.MODELS, *models.CONTROLLED_MODELS]
    if a.model in known:
        try:
            return models.load(a.model, layer=a.layer, device=device)
        except models.WeightsNotFoundError as err:
            raise _InputError(str(err)) from None
    path = Path(a.model).expanduser()
    if path.is_file():
        try:
            net = torch.load(path, map_location="cpu", weights_only=False)   # a pickled module: trusted files only
        except Exception as err:
            raise _InputError(f"cannot read the model file {str(path)!r} ({type(err).__name__}: {err}); save the "
                              "model with torch.save(model, path)") from None
        if isinstance(net, dict):
            raise _InputError(f"{str(path)!r} holds a state dict (weights only), not a model; save the module "
                              "itself (torch.save(model, path)) or pass an architecture name with its weights")
        if not isinstance(net, nn.Module):
            raise _InputError(f"{str(path)!r} holds a {type(net).__name__}, not a torch.nn.Module; save the model "
                              "with torch.save(model, path)")
        name, normalize = path.stem, (models.IMAGENET_MEAN, models.IMAGENET_STD)
    else:
        net, normalize = _zoo(a.model, a.untrained)
        name = a.model
    if a.layer is None:
        convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
        hint = f" (its last convolutions: {', '.join(convs[-3:])})" if convs else ""
        raise _InputError(f"pass --layer: the layer to explain, a name from model.named_modules(){hint}")
    s = models.split(net, a.layer, preprocess=models.ImageTransform(resize=(a.size, a.size)), normalize=normalize,
                     name=name).to(device)
    with torch.no_grad():
        C = s(torch.zeros(1, 3, a.size, a.size, device=device)).shape[1]
    if C == 1000:                                                     # an ImageNet classifier: name its classes
        s.categories = models._imagenet_categories()
    return s


def _zoo(name: str, untrained: bool):
    """(module, (mean, std)) of a torchvision or timm model name."""
    import torchvision

    from . import models

    if name in torchvision.models.list_models():
        try:
            weights = None if untrained else torchvision.models.get_model_weights(name).DEFAULT
        except (ValueError, KeyError):
            weights = None
        try:
            net = torchvision.models.get_model(name, weights=weights).eval()
        except Exception as err:  # no network, no cached checkpoint
            raise _InputError(f"torchvision's {name} weights could not be loaded ({type(err).__name__}: {err}); put "
                              f"the checkpoint into the torch cache ($TORCH_HOME/hub/checkpoints), or pass --untrained "
                              "for random weights") from None
        return net, (models.IMAGENET_MEAN, models.IMAGENET_STD)
    import timm

    if name in timm.list_models():
        try:
            net = timm.create_model(name, pretrained=not untrained).eval()
        except Exception as err:
            raise _InputError(f"timm's {name} weights could not be loaded ({type(err).__name__}: {err}); put them in "
                              "the Hugging Face cache, or pass --untrained for random weights") from None
        cfg = net.pretrained_cfg or {}
        return net, (tuple(cfg.get("mean", models.IMAGENET_MEAN)), tuple(cfg.get("std", models.IMAGENET_STD)))
    raise _InputError(f"--model {name!r} is neither a file nor a known model name; pass a saved torch.nn.Module "
                      f"file, one of {', '.join([*models.MODELS, *models.CONTROLLED_MODELS])}, or a torchvision / "
                      "timm model name (torchvision.models.list_models(), timm.list_models())")


if __name__ == "__main__":
    sys.exit(main())
