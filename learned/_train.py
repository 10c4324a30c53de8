"""Training loop: Adam + EMA, scanned steps under one `eqx.filter_jit`, atomic checkpoints and exact resume."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, UInt32
from tqdm.auto import tqdm

from ._loss import DEMLoss
from ._parallel import DataParallel

CHECKPOINT_NAME = "checkpoint.eqx"


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
    - `ema_decay`: EMA decay $d$; step t uses $\min(d, (1 + t)/(10 + t))$ so early averages are not stale.
    - `steps_per_call`: optimiser steps scanned inside one jitted call.
    - `checkpoint_every`: steps between checkpoints, a multiple of `steps_per_call`.
    - `progress`: show a tqdm progress bar with the running loss.
    - `unroll`: `jax.lax.scan`'s unroll factor for the scanned steps (`True`: fully unrolled, no loop). On a CPU,
      XLA runs convolutions whose weights are loop-carried about 30x slower inside a loop, so convolutional
      networks train fastest there with a few `steps_per_call` fully unrolled; keep the default 1 on a GPU.
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
    """Adam with warm-up and cosine decay, built once per config (so jit caches across `train` calls)."""
    decay_steps = max(config.steps - config.warmup_steps, 1)
    cosine = optax.cosine_decay_schedule(config.lr, decay_steps, alpha=config.final_lr_fraction)
    if config.warmup_steps:
        warmup = optax.linear_schedule(0.0, config.lr, config.warmup_steps)
        schedule = optax.join_schedules([warmup, cosine], [config.warmup_steps])
    else:
        schedule = cosine
    adam = optax.adam(schedule)
    if config.max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam)


@eqx.filter_jit
def _advance(state: _State, data_x, data_y, loss, optimizer, ema_decay, num_steps: int, batch_size: int,
             parallel: DataParallel | None = None, unroll: int | bool = 1):
    """`num_steps` optimiser steps under one `jax.lax.scan`; returns the new state and the per-step losses."""
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
    (params, ema_params, opt_state, key_data, step), values = jax.lax.scan(body, carry, None, length=num_steps, unroll=unroll)
    new = _State(step, eqx.combine(params, static), eqx.combine(ema_params, static), opt_state, key_data)
    return new, values


def _save(path: pathlib.Path, state: _State, losses: np.ndarray) -> None:
    """Write the checkpoint atomically: a temporary file in the same folder, fsync, then `os.replace`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        eqx.tree_serialise_leaves(f, (state, losses))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load(path: pathlib.Path, like: tuple[_State, np.ndarray]) -> tuple[_State, np.ndarray]:
    try:
        with open(path, "rb") as f:
            return eqx.tree_deserialise_leaves(f, like)
    except Exception as error:  # shape/structure mismatch: a checkpoint from a different model or config
        raise ValueError(
            f"Cannot resume from {path}: it does not match this model and TrainConfig (steps={like[1].shape[0]}). "
            f"Use a fresh checkpoint_dir or the same model and config. ({type(error).__name__}: {error})"
        ) from error


def _key_data(key) -> Array:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return jnp.asarray(key)


def _param_dtype(model):
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    if not leaves:
        raise ValueError("The model has no floating-point parameters to train.")
    return leaves[0].dtype


def _check_data(data_x, data_y, dtype):
    data_x = np.asarray(data_x)
    if data_x.ndim < 2 or not np.issubdtype(data_x.dtype, np.floating) and not np.issubdtype(data_x.dtype, np.integer):
        raise ValueError(f"data_x must be a real array of shape (batch, dim_x) or (batch, *shape); got shape {data_x.shape}, dtype {data_x.dtype}.")
    if not np.all(np.isfinite(data_x)):
        bad = np.argwhere(~np.isfinite(data_x))[0]
        raise ValueError(f"data_x must be finite; it contains NaN or infinity (first at index {tuple(bad)}).")
    x = jnp.asarray(data_x, dtype)
    if data_y is None:
        return x, None
    data_y = np.asarray(data_y)
    if data_y.shape[:1] != data_x.shape[:1]:
        raise ValueError(f"data_x and data_y must have the same number of rows; got {data_x.shape[0]} and {data_y.shape[:1]}.")
    if np.issubdtype(data_y.dtype, np.integer):
        return x, jnp.asarray(data_y)
    if not np.issubdtype(data_y.dtype, np.floating):
        raise ValueError(f"data_y must hold real numbers or integer labels; got dtype {data_y.dtype}.")
    if not np.all(np.isfinite(data_y)):
        bad = np.argwhere(~np.isfinite(data_y))[0]
        raise ValueError(f"data_y must be finite; it contains NaN or infinity (first at index {tuple(bad)}).")
    return x, jnp.asarray(data_y, dtype)


