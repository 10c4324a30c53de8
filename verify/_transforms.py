r"""Invertible per-component preprocessing of (x, y) before a learned MI estimator: MI cannot change under it.

For strictly monotone maps $f_k$ applied to each component, $I(f(X); g(Y)) = I(X;Y)$ (the change of variables'
Jacobians cancel between the joint and the marginals), so a transform fitted on the training split and applied to
every split is exact preprocessing, not an approximation. It makes heavy-tailed or bounded data look like what the
networks and their covariance preconditioning were built for.

A transform is a frozen configuration (`MarginalGaussianisation()`, `RobustScaling()`) whose `fit(data)` returns a
fitted transform: an `eqx.Module` of float64 NumPy arrays with `__call__` (the map) and `inverse`, saved with the
fitted estimator (`verify.FittedEstimator.save`).
"""

from __future__ import annotations

import abc
import dataclasses
from types import MappingProxyType

import equinox as eqx
import numpy as np
from jaxtyping import ArrayLike, Float, Int
from scipy.special import ndtri

__all__ = ["AbstractTransform", "AbstractFittedTransform", "MarginalGaussianisation", "RobustScaling",
           "FittedGaussianisation", "FittedScaling", "TRANSFORMS"]


def _as_matrix(data, name: str = "data") -> np.ndarray:
    a = np.asarray(data)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be a float array of shape (n, dim); got shape {a.shape}, dtype {a.dtype}.")
    if not np.all(np.isfinite(a)):
        rows = np.flatnonzero(~np.all(np.isfinite(a), axis=1))
        raise ValueError(f"{name} must be finite; rows {rows[:10].tolist()} hold NaN or infinity.")
    return a.astype(np.float64)


def _check_columns(a: np.ndarray, dim: int, name: str) -> None:
    if a.shape[1] != dim:
        raise ValueError(f"{name} was fitted on {dim} components; got data with {a.shape[1]}.")


class AbstractFittedTransform(eqx.Module):
    """A fitted, strictly increasing map of each component (float64 NumPy arrays), with its inverse."""

    @abc.abstractmethod
    def __call__(self, data: Float[ArrayLike, "n dim"]) -> Float[np.ndarray, "n dim"]:
        """The transformed data, float64."""

    @abc.abstractmethod
    def inverse(self, data: Float[ArrayLike, "n dim"]) -> Float[np.ndarray, "n dim"]:
        """The data a transformed array came from, float64."""

    @abc.abstractmethod
    def spec(self) -> dict:
        """The array shapes (JSON), so `AbstractTransform.template(spec)` can rebuild a structure to load into."""


@dataclasses.dataclass(frozen=True)
class AbstractTransform(abc.ABC):
    """A per-component preprocessing, configured by a frozen dataclass; `fit` it on training data."""

    @abc.abstractmethod
    def fit(self, data: Float[ArrayLike, "n dim"]) -> AbstractFittedTransform:
        """Fit the map to the rows of `data` (one sample per row)."""

    @abc.abstractmethod
    def template(self, spec: dict) -> AbstractFittedTransform:
        """A fitted transform of the shapes in `spec` (zeros), the structure a saved one is read into."""


# ---------------------------------------------------------------------------------------------- Gaussianisation
class FittedGaussianisation(AbstractFittedTransform):
    r"""$z_k = \Phi^{-1}(\hat F_k(x_k))$ per component: piecewise linear through the knots $(v_{kj}, z_{kj})$ and
    logarithmic beyond them, $z = z_{end} \pm c\log(1 + |x - v_{end}|/h)$ with the last segment's rise $c$ and run
    $h$ (continuous, strictly increasing, so unseen extreme values stay finite and the map stays invertible).

    `values[k, :counts[k]]` are component k's strictly increasing knots, `scores` their normal quantiles.
    """

    values: Float[np.ndarray, "dim n_knots"]
    scores: Float[np.ndarray, "dim n_knots"]
    counts: Int[np.ndarray, " dim"]

    def _knots(self, k):
        m = int(self.counts[k])
        return self.values[k, :m], self.scores[k, :m]

    def __call__(self, data):
        return self._map(data, forward=True)

    def inverse(self, data):
        return self._map(data, forward=False)

    def _map(self, data, *, forward: bool):
        """Each column through its knots (values -> scores forward, scores -> values inverse): linear inside, and
        beyond the ends the log tail forward, its inverse (the exp tail) backward, continuous with the end slopes."""
        a = _as_matrix(data)
        _check_columns(a, self.values.shape[0], "MarginalGaussianisation")
        tail = np.log1p if forward else np.expm1
        out = np.empty_like(a)
        for k in range(a.shape[1]):
            v, z = self._knots(k)
            src, dst = (v, z) if forward else (z, v)
            col = a[:, k]
            res = np.interp(col, src, dst)
            lo, hi = col < src[0], col > src[-1]
            res[lo] = dst[0] - (dst[1] - dst[0]) * tail((src[0] - col[lo]) / (src[1] - src[0]))
            res[hi] = dst[-1] + (dst[-1] - dst[-2]) * tail((col[hi] - src[-1]) / (src[-1] - src[-2]))
            out[:, k] = res
        return out

    def spec(self):
        return {"type": "MarginalGaussianisation", "shape": list(self.values.shape)}


