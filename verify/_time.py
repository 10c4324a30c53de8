r"""Time integration for integrals $\int_0^T \mathbb E[f(\tilde x_s, s)]\,ds$, as objects passed to estimators.

Every information estimator in `verify` is a time integral of a per-sample integrand (Eqs. 11, 13, 46).
How the time axis is covered is a choice made by the caller, as diffrax takes `solver=Tsit5()`:

- `UniformGrid(n_times=100)`: the paper's reference protocol. Each data sample is evaluated at every
  grid time (midpoint rule on $[s_{\min}, T]$ by default, trapezoid optionally), so the estimator also
  returns the rate curve and its running integral.
- `GeometricGrid(n_times, s_min)`: the midpoint rule on log-spaced cells, for rates that peak near $s = 0$
  (a cheap pilot run for fitting a proposal).
- `ImportanceSampler(proposal)`: unbiased Monte Carlo in time. Each data sample draws its own time(s)
  $s_i \sim q$ and contributes $f(x_i, s_i)/q(s_i)$; `PiecewiseConstant` proposals are fitted to a rate
  curve, with a uniform floor so that no region of $[0, T]$ is left uncovered.

**Standard errors.** In every case the estimator forms one number per data sample,
$Z_i = \sum_k w_k f(x_i, s_k; \xi_{ik})$ for a grid or $Z_i = \frac1m\sum_j f(x_i, s_{ij}; \xi_{ij})/q(s_{ij})$ for
importance sampling, with fresh noise $\xi$ per evaluation. The $Z_i$ are i.i.d., so the value is their mean and
the stderr is $\mathrm{std}(Z)/\sqrt n$: it includes the variation of the data, of the noise and (for importance
sampling) of the times, and the correlation between grid times that share a data sample. It does NOT include a
grid's discretisation bias (see `UniformGrid`), which is deterministic.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from gaussian_oracle import VPSDE

__all__ = ["AbstractTimeIntegrator", "AbstractGrid", "UniformGrid", "GeometricGrid", "PiecewiseConstant",
           "ImportanceSampler"]


# ---------------------------------------------------------------------------------------------- grids
class AbstractTimeIntegrator(eqx.Module):
    """How an estimator covers the time axis $[0, T]$: a grid or an importance sampler."""


class AbstractGrid(AbstractTimeIntegrator):
    """A deterministic quadrature: nodes $s_k$ and weights $w_k$, $\\int f \\approx \\sum_k w_k f(s_k)$."""

    @abc.abstractmethod
    def nodes_weights(self, sde: VPSDE) -> tuple[np.ndarray, np.ndarray]:
        """Return float64 `(nodes, weights)`, both of shape (n_times,), for the process `sde`."""

    def cumulative_weights(self, sde: VPSDE) -> np.ndarray:
        r"""Matrix $C$ of shape (n_times, n_times) with $\int_0^{s_k} f \approx \sum_j C_{kj} f(s_j)$.

        The default (midpoint cells) counts every earlier cell in full and half of the cell around $s_k$.
        """
        _, weights = self.nodes_weights(sde)
        n = len(weights)
        lower = np.tril(np.ones((n, n)), k=-1) * weights[None, :]
        return lower + np.diag(0.5 * weights)


class UniformGrid(AbstractGrid):
    r"""Uniform grid on $[s_{\min}, T]$, the paper's reference protocol (100 times for Gaussians, 500 for images).

    Midpoint rule: $n$ cells of width $h = (T - s_{\min})/n$ with nodes at their centres, so no network is ever
    evaluated at $s = 0$ exactly. With `trapezoid=True` the nodes are the $n$ cell edges including both end points
    (weights $h/2$ at the ends).

    **Bias.** The part $\int_0^{s_{\min}}$ is left out (a negative bias equal to the true integral over
    $[0, s_{\min}]$), and the rules carry an $O(h^2 f'')$ error that is not in the stderr. The integrand is
    largest near $s = 0$ and varies there on the scale $s \sim \lambda_{\min}/\beta_{\min}$ for a data covariance
    with smallest eigenvalue $\lambda_{\min}$; when that scale is below $h$ the grid is biased by far more than
    its stderr (for manifold-like data, by a large fraction of $S_{NN}$). Use `ImportanceSampler` then.

    **Arguments:**

    - `n_times`: number of grid times.
    - `s_min`: lower end of the grid, $0 \le s_{\min} < T$.
    - `trapezoid`: trapezoid rule on the edges instead of the midpoint rule.
    """

    n_times: int = 100
    s_min: float = 0.0
    trapezoid: bool = False

    def __check_init__(self):
        if not isinstance(self.n_times, int) or self.n_times < (2 if self.trapezoid else 1):
            raise ValueError(f"UniformGrid.n_times must be a positive int (>= 2 for trapezoid); got {self.n_times!r}.")
        if not (isinstance(self.s_min, (int, float)) and self.s_min >= 0):
            raise ValueError(f"UniformGrid.s_min must be a float >= 0; got {self.s_min!r}.")

    def nodes_weights(self, sde: VPSDE) -> tuple[np.ndarray, np.ndarray]:
        if not self.s_min < sde.T:
            raise ValueError(f"UniformGrid.s_min = {self.s_min} must be below T = {sde.T}.")
        if self.trapezoid:
            nodes = np.linspace(self.s_min, sde.T, self.n_times)
            h = nodes[1] - nodes[0]
            weights = np.full(self.n_times, h)
            weights[[0, -1]] = 0.5 * h
            return nodes, weights
        h = (sde.T - self.s_min) / self.n_times
        return self.s_min + h * (np.arange(self.n_times) + 0.5), np.full(self.n_times, h)

    def cumulative_weights(self, sde: VPSDE) -> np.ndarray:
        if not self.trapezoid:
            return super().cumulative_weights(sde)
        nodes, _ = self.nodes_weights(sde)
        h = nodes[1] - nodes[0]
        n = len(nodes)
        out = np.zeros((n, n))
        for k in range(1, n):
            out[k, :k + 1] = h
            out[k, [0, k]] = 0.5 * h
        return out


class GeometricGrid(AbstractGrid):
    r"""Midpoint rule on $n$ log-spaced cells between $s_{\min} > 0$ and $T$ (nodes at geometric cell centres).

    Resolves a rate that peaks at $s \to 0$ with few nodes; the part $\int_0^{s_{\min}}$ is left out (bias).
    Mainly a pilot for `PiecewiseConstant.fit`.

    **Arguments:**

    - `n_times`: number of cells.
    - `s_min`: lower end, as an absolute time in $(0, T)$.
    """

    n_times: int = 32
    s_min: float = 1e-5

    def __check_init__(self):
        if not isinstance(self.n_times, int) or self.n_times < 1:
            raise ValueError(f"GeometricGrid.n_times must be a positive int; got {self.n_times!r}.")
        if not (isinstance(self.s_min, (int, float)) and self.s_min > 0):
            raise ValueError(f"GeometricGrid.s_min must be a float > 0; got {self.s_min!r}.")

    def nodes_weights(self, sde: VPSDE) -> tuple[np.ndarray, np.ndarray]:
        if not self.s_min < sde.T:
            raise ValueError(f"GeometricGrid.s_min = {self.s_min} must be below T = {sde.T}.")
        edges = np.geomspace(self.s_min, sde.T, self.n_times + 1)
        return np.sqrt(edges[:-1] * edges[1:]), np.diff(edges)


# ---------------------------------------------------------------------------------------------- proposals
class PiecewiseConstant(eqx.Module):
    r"""A piecewise-constant density $q(s)$ on $[0, T]$: bin $k$ of $[e_k, e_{k+1})$ holds probability $p_k$.

    $q(s) = p_k/(e_{k+1} - e_k)$ for $s$ in bin $k$. Built by `uniform`, `log_uniform` or `fit`, never with a bin
    of zero probability, so $f/q$ is finite wherever $f$ is.

    **Arguments:**

    - `edges`: increasing bin edges, first 0, last T.
    - `probs`: bin probabilities, positive, summing to one.
    """

    edges: Float[Array, " n_bins_plus_1"]
    probs: Float[Array, " n_bins"]

    def __init__(self, edges: ArrayLike, probs: ArrayLike):
        edges = np.asarray(edges, dtype=np.float64)
        probs = np.asarray(probs, dtype=np.float64)
        if edges.ndim != 1 or probs.shape != (len(edges) - 1,) or len(probs) < 1:
            raise ValueError(f"need edges of shape (n + 1,) and probs of shape (n,); got {edges.shape}, {probs.shape}.")
        if edges[0] != 0.0 or not np.all(np.diff(edges) > 0):
            raise ValueError("edges must start at 0 and increase strictly.")
        if not np.all(probs > 0) or not np.all(np.isfinite(probs)):
            raise ValueError("probs must be positive and finite (a zero bin would leave times uncovered).")
        self.edges = jnp.asarray(edges)
        self.probs = jnp.asarray(probs / probs.sum())

    @property
    def T(self) -> float:
        return float(self.edges[-1])

    @classmethod
    def uniform(cls, T: float) -> "PiecewiseConstant":
        """The uniform density $1/T$ on $[0, T]$."""
        return cls(np.array([0.0, float(T)]), np.ones(1))

    @classmethod
    def log_uniform(cls, T: float, s_min: float = 1e-5, n_bins: int = 48) -> "PiecewiseConstant":
        r"""Approximately log-uniform: equal mass on each of `n_bins` log-spaced bins in $[s_{\min}, T]$, plus $[0, s_{\min})$.

        Suited to rates $\propto 1/s$ that peak at $s \to 0$.
        """
        edges = np.concatenate([[0.0], np.geomspace(s_min, T, n_bins + 1)])
        return cls(edges, np.ones(n_bins + 1))

    @classmethod
    def fit(cls, times: ArrayLike, profile: ArrayLike, *, T: float, floor: float = 0.1) -> "PiecewiseConstant":
        r"""Fit $q \propto$ `profile` from a rate curve, mixed with a uniform floor.

        Bins are centred on `times` (edges at the midpoints between consecutive times, first 0, last T) and get
        probability $p_k \propto (1 - \phi)\,|r_k|\,\Delta_k/\sum_j |r_j|\Delta_j + \phi\,\Delta_k/T$ with $\phi$ = `floor`.
        The variance of $f/q$ is smallest for $q \propto \sqrt{\mathbb E[f^2 | s]}$; the mean rate (e.g. the
        `rate` of a pilot `Estimate` on a `GeometricGrid`) is a good proxy when the integrand's relative spread
        varies little with s. The floor bounds $f/q$ by $T f/\phi$ wherever the pilot under-estimated the rate.

        **Arguments:**

        - `times`: increasing times in $(0, T)$.
        - `profile`: nonnegative rate at those times (absolute values are taken).
        - `T`: the final time.
        - `floor`: mixture weight $\phi \in (0, 1]$ of the uniform density.

        **Returns:**

        A `PiecewiseConstant` proposal.
        """
        times = np.asarray(times, dtype=np.float64)
        profile = np.abs(np.asarray(profile, dtype=np.float64))
        if times.ndim != 1 or profile.shape != times.shape or not np.all(np.diff(times) > 0):
            raise ValueError("times must be increasing and profile must have the same shape.")
        if times[0] <= 0 or times[-1] >= T:
            raise ValueError(f"times must lie strictly inside (0, T = {T}).")
        if not 0 < floor <= 1:
            raise ValueError(f"floor must lie in (0, 1]; got {floor}.")
        if not np.all(np.isfinite(profile)):
            raise ValueError("profile must be finite.")
        edges = np.concatenate([[0.0], 0.5 * (times[1:] + times[:-1]), [float(T)]])
        width = np.diff(edges)
        mass = profile * width
        total = mass.sum()
        shaped = mass / total if total > 0 else width / T
        return cls(edges, (1.0 - floor) * shaped + floor * width / T)

    def pdf(self, s: Float[ArrayLike, "*s"]) -> Float[Array, "*s"]:
        """The density $q(s)$ (zero outside $[0, T]$)."""
        s = jnp.asarray(s)
        k = jnp.clip(jnp.searchsorted(self.edges, s, side="right") - 1, 0, self.probs.shape[0] - 1)
        density = self.probs[k] / (self.edges[k + 1] - self.edges[k])
        return jnp.where((s >= 0) & (s <= self.edges[-1]), density, 0.0).astype(s.dtype)

    def sample(self, shape: tuple[int, ...], *, key: PRNGKeyArray, dtype=float) -> Float[Array, "*shape"]:
        """Draw times $s \\sim q$: a bin by its probability, then uniformly inside it."""
        key_bin, key_u = jax.random.split(key)
        k = jax.random.categorical(key_bin, jnp.log(self.probs), shape=shape)
        u = jax.random.uniform(key_u, shape, dtype=dtype)
        lo, hi = self.edges[k].astype(dtype), self.edges[k + 1].astype(dtype)
        return lo + u * (hi - lo)


class ImportanceSampler(AbstractTimeIntegrator):
    r"""Unbiased Monte Carlo over time: $\int_0^T g(s)\,ds = \mathbb E_{s \sim q}[g(s)/q(s)]$.

    Each data sample draws `n_per_sample` times from `proposal` (with fresh noise for each) and contributes the
    average of $f/q$; the estimate is the mean over data samples and its stderr is their std$/\sqrt n$. There is
    no discretisation bias and no $s_{\min}$ cut-off, as long as the proposal covers $[0, T]$ (which
    `PiecewiseConstant` guarantees). A proposal close to the rate's shape makes the stderr per network
    evaluation much smaller than a uniform grid's (see `benchmarks/bench_importance.py`).

    **Arguments:**

    - `proposal`: the density $q$ on $[0, T]$, with `pdf(s)` and `sample(shape, *, key, dtype)`.
    - `n_per_sample`: times drawn per data sample.
    """

    proposal: PiecewiseConstant
    n_per_sample: int = 1

    def __check_init__(self):
        if not isinstance(self.n_per_sample, int) or self.n_per_sample < 1:
            raise ValueError(f"ImportanceSampler.n_per_sample must be a positive int; got {self.n_per_sample!r}.")


def check_covers(proposal: PiecewiseConstant, sde: VPSDE) -> None:
    """Raise unless the proposal's support is exactly $[0, T]$ of `sde` (so the estimate is unbiased)."""
    if not math.isclose(proposal.T, sde.T, rel_tol=1e-12):
        raise ValueError(f"the proposal covers [0, {proposal.T}] but the process runs to T = {sde.T}.")
