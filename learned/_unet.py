r"""A U-Net with self-attention that learns the entropy-matching vector $e_\theta(x, s; y)$ for images (Eq. 4).

The architecture follows the DDPM / improved-DDPM U-Net the paper used (Ho & Salimans, 2022): residual blocks with
GroupNorm and a scale-shift (FiLM) modulation by the time-and-condition embedding, self-attention at chosen
resolutions and in the middle, skip connections between the down and up paths. One network gives the conditional and
the unconditional $e$ through a null label, and takes an optional latent vector (the diffusion autoencoder's decoder).
Mixed precision: parameters are stored in `param_dtype` and cast to `compute_dtype` (e.g. bfloat16) once per call;
normalisations, softmax and the output stay in float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from gaussian_oracle import VPSDE, check_key, check_label

from ._train import _decay_mask  # the one walk over `constant_fields` (the training loop's)

__all__ = ["UNetConfig", "EntropyUNet", "unet_forward_flops", "parameter_count"]


# ---------------------------------------------------------------------------------------------- configuration
@dataclasses.dataclass(frozen=True)
class UNetConfig:
    r"""Architecture of an `EntropyUNet` (frozen: hashable and static under jit).

    **Arguments:**

    - `image_shape`: `(channels, height, width)` of one image; height and width divisible by
      $2^{\text{len(channel\_mult)} - 1}$.
    - `channels`: base channel count.
    - `channel_mult`: channel multiplier per resolution level (one level per entry; each level but the last halves
      the resolution).
    - `num_res_blocks`: residual blocks per level on the way down (the way up has one more per level).
    - `attention_resolutions`: resolutions (height in pixels) with a self-attention layer after each residual block;
      the middle always has one.
    - `embed_dim`: width of the time-and-condition embedding (`None`: 4 x `channels`).
    - `num_classes`: number of class labels, or `None` for no label input. The label table has `num_classes + 1`
      rows; the last one is the null label ($y$ = `None`).
    - `dim_latent`: size of a latent-vector condition (diffusion autoencoder), or `None`.
    - `dropout`: dropout probability inside residual blocks (active only when a `key` is passed to the call).
    - `num_heads`: attention heads.
    - `num_groups`: GroupNorm groups (at most; reduced to divide the channel count).
    - `data_std`: input scaling $c_{in}(s) = (\alpha\sigma_d^2 + 1 - \alpha)^{-1/2}$ (1 means none).
    - `min_std`: output scaling $c_{out}(s) = \alpha/\sqrt{\alpha\sigma_{min}^2 + 1 - \alpha}$ (as in `MLPConfig`);
      `None` for $c_{out} = 1$.
    - `param_dtype`: dtype of the stored parameters.
    - `compute_dtype`: dtype of convolutions and matmuls (`jnp.bfloat16` for mixed precision).
    """

    image_shape: tuple[int, int, int]
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    embed_dim: int | None = None
    num_classes: int | None = None
    dim_latent: int | None = None
    dropout: float = 0.0
    num_heads: int = 1
    num_groups: int = 32
    data_std: float = 1.0
    min_std: float | None = None
    param_dtype: type = jnp.float32
    compute_dtype: type = jnp.float32

    def __post_init__(self):
        def positive(name, value):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive integer; got {value!r}.")

        if not (isinstance(self.image_shape, tuple) and len(self.image_shape) == 3):
            raise ValueError(f"UNetConfig.image_shape must be a tuple (channels, height, width); got {self.image_shape!r}.")
        for value in self.image_shape:
            positive("image_shape", value)
        for name in ("channels", "num_res_blocks", "num_heads", "num_groups"):
            positive(name, getattr(self, name))
        if not (isinstance(self.channel_mult, tuple) and self.channel_mult):
            raise ValueError(f"UNetConfig.channel_mult must be a non-empty tuple; got {self.channel_mult!r}.")
        for value in self.channel_mult:
            positive("channel_mult", value)
        if not isinstance(self.attention_resolutions, tuple):
            raise ValueError(f"UNetConfig.attention_resolutions must be a tuple; got {self.attention_resolutions!r}.")
        for name in ("embed_dim", "num_classes", "dim_latent"):
            if getattr(self, name) is not None:
                positive(name, getattr(self, name))
        factor = 2 ** (len(self.channel_mult) - 1)
        _, height, width = self.image_shape
        if height % factor or width % factor:
            raise ValueError(
                f"UNetConfig: height and width {self.image_shape[1:]} must be divisible by 2^(levels - 1) = {factor} "
                f"for channel_mult={self.channel_mult}."
            )
        for c in {self.channels * m for m in self.channel_mult}:
            if c % self.num_heads:
                raise ValueError(f"UNetConfig: channel count {c} is not divisible by num_heads={self.num_heads}.")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"UNetConfig.dropout must lie in [0, 1); got {self.dropout!r}.")
        if not (isinstance(self.data_std, (int, float)) and math.isfinite(self.data_std) and self.data_std > 0):
            raise ValueError(f"UNetConfig.data_std must be a finite number > 0; got {self.data_std!r}.")
        if self.min_std is not None and not (
            isinstance(self.min_std, (int, float)) and math.isfinite(self.min_std) and self.min_std > 0
        ):
            raise ValueError(f"UNetConfig.min_std must be a finite number > 0 or None; got {self.min_std!r}.")
        for name in ("param_dtype", "compute_dtype"):
            if not jnp.issubdtype(getattr(self, name), jnp.floating):
                raise ValueError(f"UNetConfig.{name} must be a floating dtype; got {getattr(self, name)!r}.")

    @property
    def embed_width(self) -> int:
        return 4 * self.channels if self.embed_dim is None else self.embed_dim

    # ------------------------------------------------------------------ presets
    @classmethod
    def cifar10_reference(cls, **overrides) -> "UNetConfig":
        """The reference CIFAR-10 network of the paper's code: ch 256, emb 1024, ch_mult (1, 1, 1), 2 res blocks,
        attention at 16 and 8 plus the middle, 10 labels (about 42.1M parameters). `overrides` replace fields."""
        base = dict(image_shape=(3, 32, 32), channels=256, channel_mult=(1, 1, 1), num_res_blocks=2,
                    attention_resolutions=(16, 8), embed_dim=1024, num_classes=10, dropout=0.1)
        return cls(**{**base, **overrides})

    @classmethod
    def mnist_small(cls, **overrides) -> "UNetConfig":
        """A small 28 x 28 network (ch 32, ch_mult (1, 2, 2), 2 res blocks, attention at 7): about 1.74M parameters."""
        base = dict(image_shape=(1, 28, 28), channels=32, channel_mult=(1, 2, 2), num_res_blocks=2,
                    attention_resolutions=(7,), embed_dim=128, num_classes=10, num_groups=8)
        return cls(**{**base, **overrides})

    @classmethod
    def digits_tiny(cls, **overrides) -> "UNetConfig":
        """A CPU-sized 8 x 8 network for scikit-learn's digits (ch 32, ch_mult (1, 2), 1 res block, attention at 4)."""
        base = dict(image_shape=(1, 8, 8), channels=32, channel_mult=(1, 2), num_res_blocks=1,
                    attention_resolutions=(4,), embed_dim=128, num_classes=10, num_groups=8)
        return cls(**{**base, **overrides})


