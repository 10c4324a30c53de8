"""An MLP that learns the entropy-matching vector $e_\\theta(x, s; y)$ for vector data (Eq. 4)."""

from __future__ import annotations

import abc
import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from gaussian_oracle import VPSDE, check_key, check_label


# ---------------------------------------------------------------------------------------------- configuration
@dataclasses.dataclass(frozen=True)
class MLPConfig:
    r"""Architecture of an `EntropyMLP` (frozen: hashable and static under jit).

    **Arguments:**

    - `dim_x`: dimension of the data $x$.
    - `dim_y`: dimension of a vector condition $y$; `None` for no vector condition.
    - `num_classes`: number of class labels for a label condition (the embedding gets `num_classes + 1`
      rows, the last one the null label); `None` for no label condition. At most one of `dim_y`,
      `num_classes` may be set; with neither the network is unconditional only.
    - `width`: hidden width.
    - `depth`: number of residual blocks.
    - `embed_width`: width of the time-and-condition embedding that modulates every block.
    - `num_frequencies`: Fourier features $\sin(2^k\pi s/T), \cos(2^k\pi s/T)$, $k < $ `num_frequencies`.
    - `data_std`: input scaling $c_{in}(s) = (\alpha\sigma_d^2 + 1 - \alpha)^{-1/2}$ (1 means none for VP).
    - `min_std`: output scaling $c_{out}(s) = \alpha/\sqrt{\alpha\sigma_{min}^2 + 1 - \alpha}$, the size of
      $e^*$ along a data direction of standard deviation $\sigma_{min}$; `None` (default) for $c_{out} = 1$, which
      trained better on the D_X=25 determinism benchmark (min_std=0.1: 13 % vs 9 % conditional error).
    - `dtype`: parameter and compute dtype (float32 by default, whatever the JAX mode).
    """

    dim_x: int
    dim_y: int | None = None
    num_classes: int | None = None
    width: int = 256
    depth: int = 3
    embed_width: int = 64
    num_frequencies: int = 8
    data_std: float = 1.0
    min_std: float | None = None
    dtype: type = jnp.float32

    def __post_init__(self):
        for name in ("dim_x", "width", "depth", "embed_width", "num_frequencies"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MLPConfig.{name} must be a positive integer; got {value!r}.")
        for name in ("dim_y", "num_classes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"MLPConfig.{name} must be a positive integer or None; got {value!r}.")
        if self.dim_y is not None and self.num_classes is not None:
            raise ValueError("MLPConfig takes either dim_y (vector condition) or num_classes (labels), not both.")
        if not (isinstance(self.data_std, (int, float)) and math.isfinite(self.data_std) and self.data_std > 0):
            raise ValueError(f"MLPConfig.data_std must be a finite number > 0; got {self.data_std!r}.")
        if self.min_std is not None and not (
            isinstance(self.min_std, (int, float)) and math.isfinite(self.min_std) and self.min_std > 0
        ):
            raise ValueError(f"MLPConfig.min_std must be a finite number > 0 or None; got {self.min_std!r}.")
        if not jnp.issubdtype(self.dtype, jnp.floating):
            raise ValueError(f"MLPConfig.dtype must be a floating dtype; got {self.dtype!r}.")


# ---------------------------------------------------------------------------------------------- conditions
class AbstractCondition(eqx.Module):
    """Embeds a condition $y$, or the null condition, into a vector of `embed_width` features."""

    @abc.abstractmethod
    def __call__(self, y, drop: Bool[ArrayLike, ""]) -> Float[Array, " embed_width"]:
        """Embedding of `y`, or of the null condition where `drop` is true (`y=None` means null)."""


class VectorCondition(AbstractCondition):
    r"""A vector condition: $\mathrm{Linear}((y - m)/v)$, with a learned null embedding for "no condition".

    `loc`, `scale` ($m$, $v$) are fixed standardisation constants (not trained; set them from data with
    `EntropyMLP.standardise_condition`), so the network always takes $y$ in the data's own units.
    """

    linear: eqx.nn.Linear
    null: Float[Array, " embed_width"]
    loc: Float[Array, " dim_y"]
    scale: Float[Array, " dim_y"]

    def __init__(self, dim_y: int, embed_width: int, dtype, *, key: PRNGKeyArray):
        self.linear = eqx.nn.Linear(dim_y, embed_width, dtype=dtype, key=key)
        self.null = jnp.zeros(embed_width, dtype)
        self.loc = jnp.zeros(dim_y, dtype)
        self.scale = jnp.ones(dim_y, dtype)

    def __call__(self, y: Float[ArrayLike, " dim_y"] | None, drop: Bool[ArrayLike, ""] = False):
        if y is None:
            return self.null
        dim_y = self.loc.shape[0]
        if jnp.shape(y) != (dim_y,):
            raise ValueError(f"y must have shape ({dim_y},) for one sample (vmap for batches); got {jnp.shape(y)}.")
        y = jnp.asarray(y, self.null.dtype)
        y = (y - jax.lax.stop_gradient(self.loc)) / jax.lax.stop_gradient(self.scale)
        return jnp.where(drop, self.null, self.linear(y))


class LabelCondition(AbstractCondition):
    """A class label in `0..num_classes-1`: a learned embedding table whose last row is the null label.

    Labels outside `0..num_classes-1` are refused, not clipped: a `ValueError` for a concrete label, an
    `EquinoxRuntimeError` (`eqx.error_if`) when traced. The null row is reached only through `y=None` or `drop`.
    """

    embedding: eqx.nn.Embedding
    num_classes: int = eqx.field(static=True)

    def __init__(self, num_classes: int, embed_width: int, dtype, *, key: PRNGKeyArray):
        self.num_classes = num_classes
        self.embedding = eqx.nn.Embedding(num_classes + 1, embed_width, dtype=dtype, key=key)

    def __call__(self, y: Int[ArrayLike, ""] | None, drop: Bool[ArrayLike, ""] = False):
        if y is None:
            return self.embedding(jnp.asarray(self.num_classes))
        y = check_label(y, self.num_classes, "y=None or drop=True")
        return self.embedding(jnp.where(drop, self.num_classes, y))


# ---------------------------------------------------------------------------------------------- network
class _Block(eqx.Module):
    """Residual block $h + W_2\\,\\mathrm{silu}(W_1 h \\odot (1 + \\gamma(c)) + \\beta(c))$ (FiLM by the embedding $c$)."""

    norm: eqx.nn.LayerNorm
    linear1: eqx.nn.Linear
    linear2: eqx.nn.Linear
    film: eqx.nn.Linear

    def __init__(self, width: int, embed_width: int, dtype, *, key: PRNGKeyArray):
        k1, k2, k3 = jax.random.split(key, 3)
        self.norm = eqx.nn.LayerNorm(width, dtype=dtype)
        self.linear1 = eqx.nn.Linear(width, width, dtype=dtype, key=k1)
        self.linear2 = eqx.nn.Linear(width, width, dtype=dtype, key=k2)
        self.film = eqx.nn.Linear(embed_width, 2 * width, dtype=dtype, key=k3)

    def __call__(self, h, c):
        gamma, beta = jnp.split(self.film(c), 2)
        z = self.linear1(self.norm(h)) * (1.0 + gamma) + beta
        return h + self.linear2(jax.nn.silu(z))


class EntropyMLP(eqx.Module):
    r"""Entropy-matching network $e_\theta(x, s; y)$ for one sample (Eq. 4), satisfying the model protocol.

    With the entropy-matching parametrisation the score is $s_\theta = \nabla\log p_{eq} + e_\theta$, and
    $$e_\theta(x, s; y) = c_{out}(s)\,F_\theta\big(c_{in}(s)x,\ \phi(s),\ E(y)\big),\qquad
      c_{in} = (\alpha\sigma_d^2 + 1 - \alpha)^{-1/2},\quad c_{out} = \alpha/\sqrt{\alpha\sigma_{min}^2 + 1 - \alpha},$$
    where $\alpha = \mu(s)^2$ and $\phi(s)$ are Fourier features of $s/T$ plus $\tfrac14\log((1-\alpha)/\alpha)$.
    For Gaussian data $e^* = \alpha(\Sigma - I)\Sigma_s^{-1}x$ with $\Sigma_s = \alpha\Sigma + (1-\alpha)I$:
    it vanishes like $\alpha$ at large s and grows like $1/\sigma$ at small s along a direction of standard
    deviation $\sigma$; with `min_std` set, $c_{out}$ takes out both trends (off by default). The output layer
    starts at zero, so an untrained network is $e_\theta = 0$ (the forward dynamics).

    $E(y)$ is the condition embedding; `y=None` uses the null embedding, so one network trained with
    condition dropout gives both $e(x, s; y)$ and $e(x, s)$. The embedding (with the time features)
    modulates every residual block (FiLM) and is also concatenated to the input.

    **Arguments:**

    - `config`: an `MLPConfig`.
    - `sde`: the forward process (a `VPSDE`).
    - `key`: initialisation key.
    """

    sde: VPSDE
    config: MLPConfig = eqx.field(static=True)
    condition: AbstractCondition | None
    null_condition: Float[Array, " embed_width"] | None
    embed: eqx.nn.MLP
    input: eqx.nn.Linear
    blocks: tuple[_Block, ...]
    norm: eqx.nn.LayerNorm
    output: eqx.nn.Linear

    def __init__(self, config: MLPConfig, sde: VPSDE, *, key: PRNGKeyArray):
        if not isinstance(config, MLPConfig):
            raise ValueError(f"config must be an MLPConfig; got {type(config).__name__}.")
        if not isinstance(sde, VPSDE):
            raise ValueError(f"sde must be a VPSDE; got {type(sde).__name__}.")
        key = check_key(key)
        self.sde, self.config = sde, config
        dtype, width, ew = config.dtype, config.width, config.embed_width
        k_cond, k_embed, k_in, k_blocks, k_out = jax.random.split(key, 5)
        if config.dim_y is not None:
            self.condition = VectorCondition(config.dim_y, ew, dtype, key=k_cond)
        elif config.num_classes is not None:
            self.condition = LabelCondition(config.num_classes, ew, dtype, key=k_cond)
        else:
            self.condition = None
        # An unconditional network still gets a (constant) condition embedding, so every variant has one shape.
        self.null_condition = jnp.zeros(ew, dtype) if self.condition is None else None
        num_time = 2 * config.num_frequencies + 1
        self.embed = eqx.nn.MLP(num_time + ew, ew, ew, depth=1, activation=jax.nn.silu, dtype=dtype, key=k_embed)
        self.input = eqx.nn.Linear(config.dim_x + ew, width, dtype=dtype, key=k_in)
        self.blocks = tuple(_Block(width, ew, dtype, key=k) for k in jax.random.split(k_blocks, config.depth))
        self.norm = eqx.nn.LayerNorm(width, dtype=dtype)
        output = eqx.nn.Linear(width, config.dim_x, dtype=dtype, key=k_out)
        self.output = eqx.tree_at(lambda l: (l.weight, l.bias), output, (jnp.zeros_like(output.weight), jnp.zeros_like(output.bias)))

    # ------------------------------------------------------------------ pieces
    def time_features(self, s: Float[ArrayLike, ""]) -> Float[Array, " num_time"]:
        r"""$\phi(s) = [\sin(2^k\pi s/T), \cos(2^k\pi s/T)]_{k} \oplus \tfrac14\log((1-\alpha)/\alpha)$."""
        dtype = self.config.dtype
        s = jnp.asarray(s, dtype)
        freqs = jnp.pi * 2.0 ** jnp.arange(self.config.num_frequencies, dtype=dtype)
        u = s / self.sde.T
        log_snr = jnp.log(jnp.maximum(self.sde.var(s), 1e-10)) + self.sde.int_beta(s)
        return jnp.concatenate([jnp.sin(freqs * u), jnp.cos(freqs * u), 0.25 * log_snr[None]]).astype(dtype)

    def scalings(self, s: Float[ArrayLike, ""]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        r"""$(c_{in}(s), c_{out}(s))$; see the class docstring."""
        dtype = self.config.dtype
        s = jnp.asarray(s, dtype)
        alpha, var = self.sde.alpha(s), self.sde.var(s)
        c_in = jax.lax.rsqrt(alpha * self.config.data_std**2 + var)
        if self.config.min_std is None:
            c_out = jnp.ones((), dtype)
        else:
            c_out = alpha * jax.lax.rsqrt(alpha * self.config.min_std**2 + var)
        return c_in.astype(dtype), c_out.astype(dtype)

    def _condition(self, y, drop):
        if self.condition is None:
            if y is not None:
                raise ValueError("This EntropyMLP is unconditional (config has neither dim_y nor num_classes); call it with y=None.")
            return self.null_condition
        return self.condition(y, drop)

    # ------------------------------------------------------------------ protocol
    def __call__(
        self,
        x: Float[ArrayLike, " dim_x"],
        s: Float[ArrayLike, ""],
        y: Float[ArrayLike, " dim_y"] | Int[ArrayLike, ""] | None = None,
        *,
        drop: Bool[ArrayLike, ""] = False,
    ) -> Float[Array, " dim_x"]:
        r"""$e_\theta(x, s; y)$ for one sample; `y=None` (or `drop=True`) gives the unconditional $e_\theta(x, s)$.

        **Arguments:**

        - `x`: one sample, shape (dim_x,).
        - `s`: a scalar forward time in [0, T]; others (NaN included) are refused (`VPSDE.check_time`).
        - `y`: the condition (vector of shape (dim_y,) or one integer label in `0..num_classes-1`), or `None`.
        - `drop`: a boolean scalar (traceable); where true the null condition replaces `y` (condition dropout).

        **Returns:**

        The entropy-matching vector, shape (dim_x,), in `config.dtype`.
        """
        dim_x = self.config.dim_x
        if jnp.shape(x) != (dim_x,):
            raise ValueError(f"x must have shape ({dim_x},) for one sample (vmap for batches); got {jnp.shape(x)}.")
        if jnp.ndim(s) != 0:
            raise ValueError(f"s must be a scalar time; got shape {jnp.shape(s)}.")
        s = self.sde.check_time(s)
        dtype = self.config.dtype
        c_in, c_out = self.scalings(s)
        cond = self._condition(y, drop)
        c = self.embed(jnp.concatenate([self.time_features(s), cond]))
        h = self.input(jnp.concatenate([c_in * jnp.asarray(x, dtype), c]))
        for block in self.blocks:
            h = block(h, c)
        return c_out * self.output(jax.nn.silu(self.norm(h)))

    # ------------------------------------------------------------------ data-dependent constants
    def standardise_condition(self, data_y: Float[ArrayLike, "batch dim_y"]) -> "EntropyMLP":
        """A copy whose vector condition is standardised by the mean and standard deviation of `data_y`.

        The constants are part of the module (not trained), so the network keeps taking raw y.
        """
        if not isinstance(self.condition, VectorCondition):
            raise ValueError("standardise_condition needs a vector condition (MLPConfig.dim_y).")
        data_y = np.asarray(data_y, dtype=np.float64)
        if data_y.ndim != 2 or data_y.shape[1] != self.config.dim_y:
            raise ValueError(f"data_y must have shape (batch, {self.config.dim_y}); got {data_y.shape}.")
        if not np.all(np.isfinite(data_y)):
            raise ValueError("data_y must be finite; it contains NaN or infinity.")
        loc = jnp.asarray(data_y.mean(axis=0), self.config.dtype)
        scale = jnp.asarray(np.maximum(data_y.std(axis=0), 1e-6), self.config.dtype)
        return eqx.tree_at(lambda m: (m.condition.loc, m.condition.scale), self, (loc, scale))


def _input_shape(model) -> tuple[int, ...] | None:
    """The shape of one input of a network built from a config (`MLPConfig.dim_x`, `UNetConfig.image_shape`), looked
    up on the model or on the network it wraps (`Preconditioned`, `ClassCentred`, ...); `None` when unknown."""
    for m in (model, getattr(model, "network", None)):
        config = getattr(m, "config", None)
        if isinstance(config, MLPConfig):
            return (config.dim_x,)
        shape = getattr(config, "image_shape", None)
        if isinstance(shape, tuple):
            return shape
    return None


class Pair(eqx.Module):
    r"""Two separately trained networks as one model: $e(x, s)$ from `unconditional`, $e(x, s; y)$ from `conditional`.

    The paper's Gaussian experiments estimate $I(X;Y)$ this way (appendix D.1). Satisfies the model protocol.

    **Arguments:**

    - `unconditional`: a model called with `y=None`.
    - `conditional`: a model called with `y`.
    """

    unconditional: eqx.Module
    conditional: eqx.Module

    def __check_init__(self):
        for name in ("unconditional", "conditional"):
            model = getattr(self, name)
            if not (callable(model) and isinstance(getattr(model, "sde", None), VPSDE)):
                raise ValueError(f"Pair.{name} must be a protocol model (a callable with a VPSDE field sde, e.g. an "
                                 f"EntropyMLP); got {type(model).__name__}.")
        shapes = _input_shape(self.unconditional), _input_shape(self.conditional)
        if None not in shapes and shapes[0] != shapes[1]:
            raise ValueError(f"Pair: both networks must take inputs of one shape; the unconditional network takes "
                             f"{shapes[0]}, the conditional one {shapes[1]}.")
        if self.unconditional.sde != self.conditional.sde:
            raise ValueError(
                f"Both networks must share one forward process; got {self.unconditional.sde} and {self.conditional.sde}."
            )

    @property
    def sde(self) -> VPSDE:
        return self.unconditional.sde

    def __call__(self, x: Float[ArrayLike, " dim_x"], s: Float[ArrayLike, ""], y=None) -> Float[Array, " dim_x"]:
        """`unconditional(x, s)` when `y` is `None`, else `conditional(x, s, y)`."""
        if y is None:
            return self.unconditional(x, s)
        return self.conditional(x, s, y)
