"""The model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

Cascading model-parameter randomisation: re-initialise the layers after the cut (the head), then,
cumulatively, the body's blocks from the top down, and compare each method's maps on the
randomised model with its maps on the trained one (Spearman rank correlation and SSIM per image).
An explanation that depends on what the model learned must change: a method whose maps survive a
randomised head explains the activation maps, not the classifier, whatever its faithfulness scores.
The caller's model is never touched: each stage randomises a deep copy.

    >>> stages = randomisation_stages(s, blocks=2)      # [("head", [...]), ("head + blocks.6", [...]), ...]
    >>> table = model_randomisation(s, x, ["lift-cam", "grad-cam"], stages=stages)
    >>> table.groupby(["stage", "method"])["spearman"].mean()
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..core import Batch, evaluating, explain_batch, forward, resolve_targets
from ..models import SplitModel

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["randomisation_stages", "randomised", "map_similarity", "model_randomisation", "sanity_summary", "Randomisation"]


class Randomisation(NamedTuple):
    """What :func:`model_randomisation` returns."""

    table: "pd.DataFrame"   # one row per (stage, method, image)
    maps: dict              # {"trained" or stage: {method: maps (n, H, W)}} of the first ``keep_maps`` images


def _parametrised(module: nn.Module, prefix: str) -> list[str]:
    """Names (with ``prefix``) of the submodules that hold parameters of their own, in forward-definition order."""
    return [f"{prefix}{n}" for n, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]


def _block(name: str, depth: int = 2) -> str:
    """A body module's block: the first ``depth`` components of its name in the unsplit model (``blocks.6``)."""
    return ".".join(name.split(".")[1:][:depth])                    # drop the body's Sequential index


def randomisation_stages(model: SplitModel, *, blocks: int | None = 3, depth: int = 2) -> list[tuple[str, list[str]]]:
    """The cascade, top down: ``[(stage name, module names of ``model`` to re-initialise), ...]``.

    Stage 1 is the head (every layer after the cut: ``"head"``); each next stage adds the next
    block of the body from the top (``"head + blocks.6"``, then ``"head + blocks.6 + blocks.5"``, ...),
    a block being the body's modules with parameters whose names in the unsplit model share their
    first ``depth`` components (``blocks.6``, ``layer4.1``, ``features.10``). ``blocks``: how many body
    blocks to add (None: all of them, down to the stem). The names are ``model.named_modules()`` names.
    """
    head = _parametrised(model.head, "head.")
    if not head:
        raise ValueError(f"the head of {model.name} after {model.layer!r} has no parameters: randomising it changes "
                         "nothing; split the model at an earlier layer")
    body = _parametrised(model.body, "body.")
    order = list(dict.fromkeys(_block(n.removeprefix("body."), depth) for n in reversed(body)))   # top block first
    stages, names, label = [("head", head)], list(head), "head"
    for b in order[:len(order) if blocks is None else blocks]:
        names = names + [n for n in body if _block(n.removeprefix("body."), depth) == b]
        label = f"{label} + {b}"
        stages.append((label, names))
    return stages


def randomised(model: SplitModel, modules, *, seed: int = 0) -> SplitModel:
    """A deep copy of ``model`` with ``modules`` (names of ``model.named_modules()``) re-initialised.

    Each module's ``reset_parameters()`` draws fresh weights as at construction (Kaiming-uniform
    convolutions and linear layers; batch norm back to weight 1, bias 0 and its running statistics
    to mean 0, variance 1, as Quantus' MPRT); a module without one has each parameter's entries
    shuffled. Deterministic for ``seed``; the global RNG is left as it was, and so is ``model``.
    """
    if not model.verified:
        raise ValueError("verify the split first (liftcam.explain or model.verify(images) on the trained model): the "
                         "copy's split cannot be checked against the unsplit model once it is randomised")
    copied = copy.deepcopy(model)
    found = dict(copied.named_modules())
    missing = [n for n in modules if n not in found]
    if missing:
        raise ValueError(f"no module {missing[0]!r} in {model.name}; name modules as model.named_modules() does "
                         "(liftcam.metrics.sanity.randomisation_stages lists them)")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        g = torch.Generator(device="cpu").manual_seed(seed)
        for n in modules:
            m = found[n]
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
                if hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
            else:
                for p in m.parameters(recurse=False):
                    p.copy_(p.flatten()[torch.randperm(p.numel(), generator=g).to(p.device)].view_as(p))
    return copied.eval()


