"""What every CAM shares: validated inputs, a coefficient rule, and the map it makes.

A CAM for class c is ``L^c = ReLU(sum_k alpha_k A_k)`` over the K activation maps ``A_k`` of one
layer (docs/paper.md, section 1). A method is only its *coefficient rule*: a function that takes a
:class:`Batch` (images, maps, targets, logits of one batch at the split) and returns alpha
(B, K). :func:`explain` does the rest once: the forward pass, the target classes, the map
(ReLU, bilinear upsampling to the input size, min-max to [0, 1] per image).

    >>> import liftcam
    >>> s = liftcam.models.load("efficientnet_lite0")
    >>> e = liftcam.explain(s, images, method="lift-cam")
    >>> e.maps.shape, e.coefficients.shape          # (B, 224, 224), (B, 320)
"""
from __future__ import annotations

import contextlib
import inspect
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import targets as _targets
from .models import SplitError, SplitModel, logits_disagree, split

__all__ = ["Batch", "Explanation", "Method", "REGISTRY", "RULES", "COSTS", "HOW_OPTIONS", "register", "lookup", "explain",
           "explain_batch", "explain_targets", "TARGET_KINDS", "cam_maps", "minmax", "evaluating", "chunks",
           "check_images", "resolve_targets", "forward", "forward_batch_size", "FORWARD_BATCH", "coefficients", "numpy_seed"]


@dataclass
class Batch:
    """What a coefficient rule sees: one batch of images at the split (all on the model's device)."""

    model: SplitModel
    images: Tensor       # (B, 3, H, W) in [0, 1] pixel space
    activations: Tensor  # (B, K, h, w), detached
    targets: Tensor      # (B,) long
    logits: Tensor       # (B, C) = head(activations), detached

    @property
    def head(self) -> nn.Module:
        return self.model.head

    def scores(self, logits: Tensor, targets: Tensor | None = None) -> Tensor:
        """The explained score of each row: the target's logit. (N, C) -> (N,)."""
        t = self.targets if targets is None else targets
        return logits.gather(1, t.view(-1, 1)).squeeze(1)


@dataclass
class Explanation:
    """The result of :func:`explain` for B images."""

    maps: Tensor          # (B, H, W) in [0, 1], at the input resolution
    raw: Tensor           # (B, h, w) sum_k alpha_k A_k, before ReLU and upsampling
    coefficients: Tensor  # (B, K) alpha
    targets: Tensor       # (B,) long, the explained classes
    logits: Tensor        # (B, C)
    method: str = ""
    extras: dict = field(default_factory=dict)  # what a method adds (SHAP-CAM: phi_0, ...)
    layer: str = ""                             # where the model was split
    options: dict = field(default_factory=dict)  # the rule's options that decide the result, defaults included

    def __repr__(self):
        t = self.targets.tolist()
        shown = t if len(t) <= 6 else [*t[:6], "..."]
        return (f"Explanation(method={self.method!r}, layer={self.layer!r}, images={len(t)}, "
                f"maps={tuple(self.maps.shape[1:])}, K={self.coefficients.shape[1]}, targets={shown}, "
                f"options={self.options})")


Rule = Callable[..., "Tensor | tuple[Tensor, dict]"]
#: Options of every rule that change how a result is computed, not the result (chunk-size parity is
#: tested for every method): they are left out of cache keys and of ``Explanation.options``.
HOW_OPTIONS = frozenset({"batch_size", "progress"})
COSTS = {"head": "one pass through the head",
         "per-map": "one pass per activation map (through the head, or the whole model)",
         "sampling": "one head evaluation per sampled coalition"}
#: What a rule can explain (``register(..., targets=...)``): the default is one class's logit only (a rule
#: that reads other classes' logits, a softmax, cannot take a widened head), the others also take
#: the targets of :mod:`liftcam.targets` and callables over the logits.
TARGET_KINDS = {"class": "one class's logit only",
                "linear": "a class, or a linear combination of the logits (liftcam.targets.Combination)",
                "any": "a class, or any function of the logits (a callable over one image's logits (C,))"}