def train(
    model: eqx.Module,
    data_x: Float[ArrayLike, "batch dim_x"],
    data_y: Float[ArrayLike, "batch dim_y"] | Int[ArrayLike, " batch"] | None = None,
    *,
    config: TrainConfig = TrainConfig(),
    loss: DEMLoss = DEMLoss(),
    checkpoint_dir: str | os.PathLike | None = None,
    callback: Callable[[int, np.ndarray], None] | None = None,
    parallel: DataParallel | None = None,
    key: PRNGKeyArray,
) -> TrainResult:
    r"""Minimise the DEM loss (Eq. 40) over `model` with Adam, keeping an EMA of the weights.

    The data are held on device (in the model's parameter dtype); every step draws a batch with
    replacement. Each jitted call scans `config.steps_per_call` steps. With `checkpoint_dir` the step,
    model, EMA model, optimiser state, PRNG key data and loss log are written atomically every
    `config.checkpoint_every` steps, at the end, on `KeyboardInterrupt`, and (the last finite state) when the
    loss turns non-finite; a later call with the same arguments resumes from it and reaches bitwise the
    same result as an uninterrupted run.

    **Arguments:**

    - `model`: the initial network (and the template a checkpoint is read into).
    - `data_x`: training data.
    - `data_y`: conditions (rows aligned with `data_x`), or `None` for an unconditional model.
    - `config`: a `TrainConfig`.
    - `loss`: a `DEMLoss` (weighting, time sampler, condition dropout).
    - `checkpoint_dir`: folder for `checkpoint.eqx`, created if missing; `None` for no checkpoints.
    - `callback`: called as `callback(step, chunk_losses)` after every jitted call.
    - `parallel`: a `DataParallel` mesh: data and state are replicated on its devices and every minibatch is split
      across them (`batch_size` must divide evenly); `None` runs on the default device.
    - `key`: PRNG key for batches, times, noise and dropout (keyword-only, last).

    **Returns:**

    A `TrainResult(model, ema_model, losses)`; `losses[i]` is the minibatch loss at step i.

    **Raises:**

    `ValueError` for bad data; `FloatingPointError` when the loss becomes non-finite (the last finite state
    is checkpointed).
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig; got {type(config).__name__}.")
    x, y = _check_data(data_x, data_y, _param_dtype(model))
    optimizer = _optimizer(config)
    params = eqx.filter(model, eqx.is_inexact_array)
    state = _State(np.asarray(0, np.int64), model, model, optimizer.init(params), _key_data(key))
    losses = np.full(config.steps, np.nan, np.float64)
    path = None
    if checkpoint_dir is not None:
        path = pathlib.Path(checkpoint_dir) / CHECKPOINT_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            state, losses = _load(path, (state, losses))
    step = int(state.step)
    state = eqx.tree_at(lambda st: st.step, state, jnp.asarray(step))
    if parallel is not None:
        if not isinstance(parallel, DataParallel):
            raise ValueError(f"parallel must be a DataParallel or None; got {type(parallel).__name__}.")
        parallel.check_batch(config.batch_size)
        x, y, state = parallel.replicate((x, y, state))
    bar = tqdm(total=config.steps, initial=step, disable=not config.progress, desc="train", unit="step")
    try:
        while step < config.steps:
            num = min(config.steps_per_call, config.steps - step)
            new_state, values = _advance(state, x, y, loss, optimizer, config.ema_decay, num, config.batch_size, parallel, config.unroll)
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
            state = new_state
            losses[step : step + num] = values
            step += num
            if path is not None and (step % config.checkpoint_every == 0 or step == config.steps):
                _save(path, _host(state), losses)
            bar.update(num)
            bar.set_postfix(loss=f"{values.mean():.4g}")
            if callback is not None:
                callback(step, values)
    except KeyboardInterrupt:
        if path is not None:
            _save(path, _host(state), losses)
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

    **Returns:**

    `(step, TrainResult(model, ema_model, losses[:step]))`.
    """
    optimizer = _optimizer(config)
    like = (
        _State(np.asarray(0, np.int64), model, model, optimizer.init(eqx.filter(model, eqx.is_inexact_array)), _key_data(key)),
        np.full(config.steps, np.nan, np.float64),
    )
    state, losses = _load(pathlib.Path(checkpoint_dir) / CHECKPOINT_NAME, like)
    step = int(state.step)
    return step, TrainResult(state.model, state.ema_model, losses[:step])
