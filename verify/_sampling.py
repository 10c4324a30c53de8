r"""Samplers for any model satisfying the protocol: the reverse SDE (Eq. 4) and the guided probability-flow ODE (Eq. 59).

Both run from $s = T$ down to $s = s_{\mathrm{end}}$ and return $\tilde x_{s_{\mathrm{end}}}$; starting from
$x_T \sim p_T$ (close to $p_{eq} = \mathcal N(0, I)$ for a long process) they sample $p_{s_{\mathrm{end}}}$, the data
distribution blurred by the kernel at $s_{\mathrm{end}}$.
"""

from __future__ import annotations

import math
import numbers

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from gaussian_oracle import check_key

from .estimators._integrators import _check_finite

__all__ = ["sample_reverse_sde", "sample_probability_flow"]


def _check(model, x_T, y, s_end):
    """The starting points (a float batch, finite), the conditions (one finite row per point) and `s_end`."""
    x_np = np.asarray(x_T)
    if x_np.ndim < 2:
        raise ValueError(f"x_T must be a batch of starting points, shape (batch, ...); got {x_np.shape}.")
    if not np.issubdtype(x_np.dtype, np.floating):
        raise ValueError(f"x_T must be a float array (e.g. a draw of N(0, I)); got dtype {x_np.dtype}.")
    _check_finite("x_T", x_np)
    x_T = jnp.asarray(x_T)
    if y is not None:
        y_np = np.asarray(y)
        if y_np.ndim < 1 or y_np.shape[0] != x_np.shape[0]:
            raise ValueError(f"y must have one row per starting point; got shape {y_np.shape} for {x_np.shape[0]} "
                             "points.")
        _check_finite("y", y_np)
        y = jnp.asarray(y)
    T = model.sde.T
    if not 0 <= s_end < T:
        raise ValueError(f"s_end must lie in [0, T) = [0, {T}); got {s_end}.")
    return x_T, y


@eqx.filter_jit
def _euler_maruyama(model, x_T, y, s_end, n_steps: int, key):
    sde = model.sde
    h = (sde.T - s_end) / n_steps
    e_batch = jax.vmap(lambda x, s, yy: model(x, s, yy), in_axes=(0, None, 0 if y is not None else None))

    def step(x, inputs):
        k, noise_key = inputs
        s = sde.T - k * h
        noise = jax.random.normal(noise_key, x.shape, x.dtype)
        return sde.reverse_step_mean(x, e_batch(x, s, y), s, h) + jnp.sqrt(sde.beta(s) * h) * noise, None

    ks = jnp.arange(n_steps, dtype=x_T.dtype)
    x, _ = jax.lax.scan(step, x_T, (ks, jax.random.split(key, n_steps)))
    return x


