r"""A Gaussian mixture with a discrete label: exact posteriors and scores, label entropy under the VP process.

Component $k$ of $p_d(x|y=k) = \mathcal N(m_k, C_k)$ diffuses under the VP process to
$p_s(x|y=k) = \mathcal N(\mu(s)m_k, \alpha(s)C_k + (1-\alpha(s))I)$, so every density, score and label posterior is
closed form at every $s$. With $C_k = U_k\,\mathrm{diag}(\lambda_k)U_k^\top$ the diffused covariance has the same
eigenvectors and eigenvalues $d_k = \alpha\lambda_k + (1-\alpha)$, computed with $1-\alpha$ from `expm1` so it stays
accurate for near-singular (low-rank plus $\epsilon I$) components at small $s$.

Expectations over $x$ (label entropy, mutual information, KL divergences) have no closed form; they are estimated
by Monte Carlo from the exact integrands, in float64, and returned as `Estimate`s with standard errors.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import entr
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from ._checks import as_float_array, check_label, covariance, positive_int, positive_scalar
from ._estimate import Estimate, check_curve_bounds, mean_stderr
from ._keys import check_key
from ._precision import exact
from ._sde import VPSDE


_WEIGHT_TOL = 1e-10


class GaussianMixtureModel(eqx.Module):
    r"""The exact entropy-matching vector $e^*(x, s; y) = \nabla\log p_s(x|y) + x$ (Eq. 8) of a `GaussianMixture`.

    Satisfies the model protocol: a field `sde` and `__call__(x, s, y=None)` for one sample, with `y` an integer
    label or None. Arrays are held in the caller's default float dtype, so it runs wherever a trained network
    would; `GaussianMixture`'s Monte Carlo estimates build it in float64. Times outside $[0, T]$ (NaN included)
    and labels outside `0..n_components-1` are refused (`VPSDE.check_time`), as by every protocol model.
    """

    sde: VPSDE
    log_weights: Float[Array, " n_components"]
    means: Float[Array, "n_components dim_x"]
    evecs: Float[Array, "n_components dim_x dim_x"]
    evals: Float[Array, "n_components dim_x"]

    @property
    def n_components(self) -> int:
        return self.log_weights.shape[0]

    def _check(self, x, s, y):
        """Validate one sample's inputs; returns `(s, y)` (with runtime checks attached when traced)."""
        dim_x = self.means.shape[1]
        if jnp.shape(x) != (dim_x,):
            raise ValueError(f"x must have shape ({dim_x},) for one sample (vmap for batches); got {jnp.shape(x)}.")
        if jnp.ndim(s) != 0:
            raise ValueError(f"s must be a scalar time; got shape {jnp.shape(s)}.")
        return self.sde.check_time(s), None if y is None else check_label(y, self.n_components)

    def _components(self, x, s):
        r"""Per component: $\log\mathcal N_k(x)$ at time s, the score $-\Sigma_k(s)^{-1}(x - \mu m_k)$ and $e_k = $ score $+ x$."""
        alpha, var, mu = self.sde.alpha(s), self.sde.var(s), self.sde.mu(s)
        d = alpha * self.evals + var
        z = jnp.einsum("kij,i->kj", self.evecs, x)
        zm = jnp.einsum("kij,ki->kj", self.evecs, self.means)
        r = z - mu * zm
        dim_x = x.shape[0]
        log_n = -0.5 * (dim_x * math.log(2 * math.pi) + jnp.sum(jnp.log(d), -1) + jnp.sum(r**2 / d, -1))
        score = -jnp.einsum("kij,kj->ki", self.evecs, r / d)
        # e_k = U_k [alpha (lambda - 1) z + mu U_k^T m_k] / d: the same vector without the cancellation of score + x.
        e = jnp.einsum("kij,kj->ki", self.evecs, (alpha * (self.evals - 1.0) * z + mu * zm) / d)
        return log_n, score, e

    def log_prob(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""], y: Int[ArrayLike, ""] | None = None
                 ) -> Float[Array, ""]:
        r"""$\log p_s(x) = \log\sum_k w_k\mathcal N_k(x; s)$, or $\log p_s(x|y) = \log\mathcal N_y(x; s)$ when `y` is given."""
        s, y = self._check(x, s, y)
        log_n, _, _ = self._components(x, s)
        if y is None:
            return jax.nn.logsumexp(self.log_weights + log_n)
        return log_n[y]

    def posterior(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""]) -> Float[Array, " n_components"]:
        r"""Bayes' rule $p(y=k | x_s) = w_k\mathcal N_k(x; s) / \sum_j w_j\mathcal N_j(x; s)$, a softmax over k."""
        s, _ = self._check(x, s, None)
        log_n, _, _ = self._components(x, s)
        return jax.nn.softmax(self.log_weights + log_n)

    def score(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""], y: Int[ArrayLike, ""] | None = None
              ) -> Float[Array, " dim_x"]:
        r"""$\nabla\log p_s(x) = \sum_k p(k|x_s)\nabla\log\mathcal N_k(x; s)$, or $\nabla\log p_s(x|y)$ when `y` is given."""
        s, y = self._check(x, s, y)
        log_n, score, _ = self._components(x, s)
        if y is None:
            return jax.nn.softmax(self.log_weights + log_n) @ score
        return score[y]

    def __call__(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""], y: Int[ArrayLike, ""] | None = None
                 ) -> Float[Array, " dim_x"]:
        r"""$e^*(x, s; y) = \nabla\log p_s(x|y) - \nabla\log p_{eq}(x)$; unconditionally $\sum_k p(k|x_s)e_k$."""
        s, y = self._check(x, s, y)
        log_n, _, e = self._components(x, s)
        if y is None:
            return jax.nn.softmax(self.log_weights + log_n) @ e
        return e[y]

    # ---------------------------------------------------------------- per-sample integrands of the estimates
    def _label_terms(self, x, s):
        r"""The posterior entropy $-\sum_k p_k\log p_k$ ($0\log 0 = 0$) and the label rate at one $x_s$.

        The rate is the MINDE integrand with the label integrated out,
        $\tfrac{\beta}{2}\sum_k p(k|x_s)\|e_k - \bar e\|^2$ with $\bar e = \sum_k p(k|x_s)e_k$.
        """
        log_n, _, e = self._components(x, s)
        logits = self.log_weights + log_n
        log_p = logits - jax.nn.logsumexp(logits)
        p = jnp.exp(log_p)
        entropy = -jnp.sum(jnp.where(p > 0, p * log_p, 0.0))
        spread = e - p @ e
        return entropy, 0.5 * self.sde.beta(s) * (p @ jnp.sum(spread**2, -1))

    def _entropy_terms(self, x, s):
        r"""$\log p_s(x) - \log p_{eq}(x)$ (the integrand of $D_{KL}(p_s\|p_{eq})$) and $\tfrac{\beta}{2}\|e^*(x, s)\|^2$ (Eq. 3)."""
        log_n, _, e = self._components(x, s)
        logits = self.log_weights + log_n
        log_peq = -0.5 * (x.shape[0] * math.log(2 * math.pi) + jnp.sum(x**2))
        e_bar = jax.nn.softmax(logits) @ e
        return jax.nn.logsumexp(logits) - log_peq, 0.5 * self.sde.beta(s) * jnp.sum(e_bar**2)


