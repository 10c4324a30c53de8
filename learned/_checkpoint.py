"""Checkpoint files: atomic writes, corruption-aware reads, and the fingerprint that ties a checkpoint to its run.

A checkpoint folder holds `checkpoint.eqx` (the training state, written atomically) and `checkpoint.json` (what
the run was: its config, loss, initial model, data and key, as readable fields and SHA-256 hashes). `learned.train`
resumes from a checkpoint only when the fingerprint matches the call (`resume="auto"`), so another run's state is
never continued silently.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import pathlib
import re
import tempfile
import types
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, PyTree

if TYPE_CHECKING:
    from ._train import TrainConfig

CHECKPOINT_NAME = "checkpoint.eqx"
FINGERPRINT_NAME = "checkpoint.json"
RESUME_MODES = ("auto", "overwrite", "unchecked")
_FINGERPRINT_FORMAT = 1
_COSMETIC_FIELDS = ("progress", "checkpoint_every", "steps_per_call", "unroll")
"""TrainConfig fields that do not change the step sequence: how often to report and save, and how the steps are
grouped into jitted calls (each step splits its own key, whatever the grouping), so that a run started on a GPU (100
steps per call) resumes on a CPU (2, unrolled); a regrouped run is equal up to floating-point reassociation."""


# ---------------------------------------------------------------------------------------------- checkpoint files
def _write_atomic(path: pathlib.Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write `path` atomically: a temporary file of its own in the same folder (two processes saving into one folder
    never share one), fsync, `os.replace`, then fsync the folder so that the rename itself is on disk."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:  # a platform whose folders cannot be opened (Windows): the file itself is synced
        return
    try:
        os.fsync(folder)
    except OSError:
        pass
    finally:
        os.close(folder)


def _save(path: pathlib.Path, record: tuple) -> None:
    """Write the training record `(state, losses, validation)` atomically (`validation` may be `None`)."""
    _write_atomic(path, lambda f: eqx.tree_serialise_leaves(f, record))


class _Corrupt(Exception):
    pass


def _records(path: pathlib.Path) -> list[tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every `.npy` record in an equinox leaf file, without loading the data.

    Raises `_Corrupt` if the file is not a clean sequence of records (truncated, overwritten, not a checkpoint).
    """
    size = path.stat().st_size
    if size == 0:
        raise _Corrupt("the file is empty")
    out = []
    with open(path, "rb") as f:
        while f.tell() < size:
            start = f.tell()
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except Exception as error:
                raise _Corrupt(f"entry {len(out)} at byte {start} is not a valid array record ({error})") from None
            if dtype.hasobject:
                raise _Corrupt(f"entry {len(out)} at byte {start} holds Python objects, not numbers")
            end = f.tell() + dtype.itemsize * math.prod(shape)
            if end > size:
                raise _Corrupt(f"entry {len(out)} needs {end - size} more bytes than the file holds (truncated)")
            f.seek(end)
            out.append((tuple(shape), dtype))
    return out


