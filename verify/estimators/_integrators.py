r"""Time integration for integrals $\int_0^T \mathbb E[f(\tilde x_s, s)]\,ds$, as objects passed to estimators.

Every information estimator in `verify` is a time integral of a per-sample integrand (Eqs. 11, 13, 46).
How the time axis is covered is a choice made by the caller, as diffrax takes `solver=Tsit5()`:

- `UniformGrid(n_times=100)`: the paper's reference protocol. Each data sample is evaluated at every
  grid time (midpoint rule on $[s_{\min}, T]$ by default, trapezoid optionally), so the estimator also
  returns the rate curve and its running integral.
- `GeometricGrid(n_times, s_min)`: the midpoint rule on log-spaced cells, for rates that peak near $s = 0$
  (a cheap pilot run for fitting a proposal).
- `ImportanceSampler(proposal)`: unbiased Monte Carlo in time. Each data sample draws its own time(s)
  $s_i \sim q$ and contributes $f(x_i, s_i)/q(s_i)$; the proposal is any `gaussian_oracle.AbstractTimeDensity`
  covering $[0, T]$, e.g. a `PiecewiseConstant` fitted to a rate curve, with a uniform floor so that no region
  of $[0, T]$ is left uncovered.

Each integrator owns how it evaluates and summarises (as a diffrax solver owns its `step`): `rows` makes one i.i.d.
value per data row, `estimate` summarises rows, and `integrate` is the two in turn. The estimators only supply the
integrand; one whose values are arrays (several rates read off the same network calls, as `information_estimates`
and `information_budget` do) gives rows with trailing axes, each slice summarised on its own.

**Standard errors.** In every case the estimator forms one number per data sample,
$Z_i = \sum_k w_k f(x_i, s_k; \xi_{ik})$ for a grid or $Z_i = \frac1m\sum_j f(x_i, s_{ij}; \xi_{ij})/q(s_{ij})$ for
importance sampling, with fresh noise $\xi$ per evaluation. The $Z_i$ are i.i.d., so the value is their mean and
the stderr is $\mathrm{std}(Z)/\sqrt n$: it includes the variation of the data, of the noise and (for importance
sampling) of the times, and the correlation between grid times that share a data sample. It does NOT include a
grid's discretisation bias (see `UniformGrid`), which is deterministic.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from gaussian_oracle import VPSDE, AbstractTimeDensity, Estimate, mean_stderr

__all__ = ["AbstractTimeIntegrator", "AbstractGrid", "UniformGrid", "GeometricGrid", "ImportanceSampler", "Integrand"]

Integrand = Callable[[Any, Any, Array, PRNGKeyArray], Array]
"""`integrand(models, (x0, y), s, key) -> scalar`: the per-sample integrand at one time, with fresh noise from `key`."""


# ---------------------------------------------------------------------------------------------- checks
def _check_finite(name: str, a: np.ndarray, hint: str = "") -> None:
    """One error naming the rows of `a` (first axis) that hold NaN or infinity, followed by `hint`."""
    if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.all(np.isfinite(a.reshape(a.shape[0], -1)), axis=1))
        shown = ", ".join(str(i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise ValueError(f"{name} must be finite; {len(bad)} of its {a.shape[0]} rows hold NaN or infinity "
                         f"(rows {shown}).{hint}")


def _finite_rows(rows: np.ndarray, nodes: np.ndarray | None = None) -> np.ndarray:
    """`rows` as made by `rows` (with `nodes`, a grid's: axis 1 runs over them), or one error saying at how many
    (row, time) points and at which times the model's output is not finite (else the Monte Carlo summary would fail
    on a NaN stderr, naming neither the model nor the times)."""
    if not np.all(np.isfinite(rows)):
        if nodes is None:
            where = "at the times drawn from the proposal"
        else:
            bad = ~np.all(np.isfinite(rows.reshape(rows.shape[:2] + (-1,))), axis=2)  # (rows, nodes)
            times = nodes[np.any(bad, axis=0)]
            where = (f"at {int(bad.sum())} of the {bad.size} (row, time) points, at times from {times.min():.4g} to "
                     f"{times.max():.4g}")
        _check_finite("the integrand (computed from the model's output)", rows,  # raises
                      hint=f" The model's output is not finite {where} (a diverged network?).")
    return rows


# ---------------------------------------------------------------------------------------------- engine
def _chunks(x, y, chunk_size: int, key: PRNGKeyArray):
    """Yield `(data, keys, n_valid)` chunks of the rows of (x, y), with one key per row independent of chunking."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
    n = x.shape[0]
    chunk = min(chunk_size, n)
    n_pad = -n % chunk
    pad = lambda a: None if a is None else jnp.concatenate([a, jnp.repeat(a[-1:], n_pad, axis=0)])  # noqa: E731
    xp, yp = pad(x), pad(y)
    # One key per data sample, independent of the chunking: results do not depend on chunk_size.
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n + n_pad))
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        yield (xp[sl], None if yp is None else yp[sl]), keys[sl], min(chunk, n - start)


