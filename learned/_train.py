"""Training loop: Adam(W) + EMA, scanned steps under one `eqx.filter_jit`, fingerprinted atomic checkpoints, exact resume."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, UInt32
from tqdm.auto import tqdm

from ._loss import DEMLoss
from ._parallel import DataParallel

from ._checkpoint import (
    CHECKPOINT_NAME,
    RESUME_MODES,
    _fingerprint,
    _load,
    _open_checkpoint,
    _save,
)


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
      $\mathrm{lr}(t)\,\lambda\,\theta$); 0 is plain Adam. Fixed arrays of a module (the fields its class names
      in `constant_fields`, e.g. the covariance and means of `Preconditioned` and `ClassCentred`) are not decayed.
    - `validate_every`: steps between evaluations of the EMA model's loss on held-out data (`train`'s
      `validation`), a multiple of `steps_per_call`; `None` for none.
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
    validate_every: int | None = None

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
        v = self.validate_every
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1 or v % self.steps_per_call):
            raise ValueError(f"TrainConfig.validate_every must be None or a positive multiple of steps_per_call "
                             f"({self.steps_per_call}); got {v!r}.")
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


class Validation(eqx.Module):
    """The held-out record of a run: the EMA model's loss on the validation data at `steps` (every
    `validate_every` steps and at the end; NaN where not reached), and the EMA model at the lowest of them, an
    early-stopping selection that does not stop training."""

    steps: Int[np.ndarray, " n_checks"]
    losses: Float[np.ndarray, " n_checks"]
    best_model: eqx.Module
    best_loss: Float[np.ndarray, ""]
    best_step: Int[np.ndarray, ""]

    @classmethod
    def start(cls, model: eqx.Module, config: "TrainConfig") -> "Validation":
        every = config.validate_every
        steps = np.unique(np.minimum(every * np.arange(1, -(-config.steps // every) + 1), config.steps))
        return cls(steps.astype(np.int64), np.full(len(steps), np.nan), model, np.asarray(np.inf), np.asarray(0, np.int64))


class TrainResult(eqx.Module):
    """What `train` returns: the last weights, their EMA (use this one for evaluation), the per-step losses, and,
    when `train` was given `validation` data, the `Validation` record (held-out losses and the best EMA model)."""

    model: eqx.Module
    ema_model: eqx.Module
    losses: Float[np.ndarray, " steps"]
    validation: Validation | None = None


class _State(eqx.Module):
    step: Int[np.ndarray, ""]
    model: eqx.Module
    ema_model: eqx.Module
    opt_state: optax.OptState
    key_data: UInt32[Array, "..."]


def _decay_mask(params):
    """Weight decay's mask: `False` on the arrays in the `constant_fields` of any module in `params` (fixed data
    such as a preconditioner's covariance, whose gradient is stopped: Adam leaves them alone, but AdamW's decay would
    shrink them silently), `True` elsewhere. Works on traced params: the walk uses the tree's structure."""
    fixed = set()

    def fixed_owner(node) -> bool:
        return isinstance(node, eqx.Module) and bool(getattr(type(node), "constant_fields", ()))

    def visit(node):
        if fixed_owner(node):
            for field in dataclasses.fields(node):
                value = getattr(node, field.name, None)
                if field.name in type(node).constant_fields:
                    fixed.update(id(leaf) for leaf in jax.tree.leaves(value))
                else:
                    jax.tree.map(visit, value, is_leaf=fixed_owner)
        return node

    jax.tree.map(visit, params, is_leaf=fixed_owner)
    return jax.tree.map(lambda leaf: id(leaf) not in fixed, params)


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
    adam = (optax.adamw(schedule, weight_decay=config.weight_decay, mask=_decay_mask) if config.weight_decay
            else optax.adam(schedule))
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
    if data_x.ndim < 2 or not np.issubdtype(data_x.dtype, np.floating):
        raise ValueError(f"data_x must be a float array of shape (batch, dim_x) or (batch, *shape); got shape "
                         f"{data_x.shape}, dtype {data_x.dtype}" + (
                             " (integer data such as uint8 images are not scaled silently: scale them to the model's "
                             "range, e.g. x / 255, and cast them yourself)."
                             if np.issubdtype(data_x.dtype, np.integer) else "."))
    if data_x.shape[0] < 1:
        raise ValueError(f"data_x holds no rows (shape {data_x.shape}): there is nothing to train on.")
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