def _expected_records(like: PyTree) -> list[tuple[str, tuple[int, ...], np.dtype | None]]:
    """(path, shape, dtype) of the leaves `eqx.tree_serialise_leaves` writes; dtype `None` for Python scalars."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(like)[0]:
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            out.append((jax.tree_util.keystr(path), tuple(leaf.shape), np.dtype(leaf.dtype)))
        elif eqx.is_array_like(leaf):  # a Python scalar: saved as a 0-d array whose dtype follows jax_enable_x64
            out.append((jax.tree_util.keystr(path), (), None))
    return out


def _dtype_matches(disk: np.dtype, want: np.dtype | None) -> bool:
    if want is None:
        return True
    return disk == want or disk.kind == "V" and disk.itemsize == want.itemsize  # bfloat16 is stored as raw bytes


def _fmt(shape, dtype) -> str:
    return f"{'scalar' if dtype is None else np.dtype(dtype).name}[{','.join(map(str, shape))}]"


def _corrupt_message(path: pathlib.Path, detail: str, remedy: str) -> str:
    size = path.stat().st_size if path.exists() else 0
    return (f"Cannot read the checkpoint {path}: the file is corrupt or truncated ({size:,} bytes; {detail}). "
            f"Something other than a completed save wrote it (a full disk, a copy cut short, another program), and "
            f"the training state in it cannot be recovered. {remedy}")


def _load(path: pathlib.Path, like: tuple, remedy: str) -> tuple:
    """Read a checkpoint into the structure of `like`, telling a corrupt file from one of a different model."""
    try:
        records = _records(path)
    except _Corrupt as error:
        raise ValueError(_corrupt_message(path, str(error), remedy)) from None
    expected = _expected_records(like)
    mismatch = None
    for i, ((where, shape, dtype), (disk_shape, disk_dtype)) in enumerate(zip(expected, records)):
        if shape != disk_shape or not _dtype_matches(disk_dtype, dtype):
            where = {"[1]": "losses"}.get(where, where.removeprefix("[0].").replace("[2].", "validation."))
            mismatch = f"entry {i} ({where}) is {_fmt(disk_shape, disk_dtype)} in the file but {_fmt(shape, dtype)} here"
            break
    else:
        if len(records) != len(expected):
            mismatch = f"the file holds {len(records)} arrays, this model and config {len(expected)}"
    if mismatch is not None:
        raise ValueError(
            f"Cannot resume from {path}: it does not match this model and TrainConfig (steps={like[1].shape[0]}): "
            f"{mismatch}. It is a complete checkpoint of a different network or config; use a fresh checkpoint_dir "
            "or the same model and config."
        )
    try:
        with open(path, "rb") as f:
            return eqx.tree_deserialise_leaves(f, like)
    except Exception as error:  # the records looked sound but could not be read back
        raise ValueError(_corrupt_message(path, f"{type(error).__name__}: {error}", remedy)) from error


# ---------------------------------------------------------------------------------------------- fingerprints
def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', None) or type(obj).__qualname__}"


def _scrub(text: str) -> str:
    """A repr without memory addresses (they change from one process to the next)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _code(code: types.CodeType) -> tuple:
    """What a function's code object says that is stable across processes: its global names and its constants
    (nested functions' code objects, recursively); not its bytecode, which changes with the Python version."""
    return code.co_names, tuple(_code(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)


def _cells(function: types.FunctionType) -> tuple:
    out = []
    for cell in function.__closure__ or ():
        try:
            out.append(cell.cell_contents)
        except ValueError:  # a cell not yet filled
            out.append("<empty cell>")
    return tuple(out)


def _feed(h, obj, depth: int = 0, active: tuple[int, ...] = (), by_name: bool = False) -> None:
    """Feed a canonical description of `obj` (structure, static fields and array bytes) into the hash `h`.

    A Python function is described by its name, its code's constants and global names, its defaults and the values it
    closes over, so that two closures of one factory with different settings (a loss weight) hash differently;
    `active` holds the functions being described, so that a function that closes over itself ends. `by_name`: the
    description of fingerprints written before functions were described (`sha256_v1`): functions and methods by name,
    sets by their repr."""
    if depth > 200:
        h.update(b"<deep>")
        return
    if isinstance(obj, (jax.Array, np.ndarray, np.generic)):
        if jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
            h.update(f"key {jax.random.key_impl(obj)};".encode())
            obj = jax.random.key_data(obj)
        a = np.asarray(obj)
        h.update(f"array {a.dtype.str} {a.shape};".encode())
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
    elif obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        h.update(f"{type(obj).__name__} {obj!r};".encode())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # eqx.Module and frozen configs
        h.update(f"{_qualname(type(obj))}(".encode())
        for field in dataclasses.fields(obj):
            h.update(f"{field.name}=".encode())
            _feed(h, getattr(obj, field.name, None), depth + 1, active, by_name)
        h.update(b")")
    elif isinstance(obj, (tuple, list)):
        h.update(f"{_qualname(type(obj))}[{len(obj)}](".encode())
        for item in obj:
            _feed(h, item, depth + 1, active, by_name)
        h.update(b")")
    elif isinstance(obj, dict):
        h.update(f"dict[{len(obj)}](".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k, depth + 1, active, by_name)
            _feed(h, obj[k], depth + 1, active, by_name)
        h.update(b")")
    elif isinstance(obj, functools.partial):
        h.update(b"partial(")
        _feed(h, (obj.func, obj.args, obj.keywords), depth + 1, active, by_name)
        h.update(b")")
    elif isinstance(obj, (set, frozenset)) and not by_name:  # in an order that does not depend on the process's hash seed
        h.update(f"{type(obj).__name__}[{len(obj)}](".encode())
        for item in sorted(obj, key=repr):
            _feed(h, item, depth + 1, active, by_name)
        h.update(b")")
    elif isinstance(obj, types.MethodType) and not by_name:
        h.update(b"method(")
        _feed(h, (obj.__func__, obj.__self__), depth + 1, active, by_name)
        h.update(b")")
    elif isinstance(obj, types.FunctionType) and not by_name:
        if id(obj) in active:
            h.update(f"function {_qualname(obj)} (itself);".encode())
            return
        h.update(f"function {_qualname(obj)}(".encode())
        _feed(h, (_code(obj.__code__), obj.__defaults__, obj.__kwdefaults__, _cells(obj)), depth + 1,
              (*active, id(obj)), by_name)
        h.update(b")")
    elif callable(obj):  # jitted functions, builtins, classes (and with by_name every function): by name
        h.update(f"callable {_qualname(obj)};".encode())
    else:
        h.update(f"{_qualname(type(obj))} {_scrub(repr(obj))};".encode())


def _sha256(obj, *, by_name: bool = False) -> str:
    h = hashlib.sha256()
    _feed(h, obj, by_name=by_name)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for name in ("separability", "jax", "jaxlib", "equinox", "optax", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _fingerprint(config: TrainConfig, loss, model, host_x: np.ndarray, host_y: np.ndarray | None,
                 key_data: Array, validation: tuple[np.ndarray, np.ndarray | None] | None = None) -> dict:
    """What a checkpoint was trained on: the config, loss, initial model, data, held-out data and key (JSON-ready).

    The loss and model carry two hashes: `sha256` (functions described by their code's constants and the values
    they close over) and `sha256_v1` (functions by name, as fingerprints written before), against which a checkpoint
    written before is checked, so that it still resumes."""
    params = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    config_fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in _COSMETIC_FIELDS}

    def data(a):
        return None if a is None else {"shape": list(a.shape), "dtype": a.dtype.name, "sha256": _sha256(a)}

    def hashes(obj):
        return {"sha256": _sha256(obj), "sha256_v1": _sha256(obj, by_name=True)}

    loss_repr = _scrub(repr(loss))
    fingerprint = {
        "format": _FINGERPRINT_FORMAT,
        "written_by": _versions(),
        "config": config_fields,
        "loss": {"type": type(loss).__name__, "repr": loss_repr[:2000], **hashes(loss)},
        "model": {"type": type(model).__name__, "parameters": int(sum(p.size for p in params)), **hashes(model)},
        "data_x": data(host_x),
        "data_y": data(host_y),
        "validation_x": None if validation is None else data(validation[0]),
        "validation_y": None if validation is None else data(validation[1]),
        "key": {"impl": str(jax.random.key_impl(jax.random.wrap_key_data(key_data))),
                "data": [int(v) for v in np.asarray(key_data).reshape(-1)]},
    }
    return json.loads(json.dumps(fingerprint))  # the form it takes on disk (tuples as lists)


def _summary(item: str, entry: dict | None) -> str:
    """One fingerprint item in words, for an error message."""
    if entry is None:
        return "None"
    if item == "model":
        return f"{entry.get('type')} with {entry.get('parameters')} parameters, initial values sha256 {str(entry.get('sha256'))[:12]}"
    if item == "loss":
        return f"{entry.get('type')} sha256 {str(entry.get('sha256'))[:12]}"
    if item == "key":
        return f"key data {entry.get('data')}"
    return f"shape {tuple(entry.get('shape', ()))} {entry.get('dtype')} sha256 {str(entry.get('sha256'))[:12]}"


def _differences(recorded: dict, current: dict) -> list[tuple[str, str]]:
    """(item, description) for every item of the fingerprint that differs; package versions and the cosmetic config
    fields (which fingerprints written before recorded) are not compared."""
    out = []
    old_cfg, new_cfg = recorded.get("config") or {}, current["config"]
    changed = [n for n in sorted(set(old_cfg) | set(new_cfg))
               if n not in _COSMETIC_FIELDS and json.dumps(old_cfg.get(n)) != json.dumps(new_cfg.get(n))]
    if changed:
        out.append(("config", "config: " + "; ".join(
            f"{n} {json.dumps(old_cfg.get(n))} in the checkpoint, {json.dumps(new_cfg.get(n))} now" for n in changed)))
    for item in ("loss", "model", "data_x", "data_y", "validation_x", "validation_y", "key"):
        old, new = recorded.get(item), current[item]
        if item in ("loss", "model"):
            # a fingerprint written before functions were described has only the by-name hash
            which = "sha256" if "sha256_v1" in (old or {}) else "sha256_v1"
            same = (old or {}).get("sha256") == new[which]
        elif item.startswith("validation") and item not in recorded:
            # written before held-out data were recorded: nothing to compare, so it is taken as the same
            if new is not None:
                warnings.warn(f"the checkpoint does not record its held-out data ({item}); resuming assumes this call's "
                              "are the ones it was trained with.", stacklevel=4)
            continue
        else:
            same = old == new
        if not same:
            out.append((item, f"{item}: {_summary(item, old)} in the checkpoint, {_summary(item, new)} now"))
    return out


def _remedy(folder: pathlib.Path) -> str:
    return (f"Use a new checkpoint_dir, delete {folder}, or pass resume=\"overwrite\" to train afresh there "
            "(or resume=\"unchecked\" to resume from it regardless).")


def _read_fingerprint(folder: pathlib.Path) -> dict:
    path = folder / FINGERPRINT_NAME
    if not path.exists():
        raise ValueError(
            f"Cannot resume from {folder}: {CHECKPOINT_NAME} has no {FINGERPRINT_NAME} beside it (it was written by an "
            "older version, or the file was removed), so nothing says which model, data, key, loss and config it was "
            f"trained on. {_remedy(folder)}"
        )
    try:
        recorded = json.loads(path.read_text())
        if not isinstance(recorded, dict) or recorded.get("format") != _FINGERPRINT_FORMAT:
            raise ValueError(f"not a format-{_FINGERPRINT_FORMAT} fingerprint")
    except ValueError as error:  # json.JSONDecodeError is a ValueError; so is UnicodeDecodeError
        raise ValueError(
            f"Cannot resume from {folder}: {path} is corrupt ({path.stat().st_size:,} bytes; {error}), so the checkpoint "
            f"beside it cannot be checked. {_remedy(folder)}"
        ) from None
    return recorded


def _write_fingerprint(folder: pathlib.Path, fingerprint: dict) -> None:
    _write_atomic(folder / FINGERPRINT_NAME, lambda f: json.dump(fingerprint, f, indent=1), mode="w")


def _open_checkpoint(folder: pathlib.Path, fingerprint: dict, like: tuple, resume: str):
    """The state to start from (fresh or resumed) after checking, writing or replacing the folder's fingerprint."""
    path = folder / CHECKPOINT_NAME
    if resume == "overwrite" or not path.exists():
        if path.exists():
            warnings.warn(f"resume=\"overwrite\": deleting the checkpoint in {folder} and training afresh from step 0.",
                          stacklevel=3)
            path.unlink()  # before the new fingerprint, so a stale checkpoint never sits beside it
        _write_fingerprint(folder, fingerprint)
        return like
    if resume == "auto":
        differences = _differences(_read_fingerprint(folder), fingerprint)
        if differences:
            names = ", ".join(name for name, _ in differences)
            details = "".join(f"\n  - {text}" for _, text in differences)
            raise ValueError(
                f"Cannot resume from {folder}: its checkpoint was trained with a different {names} than this call."
                f"{details}\nResuming would silently continue another run. {_remedy(folder)}"
            )
        return _load(path, like, f"Delete {path} (or pass resume=\"overwrite\") to train afresh.")
    # "unchecked": resume from whatever is there, and record this call as its owner.
    try:
        differences = ", ".join(name for name, _ in _differences(_read_fingerprint(folder), fingerprint))
        doubt = differences and f"although it differs from this call in {differences}"
    except ValueError:
        doubt = f"without checking it: its {FINGERPRINT_NAME} fingerprint is missing or unreadable"
    loaded = _load(path, like, f"Delete {path} (or pass resume=\"overwrite\") to train afresh.")
    if doubt:
        warnings.warn(f"resume=\"unchecked\": resuming from {path} {doubt}.", stacklevel=3)
    _write_fingerprint(folder, fingerprint)
    return loaded
