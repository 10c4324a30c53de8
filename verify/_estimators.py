r"""Information estimators over the model protocol: neural entropy (Eq. 11), MINDE (Eq. 13), entropy difference (Eq. 46).

Each estimator is a pure function of a model (any `eqx.Module` with a field `sde` and `__call__(x, s, y=None)`),
data samples, a time integrator (`UniformGrid`, `GeometricGrid` or `ImportanceSampler`) and a key. It returns
an `Estimate` in nats whose stderr is the standard error of the mean of i.i.d. per-data-sample values
(see `verify._time`), with `n_evals` the number of network evaluations spent.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from gaussian_oracle import Estimate

from ._time import AbstractGrid, AbstractTimeIntegrator, ImportanceSampler, UniformGrid, check_covers

__all__ = ["neural_entropy", "mutual_information_minde", "mutual_information_difference"]

Integrand = Callable[[Any, Any, Array, PRNGKeyArray], Array]


# ---------------------------------------------------------------------------------------------- integrands
def _perturbed(model, x0, s, key):
    return model.sde.perturb(x0, s, key=key)


def _entropy_integrand(models, datum, s, key):
    r"""$\tfrac{\beta(s)}{2}\|e(\tilde x_s, s; y)\|^2$ for one data sample (Eq. 11)."""
    (model,) = models
    x0, y = datum
    xs = _perturbed(model, x0, s, key)
    e = model(xs, s, y)
    return 0.5 * model.sde.beta(s) * jnp.sum(e**2)


def _both(models, xs, s, y):
    model, unconditional = models
    e_c = model(xs, s, y)
    e_u = model(xs, s, None) if unconditional is None else unconditional(xs, s, None)
    return e_c, e_u


def _minde_integrand(models, datum, s, key):
    r"""$\tfrac{\beta(s)}{2}\|e(\tilde x_s, s; y) - e(\tilde x_s, s)\|^2$ (Eq. 13)."""
    x0, y = datum
    xs = _perturbed(models[0], x0, s, key)
    e_c, e_u = _both(models, xs, s, y)
    return 0.5 * models[0].sde.beta(s) * jnp.sum((e_c - e_u) ** 2)


def _difference_integrand(models, datum, s, key):
    r"""$\tfrac{\beta(s)}{2}(\|e(\tilde x_s, s; y)\|^2 - \|e(\tilde x_s, s)\|^2)$ at one common $(s, \tilde x_s)$ (Eq. 46)."""
    x0, y = datum
    xs = _perturbed(models[0], x0, s, key)
    e_c, e_u = _both(models, xs, s, y)
    return 0.5 * models[0].sde.beta(s) * (jnp.sum(e_c**2) - jnp.sum(e_u**2))


# ---------------------------------------------------------------------------------------------- engine
@eqx.filter_jit
def _grid_chunk(integrand, models, data, nodes, keys):
    def one(datum, key):
        return jax.vmap(lambda s, k: integrand(models, datum, s, k))(nodes, jax.random.split(key, nodes.shape[0]))

    return jax.vmap(one)(data, keys)


@eqx.filter_jit
def _importance_chunk(integrand, models, data, sampler: ImportanceSampler, keys):
    m = sampler.n_per_sample
    dtype = jax.tree.leaves(data)[0].dtype

    def one(datum, key):
        key_s, key_n = jax.random.split(key)
        s = sampler.proposal.sample((m,), key=key_s, dtype=dtype)
        f = jax.vmap(lambda si, k: integrand(models, datum, si, k))(s, jax.random.split(key_n, m))
        return jnp.mean(f / sampler.proposal.pdf(s))

    return jax.vmap(one)(data, keys)


class _Moments:
    """Streaming mean and sum of squared deviations over rows (Chan et al.'s pairwise update), float64."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64)
        nb = rows.shape[0]
        mean_b = rows.mean(axis=0)
        m2_b = ((rows - mean_b) ** 2).sum(axis=0)
        total = self.n + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * nb / total
        self.m2 = self.m2 + m2_b + delta**2 * self.n * nb / total
        self.n = total

    def stderr(self) -> np.ndarray:
        return np.sqrt(self.m2 / (self.n - 1) / self.n)


def _check_data(x, y):
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must hold a batch of samples, shape (batch, ...); got shape {x.shape}.")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 data samples for a standard error; got {x.shape[0]}.")
    if y is not None:
        y = jnp.asarray(y)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x and y must have the same number of rows; got {x.shape[0]} and {y.shape[0]}.")
    return x, y


