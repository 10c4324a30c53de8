r"""Classifier-free guidance for the joint Gaussian: the guided probability-flow ODE (Eq. 59), exactly.

For $Y = AX + \varepsilon$ both scores are linear in $x$ (Eq. 58),

$$\nabla\log p_s(x|y) = -C_s^{-1}(x - \sqrt{\alpha}\,My),\qquad \nabla\log p_s(x) = -P_s^{-1}x,$$

with $C_s = \alpha\Sigma_{X|Y} + (1-\alpha)I$, $P_s = \alpha\Sigma_X + (1-\alpha)I$, $M = \Sigma_{XY}\Sigma_Y^{-1}$ and
$\alpha = \alpha(s)$. The guided score of Eq. (15), $(1+w)\nabla\log p_s(x|y) - w\nabla\log p_s(x)$, put into the
probability-flow ODE $dx/ds = -\tfrac{\beta}{2}(x + \text{score})$ (Eq. 59 in forward time) gives the linear ODE

$$\frac{dx}{ds} = G(s)x + h(s)y,\qquad G = \tfrac{\beta}{2}\big[(1+w)C_s^{-1} - wP_s^{-1} - I\big],\qquad
h = -\tfrac{\beta}{2}(1+w)\sqrt{\alpha}\,C_s^{-1}M.$$

Its solution from $s_{end}$ up to $T$ is $x_T = \mathcal A x_{s_{end}} + \mathcal B y$ ($\mathcal A' = G\mathcal A$,
$\mathcal B' = G\mathcal B + h$, $\mathcal A(s_{end}) = I$, $\mathcal B(s_{end}) = 0$), so the sampler, which runs it
backwards from $x_T$, returns $x_{s_{end}} = \Phi x_T + \Psi y$ with $\Phi = \mathcal A^{-1}$,
$\Psi = -\mathcal A^{-1}\mathcal B$. From $x_T = B_0y + S_0^{1/2}z$ ($B_0 = 0$, $S_0 = I$ for the usual
$\mathcal N(0, I)$ start) the samples are $X_{CFG} = \Phi(Ky + S_0^{1/2}z)$ with $K = B_0 - \mathcal B$, hence

$$I(X_{CFG}; Y) = \tfrac12\log\det\big(\Phi\Phi^\top + \Psi\Sigma_Y\Psi^\top\big) - \tfrac12\log\det\big(\Phi\Phi^\top\big)
= \tfrac12\log\det\big(I + R_Y^\top K^\top S_0^{-1}KR_Y\big),\qquad \Sigma_Y = R_YR_Y^\top.$$

Guidance makes this large and badly conditioned: the noise directions contract by roughly
$(\kappa_i/\lambda_i)^{w/2}$, so at $w = 20$ the singular values of $KR_Y$ span many decades and a dense
$\Phi$ or $K$ loses the small ones to the solver's (elementwise) error control. The information is therefore
integrated by continuous QR, as for Lyapunov exponents: the $(D_X + D_Y) \times D_Y$ matrix
$\tilde M = [\mathcal B; I]$ obeys $\tilde M' = F\tilde M$ with $F = \begin{pmatrix}G & h\\ 0 & 0\end{pmatrix}$; writing
$\tilde M = QR$ with orthonormal $Q$ and $R_{ii} = e^{\rho_i}$,

$$Q' = FQ - QN + Q(N_{<} - N_{<}^\top),\qquad \rho_i' = N_{ii},\qquad N = Q^\top FQ,$$

($N_<$ the strictly lower triangle) and $I = \tfrac12\log\det\Sigma_Y + \sum_i\rho_i + \tfrac12\log\det(Q^\top WQ)$ with
$W = E^\top\mathrm{diag}(S_0^{-1}, \Sigma_Y^{-1})E$, $E = \begin{pmatrix}I & -B_0\\ 0 & I\end{pmatrix}$. Every state variable
stays of order one (the growth is in $\rho$, additively), so a relative tolerance holds uniformly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._checks import as_float_array, positive_int, positive_scalar
from ._keys import check_key
from ._sde import VPSDE
from ._precision import to_numpy64


if TYPE_CHECKING:
    from ._joint import JointGaussian


# ---------------------------------------------------------------------------------------------- validation
def _check_joint(joint) -> None:
    from ._joint import JointGaussian  # a module-level import would be circular

    if not isinstance(joint, JointGaussian):
        raise ValueError(f"joint must be a gaussian_oracle.JointGaussian (the exact guided flow is that of the linear "
                         f"Gaussian Y = AX + eps); got {type(joint).__name__}.")


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def _check_w(w) -> np.ndarray:
    arr = as_float_array(w, "w")
    if arr.ndim > 1:
        raise ValueError(f"w must be a scalar or a 1-D array of guidance strengths; got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError("w must hold at least one guidance strength; got an empty array.")
    return arr


def _check_s_end(joint: JointGaussian, s_end) -> float:
    arr = as_float_array(s_end, "s_end")
    if arr.ndim != 0:
        raise ValueError(f"s_end must be a scalar time; got shape {arr.shape}.")
    if not 0 < arr < joint.sde.T:
        raise ValueError(f"s_end must lie in (0, T) = (0, {joint.sde.T}); got {float(arr)}.")
    return float(arr)


def _check_tolerances(rtol, atol, max_steps) -> tuple[float, float, int]:
    return positive_scalar(rtol, "rtol"), positive_scalar(atol, "atol"), positive_int(max_steps, "max_steps")


# ---------------------------------------------------------------------------------------------- the linear flow
class _Problem(eqx.Module):
    """What the guided flow needs from a `JointGaussian`: its spectra and gain as float64 arrays, and its process.

    The arrays are traced under jit and the `VPSDE` (Python floats) is static, so a new instance, `s_end` or
    tolerance reuses the compiled solve; a new schedule compiles once more.
    """

    evecs_x: Float[Array, "dim_x dim_x"]
    evals_x: Float[Array, " dim_x"]
    evecs_c: Float[Array, "dim_x dim_x"]
    evals_c: Float[Array, " dim_x"]
    gain: Float[Array, "dim_x dim_y"]
    sde: VPSDE

    @classmethod
    def of(cls, joint: JointGaussian) -> _Problem:
        f64 = lambda a: jnp.asarray(a, dtype=jnp.float64)  # noqa: E731
        return cls(f64(joint._evecs_x), f64(joint._evals_x), f64(joint._evecs_c), f64(joint._evals_c),
                   f64(joint._gain), joint.sde)


def _coefficients(problem: _Problem, w, s):
    r"""$G(s)$ and $h(s)$ of $dx/ds = G x + h y$ for the guided probability-flow ODE."""
    alpha, beta = problem.sde.alpha(s), problem.sde.beta(s)
    c = 1.0 + alpha * (problem.evals_c - 1.0)
    p = 1.0 + alpha * (problem.evals_x - 1.0)
    c_inv = (problem.evecs_c / c) @ problem.evecs_c.T
    p_inv = (problem.evecs_x / p) @ problem.evecs_x.T
    eye = jnp.eye(c.shape[0], dtype=c_inv.dtype)
    g = 0.5 * beta * ((1.0 + w) * c_inv - w * p_inv - eye)
    h = -0.5 * beta * (1.0 + w) * jnp.sqrt(alpha) * (c_inv @ problem.gain)
    return g, h


def _dense_field(s, state, args):
    r"""$\mathcal A' = G\mathcal A$, $\mathcal B' = G\mathcal B + h$."""
    problem, w = args
    a, b = state
    g, h = _coefficients(problem, w, s)
    return g @ a, g @ b + h


def _qr_field(s, state, args):
    r"""Continuous QR of $\tilde M' = F\tilde M$: $Q' = FQ - QN + Q(N_< - N_<^\top)$, $\rho' = \mathrm{diag}\,N$."""
    problem, w = args
    q, _ = state
    dim_x = problem.gain.shape[0]
    g, h = _coefficients(problem, w, s)
    fq = jnp.concatenate([g @ q[:dim_x] + h @ q[dim_x:], jnp.zeros_like(q[dim_x:])])
    n = q.T @ fq
    lower = jnp.tril(n, -1)
    return fq - q @ n + q @ (lower - lower.T), jnp.diagonal(n)


