r"""A label-conditional model that is consistent by construction: $e(x, s; y) = e(x, s) + \nabla_x\log p_\phi(y | x, s)$.

For exact scores, $\nabla\log p_s(x|y) = \nabla\log p_s(x) + \nabla\log p_s(y|x)$, and the unconditional score is the
posterior average of the conditional ones, $\sum_y p_s(y|x)\nabla\log p_s(x|y) = \nabla\log p_s(x)$. A network that
gives $e(x, s; y)$ and $e(x, s)$ as two outputs (a label embedding with a null label) satisfies neither: whatever
its two outputs disagree on, beyond the label, adds to the MINDE integrand
$\tfrac\beta2\|e(x,s;y) - e(x,s)\|^2$, and on images that disagreement is large next to $I(X;Y)$ (see
`benchmarks/bench_images_generalisation.py`). Here the label enters only through the input-gradient of a
noise-conditional classifier's log-probability, so

$$e(x,s;y) - e(x,s) = \nabla_x\log p_\phi(y|x,s),\qquad \sum_y p_\phi(y|x,s)\,\nabla_x\log p_\phi(y|x,s) = 0:$$

the model is the exact score family of the joint $p(x)\,p_\phi(y|x)$, whatever the networks' errors, and an error
of the unconditional network that does not depend on the label cannot reach $I_{MINDE}$. Trained with the DEM loss
and label dropout like any conditional network (`DEMLoss(condition_dropout=...)`): the dropped samples train
$e(x, s)$, the others both parts.
"""

from __future__ import annotations

import os
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from gaussian_oracle import VPSDE, AbstractTimeDensity, check_key, check_label

from ._classifier import (ClassifierConfig, ConvClassifier, _check_labels, _known_labels, check_labelled_images,
                          fit_classifier)
from ._gaussian_base import ClassGaussianBase, ClassGaussians, snr_gate
from ._train import _key_data

__all__ = ["NoisyClassifier", "NoisyMLPClassifier", "ClassifierGuided", "ZeroNetwork", "GuidedLoss",
           "NoisyClassifierLoss", "noisy_cross_entropy", "noisy_cross_entropy_curve", "train_noisy_classifier"]


class NoisyClassifier(eqx.Module):
    r"""Logits of $p_\phi(y | x_s, s)$ for one noisy image: a `ConvClassifier` that sees the image and, as one more
    channel, the noise level $\tfrac14\log(\alpha/(1-\alpha))$; with `base`, plus the gated logits of a Gaussian
    class model, $f_\phi(x_s, s) + g(s)\log p_G(y|x_s)$, so that the network learns only the residual where the
    diffused classes are close to Gaussian (the gate $g$ of `ClassGaussianBase`, 1 at large noise, 0 at small).

    **Arguments:**

    - `config`: the `ClassifierConfig` of the clean images (`image_shape` is that of the data; one channel is added).
    - `sde`: the forward process.
    - `base`: `None`, or a `ClassGaussians` of the same images and classes (`train_noisy_classifier(gaussian_base=...)`
      fits it to the classifier's own training images).
    - `snr_half`: the gate's $\mathrm{SNR}_{1/2}$, or `None` for $g \equiv 1$ (with `base`).
    - `key`: initialisation key.
    """

    network: ConvClassifier
    sde: VPSDE
    base: ClassGaussians | None
    snr_half: float | None = eqx.field(static=True)

    def __init__(self, config: ClassifierConfig, sde: VPSDE, *, base: ClassGaussians | None = None,
                 snr_half: float | None = 4.0, key: PRNGKeyArray):
        key = check_key(key)
        c, h, w = config.image_shape
        if base is not None:
            if not isinstance(base, ClassGaussians):
                raise ValueError(f"NoisyClassifier.base must be a learned.ClassGaussians or None; got {base!r}.")
            if base.image_shape != config.image_shape or base.num_classes != config.num_classes:
                raise ValueError(f"NoisyClassifier.base models images {base.image_shape} with {base.num_classes} "
                                 f"classes; the classifier's are {config.image_shape} with {config.num_classes}.")
            ClassGaussianBase.check_snr_half(snr_half, "NoisyClassifier.snr_half")
        inner = ClassifierConfig((c + 1, h, w), config.num_classes, channels=config.channels, hidden=config.hidden,
                                 dropout=config.dropout, steps=config.steps, batch_size=config.batch_size,
                                 lr=config.lr, weight_decay=config.weight_decay)
        self.network = ConvClassifier(inner, key=key)
        self.sde = sde
        self.base = base
        self.snr_half = None if base is None else snr_half

    @property
    def num_classes(self) -> int:
        return self.network.out.out_features

    def __call__(self, x: Float[Array, "channels height width"], s: Float[ArrayLike, ""], *,
                 key: PRNGKeyArray | None = None) -> Float[Array, " num_classes"]:
        s = self.sde.check_time(s)
        level = jnp.full((1, *x.shape[1:]), 0.25 * self.sde.log_snr(s), x.dtype)
        logits = self.network(jnp.concatenate([x, level]), key=key)
        if self.base is None:
            return logits
        base = self.base(x, s)  # in its own dtype: a float64 base is not rounded to the network's float32
        return logits + snr_gate(self.sde, s, self.snr_half).astype(base.dtype) * base