#: ``targets`` of the methods registered before that option existed, kept here rather than at their
#: ``@register`` lines: the cache key of a rule hashes its source, decorator included, so an edit there would
#: recompute every cached explanation. A new method declares its own at ``register(..., targets=...)``.
_TARGETS_OF = {"lift-cam": "linear", "lrp-cam": "linear", "cam": "linear", "grad-cam": "any", "grad-cam++": "any",
               "xgrad-cam": "any", "ablation-cam": "any", "lime-cam": "any", "shap-cam": "any"}


@dataclass(frozen=True)
class Method:
    """A registered CAM method: its rule and its traits, declared once where the rule is defined."""

    name: str                  # what explain(method=...) takes
    rule: Rule                 # fn(batch, **options) -> alpha (B, K) or (alpha, extras)
    label: str                 # the published name, for titles and legends
    colour: str                # its colour in every figure
    cost: str                  # a key of COSTS
    random: bool               # the result depends on a seed option
    rank: int                  # position in METHODS: the paper's method first, then its approximations, then baselines
    options: dict              # keyword options of the rule with their defaults
    targets: str = "class"     # a key of TARGET_KINDS: what the rule can explain besides one class

    def key_options(self, options: dict) -> dict:
        """``options`` completed with the defaults, without the ones that do not change the result."""
        return {k: v for k, v in {**self.options, **options}.items() if k not in HOW_OPTIONS}


#: name -> :class:`Method`, for every registered method
REGISTRY: dict[str, Method] = {}
#: name -> rule, for every registered method (the registry's rules)
RULES: dict[str, Rule] = {}


def register(name: str, *, label: str, colour: str, cost: str, random: bool = False, rank: int = 100,
             targets: str | None = None):
    """Decorator: make ``fn(batch, **options) -> alpha (B, K)`` the rule of method ``name``.

    Declares the method's traits once: ``label`` (its published name), ``colour``, ``cost`` (a key
    of :data:`COSTS`), ``random`` (it takes a ``seed``), ``rank`` (its place in
    ``liftcam.METHODS``), ``targets`` (a key of :data:`TARGET_KINDS`, default ``"class"``: whether the rule can explain
    a linear combination of logits, or any function of them, besides one class; a rule that reads
    ``batch.targets`` only through ``batch.scores`` or by indexing the head's output can take
    ``"any"``). The options are read from the rule's keyword-only parameters. A rule
    may also return ``(alpha, extras)``; ``extras`` (a dict) lands in ``Explanation.extras``.
    A name that is already taken is refused.

        >>> @register("my-cam", label="My-CAM", colour="#777777", cost="head")
        ... def my_cam(batch):
        ...     return head_gradients(batch)[0].amax((2, 3))
    """
    if name in REGISTRY:
        raise ValueError(f"method {name!r} is already registered (by {REGISTRY[name].rule.__module__}); "
                         "choose another name")
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")
    targets = targets or _TARGETS_OF.get(name, "class")
    if targets not in TARGET_KINDS:
        raise ValueError(f"targets must be one of {', '.join(TARGET_KINDS)}, got {targets!r}")

    def deco(fn):
        params = inspect.signature(fn).parameters.values()
        options = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        if random and "seed" not in options:
            raise ValueError(f"method {name!r} is declared random but its rule takes no seed option")
        REGISTRY[name] = Method(name, fn, label, colour, cost, random, rank, options, targets)
        RULES.clear()
        RULES.update((m.name, m.rule) for m in sorted(REGISTRY.values(), key=lambda m: (m.rank, m.name)))
        fn.method_name = name
        return fn
    return deco


