"""Training loop: Adam(W) + EMA, scanned steps under one `eqx.filter_jit`, fingerprinted atomic checkpoints, exact resume."""

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
import sys
import warnings
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, PyTree, UInt32
from tqdm.auto import tqdm

from ._loss import DEMLoss
from ._parallel import DataParallel

CHECKPOINT_NAME = "checkpoint.eqx"
FINGERPRINT_NAME = "checkpoint.json"
RESUME_MODES = ("auto", "overwrite", "unchecked")
_FINGERPRINT_FORMAT = 1
_COSMETIC_FIELDS = ("progress", "checkpoint_every")  # TrainConfig fields that do not change the trained weights


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    r"""Optimisation settings (frozen: hashable and static under jit).

    **Arguments:**

    - `steps`: total optimiser steps.
    - `batch_size`: data points per step (drawn with replacement from the data held on device).
    - `lr`: Adam's peak learning rate.
    - `warmup_steps`: linear warm-up from 0 to `lr`.
    - `final_lr_fraction`: cosine decay from `lr` to `lr * final_lr_fraction` after warm-up (1 = constant).
    - `max_grad_norm`: global gradient-norm clipping, or `None`.
    - `ema_decay`: EMA decay $d$; step t uses $\min(d, (1 + t)/(10 + t))$ so early averages are not stale
      (0: the EMA model is the raw model).
    - `steps_per_call`: optimiser steps scanned inside one jitted call.
    - `checkpoint_every`: steps between checkpoints, a multiple of `steps_per_call`.
    - `progress`: show a tqdm progress bar with the running loss.
    - `unroll`: `jax.lax.scan`'s unroll factor for the scanned steps (`True`: fully unrolled, no loop). On a CPU,
      XLA runs convolutions whose weights are loop-carried about 30x slower inside a loop, so convolutional
      networks train fastest there with a few `steps_per_call` fully unrolled; keep the default 1 on a GPU.
    - `weight_decay`: decoupled weight decay $\lambda$ (AdamW, `optax.adamw`: each step subtracts
      $\mathrm{lr}(t)\,\lambda\,\theta$); 0 is plain Adam.
    """

    steps: int = 10_000
    batch_size: int = 512
    lr: float = 1e-3
    warmup_steps: int = 0
    final_lr_fraction: float = 1.0
    max_grad_norm: float | None = None
    ema_decay: float = 0.999
    steps_per_call: int = 100
    checkpoint_every: int = 1_000
    progress: bool = True
    unroll: int | bool = 1
    weight_decay: float = 0.0

    def __post_init__(self):
        for name in ("steps", "batch_size", "steps_per_call", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer; got {value!r}.")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be a non-negative integer; got {self.warmup_steps!r}.")
        if self.checkpoint_every % self.steps_per_call:
            raise ValueError(
                f"TrainConfig.checkpoint_every ({self.checkpoint_every}) must be a multiple of steps_per_call "
                f"({self.steps_per_call}), so a resumed run repeats the same jitted calls."
            )
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be a finite number > 0; got {self.lr!r}.")
        if not (isinstance(self.final_lr_fraction, (int, float)) and 0 <= self.final_lr_fraction <= 1):
            raise ValueError(f"TrainConfig.final_lr_fraction must lie in [0, 1]; got {self.final_lr_fraction!r}.")
        if self.max_grad_norm is not None and not (
            isinstance(self.max_grad_norm, (int, float)) and math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0
        ):
            raise ValueError(f"TrainConfig.max_grad_norm must be a finite number > 0 or None; got {self.max_grad_norm!r}.")
        if not (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1):
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1); got {self.ema_decay!r}.")
        if not (isinstance(self.unroll, bool) or isinstance(self.unroll, int) and self.unroll >= 1):
            raise ValueError(f"TrainConfig.unroll must be True, False or a positive integer; got {self.unroll!r}.")
        wd = self.weight_decay
        if isinstance(wd, bool) or not (isinstance(wd, (int, float)) and math.isfinite(wd) and wd >= 0):
            raise ValueError(f"TrainConfig.weight_decay must be a finite number >= 0; got {wd!r}.")


