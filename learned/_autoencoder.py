r"""Diffusion autoencoders (Eqs. 60-61), the split-loss DAE (Eq. 70) and the VAE baseline (Eq. 64).

A diffusion autoencoder (DAE) pairs a Gaussian encoder $q_\phi(z|x)$ (Eq. 62) with a diffusion decoder
$e_\theta(\tilde x_s, s; z)$ trained by the DEM loss conditioned on the latent, plus the encoder's KL term:
$$\mathcal L = \mathcal L_{DEM}^{X|Z} + \gamma\,\mathbb E_x D_{KL}(q_\phi(z|x)\,\|\,\mathcal N(0, I))\quad(60\text{-}61).$$
The DAE is itself a protocol model: `dae(x, s, y)` is the decoder's $e(x, s; z = y)$ and `dae(x, s)` its null
latent, so $S_{NN}^{X|Z}$ and $I(X;Z)$ come from the estimators of `verify` unchanged.

The split DAE (Eq. 70) has two encoders and one decoder conditioned on $z_{sem}$ for $s \ge \tau$ and on $z_{per}$
for $s < \tau$; as a protocol model its condition is the concatenation $y = (z_{sem}, z_{per})$.

The VAE baseline decodes with a Gaussian $p_\psi(x|z) = \mathcal N(f_\psi(z), \sigma_{dec}^2 I)$ (Eq. 64). All three
train through `learned.train` with `AutoencoderLoss` / `VAELoss`. Losses and KL terms are in nats per sample.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, UInt32

from gaussian_oracle import VPSDE, check_key

from ._encoder import AbstractEncoder
from ._loss import DEMLoss, Likelihood
from ._unet import EntropyUNet

__all__ = ["UNetDecoder", "DiffusionAutoencoder", "SplitAutoencoder", "AutoencoderLoss", "VAE", "VAELoss",
           "encode_batch"]


# ---------------------------------------------------------------------------------------------- decoders
class UNetDecoder(eqx.Module):
    r"""An `EntropyUNet` with a latent input as a protocol model whose condition $y$ is the latent vector:
    `decoder(x, s, z)` is `unet(x, s, None, latent=z)`.

    **Arguments:**

    - `unet`: an `EntropyUNet` built with `UNetConfig(dim_latent=D_Z, num_classes=None)`.
    """

    unet: EntropyUNet

    def __check_init__(self):
        if not isinstance(self.unet, EntropyUNet):
            raise ValueError(f"unet must be an EntropyUNet; got {type(self.unet).__name__}.")
        if self.unet.config.dim_latent is None or self.unet.config.num_classes is not None:
            raise ValueError("UNetDecoder needs an EntropyUNet with a latent input and no labels "
                             f"(UNetConfig(dim_latent=D_Z, num_classes=None)); got dim_latent="
                             f"{self.unet.config.dim_latent}, num_classes={self.unet.config.num_classes}.")

    @property
    def sde(self) -> VPSDE:
        return self.unet.sde

    def __call__(self, x: Float[ArrayLike, "channels height width"], s: Float[ArrayLike, ""],
                 y: Float[ArrayLike, " dim_latent"] | None = None, *, drop: Bool[ArrayLike, ""] = False,
                 key: PRNGKeyArray | None = None) -> Float[Array, "channels height width"]:
        """$e_\\theta(x, s; z)$ for one image, $z$ = `y` (`None`: the null latent)."""
        return self.unet(x, s, None, latent=y, drop=drop, key=key)


def _decoder_kwargs(drop, key) -> dict:
    kwargs = {}
    if drop is not None:
        kwargs["drop"] = drop
    if key is not None:
        kwargs["key"] = key
    return kwargs


def _check_decoder(decoder, input_shape: tuple[int, ...], dim_latent: int) -> None:
    """A clear error unless `decoder(x, s, z)` takes an input of `input_shape` and a latent of size `dim_latent`."""
    if not (hasattr(decoder, "sde") and callable(decoder)):
        raise ValueError(f"decoder must be a protocol model (field sde, __call__(x, s, y)); got {type(decoder).__name__}.")
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    z = jax.ShapeDtypeStruct((dim_latent,), jnp.float32)
    try:
        out = eqx.filter_eval_shape(lambda d, xx, zz: d(xx, 0.5 * d.sde.T, zz), decoder, x, z)
    except (ValueError, TypeError) as err:
        raise ValueError(f"latent size mismatch (or input shape mismatch): the encoder takes inputs of shape "
                         f"{tuple(input_shape)} and gives latents of size {dim_latent}, which the decoder does not "
                         f"take as decoder(x, s, z) ({err})") from None
    if tuple(out.shape) != tuple(input_shape):
        raise ValueError(f"the decoder must return e of the input's shape {tuple(input_shape)}; got {tuple(out.shape)}.")


def _check_encoder_output(encoder: AbstractEncoder) -> None:
    """A clear error when the encoder's (mu, log_sigma) do not have shape (dim_latent,)."""
    if not isinstance(encoder, AbstractEncoder):
        raise ValueError(f"encoder must be an AbstractEncoder (ConvEncoder, LinearEncoder); got {type(encoder).__name__}.")
    x = jax.ShapeDtypeStruct(tuple(encoder.input_shape), jnp.float32)
    eqx.filter_eval_shape(lambda e, xx: e.mean(xx), encoder, x)  # raises the encoder's shape error


