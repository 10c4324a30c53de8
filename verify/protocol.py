"""The one protocol every model satisfies, and the `Estimate` every estimator returns.

A model is an `eqx.Module` with a field `sde` (a `gaussian_oracle.VPSDE`) and
`__call__(x, s, y=None) -> e`, the entropy-matching vector
$e(x, s; y) = \\nabla\\log p_s(x|y) - \\nabla\\log p_{eq}(x)$ for ONE sample (vmap outside); `y=None`
means unconditional. The oracle's exact `JointGaussian.model()` / `GaussianMixture.model()` and every
trained network in `learned` satisfy it structurally: nothing has to import this module.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from jaxtyping import Array, ArrayLike, Float

from gaussian_oracle import VPSDE
from gaussian_oracle import Estimate as Estimate

__all__ = ["EntropyModel", "Estimate"]


@runtime_checkable
class EntropyModel(Protocol):
    """Structural type of an entropy-matching model (exact or learned)."""

    sde: VPSDE

    def __call__(self, x: Float[Array, "..."], s: Float[ArrayLike, ""], y: Any = None) -> Float[Array, "..."]:
        ...