@runtime_checkable
class TrainingLoss(Protocol):
    r"""What `train` minimises: `loss(model, x, y, *, key)`, a scalar estimate of the objective on one minibatch.

    `DEMLoss` (the denoising entropy-matching loss, Eq. 40) and `ClassifierLoss` (softmax cross-entropy) follow it;
    so does any callable with this signature. It is called inside `jax.value_and_grad` under `eqx.filter_jit`, so it
    must be a pure JAX function of its arguments, and hashable where it is not an array (an `eqx.Module` is).
    """

    def __call__(
        self, model: Any, x: Float[Array, "batch ..."], y: Array | None, *, key: PRNGKeyArray
    ) -> Float[Array, ""]:
        """The minibatch loss.

        **Arguments:**

        - `model`: the model being trained (its current parameters).
        - `x`: a minibatch of `data_x`, in the model's parameter dtype.
        - `y`: the aligned rows of `data_y` (conditions or integer labels), or `None`.
        - `key`: a fresh PRNG key for this step (noise, times, dropout), keyword-only.

        **Returns:**

        A scalar to minimise.
        """


class TrainResult(eqx.Module):
    """What `train` returns: the last weights, their EMA (use this one for evaluation), the per-step losses."""

    model: eqx.Module
    ema_model: eqx.Module
    losses: Float[np.ndarray, " steps"]


class _State(eqx.Module):
    step: Int[np.ndarray, ""]
    model: eqx.Module
    ema_model: eqx.Module
    opt_state: optax.OptState
    key_data: UInt32[Array, "..."]