def lookup(name: str) -> Method:
    """The registered :class:`Method` called ``name``; a ValueError lists the valid names."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(RULES)}")
    return REGISTRY[name]


def cam_maps(activations: Tensor, coefficients: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(A (B, K, h, w), alpha (B, K)) -> (maps (B, H, W) in [0, 1], raw (B, h, w)).

    ReLU of the weighted sum, bilinear upsampling (align_corners=False) to ``size``, min-max
    per image. A map that is constant after the ReLU (a 1 x 1 layer, an all-negative sum) becomes
    zeros, never NaN and never the upsampling's rounding noise stretched to [0, 1].
    """
    raw = torch.einsum("bk,bkhw->bhw", coefficients.to(activations.dtype), activations)
    pos = raw.clamp(min=0)
    up = F.interpolate(pos[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    flat = pos.flatten(1)
    constant = (flat.amax(1) - flat.amin(1)) <= _noise(flat)                     # (B,)
    return torch.where(constant.view(-1, 1, 1), torch.zeros_like(up), minmax(up)), raw


def _noise(flat: Tensor) -> Tensor:
    """The float rounding noise of values of this size (B,): a few ulps of the largest magnitude."""
    return 8 * torch.finfo(flat.dtype).eps * flat.abs().amax(1)


def minmax(maps: Tensor) -> Tensor:
    """Min-max each map (B, ...) to [0, 1]; a map whose range is within rounding noise of zero
    (a constant map, or one that upsampling left a few ulps uneven) becomes zeros."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    flat_span = hi - lo
    keep = flat_span > _noise(flat)
    span = torch.where(keep, flat_span, torch.ones_like(flat_span)).view(-1, *([1] * (maps.dim() - 1)))
    out = (maps - lo.view_as(span)) / span
    return torch.where(keep.view_as(span), out, torch.zeros_like(out))


@contextlib.contextmanager
def numpy_seed(seed: int):
    """Seed numpy's global RNG (shap and sklearn draw from it); restore the caller's state afterwards."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Put every submodule in eval mode; restore each one's flag afterwards, also on error."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for m, _ in flags:
            m.training = False                          # also where a train() override does not recurse
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def chunks(n: int, size: int | None):
    """Slices that cover range(n) in steps of ``size`` (all at once when size is None)."""
    if size is None:
        size = max(n, 1)
    elif isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"batch_size (chunk size) must be a positive integer or None (all at once), got {size!r}")
    size = int(size)
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def check_images(images) -> Tensor:
    """Images must be a float tensor (B, 3, H, W) in [0, 1] pixel space; else a clear error."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, 3, H, W) in [0, 1], got {type(images).__name__}; "
                        "use model.preprocess(pil_image) to make one")
    if not images.is_floating_point():
        raise TypeError(f"images must be floats in [0, 1], got dtype {images.dtype}; "
                        "divide uint8 images by 255 (model.preprocess does this)")
    if images.dim() != 4:
        fix = " (add the batch dimension: images[None])" if images.dim() == 3 else ""
        raise ValueError(f"images must be 4-D (B, 3, H, W), got shape {tuple(images.shape)}{fix}")
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 (RGB) channels, got shape {tuple(images.shape)}; "
                         "convert grayscale or RGBA pictures with liftcam.data.load_image or PIL's .convert('RGB')")
    if images.numel() == 0:
        raise ValueError(f"images is empty: shape {tuple(images.shape)}")
    lo, hi = images.min().item(), images.max().item()
    if lo < -1e-6 or hi > 1 + 1e-6 or images.isnan().any():
        raise ValueError(f"images must be in [0, 1] pixel space (normalisation happens inside the model), "
                         f"got values in [{lo:.3g}, {hi:.3g}]; pass unnormalised images")
    return images


def resolve_targets(targets, logits: Tensor | None = None, *, n: int | None = None,
                    num_classes: int | None = None, callables: bool = False):
    """The explained classes as a (B,) long tensor: the one target check of the package.

    ``targets``: None -> each row's predicted class (needs ``logits`` (B, C)); an int (Python or
    numpy) -> that class for every image; a sequence, numpy array or tensor of ints -> one class per
    image. Strings, floats and bools are refused (a ``TypeError`` that names the fix), as are a
    wrong length and a class outside ``0..C-1`` (``ValueError``). ``n`` and ``num_classes`` stand
    for ``logits``' shape where no logits exist yet (the metrics); without a class count the range
    is checked only for negatives. :func:`explain`, the metrics and :func:`liftcam.exact_shapley`
    all call this, so the same input gets the same answer and the same error everywhere.

    ``callables=True`` (what :func:`explain` passes) also takes targets beyond one class: a
    callable over one image's logits (C,) returning a scalar (pytorch-grad-cam's
    ``ClassifierOutputTarget``, ``ClassifierOutputReST``, ...; :class:`liftcam.targets.ReST`), a
    linear combination of classes (:class:`liftcam.targets.Combination`, a dict ``{class:
    weight}``, or a (B, C) weight matrix: multi-label), one for all images or one per image mixed
    with class indices. Unless every one of them is a class (an affine callable with weight 1 on
    one class, such as ``ClassifierOutputTarget(c)``, is that class), the result is then a
    :class:`liftcam.targets.Scores` (it needs ``logits``). Without ``callables`` such targets are
    refused with a ``TypeError`` that says where they are accepted.
    """
    if isinstance(targets, (list, tuple)) and len(targets) == 0:
        raise ValueError("targets is an empty sequence: give one class per image, one class for all images "
                         "(an int), or None for each image's predicted class")
    if _targets.is_score_target(targets):
        if not callables:
            raise TypeError(f"this function takes class indices only, got {targets!r}: targets that are functions "
                            "or combinations of the logits are taken by liftcam.explain and liftcam.compat; "
                            "give one class index per image here")
        if logits is None:
            raise TypeError("targets beyond one class need the model's logits to be checked")
        scores = _targets.resolve(targets, logits, lambda c: resolve_targets(c, logits[:1])[0])
        return scores.classes if scores.index.equal(scores.classes) else scores
    if logits is not None:
        n, num_classes = logits.shape
    device = logits.device if logits is not None else None
    if targets is None:
        if logits is None:
            raise TypeError("targets must be given (an int or one class index per image); None means "
                            "'the predicted class', which needs the model's logits")
        return logits.argmax(1)
    if isinstance(targets, (str, bytes)):
        raise TypeError(f"targets must be class indices (ints), got the string {targets!r}; look the index up "
                        "in model.categories, e.g. model.categories.index(name)")
    if isinstance(targets, (bool, np.bool_)):
        raise TypeError(f"targets must be None, an int or a sequence of ints, got the bool {targets!r}")
    if isinstance(targets, float):
        raise TypeError(f"targets must be integer class indices, got the float {targets!r}; use int(...)")
    try:
        t = torch.as_tensor(np.asarray(targets) if isinstance(targets, (list, tuple)) else targets)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"targets must be None, an int or a sequence of ints, got {type(targets).__name__} "
                        f"({e})") from None
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex() or not _is_integer(t):
        raise TypeError(f"targets must be integer class indices, got dtype {t.dtype}; use .long() on whole numbers")
    if device is not None:
        t = t.to(device)
    if t.dim() == 0:
        t = t.expand(n) if n is not None else t.view(1)
    if t.dim() != 1 or (n is not None and t.shape[0] != n):
        raise ValueError(f"targets must be None, an int or one class per image ({n}), got shape {tuple(t.shape)}")
    t = t.long()
    bad = (t < 0) | (t >= num_classes) if num_classes is not None else (t < 0)
    if bad.any():
        span = f"the model has {num_classes} classes (0..{num_classes - 1})" if num_classes is not None \
            else "class indices start at 0"
        raise ValueError(f"target class {t[bad][0].item()} is out of range: {span}; negative indices are not "
                         "wrapped around")
    return t


def _is_integer(t: Tensor) -> bool:
    return t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def explain(model, images: Tensor, method: str = "lift-cam", targets=None, *, layer: str | None = None,
            **options) -> Explanation:
    """Explain ``images`` (B, 3, H, W) in [0, 1] with one CAM ``method``.

    ``model`` is a :class:`~liftcam.models.SplitModel` (or any ``nn.Module`` together with
    ``layer=``). ``targets``: None explains each image's predicted class; an int applies to all
    images; a sequence gives one class per image; beyond classes, a callable over one image's
    logits, a linear combination of classes (multi-label) or one of :mod:`liftcam.targets`, for
    all images or per image (:func:`resolve_targets`, :func:`explain_targets`). ``options`` go to the method's rule (see
    ``liftcam.methods``). The model's train/eval flags are restored afterwards.

    With a module and ``layer=``, the split is made once and reused; every call compares its
    logits with the module's own ``net(images)`` and splits again when they differ (weights edited
    through ``.data``, changed settings), so the result always explains the network as it is now; a
    :class:`~liftcam.models.SplitError` says when even a fresh split cannot reproduce it.
    """
    lookup(method)                                                      # unknown: a ValueError listing them
    net = None
    if not isinstance(model, SplitModel):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a liftcam SplitModel or a torch.nn.Module, got {type(model).__name__}")
        if layer is None:
            raise ValueError("explain needs a SplitModel (liftcam.models.split / load) or a module with layer=...")
        net, model = model, _split_once(model, layer)
    elif layer is not None and str(layer) != model.layer:
        raise ValueError(f"the SplitModel is cut at {model.layer!r}, not {layer!r}; split the model again at {layer!r}")
    A, logits = forward(model, images)                                # checks the images once
    if net is not None and _disagrees(net, images, logits) is not None:
        model = _split_once(net, layer, fresh=True)                   # the network changed since it was split
        A, logits = forward(model, images)
        what = _disagrees(net, images, logits)
        if what is not None:
            raise SplitError(f"split(net, {layer!r}) does not reproduce net(images): head(body(x)) {what}, also "
                             "when split again. Does the network change itself during forward, or depend on "
                             "anything but its input? Split it with liftcam.models.split and explain that")
    images = images.to(A.device, A.dtype)
    with evaluating(model):
        return explain_targets(model, images, A, logits, targets, method, **options)


def explain_targets(model: SplitModel, images: Tensor, A: Tensor, logits: Tensor, targets, method: str,
                    **options) -> Explanation:
    """:func:`explain_batch` for ``targets`` of any kind (:func:`resolve_targets` with ``callables``), on
    images whose maps A (B, K, h, w) and logits (B, C) are known.

    Class targets go straight to the rule. Others are checked against the method's
    :data:`TARGET_KINDS` and explained through the head widened by their scores
    (:class:`liftcam.targets.Scores`); the result's ``targets`` is then -1 where an image's target is
    not one class, ``logits`` the model's (B, C), and ``extras`` gains ``targets`` (the target of
    each image) and ``scores`` (B,) (the explained score of each image).
    """
    t = resolve_targets(targets, logits, callables=True)
    if isinstance(t, Tensor):
        return explain_batch(Batch(model, images, A, t, logits), method, **options)
    _check_target_kind(lookup(method), t)
    scored = t.model(model)
    with torch.no_grad():
        wide = scored.head(A)                                          # (B, C + J)
    e = explain_batch(Batch(scored, images, A, t.index, wide), method, **options)
    e.extras.update(targets=t.targets, scores=wide.gather(1, t.index.view(-1, 1)).squeeze(1))
    e.targets, e.logits = t.classes, logits
    return e


def _check_target_kind(m: Method, t) -> None:
    """A ValueError when method ``m`` cannot explain the targets ``t`` (a :class:`liftcam.targets.Scores`)."""
    takes = [k for k, v in REGISTRY.items() if v.targets == "any"]
    other = next((x for x in t.targets if not isinstance(x, (int, np.integer))), None)
    if m.targets == "class":
        raise ValueError(f"method {m.name!r} explains one class's logit only ({m.label}'s rule reads the logits of "
                         f"the other classes or the class index itself), not {other!r}: give class indices "
                         f"(or ClassifierOutputTarget(c)), or use a method that takes any target: {', '.join(takes)}")
    if m.targets == "linear" and not t.linear:
        bad = t.functions[0]
        raise ValueError(
            f"method {m.name!r} needs a target that is linear in the logits: {m.label} propagates one logit, or a "
            f"linear combination of logits, through the head (LIFT-CAM's completeness, sum_k alpha_k = "
            f"F(A) - F(0), is over such a score), and {bad!r} is not linear. Give a class index or a "
            f"liftcam.targets.Combination, or use a method that takes any target: {', '.join(takes)}")


_SPLITS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _disagrees(net: nn.Module, images: Tensor, logits: Tensor) -> str | None:
    """None when ``net(images)`` (eval mode, flags restored) equals the split's ``logits``, else what differs."""
    p = next((t for t in [*net.parameters(), *net.buffers()] if t.is_floating_point()), None)
    x = images.to(logits.device, p.dtype if p is not None else logits.dtype)
    with evaluating(net), torch.no_grad():
        want = net(x)
    return logits_disagree(logits, want)