# -------------------------------------------------------------------- jitted Monte Carlo kernels (float64)
def _diffuse(model, x0, noise, s):
    return model.sde.mu(s) * x0 + jnp.sqrt(model.sde.var(s)) * noise


def _draw_impl(model, roots, key, n):
    key_y, key_z = jax.random.split(key)
    y = jax.random.categorical(key_y, model.log_weights, shape=(n,))
    z = jax.random.normal(key_z, (n, model.means.shape[1]), model.means.dtype)
    return model.means[y] + jnp.einsum("nij,nj->ni", roots[y], z), y.astype(jnp.int32)


_draw = eqx.filter_jit(_draw_impl)


def _paths(model, roots, key, n):
    r"""`n` data samples $x_0 \sim p_d$ and the standard normal noise that diffuses them (inside the kernels' jit)."""
    key_x0, key_noise = jax.random.split(key)
    x0, _ = _draw_impl(model, roots, key_x0, n)
    return x0, jax.random.normal(key_noise, x0.shape, x0.dtype)


@eqx.filter_jit
def _label_entropy_kernel(model, roots, key, n, times):
    x0, noise = _paths(model, roots, key, n)

    def one_time(s):
        h, rate = jax.vmap(model._label_terms, (0, None))(_diffuse(model, x0, noise, s), s)
        return jnp.stack([*mean_stderr(h), *mean_stderr(rate)])

    return jax.lax.map(one_time, times)


