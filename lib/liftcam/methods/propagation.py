"""LIFT-CAM and LRP-CAM: relevance propagated through the head, summed over space.

Both run the head's ``torch.fx`` graph node by node (:class:`_Propagator`) and swap the gradient
of each operation for a propagation rule, so that ``d score / d A`` becomes DeepLIFT's multipliers
or LRP's normalised relevance. Working on the graph (not on module hooks, as captum does) is what
makes functional calls (``F.relu``, ``torch.flatten``) and any element-wise non-linearity (ReLU6,
Hardswish, SiLU, GELU) follow the rule instead of silently falling back to plain gradients.
"""
from __future__ import annotations

import inspect
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Batch, register

__all__ = ["lift_cam", "lrp_cam", "deeplift_contributions", "completeness_tolerance", "lrp_relevance",
           "CompletenessError"]


class CompletenessError(RuntimeError):
    """DeepLIFT's summation-to-delta failed: some operation of the head has no Rescale rule."""


# --------------------------------------------------------------------------------------------
# What kind of operation a graph node is

ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                      nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
                      nn.Softsign, nn.LogSigmoid, nn.Tanhshrink, nn.Threshold)
ACTIVATION_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.hardtanh, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu,
                        F.silu, F.mish, F.hardswish, F.hardsigmoid, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh,
                        F.softplus, F.softsign, F.logsigmoid, torch.clamp, torch.clip, torch.exp, torch.abs,
                        torch.square}
ACTIVATION_METHODS = {"relu", "sigmoid", "tanh", "clamp", "clip", "exp", "abs", "square"}
MAXPOOL_MODULES = (nn.MaxPool2d, nn.AdaptiveMaxPool2d)
MAXPOOL_FUNCTIONS = {F.max_pool2d, F.adaptive_max_pool2d}
#: layers whose relevance LRP redistributes with the epsilon rule (captum's list, plus functions)
LRP_LAYER_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.AvgPool2d,
                     nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)
LRP_LAYER_FUNCTIONS = {F.conv2d, F.linear, F.batch_norm, F.avg_pool2d, F.adaptive_avg_pool2d, F.max_pool2d,
                       F.adaptive_max_pool2d}
LINEAR_MODULES = LRP_LAYER_MODULES[:7] + (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout2d,
                                          nn.AlphaDropout, nn.ZeroPad2d, nn.Upsample)
LINEAR_FUNCTIONS = {F.conv2d, F.linear, F.batch_norm, F.avg_pool2d, F.adaptive_avg_pool2d, F.dropout,
                    F.interpolate, F.pad, torch.flatten, torch.reshape, torch.cat, torch.mean, torch.sum,
                    torch.squeeze, torch.unsqueeze, torch.transpose, torch.permute, torch.chunk, torch.split,
                    torch.stack, torch.narrow, operator.add, operator.sub,
                    operator.neg, operator.pos, operator.getitem, getattr, torch._assert, operator.eq,
                    torch.add, torch.sub}
LINEAR_METHODS = {"view", "reshape", "flatten", "mean", "sum", "permute", "transpose", "contiguous", "size",
                  "squeeze", "unsqueeze", "expand", "expand_as", "add", "sub", "neg", "__getitem__", "dim", "chunk",
                  "split", "narrow", "repeat"}
PRODUCT_FUNCTIONS = {operator.mul, torch.mul}


#: regularisers that are the identity in eval mode (torchvision's StochasticDepth, timm's DropPath)
IDENTITY_IN_EVAL = {"StochasticDepth", "DropPath", "DropBlock2d"}
IDENTITY_IN_EVAL_FUNCTIONS = {"stochastic_depth", "drop_path", "drop_block_2d"}


def _identity_in_eval(op: str, target, module, args, kwargs) -> bool:
    if op == "call_module":
        return type(module).__name__ in IDENTITY_IN_EVAL and not module.training
    if op == "call_function" and getattr(target, "__name__", "") in IDENTITY_IN_EVAL_FUNCTIONS:
        try:
            return inspect.signature(target).bind(*args, **kwargs).arguments.get("training", True) is False
        except (TypeError, ValueError):
            return False
    return False