def _split_state(net: nn.Module, layer) -> tuple:
    """What :func:`_split_once` compares: the layer, every module's type and plain settings, and each parameter's
    and buffer's identity, storage, dtype, device, shape and version counter."""
    from .cache import module_settings

    return (layer, tuple((n, type(m), module_settings(m)) for n, m in net.named_modules()),
            tuple((id(t), t.data_ptr(), t.dtype, t.device, tuple(t.shape), t._version)
                  for t in [*net.parameters(), *net.buffers()]))


def _split_once(net: nn.Module, layer: str, fresh: bool = False) -> SplitModel:
    """``split(net, layer)``, reused while the network looks unchanged (:func:`_split_state`); ``fresh``
    splits again. :func:`explain` also compares every call's logits with ``net(images)`` and splits
    again when they differ (a weight edited through ``.data`` keeps its version counter)."""
    state = _split_state(net, layer)
    got = _SPLITS.get(net)
    if not fresh and got is not None and got[0] == state:
        return got[1]
    s = split(net, layer)
    _SPLITS[net] = (state, s)                                          # one split per network: it is a copy
    return s


#: Images per body pass of :func:`forward` when ``batch_size`` is None, by device type: enough to keep a
#: GPU busy, small enough that VGG16's first activations (about 25 MB an image at 224 x 224) fit.
FORWARD_BATCH = {"cuda": 128, "mps": 64, "cpu": 32}