class NoisyMLPClassifier(eqx.Module):
    r"""Logits of $p_\phi(y | z_s, s)$ for one noisy vector (e.g. a latent): an MLP on $z_s$ and, as one more input,
    the noise level $\tfrac14\log(\alpha/(1-\alpha))$ (as `NoisyClassifier` adds it to an image as a channel).

    Trained like the image classifier, by `learned.train` with `NoisyClassifierLoss` (each row diffused to its own
    time); its held-out cross-entropy at time s bounds $H(Y|Z_s)$ from above (`noisy_cross_entropy_curve`), and it
    is the `posterior` of the posterior-centred MINDE (`verify.estimators.mutual_information_minde`).

    **Arguments:**

    - `dim`: the size of a vector.
    - `num_classes`: number of labels (at least 2).
    - `sde`: the forward process.
    - `width`, `depth`: the MLP's hidden width and number of hidden layers (SiLU).
    - `key`: initialisation key.
    """

    mlp: eqx.nn.MLP
    sde: VPSDE

    def __init__(self, dim: int, num_classes: int, sde: VPSDE, *, width: int = 256, depth: int = 2,
                 key: PRNGKeyArray):
        for name, value, least in (("dim", dim, 1), ("num_classes", num_classes, 2), ("width", width, 1),
                                   ("depth", depth, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"NoisyMLPClassifier.{name} must be an integer >= {least}; got {value!r}.")
        key = check_key(key)
        self.mlp = eqx.nn.MLP(int(dim) + 1, int(num_classes), int(width), int(depth), activation=jax.nn.silu,
                              key=key)
        self.sde = sde

    @property
    def num_classes(self) -> int:
        return self.mlp.out_size

    def __call__(self, z: Float[Array, " dim"], s: Float[ArrayLike, ""], *,
                 key: PRNGKeyArray | None = None) -> Float[Array, " num_classes"]:
        if z.shape != (self.mlp.in_size - 1,):
            raise ValueError(f"NoisyMLPClassifier takes one vector of shape ({self.mlp.in_size - 1},); got {z.shape}.")
        s = self.sde.check_time(s)
        level = jnp.reshape(0.25 * self.sde.log_snr(jnp.asarray(s, z.dtype)), (1,)).astype(z.dtype)
        return self.mlp(jnp.concatenate([z, level]))


class ClassifierGuided(eqx.Module):
    r"""$e(x, s; y) = e_\theta(x, s) + \nabla_x\log\mathrm{softmax}(f_\phi(x, s))_y$: a protocol model.

    **Arguments:**

    - `unconditional`: a protocol model giving $e(x, s)$ (called with `y=None`), e.g. an `EntropyUNet` without labels.
    - `classifier`: a `NoisyClassifier` (logits $f_\phi(x, s)$), or any module called `classifier(x, s, key=...)`
      for one sample that has an integer `num_classes`, as `NoisyClassifier` has (e.g. a classifier of vector data).
    """

    unconditional: eqx.Module
    classifier: eqx.Module

    @property
    def sde(self) -> VPSDE:
        return self.unconditional.sde

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def log_posterior_grad(self, x: Float[Array, "..."], s: Float[ArrayLike, ""], y: Int[ArrayLike, ""], *,
                           key: PRNGKeyArray | None = None) -> Float[Array, "..."]:
        r"""$\nabla_x\log p_\phi(y|x, s)$ for one sample: the label's part of the score."""
        y = check_label(y, self.num_classes, "y=None or drop=True")
        return jax.grad(lambda z: jax.nn.log_softmax(self.classifier(z, s, key=key))[y])(jnp.asarray(x))

    def __call__(self, x: Float[Array, "..."], s: Float[ArrayLike, ""], y: Int[ArrayLike, ""] | None = None, *,
                 drop: Bool[ArrayLike, ""] = False, key: PRNGKeyArray | None = None) -> Float[Array, "..."]:
        """$e(x, s; y)$ for one sample; `y=None` (or `drop=True`) gives $e(x, s)$."""
        k_u, k_c = (None, None) if key is None else jax.random.split(check_key(key))
        kwargs = {} if k_u is None else {"key": k_u}
        e = self.unconditional(x, s, None, **kwargs)
        if y is None:
            return e
        return e + jnp.where(drop, 0.0, 1.0) * self.log_posterior_grad(x, s, y, key=k_c)


class ZeroNetwork(eqx.Module):
    r"""A protocol model whose output is zero for every input: `ClassifierGuided(ZeroNetwork(sde), classifier)` is the
    classifier's label part alone, `ClassGaussianBase(ZeroNetwork(sde), gaussians)` the gated base alone.

    **Arguments:**

    - `sde`: the forward process.
    """

    sde: VPSDE

    def __call__(self, x: Float[Array, "..."], s: Float[ArrayLike, ""], y=None, **kwargs) -> Float[Array, "..."]:
        return jnp.zeros_like(jnp.asarray(x))


def _diffuse(sde: VPSDE, x, s, noise):
    scale = (-1,) + (1,) * (x.ndim - 1)
    return sde.mu(s).reshape(scale) * x + jnp.sqrt(sde.var(s)).reshape(scale) * noise


def _nll(logits, y):
    y = _known_labels(y, logits)
    return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]


