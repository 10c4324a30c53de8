r"""A validation harness for mutual-information estimators on oracle tasks whose exact $I(X;Y)$ is known.

In the spirit of bmi (benchmark-mi): each `Task` carries its ground truth. Joint Gaussians give the truth in closed
form (Eq. 49); applying invertible per-component maps to X and Y (e.g. $y \mapsto y^3$, $x \mapsto e^x$) leaves
$I(X;Y)$ unchanged but makes the data non-Gaussian, which is where a Gaussian plug-in estimator fails.
`robustness_tasks()` holds the tasks beyond the Gaussian family (heavy-tailed `StudentT`, bounded `GaussianCopula`,
mixture `MixturePair`), each with its exact truth.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from scipy.special import digamma, gammaln

from gaussian_oracle import Estimate, JointGaussian, check_key

from ._tasks import GaussianCopula, MixturePair
from .estimators._integrators import _check_finite

__all__ = ["Task", "ValidationRow", "ValidationReport", "validate", "default_tasks", "robustness_tasks",
           "gaussian_plugin_mi", "StudentT", "GaussianCopula", "MixturePair"]

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


def _student_t_entropy_excess(dof: float, dim: int) -> float:
    r"""$h(T) - \tfrac12\log|\Sigma|$ of a `dim`-variate Student-t with `dof` degrees of freedom, minus the
    dof-free term $\tfrac d2\log(\nu\pi)$ (which cancels in $I$):
    $\log\Gamma(\tfrac\nu2) - \log\Gamma(\tfrac{\nu+d}2) + \tfrac{\nu+d}2[\psi(\tfrac{\nu+d}2) - \psi(\tfrac\nu2)]$."""
    half = 0.5 * (dof + dim)
    return float(gammaln(0.5 * dof) - gammaln(half) + half * (digamma(half) - digamma(0.5 * dof)))


@dataclasses.dataclass(frozen=True)
class StudentT:
    r"""A heavy-tailed pair: $(X, Y) = (Z_X, Z_Y)/\sqrt{W/\nu}$ with $(Z_X, Z_Y)$ a `JointGaussian`'s pair and
    $W \sim \chi^2_\nu$ shared by both, i.e. a multivariate Student-t with $\nu$ degrees of freedom and the
    Gaussian's covariance as its scale matrix $\Sigma$. No moments of order $\ge \nu$ exist ($\nu = 1$: Cauchy).

    Its MI is exact in closed form (the marginals of a multivariate t are t with the same $\nu$):
    $$I(X;Y) = I_{Gauss}(\Sigma) + g(D_X) + g(D_Y) - g(D_X + D_Y),\quad
      g(d) = \log\Gamma(\tfrac\nu2) - \log\Gamma(\tfrac{\nu+d}2) + \tfrac{\nu+d}2\big[\psi(\tfrac{\nu+d}2) - \psi(\tfrac\nu2)\big],$$
    nats; the excess over the Gaussian term is positive (the shared $W$ makes X and Y dependent even when
    $\Sigma$ is block diagonal). For $\nu \to \infty$ it vanishes.

    **Arguments:**

    - `joint`: the Gaussian whose covariance is the scale matrix.
    - `dof`: degrees of freedom $\nu > 0$.
    """

    joint: JointGaussian
    dof: float

    def __post_init__(self):
        if not (isinstance(self.dof, (int, float)) and math.isfinite(self.dof) and self.dof > 0):
            raise ValueError(f"StudentT.dof must be a finite number > 0; got {self.dof!r}.")

    def __call__(self, n: int, *, key: PRNGKeyArray):
        """`n` pairs (x, y)."""
        k_gauss, k_chi = jax.random.split(key)
        x, y = self.joint.sample(n, key=k_gauss)
        w = 2.0 * jax.random.gamma(k_chi, 0.5 * self.dof, (n, 1), dtype=x.dtype)  # chi^2 with dof degrees
        scale = jnp.sqrt(self.dof / w)
        return x * scale, y * scale

    def mutual_information(self) -> float:
        """The exact $I(X;Y)$ in nats (the closed form above)."""
        dx, dy = self.joint.dim_x, self.joint.dim_y
        g = lambda d: _student_t_entropy_excess(float(self.dof), d)  # noqa: E731
        return float(self.joint.mutual_information()) + g(dx) + g(dy) - g(dx + dy)

    def _log_density(self, z: np.ndarray, cov: np.ndarray) -> np.ndarray:
        d, nu = cov.shape[0], float(self.dof)
        chol = np.linalg.cholesky(cov)
        m = np.sum(np.linalg.solve(chol, z.T) ** 2, axis=0)
        return (gammaln(0.5 * (nu + d)) - gammaln(0.5 * nu) - 0.5 * d * np.log(nu * np.pi)
                - np.sum(np.log(np.diag(chol))) - 0.5 * (nu + d) * np.log1p(m / nu))

    def log_density_ratio(self, x: Float[Array, "n dim_x"], y: Float[Array, "n dim_y"]) -> Float[np.ndarray, " n"]:
        r"""$\log p(x, y) - \log p(x) - \log p(y)$ per pair from the t densities (float64): its mean over samples is a
        Monte Carlo estimate of $I(X;Y)$, independent of the closed form."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        sx, a = np.asarray(self.joint.sigma_x), np.asarray(self.joint.A)
        sy = np.asarray(self.joint.sigma_y)
        cov = np.block([[sx, sx @ a.T], [a @ sx, sy]])
        return (self._log_density(np.concatenate([x, y], axis=1), cov)
                - self._log_density(x, sx) - self._log_density(y, sy))