def forward_batch_size(device) -> int:
    """The default images per pass of :func:`forward` on ``device`` (:data:`FORWARD_BATCH`; 32 elsewhere)."""
    return FORWARD_BATCH.get(torch.device(device).type, 32)


def forward(model: SplitModel, images: Tensor, *, batch_size: int | None = None) -> tuple[Tensor, Tensor]:
    """(A (B, K, h, w), logits (B, C)) of checked images, in eval mode and without gradients.

    The images go through the body and head ``batch_size`` at a time (None: :func:`forward_batch_size`
    of the model's device), so the memory of the pass is bounded by the chunk, not by B; only A and the
    logits of all B images are kept. Images on the CPU are moved to the device one chunk at a time.
    The images are cast to the model's device and dtype (float64 images for a float32 model, float32
    for a half or bfloat16 one). Each chunk goes through :meth:`~liftcam.models.SplitModel.verify`, which checks the split
    once (every chunk where the forward pass changes a view in place). Errors name the problem: images too small for the
    network, a layer whose output is not (B, K, h, w) maps, a model that does not return logits.
    """
    check_images(images)
    size = forward_batch_size(model.device) if batch_size is None else batch_size
    parts = [_forward_chunk(model, images[c].to(model.device, model.dtype)) for c in chunks(len(images), size)]
    if len(parts) == 1:
        return parts[0]
    return torch.cat([a for a, _ in parts]), torch.cat([lg for _, lg in parts])


