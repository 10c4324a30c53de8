r"""Semantic vs perceptual latents (appendix E): the split-loss DAE over $\tau$, the DAE and its VAE baseline.

For each split time $\tau$ a split-loss diffusion autoencoder (Eq. 70) is trained on the images; its two encoders
give $Z_{sem}$ (decoder conditioned on it for $s \ge \tau$) and $Z_{per}$ ($s < \tau$). On held-out images:

- $I(Z;Y)$ by MINDE (Eq. 13) from a small label-conditioned latent diffusion model (an `EntropyMLP` with a label
  embedding and label dropout to a null label) trained on the latents of the training images, with its stderr;
- beside it the bounds $H(Y) - CE(Z) \le I(Z;Y) \le H(Y)$, $H(Y)$ from the data set's label frequencies and
  $CE(Z)$ the held-out cross-entropy of a logistic regression on $z$; an estimate outside by more than 2 combined
  standard errors is flagged;
- the k-NN label accuracy of the latents (so "clusters" and "no structure" in the t-SNE pictures are numbers);
- with `LatentInformationConfig.posterior`, beside the MINDE the posterior-centred MINDE (free of the null-label
  output's error) and the bound from a noise-conditional classifier of the latents.

$Z$ is the stochastic latent of the encoder, one draw $z \sim q(z|x)$ per image. The DAE vs VAE comparison (Figs. 14,
15) trains a single-latent DAE (the split DAE at $\tau = 0$, exactly a DAE on $z_{sem}$) and a VAE with a Gaussian
decoder (Eq. 64) on the same encoder architecture. All information in nats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
import zlib
from pathlib import Path
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray
from tqdm.auto import tqdm

import learned
from gaussian_oracle import VPSDE, AbstractTimeDensity, Estimate, LogSNRTime, PiecewiseConstant
from learned import EncoderConfig, ImageData, TrainConfig, UNetConfig

from .._figures import new_figure, save_figure
from .._report import config_dict, provenance, write_atomically, write_json
from .._sampling import sample_probability_flow
from ..estimators import (
    AbstractTimeIntegrator,
    ImportanceSampler,
    mutual_information_minde,
    mutual_information_minde_crossfit,
)
from ._images import Bounds, check_dem_training, configured_data, dem_loss

__all__ = ["LatentInformationConfig", "LatentInformation", "latent_information", "fit_latent_model",
           "fit_latent_posterior", "crossfit_halves", "POSTERIOR_TRAIN", "POSTERIOR_TIMES", "AutoencoderExperiment",
           "reconstruct", "run", "run_autoencoder_experiment", "merge_autoencoder_results", "ARRAYS", "LATENTS"]


# ---------------------------------------------------------------------------------------------- latent MI
POSTERIOR_TRAIN = TrainConfig(steps=4000, batch_size=256, lr=1e-3, warmup_steps=100, final_lr_fraction=0.05,
                              steps_per_call=100, checkpoint_every=4000, ema_decay=0.99, weight_decay=1e-4,
                              progress=False)
"""The training of the noise-conditional latent classifier (`LatentInformationConfig.posterior`) measured in
`benchmarks/bench_latent_mi_diagnosis.py --posterior`: AdamW, 4,000 steps of 256 rows, EMA 0.99."""

POSTERIOR_TIMES = LogSNRTime(s_min=1e-5)
"""The times that classifier is trained at (uniform in log-SNR from $10^{-5}T$)."""


@dataclasses.dataclass(frozen=True)
class LatentInformationConfig:
    r"""How $I(Z;Y)$ is measured from latents (frozen).

    **Arguments:**

    - `width`, `depth`: the latent diffusion model's `EntropyMLP`.
    - `train`: its `TrainConfig` (DEM loss with $\lambda = \sigma^2/2$, times uniform in log-SNR).
    - `label_dropout`: probability of the null label during training. The paper's code used 0.1; measured on a
      20-d, 10-label Gaussian mixture (exact I = 1.260 nats; 8,000 training pairs, 4,000 steps) 0.1 reads +26 %
      (1.59), 0.5 reads +0.1 % (1.271 vs the exact model's 1.270 on the same grid): any error of the unconditional
      branch adds its square to the MINDE integrand, and with 0.1 that branch sees a tenth of the training.
    - `times`: the time integrator of MINDE (`None`: importance sampling, log-uniform in s, 16 times per point).
    - `knn_neighbours`: k of the k-NN accuracy.
    - `logistic_c`: inverse regularisation strength of the logistic regression whose held-out cross-entropy gives
      the lower bound.
    - `crossfit`: `True` (default): fit two models on disjoint halves of the training latents (of the training
      images, in the experiment: all draws of an image in one half; `latent_information`'s `groups`) and use the
      cross-fitted MINDE (`verify.estimators.mutual_information_minde_crossfit`), which removes the upward bias of
      the fits' independent errors (not a bias they share: with label dropout 0.1 the mixture above still read
      +24 %). On the digits tau-scan (`benchmarks/results/autoencoder_digits*`) the plug-in read 0.01-0.66 nats
      above the cross-fit and three I(Z_per;Y) above H(Y) by more than 2 stderr; the cross-fit put all ten
      values inside their bounds. `False`: one fit on all the training latents, plain MINDE.
    - `posterior`: `None` (default), or the `TrainConfig` of a noise-conditional classifier $p_\phi(y|z_s, s)$
      (`learned.NoisyMLPClassifier`, `posterior_width` x `posterior_depth`, trained by cross-entropy on all the
      training latents, each diffused to a time from `POSTERIOR_TIMES`; `POSTERIOR_TRAIN` is the measured recipe).
      It adds the posterior-centred MINDE beside the null-label one: each latent model's conditional output
      centred on the posterior mixture of its own conditional outputs, $e(z_s,s;y) - \sum_k p_\phi(k|z_s)
      e(z_s,s;k)$, so an error the null-label output makes beyond the conditional ones cannot reach it (exact for
      exact scores and posterior); cross-fitted with `crossfit`, with the first fit's plug-in beside it. Its
      held-out cross-entropy at $10^{-5}T$ is one more lower bound, $I(Z;Y) \ge H(Y) - CE_\phi$. On the
      MNIST-5k tau-scan (`benchmarks/README.md`, `bench_latent_mi_diagnosis.py --posterior`), where the
      null-label cross-fit of $z_{sem}$ reads above $H(Y)$ at every tau, the centred plug-in lands inside
      [best classifier bound, $H(Y)$] for all ten latents and the centred cross-fit below that bound for nine
      (by up to 2.9 stderr: one classifier centres both fits). Neither is recipe-free: on a latent model trained
      without label dropout the centred cross-fit read 2.53 nats, above $H(Y) = 2.30$.
    - `posterior_width`, `posterior_depth`: that classifier's MLP.
    """

    width: int = 128
    depth: int = 2
    train: TrainConfig = TrainConfig(steps=2000, batch_size=256, lr=2e-3, warmup_steps=100, final_lr_fraction=0.05,
                                     steps_per_call=100, checkpoint_every=100, ema_decay=0.99, progress=False)
    label_dropout: float = 0.5
    times: AbstractTimeIntegrator | None = None
    knn_neighbours: int = 5
    logistic_c: float = 1.0
    crossfit: bool = True
    posterior: TrainConfig | None = None
    posterior_width: int = 256
    posterior_depth: int = 2

    def __post_init__(self):
        if self.posterior is not None and not isinstance(self.posterior, TrainConfig):
            raise ValueError(f"LatentInformationConfig.posterior must be a learned.TrainConfig (the latent "
                             f"classifier's training, e.g. POSTERIOR_TRAIN) or None; got {self.posterior!r}.")
        for name in ("width", "depth", "knn_neighbours", "posterior_width", "posterior_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LatentInformationConfig.{name} must be a positive integer; got {value!r}.")
        if not 0.0 < self.label_dropout < 1.0:
            raise ValueError(f"LatentInformationConfig.label_dropout must lie in (0, 1) (one network gives e(z, s; y) "
                             f"and e(z, s)); got {self.label_dropout!r}.")
        if not (isinstance(self.logistic_c, (int, float)) and math.isfinite(self.logistic_c) and self.logistic_c > 0):
            raise ValueError(f"LatentInformationConfig.logistic_c must be a finite number > 0; got {self.logistic_c!r}.")

    def integrator(self, sde: VPSDE) -> AbstractTimeIntegrator:
        if self.times is not None:
            return self.times
        return ImportanceSampler(PiecewiseConstant.log_uniform(sde.T), n_per_sample=16)


@dataclasses.dataclass(frozen=True)
class LatentInformation:
    """$I(Z;Y)$ by MINDE with its bounds, and the k-NN label accuracy of one set of latents; with a posterior
    (`LatentInformationConfig.posterior`) also the posterior-centred MINDE (`centred`, and the first fit's plug-in
    `centred_plain`) and the noisy classifier's lower bound (`posterior_bound`: value, stderr, cross_entropy, at_s)."""

    minde: Estimate
    bounds: Bounds
    knn_accuracy: float
    knn_stderr: float
    plain_minde: Estimate
    centred: Estimate | None = None
    centred_plain: Estimate | None = None
    posterior_bound: dict | None = None

    @property
    def flags(self) -> list[str]:
        """The flags of the reported estimates: the MINDE's, then the posterior-centred one's."""
        return [*self.minde.flags, *(() if self.centred is None else self.centred.flags)]

    def estimate(self) -> dict:
        """The reported I(Z;Y) (value, stderr, flags) with the first latent model's plug-in MINDE beside it
        (`plain_minde_one_fit`; the same number when `crossfit` is off) and, with a posterior, the
        posterior-centred MINDE likewise (`posterior_centred`, with its own `plain_minde_one_fit`)."""
        centred = {} if self.centred is None else {"posterior_centred": {
            "value": self.centred.value, "stderr": self.centred.stderr, "flags": list(self.centred.flags),
            "plain_minde_one_fit": {"value": self.centred_plain.value, "stderr": self.centred_plain.stderr}}}
        return {"value": self.minde.value, "stderr": self.minde.stderr, "flags": list(self.minde.flags),
                "plain_minde_one_fit": {"value": self.plain_minde.value, "stderr": self.plain_minde.stderr},
                **centred}

    def lower_bound(self) -> dict:
        """The logistic regression's bound and, with a posterior, the noisy classifier's (`posterior_classifier`)."""
        return {"value": self.bounds.lower, "stderr": self.bounds.lower_stderr,
                "cross_entropy": self.bounds.cross_entropy, "classifier_accuracy": self.bounds.accuracy,
                **({} if self.posterior_bound is None else {"posterior_classifier": self.posterior_bound})}

    def knn(self) -> dict:
        return {"value": self.knn_accuracy, "stderr": self.knn_stderr}

    def to_dict(self) -> dict:
        return {**self.minde.to_dict(), **self.estimate(), "lower_bound": self.lower_bound(),
                "knn_accuracy": self.knn()}


def _check_latents(name, z, y, num_classes):
    z, y = np.asarray(z, np.float64), np.asarray(y)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"{name} latents must have shape (batch >= 2, dim_latent); got {z.shape}.")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} latents must be finite; they contain NaN or infinity.")
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be integers of shape ({z.shape[0]},); got {y.shape}, {y.dtype}.")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name} labels must lie in [0, {num_classes}); got {y.min()}..{y.max()}.")
    return z, y