def map_similarity(a: Tensor, b: Tensor) -> dict:
    """Per image, how alike two sets of maps (B, H, W) in [0, 1] are: ``{"spearman", "ssim"}`` (B,) float64 arrays.

    Spearman: the rank correlation of the pixels (ties averaged), NaN when either map is constant
    (no ranking to compare). SSIM: ``skimage.metrics.structural_similarity`` with data range 1.
    """
    from scipy.stats import rankdata
    from skimage.metrics import structural_similarity

    a, b = (t.detach().cpu().double().numpy() for t in (a, b))
    rho, ssim = np.full(len(a), np.nan), np.empty(len(a))
    for i in range(len(a)):
        x, y = a[i].ravel(), b[i].ravel()
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            rho[i] = np.corrcoef(rankdata(x), rankdata(y))[0, 1]
        ssim[i] = structural_similarity(a[i], b[i], data_range=1.0)
    return {"spearman": rho, "ssim": ssim}


def model_randomisation(model: SplitModel, images: Tensor, methods, *, stages=None, blocks: int | None = 3,
                        seed: int = 0, options: dict | None = None, keep_maps: int = 0,
                        progress: bool | None = None) -> Randomisation:
    """The cascading randomisation test of ``methods`` on ``images``: one row per (stage, method, image).

    Each method explains the trained model's predicted class on the trained model and on each stage's
    randomised copy (:func:`randomisation_stages`, :func:`randomised`; the same class, so that only the
    model changes); ``map_similarity`` compares the two maps. ``options``: ``{method: {option: value}}``.
    Returns :class:`Randomisation`: ``table``, one row per (stage, method, image) with columns
    stage, depth (1 = head only), method, image, spearman, ssim, "trained map empty" (a constant
    trained map: nothing to compare), "randomised map empty"; and ``maps`` of the first
    ``keep_maps`` images, trained and per stage, for a figure.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    options = options or {}
    stages = randomisation_stages(model, blocks=blocks) if stages is None else stages

    def explain_all(net, targets=None):
        """Every method on one model, from one forward pass (the maps A and logits are shared)."""
        A, logits = forward(net, images)                                 # verifies the trained model's split
        batch = Batch(net, images.to(A.device, A.dtype), A, resolve_targets(targets, logits), logits)
        with evaluating(net):
            return {m: explain_batch(batch, m, **options.get(m, {})) for m in methods}

    trained = explain_all(model)
    targets = next(iter(trained.values())).targets if trained else None
    rows, kept = [], {"trained": {m: e.maps[:keep_maps].cpu() for m, e in trained.items()}} if keep_maps else {}
    bar = tqdm(total=len(stages) * len(methods), desc="randomised models", disable=not (progress or progress is None
                                                                                      and len(stages) * len(methods) > 8),
               leave=False)
    for depth, (stage, modules) in enumerate(stages, 1):
        r = randomised(model, modules, seed=seed + depth)
        explained = explain_all(r, targets)
        for m in methods:
            e = explained[m]
            sim = map_similarity(trained[m].maps, e.maps)
            for i in range(len(images)):
                rows.append({"stage": stage, "depth": depth, "method": m, "image": i, "spearman": sim["spearman"][i],
                             "ssim": sim["ssim"][i], "trained map empty": bool(trained[m].maps[i].max() == 0),
                             "randomised map empty": bool(e.maps[i].max() == 0)})
            if keep_maps:
                kept.setdefault(stage, {})[m] = e.maps[:keep_maps].cpu()
            bar.update()
        del r
    bar.close()
    return Randomisation(pd.DataFrame(rows), kept)


def sanity_summary(table, *, threshold: float = 0.5):
    """Per (stage, method): how much the maps changed, and whether the method passes the check.

    An image's map has *changed* when its Spearman rank correlation with the trained map is below
    ``threshold``, or when the randomised map is empty and the trained one was not (a map that
    vanishes has changed); images whose trained map is empty show nothing and are left out. Columns:
    depth, images, compared (images with a trained map), "spearman mean", "ssim mean" (over the
    compared images; Spearman over those where both maps are non-constant), changed (share of the
    compared images) and, at every stage, verdict: **passes** when most compared maps changed,
    **fails** otherwise (Adebayo et al.: an explanation of the model must change when the model is
    randomised), **no maps** when nothing is compared.
    """
    import pandas as pd

    t = table[~table["trained map empty"]]
    changed = (t["spearman"] < threshold) | t["randomised map empty"]
    rows = []
    for (stage, method), g in table.groupby(["stage", "method"], sort=False):
        c, ch = t[(t["stage"] == stage) & (t["method"] == method)], changed[(t["stage"] == stage) & (t["method"] == method)]
        share = float(ch.mean()) if len(c) else float("nan")
        rows.append({"stage": stage, "method": method, "depth": int(g["depth"].iloc[0]), "images": len(g),
                     "compared": len(c), "spearman mean": float(c["spearman"].mean()) if len(c) else float("nan"),
                     "ssim mean": float(c["ssim"].mean()) if len(c) else float("nan"), "changed": share,
                     "verdict": "no maps" if not len(c) else "passes" if share > 0.5 else "fails"})
    return pd.DataFrame(rows)
