"""The denoising entropy-matching (DEM) loss, Eq. 40, with its time weightings and time samplers."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from gaussian_oracle import VPSDE, AbstractTimeDensity, UniformTime


# ---------------------------------------------------------------------------------------------- weightings
class AbstractWeighting(eqx.Module):
    r"""A time weighting $\lambda(s) \ge 0$ of the DEM loss (appendix B.3)."""

    @abc.abstractmethod
    def __call__(self, s: Float[ArrayLike, "*s"]) -> Float[Array, "*s"]:
        """$\\lambda(s)$, vectorised in `s`."""


class Constant(AbstractWeighting):
    r"""$\lambda(s) = 1$ ("variance dropping"; the paper's choice for images)."""

    def __call__(self, s):
        return jnp.ones_like(jnp.asarray(s))


class Likelihood(AbstractWeighting):
    r"""$\lambda(s) = \sigma(s)^2/2 = \beta(s)/2$: the loss minus its minimum is then $\int_0^T\tfrac{\beta}{2}\mathbb E\|e_\theta - e^*\|^2$.

    The paper's choice for the Gaussian experiments (appendix D.1): the excess loss is exactly the error
    in $S_{NN}$-type integrals (Eq. 11).

    **Arguments:**

    - `sde`: the forward process whose $\beta(s)$ is used.
    """

    sde: VPSDE

    def __check_init__(self):
        if not isinstance(self.sde, VPSDE):
            raise ValueError(f"Likelihood.sde must be a VPSDE (the process whose beta(s) weights the loss); got "
                             f"{self.sde!r}.")

    def __call__(self, s):
        return 0.5 * self.sde.beta(s)


# ---------------------------------------------------------------------------------------------- time densities
class ImportanceTime(AbstractTimeDensity):
    r"""Importance sampling of s with $q(s) \propto \lambda(s)\sqrt{1 + 1/(1 - \alpha(s))}$.

    The stochastic gradient of Eq. 40 at time s has size $\propto \lambda(s)\|\nabla\log p_{eq} + e_\theta -
    \nabla\log p(\tilde x_s|x)\| \approx \lambda(s)\sqrt{D(1 + 1/(1-\alpha))}$, dominated by the kernel
    score near $s = 0$; sampling s in proportion to it keeps the weighted per-sample gradient bounded
    (it diverges like $s^{-1/2}$ under uniform sampling). The density is piecewise constant in
    $u = \sqrt{s/T}$ on `num_bins` equal bins, and `pdf` is that exact density, so the loss stays unbiased.

    **Arguments:**

    - `sde`: the forward process.
    - `weighting`: the $\lambda(s)$ the proposal is shaped for (use the loss's own weighting).
    - `num_bins`: number of bins in $u$.
    """

    cdf: Float[Array, " num_bins_plus_1"]
    mass: Float[Array, " num_bins"]
    T: float = eqx.field(static=True)

    def __init__(self, sde: VPSDE, weighting: AbstractWeighting, num_bins: int = 512):
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive integer; got {num_bins!r}.")
        with jax.ensure_compile_time_eval():
            edges = np.linspace(0.0, 1.0, num_bins + 1)
            u = 0.5 * (edges[1:] + edges[:-1])
            s = sde.T * u**2
            var = np.asarray(sde.var(s), dtype=np.float64)
            lam = np.asarray(weighting(s), dtype=np.float64)
        # density in u: q_s(s) ds = q_s(T u^2) 2 T u du
        dens_u = lam * np.sqrt(1.0 + 1.0 / var) * 2.0 * sde.T * u
        if not np.all(np.isfinite(dens_u)) or np.any(dens_u < 0) or not np.sum(dens_u) > 0:
            raise ValueError("ImportanceTime: the weighting must be finite and non-negative, and positive somewhere.")
        mass = dens_u / dens_u.sum()
        mass = np.maximum(mass, 1e-6 / num_bins)  # every bin reachable: the estimator stays unbiased
        mass = mass / mass.sum()
        self.mass = jnp.asarray(mass)
        self.cdf = jnp.asarray(np.concatenate([[0.0], np.cumsum(mass)]))
        self.T = sde.T

    def _check(self, sde):
        if sde.T != self.T:
            raise ValueError(f"ImportanceTime was built for T = {self.T}; got an SDE with T = {sde.T}.")

    def support(self, sde):
        self._check(sde)
        return 0.0, float(self.T)

    def sample(self, sde, shape, *, key, dtype=float):
        self._check(sde)
        num_bins = self.mass.shape[0]
        c = jax.random.uniform(key, shape, dtype=self.cdf.dtype)
        k = jnp.clip(jnp.searchsorted(self.cdf, c, side="right") - 1, 0, num_bins - 1)
        frac = jnp.clip((c - self.cdf[k]) / self.mass[k], 0.0, 1.0)
        u = (k + frac) / num_bins
        return (self.T * u**2).astype(dtype)

    def pdf(self, sde, s):
        r"""$q(s) = m_k n_{bins}/(2T u)$ with $u = \sqrt{s/T}$ in bin k."""
        self._check(sde)
        s = jnp.asarray(s)
        num_bins = self.mass.shape[0]
        u = jnp.sqrt(jnp.clip(s / self.T, 0.0, 1.0))
        k = jnp.clip(jnp.floor(u * num_bins).astype(jnp.int32), 0, num_bins - 1)
        density = self.mass[k].astype(s.dtype) * num_bins / (2.0 * self.T * u)
        return jnp.where((s >= 0) & (s <= self.T), density, 0.0).astype(s.dtype)


# ---------------------------------------------------------------------------------------------- the loss
S_FLOOR = 1e-12
"""Smallest training time, as a fraction of T: the DEM residual's kernel score diverges at s = 0."""


def dem_residual(
    model, x: Float[Array, " dim_x"], s: Float[ArrayLike, ""], y=None, *, drop=None, model_key: bool = False,
    key: PRNGKeyArray,
) -> tuple[Float[Array, " dim_x"], Float[Array, " dim_x"]]:
    r"""The two parts of the DEM residual for one sample, $\tilde x_s = \mu x + \sqrt{1-\mu^2}\,\eta$.

    **Returns:**

    With `model_key` the model is also called with `key=` (networks with dropout, e.g. `EntropyUNet`).

    `(d, k)` with $d = \nabla\log p_{eq}(\tilde x_s) + e_\theta(\tilde x_s, s; y) = e_\theta - \tilde x_s$ and
    $k = -\nabla\log p(\tilde x_s|x) = \eta/\sqrt{1-\mu^2}$; the residual of Eq. 40 is $d + k$.
    """
    sde = model.sde
    k_eta, k_model = jax.random.split(key)
    eta = jax.random.normal(k_eta, jnp.shape(x), jnp.result_type(x))
    std = jnp.sqrt(sde.var(s))
    x_s = sde.mu(s) * x + std * eta
    kwargs = {} if drop is None else {"drop": drop}
    if model_key:
        kwargs["key"] = k_model
    return model(x_s, s, y, **kwargs) - x_s, eta / std


class DEMLoss(eqx.Module):
    r"""Monte Carlo DEM loss (Eq. 40) for the entropy-matching parametrisation $s_\theta = \nabla\log p_{eq} + e_\theta$:
    $$\mathcal L = T\,\mathbb E_x\mathbb E_{s\sim\mathcal U(0,T)}\big[\lambda(s)\,\|\nabla\log p_{eq}(\tilde x_s)
      + e_\theta(\tilde x_s, s; y) - \nabla\log p(\tilde x_s|x)\|^2\big],\quad
      \nabla\log p(\tilde x_s|x) = -(\tilde x_s - \mu x)/(1 - \mu^2).$$
    One time and one noise draw per data point; with a non-uniform `time_sampler` the weight $T$ becomes
    $1/q(s)$. Its minimiser over functions is $e^*$ for every positive $\lambda$ (Eq. 33).

    As written, Eq. 40 has an infinite expectation whenever $\lambda(0) > 0$: the kernel-score term
    contributes $\int_0\lambda D/(1-\alpha)\,ds$, which diverges logarithmically. With `centred=True`
    (default) each sample's $\theta$-independent $\lambda/q\,\|\nabla\log p(\tilde x_s|x)\|^2$ is subtracted:
    the gradient is unchanged, the value is finite with lower variance, and
    $$\mathbb E\,\mathcal L_c = \int_0^T\lambda(s)\big(\mathbb E\|e_\theta - e^*\|^2 - \mathbb E\|\nabla\log p_s(\tilde x_s|y)\|^2\big)ds,$$
    so $\mathcal L_c(e_\theta) - \mathcal L_c(e^*) = \int_0^T\lambda\,\mathbb E\|e_\theta - e^*\|^2$ exactly (with `Likelihood`,
    the error in $S_{NN}$-type integrals), and for Gaussian data the minimum is $-\int_0^T\lambda\,\mathrm{Tr}\,\Sigma_s^{-1}ds$.

    **Arguments:**

    - `weighting`: $\lambda(s)$, e.g. `Constant()` or `Likelihood(sde)`.
    - `time_sampler`: how s is drawn, e.g. `UniformTime()` or `ImportanceTime(sde, weighting)`.
    - `condition_dropout`: probability of replacing y by the null condition per sample (models with a
      `drop` keyword, such as `EntropyMLP`), so one network learns $e(x, s; y)$ and $e(x, s)$.
    - `centred`: subtract the $\theta$-independent kernel-score term (see above); `False` gives Eq. 40 verbatim.
    - `model_key`: pass a fresh `key=` to the model at every evaluation, for networks with dropout.
    """

    weighting: AbstractWeighting = Constant()
    time_sampler: AbstractTimeDensity = UniformTime()
    condition_dropout: float = eqx.field(static=True, default=0.0)
    centred: bool = eqx.field(static=True, default=True)
    model_key: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not isinstance(self.weighting, AbstractWeighting):
            raise ValueError(f"weighting must be an AbstractWeighting (Constant(), Likelihood(sde)); got {self.weighting!r}.")
        if not isinstance(self.time_sampler, AbstractTimeDensity):
            raise ValueError(f"time_sampler must be an AbstractTimeDensity (e.g. UniformTime(), LogSNRTime(), ImportanceTime(sde, weighting)); got {self.time_sampler!r}.")
        p = self.condition_dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"condition_dropout must be a number in [0, 1); got {p!r}.")
        if not isinstance(self.centred, bool):
            raise ValueError(f"centred must be a bool; got {self.centred!r}.")

    def per_sample(
        self, model, x: Float[Array, " dim_x"], y=None, *, key: PRNGKeyArray
    ) -> Float[Array, ""]:
        r"""$\lambda(s)/q(s)\,\|d + k\|^2$, or $\lambda/q\,(\|d\|^2 + 2d\cdot k)$ when centred, for one data point."""
        k_s, k_eta, k_drop = jax.random.split(key, 3)
        s, inv_q = self.time_sampler(model.sde, key=k_s)
        # A draw of exactly s = 0 (float32 uniforms hit 0 about once in 10^7) would make the kernel score
        # infinite; the floor moves a set of probability ~1e-12 and leaves the loss unbiased to that order.
        s = jnp.maximum(s.astype(jnp.result_type(x)), S_FLOOR * model.sde.T)
        drop = None
        if y is not None and self.condition_dropout > 0:
            drop = jax.random.bernoulli(k_drop, self.condition_dropout)
        d, k = dem_residual(model, x, s, y, drop=drop, model_key=self.model_key, key=k_eta)
        value = jnp.sum(d * (d + 2.0 * k)) if self.centred else jnp.sum((d + k) ** 2)
        return self.weighting(s) * inv_q * value

    def __call__(
        self,
        model,
        x: Float[Array, "batch dim_x"],
        y: Float[Array, "batch dim_y"] | None = None,
        *,
        key: PRNGKeyArray,
    ) -> Float[Array, ""]:
        """The batch mean of `per_sample` (vmapped over the one-sample model).

        **Arguments:**

        - `model`: a protocol model (`sde` field, `__call__(x, s, y=None)`).
        - `x`: data, shape (batch, dim_x).
        - `y`: conditions with leading axis batch, or `None` to train $e(x, s)$.
        - `key`: PRNG key (keyword-only, last).

        **Returns:**

        A scalar: the Monte Carlo estimate of Eq. 40.
        """
        if isinstance(self.weighting, Likelihood) and self.weighting.sde != model.sde:
            raise ValueError(f"Likelihood weighting was built for {self.weighting.sde}, but the model's sde is {model.sde}.")
        if x.ndim < 2:
            raise ValueError(f"x must have shape (batch, dim_x) or (batch, *shape); got {x.shape}.")
        if y is not None and jnp.shape(y)[0] != x.shape[0]:
            raise ValueError(f"x and y must have the same batch size; got {x.shape[0]} and {jnp.shape(y)[0]}.")
        keys = jax.random.split(key, x.shape[0])
        if y is None:
            values = jax.vmap(lambda xi, ki: self.per_sample(model, xi, None, key=ki))(x, keys)
        else:
            values = jax.vmap(lambda xi, yi, ki: self.per_sample(model, xi, yi, key=ki))(x, y, keys)
        return jnp.mean(values)


def dem_loss(
    model,
    x: Float[Array, "batch dim_x"],
    y: Float[Array, "batch dim_y"] | None = None,
    *,
    weighting: AbstractWeighting = Constant(),
    time_sampler: AbstractTimeDensity = UniformTime(),
    condition_dropout: float = 0.0,
    centred: bool = True,
    key: PRNGKeyArray,
) -> Float[Array, ""]:
    """Functional form of `DEMLoss(weighting, time_sampler, condition_dropout, centred)(model, x, y, key=key)` (Eq. 40)."""
    return DEMLoss(weighting, time_sampler, condition_dropout, centred)(model, x, y, key=key)
