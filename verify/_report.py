"""Shared plumbing for results: versions, device, atomic JSON writing."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Mapping
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


def check_instance(instance) -> None:
    """The `instance` argument of an experiment's `run`: extra entries of its results' `instance` block, or None."""
    if instance is not None and not isinstance(instance, Mapping):
        raise ValueError(f"instance must be a mapping of extra instance entries (e.g. {{'seed': 0}}) or None; "
                         f"got {instance!r}.")


def config_dict(config) -> dict:
    """The fields of a frozen config dataclass for a results file: numbers, strings, tuples and `None` as they are,
    anything else (a dtype, a nested object) by its name or `str`."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        plain = isinstance(value, (int, float, bool, str, tuple, type(None)))
        out[field.name] = value if plain else str(getattr(value, "__name__", value))
    return out


def curves_of(estimates: dict) -> dict:
    """The `curves` block of a results.json: `{name: curve}` for each `Estimate` that has a curve (`None` and
    curve-less estimates are left out), each its `to_dict(curves=True)` without the value and stderr."""
    return {name: {k: v for k, v in est.to_dict(curves=True).items() if k not in ("value", "stderr")}
            for name, est in estimates.items() if est is not None and est.times is not None}


def to_json_value(obj):
    """`obj` as plain JSON values: NumPy/JAX arrays and scalars to lists and numbers, objects with `to_dict` through
    it, paths to strings, and NaN or infinity to `null` (strict JSON, which every parser reads)."""
    if isinstance(obj, dict):
        return {str(k): to_json_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_value(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return to_json_value(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):  # NumPy scalars: float64, int32, bool_, ...
        return to_json_value(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "to_dict"):
        return to_json_value(obj.to_dict())
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_atomically(path: str | os.PathLike, write, *, binary: bool = False) -> Path:
    """Write a file atomically: `write(fh)` fills a temporary file of this call's own in the same folder, which is
    synced to disk and then renamed over `path`, so a crash or a power cut leaves the old file or the new, never half
    of one, and two writers never share a temporary file. The file is readable by all (mode 0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write `payload` as indented, strict JSON (NaN and infinity as `null`), atomically (`write_atomically`)."""
    text = json.dumps(to_json_value(payload), indent=2, allow_nan=False) + "\n"
    return write_atomically(path, lambda fh: fh.write(text))
