"""The variance-preserving forward process with a linear noise schedule."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray


class VPSDE(eqx.Module):
    r"""Variance-preserving SDE $d\tilde x_s = -\tfrac12\beta(s)\tilde x_s\,ds + \sqrt{\beta(s)}\,dB_s$.

    Linear schedule $\beta(s) = \beta_{\min} + (\beta_{\max} - \beta_{\min})\,s/T$. The transition kernel
    is $p(\tilde x_s | x) = \mathcal N(\mu(s)x, (1 - \mu(s)^2) I)$ with
    $\mu(s) = \exp(-\tfrac12\int_0^s\beta)$, and the quasi-invariant state is $p_{eq} = \mathcal N(0, I)$.
    In the paper's notation (Eq. 54) $\alpha(s) = \mu(s)^2$. The schedule's functions (`beta`, `int_beta`, `mu`,
    `alpha`, `var`, `sigma`, `log_snr`) are vectorised in `s`; `drift`, `reverse_step_mean` and `perturb` act on data
    `x` and take an `s` that broadcasts to x's shape without enlarging it (a scalar, or one time per row as an array
    of shape (n, 1, ...)), and raise a `ValueError` otherwise: an (n,) time against (n, 1) data would silently give
    an (n, n) result.

    Forward times are $0 \le s \le T$: `check_time` states the rule and every protocol model enforces it with it.
    The formulas are those of that domain only: outside it they extrapolate ($\int_0^s\beta$ is a quadratic, so
    $s = -1$ reads like $s \approx 1$, and `var` is negative for $s < 0$). The schedule's functions do not check
    it, since they run inside jitted losses and estimators; `drift`, `reverse_step_mean` and `perturb` check
    concrete times (a Python number or an array outside a trace) and leave traced ones to the caller.

    **Arguments:**

    - `beta_min`, `beta_max`: the schedule's end points, $0 < \beta_{\min} \le \beta_{\max}$.
    - `T`: the final time.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0

    def __check_init__(self):
        for name in ("beta_min", "beta_max", "T"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
                raise ValueError(f"VPSDE.{name} must be a finite Python number; got {value!r}.")
        if not 0 < self.beta_min <= self.beta_max:
            raise ValueError(
                f"VPSDE needs 0 < beta_min <= beta_max; got beta_min={self.beta_min}, beta_max={self.beta_max}."
            )
        if not self.T > 0:
            raise ValueError(f"VPSDE.T must be > 0; got {self.T}.")

    def beta(self, s: ArrayLike) -> Float[Array, "*s"]:
        """$\\beta(s)$, the noise rate."""
        return self.beta_min + (self.beta_max - self.beta_min) * jnp.asarray(s) / self.T

    def int_beta(self, s: ArrayLike) -> Float[Array, "*s"]:
        r"""$\int_0^s \beta = \beta_{\min}s + (\beta_{\max} - \beta_{\min})s^2/(2T)$."""
        s = jnp.asarray(s)
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2 / self.T

    def mu(self, s: ArrayLike) -> Float[Array, "*s"]:
        r"""Mean coefficient $\mu(s) = e^{-\frac12\int_0^s\beta}$."""
        return jnp.exp(-0.5 * self.int_beta(s))

    def alpha(self, s: ArrayLike) -> Float[Array, "*s"]:
        r"""$\alpha(s) = \mu(s)^2$ (Eq. 54)."""
        return jnp.exp(-self.int_beta(s))

    def var(self, s: ArrayLike) -> Float[Array, "*s"]:
        r"""Kernel variance $1 - \mu(s)^2$, computed as `-expm1` so it stays accurate near $s = 0$."""
        return -jnp.expm1(-self.int_beta(s))

    def sigma(self, s: ArrayLike) -> Float[Array, "*s"]:
        r"""Diffusion coefficient $\sigma(s) = \sqrt{\beta(s)}$."""
        return jnp.sqrt(self.beta(s))

    def drift(self, x: Float[Array, "*shape"], s: ArrayLike) -> Float[Array, "*shape"]:
        r"""Forward drift $b_+(x, s) = -\tfrac12\beta(s)x$, for $s$ that broadcasts to x's shape (class docstring)."""
        s = self._check_data_time(jnp.shape(x), s)
        return -0.5 * self.beta(s) * x

    def log_snr(self, s: ArrayLike) -> Float[Array, "*s"]:
        r"""The log signal-to-noise ratio $\rho(s) = \log(\alpha/(1-\alpha)) = -\int_0^s\beta - \log(1 - \alpha)$
        (the noise variance floored at the smallest normal number, so $\rho(0)$ is large and finite)."""
        var = self.var(s)
        return -self.int_beta(s) - jnp.log(jnp.maximum(var, jnp.finfo(jnp.result_type(var)).tiny))

    def reverse_step_mean(self, x: Float[Array, "*shape"], e: Float[Array, "*shape"], s: ArrayLike, h: ArrayLike
                          ) -> Float[Array, "*shape"]:
        r"""Mean of one Euler–Maruyama step of the reverse SDE (Eq. 4) from time s down to s - h, given $e(x, s)$:
        $x + h(-\tfrac12\beta(s)x + \beta(s)e)$; the step's variance is $\beta(s)h$ per coordinate.

        `s` and `h` must broadcast to the shape of `x` and `e` broadcast together without enlarging it (class
        docstring); a concrete `s` must lie in $[0, T]$."""
        shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(e))
        s = self._check_data_time(shape, s)
        self._check_data_time(shape, h, "h", check_range=False)
        beta = self.beta(s)
        return x + h * (-0.5 * beta * x + beta * e)

    def grad_log_peq(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        r"""$\nabla\log p_{eq}(x) = -x$ for $p_{eq} = \mathcal N(0, I)$."""
        return -jnp.asarray(x)

    def perturb(self, x: Float[Array, "*shape"], s: ArrayLike, *, key: PRNGKeyArray) -> Float[Array, "*shape"]:
        r"""Draw $\tilde x_s \sim \mathcal N(\mu(s)x, (1-\mu(s)^2)I)$ for one sample `x` (vmap for batches).

        `s` must broadcast to x's shape without enlarging it (class docstring), and lie in $[0, T]$: a concrete `s`
        outside it raises a `ValueError`; a traced one is not checked here (this runs inside jitted losses and
        estimators), so outside $[0, T]$ it extrapolates silently, or gives NaN for $s < 0$."""
        x = jnp.asarray(x)
        s = self._check_data_time(x.shape, s)
        noise = jax.random.normal(key, x.shape, x.dtype)
        return self.mu(s) * x + jnp.sqrt(self.var(s)) * noise

    def _check_data_time(self, shape: tuple[int, ...], s, name: str = "s", *, check_range: bool = True):
        """`s` (or a step `h`) against data of `shape`: its shape must broadcast to `shape` without enlarging it, a
        check on static shapes (free under jit); a concrete time must also satisfy `check_time`. Returns `s`."""
        s_shape = jnp.shape(s)
        try:
            fits = jnp.broadcast_shapes(s_shape, tuple(shape)) == tuple(shape)
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{name} must broadcast to the data's shape {tuple(shape)} without enlarging it (a scalar, or one "
                f"value per row with trailing axes of size 1); got shape {s_shape}."
            )
        if check_range and not isinstance(s, jax.core.Tracer):
            self.check_time(s, name)
        return s

    def check_time(self, s: Float[ArrayLike, "*s"], name: str = "s") -> Float[ArrayLike, "*s"]:
        r"""Check that every time in `s` lies in $[0, T]$ and return `s`: the one time rule of every protocol model.

        The rule: a forward time is a real number $0 \le s \le T$; anything else, NaN included, is refused, never
        clipped or extrapolated. Every model of the protocol (the oracle's `JointGaussianModel` and
        `GaussianMixtureModel`, `learned.EntropyMLP`, `learned.EntropyUNet`, `learned.Preconditioned`) calls this
        method on its `s`, and the closed-form curves use it through `check_times`.

        - Concrete `s` (Python numbers, NumPy arrays, JAX arrays outside a trace) raises a `ValueError` at once.
        - Traced `s` (inside `jax.jit`, `jax.vmap`, `jax.grad`, `jax.lax.scan`) is checked when the computation runs,
          by `eqx.error_if`, which raises an `EquinoxRuntimeError` carrying the same rule; the returned value carries
          the check, so use it in place of `s`.

        The comparison is made in the dtype of `s`, with $T$ rounded to it: a float32 grid that ends at
        `float32(T)` is inside. Integer times are accepted; booleans, complex numbers and non-numeric data are not.

        **Arguments:**

        - `s`: a time or an array of times (any shape).
        - `name`: the argument's name in error messages.

        **Returns:**

        `s` itself when concrete; for traced input, the same value with the runtime check attached.
        """
        dtype = jnp.result_type(s) if isinstance(s, jax.core.Tracer) else np.asarray(s).dtype
        is_float = jnp.issubdtype(dtype, jnp.floating)
        if dtype == bool or not (is_float or jnp.issubdtype(dtype, jnp.integer)):
            raise ValueError(f"{name} must be a real time (a float or an integer); got dtype {dtype}.")
        rule = f"{name} must lie in [0, T] = [0, {self.T}] (a forward time; NaN is refused)"
        if isinstance(s, jax.core.Tracer):
            end = jnp.asarray(self.T, dtype) if is_float else self.T
            inside = (s >= 0) & (s <= end)  # False for NaN
            return eqx.error_if(s, jnp.logical_not(inside), rule + ".")
        arr = np.asarray(s)
        end = np.asarray(self.T, dtype) if is_float else self.T
        with np.errstate(invalid="ignore"):
            inside = (arr >= 0) & (arr <= end)
        if not np.all(inside):
            raise ValueError(f"{rule}; got {arr[~inside].ravel()[0]}.")
        return s

    def check_times(self, s: Float[ArrayLike, "*s"], name: str = "s") -> np.ndarray:
        """Concrete times for the closed-form curves: `check_time`'s rule, returned as float64 NumPy (outside jit)."""
        if isinstance(s, jax.core.Tracer):
            raise ValueError(f"{name} must be concrete here (the closed forms run outside jit); got a traced value.")
        return np.asarray(self.check_time(s, name), dtype=np.float64)