def _initial_state(field, dim_x: int, dim_y: int):
    if field is _dense_field:
        return jnp.eye(dim_x), jnp.zeros((dim_x, dim_y))
    return jnp.concatenate([jnp.zeros((dim_x, dim_y)), jnp.eye(dim_y)]), jnp.zeros(dim_y)


@eqx.filter_jit
def _integrate(field, problem: _Problem, ws: Float[Array, " n_w"], s_end: Float[Array, ""],
               solver: diffrax.AbstractSolver, rtol: Float[Array, ""], atol: Float[Array, ""], max_steps: int):
    """Integrate `field` from `s_end` up to T for every `w` in `ws` (vmapped); returns the final state and steps."""
    y0 = _initial_state(field, *problem.gain.shape)

    def one(w):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field), solver, t0=s_end, t1=problem.sde.T, dt0=None, y0=y0, args=(problem, w),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps,
            saveat=diffrax.SaveAt(t1=True),
        )
        return jax.tree.map(lambda leaf: leaf[0], sol.ys), sol.stats["num_steps"]

    return jax.vmap(one)(ws)


def _start(joint: JointGaussian, exact_start: bool):
    r"""$(B_0, S_0)$ of $x_T = B_0y + S_0^{1/2}z$: $(0, I)$, or the exact $p_T(x|y)$ = $(\sqrt{\alpha_T}M, C_T)$."""
    if not exact_start:
        return np.zeros_like(joint._gain), np.eye(joint.dim_x)
    sde = joint.sde
    with jax.enable_x64(True):
        alpha_t = float(sde.alpha(np.float64(sde.T)))
    c_t = alpha_t * joint.sigma_x_given_y + (1.0 - alpha_t) * np.eye(joint.dim_x)
    return np.sqrt(alpha_t) * joint._gain, c_t


