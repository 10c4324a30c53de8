"""The joint Gaussian $Y = AX + \\varepsilon$ of appendix D.1, with every quantity in closed form."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from . import _cfg
from ._checks import as_float_array, covariance, positive_int, positive_scalar
from ._keys import check_key
from ._precision import exact
from ._sde import VPSDE


def _spectrum(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    evals, evecs = np.linalg.eigh(matrix)
    return evals, evecs


def _log1p_shrink(v, evals):
    r"""$\sum_i \log(1 + v(1/\lambda_i - 1))$ over the last axis, for $v$ of any leading shape."""
    return jnp.sum(jnp.log1p(v[..., None] * (1.0 / evals - 1.0)), axis=-1)


class JointGaussianModel(eqx.Module):
    r"""The exact entropy-matching vector $e^*(x, s; y) = \nabla\log p_s(x|y) + x$ (Eq. 8) of a `JointGaussian`.

    Satisfies the model protocol: a field `sde` and `__call__(x, s, y=None)` for one sample. Arrays are
    held in the caller's default float dtype, so it runs wherever a trained network would. Times outside
    $[0, T]$ (NaN included) are refused by `VPSDE.check_time`, as by every protocol model.
    """

    sde: VPSDE
    evecs_x: Float[Array, "dim_x dim_x"]
    evals_x: Float[Array, " dim_x"]
    evecs_c: Float[Array, "dim_x dim_x"]
    evals_c: Float[Array, " dim_x"]
    gain: Float[Array, "dim_x dim_y"]

    def _check(self, x, s, y):
        """Validate one sample's inputs; returns `s` (with the runtime time check attached when traced)."""
        dim_x, dim_y = self.gain.shape
        if jnp.shape(x) != (dim_x,):
            raise ValueError(f"x must have shape ({dim_x},) for one sample (vmap for batches); got {jnp.shape(x)}.")
        if jnp.ndim(s) != 0:
            raise ValueError(f"s must be a scalar time; got shape {jnp.shape(s)}.")
        if y is not None and jnp.shape(y) != (dim_y,):
            raise ValueError(f"y must have shape ({dim_y},); got {jnp.shape(y)}.")
        return self.sde.check_time(s)

    def score(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""], y: Float[Array, " dim_y"] | None = None):
        r"""$\nabla_x\log p_s(x)$ (Eq. 58b), or $\nabla_x\log p_s(x|y)$ (Eq. 58a) when `y` is given."""
        s = self._check(x, s, y)
        alpha = self.sde.alpha(s)
        if y is None:
            d = 1.0 + alpha * (self.evals_x - 1.0)
            return -self.evecs_x @ ((self.evecs_x.T @ x) / d)
        c = 1.0 + alpha * (self.evals_c - 1.0)
        mean = jnp.sqrt(alpha) * (self.gain @ y)
        return -self.evecs_c @ ((self.evecs_c.T @ (x - mean)) / c)

    def __call__(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""], y: Float[Array, " dim_y"] | None = None):
        r"""$e^*(x, s; y) = \nabla\log p_s(x|y) - \nabla\log p_{eq}(x)$, written without cancellation."""
        s = self._check(x, s, y)
        alpha = self.sde.alpha(s)
        if y is None:
            d = 1.0 + alpha * (self.evals_x - 1.0)
            return self.evecs_x @ (alpha * (self.evals_x - 1.0) / d * (self.evecs_x.T @ x))
        c = 1.0 + alpha * (self.evals_c - 1.0)
        mean = jnp.sqrt(alpha) * (self.gain @ y)
        return self.evecs_c @ ((alpha * (self.evals_c - 1.0) * (self.evecs_c.T @ x) + self.evecs_c.T @ mean) / c)