# ---------------------------------------------------------------------------------------------- DAE
class DiffusionAutoencoder(eqx.Module):
    r"""Encoder $q_\phi(z|x)$ + diffusion decoder $e_\theta(x, s; z)$ (Eqs. 60-62); a protocol model with $y = z$.

    **Arguments:**

    - `encoder`: an `AbstractEncoder` (e.g. `ConvEncoder`).
    - `decoder`: a protocol model whose condition is a latent of size `encoder.dim_latent` (e.g. a `UNetDecoder`,
      an `EntropyMLP` with `dim_y`, or an exact `JointGaussianModel`).
    """

    encoder: AbstractEncoder
    decoder: eqx.Module

    def __check_init__(self):
        _check_encoder_output(self.encoder)
        _check_decoder(self.decoder, self.encoder.input_shape, self.encoder.dim_latent)

    @property
    def sde(self) -> VPSDE:
        return self.decoder.sde

    @property
    def dim_condition(self) -> int:
        """The size of the protocol condition $y$ (the latent)."""
        return self.encoder.dim_latent

    def __call__(self, x: Float[ArrayLike, "..."], s: Float[ArrayLike, ""], y: Float[ArrayLike, " dim_latent"] | None = None,
                 *, drop: Bool[ArrayLike, ""] | None = None, key: PRNGKeyArray | None = None) -> Float[Array, "..."]:
        r"""$e_\theta(x, s; z)$ for one sample with $z$ = `y`; `y=None` (or `drop`) the decoder's null latent."""
        if y is not None and jnp.shape(y) != (self.dim_condition,):
            raise ValueError(f"y (the latent) must have shape ({self.dim_condition},); got {jnp.shape(y)}.")
        return self.decoder(x, s, y, **_decoder_kwargs(drop, key))

    def sample_latent(self, x: Float[ArrayLike, "..."], *, key: PRNGKeyArray
                      ) -> tuple[Float[Array, " dim_latent"], Float[Array, ""]]:
        r"""$(z, D_{KL}(q(z|x)\|\mathcal N(0, I)))$ with $z \sim q(z|x)$ reparameterised, for one input."""
        return self.encoder.sample(x, key=key), self.encoder.kl(x)

    def encode(self, x: Float[ArrayLike, "..."], *, key: PRNGKeyArray | None = None) -> Float[Array, " dim_latent"]:
        r"""The latent of one input: a draw $z \sim q(z|x)$ with `key`, the mean $\mu(x)$ without."""
        return self.encoder.mean(x) if key is None else self.encoder.sample(x, key=key)