@eqx.filter_jit
def _grid_chunk(integrand, models, data, nodes, keys):
    def one(datum, key):
        return jax.vmap(lambda s, k: integrand(models, datum, s, k))(nodes, jax.random.split(key, nodes.shape[0]))

    return jax.vmap(one)(data, keys)


@eqx.filter_jit
def _importance_chunk(integrand, models, data, proposal, n_per_sample: int, sde, keys):
    dtype = jax.tree.leaves(data)[0].dtype

    def one(datum, key):
        key_s, key_n = jax.random.split(key)
        s = proposal.sample(sde, (n_per_sample,), key=key_s, dtype=dtype)
        f = jax.vmap(lambda si, k: integrand(models, datum, si, k))(s, jax.random.split(key_n, n_per_sample))
        q = proposal.pdf(sde, s)
        return jnp.mean(f / q.reshape(q.shape + (1,) * (f.ndim - 1)), axis=0)

    return jax.vmap(one)(data, keys)


# ---------------------------------------------------------------------------------------------- integrators
class AbstractTimeIntegrator(eqx.Module):
    """How an estimator covers the time axis $[0, T]$: a grid or an importance sampler.

    A subclass makes one i.i.d. value per data row (`rows`) and summarises rows (`estimate`); `integrate` is the two
    in turn. An integrand with array values (several rates on the same noisy inputs) gives rows with those trailing
    axes, and each slice of them is summarised on its own.
    """

    @abc.abstractmethod
    def rows(self, integrand: Integrand, models: tuple, x, y, *, sde: VPSDE, chunk_size: int,
             key: PRNGKeyArray) -> np.ndarray:
        """The per-data-row values that `estimate` summarises, float64 with one leading axis over the rows of `x`.
        Each row has its own key, folded from `key` by its index, so the values do not depend on `chunk_size` and a
        subset of rows is summarised without evaluating anything again. A value that is not finite (the model's
        output is not) is one `ValueError` naming the rows and times. Arguments as `integrate`."""

    @abc.abstractmethod
    def estimate(self, rows: np.ndarray, *, sde: VPSDE, evals_per_call: int) -> Estimate:
        """The `Estimate` (per-row stderrs) of rows made by `rows` with a scalar integrand, or of a slice or subset
        of them (at least two rows)."""

    def integrate(self, integrand: Integrand, models: tuple, x, y, *, sde: VPSDE, evals_per_call: int,
                  chunk_size: int, key: PRNGKeyArray) -> Estimate:
        r"""Estimate $\int_0^T \mathbb E[f]\,ds$ with one i.i.d. value per data row, chunked over the rows.

        **Arguments:**

        - `integrand`: `integrand(models, (x0, y), s, key) -> scalar` for one data row.
        - `models`: passed to the integrand unchanged.
        - `x`, `y`: data rows (`y` may be `None`), already validated.
        - `sde`: the forward process (its T bounds the integral).
        - `evals_per_call`: network evaluations per integrand call (for `Estimate.n_evals`).
        - `chunk_size`: data rows per compiled call.
        - `key`: a PRNG key.
        """
        rows = self.rows(integrand, models, x, y, sde=sde, chunk_size=chunk_size, key=key)
        return self.estimate(rows, sde=sde, evals_per_call=evals_per_call)


class AbstractGrid(AbstractTimeIntegrator):
    r"""A deterministic quadrature: nodes $s_k$ and weights $w_k$, $\int f \approx \sum_k w_k f(s_k)$.

    Returns the rate curve and its running integral beside the total.
    """

    @abc.abstractmethod
    def nodes_weights(self, sde: VPSDE) -> tuple[np.ndarray, np.ndarray]:
        """Return float64 `(nodes, weights)`, both of shape (n_times,), for the process `sde`."""

    @abc.abstractmethod
    def cumulative_weights(self, sde: VPSDE) -> np.ndarray:
        r"""Matrix $C$ of shape (n_times, n_times) with $\int_0^{s_k} f \approx \sum_j C_{kj} f(s_j)$."""

    def rows(self, integrand, models, x, y, *, sde, chunk_size, key):
        """The integrand at every node for every data row: float64 of shape (n, n_times), or (n, n_times, *shape) for
        an integrand with array values (4 MB for 1,000 images x 500 times)."""
        nodes = self.nodes_weights(sde)[0]
        at = jnp.asarray(nodes, dtype=x.dtype)
        return _finite_rows(np.concatenate([
            np.asarray(_grid_chunk(integrand, models, data, at, keys), dtype=np.float64)[:n_valid]
            for data, keys, n_valid in _chunks(x, y, chunk_size, key)]), np.asarray(nodes, np.float64))

    def estimate(self, rows, *, sde, evals_per_call):
        """The total, the rate curve and its running integral."""
        nodes, weights = self.nodes_weights(sde)
        rate, rate_se = mean_stderr(rows)
        cumulative, cumulative_se = mean_stderr(rows @ self.cumulative_weights(sde).T)
        total, total_se = mean_stderr(rows @ weights)
        return Estimate(value=total, stderr=total_se, times=nodes, rate=rate, rate_stderr=rate_se,
                        cumulative=cumulative, cumulative_stderr=cumulative_se,
                        n_evals=int(rows.shape[0] * rows.shape[1] * evals_per_call))