@functools.lru_cache(maxsize=None)
def _optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam (AdamW when `weight_decay > 0`) with warm-up and cosine decay, built once per config (so jit caches)."""
    decay_steps = max(config.steps - config.warmup_steps, 1)
    cosine = optax.cosine_decay_schedule(config.lr, decay_steps, alpha=config.final_lr_fraction)
    if config.warmup_steps:
        warmup = optax.linear_schedule(0.0, config.lr, config.warmup_steps)
        schedule = optax.join_schedules([warmup, cosine], [config.warmup_steps])
    else:
        schedule = cosine
    adam = optax.adamw(schedule, weight_decay=config.weight_decay) if config.weight_decay else optax.adam(schedule)
    if config.max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)


@eqx.filter_jit
def _advance(state: _State, data_x, data_y, loss, optimizer, ema_decay, num_steps: int, batch_size: int,
             parallel: DataParallel | None = None, unroll: int = 1):
    """`num_steps` optimiser steps under one `jax.lax.scan` (unrolled `unroll` times: an int, so that the static
    arguments `True` and `1`, equal as Python values, never share a compiled program); returns the new state and
    the per-step losses."""
    params, static = eqx.partition(state.model, eqx.is_inexact_array)
    ema_params = eqx.filter(state.ema_model, eqx.is_inexact_array)
    num_data = data_x.shape[0]

    def objective(p, xb, yb, key):
        return loss(eqx.combine(p, static), xb, yb, key=key)

    def body(carry, _):
        params, ema_params, opt_state, key_data, step = carry
        key, k_batch, k_loss = jax.random.split(jax.random.wrap_key_data(key_data), 3)
        idx = jax.random.randint(k_batch, (batch_size,), 0, num_data)
        xb, yb = data_x[idx], None if data_y is None else data_y[idx]
        if parallel is not None:  # split the minibatch over the devices; XLA all-reduces the gradient
            xb, yb = parallel.constrain(xb), parallel.constrain(yb)
        value, grads = jax.value_and_grad(objective)(params, xb, yb, k_loss)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
        ema_params = jax.tree.map(lambda e, p: (decay * e + (1 - decay) * p).astype(e.dtype), ema_params, params)
        return (params, ema_params, opt_state, jax.random.key_data(key), step + 1), value

    carry = (params, ema_params, state.opt_state, state.key_data, state.step)
    if unroll >= num_steps:
        # Fully unrolled at trace time: `jax.lax.scan` of length 1 still emits a loop, whatever `unroll` says.
        values = []
        for _ in range(num_steps):
            carry, value = body(carry, None)
            values.append(value)
        values = jnp.stack(values)
    else:
        carry, values = jax.lax.scan(body, carry, None, length=num_steps, unroll=unroll)
    params, ema_params, opt_state, key_data, step = carry
    new = _State(step, eqx.combine(params, static), eqx.combine(ema_params, static), opt_state, key_data)
    return new, values


# ---------------------------------------------------------------------------------------------- checkpoint files
def _write_atomic(path: pathlib.Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write `path` atomically: a temporary file in the same folder, fsync, then `os.replace`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save(path: pathlib.Path, state: _State, losses: np.ndarray) -> None:
    _write_atomic(path, lambda f: eqx.tree_serialise_leaves(f, (state, losses)))


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


def _load(path: pathlib.Path, like: tuple[_State, np.ndarray], remedy: str) -> tuple[_State, np.ndarray]:
    """Read a checkpoint into the structure of `like`, telling a corrupt file from one of a different model."""
    try:
        records = _records(path)
    except _Corrupt as error:
        raise ValueError(_corrupt_message(path, str(error), remedy)) from None
    expected = _expected_records(like)
    mismatch = None
    for i, ((where, shape, dtype), (disk_shape, disk_dtype)) in enumerate(zip(expected, records)):
        if shape != disk_shape or not _dtype_matches(disk_dtype, dtype):
            where = "losses" if where == "[1]" else where.removeprefix("[0].")
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


def _feed(h, obj, depth: int = 0) -> None:
    """Feed a canonical description of `obj` (structure, static fields and array bytes) into the hash `h`."""
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
            _feed(h, getattr(obj, field.name, None), depth + 1)
        h.update(b")")
    elif isinstance(obj, (tuple, list)):
        h.update(f"{_qualname(type(obj))}[{len(obj)}](".encode())
        for item in obj:
            _feed(h, item, depth + 1)
        h.update(b")")
    elif isinstance(obj, dict):
        h.update(f"dict[{len(obj)}](".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k, depth + 1)
            _feed(h, obj[k], depth + 1)
        h.update(b")")
    elif isinstance(obj, functools.partial):
        h.update(b"partial(")
        _feed(h, (obj.func, obj.args, obj.keywords), depth + 1)
        h.update(b")")
    elif callable(obj):  # functions, jitted functions, classes: by name
        h.update(f"callable {_qualname(obj)};".encode())
    else:
        h.update(f"{_qualname(type(obj))} {_scrub(repr(obj))};".encode())


def _sha256(obj) -> str:
    h = hashlib.sha256()
    _feed(h, obj)
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
                 key_data: Array) -> dict:
    """What a checkpoint was trained on: the config, loss, initial model, data and key (JSON-ready)."""
    params = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    config_fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in _COSMETIC_FIELDS}

    def data(a):
        return None if a is None else {"shape": list(a.shape), "dtype": a.dtype.name, "sha256": _sha256(a)}

    loss_repr = _scrub(repr(loss))
    fingerprint = {
        "format": _FINGERPRINT_FORMAT,
        "written_by": _versions(),
        "config": config_fields,
        "loss": {"type": type(loss).__name__, "repr": loss_repr[:2000], "sha256": _sha256(loss)},
        "model": {"type": type(model).__name__, "parameters": int(sum(p.size for p in params)), "sha256": _sha256(model)},
        "data_x": data(host_x),
        "data_y": data(host_y),
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
    """(item, description) for every item of the fingerprint that differs; package versions are not compared."""
    out = []
    old_cfg, new_cfg = recorded.get("config") or {}, current["config"]
    changed = [n for n in sorted(set(old_cfg) | set(new_cfg)) if json.dumps(old_cfg.get(n)) != json.dumps(new_cfg.get(n))]
    if changed:
        out.append(("config", "config: " + "; ".join(
            f"{n} {json.dumps(old_cfg.get(n))} in the checkpoint, {json.dumps(new_cfg.get(n))} now" for n in changed)))
    for item in ("loss", "model", "data_x", "data_y", "key"):
        old, new = recorded.get(item), current[item]
        same = (old or {}).get("sha256") == new["sha256"] if item in ("loss", "model") else old == new
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


def _open_checkpoint(folder: pathlib.Path, fingerprint: dict, like: tuple[_State, np.ndarray], resume: str):
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


# ---------------------------------------------------------------------------------------------- inputs
def _describe(value) -> str:
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        return f"an array of dtype {value.dtype} and shape {tuple(value.shape)}"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return f"the {type(value).__name__} {value!r}"
    return f"a {type(value).__name__}"


def _key_data(key) -> Array:
    """The raw data of one PRNG key of JAX's default implementation (new-style typed, or a legacy uint32 key)."""
    default = jax.random.key(0)
    data_shape, impl = jax.random.key_data(default).shape, str(jax.random.key_impl(default))
    expected = "key must be a JAX PRNG key made with jax.random.key(seed) (a legacy jax.random.PRNGKey(seed) also works)"
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{expected}; got a batch of {key.size} keys with shape {key.shape}: pass one of them.")
        if str(jax.random.key_impl(key)) != impl:
            raise ValueError(f"{expected}; got a key of the {jax.random.key_impl(key)} implementation, not the default {impl}.")
        return jax.random.key_data(key)
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == data_shape:
        return jnp.asarray(key)
    hint = " Turn an integer seed into a key with jax.random.key(seed)." if isinstance(key, (int, np.integer)) else ""
    raise ValueError(f"{expected}; got {_describe(key)}.{hint}")