def _information(q, rho, gain_start, cov_start, sigma_y):
    r"""$\tfrac12\log\det\Sigma_Y + \sum_i\rho_i + \tfrac12\log\det(Q^\top WQ)$ (module docstring)."""
    dim_x = gain_start.shape[0]
    eq = jnp.concatenate([q[:dim_x] - gain_start @ q[dim_x:], q[dim_x:]])
    weighted = jnp.concatenate([jnp.linalg.solve(cov_start, eq[:dim_x]), jnp.linalg.solve(sigma_y, eq[dim_x:])])
    return 0.5 * jnp.linalg.slogdet(sigma_y)[1] + jnp.sum(rho) + 0.5 * jnp.linalg.slogdet(eq.T @ weighted)[1]


def _solve(field, joint, w, s_end, solver, rtol, atol, max_steps):
    ws = _check_w(w)
    s_end = _check_s_end(joint, s_end)
    rtol, atol, max_steps = _check_tolerances(rtol, atol, max_steps)
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"solver must be a diffrax solver instance such as diffrax.Tsit5(); got {solver!r}.")
    f64 = lambda a: jnp.asarray(a, dtype=jnp.float64)  # noqa: E731
    state, steps = _integrate(field, _Problem.of(joint), jnp.atleast_1d(f64(ws)), f64(s_end), solver, f64(rtol),
                              f64(atol), max_steps)
    return ws, state, steps


# ---------------------------------------------------------------------------------------------- public API
def cfg_flow_map(
    joint: JointGaussian,
    w: float | Float[ArrayLike, " n_w"],
    s_end: float = 1e-3,
    *,
    solver: diffrax.AbstractSolver = diffrax.Dopri8(),
    rtol: float = 1e-10,
    atol: float = 1e-10,
    max_steps: int = 2**16,
) -> tuple[Float[np.ndarray, "*n_w dim_x dim_x"], Float[np.ndarray, "*n_w dim_x dim_y"]]:
    r"""The linear map $x(s_{end}) = \Phi x_T + \Psi y$ of the guided probability-flow ODE (Eqs. 15, 59).

    Integrates $\mathcal A' = G\mathcal A$, $\mathcal B' = G\mathcal B + h$ from $\mathcal A = I$, $\mathcal B = 0$ at
    `s_end` up to T (the non-stiff direction: the guided flow expands there), with
    $G = \tfrac{\beta}{2}[(1+w)C_s^{-1} - wP_s^{-1} - I]$ and $h = -\tfrac{\beta}{2}(1+w)\sqrt{\alpha}C_s^{-1}M$, and
    returns $\Phi = \mathcal A^{-1}$, $\Psi = -\mathcal A^{-1}\mathcal B$ (module docstring). Always float64,
    whatever the caller's JAX mode; one compiled solve serves every call with the same shapes, and an array
    `w` is solved in one vmapped call. For large `w` $\Phi$ is badly conditioned (that is the physics: guidance
    collapses the noise directions); `cfg_mutual_information` does not go through it.

    **Arguments:**

    - `joint`: the `JointGaussian`.
    - `w`: the guidance strength, a finite real scalar or a 1-D array of them (`w = 0` is unguided; any real
      value is allowed, negative ones weaken the conditioning).
    - `s_end`: the forward time at which the reverse flow stops, in $(0, T)$.
    - `solver`: a diffrax solver. Integrated from `s_end` upwards the system only expands or decays no
      faster than $\beta/2$, so it is not stiff and explicit solvers are the right choice: on
      $D_X = 25$, $D_Y = 15$ at rtol = atol = 1e-10, `Dopri8()` needs 132 steps and `Tsit5()` 414 for
      the same accuracy, while the implicit `Kvaerno5()` (dense Jacobian per step) is orders of magnitude slower.
    - `rtol`, `atol`: the PID step-size controller's tolerances.
    - `max_steps`: the solver's step budget.

    **Returns:**

    `(Phi, Psi)` as NumPy float64, with a leading axis when `w` is an array.
    """
    _check_joint(joint)
    with jax.enable_x64(True):
        ws, (a, b), _ = _solve(_dense_field, joint, w, s_end, solver, rtol, atol, max_steps)
        phi = jnp.linalg.inv(a)
        phi, psi = to_numpy64((phi, -phi @ b))
    return (phi, psi) if ws.ndim else (phi[0], psi[0])


