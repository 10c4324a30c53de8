r"""A small convolutional classifier whose held-out cross-entropy gives a lower bound on $I(X;Y)$.

For any classifier $q(y|x)$ the cross-entropy $CE = \mathbb E_{X,Y}[-\log q(Y|X)] \ge H(Y|X)$, so
$I(X;Y) = H(Y) - H(Y|X) \ge H(Y) - CE$. Measured on held-out data, the sample mean of $-\log q(y|x)$ is an
unbiased estimate of $CE$ with an honest standard error; the bound holds for every classifier, good or bad.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray
from tqdm.auto import tqdm

__all__ = ["ClassifierConfig", "ConvClassifier", "train_classifier", "cross_entropy"]


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Architecture and training of a `ConvClassifier` (frozen).

    **Arguments:**

    - `image_shape`: `(channels, height, width)`.
    - `num_classes`: number of labels.
    - `channels`: channels of the two convolutional stages (each: two 3 x 3 convs and a 2 x 2 average pool when the
      image is at least 4 pixels high).
    - `hidden`: width of the dense layer.
    - `dropout`: dropout before the last layer during training.
    - `steps`, `batch_size`, `lr`, `weight_decay`: AdamW training.
    """

    image_shape: tuple[int, int, int]
    num_classes: int
    channels: tuple[int, int] = (32, 64)
    hidden: int = 128
    dropout: float = 0.2
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4

    def __post_init__(self):
        for name in ("num_classes", "hidden", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ClassifierConfig.{name} must be a positive integer; got {value!r}.")
        if len(self.image_shape) != 3 or len(self.channels) != 2:
            raise ValueError("ClassifierConfig.image_shape must be (C, H, W) and channels a pair.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"ClassifierConfig.dropout must lie in [0, 1); got {self.dropout!r}.")


class ConvClassifier(eqx.Module):
    """Logits $\\log q(y|x)$ + const for one image: two conv stages, then two dense layers on the flattened features.

    **Arguments:**

    - `config`: a `ClassifierConfig`.
    - `key`: initialisation key.
    """

    convs: tuple[eqx.nn.Conv2d, ...]
    dense: eqx.nn.Linear
    out: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    pool: tuple[bool, bool] = eqx.field(static=True)

    def __init__(self, config: ClassifierConfig, *, key: PRNGKeyArray):
        keys = jax.random.split(key, 6)
        cin, height, width = config.image_shape
        c1, c2 = config.channels
        dtype = jnp.float32
        self.convs = tuple(eqx.nn.Conv2d(a, b, 3, padding=1, dtype=dtype, key=k)
                           for (a, b), k in zip([(cin, c1), (c1, c1), (c1, c2), (c2, c2)], keys[:4]))
        self.pool = (height >= 4, height >= 8)
        for pooled in self.pool:
            height, width = (height // 2, width // 2) if pooled else (height, width)
        self.dense = eqx.nn.Linear(c2 * height * width, config.hidden, dtype=dtype, key=keys[4])
        self.out = eqx.nn.Linear(config.hidden, config.num_classes, dtype=dtype, key=keys[5])
        self.dropout = eqx.nn.Dropout(config.dropout)

    def __call__(self, x: Float[Array, "channels height width"], *, key: PRNGKeyArray | None = None
                 ) -> Float[Array, " num_classes"]:
        """Logits for one image; dropout only when `key` is given (training)."""
        h = jnp.asarray(x, jnp.float32)
        for stage in range(2):
            h = jax.nn.gelu(self.convs[2 * stage](h))
            h = jax.nn.gelu(self.convs[2 * stage + 1](h))
            if self.pool[stage]:
                c, height, width = h.shape
                h = h[:, : height // 2 * 2, : width // 2 * 2].reshape(c, height // 2, 2, width // 2, 2).mean(axis=(2, 4))
        h = jax.nn.gelu(self.dense(h.reshape(-1)))
        h = self.dropout(h, key=key, inference=key is None)
        return self.out(h)


@eqx.filter_jit
def _step(model, opt_state, x, y, optimizer, batch_size: int, key):
    """One AdamW step on a minibatch drawn with replacement (no loop: XLA CPU runs loop-carried convs slowly)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    k_idx, k_drop = jax.random.split(key)
    idx = jax.random.randint(k_idx, (batch_size,), 0, x.shape[0])

    def loss(p):
        m = eqx.combine(p, static)
        logits = jax.vmap(lambda xi, ki: m(xi, key=ki))(x[idx], jax.random.split(k_drop, batch_size))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return eqx.combine(eqx.apply_updates(params, updates), static), opt_state, value


def train_classifier(config: ClassifierConfig, x: Float[ArrayLike, "batch channels height width"],
                     y: Int[ArrayLike, " batch"], *, progress: bool = False, key: PRNGKeyArray) -> ConvClassifier:
    """Train a `ConvClassifier` with AdamW (cosine-decayed learning rate) on `(x, y)` held on device.

    **Arguments:**

    - `config`: a `ClassifierConfig`.
    - `x`, `y`: training images and integer labels.
    - `progress`: show a progress bar.
    - `key`: PRNG key (initialisation, batches, dropout).

    **Returns:**

    The trained classifier.
    """
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.int32)
    if x.shape[1:] != config.image_shape or y.shape != (x.shape[0],):
        raise ValueError(f"x must have shape (batch, {config.image_shape}) and y (batch,); got {x.shape}, {y.shape}.")
    k_init, k_train = jax.random.split(key)
    model = ConvClassifier(config, key=k_init)
    optimizer = optax.adamw(optax.cosine_decay_schedule(config.lr, config.steps), weight_decay=config.weight_decay)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    with tqdm(total=config.steps, disable=not progress, desc="classifier", unit="step") as bar:
        for i, k in enumerate(jax.random.split(k_train, config.steps)):
            model, opt_state, value = _step(model, opt_state, x, y, optimizer, config.batch_size, k)
            bar.update(1)
            if i % 50 == 0:
                bar.set_postfix(loss=f"{float(value):.4g}")
    return model


def cross_entropy(classifier: ConvClassifier, x: Float[ArrayLike, "batch channels height width"],
                  y: Int[ArrayLike, " batch"], *, chunk_size: int = 1000) -> tuple[float, float, float]:
    r"""Held-out cross-entropy $\frac1n\sum_i -\log q(y_i|x_i)$ in nats, its standard error, and the accuracy.

    **Arguments:**

    - `classifier`: a trained classifier (logits for one image).
    - `x`, `y`: held-out images and labels (not used for training).
    - `chunk_size`: images per evaluation call.

    **Returns:**

    `(ce, stderr, accuracy)`.
    """
    x = jnp.asarray(x, jnp.float32)
    y = np.asarray(y)
    if x.shape[0] < 2 or y.shape != (x.shape[0],):
        raise ValueError(f"need at least 2 held-out images with one label each; got {x.shape} and {y.shape}.")
    logits_fn = eqx.filter_jit(lambda m, xb: jax.vmap(m)(xb))
    logits = np.concatenate([np.asarray(logits_fn(classifier, x[i:i + chunk_size]), np.float64)
                             for i in range(0, x.shape[0], chunk_size)])
    log_q = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    nll = -log_q[np.arange(len(y)), y]
    return float(nll.mean()), float(nll.std(ddof=1) / np.sqrt(len(nll))), float((logits.argmax(1) == y).mean())
