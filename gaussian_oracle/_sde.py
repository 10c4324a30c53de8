"""The variance-preserving forward process with a linear noise schedule."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._checks import as_float_array


class VPSDE(eqx.Module):
    r"""Variance-preserving SDE $d\tilde x_s = -\tfrac12\beta(s)\tilde x_s\,ds + \sqrt{\beta(s)}\,dB_s$.

    Linear schedule $\beta(s) = \beta_{\min} + (\beta_{\max} - \beta_{\min})\,s/T$. The transition kernel
    is $p(\tilde x_s | x) = \mathcal N(\mu(s)x, (1 - \mu(s)^2) I)$ with
    $\mu(s) = \exp(-\tfrac12\int_0^s\beta)$, and the quasi-invariant state is $p_{eq} = \mathcal N(0, I)$.
    In the paper's notation (Eq. 54) $\alpha(s) = \mu(s)^2$. All methods are vectorised in `s`.

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
        r"""Forward drift $b_+(x, s) = -\tfrac12\beta(s)x$."""
        return -0.5 * self.beta(s) * x

    def grad_log_peq(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        r"""$\nabla\log p_{eq}(x) = -x$ for $p_{eq} = \mathcal N(0, I)$."""
        return -jnp.asarray(x)

    def perturb(self, x: Float[Array, "*shape"], s: ArrayLike, *, key: PRNGKeyArray) -> Float[Array, "*shape"]:
        r"""Draw $\tilde x_s \sim \mathcal N(\mu(s)x, (1-\mu(s)^2)I)$ for one sample `x` (vmap for batches)."""
        x = jnp.asarray(x)
        noise = jax.random.normal(key, x.shape, x.dtype)
        return self.mu(s) * x + jnp.sqrt(self.var(s)) * noise

    def check_times(self, s, name: str = "s") -> np.ndarray:
        """Validate concrete times (outside jit): finite and inside [0, T]. Returns float64 NumPy."""
        arr = as_float_array(s, name)
        if np.any(arr < 0) or np.any(arr > self.T):
            bad = arr[(arr < 0) | (arr > self.T)].ravel()[0]
            raise ValueError(f"{name} must lie in [0, T] = [0, {self.T}]; got {bad}.")
        return arr
