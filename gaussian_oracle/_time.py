r"""Densities over forward time $s \in [0, T]$: one abstraction for training and for estimation.

Every time integral in the package, the DEM loss (Eq. 40) and every information estimator (Eqs. 11, 13, 46),
can draw its times from a density $q(s)$ and weight each draw by $1/q(s)$, so that
$\mathbb E_{s\sim q}[f(s)/q(s)] = \int f\,ds$ over the density's support. The same objects serve both:
`learned.DEMLoss(time_sampler=LogSNRTime())` for training and `verify.ImportanceSampler(PiecewiseConstant.fit(...))`
for estimation.

- `UniformTime()`: $q = 1/T$ on $[0, T]$ (Eq. 40 as written).
- `LogSNRTime(s_min)`: uniform in the log signal-to-noise ratio on $[s_{\min}T, T]$, where the information of
  data with small variances lives.
- `PiecewiseConstant(edges, probs)`: a histogram density on $[0, T]$, built `uniform`, `log_uniform` or `fit` to
  a pilot rate curve (importance sampling for the estimators).
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._checks import as_float_array, positive_int, positive_scalar
from ._sde import VPSDE

__all__ = ["AbstractTimeDensity", "UniformTime", "LogSNRTime", "PiecewiseConstant"]

_PROB_TOL = 1e-10
"""How far from one the sum of `PiecewiseConstant`'s `probs` may be (as `GaussianMixture`'s weights)."""


def _density_dtype(s: Array):
    """The dtype of a density at times `s`: that of a float `s`, the default float dtype for an integer one."""
    return jnp.result_type(s, float)


class AbstractTimeDensity(eqx.Module):
    r"""A probability density $q(s)$ over forward times of a process `sde`.

    Subclasses give `support`, `sample` and `pdf`; `__call__` draws one time with its weight $1/q(s)$, which is
    what the DEM loss needs. A density whose support is $[0, T]$ gives unbiased integrals over the whole process;
    one with a smaller support (`LogSNRTime`) integrates over that support only.
    """

    @abc.abstractmethod
    def support(self, sde: VPSDE) -> tuple[float, float]:
        """The interval `(lo, hi)` of times the density can draw, for the process `sde`."""

    @abc.abstractmethod
    def sample(self, sde: VPSDE, shape: tuple[int, ...], *, key: PRNGKeyArray, dtype=float) -> Float[Array, "*shape"]:
        """Draw times $s \\sim q$ of the given shape."""

    @abc.abstractmethod
    def pdf(self, sde: VPSDE, s: Float[ArrayLike, "*s"]) -> Float[Array, "*s"]:
        """The density $q(s)$ (zero outside the support), in the dtype of a float `s` and in the default float dtype
        for an integer `s` (a density is never truncated to an integer)."""

    def __call__(self, sde: VPSDE, *, key: PRNGKeyArray) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """One time $s \\sim q$ and its inverse density $1/q(s)$, so that $\\mathbb E[f(s)/q(s)] = \\int f$."""
        s = self.sample(sde, (), key=key)
        return s, 1.0 / self.pdf(sde, s)

    def covers(self, sde: VPSDE) -> bool:
        """Whether the support is all of $[0, T]$ (so integrals over the whole process are unbiased)."""
        lo, hi = self.support(sde)
        return lo == 0.0 and math.isclose(hi, sde.T, rel_tol=1e-12)


class UniformTime(AbstractTimeDensity):
    r"""$s \sim \mathcal U(0, T)$, $1/q = T$: Eq. 40 as written."""

    def support(self, sde):
        return 0.0, float(sde.T)

    def sample(self, sde, shape, *, key, dtype=float):
        return jax.random.uniform(key, shape, dtype, minval=0.0, maxval=sde.T)

    def pdf(self, sde, s):
        s = jnp.asarray(s)
        return jnp.where((s >= 0) & (s <= sde.T), 1.0 / sde.T, 0.0).astype(_density_dtype(s))


class LogSNRTime(AbstractTimeDensity):
    r"""Times uniform in the log signal-to-noise ratio $\rho(s) = \log(\alpha/(1-\alpha))$ over $[\rho(T), \rho(s_{\min}T)]$.

    Since $d\rho/ds = -\beta/(1-\alpha)$, the likelihood weighting reads $\tfrac{\beta}{2}ds = \tfrac{1-\alpha}{2}|d\rho|$:
    the error in any $S_{NN}$-type integral is $\int\tfrac{1-\alpha}{2}\mathbb E\|e_\theta - e^*\|^2 d\rho$, and data
    with variances $\lambda$ carry about $\tfrac12$ nat per unit $\rho$ per direction wherever
    $\lambda < 1 - \alpha < 1$. Sampling uniformly in $\rho$ spends training effort where that information lives
    (down to variances of about `s_min` $\beta_{\min}$) and keeps $\lambda/q = \mathrm{range}\cdot(1-\alpha)/2$
    bounded. The density is $q(s) = \beta(s)/(\mathrm{range}\,(1-\alpha(s)))$ on $[s_{\min}T, T]$; times below
    `s_min` are not drawn, which leaves out $\int_0^{s_{\min}T}$ (about $s_{\min}T$ times the rate at 0).

    **Arguments:**

    - `s_min`: the smallest time drawn, as a fraction of T.
    """

    s_min: float = eqx.field(static=True, default=1e-5)

    def __check_init__(self):
        if not (isinstance(self.s_min, float) and 0.0 < self.s_min < 1.0):
            raise ValueError(f"LogSNRTime.s_min must be a float in (0, 1); got {self.s_min!r}.")

    def support(self, sde):
        return self.s_min * sde.T, float(sde.T)

    def _range(self, sde):
        return sde.log_snr(self.s_min * sde.T), sde.log_snr(sde.T)

    def sample(self, sde, shape, *, key, dtype=float):
        hi, lo = self._range(sde)
        r = jax.random.uniform(key, shape, dtype, minval=lo, maxval=hi)
        # alpha = sigmoid(r): int_beta(s) = softplus(-r); invert the quadratic int_beta(s) = B.
        big_b = jax.nn.softplus(-r)
        slope = (sde.beta_max - sde.beta_min) / sde.T
        s = 2.0 * big_b / (sde.beta_min + jnp.sqrt(sde.beta_min**2 + 2.0 * slope * big_b))
        return jnp.clip(s, self.s_min * sde.T, sde.T).astype(dtype)

    def pdf(self, sde, s):
        s = jnp.asarray(s)
        hi, lo = self._range(sde)
        density = sde.beta(s) / ((hi - lo) * sde.var(s))
        inside = (s >= self.s_min * sde.T) & (s <= sde.T)
        return jnp.where(inside, density, 0.0).astype(_density_dtype(s))


class PiecewiseConstant(AbstractTimeDensity):
    r"""A piecewise-constant density $q(s)$ on $[0, T]$: bin $k$ of $[e_k, e_{k+1})$ holds probability $p_k$.

    $q(s) = p_k/(e_{k+1} - e_k)$ for $s$ in bin $k$. Built by `uniform`, `log_uniform` or `fit`, never with a bin
    of zero probability, so $f/q$ is finite wherever $f$ is. Its $T$ is its last edge; used with a process of
    another $T$ it raises.

    **Arguments:**

    - `edges`: increasing bin edges, first 0, last T.
    - `probs`: bin probabilities, positive, summing to one within 1e-10 (they are not renormalised silently; the
      constructors `uniform`, `log_uniform` and `fit` normalise their own).
    """

    edges: Float[Array, " n_bins_plus_1"]
    probs: Float[Array, " n_bins"]
    T: float = eqx.field(static=True)

    def __init__(self, edges: ArrayLike, probs: ArrayLike):
        edges = as_float_array(edges, "edges")  # real and finite: no string, complex or infinite T
        probs = as_float_array(probs, "probs")
        if edges.ndim != 1 or probs.shape != (len(edges) - 1,) or len(probs) < 1:
            raise ValueError(f"need edges of shape (n + 1,) and probs of shape (n,); got {edges.shape}, {probs.shape}.")
        if edges[0] != 0.0 or not np.all(np.diff(edges) > 0):
            raise ValueError("edges must start at 0 and increase strictly.")
        if not np.all(probs > 0):  # (finite already: as_float_array)
            raise ValueError("probs must be positive (a zero bin would leave times uncovered).")
        total = float(probs.sum())
        if abs(total - 1.0) > _PROB_TOL:
            raise ValueError(
                f"probs must sum to one within {_PROB_TOL:g}; they sum to {total!r} (normalise them yourself: they "
                "are not renormalised silently)."
            )
        self.edges = jnp.asarray(edges)
        self.probs = jnp.asarray(probs)
        self.T = float(edges[-1])

    def _check(self, sde: VPSDE) -> None:
        if not math.isclose(self.T, sde.T, rel_tol=1e-12):
            raise ValueError(f"the density covers [0, {self.T}] but the process runs to T = {sde.T}.")

    @classmethod
    def uniform(cls, T: float) -> "PiecewiseConstant":
        """The uniform density $1/T$ on $[0, T]$."""
        T = positive_scalar(T, "T")
        return cls(np.array([0.0, T]), np.ones(1))  # one bin: probability 1

    @classmethod
    def log_uniform(cls, T: float, s_min: float = 1e-5, n_bins: int = 48) -> "PiecewiseConstant":
        r"""Approximately log-uniform: equal mass on each of `n_bins` log-spaced bins in $[s_{\min}, T]$, plus $[0, s_{\min})$.

        Suited to rates $\propto 1/s$ that peak at $s \to 0$.
        """
        T = positive_scalar(T, "T")
        s_min_arr = as_float_array(s_min, "s_min")
        if s_min_arr.ndim != 0 or not 0 < s_min_arr < T:
            raise ValueError(f"s_min must lie in (0, T) = (0, {T}) (an absolute time); got {s_min!r}.")
        n_bins = positive_int(n_bins, "n_bins")
        edges = np.concatenate([[0.0], np.geomspace(float(s_min_arr), T, n_bins + 1)])
        return cls(edges, np.full(n_bins + 1, 1.0 / (n_bins + 1)))

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

        A `PiecewiseConstant` density.
        """
        T = positive_scalar(T, "T")
        times = as_float_array(times, "times")
        profile = np.abs(as_float_array(profile, "profile"))
        floor = as_float_array(floor, "floor")
        if floor.ndim != 0:
            raise ValueError(f"floor must be a scalar in (0, 1]; got shape {floor.shape}.")
        floor = float(floor)
        if times.ndim != 1 or times.size == 0 or profile.shape != times.shape or not np.all(np.diff(times) > 0):
            raise ValueError(f"times must be a non-empty increasing 1-D array and profile must have the same shape; "
                             f"got shapes {times.shape} and {profile.shape}.")
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
        # normalised by construction: `shaped` and `width / T` each sum to one
        return cls(edges, (1.0 - floor) * shaped + floor * width / T)

    def support(self, sde):
        self._check(sde)
        return 0.0, self.T

    def pdf(self, sde, s):
        self._check(sde)
        s = jnp.asarray(s)
        k = jnp.clip(jnp.searchsorted(self.edges, s, side="right") - 1, 0, self.probs.shape[0] - 1)
        density = self.probs[k] / (self.edges[k + 1] - self.edges[k])
        return jnp.where((s >= 0) & (s <= self.edges[-1]), density, 0.0).astype(_density_dtype(s))

    def sample(self, sde, shape, *, key, dtype=float):
        """Draw times $s \\sim q$: a bin by its probability, then uniformly inside it."""
        self._check(sde)
        key_bin, key_u = jax.random.split(key)
        dtype = jnp.dtype(dtype) if dtype is not float else jnp.asarray(0.0).dtype
        k = jax.random.categorical(key_bin, jnp.log(self.probs.astype(dtype)), shape=shape)
        u = jax.random.uniform(key_u, shape, dtype=dtype)
        lo, hi = self.edges[k].astype(dtype), self.edges[k + 1].astype(dtype)
        return lo + u * (hi - lo)