def _refusal(loss, model, x, y, key) -> Exception | None:
    """The error with which `loss(model, x, y, key=key)` refuses the values in `x` and `y`, or `None` where it runs
    (run eagerly, its output waited for, so that a check inside compiled code runs as well). An error that does not
    depend on the values (`jax.eval_shape` of the same call raises too: a shape or type the loss cannot take) is no
    refusal of these labels: `None`, and training raises it as before."""
    try:
        jax.block_until_ready(loss(model, x, y, key=key))
    except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as error:
        return error
    except (ValueError, IndexError) as error:
        try:
            eqx.filter_eval_shape(functools.partial(loss, key=key), model, x, y)
        except Exception:
            return None
        return error
    return None


def _reason(error: Exception) -> str:
    """The model's own words in `error`: the message of an `eqx.error_if` check, without Equinox's debugging advice."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("equinox.EquinoxRuntimeError: "):
            return line.removeprefix("equinox.EquinoxRuntimeError: ")
    return lines[0] if lines else type(error).__name__


def _declared_classes(model) -> int | None:
    """The label count a model states (`model.num_classes`, or `model.config.num_classes`), or `None`."""
    for owner in (model, getattr(model, "config", None)):
        count = getattr(owner, "num_classes", None)
        if isinstance(count, (int, np.integer)) and not isinstance(count, bool) and count >= 1:
            return int(count)
    return None


_PROBE_KEY = 0x6C6162
"""Seed of the fixed key of `_check_labels_accepted` (the training key is left untouched)."""


def _check_labels_accepted(model, loss, x, host_y, name: str) -> None:
    """One clear error, before training, for integer labels `host_y` (a NumPy array, rows aligned with `x`; `name`
    says which data) that the model refuses: otherwise the error comes from inside the compiled step, and for a rare
    label only at the step that first draws it.

    The loss is evaluated once on a row of the smallest label and once on a row of the largest (those two only: a
    model takes a range of labels), with a fixed key of its own, so the training key's stream is untouched. A model
    that states its label count (`num_classes`, itself or in its `config`) must also find both inside
    `0..num_classes - 1`: a cross-entropy that picks a logit by indexing wraps a label -1 round to the last class and
    makes one too large NaN, with no error (the package's classifier losses refuse such labels themselves; a loss of
    one's own may not)."""
    if host_y is None or host_y.ndim != 1 or not np.issubdtype(host_y.dtype, np.integer):
        return
    lo, hi = int(host_y.min()), int(host_y.max())
    span = f"its labels run from {lo} to {hi}"
    key = jax.random.key(_PROBE_KEY)
    for label, which in ((lo, "smallest"), (hi, "largest"))[: 1 if lo == hi else 2]:
        row = int(np.argmax(host_y == label))
        error = _refusal(loss, model, x[row : row + 1], jnp.asarray(host_y[row : row + 1]), key)
        if error is not None:
            raise ValueError(f"{name} holds the label {label} ({span}), which the model refuses (the loss evaluated, "
                             f"before training, on a row with the {which} label): {_reason(error)}") from error
    count = _declared_classes(model)
    if count is not None and (lo < 0 or hi >= count):
        label = lo if lo < 0 else hi
        raise ValueError(f"{name} holds the label {label} ({span}), outside 0..{count - 1} of the model's "
                         f"num_classes = {count}. The loss takes it without an error, so it would be trained on as "
                         "some other label (an index out of range is clipped or wraps round) or give a NaN loss.")


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
    validation: tuple[ArrayLike, ArrayLike | None] | None = None,
    key: PRNGKeyArray,
) -> TrainResult:
    r"""Minimise `loss` over `model` with Adam (AdamW when `config.weight_decay > 0`), keeping an EMA of the weights.

    The one training loop of the package: the DEM loss (Eq. 40) for the entropy-matching networks, softmax
    cross-entropy (`ClassifierLoss`) for the bound's classifier. The data are held on device (in the model's
    parameter dtype); every step draws a batch with replacement. Each jitted call scans `config.steps_per_call` steps.

    With `checkpoint_dir` the step, model, EMA model, optimiser state, PRNG key data and loss log are written
    atomically to `checkpoint.eqx` every `config.checkpoint_every` steps, at the end, on `KeyboardInterrupt`, and (the
    last finite state) when the loss turns non-finite. Beside it, `checkpoint.json` records what the run is: the
    `TrainConfig` (less `progress`, `checkpoint_every`, `steps_per_call` and `unroll`, which do not change the step
    sequence), the loss, the initial model (structure and parameter values), the data (SHA-256 of `data_x` and
    `data_y` as trained, and of the held-out `validation` data) and the key, in readable fields and hashes, with the
    package versions. A later call with the same arguments resumes and reaches bitwise the same result as an
    uninterrupted run; with another `steps_per_call` or `unroll` (a run started on a GPU, resumed on a CPU) the same
    result up to floating-point reassociation. A finished checkpoint is returned without training. A loss that is a
    Python function is fingerprinted by its name, its code's constants, its defaults and the values it closes over,
    not by the globals it reads: a loss whose setting lives in a global is not told apart.

    **Arguments:**

    - `model`: the initial network (and the template a checkpoint is read into).
    - `data_x`: training data.
    - `data_y`: conditions or integer labels (rows aligned with `data_x`), or `None` for an unconditional model.
      Integer labels are checked before training: the loss is evaluated once on a row of the smallest label and once
      on a row of the largest (with a key of its own: the training key is untouched), and a label the model refuses,
      or one outside `0..num_classes - 1` of a model that states its `num_classes`, is a `ValueError` with the
      model's reason; the labels of `validation` likewise.
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
    - `validation`: held-out `(x, y)` (`y` may be `None`), not used for training, with `config.validate_every`: the
      EMA model's loss on them is measured every `validate_every` steps and at the end, with the same noise each
      time (a fixed key), so the curve compares the network across steps; the EMA model at the lowest held-out loss
      is kept. Both are checkpointed and returned as `TrainResult.validation`.
    - `key`: a PRNG key from `jax.random.key(seed)`, for batches and the loss's randomness (keyword-only, last).

    **Returns:**

    A `TrainResult(model, ema_model, losses, validation)`; `losses[i]` is the minibatch loss at step i.

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
    if (validation is None) != (config.validate_every is None):
        raise ValueError("validation data and TrainConfig.validate_every go together: pass both or neither; got "
                         f"validation={'None' if validation is None else 'data'}, validate_every={config.validate_every}.")
    record = None
    if validation is not None:
        if not (isinstance(validation, tuple) and len(validation) == 2):
            raise ValueError("validation must be a pair (x_val, y_val), with y_val None for an unconditional model.")
        if (validation[1] is None) != (data_y is None):
            raise ValueError("validation's y must be None exactly when data_y is None.")
        host_xv, host_yv = _check_data(validation[0], validation[1], _param_dtype(model))
        if host_xv.shape[1:] != host_x.shape[1:]:
            raise ValueError(f"validation x must have rows of shape {host_x.shape[1:]}; got {host_xv.shape[1:]}.")
        xv, yv = jnp.asarray(host_xv), None if host_yv is None else jnp.asarray(host_yv)
        val_key = jax.random.fold_in(jax.random.wrap_key_data(key_data), 0x76616C)  # fixed: the same noise each time
        record = Validation.start(model, config)
    _check_labels_accepted(model, loss, x, host_y, "data_y")
    if validation is not None:
        _check_labels_accepted(model, loss, xv, host_yv, "validation's y")
    optimizer = _optimizer(config)
    params = eqx.filter(model, eqx.is_inexact_array)
    state = _State(np.asarray(0, np.int64), model, model, optimizer.init(params), key_data)
    losses = np.full(config.steps, np.nan, np.float64)
    path = None
    if checkpoint_dir is not None:
        folder = pathlib.Path(checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CHECKPOINT_NAME
        fingerprint = _fingerprint(config, loss, model, host_x, host_y, key_data,
                                   None if validation is None else (host_xv, host_yv))
        state, losses, record = _open_checkpoint(folder, fingerprint, (state, losses, record), resume)
    step = int(state.step)
    state = eqx.tree_at(lambda st: st.step, state, jnp.asarray(step))
    if parallel is not None:
        parallel.check_batch(config.batch_size)
        x, y, state = parallel.replicate((x, y, state))
    bar = tqdm(total=config.steps, initial=step, disable=not config.progress, desc="train", unit="step")
    held_out = None  # the last held-out loss, for the progress bar
    try:
        while step < config.steps:
            num = _chunk(step, config)
            unroll = num if config.unroll is True else int(config.unroll)  # True: fully unrolled; False: 1
            new_state, values = _advance(state, x, y, loss, optimizer, config.ema_decay, num, config.batch_size, parallel, unroll)
            values = np.asarray(values, np.float64)
            if not np.all(np.isfinite(values)):
                first = step + int(np.argmax(~np.isfinite(values)))
                if path is not None:
                    _save(path, (_host(state), losses, record))
                where = f"; the last finite state (step {step}) is saved in {path}" if path is not None else ""
                raise FloatingPointError(
                    f"The loss became non-finite at step {first} ({values[first - step]}){where}. "
                    "Try a lower lr, max_grad_norm, or ImportanceTime sampling."
                )
            checked = record is not None and step + num in record.steps
            # The held-out check runs before the state moves on, so that an interrupt during it leaves the step and
            # its check to be redone together on resume, not a step whose check is lost.
            new_record = _validate(record, step + num, loss, new_state.ema_model, xv, yv, val_key) if checked else record
            losses[step : step + num] = values
            state, step, record = new_state, step + num, new_record  # together: an interrupt sees all or none
            if checked:
                held_out = f"{float(record.losses[record.steps == step][0]):.4g}"
            if path is not None and (step % config.checkpoint_every == 0 or step == config.steps):
                _save(path, (_host(state), losses, record))
            bar.update(num)
            # the latest held-out loss stays on the bar until the next check replaces it
            bar.set_postfix(loss=f"{values.mean():.4g}", **({} if held_out is None else {"held_out": held_out}))
            if callback is not None:
                callback(step, values)
    except KeyboardInterrupt:
        done = int(state.step)
        if path is not None:
            _save(path, (_host(state), losses, record))
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
    return TrainResult(state.model, state.ema_model, losses[:step], record)


def _chunk(step: int, config: TrainConfig) -> int:
    """Steps of the next jitted call: `steps_per_call`, cut short at the end, and at the next multiple of
    `checkpoint_every` and of `validate_every`, which a run resumed with another `steps_per_call` (a GPU run on a
    CPU) would otherwise step over; in a run that keeps its `steps_per_call` no cut applies (both are multiples)."""
    num = min(config.steps_per_call, config.steps - step)
    for every in (config.checkpoint_every, config.validate_every):
        if every is not None:
            num = min(num, every - step % every)
    return num


_VALIDATION_CHUNK = 1024
"""Validation rows per loss evaluation (bounds memory on large held-out sets)."""


@eqx.filter_jit
def _chunk_loss(loss, model, x, y, key):
    return loss(model, x, y, key=key)


def _validate(record: Validation, step: int, loss, model, xv, yv, key) -> Validation:
    """`record` with the held-out loss at `step` (the row-weighted mean over chunks) and the best model updated."""
    n = xv.shape[0]
    total = 0.0
    for i, start in enumerate(range(0, n, _VALIDATION_CHUNK)):
        sl = slice(start, start + _VALIDATION_CHUNK)
        rows = min(_VALIDATION_CHUNK, n - start)
        total += rows * float(_chunk_loss(loss, model, xv[sl], None if yv is None else yv[sl], jax.random.fold_in(key, i)))
    value = total / n
    losses = record.losses.copy()
    losses[np.flatnonzero(record.steps == step)[0]] = value
    if value < float(record.best_loss):
        return Validation(record.steps, losses, model, np.asarray(value), np.asarray(step, np.int64))
    return Validation(record.steps, losses, record.best_model, record.best_loss, record.best_step)


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
        None if config.validate_every is None else Validation.start(model, config),
    )
    state, losses, record = _load(path, like, "Its training must be redone.")
    step = int(state.step)
    return step, TrainResult(state.model, state.ema_model, losses[:step], record)
