r"""A Gaussian model of each class as a fixed base for a learned network: the label part comes exact where the
diffused classes are Gaussian.

The measured bottleneck of the learned image networks (`benchmarks/README.md`, issue 9) is the label part
$e(x, s; y) - e(x, s) = \nabla\log p_s(y|x)$ at the times where the label is decided ($s \approx 0.1$-$0.6\,T$ on
MNIST and Fashion-MNIST): short CPU training leaves it shrunk. There the diffused classes are close to Gaussian (the
noise dominates their fine structure), and a Gaussian model of each class, fitted once from the training images,
predicts the label from noisy images about as well as a trained noise-conditional classifier from about 0.25 T on
(`benchmarks/bench_gaussian_base.py`; far worse at small s, hence the gate). `ClassGaussianBase` adds that model's
exact entropy-matching vector to the network's output, so the network learns only the residual.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from gaussian_oracle import VPSDE, check_label

from ._precondition import WrapsNetwork, labelled_rows

__all__ = ["ClassGaussians", "ClassGaussianBase"]


class ClassGaussians(eqx.Module):
    r"""One Gaussian per class, $p_G(x|k) = \mathcal N(m_k, C_k)$ with prior $\pi_k$, diffused exactly by the VP
    process.

    Each covariance is a rank-r part plus an isotropic rest,
    $C_k = U_k\,\mathrm{diag}(\lambda_k)\,U_k^\top + \rho_k(I - U_kU_k^\top)$ ($U_k$: d x r orthonormal), so every
    quantity at time s costs O(K d r): with $a = \alpha(s)$, $u_k = x - \sqrt a\,m_k$, $z_k = U_k^\top u_k$,
    $p_{k} = a\lambda_k + 1 - a$ and $q_k = a\rho_k + 1 - a$,
    $$\log p_s(x|k) = -\tfrac12\Big[\textstyle\sum_i \log p_{k,i} + (d - r)\log q_k
        + \sum_i z_{k,i}^2/p_{k,i} + (\|u_k\|^2 - \|z_k\|^2)/q_k\Big] - \tfrac d2\log 2\pi,$$
    $$e_G(x, s; k) = x + \nabla_x\log p_s(x|k) = x - u_k/q_k - U_k\big(z_k \odot (1/p_k - 1/q_k)\big).$$

    Called as `(x, s)` it returns the logits $\log\pi_k + \log p_s(x|k)$ of its posterior $p_G(k|x_s)$ (shifted by a
    constant), so it serves as the `posterior` of `verify.mutual_information_minde` and as a noisy classifier for
    `verify.label_information_curve`. The arrays are constants (`constant_fields`): inside a trained model their
    gradient is stopped and weight decay leaves them alone.

    **Arguments:**

    - `sde`: the forward process.
    - `log_prior`: (K,) $\log\pi_k$.
    - `means`: (K, d) class means, flattened.
    - `evecs`: (K, d, r) $U_k$; `evals`: (K, r) $\lambda_k$; `rest`: (K,) $\rho_k$ (all > 0).
    - `image_shape`: the shape of one input (its size is d).
    - `shrinkage`: how `fit` shrank the class covariances (a record; `None` from `from_moments`).

    Use `ClassGaussians.fit` (from labelled data) or `ClassGaussians.from_moments` (exact parameters).
    """

    constant_fields: ClassVar[tuple[str, ...]] = ("log_prior", "means", "evecs", "evals", "rest")

    sde: VPSDE
    log_prior: Float[Array, " K"]
    means: Float[Array, "K d"]
    evecs: Float[Array, "K d r"]
    evals: Float[Array, "K r"]
    rest: Float[Array, " K"]
    image_shape: tuple[int, ...] = eqx.field(static=True)
    shrinkage: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        k, d = jnp.shape(self.means)
        if jnp.shape(self.log_prior) != (k,) or jnp.shape(self.rest) != (k,):
            raise ValueError(f"ClassGaussians: log_prior and rest must have shape ({k},); got "
                             f"{jnp.shape(self.log_prior)}, {jnp.shape(self.rest)}.")
        if jnp.ndim(self.evecs) != 3 or jnp.shape(self.evecs)[:2] != (k, d):
            raise ValueError(f"ClassGaussians: evecs must have shape ({k}, {d}, rank); got {jnp.shape(self.evecs)}.")
        if jnp.shape(self.evals) != (k, jnp.shape(self.evecs)[2]):
            raise ValueError(f"ClassGaussians: evals must have shape ({k}, {jnp.shape(self.evecs)[2]}); got "
                             f"{jnp.shape(self.evals)}.")
        if math.prod(self.image_shape) != d:
            raise ValueError(f"ClassGaussians: image_shape {self.image_shape} does not hold d = {d} values.")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_moments(cls, sde: VPSDE, weights: Float[ArrayLike, " K"], means: Float[ArrayLike, "K ..."],
                     covs: Float[ArrayLike, "K d d"], *, rank: int | None = None, floor: float = 1e-4,
                     dtype=jnp.float32) -> "ClassGaussians":
        r"""From class probabilities, means (K, *image_shape) and covariances (K, d, d) of the flattened images.

        Each covariance keeps its `rank` largest eigenvalues (`None`: all, exact) and replaces the others by their
        mean $\rho_k$ (so the trace is kept); eigenvalues are floored at `floor` times the class's largest, so the
        gains $1/(a\lambda + 1 - a)$ stay finite at small s."""
        weights = np.asarray(weights, np.float64)
        means = np.asarray(means, np.float64)
        covs = np.asarray(covs, np.float64)
        n_classes = weights.shape[0] if weights.ndim == 1 else -1
        if n_classes < 1 or means.shape[0] != n_classes or means.ndim < 2:
            raise ValueError(f"weights must have shape (K,) and means (K, *image_shape); got {weights.shape}, "
                             f"{means.shape}.")
        d = math.prod(means.shape[1:])
        if covs.shape != (n_classes, d, d):
            raise ValueError(f"covs must have shape ({n_classes}, {d}, {d}) for means of shape {means.shape}; got "
                             f"{covs.shape}.")
        for name, array in (("weights", weights), ("means", means), ("covs", covs)):
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name} must be finite; it contains NaN or infinity.")
        if np.any(weights <= 0) or abs(weights.sum() - 1) > 1e-6:
            raise ValueError(f"weights must be positive and sum to one; got {weights}.")
        rank = d if rank is None else rank
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= d:
            raise ValueError(f"rank must be an integer in 1..{d} (or None for all); got {rank!r}.")
        if not 0 < floor < 1:
            raise ValueError(f"floor must lie in (0, 1); got {floor!r}.")
        evals, evecs = np.linalg.eigh((covs + np.swapaxes(covs, 1, 2)) / 2)  # ascending
        evals = np.maximum(evals, floor * evals[:, -1:])
        top, vecs = evals[:, ::-1][:, :rank], evecs[:, :, ::-1][:, :, :rank]
        rest = evals[:, : d - rank].mean(axis=1) if rank < d else top[:, -1]  # unused (d - r = 0) when rank = d
        array = lambda a: jnp.asarray(a, dtype)  # noqa: E731
        return cls(sde, array(np.log(weights)), array(means.reshape(n_classes, d)), array(vecs), array(top),
                   array(rest), tuple(means.shape[1:]))

    @classmethod
    def fit(cls, sde: VPSDE, data_x: Float[ArrayLike, "batch ..."], data_y: Int[ArrayLike, " batch"],
            num_classes: int, *, rank: int | None = 64, shrinkage: float = 0.5, floor: float = 1e-4,
            dtype=jnp.float32) -> "ClassGaussians":
        r"""From labelled training data: label frequencies, class means, and class covariances shrunk towards the
        pooled within-class covariance, $(1 - \text{shrinkage})\,\hat C_k + \text{shrinkage}\,\hat C_{pooled}$ (a
        class's own covariance from a few hundred 784-pixel images is singular and overconfident; the pooled one is
        not; `benchmarks/bench_gaussian_base.py` measured 0.5). Every class must be present. Then `from_moments`
        with `rank` and `floor`."""
        data, labels = labelled_rows(data_x, data_y, num_classes, min_rows=2)
        counts = np.bincount(labels, minlength=num_classes)
        if np.any(counts < 2):
            raise ValueError(f"every class needs at least two training images for its covariance; counts {counts}.")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must lie in [0, 1]; got {shrinkage!r}.")
        flat = data.reshape(data.shape[0], -1)
        means = np.stack([flat[labels == k].mean(axis=0) for k in range(num_classes)])
        covs = np.stack([np.cov(flat[labels == k], rowvar=False) for k in range(num_classes)])
        pooled = np.einsum("k,kij->ij", counts - 1.0, covs) / (len(labels) - num_classes)
        covs = (1.0 - shrinkage) * covs + shrinkage * pooled
        fitted = cls.from_moments(sde, counts / counts.sum(), means.reshape(num_classes, *data.shape[1:]), covs,
                                  rank=rank, floor=floor, dtype=dtype)
        return dataclasses.replace(fitted, shrinkage=float(shrinkage))

    # ------------------------------------------------------------------ the diffused classes
    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    def _terms(self, x, s) -> tuple[Float[Array, " K"], Float[Array, "K d"]]:
        """(logits, e_G for every class) at one flattened input."""
        c = {name: jax.lax.stop_gradient(getattr(self, name)) for name in self.constant_fields}
        a = self.sde.alpha(s).astype(c["means"].dtype)
        var = self.sde.var(s).astype(a.dtype)
        u = x[None, :] - jnp.sqrt(a) * c["means"]  # (K, d)
        z = jnp.einsum("kdr,kd->kr", c["evecs"], u)
        p = a * c["evals"] + var  # (K, r)
        q = a * c["rest"] + var  # (K,)
        d, r = c["means"].shape[1], c["evals"].shape[1]
        quad = jnp.sum(z**2 / p, axis=1) + (jnp.sum(u**2, axis=1) - jnp.sum(z**2, axis=1)) / q
        logdet = jnp.sum(jnp.log(p), axis=1) + (d - r) * jnp.log(q)
        logits = c["log_prior"] - 0.5 * (logdet + quad)
        e = x[None, :] - u / q[:, None] - jnp.einsum("kdr,kr->kd", c["evecs"], z * (1 / p - 1 / q[:, None]))
        return logits, e

    def _flat(self, x):
        if jnp.shape(x) != self.image_shape:
            raise ValueError(f"x must have shape {self.image_shape} for one sample (vmap for batches); got "
                             f"{jnp.shape(x)}.")
        return jnp.reshape(jnp.asarray(x, self.means.dtype), (-1,))

    def __call__(self, x: Float[ArrayLike, "..."], s: Float[ArrayLike, ""]) -> Float[Array, " K"]:
        r"""Logits of $p_G(k|x_s)$ for one sample (up to a constant)."""
        return self._terms(self._flat(x), self.sde.check_time(s))[0]

    def entropy_vectors(self, x: Float[ArrayLike, "..."], s: Float[ArrayLike, ""]
                        ) -> tuple[Float[Array, " K"], Float[Array, "K ..."]]:
        r"""`(logits, e)`: the posterior logits and $e_G(x, s; k)$ for every class k, shape (K, *image_shape)."""
        logits, e = self._terms(self._flat(x), self.sde.check_time(s))
        return logits, e.reshape(self.num_classes, *self.image_shape)


def snr_gate(sde: VPSDE, s: Float[ArrayLike, ""], snr_half: float | None) -> Float[Array, ""]:
    r"""$g(s) = 1/(1 + \mathrm{SNR}(s)/\mathrm{SNR}_{1/2})$, the weight of a Gaussian class model at time s (1 for
    `snr_half=None`): `ClassGaussianBase.gate` and `learned.NoisyClassifier`'s."""
    if snr_half is None:
        return jnp.ones_like(jnp.asarray(s, jnp.float32))
    a, noise = sde.alpha(s), snr_half * sde.var(s)
    return noise / (noise + a)


