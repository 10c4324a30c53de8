r"""A validation harness for mutual-information estimators on oracle tasks whose exact $I(X;Y)$ is known.

In the spirit of bmi (benchmark-mi): each `Task` carries its ground truth. Joint Gaussians give the truth in closed
form (Eq. 49); applying invertible per-component maps to X and Y (e.g. $y \mapsto y^3$, $x \mapsto e^x$) leaves
$I(X;Y)$ unchanged but makes the data non-Gaussian, which is where a Gaussian plug-in estimator fails.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from scipy.special import digamma

from gaussian_oracle import Estimate, JointGaussian, check_key

__all__ = ["Task", "ValidationRow", "ValidationReport", "validate", "default_tasks", "gaussian_plugin_mi"]

Sampler = Callable[..., tuple[Float[Array, "n dim_x"], Float[Array, "n dim_y"]]]


@dataclasses.dataclass(frozen=True)
class Task:
    """An oracle task: a sampler of pairs $(x, y)$ and the exact $I(X;Y)$ in nats.

    **Arguments:**

    - `name`: a short identifier.
    - `sample`: `sample(n, *, key) -> (x, y)` with x of shape (n, dim_x) and y of shape (n, dim_y).
    - `mutual_information`: the exact $I(X;Y)$, nats.
    """

    name: str
    sample: Sampler
    mutual_information: float


@dataclasses.dataclass(frozen=True)
class _TransformedJoint:
    """Samples of a `JointGaussian` pushed through invertible per-component maps (which leave I(X;Y) unchanged)."""

    joint: JointGaussian
    map_x: Callable[[Array], Array] | None = None
    map_y: Callable[[Array], Array] | None = None

    def __call__(self, n: int, *, key: PRNGKeyArray):
        x, y = self.joint.sample(n, key=key)
        if self.map_x is not None:
            x = self.map_x(x)
        if self.map_y is not None:
            y = self.map_y(y)
        return x, y


def _gaussian_task(name, joint, map_x=None, map_y=None) -> Task:
    return Task(name, _TransformedJoint(joint, map_x, map_y), float(joint.mutual_information()))


def _cube(a):
    return a**3


def default_tasks() -> tuple[Task, ...]:
    r"""Oracle tasks spanning about 0.1 to 60 nats and $D_X + D_Y$ from 2 to 40.

    Gaussian tasks from the determinism (Eq. 51) and flattening (Eq. 52) families, and non-Gaussian ones made by
    $y \mapsto y^3$ and $x \mapsto e^{x}$ per component. Instances are fixed (seeded like bmi's tasks), so the
    exact values do not change between runs.
    """
    det = lambda dx, dy, se, seed: JointGaussian.determinism(dx, dy, se, key=jax.random.key(seed))  # noqa: E731
    flat = JointGaussian.flattening(10, 5, 3, 1e-3, 0.5, key=jax.random.key(6))
    mid = det(5, 3, 1.0, 2)
    return (
        _gaussian_task("gauss-2x1-weak", det(2, 1, 1.0, 1)),
        _gaussian_task("gauss-5x3", mid),
        _gaussian_task("gauss-10x5", det(10, 5, 0.3, 3)),
        _gaussian_task("gauss-25x15", det(25, 15, 1.0, 4)),
        _gaussian_task("gauss-25x15-sharp", det(25, 15, 0.05, 5)),
        _gaussian_task("flattening-10x5", flat),
        _gaussian_task("cube-y-5x3", mid, map_y=_cube),
        _gaussian_task("exp-x-cube-y-5x3", mid, map_x=jnp.exp, map_y=_cube),
        _gaussian_task("exp-x-10x5", det(10, 5, 0.3, 3), map_x=jnp.exp),
    )


# ---------------------------------------------------------------------------------------------- baseline
def _wishart_log_det_bias(p: int, n: int) -> float:
    r"""$\mathbb E\log|\hat\Sigma| - \log|\Sigma|$ for the unbiased sample covariance of n Gaussian rows in p dims."""
    dof = n - 1
    return p * math.log(2.0 / dof) + float(np.sum(digamma((dof - np.arange(p)) / 2.0)))


def gaussian_plugin_mi(x: Float[Array, "n dim_x"], y: Float[Array, "n dim_y"]) -> Estimate:
    r"""Gaussian (CCA) plug-in $\hat I = \tfrac12\log\frac{|\hat\Sigma_{XX}||\hat\Sigma_{YY}|}{|\hat\Sigma|}$, in nats.

    Exact for Gaussian data up to sampling error: each log-determinant is corrected by its exact Wishart bias
    $p\log\frac{2}{n-1} + \sum_{i<p}\psi(\frac{n-1-i}{2})$, so $\hat I$ is unbiased for Gaussians. The stderr is the
    delta-method value $\sqrt{\sum_i\rho_i^2/n + D_XD_Y/(2n^2)}$ over the sample canonical correlations $\rho_i$
    (the second term is the $\rho = 0$ floor). For non-Gaussian data it estimates the MI of the Gaussian with the
    same covariance, which can be far from $I(X;Y)$: a baseline the validation harness must catch.

    **Arguments:**

    - `x`, `y`: paired samples, one pair per row.

    **Returns:**

    An `Estimate` in nats.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be (n, dim) arrays with the same n; got {x.shape} and {y.shape}.")
    n, dx, dy = x.shape[0], x.shape[1], y.shape[1]
    if n <= dx + dy + 1:
        raise ValueError(f"need more samples than dim_x + dim_y + 1 = {dx + dy + 1}; got {n}.")
    joint = np.cov(np.concatenate([x, y], axis=1).T)
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    sxx, syy = joint[:dx, :dx], joint[dx:, dx:]
    value = 0.5 * (
        logdet(sxx) - _wishart_log_det_bias(dx, n)
        + logdet(syy) - _wishart_log_det_bias(dy, n)
        - logdet(joint) + _wishart_log_det_bias(dx + dy, n)
    )
    # Canonical correlations: singular values of Sxx^{-1/2} Sxy Syy^{-1/2}.
    lx, ly = np.linalg.cholesky(sxx), np.linalg.cholesky(syy)
    cross = np.linalg.solve(lx, np.linalg.solve(ly, joint[dx:, :dx]).T)
    rho = np.clip(np.linalg.svd(cross, compute_uv=False), 0.0, 1.0)
    stderr = math.sqrt(float(np.sum(rho**2)) / n + dx * dy / (2.0 * n**2))
    return Estimate(value=value, stderr=stderr)


# ---------------------------------------------------------------------------------------------- harness
@dataclasses.dataclass(frozen=True)
class ValidationRow:
    """One task's result: exact and estimated MI (nats), stderr, relative error and z-score (NaN without stderr)."""

    task: str
    exact: float
    estimate: float
    stderr: float
    relative_error: float
    z: float
    flagged: bool


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """The rows of a `validate` run; a row is flagged when its estimate is more than `n_sigma` stderr from the truth."""

    rows: tuple[ValidationRow, ...]
    n_sigma: float
    n_samples: int

    @property
    def flagged(self) -> tuple[str, ...]:
        """Names of the tasks the estimator got wrong by more than `n_sigma` standard errors."""
        return tuple(r.task for r in self.rows if r.flagged)

    def table(self) -> str:
        """A plain-text table of the rows."""
        head = f"{'task':<22} {'exact':>9} {'estimate':>9} {'stderr':>8} {'rel.err':>8} {'z':>8}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            mark = "  <-- off" if r.flagged else ""
            lines.append(f"{r.task:<22} {r.exact:9.4f} {r.estimate:9.4f} {r.stderr:8.4f} "
                         f"{r.relative_error:8.2%} {r.z:8.2f}{mark}")
        return "\n".join(lines)

    def to_json(self, path=None) -> str:
        """The report as JSON (NaN written as null); also written to `path` when given."""
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        payload = {
            "n_sigma": self.n_sigma,
            "n_samples": self.n_samples,
            "units": "nats",
            "rows": [{k: clean(v) for k, v in dataclasses.asdict(r).items()} for r in self.rows],
            "flagged": list(self.flagged),
        }
        text = json.dumps(payload, indent=2)
        if path is not None:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    def plot(self, path, *, title: str = "MI estimate vs truth") -> None:
        """Write a log-log PNG of estimate against exact MI, with error bars ($\\pm 2$ stderr) and the line y = x."""
        from ._figures import new_figure, save_figure

        exact = np.array([r.exact for r in self.rows])
        est = np.array([r.estimate for r in self.rows])
        err = np.nan_to_num(np.array([2 * r.stderr for r in self.rows]))
        flagged = np.array([r.flagged for r in self.rows])
        fig, axes = new_figure(figsize=(5.5, 5))
        ax = axes[0, 0]
        positive = est > 0
        lo = 0.5 * min(exact.min(), est[positive].min() if positive.any() else exact.min())
        hi = 2 * max(exact.max(), est.max())
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, label="y = x")
        for mask, colour, label in ((~flagged, "tab:blue", "within"), (flagged, "tab:red", f"> {self.n_sigma:g} stderr")):
            if mask.any():
                lower = np.minimum(err[mask], est[mask] - lo * 0.999)
                ax.errorbar(exact[mask], np.maximum(est[mask], lo), yerr=[lower, err[mask]], fmt="o", ms=4,
                            color=colour, capsize=2, label=label)
        for r in self.rows:
            ax.annotate(r.task, (r.exact, max(r.estimate, lo)), fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="exact I(X;Y) [nats]",
               ylabel="estimate [nats]", title=title)
        ax.legend(loc="upper left", fontsize=8)
        save_figure(fig, path)