class JointGaussian(eqx.Module):
    r"""$X \sim \mathcal N(0, \Sigma_X)$, $Y = AX + \varepsilon$, $\varepsilon \sim \mathcal N(0, \sigma_\varepsilon^2 I)$ (Eq. 47).

    Every information quantity is exact, in nats, and computed in float64 from two spectra: the
    eigenvalues $\lambda_i$ of $\Sigma_X$ and $\kappa_i$ of $\Sigma_{X|Y} = \Sigma_X - \Sigma_X A^\top\Sigma_Y^{-1}A\Sigma_X$
    (Eq. 53). Under the VP process the diffused covariances are $1 + \alpha(s)(\lambda_i - 1)$ (Eq. 56) and
    $1 + \alpha(s)(\kappa_i - 1)$, so every curve is a sum over eigenvalues, vectorised in `s`.

    Curves follow one convention: `*_curve(s)` is the amount accumulated between 0 and s,
    $\int_0^s(\text{rate})\,ds'$, which tends to the full quantity as $s \to \infty$.

    **Arguments:**

    - `sigma_x`: $\Sigma_X$, symmetric positive definite, shape (dim_x, dim_x).
    - `A`: shape (dim_y, dim_x).
    - `sigma_eps`: the noise *standard deviation* $\sigma_\varepsilon > 0$.
    - `sde`: the forward process.
    """

    sigma_x: np.ndarray
    A: np.ndarray
    sigma_eps: float
    sde: VPSDE
    _evals_x: np.ndarray
    _evecs_x: np.ndarray
    _evals_c: np.ndarray
    _evecs_c: np.ndarray
    _gain: np.ndarray
    _sigma_y: np.ndarray

    def __init__(self, sigma_x, A, sigma_eps, sde: VPSDE = VPSDE()):
        A = as_float_array(A, "A", ndim=2)
        self.sigma_x = covariance(sigma_x, "sigma_x", dim=A.shape[1] if A.shape[1] > 0 else None)
        if A.shape[0] < 1:
            raise ValueError(f"A must have at least one row (dim_y >= 1); got shape {A.shape}.")
        self.A = A
        self.sigma_eps = positive_scalar(sigma_eps, "sigma_eps")
        if not isinstance(sde, VPSDE):
            raise ValueError(f"sde must be a VPSDE; got {type(sde).__name__}.")
        self.sde = sde
        sx = self.sigma_x
        self._sigma_y = A @ sx @ A.T + self.sigma_eps**2 * np.eye(A.shape[0])
        # Gain M = Sigma_XY Sigma_Y^{-1}; Sigma_{X|Y} in the square-root form L (I + L^T A^T A L / s^2)^{-1} L^T,
        # whose inner inverse is well conditioned even when Sigma_X is nearly singular.
        self._gain = np.linalg.solve(self._sigma_y, A @ sx).T
        self._evals_x, self._evecs_x = _spectrum(sx)
        root = self._evecs_x * np.sqrt(self._evals_x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            inner = np.eye(sx.shape[0]) + (A @ root).T @ (A @ root) / self.sigma_eps**2
        if self.sigma_eps**2 == 0.0 or not np.all(np.isfinite(inner)):
            raise ValueError(f"sigma_eps = {self.sigma_eps!r} is too small for float64: sigma_eps**2 underflows or "
                             "A^T A / sigma_eps**2 overflows, and every closed form would be NaN.")
        sigma_c = root @ np.linalg.solve(inner, root.T)
        self._evals_c, self._evecs_c = _spectrum(0.5 * (sigma_c + sigma_c.T))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def determinism(cls, dim_x: int, dim_y: int, sigma_eps: float, *, key: PRNGKeyArray, eps: float = 1e-3,
                    sde: VPSDE = VPSDE()) -> "JointGaussian":
        r"""The determinism family (Eq. 51): $\Sigma_X = HH^\top + \epsilon I$, $H_{ij} \sim \mathcal N(0, 1/D_X)$, $A_{ij} \sim \mathcal N(0, 1)$.

        Random draws are made in float64 whatever the JAX mode, so a key always gives the same instance.
        """
        dim_x, dim_y = positive_int(dim_x, "dim_x"), positive_int(dim_y, "dim_y")
        eps = positive_scalar(eps, "eps")
        key_h, key_a = jax.random.split(check_key(key))
        with jax.enable_x64(True):
            h = np.asarray(jax.random.normal(key_h, (dim_x, dim_x), jnp.float64)) / np.sqrt(dim_x)
            a = np.asarray(jax.random.normal(key_a, (dim_y, dim_x), jnp.float64))
        return cls(h @ h.T + eps * np.eye(dim_x), a, sigma_eps, sde)

    @classmethod
    def flattening(cls, dim_x: int, dim_y: int, k: int, lambda_delta: float, sigma_eps: float, *,
                   key: PRNGKeyArray, eps: float = 1e-6, sde: VPSDE = VPSDE()) -> "JointGaussian":
        r"""The flattening family (Eq. 52): $\Sigma_X = U\Lambda U^\top + \epsilon I$.

        $\Lambda = \mathrm{diag}(\lambda_1..\lambda_k, \lambda_\delta, ..., \lambda_\delta)$ with
        $\lambda_i \sim |\mathcal N(0, 1/k)| + 0.1$, $U$ Haar-orthogonal, $A_{ij} \sim \mathcal N(0, 1)$.
        Small `lambda_delta` squeezes X onto a k-dimensional subspace: $S_{tot}^X$ grows like
        $-\tfrac12(D_X - k)\log\lambda_\delta$ while $I(X;Y)$ stays finite.
        """
        dim_x, dim_y, k = positive_int(dim_x, "dim_x"), positive_int(dim_y, "dim_y"), positive_int(k, "k")
        if k > dim_x:
            raise ValueError(f"k must be <= dim_x = {dim_x}; got {k}.")
        lambda_delta = positive_scalar(lambda_delta, "lambda_delta")
        eps = positive_scalar(eps, "eps")
        key_u, key_l, key_a = jax.random.split(check_key(key), 3)
        with jax.enable_x64(True):
            u = np.asarray(jax.random.orthogonal(key_u, dim_x, dtype=jnp.float64))
            top = np.abs(np.asarray(jax.random.normal(key_l, (k,), jnp.float64))) / np.sqrt(k) + 0.1
            a = np.asarray(jax.random.normal(key_a, (dim_y, dim_x), jnp.float64))
        lam = np.concatenate([top, np.full(dim_x - k, lambda_delta)])
        return cls((u * lam) @ u.T + eps * np.eye(dim_x), a, sigma_eps, sde)

    # ------------------------------------------------------------------ shapes
    @property
    def dim_x(self) -> int:
        return self.A.shape[1]

    @property
    def dim_y(self) -> int:
        return self.A.shape[0]

    @property
    def sigma_y(self) -> np.ndarray:
        r"""$\Sigma_Y = A\Sigma_X A^\top + \sigma_\varepsilon^2 I$ (Eq. 48)."""
        return self._sigma_y

    @property
    def sigma_x_given_y(self) -> np.ndarray:
        r"""$\Sigma_{X|Y}$ (Eq. 53), the same for every y."""
        return (self._evecs_c * self._evals_c) @ self._evecs_c.T

    # ------------------------------------------------------------------ totals (nats)
    @exact
    def mutual_information(self) -> float:
        r"""$I(X;Y) = \tfrac12\log(|\Sigma_Y| / |\Sigma_{Y|X}|)$ (Eq. 49), in nats."""
        return 0.5 * (jnp.sum(jnp.log(self._evals_x)) - jnp.sum(jnp.log(self._evals_c)))

    @exact
    def total_entropy(self) -> float:
        r"""$S^X_{tot} = D_{KL}(p_d \| p_{eq}) = \tfrac12(\mathrm{Tr}\Sigma_X - \log|\Sigma_X| - D_X)$ (Eq. 50), in nats.

        This is the $T \to \infty$ value; `total_entropy_curve(T)` is smaller by $D_{KL}(p_T \| p_{eq})$.
        """
        lam = jnp.asarray(self._evals_x)
        return 0.5 * jnp.sum(lam - 1.0 - jnp.log(lam))

    @exact
    def conditional_total_entropy(self) -> float:
        r"""$S^{X|Y}_{tot} = \mathbb E_Y D_{KL}(p_d(x|y) \| p_{eq})$ (Eq. 9), in nats.

        With $\mathbb E_Y[\mu_{X|Y}\mu_{X|Y}^\top] = \Sigma_X - \Sigma_{X|Y}$ this is
        $\tfrac12(\mathrm{Tr}\Sigma_X - D_X - \log|\Sigma_{X|Y}|)$.
        """
        return 0.5 * (jnp.sum(self._evals_x - 1.0) - jnp.sum(jnp.log(self._evals_c)))

    @exact
    def marginal_kls(self) -> Float[np.ndarray, " dim_x"]:
        r"""Per-component $D_{KL}(p_d(x_k) \| p_{eq}(x_k)) = \tfrac12(\Sigma_{kk} - 1 - \log\Sigma_{kk})$ (Eq. 7), in nats."""
        var = jnp.diag(jnp.asarray(self.sigma_x))
        return 0.5 * (var - 1.0 - jnp.log(var))

    @exact
    def total_correlation(self) -> float:
        r"""$TC(X) = D_{KL}(p_d(x) \| \prod_k p_d(x_k)) = \tfrac12(\sum_k\log\Sigma_{kk} - \log|\Sigma_X|)$, in nats.

        Computed in a form that is non-negative by construction, as the exact TC is: with the correlation matrix
        $R = D^{-1/2}\Sigma_X D^{-1/2}$ ($D = \mathrm{diag}\,\Sigma_X$, so $R_{kk} = 1$) and its Cholesky factor
        $R = LL^\top$, $TC = -\tfrac12\log|R| = -\sum_k\log L_{kk}$ and $L_{kk}^2 = 1 - \|\ell_k\|^2$ with $\ell_k$ the
        strictly lower part of row k, so
        $$TC = -\tfrac12\sum_k\log(1 - \|\ell_k\|^2).$$
        Each term is the `log1p` of minus a sum of squares, hence $\ge 0$ in floating point too; the difference of
        log-determinants above read $-2\times10^{-16}$ for an isotropic $\Sigma_X$ given as $U(cI)U^\top$. This form is
        also accurate for weak correlations (about $\tfrac12\sum\rho^2$), and exactly 0 for a diagonal $\Sigma_X$.
        """
        sigma = jnp.asarray(self.sigma_x)
        scale = 1.0 / jnp.sqrt(jnp.diag(sigma))
        corr = sigma * scale[:, None] * scale[None, :]
        corr = corr.at[jnp.diag_indices(corr.shape[0])].set(1.0)
        lower = jnp.tril(jnp.linalg.cholesky(corr), k=-1)
        return -0.5 * jnp.sum(jnp.log1p(-jnp.sum(lower**2, axis=1)))

    # ------------------------------------------------------------------ time-resolved curves (nats; rates nats per unit s)
    def _times(self, s):
        return jnp.asarray(self.sde.check_times(s))

    @exact
    def total_entropy_curve(self, s: ArrayLike) -> Float[np.ndarray, "*s"]:
        r"""$S^X_{tot}(s) = \int_0^s \tfrac{\beta}{2}\mathbb E\|e^*\|^2 = D_{KL}(p_d\|p_{eq}) - D_{KL}(p_s\|p_{eq})$ (Eqs. 3, 6).

        Written as $\tfrac12\sum_i[v(\lambda_i - 1) + \log(1 + v(1/\lambda_i - 1))]$ with $v = 1 - \alpha(s)$, exact
        without cancellation at small s.
        """
        v = self.sde.var(self._times(s))
        lam = jnp.asarray(self._evals_x)
        return 0.5 * (v * jnp.sum(lam - 1.0) + _log1p_shrink(v, lam))

    @exact
    def conditional_total_entropy_curve(self, s: ArrayLike) -> Float[np.ndarray, "*s"]:
        r"""$S^{X|Y}_{tot}(s) = \mathbb E_Y[D_{KL}(p_d(x|y)\|p_{eq}) - D_{KL}(p_s(x|y)\|p_{eq})]$, in nats."""
        v = self.sde.var(self._times(s))
        return 0.5 * (v * jnp.sum(jnp.asarray(self._evals_x) - 1.0) + _log1p_shrink(v, jnp.asarray(self._evals_c)))

    @exact
    def entropy_rate(self, s: ArrayLike) -> Float[np.ndarray, "*s"]:
        r"""$\tfrac{\beta(s)}{2}\mathbb E\|e^*(x_s, s)\|^2 = \tfrac{\beta}{2}\sum_i \alpha^2(\lambda_i - 1)^2/(1 + \alpha(\lambda_i - 1))$."""
        s = self._times(s)
        alpha, lam = self.sde.alpha(s)[..., None], jnp.asarray(self._evals_x)
        return 0.5 * self.sde.beta(s) * jnp.sum(alpha**2 * (lam - 1.0) ** 2 / (1.0 + alpha * (lam - 1.0)), axis=-1)

    @exact
    def conditional_entropy_rate(self, s: ArrayLike) -> Float[np.ndarray, "*s"]:
        r"""$\tfrac{\beta}{2}\mathbb E_{Y}\mathbb E\|e^*(x_s, s; y)\|^2 = \tfrac{\beta}{2}[\sum_i\frac{\alpha^2(\kappa_i-1)^2}{1+\alpha(\kappa_i-1)} + \alpha\,\mathrm{Tr}(\Sigma_X - \Sigma_{X|Y})]$."""
        s = self._times(s)
        alpha, kap = self.sde.alpha(s), jnp.asarray(self._evals_c)
        spread = alpha * jnp.sum(jnp.asarray(self._evals_x) - kap)
        a = alpha[..., None]
        return 0.5 * self.sde.beta(s) * (jnp.sum(a**2 * (kap - 1.0) ** 2 / (1.0 + a * (kap - 1.0)), axis=-1) + spread)

    @exact
    def mutual_information_curve(self, s: ArrayLike) -> Float[np.ndarray, "*s"]:
        r"""$I(X;Y) - I(X_s;Y) = S^{X|Y}_{tot}(s) - S^X_{tot}(s)$, in nats."""
        v = self.sde.var(self._times(s))
        return 0.5 * (_log1p_shrink(v, jnp.asarray(self._evals_c)) - _log1p_shrink(v, jnp.asarray(self._evals_x)))

    @exact
    def mutual_information_rate(self, s: ArrayLike) -> Float[np.ndarray, "*s"]:
        r"""The exact MINDE integrand $\tfrac{\beta}{2}\mathbb E_{X,Y}\|\nabla\log p_s(x|y) - \nabla\log p_s(x)\|^2$ (Eq. 12).

        Equal at every s to `conditional_entropy_rate(s) - entropy_rate(s)`, because
        $\mathbb E[\nabla\log p_s(x|y) | x] = \nabla\log p_s(x)$; written directly as
        $\tfrac{\beta}{2}\alpha\sum_i[(\lambda_i - \kappa_i) + \alpha(\frac{(\kappa_i-1)^2}{c_i} - \frac{(\lambda_i-1)^2}{d_i})]$.
        """
        s = self._times(s)
        alpha = self.sde.alpha(s)[..., None]
        lam, kap = jnp.asarray(self._evals_x), jnp.asarray(self._evals_c)
        terms = (lam - kap) + alpha * ((kap - 1.0) ** 2 / (1.0 + alpha * (kap - 1.0)) - (lam - 1.0) ** 2 / (1.0 + alpha * (lam - 1.0)))
        return 0.5 * self.sde.beta(s) * alpha[..., 0] * jnp.sum(terms, axis=-1)

    @exact
    def total_correlation_curve(self, s: ArrayLike) -> Float[np.ndarray, "*s"]:
        r"""$TC(X) - TC(X_s)$: the total correlation erased by the forward process up to s, in nats."""
        v = self.sde.var(self._times(s))
        var = jnp.diag(jnp.asarray(self.sigma_x))
        return 0.5 * (_log1p_shrink(v, jnp.asarray(self._evals_x)) - _log1p_shrink(v, var))

    # ------------------------------------------------------------------ scores, model, samples (caller's dtype)
    def model(self) -> JointGaussianModel:
        """The exact $e^*$ as an Equinox module satisfying the model protocol."""
        return JointGaussianModel(
            sde=self.sde,
            evecs_x=jnp.asarray(self._evecs_x, dtype=float),
            evals_x=jnp.asarray(self._evals_x, dtype=float),
            evecs_c=jnp.asarray(self._evecs_c, dtype=float),
            evals_c=jnp.asarray(self._evals_c, dtype=float),
            gain=jnp.asarray(self._gain, dtype=float),
        )

    def score(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""]) -> Float[Array, " dim_x"]:
        r"""$\nabla_x\log p_s(x) = -(\Sigma^X_s)^{-1}x$ (Eq. 58b) for one sample."""
        return self.model().score(x, s)

    def conditional_score(self, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""], y: Float[Array, " dim_y"]) -> Float[Array, " dim_x"]:
        r"""$\nabla_x\log p_s(x|y) = -(\Sigma^{X|Y}_s)^{-1}(x - \sqrt{\alpha}\,\mu_{X|Y}(y))$ (Eq. 58a) for one sample."""
        if y is None:
            raise ValueError("conditional_score needs y of shape (dim_y,); use score(x, s) for the marginal.")
        return self.model().score(x, s, y)

    def sample(self, n: int, *, key: PRNGKeyArray) -> tuple[Float[Array, "n dim_x"], Float[Array, "n dim_y"]]:
        """Draw `n` pairs (x, y) from the joint distribution, in the caller's default float dtype."""
        n = positive_int(n, "n")
        key_x, key_e = jax.random.split(check_key(key))
        chol = jnp.asarray(np.linalg.cholesky(self.sigma_x), dtype=float)
        x = jax.random.normal(key_x, (n, self.dim_x)) @ chol.T
        y = x @ jnp.asarray(self.A, dtype=float).T + self.sigma_eps * jax.random.normal(key_e, (n, self.dim_y))
        return x, y

    # ------------------------------------------------------------------ classifier-free guidance (Eq. 59)
    def cfg_sample(self, y: Float[Array, "n dim_y"], w: float, *, key: PRNGKeyArray, **options) -> Float[Array, "n dim_x"]:
        """Exact samples of the guided probability-flow ODE (Eq. 59) from $x_T \\sim \\mathcal N(0, I)$ through its flow
        map; see `gaussian_oracle.cfg_sample`."""
        return _cfg.cfg_sample(self, y, w, key=key, **options)

    def cfg_mutual_information(self, w: float, s_end: float = 1e-3, **options) -> float:
        """Exact $I(X_{CFG}; Y)$ of the guided flow stopped at `s_end`, in nats; see `_cfg.cfg_mutual_information`."""
        return _cfg.cfg_mutual_information(self, w, s_end, **options)

    def cfg_mutual_information_curve(self, w: float, s: ArrayLike, s_end: float = 1e-3, **options) -> np.ndarray:
        """$I(X_{CFG};Y) - I(X_{CFG,s};Y)$ of the guided samples, in nats; see `_cfg.cfg_mutual_information_curve`."""
        return _cfg.cfg_mutual_information_curve(self, w, s, s_end, **options)