class SplitAutoencoder(eqx.Module):
    r"""The split-loss DAE (Eq. 70): $e_\theta(x, s; z_{sem})$ for $s \ge \tau$, $e_\theta(x, s; z_{per})$ for $s < \tau$.

    Its DEM loss is $\int_0^\tau L(z_{per}; s)\,ds + \int_\tau^T L(z_{sem}; s)\,ds$, the two latents from two
    encoders of equal latent size. As a protocol model its condition is $y = (z_{sem}, z_{per})$ (concatenated).
    An encoder whose interval is empty ($\tau = 0$: the perceptual one; $\tau = T$: the semantic one) plays no part
    in the model and its KL term is left out of the loss, so with $\tau = 0$ the split loss is exactly the
    single-latent DAE loss on $z_{sem}$ and with $\tau = T$ the one on $z_{per}$.

    **Arguments:**

    - `semantic`, `perceptual`: `AbstractEncoder`s of equal `dim_latent` and `input_shape`.
    - `decoder`: a protocol model conditioned on a latent of that size.
    - `tau`: the split time, $0 \le \tau \le T$.
    - `noisy_semantic`: feed the semantic encoder $\tilde x_\tau = \mu(\tau)x + \sqrt{1 - \mu(\tau)^2}\,\eta$ instead
      of the clean image (the paper's code feeds both encoders the clean image).
    """

    semantic: AbstractEncoder
    perceptual: AbstractEncoder
    decoder: eqx.Module
    tau_bits: UInt32[Array, ""]
    noisy_semantic: bool = eqx.field(static=True)

    def __init__(self, semantic: AbstractEncoder, perceptual: AbstractEncoder, decoder: eqx.Module, tau: float, *,
                 noisy_semantic: bool = False):
        for enc in (semantic, perceptual):
            _check_encoder_output(enc)
        if semantic.dim_latent != perceptual.dim_latent:
            raise ValueError(f"latent size mismatch: the semantic encoder gives {semantic.dim_latent} dimensions, "
                             f"the perceptual one {perceptual.dim_latent}; they must be equal.")
        if tuple(semantic.input_shape) != tuple(perceptual.input_shape):
            raise ValueError(f"both encoders must take inputs of one shape; got {tuple(semantic.input_shape)} "
                             f"and {tuple(perceptual.input_shape)}.")
        _check_decoder(decoder, semantic.input_shape, semantic.dim_latent)
        T = decoder.sde.T
        if isinstance(tau, bool) or not (isinstance(tau, (int, float, np.floating)) and math.isfinite(tau)
                                         and 0.0 <= tau <= T):
            raise ValueError(f"tau must be a number in [0, T] = [0, {T}]; got {tau!r}.")
        if not isinstance(noisy_semantic, bool):
            raise ValueError(f"noisy_semantic must be a bool; got {noisy_semantic!r}.")
        self.semantic, self.perceptual, self.decoder = semantic, perceptual, decoder
        # tau is data, not a hyperparameter of the compiled program (one compilation serves every tau), and not a
        # parameter either: kept as the bit pattern of its float32 value, which no optimiser touches.
        self.tau_bits = jnp.asarray(np.float32(min(float(tau), T)).view(np.uint32))
        self.noisy_semantic = noisy_semantic

    @property
    def tau(self) -> Float[Array, ""]:
        r"""The split time $\tau$ (float32)."""
        return jax.lax.bitcast_convert_type(self.tau_bits, jnp.float32)

    @property
    def sde(self) -> VPSDE:
        return self.decoder.sde

    @property
    def dim_latent(self) -> int:
        """The size $D_Z$ of each latent."""
        return self.semantic.dim_latent

    @property
    def dim_condition(self) -> int:
        """The size of the protocol condition $y = (z_{sem}, z_{per})$: $2D_Z$."""
        return 2 * self.dim_latent

    def split(self, y: Float[ArrayLike, " dim_condition"]) -> tuple[Float[Array, " dim_latent"], Float[Array, " dim_latent"]]:
        r"""$(z_{sem}, z_{per})$ from the concatenated condition."""
        if jnp.shape(y) != (self.dim_condition,):
            raise ValueError(f"y must be the concatenated latents (z_sem, z_per) of shape ({self.dim_condition},); "
                             f"got {jnp.shape(y)}.")
        y = jnp.asarray(y)
        return y[: self.dim_latent], y[self.dim_latent:]

    def __call__(self, x: Float[ArrayLike, "..."], s: Float[ArrayLike, ""], y: Float[ArrayLike, " dim_condition"] | None = None,
                 *, drop: Bool[ArrayLike, ""] | None = None, key: PRNGKeyArray | None = None) -> Float[Array, "..."]:
        r"""$e_\theta(x, s; z_{sem})$ if $s \ge \tau$, else $e_\theta(x, s; z_{per})$; `y=None` the null latent."""
        kwargs = _decoder_kwargs(drop, key)
        if y is None:
            return self.decoder(x, s, None, **kwargs)
        z_sem, z_per = self.split(y)
        use_sem = (jnp.asarray(s) >= self.tau) & (self.tau < self.sde.T)
        z = jnp.where(use_sem, z_sem, z_per)
        return self.decoder(x, s, z, **kwargs)

    def _semantic_input(self, x, key):
        if not self.noisy_semantic:
            return jnp.asarray(x)
        if key is None:
            raise ValueError("noisy_semantic=True: the semantic encoder sees a noisy image, so encode needs a key.")
        return self.sde.perturb(jnp.asarray(x), self.tau.astype(jnp.result_type(x)), key=key)

    def sample_latent(self, x: Float[ArrayLike, "..."], *, key: PRNGKeyArray
                      ) -> tuple[Float[Array, " dim_condition"], Float[Array, ""]]:
        r"""$((z_{sem}, z_{per}), \text{KL})$ for one input, each latent drawn from its encoder (reparameterised).

        $z_{sem}$ draws with `key` itself, as a single DAE's encoder would, and $z_{per}$ with a key folded from it;
        at $\tau = T$, where $z_{per}$ is the only latent in use, the two swap. The KL sums the encoders that have a
        non-empty interval.
        """
        early = self.tau < self.sde.T  # z_sem has a non-empty interval [tau, T]
        late = self.tau > 0  # z_per has a non-empty interval [0, tau)
        x_sem = self._semantic_input(x, jax.random.fold_in(key, 2))
        shape = (self.dim_latent,)
        eta_a = jax.random.normal(key, shape, self.semantic.mean(x_sem).dtype)
        eta_b = jax.random.normal(jax.random.fold_in(key, 1), shape, eta_a.dtype)
        z_sem = self.semantic.transform(x_sem, jnp.where(early, eta_a, eta_b))
        z_per = self.perceptual.transform(x, jnp.where(early, eta_b, eta_a))
        kl = jnp.where(early, self.semantic.kl(x_sem), 0.0) + jnp.where(late, self.perceptual.kl(x), 0.0)
        return jnp.concatenate([z_sem, z_per]), kl

    def encode(self, x: Float[ArrayLike, "..."], *, key: PRNGKeyArray | None = None) -> Float[Array, " dim_condition"]:
        r"""$(z_{sem}, z_{per})$ of one input: draws with `key`, the means without (`noisy_semantic` needs a key)."""
        if key is None:
            return jnp.concatenate([self.semantic.mean(self._semantic_input(x, None)), self.perceptual.mean(x)])
        return self.sample_latent(x, key=key)[0]