def _sample_map(joint: JointGaussian, w, s_end, exact_start: bool, options: dict):
    r"""$(\Phi, L, S_0)$ of the guided samples $X_{CFG} = \Phi S_0^{1/2}z + Ly$, $L = \Phi B_0 + \Psi$."""
    phi, psi = cfg_flow_map(joint, w, s_end, **options)
    gain_start, cov_start = _start(joint, exact_start)
    return phi, phi @ gain_start + psi, cov_start


def cfg_covariance(
    joint: JointGaussian, w: float, s_end: float = 1e-3, *, exact_start: bool = False, **options
) -> Float[np.ndarray, "dim_x+dim_y dim_x+dim_y"]:
    r"""The covariance of $(X_{CFG}, Y)$ for the guided flow of Eq. (59) stopped at `s_end`.

    With $x_T = B_0y + S_0^{1/2}z$ the samples are $X_{CFG} = \Phi S_0^{1/2}z + Ly$, $L = \Phi B_0 + \Psi$, so
    $\mathrm{Cov}(X_{CFG}) = \Phi S_0\Phi^\top + L\Sigma_Y L^\top$ and $\mathrm{Cov}(X_{CFG}, Y) = L\Sigma_Y$; from
    $x_T \sim \mathcal N(0, I)$ the first block is $\Phi\Phi^\top + \Psi\Sigma_Y\Psi^\top$.

    **Arguments:**

    - `joint`, `w`, `s_end`: as for `cfg_mutual_information` (scalar `w` only).
    - `exact_start`: start from the exact $p_T(x|y)$ instead of $\mathcal N(0, I)$.
    - `**options`: `solver`, `rtol`, `atol`, `max_steps` of `cfg_flow_map`.

    **Returns:**

    The symmetric (dim_x + dim_y, dim_x + dim_y) covariance, x block first, as NumPy float64.
    """
    _check_joint(joint)
    exact_start = _check_flag(exact_start, "exact_start")
    if np.ndim(w) != 0:
        raise ValueError(f"cfg_covariance takes a scalar w; got shape {np.shape(w)}.")
    phi, link, cov_start = _sample_map(joint, w, s_end, exact_start, options)
    sigma_y = joint.sigma_y
    xx = phi @ cov_start @ phi.T + link @ sigma_y @ link.T
    xy = link @ sigma_y
    cov = np.block([[xx, xy], [xy.T, sigma_y]])
    return 0.5 * (cov + cov.T)