class ClassGaussianBase(WrapsNetwork):
    r"""$e_\theta(x, s; y) = g(s)\,e_G(x, s; y) + F_\theta(x, s; y)$: a network learning the residual of a Gaussian
    class model, with $e_G(x, s) = \sum_k p_G(k|x_s)\,e_G(x, s; k)$ for `y=None` (and where `drop`, the null label of
    label dropout, is true), so the base's label part is exactly $g(s)\nabla\log p_G(y|x_s)$.

    The gate $g(s) = 1/(1 + \mathrm{SNR}(s)/\mathrm{SNR}_{1/2})$, $\mathrm{SNR} = \alpha/(1 - \alpha)$, is 1 at large
    noise, where diffused classes are close to Gaussian, and falls to 0 at small noise, where a Gaussian class model
    is far from the data (its gains $1/\lambda$ along thin directions and its overconfident posterior would be left
    for the network to cancel). `snr_half=None` gives $g \equiv 1$: for Gaussian classes with exact moments the base
    alone is then the exact $e^*$ (tested against `GaussianMixture.model()`). An untrained network ($F = 0$) gives
    the gated base. Satisfies the model protocol; `sde` is the inner network's, `config` too.

    **Arguments:**

    - `network`: the inner label-conditional protocol model $F_\theta$ (e.g. an `EntropyUNet` with `num_classes`).
    - `gaussians`: the `ClassGaussians` (use `ClassGaussianBase.fit`).
    - `snr_half`: the signal-to-noise ratio where $g = 1/2$, or `None` for $g \equiv 1$.
    """

    network: eqx.Module
    gaussians: ClassGaussians
    snr_half: float | None = eqx.field(static=True, default=4.0)

    @staticmethod
    def check_snr_half(value, name: str = "ClassGaussianBase.snr_half") -> None:
        """One clear error, naming `name`, unless `value` is a finite SNR > 0 or None (for callers that take the gate
        before they build the model, e.g. `verify.experiments.ImageExperiment.gaussian_base`)."""
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not (math.isfinite(value) and value > 0)):
            raise ValueError(f"{name} must be a finite SNR > 0 or None; got {value!r}.")

    def __check_init__(self):
        self.check_snr_half(self.snr_half)
        classes = getattr(getattr(self.network, "config", None), "num_classes", None)
        if classes is not None and classes != self.gaussians.num_classes:
            raise ValueError(f"ClassGaussianBase: the network has {classes} classes, the Gaussian model "
                             f"{self.gaussians.num_classes}.")

    @classmethod
    def fit(cls, network: eqx.Module, data_x: Float[ArrayLike, "batch ..."], data_y: Int[ArrayLike, " batch"], *,
            snr_half: float | None = 4.0, rank: int | None = 64, shrinkage: float = 0.5,
            dtype=jnp.float32) -> "ClassGaussianBase":
        """Wrap `network` with `ClassGaussians.fit` on its training data (the network's `sde` and
        `config.num_classes`)."""
        classes = getattr(getattr(network, "config", None), "num_classes", None)
        if classes is None:
            raise ValueError("ClassGaussianBase.fit needs a label-conditional network (config.num_classes).")
        gaussians = ClassGaussians.fit(network.sde, data_x, data_y, classes, rank=rank, shrinkage=shrinkage,
                                       dtype=dtype)
        return cls(network, gaussians, snr_half)

    def gate(self, s: Float[ArrayLike, ""]) -> Float[Array, ""]:
        r"""$g(s) = \mathrm{SNR}_{1/2}(1 - \alpha)/(\mathrm{SNR}_{1/2}(1 - \alpha) + \alpha)$ (1 for
        `snr_half=None`)."""
        return snr_gate(self.sde, s, self.snr_half)

    def base(self, x: Float[ArrayLike, "..."], s: Float[ArrayLike, ""], y: Int[ArrayLike, ""] | None = None,
             drop: Bool[ArrayLike, ""] | None = None) -> Float[Array, "..."]:
        r"""The gated Gaussian part $g(s)\,e_G(x, s; y)$ alone (the posterior mixture for `y=None` or `drop`); the time
        is checked by `ClassGaussians.entropy_vectors`."""
        logits, e = self.gaussians.entropy_vectors(x, s)
        mixture = jnp.tensordot(jax.nn.softmax(logits), e, axes=1)
        if y is None:
            out = mixture
        else:
            out = e[check_label(y, self.gaussians.num_classes)]
            if drop is not None:
                out = jnp.where(drop, mixture, out)
        return self.gate(s).astype(out.dtype) * out

    def __call__(self, x: Float[ArrayLike, "..."], s: Float[ArrayLike, ""], y=None, **kwargs) -> Float[Array, "..."]:
        """$e_\\theta(x, s; y)$ for one sample; keyword arguments (`drop`, `key`, ...) go to the inner network."""
        s = self.sde.check_time(s)
        out = self.network(x, s, y, **kwargs)
        return out + self.base(x, s, y, kwargs.get("drop")).astype(out.dtype)