class AutoencoderLoss(eqx.Module):
    r"""The DAE loss $\mathcal L_{DEM}^{X|Z} + \gamma\,D_{KL}(q(z|x)\|\mathcal N(0, I))$ (Eqs. 60-61, 70), a `TrainingLoss`.

    For each data point: $z \sim q(z|x)$ (reparameterised, `model.sample_latent`), then the DEM loss of the model
    with condition $z$ (`dem.per_sample`, one time and one noise draw), plus $\gamma$ times the KL term. Works for
    `DiffusionAutoencoder` and `SplitAutoencoder` alike. Trained without labels (`learned.train(..., data_y=None)`).

    **Arguments:**

    - `dem`: the `DEMLoss` of the decoder (weighting, time sampler, label dropout of the latent, `model_key`). The
      default `DEMLoss()` weights every time by $\lambda = 1$ (the paper's code); Eq. 66's likelihood weighting
      $\lambda = \sigma^2/2$ is `DEMLoss(Likelihood(sde), ...)`, which `separability autoencoder` uses.
    - `gamma`: $\gamma \ge 0$ (beta-VAE weight; the paper's code: 1).
    """

    dem: DEMLoss = DEMLoss()
    gamma: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not isinstance(self.dem, DEMLoss):
            raise ValueError(f"dem must be a DEMLoss; got {type(self.dem).__name__}.")
        g = self.gamma
        if isinstance(g, bool) or not (isinstance(g, (int, float)) and math.isfinite(g) and g >= 0):
            raise ValueError(f"gamma must be a finite number >= 0; got {g!r}.")

    def per_sample(self, model, x: Float[Array, "..."], *, key: PRNGKeyArray) -> Float[Array, ""]:
        """The loss of one data point."""
        k_latent, k_dem = jax.random.split(key)
        z, kl = model.sample_latent(x, key=k_latent)
        return self.dem.per_sample(model, x, z, key=k_dem) + self.gamma * kl

    def __call__(self, model, x: Float[Array, "batch ..."], y=None, *, key: PRNGKeyArray) -> Float[Array, ""]:
        """The batch mean of `per_sample`; `y` must be `None` (the latent is the condition)."""
        if y is not None:
            raise ValueError("AutoencoderLoss trains without labels: call learned.train(model, x, None, ...).")
        if isinstance(self.dem.weighting, Likelihood) and self.dem.weighting.sde != model.sde:
            raise ValueError(f"Likelihood weighting was built for {self.dem.weighting.sde}, but the model's sde is {model.sde}.")
        keys = jax.random.split(key, x.shape[0])
        return jnp.mean(jax.vmap(lambda xi, ki: self.per_sample(model, xi, key=ki))(x, keys))