@eqx.filter_jit
def _total_entropy_kernel(model, roots, key, n, times):
    x0, noise = _paths(model, roots, key, n)
    at_data, _ = jax.vmap(model._entropy_terms, (0, None))(x0, jnp.zeros((), x0.dtype))

    def one_time(s):
        log_ratio, rate = jax.vmap(model._entropy_terms, (0, None))(_diffuse(model, x0, noise, s), s)
        return jnp.stack([*mean_stderr(at_data - log_ratio), *mean_stderr(rate)])

    return jnp.stack(mean_stderr(at_data)), jax.lax.map(one_time, times)


@eqx.filter_jit
def _posterior_entropy_at_data(model, roots, key, n):
    x0, _ = _paths(model, roots, key, n)
    h, _ = jax.vmap(model._label_terms, (0, None))(x0, jnp.zeros((), x0.dtype))
    return jnp.stack(mean_stderr(h))


def _amount_curve(times: np.ndarray, stats: np.ndarray) -> Estimate:
    """Per-time rows (value, stderr, rate, rate stderr) as one `Estimate`: the curve goes in `cumulative`."""
    if times.ndim == 0:
        return Estimate(stats[0, 0], stats[0, 1])
    return Estimate(stats[-1, 0], stats[-1, 1], times=times, cumulative=stats[:, 0], cumulative_stderr=stats[:, 1],
                    rate=stats[:, 2], rate_stderr=stats[:, 3])


def _rate_curve(times: np.ndarray, stats: np.ndarray) -> Estimate:
    """Per-time rows (rate, rate stderr) as one `Estimate`: the curve goes in `rate`."""
    if times.ndim == 0:
        return Estimate(stats[0, 0], stats[0, 1])
    return Estimate(stats[-1, 0], stats[-1, 1], times=times, rate=stats[:, 0], rate_stderr=stats[:, 1])


