"""`Estimate`: a Monte Carlo value with its standard error, and optionally its time-resolved curve."""

from __future__ import annotations

import dataclasses
import math

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
    estimators on the NumPy float64 rows they gathered (each in its own array type, so float64 stays float64).
    """
    xp = np if isinstance(values, np.ndarray) else jnp
    n = values.shape[axis]
    return xp.mean(values, axis=axis), xp.std(values, axis=axis, ddof=1) / np.sqrt(n)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A number estimated by Monte Carlo, in nats, with its standard error.

    Time-resolved estimators also fill the curve fields: `times` (forward times s), `rate` (the
    integrand at each time, nats per unit s) with `rate_stderr`, and `cumulative` (the integral from 0
    to each time) with `cumulative_stderr`. `n_evals` counts the network evaluations spent. `flags`
    lists violated bounds (see `check_bounds`), so a number outside what is possible is never silent.
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
        """Return a copy flagged for each bound the value exceeds by more than `n_sigma` stderr."""
        flags = list(self.flags)
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