# ---------------------------------------------------------------------------------------------- layers
def _groups(channels: int, wanted: int) -> int:
    g = min(wanted, channels)
    while channels % g:
        g -= 1
    return g


_BLOCK = 1 << 20
"""Random numbers per draw of a `_Stream`."""


class _Stream:
    """Random numbers of one distribution, drawn `_BLOCK` at a time (one compiled kernel) and handed out in order."""

    def __init__(self, draw, key: PRNGKeyArray):
        self.draw, self.key = draw, key
        self.block, self.used, self.drawn = None, _BLOCK, 0

    def take(self, size: int):
        """The next `size` numbers, flat (NumPy for a concrete key, a tracer under `eqx.filter_eval_shape`)."""
        pieces = []
        while size > 0:
            if self.used == _BLOCK:
                block = self.draw(jax.random.fold_in(self.key, self.drawn), (_BLOCK,), jnp.float32)
                self.block = block if isinstance(block, jax.core.Tracer) else np.asarray(block)
                self.used, self.drawn = 0, self.drawn + 1
            n = min(size, _BLOCK - self.used)
            pieces.append(self.block[self.used:self.used + n])
            self.used, size = self.used + n, size - n
        if len(pieces) == 1:
            return pieces[0]
        return (jnp if isinstance(pieces[0], jax.core.Tracer) else np).concatenate(pieces)


