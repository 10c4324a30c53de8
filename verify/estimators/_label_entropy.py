r"""When the label is decided: $H(Y | X_s)$ of a conditional model from the I-MMSE identity (seed paper 2506.10433).

Along the forward process the label is forgotten at the rate of the MINDE integrand,

$$\frac{d}{ds}H(Y|X_s) = \frac{\beta(s)}{2}\,\mathbb E\|e(\tilde x_s, s; y) - e(\tilde x_s, s)\|^2,$$

so $H(Y|X_s) = H(Y|X_T) - \int_s^T(\text{rate})$, with $H(Y|X_T) \approx H(Y)$ once the process has forgotten the label
(for the paper's schedule $I(X_T;Y)$ is of order $\alpha(T)$). No trajectories are sampled: each data pair is
diffused to the grid's times, as for MINDE, and the tail integrals $\int_{s_k}^T$ come with per-sample standard errors.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from gaussian_oracle import VPSDE, Estimate

from ._information import _integrate, _minde_integrand
from ._integrators import AbstractGrid, GeometricGrid

__all__ = ["FromEnd", "label_entropy"]


class FromEnd(AbstractGrid):
    r"""A grid whose running integrals run from each node up to T: $\int_{s_k}^T f \approx \sum_j (w_j - C_{kj})f(s_j)$.

    **Arguments:**

    - `grid`: the grid whose nodes and weights are used (`C` its `cumulative_weights`).
    """

    grid: AbstractGrid

    def nodes_weights(self, sde: VPSDE) -> tuple[np.ndarray, np.ndarray]:
        return self.grid.nodes_weights(sde)

    def cumulative_weights(self, sde: VPSDE) -> np.ndarray:
        _, weights = self.grid.nodes_weights(sde)
        return weights[None, :] - self.grid.cumulative_weights(sde)


def label_entropy(model, x: Float[Array, "batch *shape"], y, *, prior_entropy: float,
                  entropy_at_T: float | None = None, times: AbstractGrid = GeometricGrid(n_times=64, s_min=1e-4),
                  chunk_size: int = 1024, key: PRNGKeyArray) -> Estimate:
    r"""$H(Y|X_s)$ on a time grid, in nats, from a label-conditional model by the I-MMSE identity.

    **Arguments:**

    - `model`: a conditional protocol model; `model(x, s, None)` is the unconditional one.
    - `x`, `y`: data pairs (integer labels or vectors), one per row.
    - `prior_entropy`: $H(Y)$ of the label distribution (e.g. `learned.ImageData.label_entropy()`), the upper bound.
    - `entropy_at_T`: $H(Y|X_T)$ where the curve starts, if known (an oracle's); `None` uses $H(Y)$, which is high
      by $I(X_T;Y)$ (about $\alpha(T)|\Delta m|^2$: 4e-5 nats for two unit-scale classes at $\beta_{max} = 20$).
    - `times`: a grid (`GeometricGrid` resolves the small times where the label is decided).
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key.

    **Returns:**

    An `Estimate` with `times` the grid's nodes, $H(Y|X_s)$ in `cumulative`/`cumulative_stderr`, its derivative (the
    MINDE integrand) in `rate`/`rate_stderr`, and `value`/`stderr` at the first node: the label entropy left at the
    smallest time, $\approx H(Y) - I(X;Y)$. Values below 0 or above $H(Y)$ by more than 2 stderr are flagged.
    """
    if not isinstance(times, AbstractGrid):
        raise ValueError(f"times must be a grid (UniformGrid, GeometricGrid): the curve needs fixed nodes; got {times!r}.")
    h_y = float(prior_entropy)
    if not (np.isfinite(h_y) and h_y >= 0):
        raise ValueError(f"prior_entropy must be a finite number >= 0 (nats); got {prior_entropy!r}.")
    if y is None:
        raise ValueError("label_entropy needs the labels y, paired with the rows of x.")
    start = h_y if entropy_at_T is None else float(entropy_at_T)
    tail = _integrate(_minde_integrand, (model, None), x, y, FromEnd(times), 2, chunk_size, key)
    curve = start - tail.cumulative
    est = Estimate(value=curve[0], stderr=tail.cumulative_stderr[0], times=tail.times, rate=tail.rate,
                   rate_stderr=tail.rate_stderr, cumulative=curve, cumulative_stderr=tail.cumulative_stderr,
                   n_evals=tail.n_evals)
    return est.check_bounds(lower=0.0, upper=h_y, name="H(Y|X_s) at the first time")
