r"""A small convolutional classifier whose held-out cross-entropy gives a lower bound on $I(X;Y)$.

For any classifier $q(y|x)$ the cross-entropy $CE = \mathbb E_{X,Y}[-\log q(Y|X)] \ge H(Y|X)$, so
$I(X;Y) = H(Y) - H(Y|X) \ge H(Y) - CE$. Measured on held-out data, the sample mean of $-\log q(y|x)$ is an
unbiased estimate of $CE$ with an honest standard error; the bound holds for every classifier, good or bad.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from gaussian_oracle import check_key, check_labels

from ._train import TrainConfig, _key_data, train

__all__ = ["ClassifierConfig", "ClassifierLoss", "ConvClassifier", "train_classifier", "cross_entropy"]


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
        if isinstance(self.lr, bool) or not (isinstance(self.lr, (int, float)) and 0 < self.lr < float("inf")):
            raise ValueError(f"ClassifierConfig.lr must be a finite number > 0; got {self.lr!r}.")
        wd = self.weight_decay
        if isinstance(wd, bool) or not (isinstance(wd, (int, float)) and 0 <= wd < float("inf")):
            raise ValueError(f"ClassifierConfig.weight_decay must be a finite number >= 0; got {wd!r}.")


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
        if not isinstance(config, ClassifierConfig):
            raise ValueError(f"config must be a ClassifierConfig; got {type(config).__name__}.")
        keys = jax.random.split(check_key(key), 6)
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

    @property
    def num_classes(self) -> int:
        """The number of labels it gives logits for (what `learned.train` checks integer labels against)."""
        return self.out.out_features

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


class ClassifierLoss(eqx.Module):
    r"""Softmax cross-entropy on integer labels, $\frac1B\sum_i -\log q(y_i|x_i)$ in nats, with dropout on.

    A `TrainingLoss` for `learned.train`: each image of the minibatch gets its own dropout key, passed to the
    classifier as `model(x_i, key=k_i)` (a `ConvClassifier` applies dropout only when given a key).
    """

    def __call__(self, model, x: Float[Array, "batch channels height width"], y: Int[Array, " batch"], *,
                 key: PRNGKeyArray) -> Float[Array, ""]:
        r"""The minibatch mean of $-\log q(y_i|x_i)$.

        **Arguments:**

        - `model`: a classifier giving logits for one image, `model(x_i, key=k_i)`.
        - `x`: images.
        - `y`: integer labels, one per image.
        - `key`: PRNG key for dropout (keyword-only, last).

        **Returns:**

        The mean cross-entropy, a scalar.
        """
        if y is None:
            raise ValueError("ClassifierLoss needs integer labels y; got None.")
        keys = jax.random.split(key, x.shape[0])
        logits = jax.vmap(lambda xi, ki: model(xi, key=ki))(x, keys)
        return optax.softmax_cross_entropy_with_integer_labels(logits, _known_labels(y, logits)).mean()


def _known_labels(y: Int[Array, " batch"], logits: Float[Array, "batch num_labels"]) -> Int[Array, " batch"]:
    """`y` checked against the logits' count (`check_labels`): a cross-entropy picks each label's logit by indexing,
    which would wrap a label -1 round to the last class and make one too large NaN, with no error."""
    k = logits.shape[-1]
    return check_labels(y, k, f"the classifier's {k} logits")


def _steps_per_call(steps: int) -> int:
    """The largest divisor of `steps` up to 5: a few fully unrolled steps per jitted call, one compiled program."""
    return max(d for d in range(1, 6) if steps % d == 0)


def train_classifier(config: ClassifierConfig, x: Float[ArrayLike, "batch channels height width"],
                     y: Int[ArrayLike, " batch"], *, progress: bool = False,
                     checkpoint_dir: str | os.PathLike | None = None,
                     resume: Literal["auto", "overwrite", "unchecked"] = "auto", key: PRNGKeyArray) -> ConvClassifier:
    """Train a `ConvClassifier` with AdamW (cosine-decayed learning rate) on `(x, y)` held on device.

    A thin wrapper around `learned.train` with a `ClassifierLoss`: minibatches of `config.batch_size` drawn with
    replacement, the learning rate decayed from `config.lr` to 0 over `config.steps`, no EMA. A few steps per
    jitted call run fully unrolled (`TrainConfig.unroll=True`), because XLA on a CPU runs convolutions whose
    weights are carried through a loop about 30x slower.

    **Arguments:**

    - `config`: a `ClassifierConfig`.
    - `x`, `y`: training images and integer labels in `[0, config.num_classes)`.
    - `progress`: show a progress bar.
    - `checkpoint_dir`, `resume`: as for `learned.train` (a checkpoint every 500 steps or so and at the end; a call
      with the same arguments returns a finished classifier without training); `None` for none.
    - `key`: a PRNG key from `jax.random.key(seed)` (initialisation, batches, dropout).

    **Returns:**

    The trained classifier.
    """
    _key_data(key)  # one clear error for a bad key, before anything is built
    check_labelled_images(config, x, y)
    k_init, k_train = jax.random.split(key)
    return fit_classifier(ConvClassifier(config, key=k_init), ClassifierLoss(), config, x, y, progress=progress,
                          checkpoint_dir=checkpoint_dir, resume=resume, key=k_train)


def check_labelled_images(config: ClassifierConfig, x, y) -> None:
    """One clear error for a configuration, images or labels a classifier of `config` cannot be trained on."""
    if not isinstance(config, ClassifierConfig):
        raise ValueError(f"config must be a ClassifierConfig; got {type(config).__name__}.")
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[1:] != config.image_shape or y.shape != (x.shape[0],):
        raise ValueError(f"x must have shape (batch, {config.image_shape}) and y (batch,); got {x.shape}, {y.shape}.")
    _check_labels(y, config.num_classes, "config.num_classes")


def _check_labels(y: np.ndarray, num_labels: int, source: str) -> None:
    """One clear error for labels `y` that are not integers in `[0, num_labels)` (`source` says where that number
    comes from); nothing is clipped or wrapped round (a label -1 would index the last class)."""
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer labels; got dtype {y.dtype}.")
    if y.size and (y.min() < 0 or y.max() >= num_labels):
        raise ValueError(f"y must hold labels in [0, {num_labels}) ({source}); got values from {y.min()} to {y.max()}.")


def fit_classifier(model: eqx.Module, loss: eqx.Module, config: ClassifierConfig, x, y, *, progress: bool,
                   checkpoint_dir: str | os.PathLike | None = None,
                   resume: Literal["auto", "overwrite", "unchecked"] = "auto", key: PRNGKeyArray) -> eqx.Module:
    """`learned.train` of a classifier `model` under `loss` with `config`'s AdamW (cosine decay to 0, no EMA, a few
    unrolled steps per call, checkpointed in `checkpoint_dir` about every 500 steps); returns the trained model."""
    per_call = _steps_per_call(config.steps)
    train_config = TrainConfig(
        steps=config.steps, batch_size=config.batch_size, lr=config.lr, final_lr_fraction=0.0,
        weight_decay=config.weight_decay, ema_decay=0.0, steps_per_call=per_call,
        checkpoint_every=per_call * max(1, 500 // per_call), progress=progress, unroll=True,
    )
    return train(model, np.asarray(x), np.asarray(y), config=train_config, loss=loss, checkpoint_dir=checkpoint_dir,
                 resume=resume, key=key).model


def cross_entropy(classifier: ConvClassifier, x: Float[ArrayLike, "batch channels height width"],
                  y: Int[ArrayLike, " batch"], *, chunk_size: int = 1000) -> tuple[float, float, float]:
    r"""Held-out cross-entropy $\frac1n\sum_i -\log q(y_i|x_i)$ in nats, its standard error, and the accuracy.

    **Arguments:**

    - `classifier`: a trained classifier (logits for one image).
    - `x`, `y`: held-out images (at least 2) and their integer labels in `[0, number of logits)`, shape `(batch,)`
      (not used for training).
    - `chunk_size`: images per evaluation call.

    **Returns:**

    `(ce, stderr, accuracy)`.
    """
    x = jnp.asarray(x, jnp.float32)
    y = np.asarray(y)
    if x.ndim < 2 or x.shape[0] < 2 or y.shape != (x.shape[0],):
        raise ValueError(f"need at least 2 held-out images with one label each; got {x.shape} and {y.shape}.")
    num_labels = jax.eval_shape(classifier, jax.ShapeDtypeStruct(x.shape[1:], x.dtype)).shape[-1]
    _check_labels(y, num_labels, f"the classifier's {num_labels} logits")
    logits_fn = eqx.filter_jit(lambda m, xb: jax.vmap(m)(xb))
    logits = np.concatenate([np.asarray(logits_fn(classifier, x[i:i + chunk_size]), np.float64)
                             for i in range(0, x.shape[0], chunk_size)])
    log_q = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    nll = -log_q[np.arange(len(y)), y]
    return float(nll.mean()), float(nll.std(ddof=1) / np.sqrt(len(nll))), float((logits.argmax(1) == y).mean())