@dataclasses.dataclass(frozen=True)
class MarginalGaussianisation(AbstractTransform):
    r"""Per-component marginal Gaussianisation $z_k = \Phi^{-1}(\hat F_k(x_k))$, with $\hat F_k$ the empirical CDF of
    the training data at the mid-ranks $(i + \tfrac12)/n$ ($\Phi^{-1}$ the standard normal quantile).

    Strictly increasing per component, so $I(Z;Y) = I(X;Y)$ exactly; each marginal of the result is close to
    N(0, 1) whatever the tails of the data (Cauchy included). Tied values share one knot (the mean of their scores).

    **Arguments:**

    - `max_knots`: at most this many knots per component (evenly spaced in rank; the ends are always kept).
    """

    max_knots: int = 1024

    def __post_init__(self):
        if isinstance(self.max_knots, bool) or not isinstance(self.max_knots, int) or self.max_knots < 3:
            raise ValueError(f"MarginalGaussianisation.max_knots must be an integer >= 3; got {self.max_knots!r}.")

    def fit(self, data):
        a = _as_matrix(data)
        n, dim = a.shape
        ranks = np.unique(np.round(np.linspace(0, n - 1, min(n, self.max_knots))).astype(np.int64))
        scores_all = ndtri((ranks + 0.5) / n)
        values = np.zeros((dim, len(ranks)))
        scores = np.zeros((dim, len(ranks)))
        counts = np.zeros(dim, np.int64)
        for k in range(dim):
            v = np.sort(a[:, k])[ranks]
            unique, inverse = np.unique(v, return_inverse=True)
            if len(unique) < 3:
                raise ValueError(f"component {k} takes fewer than 3 distinct values in the training data; "
                                 "MarginalGaussianisation needs continuous components (drop constant ones).")
            z = np.bincount(inverse, weights=scores_all) / np.bincount(inverse)
            values[k, : len(unique)], scores[k, : len(unique)], counts[k] = unique, z, len(unique)
        return FittedGaussianisation(values, scores, counts)

    def template(self, spec):
        return FittedGaussianisation(np.zeros(spec["shape"]), np.zeros(spec["shape"]), np.zeros(spec["shape"][0], np.int64))


# ---------------------------------------------------------------------------------------------- robust scaling
class FittedScaling(AbstractFittedTransform):
    """$z_k = (x_k - m_k)/r_k$ per component."""

    loc: Float[np.ndarray, " dim"]
    scale: Float[np.ndarray, " dim"]

    def __call__(self, data):
        a = _as_matrix(data)
        _check_columns(a, self.loc.shape[0], "RobustScaling")
        return (a - self.loc) / self.scale

    def inverse(self, data):
        a = _as_matrix(data)
        _check_columns(a, self.loc.shape[0], "RobustScaling")
        return a * self.scale + self.loc

    def spec(self):
        return {"type": "RobustScaling", "shape": list(self.loc.shape)}


@dataclasses.dataclass(frozen=True)
class RobustScaling(AbstractTransform):
    r"""Per-component robust standardisation $z_k = (x_k - \mathrm{median}_k)/(\mathrm{IQR}_k / 1.349)$.

    The interquartile range over 1.349 is the standard deviation for Gaussian data, but unlike the sample standard
    deviation it exists for Cauchy-like tails. Affine per component, so I(X;Y) is unchanged; the tails stay heavy.
    """

    def fit(self, data):
        a = _as_matrix(data)
        q25, q50, q75 = np.percentile(a, [25.0, 50.0, 75.0], axis=0)
        scale = (q75 - q25) / 1.349
        if np.any(scale <= 0):
            bad = np.flatnonzero(scale <= 0).tolist()
            raise ValueError(f"components {bad} have zero interquartile range; RobustScaling cannot scale them.")
        return FittedScaling(q50, scale)

    def template(self, spec):
        return FittedScaling(np.zeros(spec["shape"]), np.ones(spec["shape"]))


TRANSFORMS = MappingProxyType({"MarginalGaussianisation": MarginalGaussianisation, "RobustScaling": RobustScaling})
"""The transform configurations by class name (how a saved estimator's JSON names its transform)."""
