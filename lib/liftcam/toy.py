"""A small CNN trained in seconds on scikit-learn's bundled digits: few enough maps for exact Shapley values.

The derivation (notebook 01) needs a real trained network whose target layer has so few maps
(K <= 16) that the Shapley values can be computed exactly from all 2^K coalitions. The digits
(1797 images of 8 x 8 pixels, values 0..16) ship with scikit-learn: no download.

    >>> net, x, y = digits_cnn(seed=0)               # x: held-out digits (N, 3, 8, 8) in [0, 1]
    >>> s = liftcam.models.split(net, "relu2")       # 12 maps of 8 x 8; head conv-ReLU-GAP-fc
    >>> phi, phi0 = liftcam.exact_shapley(s.head, s.body(x[:4]), y[:4])

Layers: ``relu2`` (12 maps, a non-linear head: conv 3x3, ReLU, global average pooling, fc) and
``relu3`` (16 maps, a linear head: global average pooling, fc, where LIFT-CAM equals SHAP).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["digits", "digits_net", "digits_cnn", "accuracy"]


def digits(seed: int = 0, test_size: float = 0.25) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits as (x_train, y_train, x_test, y_test); x (N, 3, 8, 8) in [0, 1].

    The grey value (0..16) is divided by 16 and copied to three channels, so that the images
    are what :func:`liftcam.explain` takes. The split is a permutation drawn from ``seed``.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).div(16.0)[:, None].expand(-1, 3, -1, -1).contiguous()
    y = torch.as_tensor(d.target, dtype=torch.long)
    order = torch.as_tensor(np.random.default_rng(seed).permutation(len(y)))
    n_test = int(round(test_size * len(y)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def digits_net(maps: int = 12, last: int = 16, classes: int = 10) -> nn.Sequential:
    """The untrained toy CNN: conv-ReLU (16), conv-ReLU (``maps``: ``relu2``), conv-ReLU (``last``: ``relu3``),
    global average pooling, fc."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 16, 3, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(16, maps, 3, padding=1)), ("relu2", nn.ReLU()),           # (B, maps, 8, 8)
        ("conv3", nn.Conv2d(maps, last, 3, padding=1)), ("relu3", nn.ReLU()),         # (B, last, 8, 8)
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(last, classes)),
    ]))


def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Share of ``images`` whose arg-max logit is the label (model run in no-grad mode)."""
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def digits_cnn(seed: int = 0, epochs: int = 12, *, maps: int = 12, last: int = 16, batch_size: int = 32,
               lr: float = 1e-2, test_size: float = 0.25) -> tuple[nn.Module, Tensor, Tensor]:
    """Train :func:`digits_net` on the digits; return ``(model in eval mode, x_test, y_test)``.

    Adam with a one-cycle learning rate (peak ``lr``), cross-entropy, ``epochs`` passes over
    the 75 % training split: a few seconds. Deterministic for a seed: the weights, the split and
    the batch order all come from ``seed``, and training runs on one CPU thread (so the float
    sums do not depend on the number of cores); the global torch RNG and thread count are left
    as they were. With the defaults the held-out accuracy is about 0.95 (at least 0.9).
    """
    x, y, x_test, y_test = digits(seed, test_size)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = digits_net(maps, last)
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        steps = epochs * ((len(y) + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(1, steps))
        net.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=g).split(batch_size):
                opt.zero_grad()
                F.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval(), x_test, y_test