def robustness_tasks() -> tuple[Task, ...]:
    r"""Oracle tasks beyond the Gaussian family, each with its exact $I(X;Y)$ in nats: where covariance whitening
    and Gaussian plug-ins break. Instances are fixed (seeded), so the truths do not change between runs.

    - heavy tails, `student-t-*`: multivariate Student-t (`StudentT`), truth in closed form;
    - bounded, `bounded-*`: joint Gaussians pushed through the normal CDF per component (`GaussianCopula`, every
      component uniform on (0, 1)), truth the Gaussian's closed form (Eq. 49);
    - mixture, `mixture-*`: (X, Y) jointly a three-component Gaussian mixture (`MixturePair`), one pair or three
      rotated copies, truth by 2-D quadrature (to about 1e-12 nats).

    Every task's sampler has `log_density_ratio(x, y)`, the exact per-pair $\log\frac{p(x,y)}{p(x)p(y)}$, for an
    independent Monte Carlo check of the truth.
    """
    det = lambda dx, dy, se, seed: JointGaussian.determinism(dx, dy, se, key=jax.random.key(seed))  # noqa: E731
    iid = lambda d: JointGaussian(np.eye(d), np.zeros((d, d)), 1.0)  # noqa: E731  Sigma = I: only W couples X, Y
    tasks = []
    for name, joint, dof in (("student-t-dof1-1x1", iid(1), 1.0), ("student-t-dof1-2x2", iid(2), 1.0),
                             ("student-t-dof2-5x3", det(5, 3, 1.0, 2), 2.0),
                             ("student-t-dof3-5x3", det(5, 3, 1.0, 2), 3.0)):
        sampler = StudentT(joint, dof)
        tasks.append(Task(name, sampler, sampler.mutual_information()))
    for name, joint in (("bounded-5x3", det(5, 3, 1.0, 2)), ("bounded-10x5", det(10, 5, 0.3, 3))):
        sampler = GaussianCopula(joint)
        tasks.append(Task(name, sampler, sampler.mutual_information()))
    for name, copies in (("mixture-1x1", 1), ("mixture-3x3", 3)):
        sampler = dataclasses.replace(_MIXTURE, copies=copies)
        tasks.append(Task(name, sampler, sampler.mutual_information()))
    return tuple(tasks)


_MIXTURE = MixturePair(
    weights=(0.5, 0.3, 0.2),
    means=((-1.5, -1.0), (1.0, 1.5), (2.0, -2.0)),
    covs=(((1.0, 0.6), (0.6, 1.0)), ((0.5, -0.3), (-0.3, 0.8)), ((0.3, 0.0), (0.0, 0.3))),
)
"""The mixture of the `mixture-*` tasks: a correlated, an anti-correlated and an isotropic component."""


# ---------------------------------------------------------------------------------------------- baseline
def _wishart_log_det_bias(p: int, n: int) -> float:
    r"""$\mathbb E\log|\hat\Sigma| - \log|\Sigma|$ for the unbiased sample covariance of n Gaussian rows in p dims."""
    dof = n - 1
    return p * math.log(2.0 / dof) + float(np.sum(digamma((dof - np.arange(p)) / 2.0)))