# ---------------------------------------------------------------------------------------------- VAE
class VAE(eqx.Module):
    r"""Encoder $q_\phi(z|x)$ + Gaussian decoder $p_\psi(x|z) = \mathcal N(f_\psi(z), \sigma_{dec}^2 I)$ (Eq. 64).

    $f_\psi$ is an MLP from the latent to the flattened input.

    **Arguments:**

    - `encoder`: an `AbstractEncoder`.
    - `sigma_dec`: the decoder's fixed standard deviation $\sigma_{dec} > 0$.
    - `hidden`, `depth`: the MLP's width and number of hidden layers.
    - `key`: initialisation key.
    """

    encoder: AbstractEncoder
    decoder: eqx.nn.MLP
    sigma_dec: float = eqx.field(static=True)

    def __init__(self, encoder: AbstractEncoder, *, sigma_dec: float = 0.1, hidden: int = 256, depth: int = 2,
                 key: PRNGKeyArray):
        _check_encoder_output(encoder)
        if isinstance(sigma_dec, bool) or not (isinstance(sigma_dec, (int, float)) and math.isfinite(sigma_dec)
                                               and sigma_dec > 0):
            raise ValueError(f"sigma_dec must be a finite number > 0; got {sigma_dec!r}.")
        key = check_key(key)
        self.encoder = encoder
        self.decoder = eqx.nn.MLP(encoder.dim_latent, int(np.prod(encoder.input_shape)), hidden, depth,
                                  activation=jax.nn.gelu, dtype=jnp.float32, key=key)
        self.sigma_dec = float(sigma_dec)

    def decode(self, z: Float[ArrayLike, " dim_latent"]) -> Float[Array, "..."]:
        r"""The decoder mean $f_\psi(z)$, in the input's shape."""
        if jnp.shape(z) != (self.encoder.dim_latent,):
            raise ValueError(f"z must have shape ({self.encoder.dim_latent},); got {jnp.shape(z)}.")
        return self.decoder(jnp.asarray(z, jnp.float32)).reshape(self.encoder.input_shape)

    def sample_latent(self, x: Float[ArrayLike, "..."], *, key: PRNGKeyArray
                      ) -> tuple[Float[Array, " dim_latent"], Float[Array, ""]]:
        r"""$(z, D_{KL}(q(z|x)\|\mathcal N(0, I)))$ with $z \sim q(z|x)$ reparameterised."""
        return self.encoder.sample(x, key=key), self.encoder.kl(x)

    def encode(self, x: Float[ArrayLike, "..."], *, key: PRNGKeyArray | None = None) -> Float[Array, " dim_latent"]:
        r"""A draw $z \sim q(z|x)$ with `key`, the mean $\mu(x)$ without."""
        return self.encoder.mean(x) if key is None else self.encoder.sample(x, key=key)

    def reconstruct(self, x: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
        r"""$f_\psi(\mu(x))$: the reconstruction of one input from its mean latent."""
        return self.decode(self.encoder.mean(x))

    def negative_log_likelihood(self, x: Float[ArrayLike, "..."], z: Float[ArrayLike, " dim_latent"]) -> Float[Array, ""]:
        r"""$-\log p_\psi(x|z) = \|x - f_\psi(z)\|^2/(2\sigma_{dec}^2) + \tfrac D2\log(2\pi\sigma_{dec}^2)$, in nats."""
        x = jnp.asarray(x, jnp.float32)
        d = x.size
        return (0.5 * jnp.sum((x - self.decode(z)) ** 2) / self.sigma_dec**2
                + 0.5 * d * math.log(2 * math.pi * self.sigma_dec**2))


class VAELoss(eqx.Module):
    r"""The negative ELBO $\mathbb E_{q(z|x)}[-\log p_\psi(x|z)] + \gamma D_{KL}(q(z|x)\|\mathcal N(0, I))$ (Eqs. 60, 64),
    one reparameterised draw per data point, in nats; a `TrainingLoss` (trained without labels).

    **Arguments:**

    - `gamma`: $\gamma \ge 0$.
    """

    gamma: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        g = self.gamma
        if isinstance(g, bool) or not (isinstance(g, (int, float)) and math.isfinite(g) and g >= 0):
            raise ValueError(f"gamma must be a finite number >= 0; got {g!r}.")

    def __call__(self, model: VAE, x: Float[Array, "batch ..."], y=None, *, key: PRNGKeyArray) -> Float[Array, ""]:
        """The batch mean of the negative ELBO; `y` must be `None`."""
        if y is not None:
            raise ValueError("VAELoss trains without labels: call learned.train(model, x, None, ...).")

        def one(xi, ki):
            z, kl = model.sample_latent(xi, key=ki)
            return model.negative_log_likelihood(xi, z) + self.gamma * kl

        return jnp.mean(jax.vmap(one)(x, jax.random.split(key, x.shape[0])))


# ---------------------------------------------------------------------------------------------- batches
def encode_batch(model, x: Float[ArrayLike, "batch ..."], *, chunk_size: int = 512,
                 key: PRNGKeyArray | None = None) -> np.ndarray:
    r"""The latents of a batch of inputs, `model.encode` vmapped in chunks: draws $z \sim q(z|x)$ with `key`,
    means without. Works for `DiffusionAutoencoder`, `SplitAutoencoder` (rows $(z_{sem}, z_{per})$) and `VAE`.

    **Arguments:**

    - `model`: an autoencoder with `encode(x, *, key=None)`.
    - `x`: inputs, one per row; must be finite.
    - `chunk_size`: rows per compiled call.
    - `key`: PRNG key for the draws, or `None` for the means.

    **Returns:**

    A float32 NumPy array with one latent per row.
    """
    x = np.asarray(x)
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x must be a float array of inputs, one per row; got shape {x.shape}, dtype {x.dtype}.")
    if not np.all(np.isfinite(x)):
        bad = np.flatnonzero(~np.all(np.isfinite(x.reshape(len(x), -1)), axis=1))
        raise ValueError(f"x must be finite; {len(bad)} of its {len(x)} images hold NaN or infinity "
                         f"(first at row {bad[0]}).")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}.")
    key = None if key is None else check_key(key)

    out = []
    for i, start in enumerate(range(0, len(x), chunk_size)):
        xs = jnp.asarray(x[start:start + chunk_size], jnp.float32)
        keys = None if key is None else jax.random.split(jax.random.fold_in(key, i), len(xs))
        out.append(np.asarray(_encode_chunk(model, xs, keys), np.float32))
    return np.concatenate(out)


@eqx.filter_jit
def _encode_chunk(model, xs, keys):
    if keys is None:
        return jax.vmap(lambda xi: model.encode(xi))(xs)
    return jax.vmap(lambda xi, ki: model.encode(xi, key=ki))(xs, keys)