def _classify(op: str, target, module, n_varying: int, varying_divisor: bool) -> str:
    """'activation', 'maxpool', 'product', 'linear' or 'other' (no rule; plain gradient)."""
    if op == "call_module":
        if isinstance(module, ACTIVATION_MODULES):
            return "activation"
        if isinstance(module, MAXPOOL_MODULES):
            return "maxpool"
        if isinstance(module, LINEAR_MODULES):
            return "linear"
        return "other"
    if op == "call_function":
        if target in ACTIVATION_FUNCTIONS:
            return "activation"
        if target in MAXPOOL_FUNCTIONS:
            return "maxpool"
        if target in PRODUCT_FUNCTIONS:
            return "product" if n_varying > 1 else "linear"
        if target in (operator.truediv, torch.div):
            return "other" if varying_divisor else "linear"
        return "linear" if target in LINEAR_FUNCTIONS else "other"
    if op == "call_method":
        if target in ACTIVATION_METHODS:
            return "activation"
        if target == "mul":
            return "product" if n_varying > 1 else "linear"
        if target == "div":
            return "other" if varying_divisor else "linear"
        return "linear" if target in LINEAR_METHODS else "other"
    return "linear"


def _same_padding(module) -> bool:
    """timm's ``MaxPool2dSame``: max pooling after 'same' padding with -inf, computed in its own forward."""
    return type(module).__name__ == "MaxPool2dSame" and isinstance(module, nn.MaxPool2d)


def _same_indices(module, t: Tensor) -> Tensor:
    """The winners of ``MaxPool2dSame`` as indices into the unpadded t (B, K, H, W): the padding is -inf and never wins."""
    from timm.layers.padding import pad_same

    padded = pad_same(t, module.kernel_size, module.stride, module.dilation, value=-float("inf"))
    _, idx = F.max_pool2d(padded, module.kernel_size, module.stride, 0, module.dilation, ceil_mode=module.ceil_mode,
                          return_indices=True)
    (H, W), (Hp, Wp) = t.shape[-2:], padded.shape[-2:]
    row, col = idx // Wp - (Hp - H) // 2, idx % Wp - (Wp - W) // 2
    return row * W + col


def _batch_statistics(head: nn.Module) -> list[str]:
    """The head's normalisation layers that use the statistics of the batch in eval mode
    (``BatchNorm2d(track_running_stats=False)``): their output depends on the other rows."""
    return [n for n, m in head.named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)
            and not isinstance(m, nn.modules.instancenorm._InstanceNorm)
            and (m.training or m.running_mean is None)]


def _is_lrp_layer(op: str, target, module) -> bool:
    if op == "call_module":
        return isinstance(module, LRP_LAYER_MODULES)
    return op == "call_function" and target in LRP_LAYER_FUNCTIONS


# --------------------------------------------------------------------------------------------
# The interpreter