class _Init:
    r"""Initial parameters for the layers of one network, each layer built by explicit code.

    Equinox's own distributions: weights and biases of linear and convolutional layers
    $\mathcal U(\pm 1/\sqrt{\text{fan-in}})$, embeddings $\mathcal N(0, 1)$ (GroupNorm, built without randomness,
    has scale one and shift zero). A layer built with `zero=True` starts at zero instead: the caller says so where it
    builds the layer (the last layer of every residual branch and the output convolution).

    The numbers are cut from two `_Stream`s (uniform and normal) drawn in blocks of `_BLOCK`, so one compiled random
    kernel per distribution serves every layer: drawing layer by layer compiles one kernel per parameter shape, tens
    of seconds for the CIFAR-10 network on a CPU. Works with a concrete key and with a traced one (under
    `eqx.filter_eval_shape`). Used only while an `EntropyUNet` is built; not a module.

    **Arguments:**

    - `dtype`: the parameters' dtype.
    - `key`: the network's initialisation key.
    """

    def __init__(self, dtype, *, key: PRNGKeyArray):
        self.dtype = dtype
        k_uniform, k_normal = jax.random.split(key)
        self._uniform = _Stream(functools.partial(jax.random.uniform, minval=-1.0, maxval=1.0), k_uniform)
        self._normal = _Stream(jax.random.normal, k_normal)

    def _array(self, values, shape):
        return jnp.asarray(values.reshape(shape), self.dtype)

    def uniform(self, shape: tuple[int, ...], bound: float) -> Array:
        r"""$\mathcal U(\pm$`bound`$)$ of the given shape."""
        return self._array(self._uniform.take(math.prod(shape)) * np.float32(bound), shape)

    def normal(self, shape: tuple[int, ...]) -> Array:
        r"""$\mathcal N(0, 1)$ of the given shape."""
        return self._array(self._normal.take(math.prod(shape)), shape)

    def _weights(self, layer, fan_in: int, zero: bool):
        shapes = (layer.weight.shape, layer.bias.shape)
        if zero:
            values = tuple(jnp.zeros(shape, self.dtype) for shape in shapes)
        else:
            values = tuple(self.uniform(shape, 1.0 / math.sqrt(fan_in)) for shape in shapes)
        return eqx.tree_at(lambda l: (l.weight, l.bias), layer, values)

    def linear(self, cin: int, cout: int, *, zero: bool = False) -> eqx.nn.Linear:
        """An `eqx.nn.Linear(cin, cout)`: fan-in `cin`; zero when `zero`."""
        return self._weights(_shape_only(eqx.nn.Linear, cin, cout, dtype=self.dtype), cin, zero)

    def conv(self, cin: int, cout: int, kernel: int, *, stride: int = 1, zero: bool = False) -> eqx.nn.Conv2d:
        """A same-padded `eqx.nn.Conv2d`: fan-in `cin * kernel**2`; zero when `zero`."""
        layer = _shape_only(eqx.nn.Conv2d, cin, cout, kernel, stride=stride, padding=kernel // 2, dtype=self.dtype)
        return self._weights(layer, cin * kernel * kernel, zero)

    def embedding(self, num: int, dim: int) -> eqx.nn.Embedding:
        r"""An `eqx.nn.Embedding(num, dim)` with $\mathcal N(0, 1)$ rows."""
        layer = _shape_only(eqx.nn.Embedding, num, dim, dtype=self.dtype)
        return eqx.tree_at(lambda l: l.weight, layer, self.normal(layer.weight.shape))


def _shape_only(cls, *args, **kwargs):
    """`cls(*args, **kwargs)` traced, not run: the layer's structure with `jax.ShapeDtypeStruct` parameters."""
    return eqx.filter_eval_shape(cls, *args, **kwargs, key=jax.random.key(0))


class _GroupNorm(eqx.Module):
    """GroupNorm over (channels, height, width) computed in float32 whatever the input dtype."""

    weight: Float[Array, " channels"]
    bias: Float[Array, " channels"]
    groups: int = eqx.field(static=True)

    def __init__(self, channels: int, groups: int, dtype):
        self.weight = jnp.ones(channels, dtype)
        self.bias = jnp.zeros(channels, dtype)
        self.groups = groups

    def __call__(self, h: Float[Array, "channels height width"]) -> Float[Array, "channels height width"]:
        c = h.shape[0]
        z = h.astype(jnp.float32).reshape(self.groups, -1)
        z = (z - z.mean(axis=1, keepdims=True)) * jax.lax.rsqrt(z.var(axis=1, keepdims=True) + 1e-6)
        z = z.reshape(h.shape) * self.weight.astype(jnp.float32).reshape(c, 1, 1) + self.bias.astype(jnp.float32).reshape(c, 1, 1)
        return z.astype(h.dtype)


class _ResBlock(eqx.Module):
    r"""$h \mapsto \mathrm{skip}(h) + \mathrm{conv}_2(\mathrm{drop}(\mathrm{silu}(\mathrm{GN}(\mathrm{conv}_1(\mathrm{silu}(\mathrm{GN}(h))))(1 + a) + b)))$,
    with $(a, b)$ = Linear(silu(emb))."""

    norm1: _GroupNorm
    conv1: eqx.nn.Conv2d
    film: eqx.nn.Linear
    norm2: _GroupNorm
    dropout: eqx.nn.Dropout
    conv2: eqx.nn.Conv2d
    skip: eqx.nn.Conv2d | None

    def __init__(self, cin: int, cout: int, embed: int, config: UNetConfig, *, init: _Init):
        dtype = config.param_dtype
        self.norm1 = _GroupNorm(cin, _groups(cin, config.num_groups), dtype)
        self.conv1 = init.conv(cin, cout, 3)
        self.film = init.linear(embed, 2 * cout)
        self.norm2 = _GroupNorm(cout, _groups(cout, config.num_groups), dtype)
        self.dropout = eqx.nn.Dropout(config.dropout)
        self.conv2 = init.conv(cout, cout, 3, zero=True)  # the branch starts at zero: the block starts as the identity
        self.skip = None if cin == cout else init.conv(cin, cout, 1)

    def __call__(self, h, emb, key):
        z = self.conv1(jax.nn.silu(self.norm1(h)))
        scale, shift = jnp.split(self.film(jax.nn.silu(emb)), 2)
        z = self.norm2(z) * (1 + scale[:, None, None]) + shift[:, None, None]
        z = self.dropout(jax.nn.silu(z), key=key, inference=key is None)
        return (h if self.skip is None else self.skip(h)) + self.conv2(z)


class _Attention(eqx.Module):
    """Multi-head self-attention over the pixels, residual; softmax in float32."""

    norm: _GroupNorm
    qkv: eqx.nn.Conv2d
    proj: eqx.nn.Conv2d
    num_heads: int = eqx.field(static=True)

    def __init__(self, channels: int, config: UNetConfig, *, init: _Init):
        self.norm = _GroupNorm(channels, _groups(channels, config.num_groups), config.param_dtype)
        self.qkv = init.conv(channels, 3 * channels, 1)
        self.proj = init.conv(channels, channels, 1, zero=True)  # the branch starts at zero
        self.num_heads = config.num_heads

    def __call__(self, h):
        c, height, width = h.shape
        heads, d = self.num_heads, c // self.num_heads
        q, k, v = jnp.split(self.qkv(self.norm(h)).reshape(3 * heads, d, height * width), 3)
        logits = jnp.einsum("hdi,hdj->hij", q, k, preferred_element_type=jnp.float32) / math.sqrt(d)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = jnp.einsum("hij,hdj->hdi", weights, v).reshape(c, height, width)
        return h + self.proj(out)


class _Level(eqx.Module):
    """One resolution level: residual blocks, each optionally followed by attention, then a resampling conv."""

    blocks: tuple[_ResBlock, ...]
    attentions: tuple[_Attention | None, ...]
    resample: eqx.nn.Conv2d | None
    up: bool = eqx.field(static=True)


def _sinusoidal(s: Float[Array, ""], dim: int) -> Float[Array, " dim"]:
    half = dim // 2
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))
    angle = 1000.0 * s.astype(jnp.float32) * freqs
    out = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)])
    return jnp.pad(out, (0, dim - 2 * half))


