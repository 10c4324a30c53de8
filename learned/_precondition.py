"""Covariance preconditioning: the network sees whitened inputs and produces whitened outputs."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from gaussian_oracle import VPSDE, check_label, check_labels


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

    **Centring** (optional, `fit(..., centre=True)`): with a fixed estimate $\hat m(y)$ of the (conditional) mean,
    $$e_\theta(x, s; y) = \sqrt\alpha\,\hat m(y) + \hat P_s^{-1/2}F_\theta\big(\hat P_s^{-1/2}(x - \sqrt\alpha\,\hat m(y)), s; y\big).$$
    For Gaussian $p(x|y) = \mathcal N(m(y), \Sigma_{X|Y})$ the exact $e^* = x + \nabla\log p_s(x|y)
    = (I - P_s^{-1})u + \sqrt\alpha\,m(y)$ with $u = x - \sqrt\alpha\,m(y)$, so the inner target is again
    $F^*(z) = \alpha(\Sigma_{X|Y} - I)z$, of order one. Without centring the inner map must also produce
    $\hat P_s^{-1/2}\sqrt\alpha\,m(y)$, whose gain grows like $\lambda_{\min}(\Sigma_{X|Y})^{-1/2}$ at small s: on
    near-deterministic pairs (the determinism family at small $\sigma_\varepsilon$) that is where learned MI
    saturates. $\hat m$ is affine in a vector y (least squares on (1, y)), a table of class means for integer labels,
    and the data mean for an unconditional network or a call with `y=None`.

    **Arguments:**

    - `network`: the inner protocol model $F_\theta$ (e.g. an `EntropyMLP`), called on whitened inputs.
    - `evecs`, `evals`: eigen-decomposition of $\hat\Sigma$ (use `Preconditioned.fit`).
    - `mean`: the data mean (dim_x,), used for `y=None`; `None`: no centring.
    - `mean_coef`: the conditional mean's parameters: (dim_y, dim_x) slopes of the affine map
      $\hat m(y) = \text{mean} + (y - \bar y)B$ (`mean_kind="affine"`, with `y_mean` $= \bar y$), or the
      (num_classes, dim_x) class means (`mean_kind="class"`); `None` for a constant mean.
    """

    constant_fields: ClassVar[tuple[str, ...]] = ("evecs", "evals", "mean", "mean_coef", "y_mean")
    """Fixed arrays: their gradient is stopped and `learned.train`'s weight decay leaves them alone."""

    network: eqx.Module
    evecs: Float[Array, "dim_x dim_x"]
    evals: Float[Array, " dim_x"]
    mean: Float[Array, " dim_x"] | None = None
    mean_coef: Float[Array, "rows dim_x"] | None = None
    y_mean: Float[Array, " dim_y"] | None = None
    mean_kind: str = eqx.field(static=True, default="none")

    def __check_init__(self):
        if self.mean_kind not in ("none", "constant", "affine", "class"):
            raise ValueError(f"Preconditioned.mean_kind must be 'none', 'constant', 'affine' or 'class'; "
                             f"got {self.mean_kind!r}.")
        if (self.mean is None) != (self.mean_kind == "none"):
            raise ValueError("Preconditioned: give `mean` exactly when mean_kind is not 'none'.")
        if (self.mean_coef is None) != (self.mean_kind in ("none", "constant")):
            raise ValueError("Preconditioned: give `mean_coef` exactly when mean_kind is 'affine' or 'class'.")
        if (self.y_mean is None) != (self.mean_kind != "affine"):
            raise ValueError("Preconditioned: give `y_mean` exactly when mean_kind is 'affine'.")

    @classmethod
    def fit(
        cls,
        network: eqx.Module,
        data_x: Float[ArrayLike, "batch dim_x"],
        data_y: Float[ArrayLike, "batch dim_y"] | Int[ArrayLike, " batch"] | None = None,
        *,
        floor: float = 1e-8,
        centre: bool = False,
    ) -> "Preconditioned":
        r"""Wrap `network` with a covariance estimated from the training data.

        Without `data_y` this is the covariance of `data_x`. For a conditional network pass its conditions:
        the within-condition covariance whitens $p(x|y)$, whose eigenvalues are the smaller ones — for a vector
        y the residual covariance of the least-squares regression of x on (1, y) (exactly $\Sigma_{X|Y}$ for
        Gaussian data), for integer labels the pooled within-class covariance. Eigenvalues are floored at
        `floor` times the largest. With `centre=True` the same fit's means centre the inputs (see the class note):
        the regression of x on (1, y), the class means (a class absent from the data gets the data mean), or, without
        `data_y`, the data mean.
        """
        if not isinstance(centre, (bool, np.bool_)):
            raise ValueError(f"centre must be True or False; got {centre!r}.")
        config = getattr(network, "config", None)
        data = np.asarray(data_x, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] < 2:
            raise ValueError(f"data_x must have shape (batch >= 2, dim_x); got {data.shape}.")
        dim_x = getattr(config, "dim_x", None)
        if isinstance(dim_x, int) and data.shape[1] != dim_x:
            raise ValueError(f"data_x must have shape (batch, {dim_x}) for the network's dim_x = {dim_x}; got "
                             f"{data.shape}.")
        if not np.all(np.isfinite(data)):
            raise ValueError("data_x must be finite; it contains NaN or infinity.")
        mean = data.mean(axis=0)
        residual = data - mean
        kind, coef, y_mean = "constant", None, None
        if data_y is not None:
            cond = np.asarray(data_y)
            if cond.shape[0] != data.shape[0]:
                raise ValueError(f"data_x and data_y must have the same number of rows; got {data.shape[0]} and {cond.shape[0]}.")
            if np.issubdtype(cond.dtype, np.integer) and cond.ndim == 1:
                if cond.min() < 0:
                    raise ValueError(f"integer labels data_y must be >= 0; got {cond.min()}.")
                classes = getattr(getattr(network, "config", None), "num_classes", None) or int(cond.max()) + 1
                if cond.max() >= classes:
                    raise ValueError(f"labels data_y must be below the network's num_classes = {classes}; got "
                                     f"{cond.max()}.")
                kind, coef = "class", np.tile(mean, (classes, 1))
                for label in np.unique(cond):
                    rows = cond == label
                    coef[label] = data[rows].mean(axis=0)
                    residual[rows] = data[rows] - coef[label]
            elif np.issubdtype(cond.dtype, np.floating) and cond.ndim == 2 and np.all(np.isfinite(cond)):
                dim_y = getattr(config, "dim_y", None)
                if isinstance(dim_y, int) and cond.shape[1] != dim_y:
                    raise ValueError(f"data_y must have shape (batch, {dim_y}) for the network's dim_y = {dim_y}; "
                                     f"got {cond.shape}.")
                y_mean = cond.astype(np.float64).mean(axis=0)
                centred = cond.astype(np.float64) - y_mean
                kind, (coef, *_) = "affine", np.linalg.lstsq(centred, data - mean, rcond=None)
                residual = data - mean - centred @ coef
            else:
                raise ValueError(
                    f"data_y must be finite float vectors (batch, dim_y) or integer labels (batch,); "
                    f"got dtype {cond.dtype}, shape {cond.shape}."
                )
        cov = residual.T @ residual / (data.shape[0] - 1)
        evals, evecs = np.linalg.eigh(cov)
        evals = np.maximum(evals, floor * evals[-1])
        dtype = getattr(getattr(network, "config", None), "dtype", jnp.float32)
        if not centre:
            return cls(network, jnp.asarray(evecs, dtype), jnp.asarray(evals, dtype))
        array = lambda a: None if a is None else jnp.asarray(a, dtype)  # noqa: E731
        return cls(network, jnp.asarray(evecs, dtype), jnp.asarray(evals, dtype), array(mean), array(coef),
                   array(y_mean), kind)

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
        x = jnp.asarray(x, v.dtype)
        shift = None
        if self.mean_kind != "none":
            shift = jnp.sqrt(self.sde.alpha(s)).astype(v.dtype) * self.conditional_mean(y, kwargs.get("drop"))
        u = x if shift is None else x - shift
        f = self.network(v @ (scale * (v.T @ u)), s, y, **kwargs)
        e = v @ (scale * (v.T @ f))
        return e if shift is None else e + shift

    def conditional_mean(self, y, drop=None) -> Float[Array, "*batch dim_x"]:
        r"""$\hat m(y)$ (a constant, not trained); the data mean for `y=None` or where `drop` (the null condition of
        condition dropout) is true. `y` is one condition or a batch of them (rows), giving one mean per row."""
        mean = jax.lax.stop_gradient(self.mean)
        if y is None or self.mean_kind == "constant":
            return mean
        coef = jax.lax.stop_gradient(self.mean_coef)
        if self.mean_kind == "class":
            conditional = coef[check_labels(y, coef.shape[0], "the classes whose means the preconditioner holds")]
        else:
            conditional = mean + (jnp.asarray(y, coef.dtype) - jax.lax.stop_gradient(self.y_mean)) @ coef
        return conditional if drop is None else jnp.where(drop, mean, conditional)