def _integrate(integrand: Integrand, models: tuple, x, y, times: AbstractTimeIntegrator, evals_per_call: int,
               chunk_size: int, key: PRNGKeyArray) -> Estimate:
    r"""Estimate $\int_0^T \mathbb E[f]\,ds$ with one i.i.d. value per data sample, chunked over the data."""
    if not isinstance(times, AbstractTimeIntegrator):
        raise ValueError(f"times must be a time integrator (UniformGrid(...), ImportanceSampler(...)); got {times!r}.")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
    x, y = _check_data(x, y)
    sde = models[0].sde
    n = x.shape[0]
    chunk = min(chunk_size, n)
    n_pad = -n % chunk
    pad = lambda a: None if a is None else jnp.concatenate([a, jnp.repeat(a[-1:], n_pad, axis=0)])  # noqa: E731
    xp, yp = pad(x), pad(y)
    # One key per data sample, independent of the chunking: results do not depend on chunk_size.
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n + n_pad))

    if isinstance(times, AbstractGrid):
        nodes64, weights = times.nodes_weights(sde)
        cumw = times.cumulative_weights(sde)
        nodes = jnp.asarray(nodes64, dtype=x.dtype)
        rate, cumulative, total = _Moments(), _Moments(), _Moments()
        for start in range(0, n + n_pad, chunk):
            sl = slice(start, start + chunk)
            data = (xp[sl], None if yp is None else yp[sl])
            rows = np.asarray(_grid_chunk(integrand, models, data, nodes, keys[sl]), dtype=np.float64)
            rows = rows[: max(0, min(chunk, n - start))]
            if len(rows) == 0:
                continue
            rate.update(rows)
            cumulative.update(rows @ cumw.T)
            total.update(rows @ weights)
        return Estimate(
            value=total.mean, stderr=total.stderr(), times=nodes64, rate=rate.mean, rate_stderr=rate.stderr(),
            cumulative=cumulative.mean, cumulative_stderr=cumulative.stderr(),
            n_evals=int(n * len(nodes64) * evals_per_call),
        )
    if isinstance(times, ImportanceSampler):
        check_covers(times.proposal, sde)
        total = _Moments()
        for start in range(0, n + n_pad, chunk):
            sl = slice(start, start + chunk)
            data = (xp[sl], None if yp is None else yp[sl])
            vals = np.asarray(_importance_chunk(integrand, models, data, times, keys[sl]), dtype=np.float64)
            vals = vals[: max(0, min(chunk, n - start))]
            if len(vals):
                total.update(vals)
        return Estimate(value=total.mean, stderr=total.stderr(),
                        n_evals=int(n * times.n_per_sample * evals_per_call))
    raise ValueError(f"unsupported time integrator {type(times).__name__}.")


# ---------------------------------------------------------------------------------------------- estimators
def neural_entropy(model, x: Float[Array, "batch *shape"], *, y: Float[Array, "batch dim_y"] | None = None,
                   times: AbstractTimeIntegrator = UniformGrid(n_times=100), chunk_size: int = 1024,
                   key: PRNGKeyArray) -> Estimate:
    r"""Neural entropy $S_{NN} = \int_0^T \tfrac{\beta(s)}{2}\,\mathbb E\|e(\tilde x_s, s; y)\|^2\,ds$ (Eq. 11), in nats.

    $\tilde x_s \sim \mathcal N(\mu(s)x_0, (1 - \mu(s)^2)I)$ with $x_0$ the rows of `x`. With `y` (rows paired with
    `x`) this is the conditional $S_{NN}^{X|Y}$; for the exact $e^*$ it equals $S_{tot}(T)$ =
    `total_entropy_curve(T)` (`conditional_total_entropy_curve(T)`), which is below the $T \to \infty$ value by
    $D_{KL}(p_T \| p_{eq})$. On a grid the estimate carries the rate curve (`times`, `rate`, `rate_stderr`) and
    its running integral (`cumulative`, `cumulative_stderr`).

    **Arguments:**

    - `model`: any model satisfying the protocol (field `sde`, `__call__(x, s, y=None)` for one sample).
    - `x`: data samples $x_0$, one per row.
    - `y`: conditioning values paired with the rows of `x`, or `None` for the unconditional model.
    - `times`: the time integrator, e.g. `UniformGrid(n_times=100)` or `ImportanceSampler(proposal)`.
    - `chunk_size`: data rows evaluated per compiled call (bounds memory).
    - `key`: a PRNG key for the noise (and the times, when sampled).

    **Returns:**

    An `Estimate` in nats, flagged if significantly negative.
    """
    est = _integrate(_entropy_integrand, (model,), x, y, times, 1, chunk_size, key)
    return est.check_bounds(lower=0.0, name="S_NN")


