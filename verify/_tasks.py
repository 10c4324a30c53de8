r"""Samplers of non-Gaussian oracle tasks whose exact $I(X;Y)$ is known: bounded data and Gaussian mixtures.

- `GaussianCopula`: a joint Gaussian pushed through $\Phi(\cdot/\sigma_k)$ per component, so every component is
  uniform on (0, 1). The maps are invertible per component, so $I(X;Y)$ is the Gaussian's closed form (Eq. 49).
- `MixturePair`: (X, Y) jointly a Gaussian mixture in 1 + 1 dimensions, its exact $I(X;Y)$ by a 2-D quadrature
  accurate to far below 1e-6 nats; `copies` independent copies side by side, each block then rotated by a fixed
  orthogonal matrix (an invertible map of X alone and of Y alone, so $I$ is `copies` times the 1 + 1 value).

Both give `log_density_ratio(x, y)`, the exact $\log p(x,y) - \log p(x) - \log p(y)$ per pair, whose mean over
samples is a Monte Carlo check of the truth that shares no code with it. The registry is `verify.robustness_tasks()`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from scipy.special import logsumexp, ndtr, ndtri

from gaussian_oracle import JointGaussian

__all__ = ["GaussianCopula", "MixturePair"]


def _gaussian_log_density(z: np.ndarray, cov: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    r"""$\log\mathcal N(z; m, C)$ per row of z (float64)."""
    chol = np.linalg.cholesky(cov)
    centred = z if mean is None else z - mean
    m = np.sum(np.linalg.solve(chol, centred.T) ** 2, axis=0)
    return -0.5 * m - np.sum(np.log(np.diag(chol))) - 0.5 * cov.shape[0] * math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------- bounded
@dataclasses.dataclass(frozen=True)
class GaussianCopula:
    r"""Bounded data: $(U_k) = \Phi(X_k/\sigma_{X,k})$, $(V_k) = \Phi(Y_k/\sigma_{Y,k})$ for a `JointGaussian`'s pair,
    with $\Phi$ the standard normal CDF and $\sigma_k$ each component's standard deviation. Every component is
    uniform on (0, 1) (a Gaussian copula); the maps are strictly increasing per component, so
    $I(U;V) = I(X;Y) = \tfrac12\log\frac{|\Sigma_X||\Sigma_Y|}{|\Sigma|}$ (Eq. 49), in nats.

    Samples are float64 NumPy arrays (in float32, $\Phi$ rounds to exactly 1 beyond about 5.4 standard
    deviations, which would tie values and break invertibility).

    **Arguments:**

    - `joint`: the underlying Gaussian pair.
    """

    joint: JointGaussian

    @property
    def _scales(self) -> tuple[np.ndarray, np.ndarray]:
        sd = lambda c: np.sqrt(np.diag(np.asarray(c, np.float64)))  # noqa: E731
        return sd(self.joint.sigma_x), sd(self.joint.sigma_y)

    def __call__(self, n: int, *, key: PRNGKeyArray) -> tuple[Float[np.ndarray, "n dim_x"], Float[np.ndarray, "n dim_y"]]:
        """`n` pairs (u, v), each component in (0, 1)."""
        x, y = self.joint.sample(n, key=key)
        sx, sy = self._scales
        return ndtr(np.asarray(x, np.float64) / sx), ndtr(np.asarray(y, np.float64) / sy)

    def mutual_information(self) -> float:
        """The exact $I(U;V)$ in nats: the underlying Gaussian's closed form."""
        return float(self.joint.mutual_information())

    def log_density_ratio(self, u: Float[Array, "n dim_x"], v: Float[Array, "n dim_y"]) -> Float[np.ndarray, " n"]:
        r"""$\log p(u, v) - \log p(u) - \log p(v)$ per pair (float64): the Gaussian ratio at $x = \sigma\Phi^{-1}(u)$
        (the Jacobians of the per-component maps cancel between joint and marginals)."""
        sx, sy = self._scales
        x, y = ndtri(np.asarray(u, np.float64)) * sx, ndtri(np.asarray(v, np.float64)) * sy
        cx, a = np.asarray(self.joint.sigma_x, np.float64), np.asarray(self.joint.A, np.float64)
        cy = np.asarray(self.joint.sigma_y, np.float64)
        cov = np.block([[cx, cx @ a.T], [a @ cx, cy]])
        return (_gaussian_log_density(np.concatenate([x, y], axis=1), cov)
                - _gaussian_log_density(x, cx) - _gaussian_log_density(y, cy))


