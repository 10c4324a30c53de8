r"""Gaussian encoders $q_\phi(z|x) = \mathcal N(z; \mu_\phi(x), \mathrm{diag}\,\sigma_\phi^2(x))$ (Eq. 62) for autoencoders.

An encoder maps ONE input to the mean and log standard deviation of its latent; `sample` draws
$z = \mu + \sigma\odot\eta$, $\eta \sim \mathcal N(0, I)$ (the reparameterisation trick, so gradients reach $\phi$), and
`kl` is the closed form $D_{KL}(q(z|x)\,\|\,\mathcal N(0, I)) = \tfrac12\sum_k(\mu_k^2 + \sigma_k^2 - 1 - 2\log\sigma_k)$ in
nats. Batch with `jax.vmap` at the call site.
"""

from __future__ import annotations

import abc
import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from gaussian_oracle import check_key

__all__ = ["AbstractEncoder", "EncoderConfig", "ConvEncoder", "LinearEncoder"]


class AbstractEncoder(eqx.Module):
    r"""A Gaussian encoder $q(z|x) = \mathcal N(\mu(x), \mathrm{diag}\,\sigma^2(x))$ for one input (Eq. 62).

    Subclasses give `input_shape`, `dim_latent` and `__call__(x) -> (mu, log_sigma)`; `sample`, `kl` and `mean`
    are shared.
    """

    @property
    @abc.abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input."""

    @property
    @abc.abstractmethod
    def dim_latent(self) -> int:
        """The latent size $D_Z$."""

    @abc.abstractmethod
    def __call__(self, x: Float[ArrayLike, "..."]) -> tuple[Float[Array, " dim_latent"], Float[Array, " dim_latent"]]:
        r"""$(\mu(x), \log\sigma(x))$ for one input."""

    def _moments(self, x):
        if jnp.shape(x) != tuple(self.input_shape):
            raise ValueError(f"x must have shape {tuple(self.input_shape)} for one input (vmap for batches); "
                             f"got {jnp.shape(x)}.")
        mu, log_sigma = self(x)
        expected = (self.dim_latent,)
        if jnp.shape(mu) != expected or jnp.shape(log_sigma) != expected:
            raise ValueError(f"{type(self).__name__} must return (mu, log_sigma) of shape {expected} each; got "
                             f"{jnp.shape(mu)} and {jnp.shape(log_sigma)}.")
        return mu, log_sigma

    def mean(self, x: Float[ArrayLike, "..."]) -> Float[Array, " dim_latent"]:
        r"""$\mu(x)$: the deterministic code of one input."""
        return self._moments(x)[0]

    def sample(self, x: Float[ArrayLike, "..."], *, key: PRNGKeyArray) -> Float[Array, " dim_latent"]:
        r"""One draw $z = \mu(x) + \sigma(x)\odot\eta$, $\eta \sim \mathcal N(0, I)$ (reparameterised).

        **Arguments:**

        - `x`: one input of shape `input_shape`.
        - `key`: PRNG key for $\eta$.

        **Returns:**

        The latent, shape (dim_latent,).
        """
        key = check_key(key)
        mu, _ = self._moments(x)
        return self.transform(x, jax.random.normal(key, mu.shape, mu.dtype))

    def transform(self, x: Float[ArrayLike, "..."], eta: Float[ArrayLike, " dim_latent"]) -> Float[Array, " dim_latent"]:
        r"""$z = \mu(x) + \sigma(x)\odot\eta$ for a given standard-normal $\eta$ (what `sample` draws)."""
        mu, log_sigma = self._moments(x)
        if jnp.shape(eta) != mu.shape:
            raise ValueError(f"eta must have shape {mu.shape}; got {jnp.shape(eta)}.")
        return mu + jnp.exp(log_sigma) * eta

    def kl_per_coordinate(self, x: Float[ArrayLike, "..."]) -> Float[Array, " dim_latent"]:
        r"""$\tfrac12(\mu_k^2 + \sigma_k^2 - 1 - 2\log\sigma_k)$ per latent coordinate k, in nats: near 0 where the
        coordinate has collapsed onto the prior."""
        mu, log_sigma = self._moments(x)
        return 0.5 * (mu**2 + jnp.exp(2.0 * log_sigma) - 1.0 - 2.0 * log_sigma)

    def kl(self, x: Float[ArrayLike, "..."]) -> Float[Array, ""]:
        r"""$D_{KL}(q(z|x)\,\|\,\mathcal N(0, I)) = \tfrac12\sum_k(\mu_k^2 + \sigma_k^2 - 1 - 2\log\sigma_k)$, in nats."""
        return jnp.sum(self.kl_per_coordinate(x))


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    r"""Architecture of a `ConvEncoder` (frozen).

    **Arguments:**

    - `image_shape`: `(channels, height, width)` of one image.
    - `dim_latent`: $D_Z$.
    - `channels`: one entry per stage; each stage is `blocks_per_stage` same-padded 3 x 3 convolutions followed by a
      stride-2 3 x 3 convolution (while the image is at least 2 pixels high). More stages: a larger receptive field
      (the paper gives the semantic encoder more layers than the perceptual one).
    - `blocks_per_stage`: stride-1 convolutions per stage.
    - `hidden`: width of the dense layer before the two heads.
    - `min_log_sigma`: $\log\sigma$ is kept above this (smoothly): a floor on the posterior width.
    - `init_log_sigma`: $\log\sigma$ of the untrained encoder, for every input (above `min_log_sigma`). A narrow
      start lets the decoder read the latent from the first step: on the digits (D_Z = 20, gamma = 0.01, 400
      steps) the 5-NN label accuracy of the latent draws was 0.52 from a start at $\sigma = 1$ and 0.68 from
      $\sigma = e^{-2}$ (`benchmarks/bench_autoencoder_collapse.py`).
    """

    image_shape: tuple[int, int, int]
    dim_latent: int
    channels: tuple[int, ...] = (32, 64)
    blocks_per_stage: int = 1
    hidden: int = 128
    min_log_sigma: float = -7.0
    init_log_sigma: float = -2.0

    def __post_init__(self):
        def positive(name, value):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EncoderConfig.{name} must be a positive integer; got {value!r}.")

        if not (isinstance(self.image_shape, tuple) and len(self.image_shape) == 3):
            raise ValueError(f"EncoderConfig.image_shape must be a tuple (channels, height, width); got {self.image_shape!r}.")
        for value in self.image_shape:
            positive("image_shape", value)
        positive("dim_latent", self.dim_latent)
        positive("hidden", self.hidden)
        if isinstance(self.blocks_per_stage, bool) or not isinstance(self.blocks_per_stage, int) or self.blocks_per_stage < 0:
            raise ValueError(f"EncoderConfig.blocks_per_stage must be an integer >= 0; got {self.blocks_per_stage!r}.")
        if not (isinstance(self.channels, tuple) and self.channels):
            raise ValueError(f"EncoderConfig.channels must be a non-empty tuple; got {self.channels!r}.")
        for value in self.channels:
            positive("channels", value)
        if not (isinstance(self.min_log_sigma, (int, float)) and math.isfinite(self.min_log_sigma)):
            raise ValueError(f"EncoderConfig.min_log_sigma must be a finite number; got {self.min_log_sigma!r}.")
        if not (isinstance(self.init_log_sigma, (int, float)) and math.isfinite(self.init_log_sigma)
                and self.init_log_sigma > self.min_log_sigma):
            raise ValueError(f"EncoderConfig.init_log_sigma must be a finite number above min_log_sigma = "
                             f"{self.min_log_sigma}; got {self.init_log_sigma!r}.")


class ConvEncoder(AbstractEncoder):
    r"""Convolutional Gaussian encoder $q_\phi(z|x)$ for one image (Eq. 62).

    $h = \mathrm{conv\ stages}(x)$ (each convolution followed by GroupNorm and gelu), then
    $u = \mathrm{gelu}(\mathrm{LN}(W h))$, $\mu = W_\mu u$ and $\log\sigma = m + \mathrm{softplus}(W_\sigma u)$ with
    $m$ = `min_log_sigma` (a smooth floor).

    The normalisations are what lets an untrained encoder's $\mu(x)$ differ between inputs: without them each
    layer at Equinox's default initialisation shrinks the spread across inputs about three-fold, and on the digits
    the spread of $\mu$ at initialisation was 2e-4 against a posterior width of 1, a latent the decoder could not
    tell from noise and learnt to ignore (`tests/test_autoencoder.py` checks the spread).

    The $\log\sigma$ head starts with zero weights and the bias that gives $\log\sigma$ = `init_log_sigma` for
    every input.

    **Arguments:**

    - `config`: an `EncoderConfig`.
    - `key`: initialisation key.
    """

    config: EncoderConfig = eqx.field(static=True)
    convs: tuple[eqx.nn.Conv2d, ...]
    norms: tuple[eqx.nn.GroupNorm, ...]
    dense: eqx.nn.Linear
    dense_norm: eqx.nn.LayerNorm
    head_mu: eqx.nn.Linear
    head_sigma: eqx.nn.Linear

    def __init__(self, config: EncoderConfig, *, key: PRNGKeyArray):
        if not isinstance(config, EncoderConfig):
            raise ValueError(f"config must be an EncoderConfig; got {type(config).__name__}.")
        key = check_key(key)
        self.config = config
        cin, height, width = config.image_shape
        layers = []
        for cout in config.channels:
            for _ in range(config.blocks_per_stage):
                layers.append((cin, cout, 1))
                cin = cout
            stride = 2 if height >= 2 and width >= 2 else 1
            layers.append((cin, cout, stride))
            cin = cout
            if stride == 2:
                height, width = (height + 1) // 2, (width + 1) // 2
        keys = jax.random.split(key, len(layers) + 3)
        dtype = jnp.float32  # whatever the JAX mode, like the other networks
        self.convs = tuple(eqx.nn.Conv2d(a, b, 3, stride=s, padding=1, dtype=dtype, key=k)
                           for (a, b, s), k in zip(layers, keys))
        self.norms = tuple(eqx.nn.GroupNorm(math.gcd(b, 8), b, dtype=dtype) for _, b, _ in layers)
        self.dense = eqx.nn.Linear(cin * height * width, config.hidden, dtype=dtype, key=keys[-3])
        self.dense_norm = eqx.nn.LayerNorm(config.hidden, dtype=dtype)
        self.head_mu = eqx.nn.Linear(config.hidden, config.dim_latent, dtype=dtype, key=keys[-2])
        head = eqx.nn.Linear(config.hidden, config.dim_latent, dtype=dtype, key=keys[-1])
        m = float(config.min_log_sigma)
        bias = math.log(math.expm1(config.init_log_sigma - m))  # softplus(bias) = init - m: log_sigma = init
        self.head_sigma = eqx.tree_at(lambda l: (l.weight, l.bias), head,
                                      (jnp.zeros_like(head.weight), jnp.full_like(head.bias, bias)))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.config.image_shape

    @property
    def dim_latent(self) -> int:
        return self.config.dim_latent

    def __call__(self, x: Float[ArrayLike, "channels height width"]
                 ) -> tuple[Float[Array, " dim_latent"], Float[Array, " dim_latent"]]:
        r"""$(\mu(x), \log\sigma(x))$ for one image."""
        h = jnp.asarray(x, jnp.float32)
        for conv, norm in zip(self.convs, self.norms):
            h = jax.nn.gelu(norm(conv(h)))
        h = jax.nn.gelu(self.dense_norm(self.dense(h.reshape(-1))))
        m = self.config.min_log_sigma
        return self.head_mu(h), m + jax.nn.softplus(self.head_sigma(h))


class LinearEncoder(AbstractEncoder):
    r"""A fixed linear Gaussian encoder $z = Wx + \sigma\eta$: $q(z|x) = \mathcal N(Wx, \sigma^2 I)$.

    Not trained (its parameters are behind `stop_gradient`). With $x \sim \mathcal N(0, \Sigma_X)$ the pair
    $(X, Z)$ is the joint Gaussian `gaussian_oracle.JointGaussian(Sigma_X, A=W, sigma_eps=sigma)`, whose exact $e^*$
    is then the ideal decoder of a diffusion autoencoder: the oracle tie-in of the autoencoder.

    **Arguments:**

    - `weight`: $W$, shape (dim_latent, dim_x).
    - `sigma`: $\sigma > 0$.
    """

    weight: Float[Array, "dim_latent dim_x"]
    log_sigma: Float[Array, ""]

    def __init__(self, weight: Float[ArrayLike, "dim_latent dim_x"], sigma: float):
        weight = np.asarray(weight)
        if weight.ndim != 2 or min(weight.shape) < 1 or not np.all(np.isfinite(weight)):
            raise ValueError(f"weight must be a finite matrix of shape (dim_latent, dim_x); got shape {weight.shape}.")
        if isinstance(sigma, bool) or not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0; got {sigma!r}.")
        self.weight = jnp.asarray(weight, dtype=float)
        self.log_sigma = jnp.asarray(math.log(sigma), dtype=float)

    @property
    def input_shape(self) -> tuple[int]:
        return (self.weight.shape[1],)

    @property
    def dim_latent(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x: Float[ArrayLike, " dim_x"]) -> tuple[Float[Array, " dim_latent"], Float[Array, " dim_latent"]]:
        r"""$(Wx, \log\sigma\,\mathbf 1)$ for one input."""
        weight = jax.lax.stop_gradient(self.weight)
        mu = weight @ jnp.asarray(x, weight.dtype)
        return mu, jnp.full(mu.shape, jax.lax.stop_gradient(self.log_sigma), mu.dtype)