class _Propagator(fx.Interpreter):
    """Runs a head graph; each operation's value is exact, its gradient is the rule's.

    ``mode="deeplift"``: the batch holds B inputs then one reference row; gradients w.r.t. the
    inputs become DeepLIFT Rescale multipliers. ``mode="lrp"``: gradients become LRP-epsilon
    relevance ratios.
    """

    def __init__(self, head: fx.GraphModule, mode: str, n_inputs: int, epsilon: float = 1e-9):
        super().__init__(head)
        self.mode, self.n, self.epsilon = mode, n_inputs, epsilon
        self.unhandled: list[str] = []
        self.varying: set[fx.Node] = set()
        for node in head.graph.nodes:
            if node.op == "placeholder" or any(a in self.varying for a in node.all_input_nodes):
                self.varying.add(node)

    def run_node(self, n: fx.Node):
        self._node = n
        return super().run_node(n)

    def _describe(self, n: fx.Node, module) -> str:
        what = type(module).__name__ if module is not None else getattr(n.target, "__name__", str(n.target))
        return f"{n.name} ({what})"

    def _dispatch(self, op, target, args, kwargs, module, fn):
        n = self._node
        # only tensors vary with the maps: ints read from their shape (x.shape[1], h * w) are constants
        tensor = lambda a, v: isinstance(a, fx.Node) and a in self.varying and isinstance(v, Tensor)  # noqa: E731
        varying = [a for a, v in zip(n.args, args) if tensor(a, v)]
        varying += [a for k, a in n.kwargs.items() if tensor(a, kwargs.get(k))]
        divisor = n.args[1] if len(n.args) > 1 else None
        kind = _classify(op, target, module, len(varying), len(args) > 1 and tensor(divisor, args[1]))
        if kind == "other" and _identity_in_eval(op, target, module, args, kwargs):
            kind = "linear"
        if not varying:
            return fn(*args, **kwargs)
        if self.mode == "deeplift":
            if kind == "other":
                self.unhandled.append(self._describe(n, module))
            if kind == "activation":
                return self._rescale(fn, args, kwargs)
            if kind == "maxpool":
                return self._maxpool(fn, target, module, args, kwargs)
            if kind == "product":
                return self._product(args)
            return fn(*args, **kwargs)
        # lrp
        if kind == "activation":                       # relevance passes unchanged
            x = args[0]
            y = fn(*args, **kwargs)
            return x + (y - x).detach()
        if _is_lrp_layer(op, target, module) or (kind == "linear" and target in (operator.add, torch.add)
                                                  and len(varying) > 1):
            return self._epsilon(fn, args, kwargs)
        if kind == "other":
            self.unhandled.append(self._describe(n, module))
        return fn(*args, **kwargs)

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        return self._dispatch("call_module", target, args, kwargs, module, module)

    def call_function(self, target, args, kwargs):
        return self._dispatch("call_function", target, args, kwargs, None, target)

    def call_method(self, target, args, kwargs):
        def method(obj, *a, **k):
            return getattr(obj, target)(*a, **k)
        return self._dispatch("call_method", target, args, kwargs, None, method)

    # --- DeepLIFT rules (rows :n are inputs, row n the reference) ---------------------------
    def _split(self, t: Tensor):
        return t[: self.n], t[self.n:]

    def _rescale(self, fn, args, kwargs):
        """Element-wise f: multiplier (f(x) - f(r)) / (x - r), f'(x) where x ~ r."""
        u = args[0]
        y = fn(*args, **kwargs)
        (ux, ur), (yx, yr) = self._split(u.detach()), self._split(y.detach())
        du = ux - ur
        near = du.abs() <= 1e-6 * (1 + ux.abs() + ur.abs())
        m = (yx - yr) / torch.where(near, torch.ones_like(du), du)
        if near.any():
            with torch.enable_grad():
                v = ux.clone().requires_grad_(True)
                (slope,) = torch.autograd.grad(fn(v, *args[1:], **kwargs).sum(), v)
            m = torch.where(near, slope, m)
        multiplier = torch.cat([m, torch.zeros_like(ur)])
        return y.detach() + multiplier * (u - u.detach())

    def _maxpool(self, fn, target, module, args, kwargs):
        """Max pooling with summation-to-delta in every window: Δy = max(x) - max(r) goes to one input.

        As captum's rule, the input's winner w gets it (multiplier Δy / Δx_w) whenever
        |Δx_w| >= |Δy|: always so when the maximum grows, and the multiplier is then at most 1.
        When it shrinks past the input's winner (|Δx_w| < |Δy|, e.g. Δx_w = 0 while the
        reference's maximum sat elsewhere), Δy goes to the window's input with the largest |Δx|
        instead; since |Δy| <= max |Δx| that multiplier is at most 1 too, so no Δy is lost and
        nothing is divided by a near-zero difference.
        """
        u = args[0]
        y = fn(*args, **kwargs)
        ux, ur = self._split(u.detach())
        yx, yr = self._split(y.detach())
        pool = self._indices(target, module, args, kwargs)
        idx = pool(ux)                                                       # the input's winners
        dx = (ux - ur.expand_as(ux)).flatten(2)
        at = lambda t, i: t.flatten(2).gather(2, i.flatten(2)).view_as(yx)  # noqa: E731 - values at indices
        dy = yx - yr
        d_win = at(dx.view_as(ux), idx)
        use_win = d_win.abs() >= dy.abs()
        idx_alt = pool(dx.abs().view_as(ux))                                 # the largest |Δx| of each window
        d_alt = at(dx.view_as(ux), idx_alt)
        s_win = torch.where(use_win & (d_win != 0), dy / torch.where(d_win != 0, d_win, torch.ones_like(d_win)),
                            torch.zeros_like(dy))
        s_alt = torch.where(~use_win, dy / torch.where(d_alt != 0, d_alt, torch.ones_like(d_alt)), torch.zeros_like(dy))
        ux_var = u[: self.n]
        win = at(ux_var, idx)                                                # differentiable: x at the winner
        alt = at(ux_var, idx_alt)
        out_x = yx + s_win * (win - win.detach()) + s_alt * (alt - alt.detach())
        return torch.cat([out_x, y[self.n:]])

    @staticmethod
    def _indices(target, module, args, kwargs):
        """t -> the argmax index of each pooling window of t (as the pooling would pick it)."""
        if module is not None:
            if _same_padding(module):
                return lambda t: _same_indices(module, t)
            if isinstance(module, nn.AdaptiveMaxPool2d):
                return lambda t: F.adaptive_max_pool2d(t, module.output_size, return_indices=True)[1]
            return lambda t: F.max_pool2d(t, module.kernel_size, module.stride, module.padding, module.dilation,
                                          ceil_mode=module.ceil_mode, return_indices=True)[1]
        return lambda t: target(t, *args[1:], **{**kwargs, "return_indices": True})[1]

    def _product(self, args):
        """a * b of two varying factors: the Shapley split, Δ(ab) = Δa (b_x + b_r)/2 + Δb (a_x + a_r)/2."""
        a, b = args[0], args[1]
        (ax, ar), (bx, br) = self._split(a.detach()), self._split(b.detach())
        ma = torch.cat([(bx + br) / 2, torch.zeros_like(br)])
        mb = torch.cat([(ax + ar) / 2, torch.zeros_like(ar)])
        return (a * b).detach() + ma * (a - a.detach()) + mb * (b - b.detach())

    # --- LRP epsilon rule ----------------------------------------------------------------------
    def _epsilon(self, fn, args, kwargs):
        """R_in = a * J^T (R_out / (z + eps sign z)), as captum's EpsilonRule."""
        def alias(t):
            if isinstance(t, Tensor) and t.requires_grad:
                v = t.view_as(t)
                value = t.detach()
                v.register_hook(lambda g: g * value)
                return v
            return t
        args = tuple(alias(a) for a in args)
        z = fn(*args, **kwargs)
        zd = z.detach()
        sign = torch.where(zd >= 0, torch.ones_like(zd), -torch.ones_like(zd))
        stab = zd + sign * self.epsilon
        z.register_hook(lambda g: g / stab)
        return z


