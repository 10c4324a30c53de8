"""Covariance preconditioning: the network sees whitened inputs and produces whitened outputs."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from gaussian_oracle import VPSDE


class Preconditioned(eqx.Module):
    r"""$e_\theta(x, s; y) = \hat P_s^{-1/2}\,F_\theta(\hat P_s^{-1/2}x, s; y)$ with $\hat P_s = \alpha(s)\hat\Sigma + (1 - \alpha(s))I$.

    $\hat\Sigma$ is a fixed covariance estimate of the training data (the within-condition one for a conditional
    network, see `fit`), so $\hat P_s$ is the covariance of the
    diffused data at time s. For data whose covariance has small eigenvalues $\lambda$ (near a manifold, or the
    determinism family), $e^*$ needs gains up to $1/\lambda$ along those directions at small s, which a plain
    network learns slowly; in whitened coordinates the target is $O(1)$: for Gaussian data
    $e^* = (I - P_s^{-1})x = P_s^{-1/2}\,\alpha(\Sigma - I)\,P_s^{-1/2}x$, so $F^*(z) = \alpha(\Sigma - I)z$.

    The preconditioner only changes coordinates: the inner network starts at $F = 0$ (so $e_\theta = 0$) and
    learns everything else by gradient descent; $\hat\Sigma$ is a constant (its gradient is stopped). Satisfies
    the model protocol; `sde` is the inner network's.

    **Arguments:**

    - `network`: the inner protocol model $F_\theta$ (e.g. an `EntropyMLP`), called on whitened inputs.
    - `evecs`, `evals`: eigen-decomposition of $\hat\Sigma$ (use `Preconditioned.fit`).
    """

    network: eqx.Module
    evecs: Float[Array, "dim_x dim_x"]
    evals: Float[Array, " dim_x"]

    @classmethod
    def fit(
        cls,
        network: eqx.Module,
        data_x: Float[ArrayLike, "batch dim_x"],
        data_y: Float[ArrayLike, "batch dim_y"] | Int[ArrayLike, " batch"] | None = None,
        *,
        floor: float = 1e-8,
    ) -> "Preconditioned":
        r"""Wrap `network` with a covariance estimated from the training data.

        Without `data_y` this is the covariance of `data_x`. For a conditional network pass its conditions:
        the within-condition covariance whitens $p(x|y)$, whose eigenvalues are the smaller ones — for a vector
        y the residual covariance of the least-squares regression of x on (1, y) (exactly $\Sigma_{X|Y}$ for
        Gaussian data), for integer labels the pooled within-class covariance. Eigenvalues are floored at
        `floor` times the largest.
        """
        data = np.asarray(data_x, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] < 2:
            raise ValueError(f"data_x must have shape (batch >= 2, dim_x); got {data.shape}.")
        if not np.all(np.isfinite(data)):
            raise ValueError("data_x must be finite; it contains NaN or infinity.")
        residual = data - data.mean(axis=0)
        if data_y is not None:
            cond = np.asarray(data_y)
            if cond.shape[0] != data.shape[0]:
                raise ValueError(f"data_x and data_y must have the same number of rows; got {data.shape[0]} and {cond.shape[0]}.")
            if np.issubdtype(cond.dtype, np.integer) and cond.ndim == 1:
                for label in np.unique(cond):
                    rows = cond == label
                    residual[rows] = data[rows] - data[rows].mean(axis=0)
            elif np.issubdtype(cond.dtype, np.floating) and cond.ndim == 2 and np.all(np.isfinite(cond)):
                design = np.hstack([np.ones((cond.shape[0], 1)), cond.astype(np.float64)])
                coef, *_ = np.linalg.lstsq(design, data, rcond=None)
                residual = data - design @ coef
            else:
                raise ValueError(
                    f"data_y must be finite float vectors (batch, dim_y) or integer labels (batch,); "
                    f"got dtype {cond.dtype}, shape {cond.shape}."
                )
        cov = residual.T @ residual / (data.shape[0] - 1)
        evals, evecs = np.linalg.eigh(cov)
        evals = np.maximum(evals, floor * evals[-1])
        dtype = getattr(getattr(network, "config", None), "dtype", jnp.float32)
        return cls(network, jnp.asarray(evecs, dtype), jnp.asarray(evals, dtype))

    @property
    def sde(self) -> VPSDE:
        return self.network.sde

    def _inv_sqrt_scale(self, s):
        alpha = self.sde.alpha(s)
        return jax.lax.rsqrt(alpha * jax.lax.stop_gradient(self.evals) + self.sde.var(s))

    def __call__(self, x: Float[ArrayLike, " dim_x"], s: Float[ArrayLike, ""], y=None, **kwargs) -> Float[Array, " dim_x"]:
        """$e_\\theta(x, s; y)$ for one sample; keyword arguments (e.g. `drop`) go to the inner network.

        Times outside $[0, T]$ (NaN included) are refused (`VPSDE.check_time`), whatever the inner network does.
        """
        s = self.sde.check_time(s)
        v = jax.lax.stop_gradient(self.evecs)
        scale = self._inv_sqrt_scale(s).astype(v.dtype)
        z = v @ (scale * (v.T @ jnp.asarray(x, v.dtype)))
        f = self.network(z, s, y, **kwargs)
        return v @ (scale * (v.T @ f))
