"""One check for every public `key` argument: a JAX PRNG key, never an integer seed."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_key(key, name: str = "key"):
    """Return `key` if it is a JAX PRNG key; raise one clear `ValueError` otherwise.

    Accepts new-style typed keys (`jax.random.key(seed)`) and legacy raw keys (`jax.random.PRNGKey(seed)`, a uint32
    array of shape (2,)). An integer seed such as `key=0` is refused with a message saying what to pass instead,
    rather than failing deep inside JAX.
    """
    if isinstance(key, jax.Array) or hasattr(key, "dtype"):
        dtype = getattr(key, "dtype", None)
        if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and jnp.ndim(key) == 0:
            return key
        if dtype == jnp.uint32 and jnp.shape(key) == (2,):
            return key
    raise ValueError(
        f"{name} must be a single JAX PRNG key, e.g. jax.random.key(0); got {type(key).__name__}"
        f"{'' if not hasattr(key, 'shape') else f' of shape {tuple(key.shape)}, dtype {key.dtype}'}: {key!r}. "
        "Integer seeds are taken only at the command line; in Python pass jax.random.key(seed)."
    )
