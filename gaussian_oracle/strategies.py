r"""Hypothesis strategies that draw valid oracle instances, for property-testing your own estimators.

Every parameter that shapes an instance (dimensions, spectrum, near-rank-deficiency, noise level, weights) is a
bounded draw that hypothesis can shrink; only the random orthogonal frames, means and coupling matrices come from a
drawn integer seed passed to NumPy. Import this module explicitly (`gaussian_oracle` itself does not import
hypothesis):

```python
from hypothesis import given, settings
from gaussian_oracle.strategies import gaussian_mixtures, joint_gaussians

@settings(deadline=None, max_examples=20)   # jit compiles are slow: no deadline, few examples
@given(joint_gaussians(max_dim=4))
def test_my_estimator_is_close(joint):
    estimate = my_mutual_information_estimator(joint.model(), ...)   # your code, returning an Estimate
    assert estimate.within(joint.mutual_information(), n_sigma=4)

@settings(deadline=None, max_examples=10)
@given(gaussian_mixtures(max_components=3, max_dim=2))
def test_my_label_entropy_is_bounded(mixture):
    value = my_label_entropy(mixture.model(), ...)
    assert -1e-9 <= value <= mixture.prior_entropy() + 1e-9
```
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from ._joint import JointGaussian
from ._mixture import GaussianMixture
from ._sde import VPSDE


__all__ = ["gaussian_mixtures", "joint_gaussians"]

_SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def _integer(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
    return float(value)


def _ordered(low, high, low_name: str, high_name: str):
    if low > high:
        raise ValueError(f"{low_name} must be <= {high_name}; got {low_name}={low}, {high_name}={high}.")
    return low, high


def _spectrum_options(max_condition, max_eigenvalue, rank_deficiency, eigenvalue_floor):
    max_condition = _positive(max_condition, "max_condition")
    if max_condition < 1:
        raise ValueError(f"max_condition must be >= 1; got {max_condition}.")
    if not isinstance(max_eigenvalue, tuple) or len(max_eigenvalue) != 2:
        raise ValueError(f"max_eigenvalue must be a (low, high) tuple; got {max_eigenvalue!r}.")
    top_range = _ordered(_positive(max_eigenvalue[0], "max_eigenvalue[0]"),
                         _positive(max_eigenvalue[1], "max_eigenvalue[1]"), "max_eigenvalue[0]", "max_eigenvalue[1]")
    rank_deficiency = _integer(rank_deficiency, "rank_deficiency", 0)
    eigenvalue_floor = _ordered(_positive(eigenvalue_floor, "eigenvalue_floor"), top_range[0],
                                "eigenvalue_floor", "max_eigenvalue[0]")[0]
    return max_condition, top_range, rank_deficiency, eigenvalue_floor


def _check_sde(sde) -> VPSDE:
    if not isinstance(sde, VPSDE):
        raise ValueError(f"sde must be a VPSDE; got {type(sde).__name__}.")
    return sde


def _orthogonal(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A Haar-random orthogonal matrix: QR of a Gaussian matrix with the signs of R's diagonal fixed."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


@st.composite
def _spectra(draw, dim: int, top_range, max_condition: float, rank_deficiency: int, eigenvalue_floor: float):
    r"""Eigenvalues: a top value, the rest log-uniform within `max_condition` of it, some replaced by the floor."""
    top = draw(st.floats(*top_range))
    log_ratio = st.floats(0.0, math.log(max_condition))
    evals = np.array([top] + [top * math.exp(-draw(log_ratio)) for _ in range(dim - 1)])
    n_floor = draw(st.integers(0, min(rank_deficiency, dim - 1)))
    if n_floor:
        evals[dim - n_floor:] = eigenvalue_floor
    return evals


def _covariance(evals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = _orthogonal(rng, evals.shape[0])
    cov = (u * evals) @ u.T
    return 0.5 * (cov + cov.T)


def joint_gaussians(
    min_dim: int = 1,
    max_dim: int = 6,
    *,
    max_dim_y: int | None = None,
    max_condition: float = 100.0,
    max_eigenvalue: tuple[float, float] = (0.2, 5.0),
    rank_deficiency: int = 0,
    eigenvalue_floor: float = 1e-4,
    min_sigma_eps: float = 0.1,
    max_sigma_eps: float = 3.0,
    sde: VPSDE = VPSDE(),
) -> st.SearchStrategy[JointGaussian]:
    r"""Valid `JointGaussian` instances $Y = AX + \varepsilon$ (Eq. 47) with bounded shape, spectrum and noise.

    $\Sigma_X = U\mathrm{diag}(\lambda)U^\top$: the largest eigenvalue is drawn in `max_eigenvalue`, the others
    log-uniformly within a factor `max_condition` below it; then up to `rank_deficiency` of them (never all) are
    replaced by `eigenvalue_floor`, squeezing X towards a subspace as the flattening family (Eq. 52) does, so the
    condition number can reach `max_eigenvalue[1] / eigenvalue_floor`. $U$ is Haar-orthogonal and
    $A_{ij} \sim \mathcal N(0, 1/D_X)$, both from a drawn seed; $\sigma_\varepsilon$ is drawn in
    [`min_sigma_eps`, `max_sigma_eps`].

    **Arguments:**

    - `min_dim`, `max_dim`: the range of $D_X$.
    - `max_dim_y`: the largest $D_Y$ (drawn from 1); defaults to `max_dim`.
    - `max_condition`: the largest ratio between the top eigenvalue and any eigenvalue not set to the floor.
    - `max_eigenvalue`: the (low, high) range of the largest eigenvalue of $\Sigma_X$.
    - `rank_deficiency`: the largest number of eigenvalues set to `eigenvalue_floor` (0 for well-conditioned only).
    - `eigenvalue_floor`: the small eigenvalue of the near-null directions.
    - `min_sigma_eps`, `max_sigma_eps`: the range of the noise standard deviation.
    - `sde`: the forward process of every instance.

    **Returns:**

    A hypothesis strategy of `JointGaussian`s.
    """
    min_dim, max_dim = _ordered(_integer(min_dim, "min_dim", 1), _integer(max_dim, "max_dim", 1), "min_dim", "max_dim")
    max_dim_y = max_dim if max_dim_y is None else _integer(max_dim_y, "max_dim_y", 1)
    max_condition, top_range, rank_deficiency, eigenvalue_floor = _spectrum_options(
        max_condition, max_eigenvalue, rank_deficiency, eigenvalue_floor)
    sigma_range = _ordered(_positive(min_sigma_eps, "min_sigma_eps"), _positive(max_sigma_eps, "max_sigma_eps"),
                           "min_sigma_eps", "max_sigma_eps")
    sde = _check_sde(sde)

    @st.composite
    def draw_joint(draw):
        dim_x = draw(st.integers(min_dim, max_dim))
        dim_y = draw(st.integers(1, max_dim_y))
        evals = draw(_spectra(dim_x, top_range, max_condition, rank_deficiency, eigenvalue_floor))
        sigma_eps = draw(st.floats(*sigma_range))
        rng = np.random.default_rng(draw(_SEEDS))
        a = rng.standard_normal((dim_y, dim_x)) / math.sqrt(dim_x)
        return JointGaussian(_covariance(evals, rng), a, sigma_eps, sde)

    return draw_joint()


def gaussian_mixtures(
    min_components: int = 2,
    max_components: int = 4,
    min_dim: int = 1,
    max_dim: int = 4,
    *,
    min_weight: float = 0.05,
    mean_scale: float = 2.0,
    max_condition: float = 20.0,
    max_eigenvalue: tuple[float, float] = (0.05, 2.0),
    rank_deficiency: int = 0,
    eigenvalue_floor: float = 1e-3,
    sde: VPSDE = VPSDE(),
) -> st.SearchStrategy[GaussianMixture]:
    r"""Valid labelled `GaussianMixture`s with bounded size, weights, separation and component spectra.

    The weights are drawn in [`min_weight`, 1] and divided by their sum (so each label has probability at least
    `min_weight / max_components`); the means are $\mathcal N(0, \text{mean\_scale}^2 I)$ from a drawn seed. Each
    covariance is built like `joint_gaussians`' $\Sigma_X$: a top eigenvalue in `max_eigenvalue`, the rest within
    `max_condition` of it, up to `rank_deficiency` of them (never all) set to `eigenvalue_floor` (components near
    a lower-dimensional manifold), rotated by its own Haar-orthogonal matrix.

    **Arguments:**

    - `min_components`, `max_components`: the range of the number of labels K.
    - `min_dim`, `max_dim`: the range of $D_X$.
    - `min_weight`: the smallest unnormalised weight, in (0, 1].
    - `mean_scale`: the standard deviation of the component means.
    - `max_condition`, `max_eigenvalue`, `rank_deficiency`, `eigenvalue_floor`: the component spectra, as for
      `joint_gaussians`.
    - `sde`: the forward process of every instance.

    **Returns:**

    A hypothesis strategy of `GaussianMixture`s.
    """
    min_components, max_components = _ordered(_integer(min_components, "min_components", 1),
                                              _integer(max_components, "max_components", 1),
                                              "min_components", "max_components")
    min_dim, max_dim = _ordered(_integer(min_dim, "min_dim", 1), _integer(max_dim, "max_dim", 1), "min_dim", "max_dim")
    min_weight = _ordered(_positive(min_weight, "min_weight"), 1.0, "min_weight", "1")[0]
    mean_scale = _positive(mean_scale, "mean_scale")
    max_condition, top_range, rank_deficiency, eigenvalue_floor = _spectrum_options(
        max_condition, max_eigenvalue, rank_deficiency, eigenvalue_floor)
    sde = _check_sde(sde)

    @st.composite
    def draw_mixture(draw):
        k = draw(st.integers(min_components, max_components))
        dim_x = draw(st.integers(min_dim, max_dim))
        raw = np.array(draw(st.lists(st.floats(min_weight, 1.0), min_size=k, max_size=k)))
        spectra = [draw(_spectra(dim_x, top_range, max_condition, rank_deficiency, eigenvalue_floor)) for _ in range(k)]
        rng = np.random.default_rng(draw(_SEEDS))
        means = mean_scale * rng.standard_normal((k, dim_x))
        covs = np.stack([_covariance(evals, rng) for evals in spectra])
        return GaussianMixture(raw / raw.sum(), means, covs, sde)

    return draw_mixture()