def cfg_mutual_information(
    joint: JointGaussian,
    w: float | Float[ArrayLike, " n_w"],
    s_end: float = 1e-3,
    *,
    exact_start: bool = False,
    solver: diffrax.AbstractSolver = diffrax.Dopri8(),
    rtol: float = 1e-10,
    atol: float = 1e-10,
    max_steps: int = 2**16,
) -> float | Float[np.ndarray, " n_w"]:
    r"""Exact $I(X_{CFG}; Y)$, in nats, of the guided probability-flow ODE (Eq. 59) stopped at `s_end`.

    $I = \tfrac12\log\det(\Phi\Phi^\top + \Psi\Sigma_Y\Psi^\top) - \tfrac12\log\det(\Phi\Phi^\top)$ for the flow map
    of `cfg_flow_map`, integrated by continuous QR so that it stays accurate when guidance makes it hundreds of
    nats (module docstring). No sampling: the only error is the ODE solver's, controlled by `rtol`/`atol`
    (relative error about 1e-9 at the defaults).

    At `w = 0` the flow is the exact probability-flow ODE, so with `exact_start=True` (start from
    $p_T(x|y) = \mathcal N(\sqrt{\alpha_T}My, C_T)$) it returns $I(X_{s_{end}}; Y) = I(X;Y) - $
    `joint.mutual_information_curve(s_end)` to the solver's tolerance. Two truncations separate the default
    result from $I(X;Y)$: the stop at `s_end` (for the determinism instance $D_X = 25$, $D_Y = 15$,
    $\sigma_\varepsilon = 1$, key 0 at $s_{end} = 10^{-3}$: $I(X;Y) - I(X_{s_{end}};Y) = 0.0219$ nats of 19.585), and
    the start from $\mathcal N(0, I)$ instead of $p_T$, an error of order $\sqrt{\alpha_T}$ that comes from the
    missing mean $\sqrt{\alpha_T}My$ ($\alpha_T = 4.3\times10^{-5}$ for $\beta_{\max} = 20$; $-0.024$ nats on that
    instance). Both are measured in `tests/test_cfg.py`.

    **Arguments:**

    - `joint`: the `JointGaussian`.
    - `w`: the guidance strength, a finite real scalar or a 1-D array (solved in one vmapped call).
    - `s_end`: the forward time at which the reverse flow stops, in $(0, T)$.
    - `exact_start`: start from the exact $p_T(x|y)$ instead of $\mathcal N(0, I)$.
    - `solver`, `rtol`, `atol`, `max_steps`: as for `cfg_flow_map`.

    **Returns:**

    $I(X_{CFG}; Y)$ in nats as NumPy float64: a scalar, or one value per entry of an array `w`.
    """
    _check_joint(joint)
    exact_start = _check_flag(exact_start, "exact_start")
    ws = _check_w(w)
    gain_start, cov_start = _start(joint, exact_start)
    with jax.enable_x64(True):
        _, (q, rho), _ = _solve(_qr_field, joint, ws, s_end, solver, rtol, atol, max_steps)
        info = jax.vmap(_information, in_axes=(0, 0, None, None, None))(
            q, rho, jnp.asarray(gain_start), jnp.asarray(cov_start), jnp.asarray(joint.sigma_y)
        )
        info = to_numpy64(info)
    return info if ws.ndim else info[0]