# ---------------------------------------------------------------------------------------------- mixture
def _mixture_log_density(z: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    r"""$\log\sum_k w_k\mathcal N(z; m_k, C_k)$ per row of z (float64)."""
    terms = [math.log(w) + _gaussian_log_density(z, c, m) for w, m, c in zip(weights, means, covs)]
    return logsumexp(np.stack(terms), axis=0)


@functools.lru_cache(maxsize=32)
def _quadrature_mi(weights: tuple, means: tuple, covs: tuple, points_per_sd: float) -> float:
    r"""$\iint p(x,y)\log\frac{p(x,y)}{p(x)p(y)}\,dx\,dy$ of a 1 + 1-dimensional Gaussian mixture by the trapezoid
    rule on a uniform grid: spacing the smallest component standard deviation over `points_per_sd`, extent 12
    standard deviations beyond every component mean. For smooth integrands decaying like Gaussians the trapezoid
    error falls like $\exp(-2\pi^2 (\sigma/h)^2)$, i.e. below 1e-12 from 4 points per standard deviation, and the
    truncated tails carry less than $e^{-70}$ of the mass."""
    w, m, c = np.array(weights), np.array(means), np.array(covs)
    sd = np.sqrt(np.stack([np.diagonal(ck) for ck in c]))  # (K, 2)
    smallest = float(np.min(np.sqrt(np.linalg.eigvalsh(c))))
    h = smallest / points_per_sd
    lo, hi = (m - 12 * sd).min(axis=0), (m + 12 * sd).max(axis=0)
    gx = np.arange(lo[0], hi[0] + h, h)
    gy = np.arange(lo[1], hi[1] + h, h)
    log_px = _mixture_log_density(gx[:, None], w, m[:, :1], c[:, :1, :1])
    log_py = _mixture_log_density(gy[:, None], w, m[:, 1:], c[:, 1:, 1:])
    total = 0.0
    for i in range(0, len(gx), 256):  # rows in chunks: bounded memory
        xs = gx[i:i + 256]
        z = np.stack(np.broadcast_arrays(xs[:, None], gy[None, :]), axis=-1).reshape(-1, 2)
        log_p = _mixture_log_density(z, w, m, c).reshape(len(xs), len(gy))
        ratio = log_p - log_px[i:i + 256, None] - log_py[None, :]
        total += float(np.sum(np.exp(log_p) * ratio))
    return total * h * h


def _orthogonal(dim: int, seed: int) -> np.ndarray:
    """A fixed orthogonal matrix (QR of a seeded Gaussian matrix, signs fixed so it is unique)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


@dataclasses.dataclass(frozen=True)
class MixturePair:
    r"""A mixture task: $(X_i, Y_i) \sim \sum_k w_k\mathcal N(m_k, C_k)$ in 1 + 1 dimensions, `copies` independent
    copies $i = 1..c$, then $X = Q_X(X_1..X_c)$ and $Y = Q_Y(Y_1..Y_c)$ with fixed orthogonal $Q_X$, $Q_Y$
    (identity for one copy). Neither Gaussian nor a per-component transform of one: the dependence is multimodal.

    $I(X;Y) = c\,I(X_1;Y_1)$ (independent copies add; invertible maps of X alone or Y alone change nothing), with
    $I(X_1;Y_1) = \iint p\log\frac{p(x,y)}{p(x)p(y)}$ by a 2-D trapezoid quadrature (the marginals are 1-D
    mixtures, exact), accurate to far below 1e-6 nats. In nats.

    **Arguments:**

    - `weights`: the component probabilities $w_k$ (positive, summing to one within 1e-10).
    - `means`: the component means $m_k$, K pairs $(m_x, m_y)$.
    - `covs`: the component covariances $C_k$, K symmetric positive-definite 2x2 matrices.
    - `copies`: the number $c$ of independent copies (D_X = D_Y = c).
    - `seed`: fixes $Q_X$, $Q_Y$.
    """

    weights: tuple[float, ...]
    means: tuple[tuple[float, float], ...]
    covs: tuple[tuple[tuple[float, float], tuple[float, float]], ...]
    copies: int = 1
    seed: int = 0

    def __post_init__(self):
        w, m, c = np.asarray(self.weights, float), np.asarray(self.means, float), np.asarray(self.covs, float)
        if w.ndim != 1 or w.size < 1 or np.any(w <= 0) or abs(w.sum() - 1) > 1e-10:
            raise ValueError(f"MixturePair.weights must be positive and sum to one; got {self.weights!r}.")
        if m.shape != (w.size, 2):
            raise ValueError(f"MixturePair.means must be {w.size} pairs (m_x, m_y); got shape {m.shape}.")
        if c.shape != (w.size, 2, 2) or not np.allclose(c, np.swapaxes(c, 1, 2)) or np.any(np.linalg.eigvalsh(c) <= 0):
            raise ValueError(f"MixturePair.covs must be {w.size} symmetric positive-definite 2x2 matrices; got shape "
                             f"{c.shape}.")
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 1:
            raise ValueError(f"MixturePair.copies must be a positive integer; got {self.copies!r}.")

    def _arrays(self):
        return np.asarray(self.weights, float), np.asarray(self.means, float), np.asarray(self.covs, float)

    def _rotations(self) -> tuple[np.ndarray, np.ndarray]:
        if self.copies == 1:
            return np.eye(1), np.eye(1)
        return _orthogonal(self.copies, 2 * self.seed), _orthogonal(self.copies, 2 * self.seed + 1)

    def __call__(self, n: int, *, key: PRNGKeyArray) -> tuple[Float[np.ndarray, "n dim_x"], Float[np.ndarray, "n dim_y"]]:
        """`n` pairs (x, y) as float64 NumPy arrays, shapes (n, copies) each."""
        w, m, c = self._arrays()
        k_label, k_noise = jax.random.split(key)
        labels = np.asarray(jax.random.choice(k_label, w.size, (n, self.copies), p=np.asarray(w)))
        noise = np.asarray(jax.random.normal(k_noise, (n, self.copies, 2)), np.float64)
        roots = np.linalg.cholesky(c)  # (K, 2, 2)
        pairs = m[labels] + np.einsum("ncij,ncj->nci", roots[labels], noise)
        qx, qy = self._rotations()
        return pairs[..., 0] @ qx.T, pairs[..., 1] @ qy.T

    def mutual_information(self, *, points_per_sd: float = 6.0) -> float:
        """The exact $I(X;Y)$ in nats (`copies` times the 1 + 1 quadrature)."""
        return self.copies * _quadrature_mi(tuple(self.weights), tuple(map(tuple, self.means)),
                                            tuple(tuple(map(tuple, ck)) for ck in self.covs), float(points_per_sd))

    def log_density_ratio(self, x: Float[Array, "n dim_x"], y: Float[Array, "n dim_y"]) -> Float[np.ndarray, " n"]:
        r"""$\log p(x, y) - \log p(x) - \log p(y)$ per pair from the mixture densities (float64), summed over the
        copies after undoing the rotations (whose Jacobians cancel): its mean over samples is a Monte Carlo
        estimate of $I(X;Y)$ independent of the quadrature."""
        w, m, c = self._arrays()
        qx, qy = self._rotations()
        xs, ys = np.asarray(x, np.float64) @ qx, np.asarray(y, np.float64) @ qy  # Q^{-1} = Q^T
        total = np.zeros(xs.shape[0])
        for i in range(self.copies):
            z = np.stack([xs[:, i], ys[:, i]], axis=1)
            total += (_mixture_log_density(z, w, m, c) - _mixture_log_density(z[:, :1], w, m[:, :1], c[:, :1, :1])
                      - _mixture_log_density(z[:, 1:], w, m[:, 1:], c[:, 1:, 1:]))
        return total