def latent_information(z_train: Float[Array, "n_train dim_latent"], y_train: Int[Array, " n_train"],
                       z_test: Float[Array, "n_test dim_latent"], y_test: Int[Array, " n_test"], *,
                       num_classes: int, label_entropy: float, config: LatentInformationConfig = LatentInformationConfig(),
                       sde: VPSDE = VPSDE(beta_min=0.1, beta_max=16.0, T=1.0), name: str = "I(Z;Y)",
                       label_entropy_definition: str = "H(Y), entropy of the label distribution",
                       groups: Int[Array, " n_train"] | None = None, key: PRNGKeyArray) -> LatentInformation:
    r"""$I(Z;Y)$ on held-out latents by MINDE, its bounds $[H(Y) - CE(Z), H(Y)]$ and the k-NN label accuracy, in nats.

    The latents are standardised per coordinate with the training latents' mean and standard deviation (an
    invertible map: $I(Z;Y)$ is unchanged). A label-conditioned `EntropyMLP` (null label = unconditional), whitened
    by the latents' covariance (`learned.Preconditioned`), is trained by `learned.train` on the training pairs with
    label dropout; MINDE (Eq. 13) is evaluated on the held-out pairs. The logistic regression and the k-NN
    classifier are fitted on the training latents and scored on the held-out ones.

    **Arguments:**

    - `z_train`, `y_train`: latents and labels that train the models.
    - `z_test`, `y_test`: held-out latents and labels that are measured.
    - `num_classes`: number of labels.
    - `label_entropy`: $H(Y)$ in nats (from the whole data set's label frequencies).
    - `config`: a `LatentInformationConfig`.
    - `sde`: the latent diffusion model's forward process.
    - `name`: the estimate's name in its flags.
    - `label_entropy_definition`: how $H(Y)$ was computed, for the report.
    - `groups`: `None` (the training rows are independent pairs), or one integer per training row naming what it was
      drawn from (e.g. the image of each of several draws $z \sim q(z|x)$). With `config.crossfit` the halves then
      split the groups, not the rows: two fits that share the same images through different draws share their
      errors from fitting those images, which the cross-fit cannot remove.
    - `key`: PRNG key.

    **Returns:**

    A `LatentInformation`, its MINDE estimates flagged when outside the bounds by more than 2 standard errors.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}.")
    z_train, y_train = _check_latents("training", z_train, y_train, num_classes)
    z_test, y_test = _check_latents("held-out", z_test, y_test, num_classes)
    if z_train.shape[1] != z_test.shape[1]:
        raise ValueError(f"training and held-out latents must have one size; got {z_train.shape[1]} and {z_test.shape[1]}.")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (len(z_train),) or not np.issubdtype(groups.dtype, np.integer):
            raise ValueError(f"groups must be integers, one per training row, of shape ({len(z_train)},); got "
                             f"{groups.shape}, {groups.dtype}.")
    k_init, k_train, k_est = jax.random.split(key, 3)
    if config.crossfit:
        # two fits on disjoint halves (of the groups, when rows share one): the cross-fitted integrand has no upward
        # bias from the fits' own errors; drawn (and checked) before any classifier is fitted
        halves = crossfit_halves(np.arange(len(z_train)) if groups is None else groups,
                                 np.random.default_rng(np.asarray(jax.random.key_data(k_init)).ravel()[-1]))
    loc, scale = z_train.mean(axis=0), np.maximum(z_train.std(axis=0), 1e-8)
    a_train, a_test = (z_train - loc) / scale, (z_test - loc) / scale

    # lower bound: held-out cross-entropy of a logistic regression
    clf = LogisticRegression(C=config.logistic_c, max_iter=2000).fit(a_train, y_train)
    proba = np.zeros((len(a_test), num_classes))
    proba[:, clf.classes_] = clf.predict_proba(a_test)
    nll = -np.log(np.maximum(proba[np.arange(len(y_test)), y_test], 1e-300))
    ce, ce_se = float(nll.mean()), float(nll.std(ddof=1) / math.sqrt(len(nll)))
    accuracy = float(np.mean(proba.argmax(axis=1) == y_test))
    h_y = float(label_entropy)
    bounds = Bounds(upper=h_y, lower=h_y - ce, lower_stderr=ce_se, cross_entropy=ce, accuracy=accuracy,
                    upper_definition=label_entropy_definition)

    knn = KNeighborsClassifier(n_neighbors=min(config.knn_neighbours, len(a_train))).fit(a_train, y_train)
    knn_acc = float(knn.score(a_test, y_test))
    knn_se = math.sqrt(max(knn_acc * (1 - knn_acc), 0.0) / len(a_test))

    # MINDE from label-conditioned latent diffusion models
    def fit(rows, k_i, k_t):
        return fit_latent_model(a_train[rows], y_train[rows], num_classes=num_classes, config=config, sde=sde,
                                init_key=k_i, train_key=k_t)

    z_eval, y_eval = jnp.asarray(a_test, jnp.float32), jnp.asarray(y_test, jnp.int32)
    times = config.integrator(sde)
    if config.crossfit:
        k_ia, k_ib = jax.random.split(k_init)
        k_ta, k_tb = jax.random.split(k_train)
        model_a, model_b = fit(halves[0], k_ia, k_ta), fit(halves[1], k_ib, k_tb)
        minde = mutual_information_minde_crossfit(model_a, model_b, z_eval, y_eval, times=times, key=k_est)
        plain = mutual_information_minde(model_a, z_eval, y_eval, times=times, key=k_est)
    else:
        model_a = fit(np.arange(len(a_train)), k_init, k_train)
        minde = mutual_information_minde(model_a, z_eval, y_eval, times=times, key=k_est)
        plain = minde
    centred, centred_plain, posterior_bound = None, None, None
    if config.posterior is not None:
        # keys folded from `key`, not split from it: the numbers above are those of a run without a posterior
        posterior = fit_latent_posterior(a_train, y_train, num_classes=num_classes, train=config.posterior,
                                         width=config.posterior_width, depth=config.posterior_depth, sde=sde,
                                         key=jax.random.fold_in(key, 1))
        centred_plain = mutual_information_minde(model_a, z_eval, y_eval, times=times, posterior=posterior, key=k_est)
        centred = centred_plain if not config.crossfit else mutual_information_minde_crossfit(
            model_a, model_b, z_eval, y_eval, times=times, posterior=posterior, key=k_est)
        centred = bounds.check(centred, f"{name} (posterior-centred)")
        s_low = POSTERIOR_TIMES.s_min * sde.T  # its smallest training time: I(Z_s;Y) <= I(Z;Y) bounds I(Z;Y) too
        ce, ce_se, _ = learned.noisy_cross_entropy_curve(posterior, sde, z_eval, y_eval, [s_low],
                                                         key=jax.random.fold_in(key, 2))
        posterior_bound = {"value": h_y - float(ce[0]), "stderr": float(ce_se[0]), "cross_entropy": float(ce[0]),
                           "at_s": s_low}
    return LatentInformation(bounds.check(minde, name), bounds, knn_acc, knn_se, plain, centred, centred_plain,
                             posterior_bound)


def fit_latent_posterior(z: Float[Array, "batch dim_latent"], y: Int[Array, " batch"], *, num_classes: int,
                         train: TrainConfig = POSTERIOR_TRAIN, width: int = 256, depth: int = 2,
                         sde: VPSDE = VPSDE(beta_min=0.1, beta_max=16.0, T=1.0),
                         key: PRNGKeyArray) -> learned.NoisyMLPClassifier:
    r"""The noise-conditional latent classifier $p_\phi(y|z_s, s)$ as `latent_information` fits it (with
    `LatentInformationConfig.posterior`): a `learned.NoisyMLPClassifier` (`width` x `depth`) trained by
    `learned.train` under `train` with `learned.NoisyClassifierLoss(POSTERIOR_TIMES)`, each row diffused to its own
    time; the EMA model is returned.

    **Arguments:**

    - `z`, `y`: the (standardised) training latents and their integer labels in `[0, num_classes)`.
    - `num_classes`: number of labels.
    - `train`: the `TrainConfig` (`POSTERIOR_TRAIN`: the measured recipe).
    - `width`, `depth`: the classifier's MLP.
    - `sde`: the forward process that diffuses the latents.
    - `key`: PRNG key (split into the initialisation's and the training's).
    """
    z, y = _check_latents("training", z, y, num_classes)
    k_init, k_train = jax.random.split(key)
    model = learned.NoisyMLPClassifier(z.shape[1], num_classes, sde, width=width, depth=depth, key=k_init)
    return learned.train(model, z.astype(np.float32), y.astype(np.int32), config=train,
                         loss=learned.NoisyClassifierLoss(POSTERIOR_TIMES), key=k_train).ema_model


def fit_latent_model(z: Float[Array, "batch dim_latent"], y: Int[Array, " batch"] | None, *,
                     num_classes: int | None, config: LatentInformationConfig = LatentInformationConfig(),
                     sde: VPSDE = VPSDE(beta_min=0.1, beta_max=16.0, T=1.0), label_dropout: float | None = None,
                     init_key: PRNGKeyArray, train_key: PRNGKeyArray) -> learned.Preconditioned:
    r"""One latent diffusion model as `latent_information` fits it: an `EntropyMLP` (`config.width`, `config.depth`)
    whitened by the latents' covariance (`learned.Preconditioned.fit`), trained by `learned.train` with the DEM loss
    ($\lambda = \sigma^2/2$, times uniform in log-SNR) under `config.train`; the EMA model is returned.

    **Arguments:**

    - `z`: the (standardised) training latents.
    - `y`: their labels, or `None` with `num_classes=None` (an unconditional model).
    - `num_classes`: number of labels (the network's null label is one more), or `None`.
    - `config`: a `LatentInformationConfig` (network size and training schedule).
    - `sde`: the forward process.
    - `label_dropout`: probability of the null label in training; `None`: `config.label_dropout` for a labelled
      model, none for an unconditional one. `0.0` trains the labelled outputs only.
    - `init_key`, `train_key`: PRNG keys of the initialisation and of the training (two, as `latent_information`
      draws them, so that its fits are reproduced to the bit).
    """
    if (y is None) != (num_classes is None):
        raise ValueError(f"fit_latent_model takes labels y with num_classes, or neither (an unconditional model); got "
                         f"y={'None' if y is None else 'labels'} and num_classes={num_classes!r}.")
    if num_classes is None and label_dropout:
        raise ValueError(f"an unconditional latent model has no label to drop; got label_dropout={label_dropout!r}.")
    if label_dropout is None:
        label_dropout = 0.0 if num_classes is None else config.label_dropout
    if not 0.0 <= label_dropout < 1.0:
        raise ValueError(f"label_dropout must lie in [0, 1); got {label_dropout!r}.")
    z = np.asarray(z)  # the whitening is fitted in float64 from the latents as given, the training is in float32
    if z.ndim != 2 or z.shape[0] < 2 or not np.all(np.isfinite(z)):
        raise ValueError(f"latents must be finite, of shape (batch >= 2, dim_latent); got shape {z.shape}.")
    if y is not None:
        _check_latents("training", z, y, num_classes)
        y = np.asarray(y, np.int32)
    loss = learned.DEMLoss(learned.Likelihood(sde), learned.LogSNRTime(), condition_dropout=label_dropout)
    network = learned.EntropyMLP(learned.MLPConfig(dim_x=z.shape[1], num_classes=num_classes, width=config.width,
                                                   depth=config.depth), sde, key=init_key)
    model = learned.Preconditioned.fit(network, z)
    return learned.train(model, z.astype(np.float32), y, config=config.train, loss=loss, key=train_key).ema_model


def crossfit_halves(groups: Int[Array, " n"], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The row indices of two disjoint halves of the groups: the rows of a random half of the distinct groups
    (`len(unique) // 2` of them, drawn by `rng.permutation`), and the rest. With one group per row this is a
    random split of the rows; with the image of each of several draws, all draws of an image land in one half."""
    groups = np.asarray(groups)
    if groups.ndim != 1 or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(f"groups must be a 1-d integer array, one per row; got {groups.shape}, {groups.dtype}.")
    names = rng.permutation(np.unique(groups))
    if len(names) < 2:
        raise ValueError("groups must name at least 2 groups to split the rows between two fits.")
    first = np.isin(groups, names[: len(names) // 2])
    return np.flatnonzero(first), np.flatnonzero(~first)


# ---------------------------------------------------------------------------------------------- experiment
@dataclasses.dataclass(frozen=True)
class AutoencoderExperiment:
    r"""Everything the autoencoder experiment needs besides the data (frozen).

    **Arguments:**

    - `unet`: the decoder's `UNetConfig` (its `image_shape` must match the data; `dim_latent` and `num_classes` are
      set here: the latent size, no labels).
    - `train`: the `TrainConfig` of every DAE (split or not).
    - `vae_train`: the VAE's `TrainConfig`.
    - `latent_dim`: $D_Z$ of each split-DAE latent (the paper: 20 for MNIST).
    - `taus`: the split times $\tau$, in units of T, trained and reported in this order (the figure sorts them);
      may be empty when `comparison` is on. Each model's keys derive from the run's key and the model's name
      (`dae`, `vae`, `split_tau=...`), so one $\tau$ gives the same model whatever the other taus and their order:
      a scan can be split into runs (on several machines or sessions) and merged (`merge_autoencoder_results`).
    - `comparison`: train and measure the DAE vs VAE comparison (`False`: the split DAEs only).
    - `comparison_latent_dim`: $D_Z$ of the DAE vs VAE comparison (Figs. 14, 15; the paper: 2).
    - `semantic_channels`, `perceptual_channels`: the encoders' stages (the semantic one deeper: a larger
      receptive field); the VAE and the single DAE use the semantic architecture.
    - `encoder_hidden`: width of the encoders' dense layer.
    - `gamma`: the KL weight of the DAEs and the VAE (the paper's code: 1; default 0.01, measured below).
    - `weighting`, `time_sampler`: the decoders' DEM loss, as in `ImageExperiment`: `"likelihood"` ($\sigma^2/2$,
      Eq. 66; the loss is then the negative ELBO of Eq. 60 up to a constant) or `"constant"`; times uniform in
      log-SNR (`LogSNRTime(s_min)`) or in s (`UniformTime()`).
    - `noisy_semantic`: feed the semantic encoder $\tilde x_\tau$ instead of the clean image.
    - `sigma_dec`: the VAE decoder's fixed standard deviation.
    - `latent`: the `LatentInformationConfig` of the $I(Z;Y)$ measurements.
    - `latent_draws`: draws $z \sim q(z|x)$ per training image that train the latent models (one per held-out image).
    - `n_eval`: held-out (test) images whose latents are measured.
    - `n_recon`, `recon_steps`: images reconstructed and the Heun steps of the DAE's probability-flow decoder.
    - `tsne_tau`: the $\tau$ of the t-SNE figure (the nearest of `taus`; the paper: 0.1 T).
    - `sde`: the forward process of the decoders (the paper: beta_min = 0.1, beta_max = 16, T = 1).
    - `dataset`, `data_dir`, `pixel_range`, `n_train`: the data set, as in `ImageExperiment`.
    - `checkpoint_dir`: where the autoencoders' training checkpoints go, relative to the output folder (an absolute
      path is used as it is), one folder per model (`dae`, `vae`, `split_tau=...`), or `None` for none. A finished
      checkpoint is read back instead of retrained, so an interrupted scan resumes at the model it was training.
      The latent MI models (seconds each) are not checkpointed.
    - `resume`: what to do with a checkpoint already there (`learned.train`'s `resume`).
    - `save_latents`: also write every measured latent's training and held-out draws to `LATENTS` (`latents.npz`,
      about 1.4 MB per latent at D_Z = 20 and 4,000 training images), to re-analyse the I(Z;Y) measurement
      (`benchmarks/bench_latent_mi_diagnosis.py`); it changes no number.

    The defaults are the measured ones (`benchmarks/bench_autoencoder_collapse.py`, digits, D_Z = 20, 400 steps):
    with the likelihood weighting the DAE loss is the negative ELBO (Eq. 60) up to a constant, so at
    $\gamma = 1$ a decoder that models the data without the latent is optimal and the latent closes onto the
    prior (KL 0.08 nats, draws at chance); $\gamma = 0.1$ closes it too within 400 steps (KL 4.0 nats, draws at
    chance); $\gamma = 0.01$ keeps it open (KL 33 nats, 5-NN accuracy of the draws 0.68).
    """

    unet: UNetConfig
    train: TrainConfig
    vae_train: TrainConfig
    latent_dim: int = 20
    taus: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4)
    comparison: bool = True
    comparison_latent_dim: int = 2
    semantic_channels: tuple[int, ...] = (32, 64)
    perceptual_channels: tuple[int, ...] = (32,)
    encoder_hidden: int = 128
    gamma: float = 0.01
    weighting: str = "likelihood"
    time_sampler: AbstractTimeDensity = LogSNRTime(s_min=1e-4)
    noisy_semantic: bool = False
    sigma_dec: float = 0.1
    latent: LatentInformationConfig = LatentInformationConfig()
    latent_draws: int = 4
    n_eval: int = 1000
    n_recon: int = 8
    recon_steps: int = 32
    tsne_tau: float = 0.1
    sde: VPSDE = VPSDE(beta_min=0.1, beta_max=16.0, T=1.0)
    dataset: str = "digits"
    data_dir: str | None = None
    pixel_range: tuple[float, float] = (0.0, 1.0)
    n_train: int | None = None
    checkpoint_dir: str | None = "checkpoints"
    resume: str = "auto"
    save_latents: bool = False

    def __post_init__(self):
        for name in ("latent_dim", "comparison_latent_dim", "encoder_hidden", "latent_draws", "n_recon", "recon_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AutoencoderExperiment.{name} must be a positive integer; got {value!r}.")
        if isinstance(self.n_eval, bool) or not isinstance(self.n_eval, int) or self.n_eval < 10:
            raise ValueError(f"AutoencoderExperiment.n_eval must be an integer >= 10; got {self.n_eval!r}.")
        for name in ("comparison", "save_latents"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"AutoencoderExperiment.{name} must be True or False; got {getattr(self, name)!r}.")
        if not self.taus and not self.comparison:
            raise ValueError("AutoencoderExperiment has nothing to run: no split time in taus and the comparison off.")
        if len({float(t) for t in self.taus}) != len(self.taus):
            raise ValueError(f"AutoencoderExperiment.taus must not repeat a split time; got {self.taus!r}.")
        for tau in (*self.taus, self.tsne_tau):
            if not (isinstance(tau, (int, float)) and math.isfinite(tau) and 0.0 <= tau <= self.sde.T):
                raise ValueError(f"every tau must lie in [0, T] = [0, {self.sde.T}]; got {tau!r}.")
        if not (isinstance(self.gamma, (int, float)) and math.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError(f"AutoencoderExperiment.gamma must be a finite number >= 0; got {self.gamma!r}.")
        lowest = check_dem_training("AutoencoderExperiment", self.weighting, self.time_sampler, self.sde)
        for tau in self.taus:
            if 0.0 < tau * self.sde.T <= lowest:
                raise ValueError(f"tau = {tau!r} T lies at or below the smallest training time {lowest:.3g} of "
                                 f"{self.time_sampler!r}: the perceptual latent, used for s < tau, would never be "
                                 "trained (tau = 0 is the single DAE on z_sem).")
        if not (isinstance(self.sigma_dec, (int, float)) and math.isfinite(self.sigma_dec) and self.sigma_dec > 0):
            raise ValueError(f"AutoencoderExperiment.sigma_dec must be a finite number > 0; got {self.sigma_dec!r}.")


def _encoder(config: AutoencoderExperiment, image_shape, dim, channels, key) -> learned.ConvEncoder:
    return learned.ConvEncoder(EncoderConfig(tuple(image_shape), dim, channels=tuple(channels),
                                             hidden=config.encoder_hidden), key=key)


def _split_model(config: AutoencoderExperiment, image_shape, dim: int, tau: float, *, key) -> learned.SplitAutoencoder:
    k_sem, k_per, k_dec = jax.random.split(key, 3)
    unet = learned.EntropyUNet(dataclasses.replace(config.unet, dim_latent=dim, num_classes=None), config.sde, key=k_dec)
    return learned.SplitAutoencoder(_encoder(config, image_shape, dim, config.semantic_channels, k_sem),
                                    _encoder(config, image_shape, dim, config.perceptual_channels, k_per),
                                    learned.UNetDecoder(unet), tau, noisy_semantic=config.noisy_semantic)


def reconstruct(model, x: Float[Array, "batch channels height width"], *, n_steps: int = 32, s_end: float = 1e-3,
                key: PRNGKeyArray) -> np.ndarray:
    r"""Reconstructions of a diffusion autoencoder: the probability-flow ODE (Eq. 59, $w = 0$) from $x_T \sim
    \mathcal N(0, I)$ to `s_end`, conditioned on the encoder's mean latent of each image (Heun, `n_steps` steps).

    **Arguments:**

    - `model`: a `DiffusionAutoencoder` or `SplitAutoencoder` (a protocol model whose condition is the latent).
    - `x`: the images to reconstruct.
    - `n_steps`, `s_end`: Heun steps and the final forward time.
    - `key`: PRNG key for the starting noise.

    **Returns:**

    The reconstructions, shaped like `x`.
    """
    x = np.asarray(x, np.float32)
    z = learned.encode_batch(model, x, key=jax.random.fold_in(key, 1) if getattr(model, "noisy_semantic", False) else None)
    x_T = jax.random.normal(key, x.shape, jnp.float32)
    dt0 = -(model.sde.T - s_end) / n_steps
    out = sample_probability_flow(model, x_T, y=jnp.asarray(z), s_end=s_end, solver=diffrax.Heun(),
                                  stepsize_controller=diffrax.ConstantStepSize(), dt0=dt0, max_steps=n_steps + 1)
    return np.asarray(out, np.float32)


def _nearest(taus, tau):
    return min(taus, key=lambda t: abs(t - tau))


def _mse(a, b) -> dict:
    per_image = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=tuple(range(1, a.ndim)))
    return {"value": float(per_image.mean()), "stderr": float(per_image.std(ddof=1) / math.sqrt(len(per_image)))
            if len(per_image) > 1 else 0.0}


def run(config: AutoencoderExperiment, out: str | Path, *, key: PRNGKeyArray, data: ImageData | None = None,
        instance: dict | None = None) -> dict:
    """Load `config.dataset` (unless `data` is given) and run `run_autoencoder_experiment` on it.

    **Arguments:**

    - `config`: an `AutoencoderExperiment`.
    - `out`: output directory.
    - `key`: PRNG key.
    - `data`: the `ImageData`, if already loaded.
    - `instance`: extra entries for the `instance` block (e.g. the CLI's seed).

    **Returns:**

    The results payload (also written to `out/results.json`).
    """
    if data is None:
        data = configured_data(config)
    ckpt = None if config.checkpoint_dir is None else Path(out) / config.checkpoint_dir
    return run_autoencoder_experiment(data, config, out, checkpoint_dir=ckpt, instance=instance, key=key)


def run_autoencoder_experiment(data: ImageData, config: AutoencoderExperiment, out: str | Path, *,
                               checkpoint_dir: str | Path | None = None, instance: dict | None = None,
                               key: PRNGKeyArray) -> dict:
    """Train the DAE, the VAE and one split DAE per tau; measure the latents; plot; write `out/results.json`.

    **Arguments:**

    - `data`: an `ImageData`.
    - `config`: an `AutoencoderExperiment`.
    - `out`: output directory (results.json, arrays.npz, reconstructions.png, latents_2d.png, tsne.png,
      tau_scan.png). While the scan runs, `results.partial.json` and `arrays.npz` hold what is measured so far (the
      comparison, then each finished tau; `"complete": false`, no figures), so a scan stopped part-way keeps its
      numbers; `results.json` (`"complete": true`) replaces it at the end. Each results file records the SHA-256 of
      the arrays.npz written with it (`arrays_sha256`). An earlier run's results in `out` are moved to
      `out/previous` when the run starts. Runs of parts of one experiment (other `taus`, `comparison` off) are joined
      by `merge_autoencoder_results`.
    - `checkpoint_dir`: where each autoencoder's checkpoints go (`checkpoint_dir / name`), resumed when present; or
      `None`.
    - `instance`: extra entries for the `instance` block.
    - `key`: PRNG key.

    **Returns:**

    The results payload.
    """
    start = time.perf_counter()
    out = Path(out)
    if tuple(config.unet.image_shape) != tuple(data.image_shape):
        raise ValueError(f"UNetConfig has image_shape {config.unet.image_shape}; the data have {data.image_shape}.")
    for name, images in (("training", data.train_x), ("test", data.test_x)):
        if not np.all(np.isfinite(images)):
            raise ValueError(f"the {name} images must be finite; they contain NaN or infinity.")
    out.mkdir(parents=True, exist_ok=True)
    _set_aside_previous_run(out)
    shape, K, T = data.image_shape, data.num_classes, config.sde.T
    h_y = data.label_entropy()
    h_def = (f"H(Y), plug-in entropy of all {len(data.train_y) + len(data.test_y)} labels of {data.name} "
             "(train and test)")
    x_train, y_train = data.train_x, np.asarray(data.train_y)
    x_eval, y_eval = data.held_out(config.n_eval, "AutoencoderExperiment.n_eval")
    y_eval = np.asarray(y_eval)
    x_recon = x_eval[: config.n_recon]
    loss = learned.AutoencoderLoss(dem_loss(config.weighting, config.time_sampler, config.sde,
                                            model_key=config.unet.dropout > 0), gamma=config.gamma)
    arrays = {"y_eval": y_eval, "x_recon": x_recon}  # what the figures are drawn from (saved as ARRAYS)
    measured = {"y_train": y_train, "y_eval": y_eval}  # with save_latents: every measured latent (saved as LATENTS)

    def fit(model, loss, train_config, name, k):
        folder = None if checkpoint_dir is None else Path(checkpoint_dir) / name
        return learned.train(model, x_train, None, config=train_config, loss=loss, key=k, checkpoint_dir=folder,
                             resume=config.resume).ema_model

    timings, figures, flags = {}, {}, []
    comparison, recon_error = {}, {}
    scan, knn, lower, split_recon = [], [], [], []
    partial = out / "results.partial.json"
    d2 = config.comparison_latent_dim
    written = {}  # the SHA-256 of the ARRAYS file last written

    def payload(complete: bool) -> dict:
        return {
            "experiment": "autoencoder",
            "complete": complete,
            "instance": {
                "dataset": data.name, "image_shape": data.image_shape, "num_classes": K,
                "n_train": int(len(x_train)), "n_test": int(len(data.test_x)), "n_eval": int(len(x_eval)),
                "n_eval_requested": config.n_eval,
                "pixel_range": data.pixel_range, "latent_dim": config.latent_dim, "comparison": config.comparison,
                "comparison_latent_dim": d2, "taus": [float(t) for t in config.taus], "tau_units": "T",
                "gamma": config.gamma, "weighting": config.weighting,
                "time_sampler": {"density": type(config.time_sampler).__name__,
                                 "support": list(config.time_sampler.support(config.sde))},
                "noisy_semantic": config.noisy_semantic, "sigma_dec": config.sigma_dec,
                "semantic_channels": config.semantic_channels, "perceptual_channels": config.perceptual_channels,
                "encoder_hidden": config.encoder_hidden,
                "sde": {"beta_min": config.sde.beta_min, "beta_max": config.sde.beta_max, "T": T},
                "unet": config_dict(config.unet), "train": config_dict(config.train),
                "vae_train": config_dict(config.vae_train),
                "latent_mi": {"width": config.latent.width, "depth": config.latent.depth,
                              "train": config_dict(config.latent.train), "label_dropout": config.latent.label_dropout,
                              "times": type(config.latent.integrator(config.sde)).__name__,
                              "knn_neighbours": config.latent.knn_neighbours, "logistic_c": config.latent.logistic_c,
                              "crossfit": config.latent.crossfit,
                              "posterior": None if config.latent.posterior is None else {
                                  "classifier": "learned.NoisyMLPClassifier", "width": config.latent.posterior_width,
                                  "depth": config.latent.posterior_depth, "train": config_dict(config.latent.posterior),
                                  "times": repr(POSTERIOR_TIMES)},
                              **({"crossfit_halves": "training images: all latent_draws draws of an image in one half"}
                                 if config.latent.crossfit else {})},
                "latent_draws": config.latent_draws, "n_recon": int(len(x_recon)), "recon_steps": config.recon_steps,
                "tsne_tau": config.tsne_tau,
                "checkpoints": None if checkpoint_dir is None else str(checkpoint_dir),
                "latent_definition": "Z ~ q(z|x): MI models and classifiers fitted on latent_draws draws per training "
                                     "image, measured on one draw for each of the first n_eval test images",
                **(instance or {}),
            },
            "quantities": {
                "mutual_information": scan,
                "bounds": {"upper": {"value": h_y, "stderr": 0.0, "definition": h_def},
                           "lower": {"definition": "H(Y) - CE(Z), CE = held-out cross-entropy of a logistic regression "
                                                   "on the latents, one per latent and tau" + (
                                                       "; posterior_classifier: the same with the noise-conditional "
                                                       "latent classifier's CE at its smallest training time"
                                                       if config.latent.posterior is not None else ""),
                                     "per_tau": lower}},
                "knn_accuracy": knn,
                "comparison": comparison,
                "reconstruction_error": {
                    "definition": "mean squared error per pixel of n_recon held-out reconstructions (DAE: probability "
                                  "flow from noise given the mean latent; VAE: decoder mean at the mean latent)",
                    "dae": recon_error.get("dae"), "vae": recon_error.get("vae"), "split": split_recon},
                "flags": flags,
            },
            # a scan in progress: the comparison and the taus measured so far, without figures
            **({} if complete else {"partial": "measured so far: the comparison and the finished taus; "
                                               "results.json replaces this file when the scan ends"}),
            "figures": figures,
            _ARRAYS_SHA256: written[ARRAYS],
            **({"latents": LATENTS} if config.save_latents else {}),
            "timings_s": timings,
            "units": "nats; tau in units of T; reconstruction error in squared pixel units",
            **provenance(start),
        }

    def save_partial():
        written[ARRAYS] = _save_arrays(out / ARRAYS, arrays)
        if config.save_latents:
            _save_arrays(out / LATENTS, measured)
        write_json(partial, payload(complete=False))

    # row r of the training latents is a draw from training image r % n_train: the cross-fit's halves split the images
    y_rows = np.tile(y_train, config.latent_draws)
    image_of_row = np.tile(np.arange(len(y_train)), config.latent_draws)

    def measure(z_tr, z_ev, name, label, k):
        if config.save_latents:
            measured[f"z_train_{label}"], measured[f"z_eval_{label}"] = z_tr, z_ev
        return latent_information(z_tr, y_rows, z_ev, y_eval, num_classes=K, label_entropy=h_y, config=config.latent,
                                  sde=config.sde, name=name, label_entropy_definition=h_def, groups=image_of_row,
                                  key=k)

    def latents(model, k, part=slice(None)):
        # `latent_draws` draws z ~ q(z|x) per training image: more samples of the joint (Z, Y) for the MI model
        k_tr, k_ev = jax.random.split(k)
        z_tr = np.concatenate([learned.encode_batch(model, x_train, key=jax.random.fold_in(k_tr, i))[:, part]
                               for i in range(config.latent_draws)])
        return z_tr, learned.encode_batch(model, x_eval, key=k_ev)[:, part]

    k_rec = _named_keys(key, "reconstructions", 1)[0]  # one starting noise for every model's reconstructions

    # ---- DAE vs VAE at comparison_latent_dim (the DAE is the split DAE at tau = 0: exactly a DAE on z_sem)
    if config.comparison:
        t0 = time.perf_counter()
        k_init, k_fit, k_dae_lat, k_dae_mi = _named_keys(key, "dae", 4)
        dae = fit(_split_model(config, shape, d2, 0.0, key=k_init), loss, config.train, "dae", k_fit)
        k_enc, k_init, k_fit, k_vae_lat, k_vae_mi = _named_keys(key, "vae", 5)
        vae = learned.VAE(_encoder(config, shape, d2, config.semantic_channels, k_enc), sigma_dec=config.sigma_dec,
                          key=k_init)
        vae = fit(vae, learned.VAELoss(config.gamma), config.vae_train, "vae", k_fit)
        timings["comparison_train_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for name, (z_tr, z_ev), k_mi in (("dae", latents(dae, k_dae_lat, slice(0, d2)), k_dae_mi),
                                         ("vae", latents(vae, k_vae_lat), k_vae_mi)):
            info = measure(z_tr, z_ev, f"I(Z_{name};Y)", name, k_mi)
            flags += info.flags
            comparison[name] = {"latent_dim": d2, **info.to_dict()}
            arrays[f"z_{name}"] = z_ev
        arrays["recon_dae"] = reconstruct(dae, x_recon, n_steps=config.recon_steps, key=k_rec)
        arrays["recon_vae"] = np.asarray(jax.vmap(vae.reconstruct)(jnp.asarray(x_recon)))
        recon_error.update(dae=_mse(arrays["recon_dae"], x_recon), vae=_mse(arrays["recon_vae"], x_recon))
        timings["comparison_measure_s"] = time.perf_counter() - t0
        save_partial()

    # ---- the tau scan
    for tau in tqdm(config.taus, desc="tau scan", unit="tau", disable=not config.train.progress):
        t0 = time.perf_counter()
        name = _split_name(tau)
        k_init, k_fit, k_lat, k_sem, k_per = split_keys(key, tau)
        model = _split_model(config, shape, config.latent_dim, float(tau) * T, key=k_init)
        model = fit(model, loss, config.train, name, k_fit)
        d = config.latent_dim
        both_tr, both_ev = latents(model, k_lat)
        sem = measure(both_tr[:, :d], both_ev[:, :d], f"I(Z_sem;Y) at tau={tau:g}", f"sem_{name}", k_sem)
        per = measure(both_tr[:, d:], both_ev[:, d:], f"I(Z_per;Y) at tau={tau:g}", f"per_{name}", k_per)
        flags += [*sem.flags, *per.flags]
        parts = (("semantic", sem), ("perceptual", per))
        scan.append({"tau": float(tau), **{part: info.estimate() for part, info in parts}})
        knn.append({"tau": float(tau), **{part: info.knn() for part, info in parts}})
        lower.append({"tau": float(tau), **{part: info.lower_bound() for part, info in parts}})
        arrays[f"z_sem_{name}"], arrays[f"z_per_{name}"] = both_ev[:, :d], both_ev[:, d:]
        arrays[f"recon_{name}"] = reconstruct(model, x_recon, n_steps=config.recon_steps, key=k_rec)
        split_recon.append({"tau": float(tau), **_mse(arrays[f"recon_{name}"], x_recon)})
        timings[f"tau_{tau:g}_s"] = time.perf_counter() - t0
        save_partial()

    t0 = time.perf_counter()
    figures.update(_draw_figures(out, data.name, arrays, scan, lower, h_y, pixel_range=data.pixel_range,
                                 latent_dim=config.latent_dim,
                                 comparison_latent_dim=d2, tsne_tau=config.tsne_tau))
    timings["figures_s"] = time.perf_counter() - t0
    final = payload(complete=True)  # arrays.npz was written with the last part (save_partial)
    write_json(out / "results.json", final)
    partial.unlink(missing_ok=True)
    return final


# ---------------------------------------------------------------------------------------------- runs in parts
ARRAYS = "arrays.npz"
"""The arrays an autoencoder run's figures are drawn from, beside its results: `y_eval` and `x_recon` (the held-out
labels and the reconstructed originals), `z_dae`, `z_vae`, `recon_dae`, `recon_vae` (the comparison's held-out
latents and reconstructions) and per split time `z_sem_split_tau=...`, `z_per_split_tau=...`, `recon_split_tau=...`."""

LATENTS = "latents.npz"
"""With `AutoencoderExperiment.save_latents`, every latent the run measured, beside its results: `y_train`, `y_eval`
(the labels of the training images and of the held-out ones) and per latent (`dae`, `vae`, `sem_split_tau=...`,
`per_split_tau=...`) `z_train_<latent>` (`latent_draws` draws per training image: row r is a draw of training image
r % n_train) and `z_eval_<latent>` (one draw per held-out image), the rows `latent_information` was given."""

_MERGE_FREE = ("taus", "comparison", "checkpoints", "merged_from")
"""Instance entries in which merged runs may differ (each run's part); all others must agree."""

_RECORDED_LATER = ("n_eval_requested",)
"""Instance entries added after results were first written: a run without one was written before it was recorded, and
is compared with the others without it (as results without `arrays_sha256` are read as they are)."""


def _named_keys(key: PRNGKeyArray, name: str, n: int) -> PRNGKeyArray:
    """`n` keys of the part `name` of a run (a model and its measurements): a function of the run's key and the
    name only, so a part gives the same numbers whichever other parts run beside it and in which order."""
    return jax.random.split(jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF), n)


def _split_name(tau: float) -> str:
    return f"split_tau={float(tau):g}"


class SplitKeys(NamedTuple):
    """The keys of one split DAE of the tau scan and of its measurements (`split_keys`)."""

    init: PRNGKeyArray
    fit: PRNGKeyArray
    latents: PRNGKeyArray
    semantic: PRNGKeyArray
    perceptual: PRNGKeyArray


def split_keys(key: PRNGKeyArray, tau: float) -> SplitKeys:
    """The keys the autoencoder experiment run with `key` gives the split DAE at `tau` (a fraction of T): its
    initialisation, its training, the latents drawn from its encoder, and the latent I(Z;Y) models of z_sem and z_per.
    They depend on the run's key and tau only (the part named `split_tau=<tau>`), so a re-measurement of saved
    latents (`benchmarks/bench_latent_posterior_centred.py`) can refit the run's own latent models."""
    return SplitKeys(*_named_keys(key, _split_name(tau), 5))


def _save_arrays(path: Path, arrays: dict) -> str:
    """Write `arrays` atomically (`write_atomically`; integer arrays, the labels, as int64, all others as float32).
    Returns the file's SHA-256, which the results beside it record (`_ARRAYS_SHA256`), so that a results file is never
    read with another run's arrays."""
    cast = {k: np.asarray(v) for k, v in arrays.items()}
    write_atomically(path, lambda fh: np.savez_compressed(fh, **{
        k: v.astype(np.int64 if np.issubdtype(v.dtype, np.integer) else np.float32) for k, v in cast.items()}),
        binary=True)
    return _sha256(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_ARRAYS_SHA256 = "arrays_sha256"
"""The results' key for the SHA-256 of the `ARRAYS` file written with them."""

_RUN_FILES = ("results.json", "results.partial.json", ARRAYS, LATENTS)


def _set_aside_previous_run(out: Path) -> Path | None:
    """Move an earlier run's results out of the way of a run starting in `out`: its results file(s), `ARRAYS`,
    `LATENTS` and figures go into `out/previous` (which replaces an earlier `previous`; checkpoints stay), and a line
    says so. A run writes its arrays with its first finished part, so an earlier run's results left beside them
    would describe arrays that are no longer there (and `merge_autoencoder_results` prefers `results.json` to
    `results.partial.json`). Returns the folder they went to, or None when `out` held no results."""
    found = [out / name for name in _RUN_FILES[:2] if (out / name).is_file()]
    if not found:
        return None
    figures = set()
    for path in found:
        try:
            figures |= set(json.loads(path.read_text()).get("figures", {}).values())
        except (ValueError, AttributeError):  # not a results file of ours: move it, draw no names from it
            pass
    previous = out / "previous"
    if previous.exists():
        shutil.rmtree(previous)
    previous.mkdir()
    for name in (*_RUN_FILES, *sorted(figures)):
        if (out / name).is_file() and Path(name).name == name:
            (out / name).replace(previous / name)
    print(f"{out} held an earlier run's results: moved them (with their arrays and figures) to {previous}")
    return previous


def _draw_figures(out: Path, dataset: str, arrays: dict, scan: list, lower: list, h_y: float, *, pixel_range,
                  latent_dim: int, comparison_latent_dim: int, tsne_tau: float) -> dict:
    """Draw the figures of what `arrays` and `scan` hold: reconstructions (originals, DAE, VAE, the split DAE at the
    tau nearest `tsne_tau`), the comparison's 2-d latents, the t-SNE of z_sem and z_per at that tau, the tau-scan."""
    figures, y_eval, d2 = {}, arrays["y_eval"], comparison_latent_dim
    taus = [row["tau"] for row in scan]
    t = _nearest(taus, tsne_tau) if taus else None
    tsne_at = None if t is None else _split_name(t)
    rows = {"original": arrays["x_recon"]}
    if "recon_dae" in arrays:
        rows.update(dae=arrays["recon_dae"], vae=arrays["recon_vae"])
    if tsne_at is not None:
        rows[f"split DAE, tau = {t:g}"] = arrays[f"recon_{tsne_at}"]
    figures["reconstructions"] = _plot_reconstructions(rows, out / "reconstructions.png", pixel_range,
                                                       f"{dataset}: originals and reconstructions (held-out)").name
    if "z_dae" in arrays:
        panels = {f"DAE (D_Z = {d2})": arrays["z_dae"], f"VAE (D_Z = {d2})": arrays["z_vae"]}
        figures["latents_2d"] = _plot_latents(panels, y_eval, out / "latents_2d.png",
                                              f"{dataset}: held-out latents by label (first two coordinates)").name
    if tsne_at is not None:
        figures["tsne"] = _plot_latents(
            {f"z_sem, tau = {t:g} T": _tsne(arrays[f"z_sem_{tsne_at}"], key=0),
             f"z_per, tau = {t:g} T": _tsne(arrays[f"z_per_{tsne_at}"], key=0)}, y_eval, out / "tsne.png",
            f"{dataset}: t-SNE of the held-out latents (D_Z = {latent_dim})").name
        figures["tau_scan"] = _plot_scan(scan, lower, h_y, out / "tau_scan.png",
                                         f"{dataset}: I(Z;Y) of the split-DAE latents (D_Z = {latent_dim})").name
    return figures


def merge_autoencoder_results(folders, out: str | Path) -> dict:
    r"""Join autoencoder runs that measured different parts of one experiment into one results file and its figures.

    Each part of a run (the DAE vs VAE comparison, the split DAE at one $\tau$) draws its keys from the run's key and
    its own name only, so `--tau 0.1 --no-comparison` on one machine and `--tau none` on another measure exactly what
    one run with both would. The runs must agree in everything but their taus and comparison (data, seed, models,
    training, measurement); no $\tau$ and no comparison may be measured twice. A run stopped part-way
    (`results.partial.json`) contributes what it measured.

    **Arguments:**

    - `folders`: the runs' output folders, each with `results.json` or `results.partial.json` and `arrays.npz`.
    - `out`: output folder: `results.json` (`"complete": true` when every run was complete), or
      `results.partial.json` when one was not, the joined `arrays.npz`, and the figures; results already there are
      moved to `out/previous` first.

    A run's `arrays.npz` must be the file its results were written with (their `arrays_sha256`; results written
    before that record are taken as they are).

    **Returns:**

    The joined results payload: the runs' quantities in the order of `folders`, `instance.taus` the measured taus,
    `instance.merged_from` the folders, and `shards` each run's provenance.
    """
    start = time.perf_counter()
    folders = [Path(f) for f in folders]
    if not folders:
        raise ValueError("merge_autoencoder_results needs at least one run folder.")
    runs = []
    for folder in folders:
        found = [folder / name for name in ("results.json", "results.partial.json") if (folder / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{folder} holds neither results.json nor results.partial.json of "
                                    "`separability autoencoder`.")
        payload = json.loads(found[0].read_text())
        if payload.get("experiment") != "autoencoder":
            raise ValueError(f"{found[0]} is the results of the {payload.get('experiment')!r} experiment, not of the "
                             "autoencoder experiment.")
        if not (folder / ARRAYS).is_file():
            raise FileNotFoundError(f"{folder} has no {ARRAYS} (the arrays its figures are drawn from); re-run the "
                                    "same command there: it reads its finished checkpoints back and writes them.")
        if _ARRAYS_SHA256 in payload and payload[_ARRAYS_SHA256] != _sha256(folder / ARRAYS):
            raise ValueError(f"{folder / ARRAYS} is not the file {found[0].name} was written with (its SHA-256 "
                             "differs): another run wrote one of them; re-run the command of that folder there, "
                             "which reads its finished checkpoints back and writes both.")
        with np.load(folder / ARRAYS) as saved:
            runs.append((folder, payload, dict(saved)))

    def fixed(instance):
        return {k: v for k, v in instance.items() if k not in _MERGE_FREE}

    first_folder, first, arrays = runs[0][0], runs[0][1], dict(runs[0][2])
    measured = {}
    comparison_from, comparison_run = None, None
    for folder, payload, saved in runs:
        a, b = fixed(first["instance"]), fixed(payload["instance"])
        differ = sorted(k for k in a.keys() | b.keys()
                        if a.get(k) != b.get(k) and not (k in _RECORDED_LATER and (k not in a or k not in b)))
        if differ:
            raise ValueError(f"{folder} and {first_folder} are runs of different experiments: they differ in "
                             f"{', '.join(differ)}; only runs that differ in their taus and comparison are merged.")
        for tau in (row["tau"] for row in payload["quantities"]["mutual_information"]):
            if tau in measured:
                raise ValueError(f"tau = {tau:g} T is measured in both {measured[tau]} and {folder}; "
                                 "merge one of them.")
            measured[tau] = folder
        if payload["quantities"]["comparison"]:
            if comparison_from is not None:
                raise ValueError(f"the DAE vs VAE comparison is measured in both {comparison_from} and {folder}; "
                                 "merge one of them.")
            comparison_from, comparison_run = folder, payload
        for k, v in saved.items():
            if k in arrays and not np.array_equal(arrays[k], v):
                raise ValueError(f"{folder} and {first_folder} disagree in {k} of {ARRAYS}: not one experiment's runs.")
            arrays[k] = v

    def joined(get):
        return [row for _, payload, _ in runs for row in get(payload["quantities"])]

    q0 = first["quantities"]
    scan, lower = joined(lambda q: q["mutual_information"]), joined(lambda q: q["bounds"]["lower"]["per_tau"])
    complete = all(payload["complete"] for _, payload, _ in runs)
    instance = first["instance"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _set_aside_previous_run(out)  # the runs were read above: `out` may be one of them
    figures = _draw_figures(out, instance["dataset"], arrays, scan, lower, q0["bounds"]["upper"]["value"],
                            pixel_range=tuple(instance["pixel_range"]), latent_dim=instance["latent_dim"],
                            comparison_latent_dim=instance["comparison_latent_dim"], tsne_tau=instance["tsne_tau"])
    recon = {"definition": q0["reconstruction_error"]["definition"],
             **{name: None if comparison_run is None else comparison_run["quantities"]["reconstruction_error"][name]
                for name in ("dae", "vae")},
             "split": joined(lambda q: q["reconstruction_error"]["split"])}
    merged = {
        "experiment": "autoencoder",
        "complete": complete,
        "instance": {**instance, "taus": list(measured), "comparison": comparison_from is not None,
                     "checkpoints": [payload["instance"]["checkpoints"] for _, payload, _ in runs],
                     "merged_from": [str(folder) for folder in folders]},
        "quantities": {
            "mutual_information": scan,
            "bounds": {"upper": q0["bounds"]["upper"],
                       "lower": {"definition": q0["bounds"]["lower"]["definition"], "per_tau": lower}},
            "knn_accuracy": joined(lambda q: q["knn_accuracy"]),
            "comparison": {} if comparison_run is None else comparison_run["quantities"]["comparison"],
            "reconstruction_error": recon,
            "flags": joined(lambda q: q["flags"]),
        },
        **({} if complete else {"partial": "joined from runs of which at least one was stopped part-way"}),
        "figures": figures,
        "timings_s": {str(folder): payload["timings_s"] for folder, payload, _ in runs},
        "shards": [{"folder": str(folder), "complete": payload["complete"], "versions": payload["versions"],
                    "device": payload["device"], "wall_time_s": payload["wall_time_s"]} for folder, payload, _ in runs],
        "units": first["units"],
        **provenance(start),
    }
    merged[_ARRAYS_SHA256] = _save_arrays(out / ARRAYS, arrays)
    write_json(out / ("results.json" if complete else "results.partial.json"), merged)
    return merged


def _tsne(z, *, key: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    z = np.asarray(z, np.float64)
    if z.shape[1] <= 2:
        return z
    return TSNE(n_components=2, perplexity=min(30.0, (len(z) - 1) / 3), init="pca", random_state=key).fit_transform(z)


# ---------------------------------------------------------------------------------------------- figures
def _plot_reconstructions(rows: dict, path, pixel_range, title) -> Path:
    lo, hi = pixel_range
    fig, axes = new_figure(len(rows), 1, figsize=(0.5 * len(next(iter(rows.values()))) + 1.5, 0.7 * len(rows) + 0.6))
    for ax, (name, images) in zip(axes[:, 0], rows.items()):
        images = np.clip((np.asarray(images) - lo) / (hi - lo), 0, 1)
        n, c, h, w = images.shape
        pad = np.ones((n, c, h, w + 1), np.float32)
        pad[..., :w] = images
        strip = pad.transpose(2, 0, 3, 1).reshape(h, n * (w + 1), c)
        ax.imshow(strip[..., 0] if c == 1 else strip, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path, title=title)


def _plot_latents(panels: dict, labels, path, title) -> Path:
    fig, axes = new_figure(1, len(panels), figsize=(4.2 * len(panels), 4.0))
    for ax, (name, z) in zip(axes[0], panels.items()):
        z = np.asarray(z)
        second = z[:, 1] if z.shape[1] > 1 else np.zeros(len(z))
        points = ax.scatter(z[:, 0], second, c=labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
        ax.set_title(name)
    fig.colorbar(points, ax=axes[0].tolist(), label="label", ticks=range(10))
    fig.set_layout_engine("constrained")
    return save_figure(fig, path, title=title)


def _plot_scan(scan, lower, h_y, path, title) -> Path:
    fig, axes = new_figure(1, 1, figsize=(6.0, 4.2))
    ax = axes[0, 0]
    order = np.argsort([row["tau"] for row in scan], kind="stable")  # the scan may run its taus in any order
    scan, lower = [scan[i] for i in order], [lower[i] for i in order]
    taus = np.array([row["tau"] for row in scan])
    for part, color in (("semantic", "C0"), ("perceptual", "C3")):
        value = np.array([row[part]["value"] for row in scan])
        err = np.array([row[part]["stderr"] for row in scan])
        ax.errorbar(taus, value, yerr=2 * err, color=color, marker="o", capsize=3,
                    label=f"$I(Z_{{{part[:3]}}};Y)$ (MINDE, ±2 stderr)")
        if all("posterior_centred" in row[part] for row in scan):
            centred = [row[part]["posterior_centred"] for row in scan]
            ax.errorbar(taus, [c["value"] for c in centred], yerr=[2 * c["stderr"] for c in centred], color=color,
                        marker="o", mfc="none", ls="--", capsize=3, label=f"posterior-centred, $Z_{{{part[:3]}}}$")
        lo = np.array([row[part]["value"] for row in lower])
        ax.plot(taus, lo, color=color, ls=":", label=f"$H(Y) - CE(Z_{{{part[:3]}}})$")
    ax.axhline(h_y, color="k", ls="--", label=f"H(Y) = {h_y:.3f}")
    if np.all(taus > 0):
        ax.set_xscale("log")
        ax.minorticks_off()  # the minor log ticks' labels overlap on a short range; label the scanned taus instead
    ax.set_xticks(taus, [f"{t:g}" for t in taus])
    ax.set_xlabel(r"split time $\tau$ / T")
    ax.set_ylabel("nats")
    ax.legend(fontsize=8)
    return save_figure(fig, path, title=title)
