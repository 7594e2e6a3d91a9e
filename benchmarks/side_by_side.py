"""Speed side by side: each method against every peer's implementation of it, with cost floors.

    python benchmarks/side_by_side.py [--quick] [--device auto] [--out figures/bench]

One run, one process, the same model object, images and device for every implementation:

- pytorch-grad-cam (GradCAM, GradCAMPlusPlus, XGradCAM, ScoreCAM, AblationCAM) and torchcam
  (GradCAM, GradCAMpp, XGradCAM, ScoreCAM) hooked on the very layer our SplitModel is cut at;
- the authors' LIFT-CAM algorithm: captum ``DeepLift`` on the head, one image at a time (only on
  heads where captum is correct: ReLU / max-pool / linear, i.e. VGG16 and ResNet18 here);
- captum ``KernelShap`` and shap's ``KernelExplainer`` used directly, against our SHAP-CAM at
  equal ``nsamples``.

Protocol: an untimed warm-up call (it also measures the call's peak memory), then ``repeats``
timed calls, the implementations of one method taking turns; median, min and max; CUDA synchronised
where present. A costly call (seconds: Score-CAM, the peers' Ablation-CAM, SHAP-CAM) runs once, timed
while its peak memory is sampled. Cost floors in the same run:
one forward pass of the batch (in turns with LIFT-CAM), B*K full forward passes (Score-CAM, pytorch-grad-cam's
Ablation-CAM), n head evaluations (Ablation-, LIME-, SHAP-CAM). Then growth with batch size and
with the number of maps K (random heads), and RSS before/after many repeated calls (hooks
released). Writes figures/bench/*.{csv,md,json} and figures/bench/speedup.png; prints the
side-by-side table. Seconds are this machine's; the ratios are what carry across machines.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from torch import nn

import liftcam
from liftcam import models, report, timing
from liftcam.core import cam_maps

warnings.filterwarnings("ignore")
logging.getLogger("shap").setLevel(logging.WARNING)

GRADIENT = {"grad-cam": ("GradCAM", "GradCAM"), "grad-cam++": ("GradCAMPlusPlus", "GradCAMpp"),
            "xgrad-cam": ("XGradCAM", "XGradCAM")}
MiB = 2 ** 20


# --------------------------------------------------------------------------------------------
# Models and images


def random_model(arch: str, layer: str) -> models.SplitModel:
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)().eval()
    return models.split(net, layer, normalize=(models.IMAGENET_MEAN, models.IMAGENET_STD), name=arch)


def build_models(names):
    out = {}
    for name in names:
        if name == "efficientnet_lite0":
            out[name] = models.load("efficientnet_lite0")
        elif name == "resnet18":
            out[name] = random_model("resnet18", "layer4")
        elif name == "vgg16":
            out[name] = random_model("vgg16", "features.29")
        else:
            raise ValueError(f"unknown model {name!r}")
    return out


def photos(n: int, size: int = 224) -> torch.Tensor:
    """n real photographs (scikit-image's samples, cycled) as (n, 3, size, size) in [0, 1]."""
    import skimage.data
    from PIL import Image

    names = ["chelsea", "coffee", "rocket", "astronaut", "hubble_deep_field", "immunohistochemistry", "retina",
             "cat"]
    tf = models.ImageTransform(resize=(size, size))
    imgs = [tf(Image.fromarray(getattr(skimage.data, names[i % len(names)])())) for i in range(n)]
    return torch.stack(imgs)


def layer_of(s: models.SplitModel) -> tuple[str, nn.Module]:
    """The (qualified name, module) inside ``s`` whose output is the maps: where peers hook."""
    for name, m in s.body.named_modules():
        if name == s.layer or name.endswith("." + s.layer):
            return "body." + name, m
    raise LookupError(f"layer {s.layer!r} not found in the body of {s.name}")


def maps_head(K: int) -> models.SplitModel:
    """A random net with K maps of 7 x 7 at 224 px and a small non-linear head (the K sweep)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 32, stride=32), nn.ReLU(), nn.Conv2d(16, K, 1), nn.ReLU(),
                        nn.Conv2d(K, 64, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1000))
    return models.split(net.eval(), "3", name=f"random K={K}")


# --------------------------------------------------------------------------------------------
# The implementations: each returns a call that explains x end to end (forward pass included)


def ours(s, x, method, **opts):
    return lambda: liftcam.explain(s, x, method=method, **opts)


def pgc_call(s, x, cls_name, **attrs):
    import pytorch_grad_cam

    cls = getattr(pytorch_grad_cam, cls_name)
    _, layer = layer_of(s)

    def call():
        with cls(model=s, target_layers=[layer]) as cam:
            for k, v in attrs.items():
                setattr(cam, k, v)
            return cam(input_tensor=x, targets=None)
    return call


def torchcam_call(s, x, cls_name, **kwargs):
    import torchcam.methods as tc

    cls = getattr(tc, cls_name)
    name, _ = layer_of(s)
    gradient = cls_name != "ScoreCAM"

    def call():
        cam = cls(s, target_layer=name, **kwargs)
        try:
            with contextlib.nullcontext() if gradient else torch.no_grad():
                out = s(x)
            return cam(class_idx=out.argmax(1).tolist(), scores=out if gradient else None)
        finally:
            cam.remove_hooks()
    return call


def authors_lift_cam(s, x):
    """The authors' algorithm: captum DeepLift on (a copy of) the head, zero reference, per image."""
    from captum.attr import DeepLift

    dl = DeepLift(copy.deepcopy(s.head))

    def call():
        with torch.no_grad():
            A = s.body(x)
            t = s.head(A).argmax(1)
        alpha = torch.cat([dl.attribute(A[i:i + 1], torch.zeros_like(A[i:i + 1]), target=int(t[i])).sum((2, 3))
                           for i in range(len(x))])
        return cam_maps(A, alpha.detach(), x.shape[-2:])
    return call


def captum_kernel_shap(s, x, nsamples, batch_size=256):
    from captum.attr import KernelShap

    ks = KernelShap(s.head)

    def call():
        with torch.no_grad():
            A = s.body(x)
            t = s.head(A).argmax(1)
        K = A.shape[1]
        mask = torch.arange(K, device=A.device).view(1, K, 1, 1).expand_as(A[:1])
        torch.manual_seed(0)
        return torch.cat([ks.attribute(A[i:i + 1], baselines=0.0, target=int(t[i]), feature_mask=mask,
                                       n_samples=nsamples, perturbations_per_eval=batch_size,
                                       return_input_shape=False) for i in range(len(x))])
    return call


def shap_kernel_explainer(s, x, nsamples):
    """shap.KernelExplainer as a user would call it: f evaluates all masked rows in one head call."""
    import shap

    def call():
        with torch.no_grad():
            A = s.body(x)
            t = s.head(A).argmax(1)
        K = A.shape[1]
        out = []
        for i in range(len(x)):
            def f(z, a=A[i], c=int(t[i])):
                with torch.no_grad():
                    z = torch.as_tensor(z, dtype=a.dtype, device=a.device)
                    return s.head(z[:, :, None, None] * a[None])[:, c].cpu().double().numpy()
            np.random.seed(0)
            e = shap.KernelExplainer(f, np.zeros((1, K)))
            out.append(e.shap_values(np.ones(K), nsamples=nsamples, l1_reg=False, silent=True))
        return out
    return call


# --------------------------------------------------------------------------------------------
# Timing


def nograd(f, x):
    """A call of f(x) without autograd (a floor: what any implementation must at least do)."""
    def call():
        with torch.no_grad():
            return f(x)
    return call


def run(fn, *, repeats, device):
    """Warm-up (also the peak-memory call), then ``repeats`` timed calls."""
    return run_all({0: fn}, repeats=repeats, device=device)[0]


def run_all(calls: dict, *, repeats, device) -> dict:
    """Warm-up of each call (also its peak-memory call), then the timed calls in turns."""
    mems = {}
    for key, fn in calls.items():
        gc.collect()
        mems[key] = timing.peak_memory(fn, device=device)
        mems[key].result = None
    times = timing.interleaved(calls, repeats=repeats, warmup=0, device=device)
    return {key: (times[key], mems[key]) for key in calls}


def row(model, method, impl, images, t, mem, **extra):
    return {"model": model, "method": method, "implementation": impl, "images": images,
            "seconds": t.median, "min": t.min, "max": t.max, "seconds per image": t.median / images,
            "peak RSS MiB": mem.rss / MiB if mem is not None else float("nan"),
            "peak CUDA MiB": mem.cuda / MiB if mem is not None and mem.cuda is not None else float("nan"), **extra}


_START = time.perf_counter()


def log(*a):
    print(f"[{time.perf_counter() - _START:6.0f} s]", *a, file=sys.stderr, flush=True)


def side_by_side(name, s, a, dev):
    """Every method on model ``s`` by every implementation; then its floors."""
    rows, floors = [], []
    x = photos(a.images).to(dev)
    xc = x[:a.costly_images]
    K = s.body(x[:1]).shape[1]
    costly = name in a.costly_models
    R, RC = a.repeats, a.costly_repeats

    pending = []

    def add(method, impl, fn, images, repeats=R, **extra):
        """Queue one implementation; the queue is timed in turns by ``flush`` (one method at a time)."""
        pending.append((method, impl, fn, images, repeats, extra))

    def flush():
        """Warm-up (and peak memory) of each queued call, then the timed calls in turns."""
        ok, mems = {}, {}
        for method, impl, fn, images, _repeats, extra in pending:
            log(f"  {name:18s} {method:13s} {impl:26s} ({images} images) ...")
            try:
                gc.collect()
                mems[impl, images] = timing.peak_memory(fn, device=dev)
                mems[impl, images].result = None
                ok[impl, images] = fn
            except Exception as e:        # one broken implementation must not lose the run: say why
                log(f"    failed: {type(e).__name__}: {e}")
                extra["error"] = f"{type(e).__name__}: {e}"[:200]
        if max(p[4] for p in pending) == 1:     # the costly calls (seconds each): the memory call is the timed one
            times = {k: timing.Timing([mems[k].seconds]) for k in ok}
        else:
            times = timing.interleaved(ok, repeats=max(p[4] for p in pending), warmup=0, device=dev) if ok else {}
        for method, impl, _fn, images, _repeats, extra in pending:
            t = times.get((impl, images), timing.Timing([float("nan")]))
            r = row(name, method, impl, images, t, mems.get((impl, images)), maps=K, **extra)
            (floors if impl == "floor" else rows).append({**r, "calls measured": 1} if impl == "floor" else r)
        pending.clear()

    # Grad-CAM family: ours, pytorch-grad-cam, torchcam
    for m, (pgc_name, tc_name) in GRADIENT.items():
        add(m, "liftcam", ours(s, x, m), len(x))
        add(m, "pytorch-grad-cam", pgc_call(s, x, pgc_name), len(x))
        add(m, "torchcam", torchcam_call(s, x, tc_name), len(x))
        flush()
    # LIFT-CAM: ours and the authors' captum DeepLift (where captum is right), in turns with its floor, the
    # forward pass of the same batch (timed apart, a load change between the two would move the ratio)
    add("lift-cam", "liftcam", ours(s, x, "lift-cam"), len(x))
    if name != "efficientnet_lite0":
        add("lift-cam", "authors (captum DeepLift)", authors_lift_cam(s, x), len(x))
    add("forward", "floor", nograd(s, x), len(x))
    flush()
    # Ablation-CAM: ours re-runs the head; pytorch-grad-cam the whole model per ablated map
    add("ablation-cam", "liftcam", ours(s, x, "ablation-cam", batch_size=a.batch_size), len(x))
    flush()
    if costly:
        add("ablation-cam", "liftcam", ours(s, xc, "ablation-cam", batch_size=a.batch_size), len(xc))
        add("ablation-cam", "pytorch-grad-cam", pgc_call(s, xc, "AblationCAM", batch_size=a.batch_size), len(xc),
            repeats=RC)
        flush()
        # Score-CAM: the same variant and the same B*K masked forward passes, the same batch size
        add("score-cam", "liftcam", ours(s, xc, "score-cam", variant="pytorch-grad-cam",
                                         batch_size=a.batch_size, progress=False), len(xc), repeats=RC)
        add("score-cam", "pytorch-grad-cam", pgc_call(s, xc, "ScoreCAM", batch_size=a.batch_size), len(xc),
            repeats=RC)
        add("score-cam", "torchcam", torchcam_call(s, xc, "ScoreCAM", batch_size=a.batch_size), len(xc),
            repeats=RC)
        flush()
    # SHAP-CAM at equal nsamples
    n = a.nsamples
    x1 = x[:1]
    add("shap-cam", "liftcam", ours(s, x1, "shap-cam", nsamples=n, progress=False), 1, repeats=RC, nsamples=n)
    add("shap-cam", "captum KernelShap", captum_kernel_shap(s, x1, n), 1, repeats=RC, nsamples=n)
    add("shap-cam", "shap KernelExplainer", shap_kernel_explainer(s, x1, n), 1, repeats=RC, nsamples=n)
    flush()

    # Floors, measured on the same model, images and device
    def floor(what, fn, scale, images, repeats=R):
        t, mem = run(fn, repeats=repeats, device=dev)
        t = timing.Timing([v * scale for v in t.times])
        floors.append(row(name, what, "floor", images, t, mem, maps=K, **{"calls measured": scale}))
        return t.median

    with torch.no_grad():
        A = s.body(x)
    floor("forward", nograd(s, x1), 1, 1)
    if costly:
        chunk = x[:1].expand(min(a.batch_size, len(xc) * K), -1, -1, -1).contiguous()
        floor("B*K forwards", nograd(s, chunk), len(xc) * K / len(chunk), len(xc))
    rows_ = A[:1].expand(min(256, len(x) * K), -1, -1, -1).contiguous()
    floor("head x B*K", nograd(s.head, rows_), len(x) * K / len(rows_), len(x))
    floor("head x nsamples", nograd(s.head, rows_), n / len(rows_), 1)
    return rows, floors


# --------------------------------------------------------------------------------------------
# Growth, memory, leaks


def batch_sweep(s, a, dev):
    rows = []
    x = photos(max(a.batches)).to(dev)
    for b in a.batches:
        xb = x[:b]
        calls = {("forward", "floor"): nograd(s, xb),
                 ("grad-cam", "liftcam"): ours(s, xb, "grad-cam"),
                 ("grad-cam", "pytorch-grad-cam"): pgc_call(s, xb, "GradCAM"),
                 ("grad-cam", "torchcam"): torchcam_call(s, xb, "GradCAM"),
                 ("lift-cam", "liftcam"): ours(s, xb, "lift-cam"),
                 ("lift-cam", "authors (captum DeepLift)"): authors_lift_cam(s, xb),
                 ("ablation-cam", "liftcam"): ours(s, xb, "ablation-cam", batch_size=a.batch_size)}
        log(f"  batch {b:3d}: {', '.join(m + ' ' + impl for m, impl in calls)}")
        for (m, impl), (t, mem) in run_all(calls, repeats=a.repeats if b <= 8 else a.costly_repeats,
                                           device=dev).items():
            rows.append(row(s.name, m, impl, b, t, mem))
    return rows


def maps_sweep(a, dev):
    rows = []
    x = photos(1).to(dev)
    for K in a.maps:
        s = maps_head(K).to(dev)
        calls = {("forward", "floor"): nograd(s, x),
                 ("grad-cam", "liftcam"): ours(s, x, "grad-cam"),
                 ("lift-cam", "liftcam"): ours(s, x, "lift-cam"),
                 ("ablation-cam", "liftcam"): ours(s, x, "ablation-cam", batch_size=a.batch_size),
                 ("score-cam", "liftcam"): ours(s, x, "score-cam", variant="pytorch-grad-cam",
                                                batch_size=a.batch_size, progress=False),
                 ("score-cam", "pytorch-grad-cam"): pgc_call(s, x, "ScoreCAM", batch_size=a.batch_size)}
        log(f"  K {K:5d}: {', '.join(m + ' ' + impl for m, impl in calls)}")
        for (m, impl), (t, mem) in run_all(calls, repeats=a.repeats, device=dev).items():
            rows.append({**row(s.name, m, impl, 1, t, mem), "maps": K})
    return rows


def leak_check(s, a, dev):
    """RSS before/after ``calls`` repeated calls; hooks left on the model afterwards."""
    x = photos(1, size=112).to(dev)
    out = []
    impls = {("grad-cam", "liftcam"): ours(s, x, "grad-cam"), ("lift-cam", "liftcam"): ours(s, x, "lift-cam"),
             ("grad-cam", "pytorch-grad-cam"): pgc_call(s, x, "GradCAM"),
             ("grad-cam", "torchcam"): torchcam_call(s, x, "GradCAM")}
    for (m, impl), fn in impls.items():
        log(f"  {a.leak_calls} calls {m} {impl}")
        for _ in range(5):
            fn()
        gc.collect()
        before = timing.rss()
        for _ in range(a.leak_calls):
            fn()
        gc.collect()
        after = timing.rss()
        hooks = sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) + len(mod._backward_hooks)
                    + len(getattr(mod, "_full_backward_hooks", ()) or ()) for mod in s.modules())
        out.append({"model": s.name, "method": m, "implementation": impl, "calls": a.leak_calls,
                    "RSS before MiB": before / MiB, "RSS after MiB": after / MiB,
                    "growth MiB": (after - before) / MiB, "hooks left": hooks})
    return out