def noisy_cross_entropy(classifier: NoisyClassifier | NoisyMLPClassifier, x: Float[Array, "batch *shape"],
                        y: Int[Array, " batch"], *, key: PRNGKeyArray,
                        times: AbstractTimeDensity | None = None) -> Float[Array, ""]:
    r"""Mean cross-entropy $-\log p_\phi(y | \tilde x_s, s)$ of clean samples (images, or vectors for a
    `NoisyMLPClassifier`) diffused to random times s.

    Fits $p_\phi(y|x_s)$ to the posterior of the noisy image directly (by its values), where the DEM loss of
    `ClassifierGuided` fits only its input-gradient. The times are drawn from `times` (an `AbstractTimeDensity`,
    e.g. `LogSNRTime(s_min)`), or uniform on $[10^{-5}T, T]$ when `None`.
    """
    sde = classifier.sde
    k_s, k_n = jax.random.split(check_key(key))
    if times is None:
        s = jax.random.uniform(k_s, (x.shape[0],), x.dtype, 1e-5 * sde.T, sde.T)
    else:
        s = times.sample(sde, (x.shape[0],), key=k_s, dtype=x.dtype)
    x_s = _diffuse(sde, x, s, jax.random.normal(k_n, x.shape, x.dtype))
    return jnp.mean(_nll(jax.vmap(classifier)(x_s, s), y))


class NoisyClassifierLoss(eqx.Module):
    r"""`noisy_cross_entropy` as a `TrainingLoss` for `learned.train`: times drawn from `times` (`None`: uniform)."""

    times: AbstractTimeDensity | None = None

    def __call__(self, model: NoisyClassifier, x, y, *, key: PRNGKeyArray) -> Float[Array, ""]:
        if y is None:
            raise ValueError("NoisyClassifierLoss needs integer labels y; got None.")
        return noisy_cross_entropy(model, x, y, key=key, times=self.times)


def train_noisy_classifier(config: ClassifierConfig, sde: VPSDE, x: Float[ArrayLike, "batch channels height width"],
                           y: Int[ArrayLike, " batch"], *, times: AbstractTimeDensity | None = None,
                           gaussian_base: float | None = None, progress: bool = False,
                           checkpoint_dir: str | os.PathLike | None = None,
                           resume: Literal["auto", "overwrite", "unchecked"] = "auto",
                           key: PRNGKeyArray) -> NoisyClassifier:
    r"""Train a `NoisyClassifier` $p_\phi(y|x_s, s)$ on clean `(x, y)` diffused by `sde` to times from `times`.

    The noisy counterpart of `train_classifier` (same AdamW schedule, same checks): each minibatch image is
    diffused to its own time and the loss is `noisy_cross_entropy`. Its held-out cross-entropy at time s
    (`noisy_cross_entropy_curve`) bounds $H(Y|X_s)$ from above, so $I(X_s;Y) \ge H(Y) - CE_s$ at every s.

    **Arguments:**

    - `config`: the `ClassifierConfig` of the clean images (the noise level is added as a channel).
    - `sde`: the forward process.
    - `x`, `y`: training images and integer labels in `[0, config.num_classes)`.
    - `times`: the training-time density (`None`: uniform on $[10^{-5}T, T]$).
    - `gaussian_base`: `None`, or the gate's $\mathrm{SNR}_{1/2}$ of a Gaussian class model fitted to `(x, y)`
      (`ClassGaussians.fit`, its defaults) whose gated logits the classifier adds to its own (`NoisyClassifier.base`).
    - `progress`: show a progress bar.
    - `checkpoint_dir`, `resume`: as for `learned.train` (a checkpoint every 500 steps or so and at the end; a call
      with the same arguments returns a finished classifier without training); `None` for none.
    - `key`: a PRNG key (initialisation, batches, times, noise).

    **Returns:**

    The trained `NoisyClassifier`.
    """
    _key_data(key)
    check_labelled_images(config, x, y)
    k_init, k_train = jax.random.split(key)
    ClassGaussianBase.check_snr_half(gaussian_base, "gaussian_base")
    base = None if gaussian_base is None else ClassGaussians.fit(sde, x, y, config.num_classes)
    model = NoisyClassifier(config, sde, base=base, snr_half=gaussian_base, key=k_init)
    return fit_classifier(model, NoisyClassifierLoss(times), config, x, y,
                          progress=progress, checkpoint_dir=checkpoint_dir, resume=resume, key=k_train)