def _midpoint_cumulative(weights: np.ndarray) -> np.ndarray:
    """Midpoint cells: every earlier cell in full and half of the cell around $s_k$."""
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
        if not isinstance(self.trapezoid, (bool, np.bool_)):
            raise ValueError(f"UniformGrid.trapezoid must be True or False; got {self.trapezoid!r}.")
        fewest = 2 if self.trapezoid else 1
        if isinstance(self.n_times, bool) or not isinstance(self.n_times, int) or self.n_times < fewest:
            raise ValueError(f"UniformGrid.n_times must be a positive int (>= 2 for trapezoid); got {self.n_times!r}.")
        if isinstance(self.s_min, bool) or not (isinstance(self.s_min, (int, float)) and np.isfinite(self.s_min)
                                                and self.s_min >= 0):
            raise ValueError(f"UniformGrid.s_min must be a finite number >= 0; got {self.s_min!r}.")

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
        nodes, weights = self.nodes_weights(sde)
        if not self.trapezoid:
            return _midpoint_cumulative(weights)
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
        if isinstance(self.n_times, bool) or not isinstance(self.n_times, int) or self.n_times < 1:
            raise ValueError(f"GeometricGrid.n_times must be a positive int; got {self.n_times!r}.")
        if isinstance(self.s_min, bool) or not (isinstance(self.s_min, (int, float)) and np.isfinite(self.s_min)
                                                and self.s_min > 0):
            raise ValueError(f"GeometricGrid.s_min must be a finite number > 0; got {self.s_min!r}.")

    def nodes_weights(self, sde: VPSDE) -> tuple[np.ndarray, np.ndarray]:
        if not self.s_min < sde.T:
            raise ValueError(f"GeometricGrid.s_min = {self.s_min} must be below T = {sde.T}.")
        edges = np.geomspace(self.s_min, sde.T, self.n_times + 1)
        return np.sqrt(edges[:-1] * edges[1:]), np.diff(edges)

    def cumulative_weights(self, sde: VPSDE) -> np.ndarray:
        return _midpoint_cumulative(self.nodes_weights(sde)[1])


class ImportanceSampler(AbstractTimeIntegrator):
    r"""Unbiased Monte Carlo over time: $\int_0^T g(s)\,ds = \mathbb E_{s \sim q}[g(s)/q(s)]$.

    Each data sample draws `n_per_sample` times from `proposal` (with fresh noise for each) and contributes the
    average of $f/q$; the estimate is the mean over data samples and its stderr is their std$/\sqrt n$. There is
    no discretisation bias and no $s_{\min}$ cut-off, as long as the proposal covers $[0, T]$ (which
    `PiecewiseConstant` guarantees; the check is made at `integrate`). A proposal close to the rate's shape makes the stderr per network
    evaluation much smaller than a uniform grid's (see `benchmarks/bench_importance.py`).

    **Arguments:**

    - `proposal`: the density $q$ on $[0, T]$, with `pdf(s)` and `sample(shape, *, key, dtype)`.
    - `n_per_sample`: times drawn per data sample.
    """

    proposal: AbstractTimeDensity
    n_per_sample: int = 1

    def __check_init__(self):
        if not isinstance(self.proposal, AbstractTimeDensity):
            raise ValueError(f"ImportanceSampler.proposal must be an AbstractTimeDensity (e.g. PiecewiseConstant.fit(...)); "
                             f"got {self.proposal!r}.")
        if isinstance(self.n_per_sample, bool) or not isinstance(self.n_per_sample, int) or self.n_per_sample < 1:
            raise ValueError(f"ImportanceSampler.n_per_sample must be a positive int; got {self.n_per_sample!r}.")

    def rows(self, integrand, models, x, y, *, sde, chunk_size, key):
        """Each data row's average of $f/q$ over its own times: float64 of shape (n,), or (n, *shape) for an
        integrand with array values."""
        if not self.proposal.covers(sde):
            lo, hi = self.proposal.support(sde)
            raise ValueError(f"the proposal covers [{lo}, {hi}] but an unbiased estimate needs all of [0, T] = [0, {sde.T}].")
        return _finite_rows(np.concatenate([
            np.asarray(_importance_chunk(integrand, models, data, self.proposal, self.n_per_sample, sde, keys),
                       dtype=np.float64)[:n_valid]
            for data, keys, n_valid in _chunks(x, y, chunk_size, key)]))

    def estimate(self, rows, *, sde, evals_per_call):
        """The total alone (no curve: each row's times are its own)."""
        total, total_se = mean_stderr(rows)
        return Estimate(value=total, stderr=total_se, n_evals=int(rows.shape[0] * self.n_per_sample * evals_per_call))
