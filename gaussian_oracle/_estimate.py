"""`Estimate`: a Monte Carlo value with its standard error, and optionally its time-resolved curve."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


def _jsonable(value):
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr.tolist()


def mean_stderr(values, axis: int = 0):
    r"""The sample mean of i.i.d. values along `axis` and its standard error $\mathrm{std}_{ddof=1}/\sqrt n$.

    The one Monte Carlo accumulator of the package: the oracle's kernels call it on JAX arrays inside jit, the
    estimators on the NumPy float64 rows they gathered (each in its own array type, so float64 stays float64; any
    other array-like, a list say, is read as NumPy). `values` must hold real numbers, at least 2 along `axis`: one
    value has no standard error, so n = 1 is refused rather than given a NaN stderr. The checks are on the shape and
    dtype only, so they cost nothing under jit.
    """
    if not isinstance(values, (np.ndarray, jax.Array)):
        values = np.asarray(values)
    dtype = values.dtype
    if dtype == bool or not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise ValueError(f"mean_stderr needs an array of real numbers; got dtype {dtype}.")
    if not -values.ndim <= axis < values.ndim:
        raise ValueError(f"mean_stderr: axis {axis} is out of range for an array of shape {values.shape}.")
    n = values.shape[axis]
    if n < 2:
        raise ValueError(f"mean_stderr needs at least 2 values along axis {axis} for a standard error; got {n} "
                         f"(shape {values.shape}).")
    xp = np if isinstance(values, np.ndarray) else jnp
    return xp.mean(values, axis=axis), xp.std(values, axis=axis, ddof=1) / np.sqrt(n)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A number estimated by Monte Carlo, in nats, with its standard error.

    Time-resolved estimators also fill the curve fields: `times` (forward times s), `rate` (the
    integrand at each time, nats per unit s) with `rate_stderr`, and `cumulative` (the integral from 0
    to each time) with `cumulative_stderr`. `n_evals` counts the network evaluations spent. `flags`
    lists violated bounds (see `check_bounds`), so a number outside what is possible is never silent.

    A non-finite `value` is accepted (NaN marks a quantity that could not be computed, written to JSON as null) and
    `check_bounds` flags it; a `stderr` that is NaN or negative is refused.
    """

    value: float
    stderr: float
    times: np.ndarray | None = None
    rate: np.ndarray | None = None
    rate_stderr: np.ndarray | None = None
    cumulative: np.ndarray | None = None
    cumulative_stderr: np.ndarray | None = None
    n_evals: int | None = None
    flags: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "stderr", float(self.stderr))
        if not self.stderr >= 0:
            raise ValueError(f"Estimate.stderr must be >= 0; got {self.stderr}.")

    def z_score(self, exact: float) -> float:
        """Signed distance from `exact` in standard errors (inf when stderr is 0 and they differ)."""
        diff = self.value - float(exact)
        if self.stderr == 0.0:
            return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        return diff / self.stderr

    def within(self, exact: float, n_sigma: float = 4.0) -> bool:
        """Whether `exact` lies within `n_sigma` standard errors of the value."""
        return abs(self.z_score(exact)) <= n_sigma

    def check_bounds(
        self, lower: float | None = None, upper: float | None = None, *, n_sigma: float = 2.0, name: str = "value"
    ) -> "Estimate":
        """Return a copy flagged for each bound the value exceeds by more than `n_sigma` stderr.

        A value that is not finite (NaN or infinite) is flagged whatever the bounds, since no comparison can clear
        it; so is an infinite stderr, against which no bound can be violated.
        """
        flags = list(self.flags)
        if not math.isfinite(self.value):
            flags.append(f"{name} is not finite ({self.value}): no bound can be checked")
        elif not math.isfinite(self.stderr):
            flags.append(f"{name} {self.value:.4g} has an infinite stderr: no bound can be checked")
        if lower is not None and self.value < lower - n_sigma * self.stderr:
            flags.append(f"{name} {self.value:.4g} is below its lower bound {lower:.4g} by more than {n_sigma} stderr")
        if upper is not None and self.value > upper + n_sigma * self.stderr:
            flags.append(f"{name} {self.value:.4g} is above its upper bound {upper:.4g} by more than {n_sigma} stderr")
        return dataclasses.replace(self, flags=tuple(flags))

    def to_dict(self, *, curves: bool = False) -> dict:
        """JSON-ready dict: `value`, `stderr` (and `flags`, `n_evals`; curves when asked)."""
        out = {"value": self.value, "stderr": self.stderr}
        if self.n_evals is not None:
            out["n_evals"] = int(self.n_evals)
        if self.flags:
            out["flags"] = list(self.flags)
        if curves and self.times is not None:
            for field in ("times", "rate", "rate_stderr", "cumulative", "cumulative_stderr"):
                out[field] = _jsonable(getattr(self, field))
        return out

    def __str__(self) -> str:
        return f"{self.value:.4f} ± {self.stderr:.4f}"


def check_curve_bounds(est: Estimate, lower: float | None = None, upper: float | None = None, *, name: str,
                       n_sigma: float = 2.0) -> Estimate:
    """`est.check_bounds` and, for a curve, one more flag for the times whose `cumulative` leaves [lower, upper] by
    more than `n_sigma` of its stderr (or is not finite): every node is checked, not only the value at the last."""
    out = est.check_bounds(lower, upper, n_sigma=n_sigma, name=name)
    if est.cumulative is None or est.times is None:
        return out
    curve, se = np.asarray(est.cumulative, np.float64), np.asarray(est.cumulative_stderr, np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(curve)
        if lower is not None:
            bad |= curve < lower - n_sigma * se
        if upper is not None:
            bad |= curve > upper + n_sigma * se
    if not bad.any():
        return out
    at = np.flatnonzero(bad)
    times = np.asarray(est.times, np.float64)[at]
    span = f"[{'-inf' if lower is None else f'{lower:.4g}'}, {'inf' if upper is None else f'{upper:.4g}'}]"
    flag = (f"the {name} curve leaves {span} by more than {n_sigma} stderr (or is not finite) at {at.size} of "
            f"{curve.size} times (s from {times.min():.3g} to {times.max():.3g}; {curve[at[0]]:.4g} ± "
            f"{se[at[0]]:.2g} at s = {times[0]:.3g})")
    return dataclasses.replace(out, flags=(*out.flags, flag))