# ---------------------------------------------------------------------------------------------- network
class EntropyUNet(eqx.Module):
    r"""U-Net entropy-matching network $e_\theta(x, s; y)$ for one image (Eq. 4), satisfying the model protocol.

    $$e_\theta(x, s; y) = c_{out}(s)\,F_\theta\big(c_{in}(s)x,\ s,\ E(y) + L(z)\big)$$
    with the scalings of `EntropyMLP` ($c_{in}$ from `data_std`, $c_{out}$ from `min_std`), $E(y)$ a label embedding
    whose last row is the null label and $L(z)$ a linear embedding of an optional latent vector $z$ (a learned
    null vector when absent). The last convolution of every residual branch and the output convolution start at
    zero, so an untrained network is $e_\theta = 0$ (the forward dynamics). One network trained with label dropout
    gives $e(x, s; y)$ and, with `y=None`, $e(x, s)$.

    **Arguments:**

    - `config`: a `UNetConfig`.
    - `sde`: the forward process (a `VPSDE`).
    - `key`: initialisation key.
    """

    sde: VPSDE
    config: UNetConfig = eqx.field(static=True)
    time_embed: tuple[eqx.nn.Linear, eqx.nn.Linear]
    label_embed: eqx.nn.Embedding | None
    latent_embed: eqx.nn.Linear | None
    latent_null: Float[Array, " embed"] | None
    conv_in: eqx.nn.Conv2d
    down: tuple[_Level, ...]
    middle: tuple[_ResBlock, _Attention, _ResBlock]
    up: tuple[_Level, ...]
    norm_out: _GroupNorm
    conv_out: eqx.nn.Conv2d

    def __init__(self, config: UNetConfig, sde: VPSDE, *, key: PRNGKeyArray):
        if not isinstance(config, UNetConfig):
            raise ValueError(f"config must be a UNetConfig; got {type(config).__name__}.")
        if not isinstance(sde, VPSDE):
            raise ValueError(f"sde must be a VPSDE; got {type(sde).__name__}.")
        key = check_key(key)
        self.sde, self.config = sde, config
        dtype, ch, emb = config.param_dtype, config.channels, config.embed_width
        init = _Init(dtype, key=key)
        self.time_embed = (init.linear(ch, emb), init.linear(emb, emb))
        self.label_embed = None if config.num_classes is None else init.embedding(config.num_classes + 1, emb)
        self.latent_embed = None if config.dim_latent is None else init.linear(config.dim_latent, emb)
        self.latent_null = None if config.dim_latent is None else jnp.zeros(emb, dtype)
        cin_img, height, _ = config.image_shape
        self.conv_in = init.conv(cin_img, ch, 3)

        skips, current, resolution, down = [ch], ch, height, []
        for i, mult in enumerate(config.channel_mult):
            blocks, attentions = [], []
            for _ in range(config.num_res_blocks):
                blocks.append(_ResBlock(current, ch * mult, emb, config, init=init))
                current = ch * mult
                attentions.append(_Attention(current, config, init=init)
                                  if resolution in config.attention_resolutions else None)
                skips.append(current)
            last = i == len(config.channel_mult) - 1
            resample = None if last else init.conv(current, current, 3, stride=2)
            if not last:
                skips.append(current)
                resolution //= 2
            down.append(_Level(tuple(blocks), tuple(attentions), resample, False))
        self.down = tuple(down)
        self.middle = (_ResBlock(current, current, emb, config, init=init), _Attention(current, config, init=init),
                       _ResBlock(current, current, emb, config, init=init))
        up = []
        for i, mult in reversed(list(enumerate(config.channel_mult))):
            blocks, attentions = [], []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(_ResBlock(current + skips.pop(), ch * mult, emb, config, init=init))
                current = ch * mult
                attentions.append(_Attention(current, config, init=init)
                                  if resolution in config.attention_resolutions else None)
            resample = None if i == 0 else init.conv(current, current, 3)
            if i != 0:
                resolution *= 2
            up.append(_Level(tuple(blocks), tuple(attentions), resample, True))
        self.up = tuple(up)
        self.norm_out = _GroupNorm(current, _groups(current, config.num_groups), dtype)
        self.conv_out = init.conv(current, cin_img, 3, zero=True)  # the untrained network is e = 0

    # ------------------------------------------------------------------ pieces
    def scalings(self, s: Float[ArrayLike, ""]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        r"""$(c_{in}(s), c_{out}(s))$ in float32; see `UNetConfig.data_std`, `UNetConfig.min_std`."""
        s = jnp.asarray(s, jnp.float32)
        alpha, var = self.sde.alpha(s), self.sde.var(s)
        c_in = jax.lax.rsqrt(alpha * self.config.data_std**2 + var)
        c_out = jnp.ones((), jnp.float32) if self.config.min_std is None else alpha * jax.lax.rsqrt(
            alpha * self.config.min_std**2 + var)
        return c_in.astype(jnp.float32), c_out.astype(jnp.float32)

    def embedding(self, s, y, latent, drop) -> Float[Array, " embed"]:
        """The time-and-condition embedding (float32 sum of the time MLP, label and latent embeddings)."""
        first, second = self.time_embed
        emb = second(jax.nn.silu(first(_sinusoidal(jnp.asarray(s), self.config.channels).astype(first.weight.dtype))))
        emb = emb.astype(jnp.float32)
        if self.label_embed is not None:
            null = self.config.num_classes
            if y is None:
                index = jnp.asarray(null)
            else:
                index = jnp.where(drop, null, check_label(y, null, "y=None or drop=True"))
            emb = emb + self.label_embed(index).astype(jnp.float32)
        elif y is not None:
            raise ValueError("This EntropyUNet has no label input (UNetConfig.num_classes is None); call it with y=None.")
        if self.latent_embed is not None:
            if latent is None:
                z = self.latent_null
            else:
                if jnp.shape(latent) != (self.config.dim_latent,):
                    raise ValueError(f"latent must have shape ({self.config.dim_latent},); got {jnp.shape(latent)}.")
                z = jnp.where(drop, self.latent_null, self.latent_embed(jnp.asarray(latent, self.latent_null.dtype)))
            emb = emb + z.astype(jnp.float32)
        elif latent is not None:
            raise ValueError("This EntropyUNet has no latent input (UNetConfig.dim_latent is None).")
        return emb

    # ------------------------------------------------------------------ protocol
    def __call__(
        self,
        x: Float[ArrayLike, "channels height width"],
        s: Float[ArrayLike, ""],
        y: Int[ArrayLike, ""] | None = None,
        *,
        latent: Float[ArrayLike, " dim_latent"] | None = None,
        drop: Bool[ArrayLike, ""] = False,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "channels height width"]:
        r"""$e_\theta(x, s; y)$ for one image; `y=None` (or `drop=True`) gives the unconditional $e_\theta(x, s)$.

        **Arguments:**

        - `x`: one image, shape `config.image_shape`.
        - `s`: a scalar forward time in [0, T]; others (NaN included) are refused (`VPSDE.check_time`).
        - `y`: one integer class label in `0..num_classes-1` (others are refused, never clipped), or `None` (the
          null label).
        - `latent`: a latent vector of shape (dim_latent,), or `None` (the null latent).
        - `drop`: a boolean scalar (traceable); where true the null label and null latent replace `y` and `latent`.
        - `key`: dropout key; `None` (default) runs without dropout.

        **Returns:**

        The entropy-matching vector, shape `config.image_shape`, in float32.
        """
        config = self.config
        if jnp.shape(x) != config.image_shape:
            raise ValueError(f"x must have shape {config.image_shape} for one image (vmap for batches); got {jnp.shape(x)}.")
        if jnp.ndim(s) != 0:
            raise ValueError(f"s must be a scalar time; got shape {jnp.shape(s)}.")
        s = self.sde.check_time(s)
        c_in, c_out = self.scalings(s)
        emb = self.embedding(s, y, latent, drop)
        net = self if config.compute_dtype == config.param_dtype else jax.tree.map(
            lambda a: a.astype(config.compute_dtype) if eqx.is_inexact_array(a) else a, self)
        cd = config.compute_dtype
        emb = emb.astype(cd)
        n_blocks = 2 + sum(len(level.blocks) for level in (*net.down, *net.up))
        keys = iter([None] * n_blocks if key is None else list(jax.random.split(check_key(key), n_blocks)))

        h = net.conv_in((c_in * jnp.asarray(x, jnp.float32)).astype(cd))
        hs = [h]
        for level in net.down:
            for block, attention in zip(level.blocks, level.attentions):
                h = block(h, emb, next(keys))
                if attention is not None:
                    h = attention(h)
                hs.append(h)
            if level.resample is not None:
                h = level.resample(h)
                hs.append(h)
        first, attention, second = net.middle
        h = second(attention(first(h, emb, next(keys))), emb, next(keys))
        for level in net.up:
            for block, attention in zip(level.blocks, level.attentions):
                h = block(jnp.concatenate([h, hs.pop()]), emb, next(keys))
                if attention is not None:
                    h = attention(h)
            if level.resample is not None:
                h = level.resample(jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2))
        out = net.conv_out(jax.nn.silu(net.norm_out(h)))
        return c_out * out.astype(jnp.float32)


