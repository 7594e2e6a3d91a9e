"""Results kept on disk by content: one small ``.npz`` per result, written atomically.

The explanation cache (:mod:`liftcam.explaining`) and the SHAP ground truth
(:func:`liftcam.shapley.ground_truth`) both keep one file per (model, layer, image, method,
options, target). A file's name is the sha256 of its *key*, a JSON record of everything that
decides the result:

- the model: its weights, its split (the ``torch.fx`` code of body and head) and the type and
  settings of every submodule (:func:`model_digest`), so that swapping ReLU for GELU is a new key;
- the image bytes (:func:`image_digest`), the target class, the options;
- the method's rule: the source of the rule and of every liftcam function it calls
  (:func:`source_digest`).

A file also stores a sha256 of its own arrays; :func:`read` returns None (and the caller
recomputes) for a missing file, another key, a damaged or edited payload, a wrong shape or a
non-finite value. :func:`atomic_write` writes through a temporary file and ``os.replace``, so an
interrupted run never leaves half a file; :func:`clean_stale` removes temporary files that a
killed run left behind.

    >>> path = cache.path_for(cache.folder("maps"), key)
    >>> cache.write(path, key, alpha=alpha)
    >>> cache.read(path, key, alpha=(K,))["alpha"]
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .paths import REPO

__all__ = ["folder", "model_digest", "image_digest", "source_digest", "key_string", "path_for", "read", "write",
           "atomic_write", "clean_stale", "STALE_SECONDS"]

#: a temporary file older than this (seconds) belongs to a run that died; :func:`clean_stale` removes it
STALE_SECONDS = 3600.0


def folder(kind: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/<kind>``, else ``$LIFTCAM_CACHE/<kind>``, else ``<repo>/data/cache/<kind>`` (git-ignored)."""
    if cache_dir is None:
        root = os.environ.get("LIFTCAM_CACHE")
        cache_dir = Path(root) if root else REPO / "data" / "cache"
    return Path(cache_dir) / kind


def _update_tensor(h, t: torch.Tensor) -> None:
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def weights_digest(model: nn.Module) -> str:
    """sha256 of every parameter and buffer (dtype, shape, float32 bytes) in order; names left out."""
    h = hashlib.sha256()
    for t in [*model.parameters(), *model.buffers()]:
        _update_tensor(h, t)
    return h.hexdigest()


def model_digest(model: nn.Module) -> str:
    """sha256 of what a model computes: its weights, the code of its ``torch.fx`` graphs and the
    type and settings (``extra_repr``) of every submodule."""
    h = hashlib.sha256(weights_digest(model).encode())
    for name, m in model.named_modules():
        h.update(f"{name}:{type(m).__module__}.{type(m).__qualname__}({m.extra_repr()})".encode())
        if isinstance(m, torch.fx.GraphModule):
            h.update(m.code.encode())
    return h.hexdigest()


def image_digest(image: torch.Tensor) -> str:
    """sha256 of one image (3, H, W): its shape and the bytes of the float32 CPU tensor."""
    x = image.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(f"{tuple(x.shape)}".encode() + x.numpy().tobytes()).hexdigest()


def _referenced(obj) -> list:
    """The liftcam functions and classes that a function's or class's code names."""
    codes, scope = [], getattr(obj, "__globals__", None)
    if isinstance(obj, type):
        scope = vars(inspect.getmodule(obj))
        codes = [f.__code__ for f in vars(obj).values() if isinstance(f, types.FunctionType)]
    elif isinstance(obj, types.FunctionType):
        codes = [obj.__code__]
    names = set()
    while codes:
        c = codes.pop()
        names.update(c.co_names)
        codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    found = [scope[n] for n in sorted(names) if scope is not None and n in scope]
    return [f for f in found if isinstance(f, (types.FunctionType, type))
            and (getattr(f, "__module__", "") or "").startswith("liftcam")]


def source_digest(fn) -> str:
    """sha256 of the source of ``fn`` and of every liftcam function or class it calls, transitively:
    an edited rule, or an edited helper of it, is a new key; an edit elsewhere in its module is not."""
    h, seen, todo = hashlib.sha256(), set(), [fn]
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        try:
            h.update(inspect.getsource(f).encode())
        except (OSError, TypeError):  # pragma: no cover - defined where no source is kept
            h.update(getattr(f, "__qualname__", repr(f)).encode())
        todo.extend(_referenced(f))
    return h.hexdigest()


def key_string(key: dict) -> str:
    """The canonical JSON text of a key (sorted, non-JSON values by ``repr``)."""
    return json.dumps(key, sort_keys=True, default=repr)


def path_for(where: Path, key: str) -> Path:
    """``<where>/<sha256 of key>.npz``."""
    return Path(where) / f"{hashlib.sha256(key.encode()).hexdigest()}.npz"


def _payload_digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write(path: Path, key: str, **arrays) -> Path:
    """Save ``arrays`` with their key and the sha256 of their bytes, atomically."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays, key=np.array(key), digest=np.array(_payload_digest(arrays)))
    return atomic_write(path, buf.getvalue())


def read(path: Path, key: str, **shapes) -> dict | None:
    """The arrays stored for ``key`` (those named in ``shapes``, each checked for its shape, ``None``
    for any), or None when the file is absent, unreadable, made for another key, damaged, or holds a
    non-finite value: the caller recomputes (a warning says why, except for an absent file)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            stored, digest = str(f["key"]), str(f["digest"])
            arrays = {name: f[name] for name in f.files if name not in ("key", "digest")}
    except Exception as e:  # a file cut short outside this module, or garbage
        warnings.warn(f"ignoring unreadable cache file {path} ({type(e).__name__}: {e}); recomputing it", stacklevel=3)
        return None
    problem = None
    if stored != key:
        problem = "it holds another key"
    elif _payload_digest(arrays) != digest:
        problem = "its arrays do not match their stored sha256 (damaged or edited)"
    else:
        for name, shape in shapes.items():
            a = arrays.get(name)
            if a is None or (shape is not None and a.shape != tuple(shape)):
                problem = f"its {name!r} has shape {None if a is None else a.shape}, expected {tuple(shape)}"
            elif a.dtype.kind == "f" and not np.isfinite(a).all():
                problem = f"its {name!r} holds NaN or inf"
            if problem:
                break
    if problem:
        warnings.warn(f"ignoring cache file {path}: {problem}; recomputing it", stacklevel=3)
        return None
    return arrays


def atomic_write(path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)              # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def clean_stale(where: Path, max_age: float = STALE_SECONDS) -> int:
    """Remove the ``.tmp-*`` files older than ``max_age`` seconds that killed runs left in ``where``
    (younger ones may belong to a run writing right now). Returns how many were removed."""
    where, now, removed = Path(where), time.time(), 0
    if not where.is_dir():
        return 0
    for p in where.glob(".tmp-*"):
        try:
            if now - p.stat().st_mtime > max_age:
                p.unlink()
                removed += 1
        except FileNotFoundError:  # another process cleaned it first
            pass
    return removed