#: the operators that are the model's own arithmetic (what every implementation must run as often)
MODEL_OPS = ("conv", "addmm", "linear", "matmul", "mm", "bmm", "batch_norm", "hardtanh", "relu", "clamp", "pool", "add_")


def _profiled(fn, dev):
    """torch.profiler on one call of fn: (total self CPU s, wall s, share of self CPU in MODEL_OPS, top ops table)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        fn()
    wall = time.perf_counter() - t0
    avg = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in avg) / 1e6
    model = sum(e.self_cpu_time_total for e in avg if any(k in e.key.lower() for k in MODEL_OPS)) / 1e6
    top = sorted(avg, key=lambda e: -e.self_cpu_time_total)[:8]
    table = pd.DataFrame({"operator": [e.key for e in top], "calls": [e.count for e in top],
                          "self CPU s": [e.self_cpu_time_total / 1e6 for e in top],
                          "share of self CPU": [e.self_cpu_time_total / 1e6 / total for e in top]})
    return total, wall, model / total if total else float("nan"), table


def profile_misses(nets, a, out: Path, dev, params):
    """Where the time of the two targets that are hard to meet goes: one profiled call of Score-CAM (ours and
    pytorch-grad-cam's, same variant, same B*K masked passes) and of SHAP-CAM (ours and captum's KernelShap,
    equal nsamples). Writes profile.md/.csv: per call, the share of self CPU time in the model's own operators."""
    cases = []
    if "resnet18" in nets and "resnet18" in a.costly_models:
        s = nets["resnet18"]
        x = photos(a.costly_images).to(dev)
        cases += [("resnet18", "score-cam", "liftcam", ours(s, x, "score-cam", variant="pytorch-grad-cam",
                                                               batch_size=a.batch_size, progress=False)),
                  ("resnet18", "score-cam", "pytorch-grad-cam", pgc_call(s, x, "ScoreCAM", batch_size=a.batch_size))]
    for name in [m for m in ("vgg16", "efficientnet_lite0") if m in nets]:
        s = nets[name]
        x1 = photos(1).to(dev)
        cases += [(name, "shap-cam", "liftcam", ours(s, x1, "shap-cam", nsamples=a.nsamples, progress=False)),
                  (name, "shap-cam", "captum KernelShap", captum_kernel_shap(s, x1, a.nsamples))]
    rows, text = [], [f"# Where the time goes: one profiled call each (torch.profiler, {dev.type})\n"]
    for model, method, impl, fn in cases:
        log(f"  profiling {model} {method} {impl}")
        total, wall, share, top = _profiled(fn, dev)
        rows.append({"model": model, "method": method, "implementation": impl, "wall s (profiled)": wall,
                     "self CPU s": total, "share in model operators": share, "top operator": top.operator[0],
                     "top operator share": top["share of self CPU"][0]})
        text.append(f"\n## {model}, {method}, {impl}\n\n{report.markdown_table(top.set_index('operator'), '.3g')}\n")
    if not rows:
        return None
    df = pd.DataFrame(rows)
    ours_ops = (df["self CPU s"] * df["share in model operators"]).where(df.implementation == "liftcam")
    ours_ops = ours_ops.groupby([df.model, df.method]).transform("max")
    # the most an implementation with no overhead at all could gain on the peer: its model operators still run
    df["speed-up bound (peer self CPU / our model operators)"] = (df["self CPU s"] / ours_ops).where(
        df.implementation != "liftcam")
    report.save_table(df.set_index(["model", "method", "implementation"]), out / "profile", params,
                      title="Share of each call's self CPU time in the model's own operators "
                            f"({', '.join(MODEL_OPS)}); the bound: the peer's time over ours in those operators",
                      floatfmt=".3g")
    report.atomic_write(out / "profile_operators.md", "".join(text))
    return df