def _run(batch: Batch, mode: str, A: Tensor, epsilon: float = 1e-9):
    prop = _Propagator(batch.head, mode, batch.activations.shape[0], epsilon)
    A = A.clone().requires_grad_(True)
    with torch.enable_grad():
        out = prop.run(A)                                       # (N, C)
        n = batch.activations.shape[0]
        score = out[:n].gather(1, batch.targets.view(-1, 1)).squeeze(1)
        (grad,) = torch.autograd.grad(score.sum(), A)
    return out.detach(), grad[:n], prop.unhandled


def completeness_tolerance(contributions: Tensor, delta: Tensor, rtol: float = 1e-4) -> Tensor:
    """How far ``sum C`` may miss ``delta`` per image (B,): ``rtol`` times the size of what was summed,
    ``sum |C| + |delta|``, with float epsilon as the only absolute floor (so a tiny head cannot pass
    by being tiny). Low-precision heads (float16, bfloat16) get ``rtol >= 64 eps`` of their dtype."""
    eps = torch.finfo(contributions.dtype).eps
    size = contributions.abs().flatten(1).sum(1) + delta.abs()
    return max(rtol, 64 * eps) * size + eps


def deeplift_contributions(batch: Batch, *, rtol: float = 1e-4) -> tuple[Tensor, Tensor]:
    """DeepLIFT (Rescale rule) contributions of every activation to the target logit.

    Zero reference. Returns (C (B, K, h, w), F_c(A) - F_c(0) (B,)). Raises
    :class:`CompletenessError` when ``sum C`` misses ``F_c(A) - F_c(0)`` by more than
    :func:`completeness_tolerance` (``rtol`` relative to ``sum |C| + |delta|``), naming the
    operations that have no rule.
    """
    A = batch.activations
    stacked = torch.cat([A, torch.zeros_like(A[:1])])           # (B + 1, K, h, w): inputs + reference
    out, multipliers, unhandled = _run(batch, "deeplift", stacked)
    contributions = multipliers * A                              # (B, K, h, w); reference is zero
    delta = batch.scores(out[:-1]) - out[-1, batch.targets]     # F_c(A) - F_c(0)
    error = (contributions.sum((1, 2, 3)) - delta).abs()
    bad = error > completeness_tolerance(contributions, delta, rtol)
    if bad.any():
        i = int(bad.nonzero()[0])
        batch_stats = _batch_statistics(batch.head)
        if batch_stats:
            why = (f"The head normalises with the statistics of the batch ({', '.join(batch_stats)}: a batch norm "
                   "with track_running_stats=False, or in training mode), so the zero reference row, run in the "
                   "same batch, changes the inputs' values. Give those layers running statistics "
                   "(track_running_stats=True, trained) or split at a layer after them")
        elif unhandled:
            why = (f"These operations of the head have no DeepLIFT rule (they fell back to plain gradients): "
                   f"{', '.join(dict.fromkeys(unhandled))}. Choose a layer whose head uses only linear "
                   "operations, element-wise non-linearities, max-pooling and products")
        elif A.dtype in (torch.float16, torch.bfloat16):
            why = (f"Every operation has a rule; the gap is the rounding of {A.dtype} (eps "
                   f"{torch.finfo(A.dtype).eps:.2g}). Run the model in float32 (model.float()) for LIFT-CAM")
        else:
            why = ("Every operation of the head has a rule, so the gap is numerical (float rounding in a deep "
                   "head); report it with the model and layer. Running in float64 (model.double(), "
                   "images.double()) tells rounding from a missing rule")
        raise CompletenessError(
            f"LIFT-CAM completeness failed for image {i} at layer {batch.model.layer!r}: sum of contributions "
            f"{contributions[i].sum().item():.6g} != F_c(A) - F_c(0) = {delta[i].item():.6g} (gap "
            f"{error[i].item():.3g}, sum |C| = {contributions[i].abs().sum().item():.3g}). {why}.")
    return contributions, delta