def noisy_cross_entropy_curve(classifier, sde: VPSDE, x: Float[ArrayLike, "batch *shape"], y: Int[ArrayLike, " batch"],
                              times: Float[ArrayLike, " n_times"], *, chunk_size: int = 256, key: PRNGKeyArray
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Held-out cross-entropy $CE_s = \mathbb E[-\log p_\phi(y|\tilde x_s, s)]$ at each of `times`, in nats.

    Each row of `x` is diffused once per time (independent noise) and the per-row values are averaged, so the
    stderr is that of i.i.d. rows. For any classifier $CE_s \ge H(Y|X_s)$, with equality for the exact posterior.

    **Arguments:**

    - `classifier`: logits $\log p_\phi(y|x_s)$ + const, called `classifier(x_s, s)` for one sample (e.g. a trained
      `NoisyClassifier`), not trained on `(x, y)`.
    - `sde`: the forward process that diffuses `x`.
    - `x`, `y`: held-out samples and their integer labels.
    - `times`: forward times in $[0, T]$.
    - `chunk_size`: rows per compiled call.
    - `key`: a PRNG key for the noise.

    **Returns:**

    `(ce, stderr, accuracy)`, each of shape `(n_times,)` (float64).
    """
    key = check_key(key)
    x, y = jnp.asarray(x, jnp.float32), np.asarray(y)
    times = np.asarray(times, np.float64)
    if x.ndim < 2 or y.shape != (x.shape[0],) or x.shape[0] < 2:
        raise ValueError(f"need at least 2 held-out samples with one label each; got {x.shape} and {y.shape}.")
    if times.ndim != 1 or times.size == 0 or not np.all((times >= 0) & (times <= sde.T)):
        raise ValueError(f"times must be a non-empty 1-D array in [0, T = {sde.T}]; got {times!r}.")
    num_labels = jax.eval_shape(classifier, jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                                jax.ShapeDtypeStruct((), jnp.float32)).shape[-1]
    _check_labels(y, num_labels, f"the classifier's {num_labels} logits")

    @eqx.filter_jit
    def chunk(model, xb, yb, s, k):
        x_s = _diffuse(sde, xb, jnp.full(xb.shape[0], s, xb.dtype), jax.random.normal(k, xb.shape, xb.dtype))
        logits = jax.vmap(lambda xi: model(xi, s))(x_s)
        return _nll(logits, yb), jnp.argmax(logits, axis=-1) == yb

    nll = np.empty((len(times), x.shape[0]))
    hit = np.empty((len(times), x.shape[0]))
    for i, s in enumerate(times):
        for j in range(0, x.shape[0], chunk_size):
            k = jax.random.fold_in(jax.random.fold_in(key, i), j)
            a, b = chunk(classifier, x[j:j + chunk_size], jnp.asarray(y[j:j + chunk_size]), jnp.float32(s), k)
            nll[i, j:j + chunk_size], hit[i, j:j + chunk_size] = np.asarray(a, np.float64), np.asarray(b)
    return nll.mean(1), nll.std(1, ddof=1) / np.sqrt(x.shape[0]), hit.mean(1)


class GuidedLoss(eqx.Module):
    r"""The loss of a `ClassifierGuided` model: its DEM loss plus `cross_entropy` times `noisy_cross_entropy`.

    Measured on digits (`benchmarks/bench_images_generalisation.py`): with weight 1 the learned $I_{MINDE}$ grows
    slowest with training of the variants measured and is inside its bounds at 4,000 steps, where the DEM loss alone
    has overshot; it still keeps growing past $H(Y)$ later (2.59 nats at 6,000 steps, 2.90 at 8,000).

    **Arguments:**

    - `dem`: the `DEMLoss` (its label dropout trains the unconditional part).
    - `cross_entropy`: the weight of the cross-entropy term.
    """

    dem: eqx.Module
    cross_entropy: float = 1.0

    def __call__(self, model: ClassifierGuided, x, y, *, key: PRNGKeyArray) -> Float[Array, ""]:
        k_dem, k_ce = jax.random.split(key)
        value = self.dem(model, x, y, key=k_dem)
        if y is None or self.cross_entropy == 0:
            return value
        return value + self.cross_entropy * noisy_cross_entropy(model.classifier, x, y, key=k_ce)
