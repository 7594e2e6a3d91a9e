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

__all__ = ["folder", "model_digest", "module_settings", "image_digest", "source_digest", "key_string", "path_for",
           "read", "write", "atomic_write", "clean_stale", "STALE_SECONDS"]

#: a temporary file older than this (seconds) belongs to a run that died; :func:`clean_stale` removes it
STALE_SECONDS = 3600.0


def folder(kind: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/<kind>``, else ``$LIFTCAM_CACHE/<kind>``, else ``<repo>/data/cache/<kind>`` (git-ignored)."""
    if cache_dir is None:
        root = os.environ.get("LIFTCAM_CACHE")
        cache_dir = Path(root) if root else REPO / "data" / "cache"
    return Path(cache_dir) / kind


def _tensor_bytes(t: torch.Tensor) -> bytes:
    """A tensor's values at its stored precision: the float32 bytes where float32 holds every value exactly
    (the keys of float32 models and images are those of earlier versions), else the stored bytes."""
    t = t.detach().to("cpu").contiguous()
    if t.dtype != torch.float32 and not t.is_complex():
        f = t.to(torch.float32)
        if torch.equal(f.to(t.dtype), t):
            t = f
    if t.dtype == torch.float32:
        return t.numpy().tobytes()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _update_tensor(h, t: torch.Tensor) -> None:
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(_tensor_bytes(t))


def weights_digest(model: nn.Module) -> str:
    """sha256 of every parameter and buffer (dtype, shape, values at their precision) in order; names left out."""
    h = hashlib.sha256()
    for t in [*model.parameters(), *model.buffers()]:
        _update_tensor(h, t)
    return h.hexdigest()


#: a module's own attributes that do not change what it computes (torch's bookkeeping, hooks are not
#: hashable by content; ``verified``, ``check_every_call`` and ``_reference`` of a SplitModel: how the split is
#: checked, not what it computes; fx's graph, hashed as its code)
_NOT_SETTINGS = {"training", "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "verified",
                 "check_every_call", "_reference", "categories", "preprocess", "name", "_graph", "_code", "_tracer_cls",
                 "_tracer_extras", "meta", "_erased", "_in_spec", "_out_spec", "_lineno_map", "_prologue_start",
                 "_compiled_call_impl"}


def _stable(value, depth: int = 0) -> str:
    """A text of ``value`` that is the same in every process (no memory addresses, sets sorted); tensors by
    their bytes at their precision; objects by their type and their own attributes."""
    if depth > 6:
        return "..."
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return repr(value)
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, torch.Tensor):
        return f"tensor{value.dtype}{tuple(value.shape)}:{hashlib.sha256(_tensor_bytes(value)).hexdigest()}"
    if isinstance(value, (torch.dtype, torch.device, torch.Size, torch.memory_format)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[{', '.join(_stable(v, depth + 1) for v in value)}]"
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}{{{', '.join(sorted(_stable(v, depth + 1) for v in value))}}}"
    if isinstance(value, dict):
        items = sorted((_stable(k, depth + 1), _stable(v, depth + 1)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, np.ndarray):
        return f"ndarray{value.dtype}{value.shape}:{hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}"
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, nn.Module):
        return f"module {type(value).__module__}.{type(value).__qualname__}"   # its own entry covers its settings
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)) or callable(value) \
            and hasattr(value, "__qualname__"):
        where = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', getattr(value, '__name__', ''))}"
        code = getattr(value, "__code__", None)
        return where + (f":{hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]}"
                        if code is not None and "<lambda>" in where else "")
    own = getattr(value, "__dict__", None)
    if isinstance(own, dict):
        return f"{type(value).__module__}.{type(value).__qualname__}{_stable(own, depth + 1)}"
    return f"{type(value).__module__}.{type(value).__qualname__}"


def module_settings(m: nn.Module) -> str:
    """A module's own settings: every attribute that is not a parameter, buffer or submodule (``extra_repr``
    leaves some out: AvgPool2d's ``count_include_pad``, Upsample's ``align_corners``), as stable text."""
    own = {k: v for k, v in vars(m).items() if k not in _NOT_SETTINGS and not k.endswith("hooks")
           and not k.startswith("_forward_") and not k.startswith("_backward_") and not k.startswith("_state_dict")
           and not k.startswith("_load_state_dict")}
    return _stable(own)


def model_digest(model: nn.Module) -> str:
    """sha256 of what a model computes: its weights, the code of its ``torch.fx`` graphs and the
    type, settings (``extra_repr``) and every other plain attribute (:func:`module_settings`) of each submodule."""
    h = hashlib.sha256(weights_digest(model).encode())
    for name, m in model.named_modules():
        h.update(f"{name}:{type(m).__module__}.{type(m).__qualname__}({m.extra_repr()})".encode())
        h.update(module_settings(m).encode())
        if isinstance(m, torch.fx.GraphModule):
            h.update(m.code.encode())
    return h.hexdigest()


def image_digest(image: torch.Tensor) -> str:
    """sha256 of one image (3, H, W): its shape and its values (the float32 bytes where float32 holds them
    exactly, else the bytes at the image's own precision, with its dtype)."""
    x = image.detach().to("cpu").contiguous()
    exact = x.dtype == torch.float32 or torch.equal(x.to(torch.float32).to(x.dtype), x)
    prefix = f"{tuple(x.shape)}" if exact else f"{x.dtype}{tuple(x.shape)}"
    return hashlib.sha256(prefix.encode() + _tensor_bytes(x)).hexdigest()


def _referenced(obj) -> list:
    """What a function's or class's code names in its module: liftcam functions and classes, the methods and
    properties of liftcam classes there that it reads as attributes (``batch.scores``), and module-level
    tables (tuples, sets, dicts: ``ACTIVATION_MODULES``), these as stable text."""
    codes, scope = [], getattr(obj, "__globals__", None)
    if isinstance(obj, type):
        scope = vars(inspect.getmodule(obj))
        codes = [f.__code__ for f in vars(obj).values() if isinstance(f, types.FunctionType)]
        codes += [f.fget.__code__ for f in vars(obj).values() if isinstance(f, property) and f.fget is not None]
    elif isinstance(obj, types.FunctionType):
        codes = [obj.__code__]
    names = set()
    while codes:
        c = codes.pop()
        names.update(c.co_names)
        codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    if scope is None:
        return []
    found = []
    ours = lambda f: (getattr(f, "__module__", "") or "").startswith("liftcam")  # noqa: E731
    for n in sorted(names):
        if n in scope:
            v = scope[n]
            if isinstance(v, (types.FunctionType, type)) and ours(v):
                found.append(v)
            elif isinstance(v, (tuple, list, set, frozenset, dict)):
                found.append(_Table(n, v))
    for cls in [v for v in scope.values() if isinstance(v, type) and ours(v)]:
        for n in sorted(names & set(vars(cls))):
            attr = vars(cls)[n]
            attr = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
            if isinstance(attr, types.FunctionType):
                found.append(attr)
    return found


class _Table:
    """A module-level table a rule reads (``ACTIVATION_MODULES``): hashed by its stable text."""

    def __init__(self, name: str, value):
        self.name, self.value = name, value

    def source(self) -> str:
        return f"{self.name} = {_stable(self.value)}"


def source_digest(fn) -> str:
    """sha256 of the source of ``fn`` and of every liftcam function, class, method read through an attribute
    and module-level table it uses (:func:`_referenced`), transitively: an edited rule, helper or table is a
    new key; an edit elsewhere in its module is not."""
    h, seen, todo = hashlib.sha256(), set(), [fn]
    while todo:
        f = todo.pop()
        ident = ("table", f.name, id(f.value)) if isinstance(f, _Table) else id(f)   # a _Table is made anew
        if ident in seen:
            continue
        seen.add(ident)
        if isinstance(f, _Table):
            h.update(f.source().encode())
            continue
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
    """Save ``arrays`` with their key and the sha256 of their bytes, atomically. NaN or inf is refused
    (a ValueError): :func:`read` would reject the file, and the result would be recomputed on every call."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    bad = [k for k, a in arrays.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        raise ValueError(f"refusing to cache NaN or inf in {', '.join(bad)} ({path}): the result is undefined")
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
