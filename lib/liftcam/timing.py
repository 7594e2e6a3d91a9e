"""Cost of each method, measured in one run on the same hardware (PAPER.md section 4, "Cost").

    >>> t = seconds_per_image(s, images, ["grad-cam", "lift-cam", "score-cam"])
    >>> t["lift-cam"] / t["grad-cam"]                 # the ratio is what carries across machines
"""
from __future__ import annotations

import time
from typing import Iterable

import torch

from .core import explain

__all__ = ["seconds_per_image"]


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        times = []
        for _ in range(repeats):
            _sync(dev)
            t0 = time.perf_counter()
            explain(model, images, method=m, **opts)
            _sync(dev)
            times.append((time.perf_counter() - t0) / len(images))
        out[m] = sorted(times)[len(times) // 2]
    return out