def validate(estimator: Callable, tasks=None, *, n_samples: int = 5000, n_sigma: float = 4.0,
             key: PRNGKeyArray) -> ValidationReport:
    r"""Run an MI estimator on oracle tasks and compare with the exact $I(X;Y)$ (nats).

    **Arguments:**

    - `estimator`: `estimator(x, y)` returning an `Estimate` or a float (a float has no stderr, so it is never
      flagged; its z is NaN).
    - `tasks`: a sequence of `Task`s; `default_tasks()` when `None`.
    - `n_samples`: pairs drawn per task.
    - `n_sigma`: flag rows with $|z| > n_\sigma$.
    - `key`: a PRNG key; task i draws with `fold_in(key, i)`.

    **Returns:**

    A `ValidationReport`.
    """
    key = check_key(key)
    tasks = default_tasks() if tasks is None else tuple(tasks)
    rows = []
    for i, task in enumerate(tasks):
        x, y = task.sample(n_samples, key=jax.random.fold_in(key, i))
        out = estimator(x, y)
        if isinstance(out, Estimate):
            value, stderr = out.value, out.stderr
            z = out.z_score(task.mutual_information)
        else:
            value, stderr, z = float(out), math.nan, math.nan
        exact = task.mutual_information
        rows.append(ValidationRow(task.name, exact, value, stderr, (value - exact) / exact, z,
                                  bool(math.isfinite(z) and abs(z) > n_sigma)))
    return ValidationReport(tuple(rows), float(n_sigma), int(n_samples))