def sample_reverse_sde(model, x_T: Float[Array, "batch *shape"], *, y: Float[Array, "batch dim_y"] | None = None,
                       n_steps: int = 1000, s_end: float = 1e-3, key: PRNGKeyArray) -> Float[Array, "batch *shape"]:
    r"""Integrate the entropy-matching reverse SDE (Eq. 4) by Euler–Maruyama from $s = T$ to $s_{\mathrm{end}}$.

    In reverse time $t = T - s$: $dX_t = [b_+(X_t, s) + \sigma(s)^2 e(X_t, s; y)]\,dt + \sigma(s)\,dB_t$ with
    $b_+ = -\tfrac12\beta x$ and $\sigma^2 = \beta$, i.e. the score-based reverse drift
    $\tfrac12\beta x + \beta\nabla\log p_s$ written with $e = \nabla\log p_s + x$. Uniform steps
    $h = (T - s_{\mathrm{end}})/n$, drift and diffusion evaluated at the start of each step (weak order 1).

    **Arguments:**

    - `model`: any model satisfying the protocol.
    - `x_T`: starting points, one per row (e.g. `jax.random.normal(key, (n, dim_x))`, a draw of $p_{eq}$).
    - `y`: conditioning values, one row per starting point, or `None` for the unconditional model.
    - `n_steps`: number of Euler–Maruyama steps.
    - `s_end`: the forward time at which to stop, $0 \le s_{\mathrm{end}} < T$.
    - `key`: a PRNG key for the Brownian increments.

    **Returns:**

    Samples of $\tilde x_{s_{\mathrm{end}}}$, one per row.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int; got {n_steps!r}.")
    x_T, y = _check(model, x_T, y, s_end)
    return _euler_maruyama(model, x_T, y, float(s_end), n_steps, check_key(key))


def check_guidance_weight(w) -> float:
    """A classifier-free guidance weight: a finite real number (not a bool, a string or an array), as a float."""
    if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w):
        raise ValueError(f"w must be a finite guidance weight (a real number); got {w!r}.")
    return float(w)


class _GuidedFlow(eqx.Module):
    model: eqx.Module
    unconditional: eqx.Module | None
    w: Array | None
    """The guidance weight, None for none. An array, not a float: `_solve_flow` then compiles one program for every
    nonzero weight of a sweep, not one per weight."""

    def __call__(self, s, x, y):
        r"""$dx/ds = -\tfrac{\beta}{2}[(1+w)e(x,s;y) - w\,e(x,s)]$ for a batch of points."""
        sde = self.model.sde
        uncond = self.model if self.unconditional is None else self.unconditional
        if y is None:
            e = jax.vmap(lambda xi: uncond(xi, s, None))(x)
        else:
            e_c = jax.vmap(lambda xi, yi: self.model(xi, s, yi))(x, y)
            if self.w is None:
                e = e_c
            else:
                e_u = jax.vmap(lambda xi: uncond(xi, s, None))(x)
                e = (1.0 + self.w) * e_c - self.w * e_u
        return -0.5 * sde.beta(s) * e


@eqx.filter_jit
def _solve_flow(flow, x_T, y, s_end, solver, controller, dt0, max_steps):
    T = flow.model.sde.T
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(flow), solver, t0=T, t1=s_end, dt0=dt0, y0=x_T, args=y,
        stepsize_controller=controller, max_steps=max_steps, saveat=diffrax.SaveAt(t1=True),
    )
    return sol.ys[0], sol.stats["num_steps"]


def sample_probability_flow(model, x_T: Float[Array, "batch *shape"], *, y: Float[Array, "batch dim_y"] | None = None,
                            w: float = 0.0, s_end: float = 1e-3, unconditional_model=None,
                            solver: diffrax.AbstractSolver = diffrax.Tsit5(),
                            stepsize_controller: diffrax.AbstractStepSizeController = diffrax.PIDController(
                                rtol=1e-6, atol=1e-6),
                            dt0: float | None = None, max_steps: int = 16384) -> Float[Array, "batch *shape"]:
    r"""Integrate the probability-flow ODE with classifier-free guidance (Eq. 59) from $s = T$ to $s_{\mathrm{end}}$.

    With the guided score $(1+w)\nabla\log p_s(x|y) - w\nabla\log p_s(x)$ and $\nabla\log p_s = e - x$ the flow
    $dx/ds = -\tfrac12\beta x - \tfrac12\beta\,\mathrm{score}$ simplifies to
    $$\frac{dx}{ds} = -\frac{\beta(s)}{2}\big[(1+w)\,e(x, s; y) - w\,e(x, s)\big],$$
    integrated backwards in s with diffrax for the whole batch at once (one shared adaptive step). $w = 0$
    is the plain conditional flow, which maps $p_T(\cdot|y)$ exactly onto $p_{s_{\mathrm{end}}}(\cdot|y)$; with
    `y=None` the unconditional flow.

    **Arguments:**

    - `model`: any model satisfying the protocol.
    - `x_T`: starting points, one per row.
    - `y`: conditioning values, one row per starting point, or `None`.
    - `w`: guidance weight ($w = 0$: no guidance); needs `y` when nonzero.
    - `s_end`: the forward time at which to stop.
    - `unconditional_model`: a separate unconditional model for the $-w\,e(x, s)$ term and, with `y=None`, for the
      whole (unconditional) flow; else `model(x, s, None)`.
    - `solver`, `stepsize_controller`, `dt0`, `max_steps`: passed to `diffrax.diffeqsolve` (`dt0` defaults to
      $-(T - s_{\mathrm{end}})/100$; it must be negative because s decreases).

    **Returns:**

    Samples of $\tilde x_{s_{\mathrm{end}}}$, one per row.
    """
    x_T, y = _check(model, x_T, y, s_end)
    check_guidance_weight(w)
    if y is None and w != 0:
        raise ValueError("guidance weight w != 0 needs y.")
    if dt0 is None:
        dt0 = -(model.sde.T - s_end) / 100
    flow = _GuidedFlow(model, unconditional_model, None if w == 0 else jnp.asarray(w, x_T.dtype))
    x, _ = _solve_flow(flow, x_T, y, float(s_end), solver, stepsize_controller, dt0, max_steps)
    return x