def gaussian_plugin_mi(x: Float[Array, "n dim_x"], y: Float[Array, "n dim_y"], *,
                       key: PRNGKeyArray | None = None) -> Estimate:
    r"""Gaussian (CCA) plug-in $\hat I = \tfrac12\log\frac{|\hat\Sigma_{XX}||\hat\Sigma_{YY}|}{|\hat\Sigma|}$, in nats.

    Exact for Gaussian data up to sampling error: each log-determinant is corrected by its exact Wishart bias
    $p\log\frac{2}{n-1} + \sum_{i<p}\psi(\frac{n-1-i}{2})$, so $\hat I$ is unbiased for Gaussians. The stderr is the
    delta-method value $\sqrt{\sum_i\rho_i^2/n + D_XD_Y/(2n^2)}$ over the sample canonical correlations $\rho_i$
    (the second term is the $\rho = 0$ floor). For non-Gaussian data it estimates the MI of the Gaussian with the
    same covariance, which can be far from $I(X;Y)$: a baseline the validation harness must catch.

    **Arguments:**

    - `x`, `y`: paired samples, one pair per row, finite, with no constant column and no column a linear
      combination of the others (the sample covariance of (x, y) must be positive definite).
    - `key`: unused (the plug-in is deterministic); accepted so that it is an estimator `verify.validate` can call.

    **Returns:**

    An `Estimate` in nats, flagged (`Estimate.flags`) when it is below 0 by more than 2 stderr.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be (n, dim) arrays with the same n; got {x.shape} and {y.shape}.")
    n, dx, dy = x.shape[0], x.shape[1], y.shape[1]
    if n <= dx + dy + 1:
        raise ValueError(f"need more samples than dim_x + dim_y + 1 = {dx + dy + 1}; got {n}.")
    _check_finite("x", x)
    _check_finite("y", y)
    data = np.concatenate([x, y], axis=1)
    joint = np.cov(data.T)
    _check_positive_definite(data, joint, dx)
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
    return Estimate(value=value, stderr=stderr).check_bounds(lower=0.0, name="I (Gaussian plug-in)")


def _check_positive_definite(data: np.ndarray, joint: np.ndarray, dx: int) -> None:
    """One clear error when the sample covariance `joint` of the columns of `data` = (x, y) is singular: a constant
    column, or collinear columns (the correlation matrix's smallest eigenvalue at most 1e-12, rounding level)."""
    names = [f"x[:, {i}]" for i in range(dx)] + [f"y[:, {j}]" for j in range(joint.shape[0] - dx)]
    spread = np.sqrt(np.diag(joint))
    size = np.maximum(np.abs(data.mean(axis=0)), np.finfo(np.float64).tiny)
    constant = [name for name, sd, m in zip(names, spread, size) if sd <= 1e-10 * m]
    if constant:
        raise ValueError(f"the Gaussian plug-in needs every column of x and y to vary; {', '.join(constant)} "
                         f"{'is constant (drop it)' if len(constant) == 1 else 'are constant (drop them)'}.")
    smallest = float(np.linalg.eigvalsh(joint / np.outer(spread, spread))[0])
    if smallest <= 1e-12:
        raise ValueError("the Gaussian plug-in needs a positive-definite sample covariance of (x, y); its correlation "
                         f"matrix is singular (smallest eigenvalue {smallest:.3g}): some columns are collinear (a "
                         "linear combination of the others). Drop the redundant columns.")


# ---------------------------------------------------------------------------------------------- harness
@dataclasses.dataclass(frozen=True)
class ValidationRow:
    """One task's result: exact and estimated MI (nats), stderr, relative error (NaN, or infinite, when the exact MI
    is 0: `within_tolerance` still applies its absolute floor), z-score (NaN without stderr), the wall time of the
    estimator's call in seconds (`wall_s`: fitting included, drawing the pairs not) and the estimate's own `flags`
    (`Estimate.flags`: the bounds it violates; empty for an estimator that returns a float)."""

    task: str
    exact: float
    estimate: float
    stderr: float
    relative_error: float
    z: float
    flagged: bool
    wall_s: float = math.nan
    flags: tuple[str, ...] = ()

    def within_tolerance(self, rel: float = 0.1, nats: float = 0.05) -> bool:
        r"""Whether $|\hat I - I| \le \max(\text{rel}\cdot I, \text{nats})$ (benchmark-mi's score: 10 %, 0.05 nats)."""
        return abs(self.estimate - self.exact) <= max(rel * abs(self.exact), nats)


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

    def within_tolerance(self, rel: float = 0.1, nats: float = 0.05) -> tuple[str, ...]:
        r"""Names of the tasks estimated within $\max(\text{rel}\cdot I, \text{nats})$ of the truth
        (`ValidationRow.within_tolerance`)."""
        return tuple(r.task for r in self.rows if r.within_tolerance(rel, nats))

    def table(self) -> str:
        """A plain-text table of the rows (`off`: more than `n_sigma` stderr from the truth; `miss`: outside
        max(10 %, 0.05 nats); `flags`: the estimate's own flags, each on an indented line below its row)."""
        head = f"{'task':<22} {'exact':>9} {'estimate':>9} {'stderr':>8} {'rel.err':>8} {'z':>8} {'wall s':>7}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            mark = (("  <-- off" if r.flagged else "") + ("" if r.within_tolerance() else "  miss")
                    + (f"  flags: {len(r.flags)}" if r.flags else ""))
            lines.append(f"{r.task:<22} {r.exact:9.4f} {r.estimate:9.4f} {r.stderr:8.4f} "
                         f"{r.relative_error:8.2%} {r.z:8.2f} {r.wall_s:7.1f}{mark}")
            lines.extend(f"    flag: {flag}" for flag in r.flags)
        return "\n".join(lines)

    def to_json(self, path=None) -> str:
        """The report as JSON (NaN and infinity written as null); also written to `path` when given."""
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        payload = {
            "n_sigma": self.n_sigma,
            "n_samples": self.n_samples,
            "units": "nats",
            "rows": [{k: clean(v) for k, v in dataclasses.asdict(r).items()} for r in self.rows],
            "flagged": list(self.flagged),
            "within_10pct_or_0.05_nats": list(self.within_tolerance()),
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
        both = np.concatenate([exact, est])
        lo = 0.5 * (both[both > 0].min() if np.any(both > 0) else 1e-3)  # a task with I = 0 sits on the lower edge
        hi = 2 * max(both.max(), lo)
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, label="y = x")
        for mask, colour, label in ((~flagged, "tab:blue", f"within {self.n_sigma:g} stderr"),
                                    (flagged, "tab:red", f"> {self.n_sigma:g} stderr")):
            if mask.any():
                lower = np.minimum(err[mask], est[mask] - lo * 0.999)
                ax.errorbar(np.maximum(exact[mask], lo), np.maximum(est[mask], lo), yerr=[lower, err[mask]], fmt="o",
                            ms=4, color=colour, capsize=2, label=label)
        for r in self.rows:
            ax.annotate(r.task, (max(r.exact, lo), max(r.estimate, lo)), fontsize=6, xytext=(3, -8),
                        textcoords="offset points")
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="exact I(X;Y) [nats]",
               ylabel="estimate [nats]", title=title)
        ax.legend(loc="upper left", fontsize=8)
        save_figure(fig, path)