# --------------------------------------------------------------------------------------------
# Tables


def compare(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (model, method, peer): our seconds, the peer's, and how many times faster we are."""
    out = []
    for (model, method, images), g in rows.groupby(["model", "method", "images"], sort=False):
        mine = g[g.implementation == "liftcam"]
        if mine.empty:
            continue
        t = float(mine.seconds.iloc[0])
        for _, p in g[g.implementation != "liftcam"].iterrows():
            out.append({"model": model, "method": method, "peer": p.implementation, "images": images,
                        "ours s": t, "ours min-max": f"{mine['min'].iloc[0]:.3g}-{mine['max'].iloc[0]:.3g}",
                        "peer s": p.seconds, "peer min-max": f"{p['min']:.3g}-{p['max']:.3g}",
                        "speed-up (peer / ours)": p.seconds / t,
                        "ours RSS MiB": float(mine["peak RSS MiB"].iloc[0]), "peer RSS MiB": p["peak RSS MiB"]})
    return pd.DataFrame(out)


def to_floors(rows: pd.DataFrame, floors: pd.DataFrame) -> pd.DataFrame:
    """Each of our methods against the least it must cost."""
    out = []
    for model, g in rows[rows.implementation == "liftcam"].groupby("model", sort=False):
        f = floors[floors.model == model].set_index(["method", "images"]).seconds
        for _, r in g.iterrows():
            B = r.images
            if r.method in GRADIENT or r.method == "lift-cam":
                what, sec = "one forward pass", f.get(("forward", B))
            elif r.method == "score-cam":
                what, sec = "B*K forward passes", f.get(("B*K forwards", B))
            elif r.method == "ablation-cam":
                fw = f.get(("forward", B))
                hb = f.get(("head x B*K", B)) if ("head x B*K", B) in f.index else None
                if hb is None and ("head x B*K", rows.images.max()) in f.index:
                    hb = f.get(("head x B*K", rows.images.max())) * B / rows.images.max()
                what, sec = "forward + B*K head evaluations", (fw or 0) + (hb or 0)
            elif r.method == "shap-cam":
                what, sec = "forward + nsamples head evaluations", f.get(("forward", 1)) + f.get(("head x nsamples", 1))
            else:
                continue
            out.append({"model": model, "method": r.method, "images": B, "seconds": r.seconds, "floor": what,
                        "floor s": sec, "ratio to floor": r.seconds / sec if sec else float("nan")})
    return pd.DataFrame(out)


def targets(cmp: pd.DataFrame, fl: pd.DataFrame) -> pd.DataFrame:
    """Each target, measured; ``peer / floor``: the speed-up an implementation running at its cost floor would
    reach against the peer (where that is below the goal, no implementation doing the same work can meet it)."""
    def peer(method, who):
        return cmp[(cmp.method == method) & (cmp.peer == who)].dropna(subset=["speed-up (peer / ours)"])

    def at_floor(r):
        f = fl[(fl.model == r.model) & (fl.method == r.method) & (fl.images == r.images)]["floor s"]
        return r["peer s"] / float(f.iloc[0]) if len(f) and float(f.iloc[0]) > 0 else float("nan")

    out = []
    for _, r in fl[fl.method == "lift-cam"].iterrows():
        out.append({"target": "LIFT-CAM <= 1.3x one forward pass", "model": r.model, "measured": r["ratio to floor"],
                    "met": r["ratio to floor"] <= 1.3})
    for m in GRADIENT:
        for _, r in peer(m, "pytorch-grad-cam").iterrows():
            out.append({"target": f"{m} >= 2x faster than pytorch-grad-cam", "model": r.model,
                        "measured": r["speed-up (peer / ours)"], "met": r["speed-up (peer / ours)"] >= 2})
    for m, goal in [("ablation-cam", 20), ("score-cam", 1.5)]:
        for _, r in peer(m, "pytorch-grad-cam").iterrows():
            out.append({"target": f"{m} >= {goal}x faster than pytorch-grad-cam", "model": r.model,
                        "measured": r["speed-up (peer / ours)"], "met": r["speed-up (peer / ours)"] >= goal,
                        "peer / floor": at_floor(r)})
    for _, r in peer("shap-cam", "captum KernelShap").iterrows():
        out.append({"target": "shap-cam >= 2x faster than captum KernelShap", "model": r.model,
                    "measured": r["speed-up (peer / ours)"], "met": r["speed-up (peer / ours)"] >= 2,
                    "peer / floor": at_floor(r)})
    return pd.DataFrame(out)


def figure(cmp: pd.DataFrame, out: Path, params):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.method} vs {r.peer}" for r in cmp.itertuples()]
    order = list(dict.fromkeys(labels))
    modelnames = list(dict.fromkeys(cmp.model))
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(order) * max(1, len(modelnames)) / 1.5 + 1.5))
    h = 0.8 / len(modelnames)
    for j, mname in enumerate(modelnames):
        g = cmp[cmp.model == mname]
        ys = [order.index(f"{r.method} vs {r.peer}") + j * h for r in g.itertuples()]
        ax.barh(ys, g["speed-up (peer / ours)"], height=h, label=mname)
    ax.set_yticks([i + 0.4 - h / 2 for i in range(len(order))], order, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1, color="k", lw=0.8)
    ax.set_xlabel("peer seconds / our seconds (log; > 1: ours faster)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    report.save_figure(fig, out / "speedup", params, data=cmp)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="efficientnet_lite0,resnet18,vgg16")
    p.add_argument("--costly-models", default="efficientnet_lite0,resnet18",
                   help="models on which the full-model perturbation methods (Score-CAM, pytorch-grad-cam's "
                        "Ablation-CAM: B*K forward passes) are timed")
    p.add_argument("--images", type=int, default=4, help="images per call of the batched methods")
    p.add_argument("--costly-images", type=int, default=1, help="images per call of Score-/Ablation-CAM peers")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--costly-repeats", type=int, default=1)
    p.add_argument("--nsamples", type=int, default=1024, help="KernelSHAP model evaluations per image")
    p.add_argument("--batch-size", type=int, default=64, help="masked inputs per forward (every implementation)")
    p.add_argument("--batches", default="1,8,32", help="batch sizes of the growth sweep (ResNet18)")
    p.add_argument("--maps", default="64,256,1024,2048", help="K of the random heads of the growth sweep")
    p.add_argument("--leak-calls", type=int, default=200)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the profiled calls of "
                   "Score-CAM and SHAP-CAM (figures/bench/profile.md, profile_operators.md)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the script (numbers meaningless)")
    p.add_argument("--out", default="figures/bench")
    a = p.parse_args(argv)
    if a.quick:
        a.models, a.costly_models = "resnet18", ""
        a.images, a.repeats, a.nsamples, a.batches, a.maps, a.leak_calls = 2, 1, 600, "1,2", "64,128", 10
        a.profile = False
    a.models, a.costly_models = a.models.split(","), [m for m in a.costly_models.split(",") if m]
    a.batches, a.maps = [int(v) for v in a.batches.split(",")], [int(v) for v in a.maps.split(",")]
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = models.device(a.device)
    out = Path(a.out)
    t0 = time.perf_counter()
    params = {**{k: v for k, v in vars(a).items()}, "device_used": str(dev), "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "machine": platform.platform(), "processor": platform.processor(),
              "torchcam": _version("torchcam")}

    nets = build_models(a.models)
    rows, floors = [], []
    for name, s in nets.items():
        log(f"side by side on {name}")
        r, f = side_by_side(name, s.to(dev), a, dev)
        rows += r
        floors += f
    rows, floors = pd.DataFrame(rows), pd.DataFrame(floors)
    cmp = compare(rows)
    fl = to_floors(rows, floors)
    tg = targets(cmp, fl)
    log("growth with batch size")
    sweep_model = nets.get("resnet18") or next(iter(nets.values()))
    bs = pd.DataFrame(batch_sweep(sweep_model, a, dev))
    log("growth with K")
    ks = pd.DataFrame(maps_sweep(a, dev))
    log("repeated calls")
    leaks = pd.DataFrame(leak_check(sweep_model, a, dev))
    prof = None
    if a.profile:
        log("profiling")
        params["seconds_total"] = None      # not known yet: profile.md is written before the total
        prof = profile_misses(nets, a, out, dev, params)
    params["seconds_total"] = round(time.perf_counter() - t0, 1)

    report.save_table(rows.set_index(["model", "method", "implementation"]), out / "timings", params,
                      title="Every implementation timed (median, min, max of the repeats; peak memory of the warm-up)",
                      floatfmt=".4g")
    report.save_table(cmp.set_index(["model", "method", "peer"]), out / "side_by_side", params,
                      title="Side by side: peer seconds / our seconds (> 1: ours faster)", floatfmt=".3g")
    report.save_table(pd.concat([floors, fl], keys=["floor", "method"]).reset_index(level=0)
                      .rename(columns={"level_0": "row"}), out / "floors", params,
                      title="Cost floors and each method's ratio to its floor", floatfmt=".4g")
    report.save_table(tg.set_index("target"), out / "targets", params, title="Targets", floatfmt=".3g")
    report.save_table(bs.set_index(["model", "method", "implementation"]), out / "growth_batch", params,
                      title="Growth with the batch size", floatfmt=".4g")
    report.save_table(ks.set_index(["maps", "method", "implementation"]), out / "growth_maps", params,
                      title="Growth with the number of maps K (random heads, 1 image)", floatfmt=".4g")
    report.save_table(leaks.set_index(["model", "method", "implementation"]), out / "repeated_calls", params,
                      title="RSS before and after repeated calls (hooks released?)", floatfmt=".1f")
    figure(cmp, out, params)
    if prof is not None:
        print(report.markdown_table(prof.set_index(["model", "method", "implementation"]), ".3g"))

    pd.set_option("display.width", 200)
    print(report.markdown_table(cmp.set_index(["model", "method", "peer"]), ".3g"))
    print(report.markdown_table(fl.set_index(["model", "method"]), ".3g"))
    print(report.markdown_table(tg.set_index("target"), ".3g"))
    print(f"total {params['seconds_total']} s on {dev} ({torch.get_num_threads()} threads); tables in {out}/")


def _version(name):
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