def _forward_chunk(model: SplitModel, images: Tensor) -> tuple[Tensor, Tensor]:
    """(A, logits) of one chunk of images already on the model's device, the split verified on it."""
    with evaluating(model), torch.no_grad():
        try:
            A = model.body(images)                                       # (B, K, h, w)
        except RuntimeError as e:
            if "too small" in str(e) or "Kernel size can't be greater" in str(e):
                raise ValueError(f"images of {tuple(images.shape[-2:])} pixels are too small for {model.name} up "
                                 f"to layer {model.layer!r} ({e}); resize them to the network's input size "
                                 "(model.preprocess does)") from None
            raise
        if not isinstance(A, Tensor) or A.dim() != 4:
            shape = tuple(A.shape) if isinstance(A, Tensor) else type(A).__name__
            raise ValueError(f"layer {model.layer!r} outputs {shape}, not activation maps (B, K, h, w): a CAM needs "
                             "a convolutional layer; split the model at a conv block (e.g. the last one before "
                             "pooling), not at the classifier")
        try:
            logits = model.head(A)                                        # (B, C)
        except RuntimeError as e:
            if not _is_shape_mismatch(e):
                raise
            H, W = images.shape[-2:]
            raise ValueError(f"images of {W} x {H} pixels (width x height) give maps {tuple(A.shape[-2:])} at layer "
                             f"{model.layer!r}, but the head of {model.name} expects maps of the size the network was "
                             f"built for ({str(e).splitlines()[0][:200]}); resize the images to the network's input "
                             "size (model.preprocess does)") from None
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"{model.name} returns {shape}, not logits (B, C); wrap it in a module whose "
                             "forward returns the class scores (e.g. the first element of its tuple)")
        model.verify(images, A=A, logits=logits)                         # returns at once once verified,
    return A, logits                                                     # unless the split checks every call