# ---------------------------------------------------------------------------------------------- cost
def unet_forward_flops(config: UNetConfig) -> int:
    r"""Hand-counted forward FLOPs for one image (2 per multiply-add; convolutions, linear layers and attention).

    XLA's cost analysis does not see cuDNN convolutions, so benchmarks use this count; normalisations, activations
    and additions are left out (they are a small fraction). A training step costs about 3x the forward pass.

    **Arguments:**

    - `config`: the network's `UNetConfig`.

    **Returns:**

    FLOPs per image for one forward evaluation.
    """
    ch, emb = config.channels, config.embed_width
    cin_img, height, width = config.image_shape

    def conv(cin, cout, k, pixels):
        return 2 * cin * cout * k * k * pixels

    def res(cin, cout, pixels):
        flops = conv(cin, cout, 3, pixels) + conv(cout, cout, 3, pixels) + 2 * emb * 2 * cout
        return flops + (0 if cin == cout else conv(cin, cout, 1, pixels))

    def attn(c, pixels):
        return conv(c, 3 * c, 1, pixels) + conv(c, c, 1, pixels) + 2 * 2 * pixels * pixels * c

    flops = 2 * ch * emb + 2 * emb * emb + (2 * config.dim_latent * emb if config.dim_latent else 0)
    flops += conv(cin_img, ch, 3, height * width)
    skips, current, h, w = [ch], ch, height, width
    for i, mult in enumerate(config.channel_mult):
        for _ in range(config.num_res_blocks):
            flops += res(current, ch * mult, h * w)
            current = ch * mult
            if h in config.attention_resolutions:
                flops += attn(current, h * w)
            skips.append(current)
        if i < len(config.channel_mult) - 1:
            h, w = h // 2, w // 2
            flops += conv(current, current, 3, h * w)
            skips.append(current)
    flops += 2 * res(current, current, h * w) + attn(current, h * w)
    for i, mult in reversed(list(enumerate(config.channel_mult))):
        for _ in range(config.num_res_blocks + 1):
            flops += res(current + skips.pop(), ch * mult, h * w)
            current = ch * mult
            if h in config.attention_resolutions:
                flops += attn(current, h * w)
        if i:
            h, w = 2 * h, 2 * w
            flops += conv(current, current, 3, h * w)
    return int(flops + conv(current, cin_img, 3, height * width))


def parameter_count(model_or_shape) -> int:
    """Number of floating-point parameters in a module (or in an `eqx.filter_eval_shape` of one). Arrays a module
    names in its `constant_fields` (fixed data such as `ClassGaussianBase`'s class model) are not parameters."""
    trainable = jax.tree.leaves(_decay_mask(model_or_shape))
    leaves = [leaf for leaf, free in zip(jax.tree.leaves(model_or_shape), trainable, strict=True)
              if free and isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct, np.ndarray))
              and jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return int(sum(np.prod(leaf.shape) for leaf in leaves))