def cfg_mutual_information_curve(
    joint: JointGaussian, w: float, s: Float[ArrayLike, "*s"], s_end: float = 1e-3, *, exact_start: bool = False,
    **options,
) -> Float[np.ndarray, "*s"]:
    r"""$I(X_{CFG};Y) - I(X_{CFG,s};Y)$: the information about Y that the forward process erases from the guided
    samples by time s, in nats, with $X_{CFG,s} = \sqrt{\alpha(s)}X_{CFG} + \sqrt{1-\alpha(s)}\,\varepsilon$.

    The guided samples are the data a model trained on CFG output sees, so this is their
    `JointGaussian.mutual_information_curve`: any estimator that integrates the MINDE rate over $[s_{\min}, T]$
    targets `curve(T) - curve(s_min)`, whatever the information below $s_{\min}$. Strong guidance puts much of
    $I(X_{CFG};Y)$ there: it contracts the within-condition covariance to eigenvalues far below any noise level a
    float32 network resolves (on `JointGaussian.determinism(25, 15, 1, key=jax.random.key(0))` at $w = 6$ down to
    $5\times10^{-15}$, and the window $[10^{-5}T, T]$ holds 89.4 of the 137.8 nats).

    With $X_{CFG} = F_c z + Ly$ ($F_c = \Phi S_0^{1/2}$, $L = \Phi B_0 + \Psi$, see `cfg_covariance`) the
    conditional covariance is $F_cF_c^\top$ and the marginal one $[F_c, LR_Y][F_c, LR_Y]^\top$; with $\kappa_i$,
    $\lambda_i$ their eigenvalues (squared singular values of the factors, so no cancellation) and $v = 1 - \alpha(s)$,
    $$\text{curve}(s) = \tfrac12\sum_i\log\big(1 + v(1/\kappa_i - 1)\big) - \tfrac12\sum_i\log\big(1 + v(1/\lambda_i - 1)\big),$$
    the form of `JointGaussian.mutual_information_curve`. The flow map is dense, so at large `w` and $s \to 0$ the
    smallest $\kappa_i$ carry the solver's absolute error; `cfg_mutual_information` (continuous QR) is the
    accurate value of $I(X_{CFG};Y)$ itself. Differences `curve(s1) - curve(s2)` at noise levels $v \gg$ that error
    do not depend on it.

    **Arguments:**

    - `joint`, `w`, `s_end`, `exact_start`: as for `cfg_covariance` (scalar `w` only).
    - `s`: forward time(s) in $[0, T]$, any shape.
    - `**options`: `solver`, `rtol`, `atol`, `max_steps` of `cfg_flow_map`.

    **Returns:**

    The curve at every `s`, as NumPy float64 of the shape of `s`.
    """
    _check_joint(joint)
    exact_start = _check_flag(exact_start, "exact_start")
    if np.ndim(w) != 0:
        raise ValueError(f"cfg_mutual_information_curve takes a scalar w; got shape {np.shape(w)}.")
    from ._joint import _log1p_shrink  # the joint's curve formula (a module-level import would be circular)

    times = joint.sde.check_times(s)
    phi, link, cov_start = _sample_map(joint, w, s_end, exact_start, options)
    conditional = phi @ np.linalg.cholesky(cov_start)
    marginal = np.concatenate([conditional, link @ np.linalg.cholesky(joint.sigma_y)], axis=1)
    kappa = np.linalg.svd(conditional, compute_uv=False) ** 2
    lam = np.linalg.svd(marginal, compute_uv=False) ** 2
    with jax.enable_x64(True):
        v = joint.sde.var(jnp.asarray(times, jnp.float64))
        return to_numpy64(0.5 * (_log1p_shrink(v, jnp.asarray(kappa)) - _log1p_shrink(v, jnp.asarray(lam))))


# ---------------------------------------------------------------------------------------------- sampling
def cfg_sample(
    joint: JointGaussian,
    y: Float[ArrayLike, "batch dim_y"],
    w: float,
    *,
    key: PRNGKeyArray,
    s_end: float = 1e-3,
    **options,
) -> Float[Array, "batch dim_x"]:
    r"""Exact samples of the guided probability-flow ODE (Eq. 59), one per row of `y`.

    Draws $x_T \sim \mathcal N(0, I)$ as `jax.random.normal(key, (batch, dim_x))` and maps it through the exact flow
    map of `cfg_flow_map`: $x(s_{end}) = \Phi x_T + \Psi y$. No sampler error beyond the flow map's solver
    tolerance (relative 1e-10 by default); the numerical sampler for any model is `verify.sample_probability_flow`,
    which reproduces this map with `joint.model()` (tested). Returned in the caller's default float dtype.

    **Arguments:**

    - `joint`: the `JointGaussian`.
    - `y`: the conditions, one per sample.
    - `w`: the guidance strength, a finite real scalar.
    - `key`: a JAX PRNG key for $x_T$.
    - `s_end`: the forward time at which the reverse flow stops, in $(0, T)$.
    - `**options`: `solver`, `rtol`, `atol`, `max_steps` of `cfg_flow_map`.

    **Returns:**

    $x(s_{end})$ for every row of `y`.
    """
    _check_joint(joint)
    key = check_key(key)
    w_arr = _check_w(w)
    if w_arr.ndim != 0:
        raise ValueError(f"cfg_sample takes a scalar w; got shape {w_arr.shape}.")
    y_np = as_float_array(y, "y", ndim=2)
    if y_np.shape[1] != joint.dim_y or y_np.shape[0] < 1:
        raise ValueError(f"y must have shape (batch, {joint.dim_y}) with batch >= 1; got {y_np.shape}.")
    phi, psi = cfg_flow_map(joint, float(w_arr), s_end, **options)
    dtype = jnp.asarray(0.0, dtype=float).dtype
    x_t = jax.random.normal(key, (y_np.shape[0], joint.dim_x), dtype)
    return jnp.asarray(np.asarray(x_t, np.float64) @ phi.T + y_np @ psi.T, dtype)
