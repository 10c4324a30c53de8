"""Run closed forms in float64 whatever the caller's JAX mode, and hand back NumPy float64."""

from __future__ import annotations

import functools

import jax
import numpy as np


def to_numpy64(tree):
    """Convert every array leaf to NumPy float64; 0-d results become `np.float64` scalars."""
    return jax.tree.map(lambda a: np.asarray(a, dtype=np.float64)[()], tree)


def exact(fn):
    """Decorator: evaluate `fn` with 64-bit JAX enabled and return NumPy float64.

    The oracle's closed forms are the ground truth every estimate is judged against, so they must not
    silently drop to float32 because the caller left `jax_enable_x64` off.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return to_numpy64(fn(*args, **kwargs))

    return wrapper