def mutual_information_minde(model, x: Float[Array, "batch *shape"], y: Float[Array, "batch dim_y"], *,
                             times: AbstractTimeIntegrator = UniformGrid(n_times=100),
                             unconditional_model=None, chunk_size: int = 1024, key: PRNGKeyArray) -> Estimate:
    r"""MINDE mutual information $I(X;Y) \approx \int_0^T \tfrac{\beta}{2}\mathbb E_{X,Y}\|e(\tilde x_s, s; y) - e(\tilde x_s, s)\|^2 ds$ (Eqs. 12-13), in nats.

    The expectation runs over the data pairs $(x_0, y)$ and the forward noise. With exact scores the result is
    $I(X;Y) - I(X_T;Y)$ (`mutual_information_curve(T)`). Each evaluation time costs two network calls.

    **Arguments:**

    - `model`: the conditional model; `model(x, s, None)` gives the unconditional $e$ unless
      `unconditional_model` is passed.
    - `x`, `y`: paired data samples, one pair per row.
    - `times`: the time integrator.
    - `unconditional_model`: a separately trained unconditional model (called with `y=None`), or `None`.
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key.

    **Returns:**

    An `Estimate` in nats (flagged if significantly negative).
    """
    if y is None:
        raise ValueError("mutual_information_minde needs y, paired with the rows of x.")
    est = _integrate(_minde_integrand, (model, unconditional_model), x, y, times, 2, chunk_size, key)
    return est.check_bounds(lower=0.0, name="I_MINDE")


def mutual_information_difference(model, x: Float[Array, "batch *shape"], y: Float[Array, "batch dim_y"], *,
                                  times: AbstractTimeIntegrator = UniformGrid(n_times=100),
                                  unconditional_model=None, chunk_size: int = 1024,
                                  key: PRNGKeyArray) -> Estimate:
    r"""Entropy-difference mutual information $I(X;Y) \approx S_{NN}^{X|Y} - S_{NN}^X$ (Eq. 46), in nats.

    Both neural entropies are computed at the same times and the same noisy points $\tilde x_s$ (common random
    numbers), so the integrand is the paired difference $\tfrac{\beta}{2}(\|e(\tilde x_s, s; y)\|^2 - \|e(\tilde x_s, s)\|^2)$
    and the stderr is that of the paired differences: the large, shared fluctuation of $\|e\|^2$ near $s = 0$
    cancels. With exact scores the integrand's mean equals the MINDE integrand's at every s, so the value is also
    $I(X;Y) - I(X_T;Y)$; per sample it is noisier than MINDE's.

    **Arguments:**

    - `model`: the conditional model (`model(x, s, None)` is the unconditional one unless `unconditional_model`).
    - `x`, `y`: paired data samples.
    - `times`: the time integrator.
    - `unconditional_model`: a separate unconditional model, or `None`.
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key.

    **Returns:**

    An `Estimate` in nats (flagged if significantly negative).
    """
    if y is None:
        raise ValueError("mutual_information_difference needs y, paired with the rows of x.")
    est = _integrate(_difference_integrand, (model, unconditional_model), x, y, times, 2, chunk_size, key)
    return est.check_bounds(lower=0.0, name="I_diff")