class GaussianMixture(eqx.Module):
    r"""$Y \sim \mathrm{Categorical}(w)$, $X | Y=k \sim \mathcal N(m_k, C_k)$: a labelled Gaussian mixture.

    Densities, scores and label posteriors are exact at every forward time s (module docstring). Information
    quantities are in nats. Those that are expectations over $x$ are Monte Carlo estimates from the exact
    integrands (float64, jitted, vmapped over samples) returned as `Estimate`s; `prior_entropy` is exact.

    Time-resolved estimates (`label_entropy`, `label_entropy_rate`, `total_entropy_curve`) take a scalar time,
    giving an `Estimate` of the value there, or a 1-D array of times, giving ONE `Estimate` whose `times` holds the
    grid and whose `value`/`stderr` are those at the last time `s[-1]`. All times share one set of samples
    (common random numbers: the same $x_0$ and noise, $x_s = \mu(s)x_0 + \sqrt{1-\mu^2}\,\varepsilon$), so the
    curve is smooth in s while each time's stderr is its own marginal standard error (errors at different times
    are correlated, so do not add their variances).

    **Arguments:**

    - `weights`: the label probabilities $w_k$, 1-D, non-negative, summing to one within 1e-10 (they are not
      renormalised).
    - `means`: the component means $m_k$, shape (n_components, dim_x).
    - `covs`: the component covariances $C_k$, each symmetric positive definite, shape (n_components, dim_x, dim_x).
    - `sde`: the forward process.
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    sde: VPSDE
    _evals: np.ndarray
    _evecs: np.ndarray
    _roots: np.ndarray

    def __init__(self, weights, means, covs, sde: VPSDE = VPSDE()):
        weights = as_float_array(weights, "weights", ndim=1)
        if weights.shape[0] < 1:
            raise ValueError("weights must hold at least one component; got an empty array.")
        if np.any(weights < 0):
            raise ValueError(f"weights must be non-negative; got {weights.min()!r} at index {int(weights.argmin())}.")
        total = float(weights.sum())
        if abs(total - 1.0) > _WEIGHT_TOL:
            raise ValueError(
                f"weights must sum to one within {_WEIGHT_TOL:g}; they sum to {total!r} (normalise them yourself: "
                "they are not renormalised silently)."
            )
        n_components = weights.shape[0]
        means = as_float_array(means, "means", ndim=2)
        if means.shape[0] != n_components or means.shape[1] < 1:
            raise ValueError(
                f"means must have shape (n_components, dim_x) = ({n_components}, dim_x >= 1) to match weights; "
                f"got {means.shape}."
            )
        dim_x = means.shape[1]
        covs = as_float_array(covs, "covs", ndim=3)
        if covs.shape != (n_components, dim_x, dim_x):
            raise ValueError(
                f"covs must have shape (n_components, dim_x, dim_x) = ({n_components}, {dim_x}, {dim_x}); got {covs.shape}."
            )
        covs = np.stack([covariance(c, f"covs[{k}]", dim=dim_x) for k, c in enumerate(covs)])
        if not isinstance(sde, VPSDE):
            raise ValueError(f"sde must be a VPSDE; got {type(sde).__name__}.")
        evals, evecs = np.linalg.eigh(covs)
        if np.any(evals <= 0):
            k = int(np.argmin(evals.min(axis=1)))
            raise ValueError(f"covs[{k}] is numerically singular: its smallest eigenvalue is {evals[k].min():.3g}.")
        self.weights, self.means, self.covs, self.sde = weights, means, covs, sde
        self._evals, self._evecs = evals, evecs
        self._roots = evecs * np.sqrt(evals)[:, None, :]

    # ------------------------------------------------------------------ constructors
    @classmethod
    def low_rank(cls, weights, means, factors, eps: float, sde: VPSDE = VPSDE()) -> "GaussianMixture":
        r"""Components near a manifold: $C_k = F_kF_k^\top + \epsilon I$ (the manifold picture of Fig. 1).

        **Arguments:**

        - `weights`, `means`, `sde`: as for `GaussianMixture`.
        - `factors`: $F_k$, shape (n_components, dim_x, rank); rank 0 gives isotropic $\epsilon I$ components.
        - `eps`: the off-manifold variance $\epsilon > 0$; small values put the data near the span of $F_k$.

        **Returns:**

        The `GaussianMixture`.
        """
        factors = as_float_array(factors, "factors", ndim=3)
        means_arr = as_float_array(means, "means", ndim=2)
        if factors.shape[:2] != means_arr.shape:
            raise ValueError(
                f"factors must have shape (n_components, dim_x, rank) = {means_arr.shape + ('rank',)} to match "
                f"means; got {factors.shape}."
            )
        eps = positive_scalar(eps, "eps")
        covs = factors @ np.swapaxes(factors, 1, 2) + eps * np.eye(means_arr.shape[1])
        return cls(weights, means_arr, covs, sde)

    @classmethod
    def on_a_line(cls, separation: float = 2.0, spread: float = 0.5, eps: float = 1e-4, *, angle: float = math.pi / 4,
                  weights=(0.5, 0.5), sde: VPSDE = VPSDE()) -> "GaussianMixture":
        r"""The paper's Fig. 1: two labelled components on a line $\mathcal M_X$ through the origin of $\mathbb R^2$.

        Component $k \in \{0, 1\}$ is $\mathcal N(\pm\tfrac{\text{separation}}{2}u, \text{spread}^2uu^\top + \epsilon I)$
        with $u = (\cos\text{angle}, \sin\text{angle})$. As $\epsilon \to 0$ the data collapse onto the line:
        $D_{KL}(p_d\|p_{eq})$ and $TC(X)$ diverge like $-\tfrac12\log\epsilon$, while $I(X;Y)$ stays finite because
        the divergent off-line scores are shared by both labels and cancel in $e(x,s;y) - e(x,s)$ (Eq. 12).

        **Arguments:**

        - `separation`: the distance between the two means along the line.
        - `spread`: the standard deviation of each component along the line.
        - `eps`: the variance off the line.
        - `angle`: the line's angle to the first axis, in radians.
        - `weights`: the two label probabilities.
        - `sde`: the forward process.

        **Returns:**

        The `GaussianMixture` with dim_x = 2 and two components.
        """
        separation = positive_scalar(separation, "separation")
        spread = positive_scalar(spread, "spread")
        angle = float(as_float_array(angle, "angle", ndim=0))
        u = np.array([math.cos(angle), math.sin(angle)])
        means = np.stack([-0.5 * separation * u, 0.5 * separation * u])
        factors = np.stack([spread * u[:, None]] * 2)
        return cls.low_rank(weights, means, factors, eps, sde)

    @classmethod
    def symmetric_two_class(cls, mean, sigma: float = 1.0, sde: VPSDE = VPSDE()) -> "GaussianMixture":
        r"""Two equally likely classes $\mathcal N(\pm m, \sigma^2 I)$: the case whose $H(Y|X_s)$ is a 1-D integral.

        **Arguments:**

        - `mean`: the vector $m$ (class 1 has mean $+m$, class 0 has $-m$).
        - `sigma`: the within-class standard deviation.
        - `sde`: the forward process.
        """
        mean = as_float_array(mean, "mean", ndim=1)
        sigma = positive_scalar(sigma, "sigma")
        cov = sigma**2 * np.eye(mean.shape[0])
        return cls(np.array([0.5, 0.5]), np.stack([-mean, mean]), np.stack([cov, cov]), sde)

    def _two_class(self) -> tuple[float, float]:
        r"""$(|m|^2, \sigma^2)$ of a symmetric isotropic two-class mixture; a clear error for any other mixture."""
        w, m, c = self.weights, self.means, self.covs
        d = m.shape[1]
        if (w.shape != (2,) or abs(w[0] - w[1]) > 1e-12 or not np.allclose(m[0], -m[1], rtol=0, atol=1e-12)
                or not np.allclose(c[0], c[1], rtol=0, atol=1e-12)
                or not np.allclose(c[0], c[0, 0, 0] * np.eye(d), rtol=0, atol=1e-12)):
            raise ValueError("the closed form needs two equally likely classes N(+-m, sigma^2 I) "
                             "(GaussianMixture.symmetric_two_class); this mixture is not of that form.")
        return float(m[1] @ m[1]), float(c[0, 0, 0])

    def two_class_signal(self, s: float | Float[ArrayLike, " n_times"]) -> np.ndarray:
        r"""$a(s)$ with $a^2 = |m|^2\mu^2/(1 - \mu^2 + \sigma^2\mu^2)$: the posterior log-odds at $X_s$ are $\mathcal N(2a^2, 4a^2)$."""
        m2, var = self._two_class()
        times = self._times(s)
        alpha = np.exp(-(self.sde.beta_min * times + 0.5 * (self.sde.beta_max - self.sde.beta_min) * times**2 / self.sde.T))
        return np.sqrt(m2 * alpha / (1.0 - alpha + var * alpha))

    def two_class_label_entropy(self, s: float | Float[ArrayLike, " n_times"], *, tol: float = 1e-11) -> np.ndarray:
        r"""Exact $H(Y|X_s)$, in nats, of a symmetric two-class mixture, by 1-D quadrature.

        With log-odds $L \sim \mathcal N(2a^2, 4a^2)$ (`two_class_signal`), $H(Y|X_s) = \mathbb E[h(\sigma(L))]$ with the
        binary entropy $h$, integrated by adaptive quadrature (scipy `quad`, absolute tolerance `tol`). $H = \log 2$
        at $a = 0$ and $0.35632$ nats at $a = 1$.
        """
        from scipy.integrate import quad
        from scipy.special import expit

        def entropy(a):
            if a == 0.0:
                return math.log(2.0)

            def integrand(z):
                logit = 2.0 * a * a + 2.0 * a * z
                h = expit(logit) * np.logaddexp(0.0, -logit) + expit(-logit) * np.logaddexp(0.0, logit)
                return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) * h

            return quad(integrand, -40.0, 40.0, epsabs=tol, epsrel=tol, limit=400, points=[-a])[0]

        a = self.two_class_signal(s)
        return np.vectorize(entropy, otypes=[np.float64])(a)

    def speciation_time(self) -> float:
        r"""The forward time at which $a(s) = 1$ (where $H(Y|X_s) = 0.3563$ nats): before it (smaller s) the label is
        mostly decided, after it mostly forgotten. From $\alpha = 1/(1 + |m|^2 - \sigma^2)$, so it exists only when
        $|m| > \sigma$ and $\alpha \ge \alpha(T)$."""
        m2, var = self._two_class()
        if m2 <= var:
            raise ValueError(f"no speciation time: |m|^2 = {m2:.4g} <= sigma^2 = {var:.4g}, so a(s) < 1 at every s.")
        big_b = math.log1p(m2 - var)  # int_0^s beta = -log alpha
        slope = (self.sde.beta_max - self.sde.beta_min) / self.sde.T
        s = 2.0 * big_b / (self.sde.beta_min + math.sqrt(self.sde.beta_min**2 + 2.0 * slope * big_b))
        if s > self.sde.T:
            raise ValueError(f"the speciation time {s:.4g} lies beyond T = {self.sde.T}.")
        return s

    # ------------------------------------------------------------------ shapes
    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    @property
    def dim_x(self) -> int:
        return self.means.shape[1]

    # ------------------------------------------------------------------ exact
    @exact
    def prior_entropy(self) -> float:
        r"""$H(Y) = -\sum_k w_k\log w_k$, in nats (exact; $0\log 0 = 0$)."""
        return jnp.sum(entr(jnp.asarray(self.weights)))

    # ------------------------------------------------------------------ scores, model, samples (caller's dtype)
    def _build_model(self, dtype) -> GaussianMixtureModel:
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights)
        return GaussianMixtureModel(
            sde=self.sde,
            log_weights=jnp.asarray(log_weights, dtype=dtype),
            means=jnp.asarray(self.means, dtype=dtype),
            evecs=jnp.asarray(self._evecs, dtype=dtype),
            evals=jnp.asarray(self._evals, dtype=dtype),
        )

    def model(self) -> GaussianMixtureModel:
        """The exact $e^*$ as an Equinox module satisfying the model protocol, in the caller's default float dtype."""
        return self._build_model(float)

    def log_prob(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""], y: Int[ArrayLike, ""] | None = None
                 ) -> Float[Array, ""]:
        r"""$\log p_s(x)$ (a logsumexp over components), or $\log p_s(x|y)$ when `y` is given, for one sample."""
        return self.model().log_prob(x, s, y)

    def score(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""]) -> Float[Array, " dim_x"]:
        r"""$\nabla_x\log p_s(x) = -\sum_k p(k|x_s)\Sigma_k(s)^{-1}(x - \mu(s)m_k)$ for one sample."""
        return self.model().score(x, s)

    def conditional_score(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""], y: Int[ArrayLike, ""]
                          ) -> Float[Array, " dim_x"]:
        r"""$\nabla_x\log p_s(x|y) = -\Sigma_y(s)^{-1}(x - \mu(s)m_y)$, $\Sigma_y(s) = \alpha C_y + (1-\alpha)I$, for one sample."""
        if y is None:
            raise ValueError("conditional_score needs an integer label y; use score(x, s) for the marginal.")
        return self.model().score(x, s, y)

    def posterior(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""]) -> Float[Array, " n_components"]:
        r"""$p(y | x_s)$ by Bayes' rule, a probability vector over the labels, for one sample."""
        return self.model().posterior(x, s)

    def sample(self, n: int, *, key: PRNGKeyArray) -> tuple[Float[Array, "n dim_x"], Int[Array, " n"]]:
        """Draw `n` pairs (x, y): x in the caller's default float dtype, the labels y as int32."""
        n = positive_int(n, "n")
        key = check_key(key)
        model = self.model()
        return _draw(model, jnp.asarray(self._roots, dtype=model.means.dtype), key, n)

    # ------------------------------------------------------------------ Monte Carlo estimates (float64, nats)
    def _float64(self, n):
        """The float64 model and component square roots, under an x64 context the caller holds open."""
        n = positive_int(n, "n")
        if n < 2:
            raise ValueError(f"n must be >= 2 to estimate a standard error; got {n}.")
        return self._build_model(jnp.float64), jnp.asarray(self._roots, dtype=jnp.float64), n

    def _times(self, s) -> np.ndarray:
        times = self.sde.check_times(s, "s")
        if times.ndim > 1:
            raise ValueError(f"s must be a scalar time or a 1-D array of times; got shape {times.shape}.")
        return times

    def label_entropy(self, s: float | Float[ArrayLike, " n_times"], *, n: int = 10_000, key: PRNGKeyArray
                      ) -> Estimate:
        r"""$H(Y | X_s) = \mathbb E_{x_s\sim p_s}[-\sum_k p(k|x_s)\log p(k|x_s)]$, in nats (exact posteriors, Monte Carlo over $x_s$).

        Rises from $H(Y) - I(X;Y)$ at $s = 0$ towards $H(Y)$ as the label is forgotten, at the rate
        $\tfrac{d}{ds}H(Y|X_s) = \tfrac{\beta}{2}\mathbb E\|e(x,s;y) - e(x,s)\|^2$ (see `label_entropy_rate`).

        **Arguments:**

        - `s`: a time in [0, T], or a 1-D array of them.
        - `n`: the number of Monte Carlo samples (at least 2).
        - `key`: a JAX PRNG key.

        **Returns:**

        For a scalar `s`, an `Estimate` of $H(Y|X_s)$. For an array, one `Estimate` with `times = s`, the curve
        $H(Y|X_s)$ in `cumulative`/`cumulative_stderr` (it equals $H(Y|X_0) + \int_0^s$ `rate`), its derivative
        in `rate`/`rate_stderr` (from the same samples), and `value`/`stderr` at `s[-1]`. Flagged (`Estimate.flags`)
        where the value, or any point of the curve, leaves $[0, H(Y)]$ by more than 2 stderr.
        """
        times = self._times(s)
        key = check_key(key)
        with jax.enable_x64(True):
            model, roots, n = self._float64(n)
            stats = np.asarray(_label_entropy_kernel(model, roots, key, n, jnp.atleast_1d(jnp.asarray(times))))
        return check_curve_bounds(_amount_curve(times, stats), 0.0, self.prior_entropy(), name="H(Y|X_s)")

    def label_entropy_rate(self, s: float | Float[ArrayLike, " n_times"], *, n: int = 10_000, key: PRNGKeyArray
                           ) -> Estimate:
        r"""$\tfrac{d}{ds}H(Y|X_s) = \tfrac{\beta(s)}{2}\mathbb E_{x_s, y}\|e^*(x_s,s;y) - e^*(x_s,s)\|^2$, in nats per unit s.

        The MINDE integrand (Eq. 12): $H(Y|X_s) = H(Y) - I(X;Y) + \int_0^s$ (rate). Rao-Blackwellised over the
        label: each sample contributes $\tfrac{\beta}{2}\sum_k p(k|x_s)\|e_k - \sum_j p(j|x_s)e_j\|^2$.

        **Arguments:**

        - `s`: a time in [0, T], or a 1-D array of them.
        - `n`: the number of Monte Carlo samples (at least 2).
        - `key`: a JAX PRNG key.

        **Returns:**

        For a scalar `s`, an `Estimate` of the rate. For an array, one `Estimate` with `times = s`, the rates in
        `rate`/`rate_stderr`, and `value`/`stderr` at `s[-1]`.
        """
        times = self._times(s)
        key = check_key(key)
        with jax.enable_x64(True):
            model, roots, n = self._float64(n)
            stats = np.asarray(_label_entropy_kernel(model, roots, key, n, jnp.atleast_1d(jnp.asarray(times))))
        return _rate_curve(times, stats[:, 2:])

    def mutual_information(self, *, n: int = 10_000, key: PRNGKeyArray) -> Estimate:
        r"""$I(X;Y) = H(Y) - H(Y|X)$, in nats, Rao-Blackwellised with the exact posterior $p(y|x)$.

        $H(Y)$ is exact; $H(Y|X) = \mathbb E_{x\sim p_d}H(p(\cdot|x))$ is averaged over `n` data samples.

        **Arguments:**

        - `n`: the number of Monte Carlo samples (at least 2).
        - `key`: a JAX PRNG key.

        **Returns:**

        An `Estimate` of $I(X;Y)$, which lies in $[0, H(Y)]$: flagged (`Estimate.flags`) when it leaves that range
        by more than 2 stderr.
        """
        prior = self.prior_entropy()
        key = check_key(key)
        with jax.enable_x64(True):
            model, roots, n = self._float64(n)
            mean, stderr = np.asarray(_posterior_entropy_at_data(model, roots, key, n))
        return Estimate(prior - mean, stderr).check_bounds(lower=0.0, upper=prior, name="I(X;Y)")

    def total_entropy(self, *, n: int = 10_000, key: PRNGKeyArray) -> Estimate:
        r"""$S^X_{tot} = D_{KL}(p_d \| p_{eq}) = \mathbb E_{p_d}[\log p_d(x) - \log\mathcal N(x; 0, I)]$ (Eq. 6), in nats.

        **Arguments:**

        - `n`: the number of Monte Carlo samples (at least 2).
        - `key`: a JAX PRNG key.

        **Returns:**

        An `Estimate` of $D_{KL}(p_d\|p_{eq})$, flagged (`Estimate.flags`) when it is below 0 by more than 2 stderr.
        """
        key = check_key(key)
        with jax.enable_x64(True):
            model, roots, n = self._float64(n)
            at_data, _ = _total_entropy_kernel(model, roots, key, n, jnp.zeros((1,), jnp.float64))
            mean, stderr = np.asarray(at_data)
        return Estimate(mean, stderr).check_bounds(lower=0.0, name="D_KL(p_d||p_eq)")

    def total_entropy_curve(self, s: float | Float[ArrayLike, " n_times"], *, n: int = 10_000, key: PRNGKeyArray
                            ) -> Estimate:
        r"""$S^X_{tot}(s) = D_{KL}(p_d\|p_{eq}) - D_{KL}(p_s\|p_{eq}) = \int_0^s\tfrac{\beta}{2}\mathbb E\|e^*\|^2$ (Eqs. 3, 6), in nats.

        Estimated from paired samples: each $x_0 \sim p_d$ is diffused to $x_s = \mu x_0 + \sqrt{1-\mu^2}\varepsilon$
        and contributes $[\log p_d(x_0) - \log p_{eq}(x_0)] - [\log p_s(x_s) - \log p_{eq}(x_s)]$, so the large
        common part of the two KL terms cancels sample by sample (the estimate is exactly 0 at s = 0).

        **Arguments:**

        - `s`: a time in [0, T], or a 1-D array of them.
        - `n`: the number of Monte Carlo samples (at least 2).
        - `key`: a JAX PRNG key.

        **Returns:**

        For a scalar `s`, an `Estimate` of $S^X_{tot}(s)$. For an array, one `Estimate` with `times = s`, the curve in
        `cumulative`/`cumulative_stderr`, the entropy rate $\tfrac{\beta}{2}\mathbb E\|e^*(x_s,s)\|^2$ in
        `rate`/`rate_stderr` (same samples), and `value`/`stderr` at `s[-1]`. Flagged (`Estimate.flags`) where the
        value, or any point of the curve, is below 0 (the KL divergence to $p_{eq}$ only falls with s) by more than
        2 stderr.
        """
        times = self._times(s)
        key = check_key(key)
        with jax.enable_x64(True):
            model, roots, n = self._float64(n)
            _, stats = _total_entropy_kernel(model, roots, key, n, jnp.atleast_1d(jnp.asarray(times)))
            stats = np.asarray(stats)
        return check_curve_bounds(_amount_curve(times, stats), 0.0, name="S_tot(s)")
