r"""Exact per-coordinate marginal KL curves of a diffused empirical data set (the marginal terms of Eq. 7).

The forward process maps the empirical distribution of coordinate k of a data set, $\sum_j \pi_{kj}\delta_{v_{kj}}$
over the distinct values $v_{kj}$ it takes (weights $\pi_{kj}$ = their frequencies), to the one-dimensional mixture
$p_s(x_k) = \sum_j \pi_{kj}\,\mathcal N(\mu(s)v_{kj}, \sigma^2(s))$, $\sigma^2 = 1 - \mu^2$. Its KL divergence from
$p_{eq} = \mathcal N(0, 1)$ needs only the mixture's entropy by quadrature:

$$D_{KL}(p_s(x_k)\|\mathcal N(0,1)) = -h(p_s(x_k)) + \tfrac12\log 2\pi + \tfrac12(\mu^2\,\mathbb E[v_k^2] + \sigma^2).$$

Each term is a one-dimensional integral of a smooth, rapidly decaying function, computed by the trapezoid rule on
nodes a fixed fraction of the kernel width $\sigma(s)$ apart, which converges geometrically for such integrands: it
stays accurate for narrow, well separated components at small s as for broad overlapping ones at large s.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ._checks import as_data_array
from ._sde import VPSDE

__all__ = ["marginal_kl_curves"]

_REACH = 12.0
"""The nodes reach this many sigma(s) beyond the outermost component: the tails beyond weigh below e^{-72}."""


def _values_weights(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, counts = np.unique(column, return_counts=True)
    return values, counts / column.shape[0]


_CHUNK = 4096
"""Trapezoid nodes evaluated together (bounds memory at small s, where there are many)."""


@functools.partial(jax.jit, static_argnums=(6,))
def _kl_block(values, log_weights, mu, sd, lo, step, n_points: int):
    r"""$\int p_s\log(p_s/\varphi)$ by the trapezoid rule on `n_points` nodes $z = lo + i\,h$, shape (times, coords).

    $\log p_s(z) = \log\sum_l\pi_l e^{-(z - \mu v_l)^2/(2\sigma^2)} - \log\sigma - \tfrac12\log 2\pi$ by
    log-sum-exp (padding has log-weight $-\infty$), and $\log\varphi(z) = -\tfrac12 z^2 - \tfrac12\log 2\pi$.
    """
    chunk = min(n_points, _CHUNK)  # both powers of two

    def one_time(args):
        mu_s, sd_s, lo_s, step_s = args
        z = (lo_s + step_s * jnp.arange(n_points)).reshape(-1, chunk)

        def one_coordinate(coordinate):
            v, logw = coordinate

            def part(zc):
                a = logw[None, :] - 0.5 * ((zc[:, None] - mu_s * v[None, :]) / sd_s) ** 2
                log_ratio = jax.scipy.special.logsumexp(a, axis=1) - jnp.log(sd_s) + 0.5 * zc**2  # log p - log phi
                return jnp.sum(jnp.exp(log_ratio - 0.5 * zc**2 - 0.5 * jnp.log(2 * jnp.pi)) * log_ratio)

            return step_s * jnp.sum(jax.lax.map(part, z))

        return jax.lax.map(one_coordinate, (values, log_weights))

    return jax.lax.map(one_time, (mu, sd, lo, step))


def marginal_kl_curves(x: Float[ArrayLike, "n *shape"], s: Float[ArrayLike, "*n_times"], sde: VPSDE, *,
                       nodes_per_sd: float = 4.0) -> Float[np.ndarray, "*n_times dim"]:
    r"""$D_{KL}(p_s(x_k)\|\mathcal N(0,1))$ for every coordinate k of the diffused empirical data set, in nats (Eq. 7).

    The data set's coordinate k is the empirical distribution of its distinct values $v_{kj}$ with their frequencies
    $\pi_{kj}$; diffused, it is the mixture $p_s(x_k) = \sum_j\pi_{kj}\mathcal N(\mu(s)v_{kj}, \sigma^2(s))$,
    $\sigma^2 = 1 - \mu^2$, and
    $$D_{KL}(p_s(x_k)\|\mathcal N(0,1)) = \int p_s(z)\,[\log p_s(z) + \tfrac12 z^2 + \tfrac12\log 2\pi]\,dz,$$
    computed by the trapezoid rule with nodes `1 / nodes_per_sd` kernel widths $\sigma(s)$ apart, reaching $12\sigma$
    beyond the outermost component. For such smooth, fast-decaying integrands the rule converges geometrically in
    the node spacing: at the default 4 nodes per $\sigma$ it agrees with adaptive quadrature (`scipy.integrate.quad`)
    to $10^{-9}$ nats per coordinate on two-, three- and 17-value data from $s = 10^{-6}$ to T (the tolerance
    `tests/test_marginal.py` asserts), whether the components are narrow and well separated or broad and
    overlapping. The cost per time is (number of nodes) x (number of values) per coordinate; coordinates are grouped
    by how many distinct values they take (pixels take few). Float64 whatever the JAX mode.

    Pixel marginals of a real data set take finitely many values, so the KL grows without bound (like
    $-\log\sigma(s)$) as $s \to 0$: $s = 0$ is refused.

    **Arguments:**

    - `x`: the data set, shape (n, ...) (images are flattened: coordinate k is the k-th entry of a flattened row).
    - `s`: a time in (0, T], or a 1-D array of them.
    - `sde`: the forward process ($\mu(s)$ and $\sigma^2(s) = 1 - \mu(s)^2$ from it).
    - `nodes_per_sd`: trapezoid nodes per kernel width $\sigma(s)$.

    **Returns:**

    Float64 NumPy array of shape (n_times, dim) for a 1-D `s`, (dim,) for a scalar `s`: one KL per coordinate and
    time, in nats.
    """
    if not isinstance(sde, VPSDE):
        raise ValueError(f"sde must be a VPSDE; got {type(sde).__name__}.")
    data = as_data_array(x, "x")
    if data.ndim < 2 or data.shape[0] < 1:
        raise ValueError(f"x must have shape (n >= 1, ...), one data point per row; got shape {data.shape}.")
    data = data.reshape(data.shape[0], -1)
    times = sde.check_times(s, "s")
    if times.ndim > 1 or np.any(times <= 0):
        raise ValueError("s must be a time in (0, T] or a 1-D array of them: the marginal of a finite data set is "
                         f"discrete at s = 0, where its KL is infinite; got {s!r}.")
    if isinstance(nodes_per_sd, bool) or not isinstance(nodes_per_sd, (int, float)) or not 1.0 <= nodes_per_sd < 1e3:
        raise ValueError(f"nodes_per_sd must be a number in [1, 1000); got {nodes_per_sd!r}.")
    flat_times = np.atleast_1d(times)
    dim = data.shape[1]
    columns = [_values_weights(data[:, k]) for k in range(dim)]
    sizes = np.array([len(v) for v, _ in columns])
    # coordinates grouped by their number of values rounded up to a power of two (at least 64, at most the largest):
    # few compiled shapes, little padding where pixels take up to 256 values
    buckets = np.minimum(np.maximum(2 ** np.ceil(np.log2(sizes)).astype(int), 64), sizes.max())
    blocks = []
    for width in np.unique(buckets):
        idx = np.flatnonzero(buckets == width)
        values = np.zeros((len(idx), width))
        log_weights = np.full((len(idx), width), -np.inf)
        for row, k in enumerate(idx):
            v, w = columns[k]
            values[row, : len(v)], values[row, len(v):] = v, v[0]
            log_weights[row, : len(v)] = np.log(w)
        blocks.append((idx, values, log_weights))
    low, high = float(data.min()), float(data.max())
    out = np.empty((len(flat_times), dim))
    with jax.enable_x64(True):
        mu, sd = np.asarray(sde.mu(flat_times), np.float64), np.sqrt(np.asarray(sde.var(flat_times), np.float64))
        lo, hi = mu * low - _REACH * sd, mu * high + _REACH * sd
        # nodes at most sd / nodes_per_sd apart, their number rounded up to a power of two (few compiled shapes)
        n_points = (2 ** np.ceil(np.log2((hi - lo) * nodes_per_sd / sd + 1))).astype(int)
        step = (hi - lo) / (n_points - 1)
        for n in np.unique(n_points):
            at = np.flatnonzero(n_points == n)
            for idx, values, log_weights in blocks:
                kl = _kl_block(jnp.asarray(values), jnp.asarray(log_weights), jnp.asarray(mu[at]), jnp.asarray(sd[at]),
                               jnp.asarray(lo[at]), jnp.asarray(step[at]), int(n))
                out[np.ix_(at, idx)] = np.asarray(kl, np.float64)
    return out[0] if times.ndim == 0 else out
