"""Input validation shared by the oracle: one clear `ValueError` per bad input, nothing coerced."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def as_float_array(value, name: str, ndim: int | None = None) -> np.ndarray:
    """Return `value` as a float64 NumPy array, refusing anything that is not real and finite.

    Integers and lower-precision floats are widened losslessly; complex, boolean, object and
    string data are refused rather than coerced.
    """
    arr = np.asarray(value)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers (a float array); got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity.")
    return arr


def as_data_array(value, name: str) -> np.ndarray:
    """`as_float_array` for data points (images, samples), which must already be floats: integer data (uint8 images
    in 0..255) are refused, not widened, since they are almost always data not yet scaled to the model's range."""
    arr = np.asarray(value)
    if np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a float array of data points; got dtype {arr.dtype} (integer data such as "
                         "uint8 images are not scaled silently: scale them to the model's range, e.g. x / 255, and "
                         "cast them yourself).")
    return as_float_array(arr, name)


def covariance(value, name: str, dim: int | None = None) -> np.ndarray:
    """Validate a symmetric positive-definite matrix; return it as float64 (exactly symmetrised)."""
    arr = as_float_array(value, name, ndim=2)
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be square; got shape {arr.shape}.")
    if dim is not None and arr.shape[0] != dim:
        raise ValueError(f"{name} must have shape ({dim}, {dim}); got {arr.shape}.")
    scale = max(float(np.max(np.abs(arr))), np.finfo(np.float64).tiny)
    asym = float(np.max(np.abs(arr - arr.T)))
    if asym > 1e-10 * scale:
        raise ValueError(f"{name} must be symmetric; max |C - C^T| = {asym:.3g} (scale {scale:.3g}).")
    sym = 0.5 * (arr + arr.T)
    try:
        np.linalg.cholesky(sym)
    except np.linalg.LinAlgError:
        smallest = float(np.linalg.eigvalsh(sym)[0])
        raise ValueError(
            f"{name} must be positive definite; its smallest eigenvalue is {smallest:.3g}."
        ) from None
    return sym


def positive_scalar(value, name: str) -> float:
    arr = as_float_array(value, name)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar; got shape {arr.shape}.")
    if not arr > 0:
        raise ValueError(f"{name} must be > 0; got {float(arr)}.")
    return float(arr)


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def check_label(y, num_classes: int, unconditional: str = "y=None"):
    """Check that `y` is one integer class label in `0..num_classes-1` and return it; never clipped.

    Concrete labels raise a `ValueError` at once; traced ones (inside `jit` or `vmap`) are checked when the
    computation runs, by `eqx.error_if` (an `EquinoxRuntimeError` with the same rule), so use the returned value.
    `unconditional` says how callers ask for the unconditional model instead, for the messages.
    """
    dtype = jnp.result_type(y) if isinstance(y, jax.core.Tracer) else np.asarray(y).dtype
    if dtype == bool or jnp.ndim(y) != 0 or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(
            f"y must be one integer label (a scalar integer class label in 0..{num_classes - 1}; "
            f"{unconditional} for the unconditional model); got shape {jnp.shape(y)}, dtype {dtype}."
        )
    rule = (f"y must lie in 0..{num_classes - 1} (num_classes={num_classes}); "
            f"the unconditional model is reached only through {unconditional}")
    if isinstance(y, jax.core.Tracer):
        return eqx.error_if(y, (y < 0) | (y >= num_classes), f"unknown label: {rule}.")
    if not 0 <= int(y) < num_classes:
        raise ValueError(f"unknown label {int(y)}: {rule}.")
    return y


def check_labels(y, num_classes: int, what: str):
    """Integer labels `y` of any shape (a batch), checked to lie in `0..num_classes-1` and returned; never clipped.

    Where labels pick rows or logits by indexing, an out-of-range label would be clipped (K read as K - 1) or wrap
    round (-1 read as the last class) without an error. The check is `eqx.error_if`, so it holds eagerly and inside
    `eqx.filter_jit` or `vmap` alike (an `EquinoxRuntimeError`; under a bare `jax.jit`, a `JaxRuntimeError` with the
    same message); use the returned value. `what` names the classes in the
    message, e.g. "the classifier's 10 logits".
    """
    y = jnp.asarray(y)
    return eqx.error_if(y, (y < 0) | (y >= num_classes), f"unknown label: y must lie in 0..{num_classes - 1}, {what}")