def _relative_error(value: float, exact: float) -> float:
    """(value - exact) / exact; for exact = 0 (independent X, Y) infinite with the sign of the value, NaN when the
    value is 0 too."""
    if exact != 0:
        return (value - exact) / exact
    return math.nan if value == 0 else math.copysign(math.inf, value)


def validate(estimator: Callable, tasks=None, *, n_samples: int = 5000, n_sigma: float = 4.0,
             key: PRNGKeyArray) -> ValidationReport:
    r"""Run an MI estimator on oracle tasks and compare with the exact $I(X;Y)$ (nats).

    **Arguments:**

    - `estimator`: `estimator(x, y, *, key)` returning an `Estimate` or a float (a float has no stderr, so it is
      never flagged; its z is NaN); e.g. `verify.MINDE(...)`, `gaussian_plugin_mi`.
    - `tasks`: a sequence of `Task`s; `default_tasks()` when `None`.
    - `n_samples`: pairs drawn per task.
    - `n_sigma`: flag rows with $|z| > n_\sigma$.
    - `key`: a PRNG key; task i splits `fold_in(key, i)` into the key its data are drawn with and the estimator's
      own key.

    **Returns:**

    A `ValidationReport`.
    """
    key = check_key(key)
    tasks = default_tasks() if tasks is None else tuple(tasks)
    rows = []
    for i, task in enumerate(tasks):
        k_data, k_estimator = jax.random.split(jax.random.fold_in(key, i))
        x, y = task.sample(n_samples, key=k_data)
        start = time.perf_counter()
        out = estimator(x, y, key=k_estimator)
        wall = time.perf_counter() - start
        if isinstance(out, Estimate):
            value, stderr, flags = out.value, out.stderr, tuple(out.flags)
            z = out.z_score(task.mutual_information)
        else:
            value, stderr, z, flags = float(out), math.nan, math.nan, ()
        exact = task.mutual_information
        rows.append(ValidationRow(task.name, exact, value, stderr, _relative_error(value, exact), z,
                                  bool(math.isfinite(z) and abs(z) > n_sigma), wall, flags))
    return ValidationReport(tuple(rows), float(n_sigma), int(n_samples))
