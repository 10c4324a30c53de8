r"""The information budget of a model: total correlation by Eq. 7, and where each part of $S_{NN}$ lives in time.

Eq. 7 splits the divergence of the diffused data from equilibrium into per-coordinate marginal terms and the total
correlation between coordinates, $D_{KL}(p_s\|p_{eq}) = \sum_k D_{KL}(p_s(x_k)\|\mathcal N(0,1)) + TC(X_s)$. The
left side, accumulated from s to T, is what a trained network gives ($S_{NN}(s \to T) = \int_s^T \tfrac\beta2
\mathbb E\|e\|^2$), and the marginal terms are exact one-dimensional integrals of the data
(`gaussian_oracle.marginal_kl_curves`), so

$$TC(X_s) - TC(X_T) = S_{NN}(s \to T) - \sum_k\big[KL_k(s) - KL_k(T)\big],\quad
KL_k(s) = D_{KL}(p_s(x_k)\|\mathcal N(0,1)),$$

with the standard error of the $S_{NN}$ part (the marginal part is exact). $TC(X_T)$ is of order $\alpha(T)^2$
(below $10^{-6}$ nats for the paper's schedule), so the curve is $TC(X_s)$ for every practical purpose; the
subtraction of the marginal terms at T makes it exact for exact scores.

Every tail curve (from a grid node s to T, `FromEnd`: trapezoid between nodes, a rectangle above the last) also
carries an estimate of its quadrature error, which its stderr does not cover: `tail_quadrature_error` of the curve's
own mean rate. On a log-spaced grid the cells near T are wide where the rate decays fast, and there this error can
exceed the stderr (the exact joint Gaussian of the tests, 128 cells from $10^{-3}$, 2,000 samples: $S_{NN}^X$'s at
the 21 nodes from s = 0.33 on, by up to 18 stderr; the estimate is about 1 to 4 times the real error there). The
estimate reads second differences of a Monte Carlo rate, so part of it is the rate's sampling noise, and that part
does not shrink with finer cells (on 2,048 uniform cells and 500 samples it exceeds the stderr at 1,691 nodes, by
noise alone: 84 to 3,900 times the real error); its noise floor, the same estimate of a rate holding only such noise
(the difference of the mean rates of the even and odd rows, scaled to the mean's variance), is reported beside it,
and a node counts as limited by the grid where the estimate less its floor exceeds the stderr. A curve with such
nodes carries one flag saying so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from gaussian_oracle import VPSDE, Estimate, check_key, marginal_kl_curves, mean_stderr

from .._report import curves_of
from ._information import _check_data, _check_information, _entropy_integrand, _information_integrand
from ._integrators import AbstractGrid, GeometricGrid
from ._label_entropy import FromEnd, _flag_grid, _grid_error, _grid_limited

__all__ = ["InformationBudget", "geometric_grid_through", "information_budget", "total_correlation"]

MarginalKL = Callable[[np.ndarray], np.ndarray]
"""`marginal_kl(times) -> (n_times,) or (n_times, dim)`: the per-coordinate marginal KLs at the given times, nats."""


# ---------------------------------------------------------------------------------------------- pieces
def _rows(integrand, models: tuple, x, y, grid: AbstractGrid, sde: VPSDE, chunk_size: int, key) -> np.ndarray:
    """`AbstractGrid.rows` with a checked key."""
    return grid.rows(integrand, models, x, y, sde=sde, chunk_size=chunk_size, key=check_key(key))


def _marginal_sum(marginal_kl: MarginalKL, times: np.ndarray, sde: VPSDE) -> np.ndarray:
    r"""$\sum_k[D_{KL}(p_s(x_k)\|\mathcal N) - D_{KL}(p_T(x_k)\|\mathcal N)]$ at `times`."""
    at = np.append(np.asarray(times, np.float64), sde.T)
    values = np.asarray(marginal_kl(at), np.float64)
    if values.ndim == 2:
        values = values.sum(axis=1)
    if values.shape != at.shape or not np.all(np.isfinite(values)):
        raise ValueError(f"marginal_kl(times) must return {len(at)} finite values (or a (n_times, dim) array); got "
                         f"shape {values.shape}.")
    return values[:-1] - values[-1]


def _data_marginals(x, sde: VPSDE) -> MarginalKL:
    return lambda times: marginal_kl_curves(np.asarray(x), times, sde)


def _check_grid(times) -> None:
    if not isinstance(times, AbstractGrid):
        raise ValueError(f"times must be a grid (GeometricGrid, UniformGrid): the curve needs fixed nodes; "
                         f"got {times!r}.")


def geometric_grid_through(tau: float, n_times: int, s_min: float, T: float) -> GeometricGrid:
    r"""A `GeometricGrid` of `n_times` log-spaced midpoint cells with `tau` on a cell edge, so that integrals split at
    $\tau$ exactly; its lower end is the log-spaced point nearest `s_min` that allows this.

    **Arguments:**

    - `tau`: the split time, $s_{\min} < \tau < T$.
    - `n_times`: number of cells (at least 2).
    - `s_min`: the wanted lower end, $0 < s_{\min} < \tau$.
    - `T`: the process's final time.

    **Returns:**

    A `GeometricGrid` whose edges include `tau` (to rounding).
    """
    if isinstance(n_times, bool) or not isinstance(n_times, int) or n_times < 2:
        raise ValueError(f"n_times must be an integer >= 2; got {n_times!r}.")
    if not 0 < s_min < tau < T:
        raise ValueError(f"need 0 < s_min < tau < T; got s_min={s_min}, tau={tau}, T={T}.")
    below = min(max(round(n_times * math.log(tau / s_min) / math.log(T / s_min)), 1), n_times - 1)
    # equal log-steps r: tau = s_min r^below and T = tau r^(n - below)
    log_step = math.log(T / tau) / (n_times - below)
    return GeometricGrid(n_times=n_times, s_min=float(tau * math.exp(-below * log_step)))


# ---------------------------------------------------------------------------------------------- TC curve
def total_correlation(model, x: Float[Array, "batch *shape"], *, marginal_kl: MarginalKL | None = None,
                      times: AbstractGrid = GeometricGrid(n_times=64, s_min=1e-4), chunk_size: int = 1024,
                      key: PRNGKeyArray) -> Estimate:
    r"""The total correlation curve $TC(X_s) - TC(X_T) = S_{NN}(s \to T) - \sum_k[KL_k(s) - KL_k(T)]$ (Eq. 7), in nats.

    $S_{NN}(s \to T)$ is the unconditional neural entropy accumulated from each grid node to T (`FromEnd` of the
    grid, with per-sample standard errors); $KL_k(s) = D_{KL}(p_s(x_k)\|\mathcal N(0, 1))$ are the marginal terms,
    by default exact for the empirical distribution of `x` (`gaussian_oracle.marginal_kl_curves`). With the exact
    $e^*$ and the exact marginals this is the oracle's $TC(X_s) - TC(X_T)$ (for `JointGaussian`,
    `total_correlation_curve(T) - total_correlation_curve(s)`), up to the grid's discretisation.

    A learned network that does not resolve the data's discreteness at small s gives a negative value there (the
    data's marginals, which do, grow like $-\log\sigma(s)$ per coordinate): any node whose value is below 0 by more
    than 2 stderr is flagged. The curve's quadrature error, which the stderr does not cover, is that of $S_{NN}$ (the
    marginal part is exact): where it exceeds the stderr by more than its noise floor at some node (see the module),
    one more flag says the curve is limited by the time grid there (how many nodes, their s range, the largest
    ratio to the stderr); this flag is the only report of the grid error here (`information_budget` also returns the
    estimate itself).

    **Arguments:**

    - `model`: a protocol model (called unconditionally, `y=None`).
    - `x`: the data samples, one per row (the same rows feed $S_{NN}$ and, by default, the marginals).
    - `marginal_kl`: `marginal_kl(times) -> (n_times,) or (n_times, dim)`, the marginal KLs at given times (e.g. a
      closed form); `None` computes them exactly from `x`.
    - `times`: a grid resolving small s (log-spaced: `GeometricGrid`).
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key.

    **Returns:**

    An `Estimate`: `times` the grid's nodes, the TC curve in `cumulative`/`cumulative_stderr`, the $S_{NN}$ rate in
    `rate`/`rate_stderr`, `value`/`stderr` the curve at the first (smallest) node, and the flags above.
    """
    _check_grid(times)
    x, _ = _check_data(x, None)
    sde = model.sde
    rows = _rows(_entropy_integrand, (model,), x, None, times, sde, chunk_size, key)
    nodes, _ = times.nodes_weights(sde)
    tail, tail_se = mean_stderr(rows @ FromEnd(times).cumulative_weights(sde).T)
    rate, rate_se = mean_stderr(rows)
    marginals = _marginal_sum(_data_marginals(x, sde) if marginal_kl is None else marginal_kl, nodes, sde)
    curve = tail - marginals
    est = Estimate(value=curve[0], stderr=tail_se[0], times=nodes, rate=rate, rate_stderr=rate_se, cumulative=curve,
                   cumulative_stderr=tail_se, n_evals=int(rows.size))
    return _flag_grid(_flag_negative(est, "TC(X_s) - TC(X_T)"), *_grid_error(rows, times, sde), "TC(X_s) - TC(X_T)")


def _flag_negative(est: Estimate, name: str) -> Estimate:
    below = np.flatnonzero(est.cumulative < -2.0 * est.cumulative_stderr)
    if below.size == 0:
        return est
    times = est.times[below]
    flag = (f"{name} is below 0 by more than 2 stderr at {below.size} of {est.times.size} times "
            f"(s from {times.min():.3g} to {times.max():.3g}; {est.cumulative[below[0]]:.4g} ± "
            f"{est.cumulative_stderr[below[0]]:.2g} at s = {times[0]:.3g}): the model holds less than the data's "
            "marginals there")
    return dataclasses.replace(est, flags=(*est.flags, flag))


# ---------------------------------------------------------------------------------------------- the budget
@dataclasses.dataclass(frozen=True)
class InformationBudget:
    r"""Where the information of a conditional model lives: totals over $[s_{\min}, T]$ and their split at $\tau$.

    Every entry of `parts` maps a quantity to `{"total", "semantic", "perceptual"}` `Estimate`s, with semantic the part
    from $\tau$ to T and perceptual the part from $s_{\min}$ to $\tau$ (they sum to the total exactly, per sample);
    `fractions` holds $TC/S_{NN}^X$ and $I/S_{NN}^X$ for each of the three. `curves` holds the tail curves at the
    grid's nodes (from s to T): `neural_entropy`, `conditional_neural_entropy`, `mutual_information` ($I(X_s;Y)$)
    and `total_correlation` as `Estimate`s, and `marginal_sum` as an array (exact). `grid_error` holds, for each of
    the four curves, the estimated quadrature error of the curve at each node (`tail_quadrature_error` of its mean
    rate; the TC curve's is $S_{NN}^X$'s, the marginal part being exact), which its stderr does not cover, and
    `grid_error_noise` that estimate's noise floor (what the rate's sampling noise alone gives; see the module). A
    curve with nodes where the grid error less its floor exceeds the stderr (`grid_limited`) carries a flag.

    All values in nats (per image for images); the grid errors are NaN on a grid of fewer than 3 nodes.
    """

    tau: float
    s_min: float
    T: float
    parts: dict
    fractions: dict
    curves: dict
    marginal_sum: np.ndarray
    grid_error: dict
    grid_error_noise: dict

    def grid_limited(self, name: str) -> np.ndarray:
        """The nodes at which the curve `name` is limited by the time grid.

        **Arguments:**

        - `name`: a key of `curves` other than the exact `marginal_sum`.

        **Returns:**

        A boolean array over the grid's nodes: True where `grid_error` less `grid_error_noise` exceeds the curve's
        `cumulative_stderr`.
        """
        return _grid_limited(self.curves[name], self.grid_error[name], self.grid_error_noise[name])

    def to_dict(self) -> dict:
        """JSON-ready: the split times, the parts and fractions (value, stderr, flags), and the curves, each with its
        `grid_error` and `grid_error_noise`."""
        curves = curves_of(self.curves)
        for name, error in self.grid_error.items():
            curves[name]["grid_error"] = error.tolist()
            curves[name]["grid_error_noise"] = self.grid_error_noise[name].tolist()
        curves["marginal_sum"] = {"times": self.curves["neural_entropy"].times.tolist(),
                                  "cumulative": self.marginal_sum.tolist()}
        return {"tau": self.tau, "s_min": self.s_min, "T": self.T,
                "parts": {q: {p: e.to_dict() for p, e in split.items()} for q, split in self.parts.items()},
                "fractions": {q: {p: e.to_dict() for p, e in split.items()} for q, split in self.fractions.items()},
                "curves": curves}


def _ratio(a: np.ndarray, b: np.ndarray, name: str) -> Estimate:
    r"""$\bar a/\bar b$ of paired per-sample values, stderr by the delta method:
    $\mathrm{sd}(a - R b)/(\sqrt n\,|\bar b|)$."""
    ratio = a.mean() / b.mean()
    se = float(np.std(a - ratio * b, ddof=1) / (math.sqrt(a.size) * abs(b.mean())))
    return Estimate(ratio, se).check_bounds(lower=0.0, name=name)


def information_budget(model, x: Float[Array, "batch *shape"], y, *, tau: float, marginal_kl: MarginalKL | None = None,
                       times: AbstractGrid = GeometricGrid(n_times=64, s_min=1e-4), chunk_size: int = 1024,
                       key: PRNGKeyArray) -> InformationBudget:
    r"""$S_{NN}^X$, $S_{NN}^{X|Y}$, the marginal sum, TC (Eq. 7) and $I_{MINDE}$ (Eq. 13) of a conditional model,
    each as a total over the grid's span $[s_{\min}, T]$ and split at $\tau$ into the semantic ($s \ge \tau$) and
    perceptual ($s < \tau$) parts, with $TC/S_{NN}^X$ and $I/S_{NN}^X$.

    The integrals are the grid's midpoint sums; the split takes the cells whose node is at or above `tau`, so it is
    exact when `tau` is a cell edge (`geometric_grid_through`) and otherwise happens at the nearest edge (reported as
    `tau`). The marginal sum $M(s) = \sum_k[KL_k(s) - KL_k(T)]$ is exact: its total is $M(s_{\min})$, its semantic part
    $M(\tau)$; TC's parts are $S_{NN}^X$'s minus these. The three rates are read on the same noisy inputs, from one
    unconditional and one conditional network call per point; stderrs are per-data-sample, and the fractions use the
    delta method on the paired per-sample values.

    **Arguments:**

    - `model`: a label-conditional protocol model; `model(x, s, None)` is its unconditional $e$.
    - `x`, `y`: data pairs, one per row (held-out images and labels).
    - `tau`: the split time.
    - `marginal_kl`: as for `total_correlation` (`None`: exact from `x`).
    - `times`: a midpoint grid tiling $[s_{\min}, T]$ (`GeometricGrid`, `UniformGrid`).
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key.

    **Returns:**

    An `InformationBudget`; $I_{MINDE}$ is flagged if negative or, with integer labels, above $H(Y)$ (as
    `mutual_information_minde`), the TC curve and parts if negative beyond 2 stderr,
    and each curve with nodes limited by the time grid (its `grid_error` above its stderr, beyond the noise floor).
    """
    _check_grid(times)
    if y is None:
        raise ValueError("information_budget needs the labels y, paired with the rows of x.")
    x, y = _check_data(x, y)
    sde = model.sde
    nodes, weights = times.nodes_weights(sde)
    s_min = float(sde.T - weights.sum())
    if not s_min > 1e-12 * sde.T:
        raise ValueError(f"the grid must start above s = 0 (the data's marginal KLs are infinite there); its cells "
                         f"start at {s_min:.3g}. Use GeometricGrid(n_times, s_min) or UniformGrid(n_times, s_min > 0).")
    above = nodes >= tau
    if not (above.any() and (~above).any()):
        raise ValueError(f"tau = {tau} must lie inside the grid's nodes ({nodes[0]:.3g} to {nodes[-1]:.3g}).")
    edge = float(sde.T - weights[above].sum())
    # the three rates on the same noisy inputs, from e(x_s, s) and e(x_s, s; y): two network calls per point
    both = _rows(_information_integrand, (model,), x, y, times, sde, chunk_size, key)  # (n, n_times, 3)
    names = ("neural_entropy", "conditional_neural_entropy", "mutual_information")
    rows = {name: both[..., i] for i, name in enumerate(names)}
    n_evals = 2 * both.shape[0] * both.shape[1]
    marginal_kl = _data_marginals(x, sde) if marginal_kl is None else marginal_kl
    at_nodes = _marginal_sum(marginal_kl, nodes, sde)
    m_total, m_semantic = _marginal_sum(marginal_kl, np.array([s_min, edge]), sde)
    pieces = {"total": weights, "semantic": weights * above, "perceptual": weights * ~above}
    marginal = {"total": m_total, "semantic": m_semantic, "perceptual": m_total - m_semantic}

    parts, per_sample = {}, {}
    for name, r in rows.items():
        parts[name], per_sample[name] = {}, {}
        for piece, w in pieces.items():
            per_sample[name][piece] = r @ w
            parts[name][piece] = Estimate(*mean_stderr(per_sample[name][piece]), n_evals=n_evals)
    parts["marginal_sum"] = {piece: Estimate(value, 0.0) for piece, value in marginal.items()}
    parts["total_correlation"] = {piece: Estimate(parts["neural_entropy"][piece].value - marginal[piece],
                                                  parts["neural_entropy"][piece].stderr)
                                  .check_bounds(lower=0.0, name=f"TC ({piece})") for piece in pieces}
    parts["mutual_information"] = {piece: _check_information(est, y, f"I_MINDE ({piece})")
                                   for piece, est in parts["mutual_information"].items()}
    fractions = {
        "total_correlation": {piece: _ratio(per_sample["neural_entropy"][piece] - marginal[piece],
                                            per_sample["neural_entropy"][piece], f"TC/S_NN ({piece})")
                              for piece in pieces},
        "mutual_information": {piece: _ratio(per_sample["mutual_information"][piece],
                                             per_sample["neural_entropy"][piece], f"I/S_NN ({piece})")
                               for piece in pieces},
    }
    from_end = FromEnd(times).cumulative_weights(sde).T
    curves, grid_error, noise = {}, {}, {}
    for name, r in rows.items():
        tail, tail_se = mean_stderr(r @ from_end)
        rate, rate_se = mean_stderr(r)
        curves[name] = Estimate(tail[0], tail_se[0], times=nodes, rate=rate, rate_stderr=rate_se, cumulative=tail,
                                cumulative_stderr=tail_se, n_evals=n_evals)
        grid_error[name], noise[name] = _grid_error(r, times, sde)
    s_x = curves["neural_entropy"]
    curves["total_correlation"] = _flag_negative(
        dataclasses.replace(s_x, value=s_x.cumulative[0] - at_nodes[0], cumulative=s_x.cumulative - at_nodes),
        "TC(X_s) - TC(X_T)")
    # the marginal part is exact: the TC curve's grid error is S_NN^X's
    grid_error["total_correlation"], noise["total_correlation"] = grid_error["neural_entropy"], noise["neural_entropy"]
    labels = {"neural_entropy": "S_NN^X(s -> T)", "conditional_neural_entropy": "S_NN^{X|Y}(s -> T)",
              "mutual_information": "I(X_s;Y)", "total_correlation": "TC(X_s) - TC(X_T)"}
    curves = {name: _flag_grid(est, grid_error[name], noise[name], labels[name]) for name, est in curves.items()}
    return InformationBudget(tau=edge, s_min=s_min, T=float(sde.T), parts=parts, fractions=fractions, curves=curves,
                             marginal_sum=at_nodes, grid_error=grid_error, grid_error_noise=noise)
