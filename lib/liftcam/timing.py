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

import torch

from .core import explain

__all__ = ["seconds_per_image", "Timing", "measure", "interleaved", "Memory", "peak_memory", "rss"]


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
    try:
        result = fn()
        _sync(device if cuda else None)
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], rss())
    extra_cuda = torch.cuda.max_memory_allocated(device) - cuda0 if cuda else None
    return Memory(peak[0] - start, extra_cuda, result)


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