def labelled_rows(data_x, data_y, num_classes: int, *, min_rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """`(data, labels)`: `data_x` as float64 (batch >= `min_rows`, ...), finite, with one integer label in
    `0..num_classes - 1` per row in `data_y`; one clear error otherwise (what a class-wise fit needs)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer (or the network's config.num_classes); got "
                         f"{num_classes!r}.")
    data = np.asarray(data_x, dtype=np.float64)
    labels = np.asarray(data_y)
    if data.ndim < 2 or data.shape[0] < min_rows:
        raise ValueError(f"data_x must have shape (batch >= {min_rows}, ...); got {data.shape}.")
    if not np.all(np.isfinite(data)):
        raise ValueError("data_x must be finite; it contains NaN or infinity.")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"data_y must hold one integer label per row of data_x, shape ({data.shape[0]},); got "
                         f"dtype {labels.dtype}, shape {labels.shape}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels data_y must lie in 0..{num_classes - 1}; got {labels.min()}..{labels.max()}.")
    return data, labels


class WrapsNetwork(eqx.Module):
    """A protocol model built around an inner network `network`: its `sde` and `config` are the inner network's."""

    network: eqx.AbstractVar[eqx.Module]

    @property
    def sde(self) -> VPSDE:
        return self.network.sde

    @property
    def config(self):
        """The inner network's configuration (e.g. `config.image_shape` for the samplers)."""
        return self.network.config


class ClassCentred(WrapsNetwork):
    r"""$e_\theta(x, s; y) = \sqrt{\alpha(s)}\,\hat m(y) + F_\theta\big(x - \sqrt{\alpha(s)}\,\hat m(y), s; y\big)$ for
    integer labels and inputs of any shape (images included), with $\hat m(y)$ the class mean of the training data
    and, for `y=None` or where `drop` is true (the null label of label dropout), the data mean.

    Exact for every distribution, not only Gaussian ones: with $u = x - \sqrt\alpha\,m(y)$ the diffused class
    $p_s(x|y)$ is the diffused centred class $\tilde p_s(u|y)$, so
    $e^*(x, s; y) = x + \nabla\log p_s(x|y) = \sqrt\alpha\,m(y) + \tilde e^*(u, s; y)$ and the inner network's target
    is the entropy-matching vector of the *centred* class. For Gaussian classes with a shared covariance that target
    is the same function for every label, so the label part of $e$ (all of $I_{MINDE}$) comes from the shift
    alone and the inner network has no label dependence to learn; the vector-data analogue, with whitening, is
    `Preconditioned.fit(..., centre=True)`. The means are constants (their gradient is stopped); an untrained
    inner network ($F = 0$) gives $e = \sqrt\alpha\,\hat m(y)$. Satisfies the model protocol; `sde` is the inner
    network's.

    Measured on images, it does not help (`benchmarks/bench_images_crossfit.py --centre`): on digits, whose classes
    are well separated, the true label part of $e$ vanishes at small s (the label is decided there), so the inner
    network must learn to cancel the shift $\sqrt\alpha(\hat m(y) - \bar m)$, and the learned $I_{MINDE}$ reads 16
    nats (cross-fitted 9.3) against bounds of 2.05-2.30, where the uncentred network reads 3.8 (cross-fitted 1.7).

    **Arguments:**

    - `network`: the inner label-conditional protocol model $F_\theta$ (e.g. an `EntropyUNet` with `num_classes`).
    - `class_means`: (num_classes, *shape) class means.
    - `mean`: (*shape) data mean, for the null label.
    """

    constant_fields: ClassVar[tuple[str, ...]] = ("class_means", "mean")
    """Fixed arrays: their gradient is stopped and `learned.train`'s weight decay leaves them alone."""

    network: eqx.Module
    class_means: Float[Array, "num_classes ..."]
    mean: Float[Array, "..."]

    def __check_init__(self):
        if jnp.shape(self.class_means)[1:] != jnp.shape(self.mean) or jnp.ndim(self.class_means) < 2:
            raise ValueError(f"ClassCentred: class_means must have shape (num_classes, *shape) with shape the mean's "
                             f"{jnp.shape(self.mean)}; got {jnp.shape(self.class_means)}.")

    @classmethod
    def fit(cls, network: eqx.Module, data_x: Float[ArrayLike, "batch ..."], data_y: Int[ArrayLike, " batch"],
            num_classes: int | None = None, *, dtype=jnp.float32) -> "ClassCentred":
        """Wrap `network` with the class means and the data mean of the training data (float64 sums, stored in
        `dtype`). A class absent from the data gets the data mean. `num_classes` defaults to the network's
        `config.num_classes`."""
        classes = num_classes
        if classes is None:
            classes = getattr(getattr(network, "config", None), "num_classes", None)
        data, labels = labelled_rows(data_x, data_y, classes)
        mean = data.mean(axis=0)
        means = np.broadcast_to(mean, (classes, *mean.shape)).copy()
        for label in np.unique(labels):
            means[label] = data[labels == label].mean(axis=0)
        return cls(network, jnp.asarray(means, dtype), jnp.asarray(mean, dtype))

    def __call__(self, x: Float[ArrayLike, "..."], s: Float[ArrayLike, ""], y=None, **kwargs) -> Float[Array, "..."]:
        """$e_\\theta(x, s; y)$ for one sample; keyword arguments (`drop`, `key`, ...) go to the inner network."""
        s = self.sde.check_time(s)
        mean = jax.lax.stop_gradient(self.mean)
        if y is None:
            centre = mean
        else:
            centre = jax.lax.stop_gradient(self.class_means)[check_label(y, self.class_means.shape[0])]
            drop = kwargs.get("drop")
            if drop is not None:
                centre = jnp.where(drop, mean, centre)
        shift = jnp.sqrt(self.sde.alpha(s)).astype(centre.dtype) * centre
        return self.network(jnp.asarray(x) - shift, s, y, **kwargs) + shift