def _param_dtype(model):
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    if not leaves:
        raise ValueError("The model has no floating-point parameters to train.")
    return leaves[0].dtype


def _check_data(data_x, data_y, dtype) -> tuple[np.ndarray, np.ndarray | None]:
    """The data as host arrays in the dtypes they are trained in (`dtype`; integer labels kept as integers)."""
    data_x = np.asarray(data_x)
    if data_x.ndim < 2 or not np.issubdtype(data_x.dtype, np.floating) and not np.issubdtype(data_x.dtype, np.integer):
        raise ValueError(f"data_x must be a real array of shape (batch, dim_x) or (batch, *shape); got shape {data_x.shape}, dtype {data_x.dtype}.")
    if not np.all(np.isfinite(data_x)):
        bad = np.argwhere(~np.isfinite(data_x))[0]
        raise ValueError(f"data_x must be finite; it contains NaN or infinity (first at index {tuple(bad)}).")
    x = np.asarray(data_x, dtype)
    if data_y is None:
        return x, None
    data_y = np.asarray(data_y)
    if data_y.shape[:1] != data_x.shape[:1]:
        raise ValueError(f"data_x and data_y must have the same number of rows; got {data_x.shape[0]} and {data_y.shape[:1]}.")
    if np.issubdtype(data_y.dtype, np.integer):
        return x, np.asarray(data_y, jax.dtypes.canonicalize_dtype(data_y.dtype))
    if not np.issubdtype(data_y.dtype, np.floating):
        raise ValueError(f"data_y must hold real numbers or integer labels; got dtype {data_y.dtype}.")
    if not np.all(np.isfinite(data_y)):
        bad = np.argwhere(~np.isfinite(data_y))[0]
        raise ValueError(f"data_y must be finite; it contains NaN or infinity (first at index {tuple(bad)}).")
    return x, np.asarray(data_y, dtype)


