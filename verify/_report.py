"""Shared plumbing for results: versions, device, atomic JSON writing."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from importlib import metadata
from pathlib import Path

import jax
import numpy as np

_PACKAGES = ("separability", "jax", "jaxlib", "equinox", "diffrax", "optax", "numpy", "scipy")


def versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on, plus Python's."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device() -> str:
    """A human-readable description of the default JAX device."""
    d = jax.devices()[0]
    kind = getattr(d, "device_kind", d.platform)
    return f"{d.platform}:{kind} x{jax.device_count()} ({platform.processor() or platform.machine()}, {os.cpu_count()} cpus)"


def provenance(start: float) -> dict:
    """The closing keys of every results file: package `versions`, the `device`, and `wall_time_s` since `start`
    (a `time.perf_counter()` reading)."""
    return {"versions": versions(), "device": device(), "wall_time_s": time.perf_counter() - start}


def _default(obj):
    if isinstance(obj, np.generic):  # NumPy scalars: float64, int32, bool_, ...
        return obj.item()
    if isinstance(obj, (np.ndarray, jax.Array)):
        return np.asarray(obj).tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write `payload` as indented JSON atomically (temp file + rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, default=_default, allow_nan=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