@register("lift-cam", label="LIFT-CAM", colour="#d62728", cost="head", rank=0)
def lift_cam(batch: Batch) -> tuple[Tensor, dict]:
    """LIFT-CAM (Jung & Oh, ICCV 2021, Eq. 9): alpha_k = sum_ij C(A_k(i, j)), DeepLIFT on the head.

    DeepLIFT's Rescale rule with the zero map as reference approximates the SHAP values of the
    maps in one forward and one backward pass of the head; completeness makes
    ``sum_k alpha_k = F_c(A) - F_c(0)`` (checked on every call). On a linear head
    ``alpha_k = w_ck * mean(A_k)``, the exact SHAP value.

        >>> liftcam.explain(model, images, method="lift-cam").coefficients   # (B, K)
    """
    contributions, delta = deeplift_contributions(batch)
    return contributions.sum((2, 3)), {"delta": delta}


def lrp_relevance(batch: Batch, *, epsilon: float = 1e-9) -> Tensor:
    """LRP-epsilon relevance of every activation for the target logit (B, K, h, w).

    The rule of captum's ``LRP`` (EpsilonRule on conv, linear, batch-norm and pooling layers;
    element-wise activations pass relevance unchanged), starting from the target logit.
    """
    out, grad, _ = _run(batch, "lrp", batch.activations, epsilon)
    return grad * batch.scores(out).view(-1, 1, 1, 1)


@register("lrp-cam", label="LRP-CAM", colour="#9467bd", cost="head", rank=1)
def lrp_cam(batch: Batch, *, epsilon: float = 1e-9) -> Tensor:
    """LRP-CAM (Jung & Oh, ICCV 2021, baseline): alpha_k = sum_ij R(A_k(i, j)), LRP-epsilon on the head.

        >>> liftcam.explain(model, images, method="lrp-cam").coefficients   # (B, K)
    """
    return lrp_relevance(batch, epsilon=epsilon).sum((2, 3))