#: what torch says when a layer gets a tensor of another size than it was built for (Linear, matmul, view)
_SHAPE_MISMATCH = ("shapes cannot be multiplied", "size mismatch", "is invalid for input of size")


def _is_shape_mismatch(e: RuntimeError) -> bool:
    """Whether ``e`` is torch refusing a tensor of the wrong size (not any other failure of the head)."""
    return any(m in str(e) for m in _SHAPE_MISMATCH)


def coefficients(batch: Batch, method: str, **options) -> tuple[Tensor, dict]:
    """Run ``method``'s rule on a batch: ``(alpha (B, K) detached, extras dict)``, whatever the rule returns.

    Options the rule does not take are refused with the list of those it takes.
    """
    m = lookup(method)
    unknown = sorted(set(options) - set(m.options))
    if unknown:
        takes = ", ".join(f"{k}={v!r}" for k, v in m.options.items()) or "no options"
        raise TypeError(f"method {method!r} does not take the option(s) {', '.join(unknown)}; it takes {takes}")
    with evaluating(batch.model):
        out = m.rule(batch, **options)
    alpha, extras = out if isinstance(out, tuple) else (out, {})
    bad = ~torch.isfinite(alpha).all(1) if alpha.dim() == 2 else ~torch.isfinite(alpha).flatten().all().view(1)
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(f"method {method!r} gave NaN or infinite coefficients for image(s) {rows[:10]}"
                         f"{' ...' if len(rows) > 10 else ''} (target(s) {batch.targets[bad][:10].tolist()}, "
                         f"logit(s) {batch.scores(batch.logits)[bad][:10].tolist()}): {_nan_hint(method, options)}")
    return alpha.detach(), extras


def _nan_hint(method: str, options: dict) -> str:
    """Why a rule's coefficients can be undefined, and what to do instead."""
    hints = {"ablation-cam": "Ablation-CAM divides by the target logit y^c, and it is 0 here; explain another "
                             "class or use a method without that division (lift-cam, grad-cam)",
             "lrp-cam": f"LRP's epsilon rule divides by z + epsilon sign(z) (epsilon={options.get('epsilon', 1e-9)!r}), "
                        "0 where a pre-activation is 0; use a positive epsilon (the default 1e-9)"}
    return hints.get(method, "the model's logits or activations hold NaN / inf, or the rule divides by zero "
                             "on this input")


def explain_batch(batch: Batch, method: str, **options) -> Explanation:
    """:func:`explain` for a batch whose maps and logits are already computed (no forward pass)."""
    alpha, extras = coefficients(batch, method, **options)
    maps, raw = cam_maps(batch.activations, alpha, batch.images.shape[-2:])
    return Explanation(maps, raw, alpha, batch.targets, batch.logits, method, extras, batch.model.layer,
                       REGISTRY[method].key_options(options))