# ---------------------------------------------------------------------------------------------- the loop
def train(
    model: eqx.Module,
    data_x: Float[ArrayLike, "batch dim_x"],
    data_y: Float[ArrayLike, "batch dim_y"] | Int[ArrayLike, " batch"] | None = None,
    *,
    config: TrainConfig = TrainConfig(),
    loss: TrainingLoss = DEMLoss(),
    checkpoint_dir: str | os.PathLike | None = None,
    resume: Literal["auto", "overwrite", "unchecked"] = "auto",
    callback: Callable[[int, np.ndarray], None] | None = None,
    parallel: DataParallel | None = None,
    key: PRNGKeyArray,
) -> TrainResult:
    r"""Minimise `loss` over `model` with Adam (AdamW when `config.weight_decay > 0`), keeping an EMA of the weights.

    The one training loop of the package: the DEM loss (Eq. 40) for the entropy-matching networks, softmax
    cross-entropy (`ClassifierLoss`) for the bound's classifier. The data are held on device (in the model's
    parameter dtype); every step draws a batch with replacement. Each jitted call scans `config.steps_per_call` steps.

    With `checkpoint_dir` the step, model, EMA model, optimiser state, PRNG key data and loss log are written
    atomically to `checkpoint.eqx` every `config.checkpoint_every` steps, at the end, on `KeyboardInterrupt`, and (the
    last finite state) when the loss turns non-finite. Beside it, `checkpoint.json` records what the run is: the
    `TrainConfig` (less `progress` and `checkpoint_every`, which do not change the weights), the loss, the initial
    model (structure and parameter values), the data (SHA-256 of `data_x` and `data_y` as trained) and the key, in
    readable fields and hashes, with the package versions. A later call with the same arguments resumes and reaches
    bitwise the same result as an uninterrupted run; a finished checkpoint is returned without training.

    **Arguments:**

    - `model`: the initial network (and the template a checkpoint is read into).
    - `data_x`: training data.
    - `data_y`: conditions or integer labels (rows aligned with `data_x`), or `None` for an unconditional model.
    - `config`: a `TrainConfig`.
    - `loss`: a `TrainingLoss`, `loss(model, x, y, *, key) -> scalar`: a `DEMLoss` (weighting, time sampler,
      condition dropout), a `ClassifierLoss`, or any pure function with that signature.
    - `checkpoint_dir`: folder for `checkpoint.eqx` and `checkpoint.json`, created if missing; `None` for none.
    - `resume`: what to do with a checkpoint already in `checkpoint_dir`:
        - `"auto"` (default): resume from it if its fingerprint matches this call; raise `ValueError` naming what
          differs if it does not (or if it has no fingerprint); start afresh if there is none.
        - `"overwrite"`: delete it (with a warning) and train afresh, replacing it.
        - `"unchecked"`: resume from it whatever its fingerprint says (warning about any difference), e.g. from a
          checkpoint written before fingerprints existed; it must still match the model's structure.
    - `callback`: called as `callback(step, chunk_losses)` after every jitted call.
    - `parallel`: a `DataParallel` mesh: data and state are replicated on its devices and every minibatch is split
      across them (`batch_size` must divide evenly); `None` runs on the default device.
    - `key`: a PRNG key from `jax.random.key(seed)`, for batches and the loss's randomness (keyword-only, last).

    **Returns:**

    A `TrainResult(model, ema_model, losses)`; `losses[i]` is the minibatch loss at step i.

    **Raises:**

    `ValueError` for bad arguments or data, a checkpoint of another run, or a corrupt checkpoint file;
    `FloatingPointError` when the loss becomes non-finite (the last finite state is checkpointed). A
    `KeyboardInterrupt` is re-raised after checkpointing and saying on stderr where training stopped.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig; got {type(config).__name__}.")
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be one of {', '.join(map(repr, RESUME_MODES))}; got {resume!r}.")
    if not callable(loss):
        raise ValueError(f"loss must be callable as loss(model, x, y, *, key) (a DEMLoss, ClassifierLoss, ...); got {_describe(loss)}.")
    if parallel is not None and not isinstance(parallel, DataParallel):
        raise ValueError(f"parallel must be a DataParallel or None; got {type(parallel).__name__}.")
    key_data = _key_data(key)
    host_x, host_y = _check_data(data_x, data_y, _param_dtype(model))
    x, y = jnp.asarray(host_x), None if host_y is None else jnp.asarray(host_y)
    optimizer = _optimizer(config)
    params = eqx.filter(model, eqx.is_inexact_array)
    state = _State(np.asarray(0, np.int64), model, model, optimizer.init(params), key_data)
    losses = np.full(config.steps, np.nan, np.float64)
    path = None
    if checkpoint_dir is not None:
        folder = pathlib.Path(checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CHECKPOINT_NAME
        fingerprint = _fingerprint(config, loss, model, host_x, host_y, key_data)
        state, losses = _open_checkpoint(folder, fingerprint, (state, losses), resume)
    step = int(state.step)
    state = eqx.tree_at(lambda st: st.step, state, jnp.asarray(step))
    if parallel is not None:
        parallel.check_batch(config.batch_size)
        x, y, state = parallel.replicate((x, y, state))
    bar = tqdm(total=config.steps, initial=step, disable=not config.progress, desc="train", unit="step")
    try:
        while step < config.steps:
            num = min(config.steps_per_call, config.steps - step)
            unroll = num if config.unroll is True else int(config.unroll)  # True: fully unrolled; False: 1
            new_state, values = _advance(state, x, y, loss, optimizer, config.ema_decay, num, config.batch_size, parallel, unroll)
            values = np.asarray(values, np.float64)
            if not np.all(np.isfinite(values)):
                first = step + int(np.argmax(~np.isfinite(values)))
                if path is not None:
                    _save(path, _host(state), losses)
                where = f"; the last finite state (step {step}) is saved in {path}" if path is not None else ""
                raise FloatingPointError(
                    f"The loss became non-finite at step {first} ({values[first - step]}){where}. "
                    "Try a lower lr, max_grad_norm, or ImportanceTime sampling."
                )
            losses[step : step + num] = values
            state, step = new_state, step + num  # together: an interrupt sees both or neither
            if path is not None and (step % config.checkpoint_every == 0 or step == config.steps):
                _save(path, _host(state), losses)
            bar.update(num)
            bar.set_postfix(loss=f"{values.mean():.4g}")
            if callback is not None:
                callback(step, values)
    except KeyboardInterrupt:
        done = int(state.step)
        if path is not None:
            _save(path, _host(state), losses)
            message = (f"Training interrupted after step {done} of {config.steps}: the state at step {done} is saved in "
                       f"{path}. Run the same call again (same model, data, loss, config and key) to resume from it.")
        else:
            message = (f"Training interrupted after step {done} of {config.steps}: progress was not saved (no "
                       "checkpoint_dir was given). Pass checkpoint_dir=... to learned.train to checkpoint and resume.")
        bar.close()
        print(f"\n{message}", file=sys.stderr, flush=True)
        raise
    finally:
        bar.close()
    return TrainResult(state.model, state.ema_model, losses[:step])


def _host(state: _State) -> _State:
    """The state with its step as a NumPy int64 (the checkpoint's fixed dtype)."""
    return eqx.tree_at(lambda st: st.step, state, np.asarray(int(state.step), np.int64))


def load_checkpoint(
    checkpoint_dir: str | os.PathLike, model: eqx.Module, config: TrainConfig, *, key: PRNGKeyArray
) -> tuple[int, TrainResult]:
    """Read `checkpoint_dir/checkpoint.eqx` into the structure of `model` (and `config`'s optimiser).

    Only the structure is checked (not `checkpoint.json`'s fingerprint): `model` and `key` serve as templates.

    **Arguments:**

    - `checkpoint_dir`: the folder `train` wrote.
    - `model`: a network of the same structure as the trained one.
    - `config`: the run's `TrainConfig` (its `steps` and optimiser fix the stored shapes).
    - `key`: any PRNG key of the default implementation (a template for the stored key data).

    **Returns:**

    `(step, TrainResult(model, ema_model, losses[:step]))`.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig; got {type(config).__name__}.")
    path = pathlib.Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.exists():
        raise ValueError(f"There is no checkpoint {path} to load.")
    optimizer = _optimizer(config)
    like = (
        _State(np.asarray(0, np.int64), model, model, optimizer.init(eqx.filter(model, eqx.is_inexact_array)), _key_data(key)),
        np.full(config.steps, np.nan, np.float64),
    )
    state, losses = _load(path, like, "Its training must be redone.")
    step = int(state.step)
    return step, TrainResult(state.model, state.ema_model, losses[:step])
