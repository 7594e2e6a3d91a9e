"""What a CAM explains: one class's logit, a linear combination of logits, or any function of them.

``liftcam.explain(..., targets=...)`` takes, besides class indices, these objects and any callable
that maps one image's logits (C,) to a scalar, as pytorch-grad-cam's targets do
(``ClassifierOutputTarget``, ``ClassifierOutputReST``, ...). :func:`liftcam.core.resolve_targets`
checks them all in one place.

    >>> liftcam.explain(s, x, method="lift-cam", targets=Combination({281: 1, 282: 1}))  # multi-label
    >>> liftcam.explain(s, x, method="grad-cam", targets=ReST(281))                      # ShapleyCAM's target
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor, nn

__all__ = ["Combination", "ReST", "Scores", "affine_weights", "resolve", "score_rows", "is_score_target"]


class Combination:
    """A linear combination of logits ``sum_c w_c y_c`` (multi-label: several classes at once).

    ``weights``: a dict ``{class: weight}`` or a vector of C weights (a multi-hot label vector).
    LIFT-CAM's completeness holds for it: ``sum_k alpha_k = sum_c w_c (F_c(A) - F_c(0))``.

        >>> Combination({281: 1.0, 285: 1.0})(logits)    # logits (..., C) -> (...)
    """

    linear = True

    def __init__(self, weights):
        if isinstance(weights, Mapping):
            if not weights:
                raise ValueError("Combination needs at least one class: {class: weight, ...}")
            for c in weights:
                if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
                    raise TypeError(f"Combination's classes must be ints, got {c!r}")
            self.weights = {int(c): float(w) for c, w in weights.items()}
        else:
            w = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
            if w.dim() != 1 or w.numel() == 0:
                raise ValueError(f"Combination takes {{class: weight}} or a vector of C weights, got shape {tuple(w.shape)}")
            self.weights = {int(c): float(w[c]) for c in w.nonzero().flatten().tolist()}
            self.size = w.numel()
        if not all(np.isfinite(v) for v in self.weights.values()):
            raise ValueError(f"Combination's weights must be finite, got {self.weights}")

    def __repr__(self):
        return f"Combination({self.weights})"

    def vector(self, num_classes: int, like: Tensor | None = None) -> Tensor:
        """The weights as a (C,) vector; a ValueError for a class outside ``0..C-1``."""
        size = getattr(self, "size", None)
        if size is not None and size != num_classes:
            raise ValueError(f"Combination has {size} weights, the model {num_classes} classes; give one weight per class")
        bad = [c for c in self.weights if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"target class {bad[0]} of {self!r} is out of range: the model has {num_classes} classes "
                             f"(0..{num_classes - 1})")
        w = torch.zeros(num_classes, dtype=torch.float64)
        for c, v in self.weights.items():
            w[c] = v
        return w if like is None else w.to(like.device, like.dtype)

    def __call__(self, logits: Tensor) -> Tensor:
        return logits @ self.vector(logits.shape[-1], logits)


class ReST:
    """ShapleyCAM's ReST target (Cai, 2025, arXiv 2501.06261): ``y_c - CE(y, c) = 2 y_c - logsumexp(y)``.

    Not linear in the logits: the methods that need a linear target (LIFT-CAM, LRP-CAM, CAM)
    refuse it; the gradient and perturbation methods take it. Equals pytorch-grad-cam's
    ``ClassifierOutputReST(c)``.

        >>> liftcam.explain(s, x, method="grad-cam", targets=ReST(281))
    """

    linear = False

    def __init__(self, category: int):
        if isinstance(category, (bool, np.bool_)) or not isinstance(category, (int, np.integer)):
            raise TypeError(f"ReST takes a class index (int), got {category!r}")
        self.category = int(category)

    def __repr__(self):
        return f"ReST({self.category})"

    def __call__(self, logits: Tensor) -> Tensor:
        return 2 * logits[..., self.category] - torch.logsumexp(logits, -1)


def affine_weights(fn, at: Tensor, *, rtol: float = 1e-6) -> tuple[Tensor, float] | None:
    """``(w (C,), b)`` when ``fn`` (logits (C,) -> scalar) is affine, ``fn(y) = w . y + b``; else None.

    ``w`` is the gradient at ``at`` (C,); the function is taken as affine when it matches ``w . y + b``
    at the origin, at ``at`` and at two seeded random points of the same scale, within ``rtol`` of
    the size of the terms (in float64). A function that is not differentiable in torch raises.
    """
    y = at.detach().to(torch.float64).clone().requires_grad_(True)
    with torch.enable_grad():
        value = fn(y)
        (w,) = torch.autograd.grad(value, y, allow_unused=True)
    if w is None:
        w = torch.zeros_like(y)
    g = torch.Generator().manual_seed(0)
    scale = float(at.detach().abs().max()) + 1.0
    with torch.no_grad():
        b = float(fn(torch.zeros_like(y)))
        for p in [y.detach(), torch.randn(y.shape, generator=g, dtype=y.dtype) * scale,
                  torch.randn(y.shape, generator=g, dtype=y.dtype) * 3 * scale]:
            got, want = float(fn(p)), float(w @ p) + b
            if not abs(got - want) <= rtol * (float((w * p).abs().sum()) + abs(b) + abs(got)) + 1e-12:
                return None
    return w.detach(), b


def is_score_target(targets) -> bool:
    """Whether ``targets`` holds anything beyond class indices: a callable, a combination, a (B, C) weight matrix."""
    def one(t):
        return callable(t) or isinstance(t, Mapping)
    if one(targets):
        return True
    if isinstance(targets, (list, tuple)):
        return any(one(t) for t in targets)
    if isinstance(targets, (Tensor, np.ndarray)):
        return targets.ndim == 2 and not (targets.dtype == torch.bool or _integer_dtype(targets))
    return False


def _integer_dtype(t) -> bool:
    return (t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64) if isinstance(t, Tensor)
            else np.issubdtype(t.dtype, np.integer))


@dataclass
class Scores:
    """Targets of a batch that are not all single classes, resolved against its logits (B, C).

    The head is widened by one output column per distinct target that is not a class (affine ones
    as one ``nn.Linear``, so LIFT-CAM and LRP-CAM propagate through them exactly; the others as one
    module calling them row by row); each image's target is then the index of its column, which is
    what every coefficient rule reads (``batch.targets``).
    """

    targets: list          # per image: the class (int) or the target object given
    classes: Tensor        # (B,) long: the class, -1 where the target is not one class
    index: Tensor          # (B,) long: the column of each image's score in the widened logits
    weights: Tensor        # (J, C) the affine targets' weights (columns C .. C + J - 1)
    bias: Tensor           # (J,)
    functions: list        # the other targets (columns C + J ...)

    @property
    def linear(self) -> bool:
        """Every target is a class or an affine function of the logits."""
        return not self.functions

    def head(self, head: nn.Module) -> fx.GraphModule:
        """``head`` (an fx graph: maps -> logits (N, C)) widened to ``[logits, targets' scores]`` (N, C + J + J')."""
        g = fx.Graph()
        out = g.graph_copy(head.graph, {})
        root = {n.target: _fetch(head, n.target) for n in g.nodes if n.op in ("get_attr", "call_module")}
        parts = [out]
        if len(self.weights):
            lin = nn.Linear(self.weights.shape[1], len(self.weights)).requires_grad_(False)
            lin.weight.copy_(self.weights)
            lin.bias.copy_(self.bias)
            root["target_weights"] = lin.to(self.weights.device, self.weights.dtype)
            parts.append(g.call_module("target_weights", (out,)))
        if self.functions:
            root["target_functions"] = _Functions(self.functions)
            parts.append(g.call_module("target_functions", (out,)))
        g.output(g.call_function(torch.cat, (parts,), {"dim": 1}))
        return fx.GraphModule(root, g, class_name="ScoredHead")

    def model(self, s):
        """The :class:`~liftcam.models.SplitModel` ``s`` with the widened head (sharing the body)."""
        from .models import SplitModel

        return SplitModel(s.body, self.head(s.head), layer=s.layer, preprocess=s.preprocess,
                          categories=s.categories, name=s.name)


def _fetch(module: nn.Module, target: str):
    for atom in target.split("."):
        module = getattr(module, atom)
    return module


def score_rows(fn, logits: Tensor) -> Tensor:
    """``fn`` (one image's logits (C,) -> a scalar) on each row of ``logits`` (N, C) -> (N,)."""
    try:
        out = torch.func.vmap(fn)(logits)
    except Exception:  # a function vmap cannot batch (.item(), data-dependent shapes): row by row
        out = torch.stack([torch.as_tensor(fn(r)).reshape(()) for r in logits]) if len(logits) else logits[:, 0]
    return out.reshape(len(logits)).to(logits.dtype)


class _Functions(nn.Module):
    """Logits (N, C) -> (N, J): each target function on each row."""

    def __init__(self, functions):
        super().__init__()
        self.functions = list(functions)

    def forward(self, y: Tensor) -> Tensor:
        return torch.stack([score_rows(f, y) for f in self.functions], 1)


def resolve(targets, logits: Tensor, as_class) -> Scores:
    """:class:`Scores` of ``targets`` for ``logits`` (B, C); ``as_class(entry)`` checks a class index.

    ``targets``: one target for every image (a callable over one image's logits (C,), a
    :class:`Combination`, a dict ``{class: weight}``), a sequence of B targets (each a class index
    or one of those), or a (B, C) weight matrix (one :class:`Combination` per image). A callable
    that is affine in the logits becomes a weight row (one with weight 1 on one class and no
    offset: that class); a callable must return one finite score per image.
    """
    B, C = logits.shape
    if isinstance(targets, (Tensor, np.ndarray)) and targets.ndim == 2:
        if tuple(targets.shape) != (B, C):
            raise ValueError(f"a weight matrix of targets must be (images, classes) = ({B}, {C}), "
                             f"got shape {tuple(targets.shape)}")
        per = [Combination(np.asarray(row.cpu() if isinstance(row, Tensor) else row)) for row in targets]
    elif isinstance(targets, (list, tuple)):
        if len(targets) != B:
            raise ValueError(f"targets must be one target per image ({B}) or one for all, got {len(targets)}")
        per = list(targets)
    else:
        per = [targets] * B
    classes = torch.full((B,), -1, dtype=torch.long)
    index = torch.zeros(B, dtype=torch.long)
    rows, functions, seen = [], [], {}               # rows: (w (C,), b); seen: id(target) -> column
    for i, t in enumerate(per):
        if isinstance(t, Mapping):
            t = per[i] = Combination(t)
        if not callable(t):
            classes[i] = index[i] = int(as_class(t))
            continue
        if id(t) in seen:
            kind, j = seen[id(t)]
        else:
            kind, j = _column(t, logits[i], C, rows, functions)
            seen[id(t)] = kind, j
        if kind == "class":
            classes[i] = index[i] = j
        else:
            index[i] = C + j if kind == "affine" else -1 - j       # functions: placed after the affine rows below
    J = len(rows)
    index = torch.where(index < 0, C + J + (-1 - index), index)
    dtype = logits.dtype
    weights = torch.stack([w for w, _ in rows]).to(logits.device, dtype) if rows else torch.zeros(0, C, dtype=dtype)
    bias = torch.tensor([b for _, b in rows], dtype=dtype, device=logits.device)
    return Scores(per, classes.to(logits.device), index.to(logits.device), weights, bias, functions)


def _column(t, y: Tensor, C: int, rows: list, functions: list) -> tuple[str, int]:
    """Where target ``t`` goes: ("class", c), ("affine", row j) or ("function", j); checks its value on ``y`` (C,)."""
    if isinstance(t, Combination):
        return _place(t.vector(C), 0.0, rows)
    try:
        with torch.no_grad():
            v = t(y.detach())
    except Exception as e:
        raise TypeError(f"the target {t!r} failed on one image's logits (shape ({C},)): {type(e).__name__}: {e}; "
                        "a target is a callable over one image's logits (C,) that returns a scalar tensor") from None
    if not isinstance(v, Tensor) or v.numel() != 1:
        what = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise ValueError(f"the target {t!r} returns {what} for one image's logits ({C},), not one score; "
                         "a target maps the logits (C,) to a scalar (e.g. ClassifierOutputTarget(c))")
    if not torch.isfinite(v).all():
        raise ValueError(f"the target {t!r} is not finite ({v.item()}) on the logits of an image")
    affine = None if getattr(t, "linear", None) is False else _affine(t, y)
    if affine is None:
        functions.append(t)
        return "function", len(functions) - 1
    return _place(*affine, rows)


def _place(w: Tensor, b: float, rows: list) -> tuple[str, int]:
    """An affine target ``w . y + b``: one class when w is one-hot with weight 1 and b = 0, else a weight row."""
    hot = (w != 0).nonzero().flatten()
    if b == 0 and len(hot) == 1 and w[hot[0]] == 1:
        return "class", int(hot[0])
    rows.append((w, b))
    return "affine", len(rows) - 1


def _affine(t, y: Tensor):
    try:
        return affine_weights(t, y)
    except Exception as e:
        raise TypeError(f"the target {t!r} is not a differentiable torch function of the logits ({type(e).__name__}: "
                        f"{e}); gradient-based CAMs need one") from None
