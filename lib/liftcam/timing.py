"""Cost of each method, measured in one run on the same hardware (docs/paper.md, section 3, "Cost").

    >>> t = seconds_per_image(s, images, ["grad-cam", "lift-cam", "score-cam"])
    >>> t["lift-cam"] / t["grad-cam"]                 # the ratio is what carries across machines
    >>> measure(lambda: s(images), repeats=5).median  # any call: warm-up, repeats, CUDA synchronised
    >>> peak_memory(lambda: s(images)).rss            # bytes the call added at its peak
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from .core import explain

__all__ = ["seconds_per_image", "method_seconds", "Timing", "measure", "interleaved", "Memory", "peak_memory", "rss", "FLOORS",
           "floor_seconds", "method_floor", "cost_table"]


def _sync(device: torch.device | None):
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Wall-clock seconds of the timed calls (warm-up excluded)."""

    times: list[float]

    @property
    def median(self) -> float:
        s = sorted(self.times)
        n = len(s)
        return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


def measure(fn: Callable[[], object], *, repeats: int = 3, warmup: int = 1, device=None,
            clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    On a CUDA ``device`` the queue is drained before the clock starts and before it stops, so
    the time is the work's, not the launch's. ``clock`` is replaceable (tests).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = clock()
        fn()
        _sync(device)
        times.append(clock() - t0)
    return Timing(times)


def interleaved(calls: dict[str, Callable[[], object]], *, repeats: int = 3, warmup: int = 1, device=None,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, Timing]:
    """:func:`measure` for several calls compared with each other, timed in turns (a, b, a, b, ...).

    Taking turns spreads a change of machine load (other processes, clock boost) over every
    call instead of charging it to whichever was timed at that moment.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            _sync(device)
            t0 = clock()
            fn()
            _sync(device)
            times[name].append(clock() - t0)
    return {name: Timing(t) for name, t in times.items()}


def rss() -> int:
    """Resident set size of this process now, in bytes (Linux /proc; else psutil)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        import psutil
        return psutil.Process().memory_info().rss


def _trim() -> None:
    """Return freed heap to the system where glibc allows it (a no-op elsewhere)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


@dataclass
class Memory:
    """Peak memory a call added above what was in use when it started, in bytes."""

    rss: int                     # resident set size (host), sampled every ``interval`` seconds
    cuda: int | None = None      # torch.cuda.max_memory_allocated above the start; None off CUDA
    result: object = field(default=None, repr=False)
    seconds: float = float("nan")  # wall-clock seconds of the call (CUDA synchronised), sampling included


def peak_memory(fn: Callable[[], object], *, device=None, interval: float = 0.002) -> Memory:
    """Run ``fn()`` once and report the peak memory it added (host RSS; CUDA on a CUDA device).

    RSS is sampled by a background thread, so a peak shorter than ``interval`` can be missed;
    the value is what the call needed on top of the process, not the process's total. Freed heap
    is first handed back to the system (glibc ``malloc_trim``) so that memory the allocator kept
    from earlier calls does not hide this call's need.
    """
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        cuda0 = torch.cuda.memory_allocated(device)
    _trim()
    start = rss()
    peak = [start]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            done.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = fn()
        _sync(device if cuda else None)
    finally:
        seconds = time.perf_counter() - t0
        done.set()
        thread.join()
    peak[0] = max(peak[0], rss())
    extra_cuda = torch.cuda.max_memory_allocated(device) - cuda0 if cuda else None
    return Memory(peak[0] - start, extra_cuda, result, seconds)


def seconds_per_image(model, images: torch.Tensor, methods: Iterable[str], *, repeats: int = 1,
                      warmup: bool = True, options: dict | None = None) -> dict[str, float]:
    """Median wall-clock seconds per image of ``explain(model, images, method)`` for each method.

    The whole batch goes through each call (batched methods profit from that, as in use);
    ``options`` maps a method name to its keyword options. Each method is timed ``repeats`` times
    after one untimed warm-up call on the first image.
    """
    options = options or {}
    dev = model.device
    images = images.to(dev)
    out = {}
    for m in methods:
        opts = options.get(m, {})
        if warmup:
            explain(model, images[:1], method=m, **opts)
        t = measure(lambda m=m, opts=opts: explain(model, images, method=m, **opts), repeats=repeats, warmup=0, device=dev)
        out[m] = sorted(t.times)[len(t.times) // 2] / len(images)
    return out


def _inputs(model, images, methods, options, caller):
    """The arguments of a timing function checked and placed: (options, methods as a list, images on the model's device)."""
    if len(images) == 0:
        raise ValueError(f"{caller} needs at least one image")
    return options or {}, list(methods), images.to(model.device)


def method_seconds(model, images: torch.Tensor, methods: Iterable[str], *, repeats: int = 3, warmup: bool = True,
                   options: dict | None = None, forward: bool = False) -> dict[str, Timing]:
    """Seconds per image of ``explain(model, images, method)`` for each method: the one protocol of notebooks 03 and 07.

    With ``warmup``, every method first gets untimed calls: a method's first call can pay seconds
    of imports and set-up (LIME-CAM's captum and scikit-learn, 100x its own time) and CUDA's first
    launches, which are not the method's cost. A method of one head pass (registry cost "head"),
    warmed up on the whole batch, is then timed ``repeats`` times in turns with the others and, with
    ``forward``, with the forward pass of the same batch (key ``"forward"``; :func:`interleaved`).
    A costlier method (Score-, Ablation-, LIME-, SHAP-CAM), warmed up on ``images[:1]``, is timed
    once: one call lasts long enough. Each :class:`Timing` holds seconds per image (a call's
    seconds / ``len(images)``).
    """
    from .core import lookup

    options, methods, images = _inputs(model, images, methods, options, "method_seconds")
    dev, n = model.device, len(images)

    def call(m, x):
        return lambda: explain(model, x, method=m, **options.get(m, {}))

    cheap = [m for m in methods if lookup(m).cost == "head"]
    calls = ({"forward": lambda: _no_grad(model, images)} if forward else {}) | {m: call(m, images) for m in cheap}
    out = {}
    if calls:
        out = {k: Timing([t / n for t in v.times])
               for k, v in interleaved(calls, repeats=repeats, warmup=int(warmup), device=dev).items()}
    for m in methods:
        if m in cheap:
            continue
        if warmup:                                              # the first call pays imports and set-up
            call(m, images[:1])()
        out[m] = Timing([t / n for t in measure(call(m, images), repeats=1, warmup=0, device=dev).times])
    return {k: out[k] for k in (["forward"] if forward else []) + methods}


# --------------------------------------------------------------------------------------------
# The cost comparison (notebook 07): every method at batch 1 and batched, beside its cost floor

#: what each method must at least compute, by its registry cost class (``liftcam.core.COSTS``)
FLOORS = {"head": "one forward pass",
          "score-cam": "K forward passes",
          "per-map": "forward + K head evaluations",
          "sampling": "forward + n head evaluations"}


def _evaluations(method: str, K: int, options: dict) -> int:
    """Head evaluations per image of a sampling or per-map method (its floor's n)."""
    if method == "shap-cam":
        from .shapley import _resolve_nsamples
        return _resolve_nsamples(options.get("nsamples"), K)
    if method == "lime-cam":
        return int(options.get("n_samples") or K)
    return K


def _no_grad(fn, *args):
    with torch.inference_mode():
        return fn(*args)


def floor_seconds(model, image: torch.Tensor, *, chunk: int = 64, repeats: int = 3) -> dict[str, float]:
    """Seconds of the three pieces every method's cost is made of, on one image, without autograd.

    ``forward``: the whole model on the image; ``model per input``: the whole model per input in
    a chunk of ``chunk`` copies (what each of Score-CAM's masked images costs); ``head per
    evaluation``: the head per row of a chunk of ``chunk`` copies of the image's activations (what
    each coalition of Ablation-, LIME- and SHAP-CAM costs). Medians of ``repeats`` calls after a
    warm-up.
    """
    dev = model.device
    x = image[:1].to(dev)
    xs = x.expand(chunk, *x.shape[1:]).contiguous()
    with torch.inference_mode():
        rows = model.body(x).expand(chunk, -1, -1, -1).contiguous()
        t = interleaved({"forward": lambda: model(x), "chunk": lambda: model(xs), "head": lambda: model.head(rows)},
                        repeats=repeats, warmup=2, device=dev)
    return {"forward": t["forward"].median, "model per input": t["chunk"].median / chunk,
            "head per evaluation": t["head"].median / chunk}


def method_floor(method: str, K: int, pieces: dict[str, float], options: dict | None = None, *,
                 passes: float | None = None) -> tuple[str, float]:
    """``(name, seconds per image)`` of ``method``'s floor (:data:`FLOORS`) from :func:`floor_seconds`.

    ``passes``: Score-CAM's forward passes per image, the maps that are not constant over space
    (:func:`score_cam_passes`; it skips the others), K when not given.
    """
    from .core import lookup

    cost = lookup(method).cost
    if method == "score-cam":
        if passes is None or passes == K:
            return FLOORS["score-cam"], K * pieces["model per input"]
        return f"{passes:.4g} forward passes (the non-constant maps of {K})", passes * pieces["model per input"]
    if cost == "head":
        return FLOORS["head"], pieces["forward"]
    n = _evaluations(method, K, options or {})
    return FLOORS[cost].replace("K", str(K)) if cost == "per-map" else FLOORS[cost].replace(" n ", f" {n} "), \
        pieces["forward"] + n * pieces["head per evaluation"]


def score_cam_passes(model, images: torch.Tensor) -> float:
    """Mean forward passes per image that Score-CAM makes: its maps that are not constant over space.

    Score-CAM skips a map that is constant over space (its score is 0 without a pass), and a ReLU6
    layer zeroes many (``liftcam.methods.perturbation.score_cam``); a map whose upsampled copy
    rounding flattens is skipped too, so this count is an upper bound by at most those few maps.
    """
    with torch.inference_mode():
        flat = model.body(images.to(model.device)).flatten(2)
    return float((flat.amax(2) > flat.amin(2)).sum(1).double().mean())


def cost_table(model, images: torch.Tensor, methods: Iterable[str], *, batched: int = 8, costly_batched: int = 2,
               repeats: int = 3, options: dict | None = None, chunk: int = 64, progress: bool = True):
    """Seconds per image of every method at batch 1 and batched, each beside its cost floor.

    Each method is timed on ``images[:1]`` and on a batch of ``batched`` images (``costly_batched``
    for the methods whose cost is not one head pass: Score-CAM, Ablation-, LIME- and SHAP-CAM,
    which already batch their masked inputs), by :func:`method_seconds`, the protocol notebook 03
    uses too: a method of one head pass ``repeats`` times after a warm-up call, in turns with the
    forward pass of the same batch; a costlier one once per batch size, after one untimed call on
    one image at batch 1. Floors (:func:`floor_seconds`, measured on the first image,
    per image): one forward pass; a forward pass per map that is not constant over space (Score-CAM
    skips the others: :func:`score_cam_passes`, on the images of the call); one forward pass plus the head
    evaluations the method makes (Ablation-CAM: K, LIME-CAM: ``n_samples``, SHAP-CAM:
    ``nsamples``); the forward pass in them is the batch-1 forward pass timed in turns with the
    one-head-pass methods, when there are any. ``options`` maps a method to its keyword options (as :func:`seconds_per_image`).

    Returns a DataFrame, one row per (row kind, name, images per call): ``row`` ("method" or
    "floor"), ``method`` (name), ``call`` ("batch 1" or "batched"), ``images`` per call, ``seconds per image`` (median / images),
    ``min``/``max`` per image, ``calls`` timed, ``floor`` (its name), ``floor seconds per image``,
    ``x floor`` and ``x Grad-CAM`` (over Grad-CAM's seconds per image in the same ``call``: at
    batch 1, or batched; NaN without Grad-CAM).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from .core import lookup

    options, methods, images = _inputs(model, images, methods, options, "cost_table")
    K = model.body(images[:1]).shape[1]
    pieces = floor_seconds(model, images[:1], chunk=chunk, repeats=repeats)
    rows = []
    sizes = sorted({1, min(batched, len(images))})
    cheap = [m for m in methods if lookup(m).cost == "head"]
    costly = [m for m in methods if m not in cheap]
    bar = tqdm(total=len(sizes) * len(methods), desc="timing", unit="call", disable=not progress)
    for b in sizes:
        t = method_seconds(model, images[:b], cheap, repeats=repeats, options=options, forward=True) if cheap else {}
        bar.update(len(cheap))
        for m in cheap:
            rows.append(("method", m, b, t[m].median, t[m].min, t[m].max, repeats))
        forward = t["forward"].median if cheap else pieces["forward"]
        rows.append(("floor", FLOORS["head"], b, forward, forward, forward, repeats))
    passes = {}
    for b in sorted({1, min(costly_batched, len(images))}):
        for m in costly:                                        # warmed up once, at batch 1 (method_seconds)
            t = method_seconds(model, images[:b], [m], options=options, warmup=b == 1)[m]
            rows.append(("method", m, b, t.median, t.min, t.max, 1))
            bar.update(1)
        if "score-cam" in costly:
            passes[b] = score_cam_passes(model, images[:b])
    bar.close()
    one = [r[3] for r in rows if r[0] == "floor" and r[2] == 1]
    if one:                                                   # the forward pass timed in turns, with more repeats
        pieces["forward"] = one[0]
    df = pd.DataFrame(rows, columns=["row", "method", "images", "seconds per image", "min", "max", "calls"])
    floors = []
    for r in df.itertuples():
        if r.row != "method":
            floors.append((None, float("nan")))
        elif lookup(r.method).cost == "head":               # the forward pass of the same batch, timed in turns
            f = df[(df.row == "floor") & (df.images == r.images)]["seconds per image"]
            floors.append((FLOORS["head"], float(f.iloc[0]) if len(f) else pieces["forward"]))
        else:
            floors.append(method_floor(r.method, K, pieces, options.get(r.method), passes=passes.get(r.images)))
    df["floor"] = [f[0] for f in floors]
    df["floor seconds per image"] = [f[1] for f in floors]
    for name in sorted({f[0] for f in floors if f[0] and f[0] != FLOORS["head"]}):   # the other floors as rows
        i = next(i for i, f in enumerate(floors) if f[0] == name)
        sec = floors[i][1]
        df.loc[len(df)] = ["floor", name, df["images"].iloc[i], sec, sec, sec, repeats, None, float("nan")]
    df.insert(2, "call", np.where(df["images"] == 1, "batch 1", "batched"))
    df["x floor"] = df["seconds per image"] / df["floor seconds per image"]
    grad = df[(df.row == "method") & (df.method == "grad-cam")].set_index("call")["seconds per image"]
    df["x Grad-CAM"] = (df["seconds per image"] / df["call"].map(grad)).where(df.row == "method")
    df.attrs.update(K=K, pieces=pieces)
    return df
