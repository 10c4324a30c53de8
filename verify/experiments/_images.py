r"""Information in image diffusion models: $S_{NN}$ and its rate curve (Figs. 3, 16), $I(X;Y)$ with bounds, CFG samples.

One conditional network trained with label dropout gives $e(x, s; y)$ and, through its null label, $e(x, s)$. From it:

- $S_{NN}^X$ and $S_{NN}^{X|Y}$ (Eq. 11) with their rate curves on a time grid;
- $I(X;Y)$ by MINDE (Eq. 13) and by the entropy difference (Eq. 46), each with a standard error;
- the bounds every estimate is reported beside: $I(X;Y) \le H(Y)$ (plug-in entropy of all the data set's labels) and
  $I(X;Y) \ge H(Y) - H(Y|X) \ge H(Y) - CE$, with $CE$ the held-out cross-entropy of a separately trained classifier.
  An estimate outside $[H(Y) - CE, H(Y)]$ by more than 2 combined standard errors is flagged.

All information in nats per image (summed over pixels).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

import learned
from gaussian_oracle import VPSDE, AbstractTimeDensity, Estimate, LogSNRTime
from learned import ClassifierConfig, DEMLoss, EntropyUNet, ImageData, TrainConfig, UNetConfig

from .._figures import new_figure, plot_curves, save_figure
from .._report import config_dict, curves_of, provenance, write_json
from .._sampling import sample_probability_flow
from ..estimators import (
    AbstractGrid,
    AbstractTimeIntegrator,
    LogSNRGrid,
    UniformGrid,
    mutual_information_minde_crossfit,
)
from ..estimators._information import _shared_estimates

__all__ = ["ImageExperiment", "ImageInformation", "Bounds", "LabelInformationCurve", "image_information",
           "information_bounds", "label_information_curve",
           "cfg_samples", "plot_sample_grid", "run", "run_image_experiment", "train_networks", "training_parts"]


# ---------------------------------------------------------------------------------------------- bounds
@dataclasses.dataclass(frozen=True)
class Bounds:
    r"""$H(Y) - CE \le I(X;Y) \le H(Y)$, in nats.

    **Arguments:**

    - `upper`: $H(Y)$, the entropy of the label distribution.
    - `lower`: $H(Y) - CE$.
    - `lower_stderr`: the standard error of $CE$ (so of the lower bound).
    - `cross_entropy`, `accuracy`: the classifier's held-out cross-entropy and accuracy.
    - `upper_definition`: how $H(Y)$ was computed (written to results.json).
    """

    upper: float
    lower: float
    lower_stderr: float
    cross_entropy: float
    accuracy: float
    upper_definition: str = "H(Y), entropy of the label distribution"

    def check(self, estimate: Estimate, name: str, n_sigma: float = 2.0) -> Estimate:
        """`estimate` with a flag for each bound it misses by more than `n_sigma` combined standard errors."""
        flags = list(estimate.flags)
        se_lower = math.hypot(estimate.stderr, self.lower_stderr)
        if estimate.value > self.upper + n_sigma * estimate.stderr:
            flags.append(f"{name} = {estimate.value:.4g} ± {estimate.stderr:.2g} is above the upper bound "
                         f"H(Y) = {self.upper:.4g} by more than {n_sigma} stderr")
        if estimate.value < self.lower - n_sigma * se_lower:
            flags.append(f"{name} = {estimate.value:.4g} ± {estimate.stderr:.2g} is below the lower bound "
                         f"H(Y) - CE = {self.lower:.4g} ± {self.lower_stderr:.2g} by more than {n_sigma} stderr")
        return dataclasses.replace(estimate, flags=tuple(flags))

    def to_dict(self) -> dict:
        return {"upper": {"value": self.upper, "stderr": 0.0, "definition": self.upper_definition},
                "lower": {"value": self.lower, "stderr": self.lower_stderr,
                          "definition": "H(Y) - CE, CE = held-out cross-entropy of a trained classifier",
                          "cross_entropy": self.cross_entropy, "classifier_accuracy": self.accuracy}}


def information_bounds(classifier, x: Float[Array, "batch channels height width"], y: Int[Array, " batch"], *,
                       label_entropy: float, label_entropy_definition: str = "H(Y), entropy of the label distribution"
                       ) -> Bounds:
    r"""The bounds $[H(Y) - CE, H(Y)]$ on $I(X;Y)$ from held-out `(x, y)` and a trained `classifier`, in nats.

    $H(Y)$ is the entropy of the data set's label distribution (`learned.ImageData.label_entropy()`, over all the
    labels it ships), not the plug-in entropy of a small evaluation subset, which is biased low.

    **Arguments:**

    - `classifier`: logits for one image (e.g. `learned.ConvClassifier`), not trained on `(x, y)`.
    - `x`, `y`: held-out images and labels.
    - `label_entropy`: $H(Y)$ in nats.
    - `label_entropy_definition`: how $H(Y)$ was computed, for the report.

    **Returns:**

    A `Bounds`.
    """
    h_y = float(label_entropy)
    if not (np.isfinite(h_y) and h_y >= 0):
        raise ValueError(f"label_entropy must be a finite number >= 0 (nats); got {label_entropy!r}.")
    ce, ce_se, accuracy = learned.cross_entropy(classifier, x, y)
    return Bounds(upper=h_y, lower=h_y - ce, lower_stderr=ce_se, cross_entropy=ce, accuracy=accuracy,
                  upper_definition=label_entropy_definition)


@dataclasses.dataclass(frozen=True)
class LabelInformationCurve:
    r"""Time-resolved bounds on the label information $I(X_s;Y)$ that MINDE's curve estimates, in nats.

    MINDE integrated from $s$ to $T$ estimates $I(X_s;Y) - I(X_T;Y)$ (with the grid's midpoint cells, at a node
    $s_k$: the total minus `cumulative`). A noise-conditional classifier's held-out cross-entropy $CE_s \ge H(Y|X_s)$
    gives, at every node,
    $$H(Y) - CE_{s} - r_T \;\le\; I(X_s;Y) - I(X_T;Y) \;\le\; H(Y),$$
    with $r_T \ge I(X_T;Y)$ the Gaussian-channel bound $I(X_T;Y) \le I(X_T;X_0) \le
    \tfrac{\alpha(T)}{2(1 - \alpha(T))}\operatorname{tr}\Sigma_X$. So the MINDE curve is checked at every time, not
    only its total: a curve that gains too much label information at small s and too little at large s can land its
    total inside $[H(Y) - CE, H(Y)]$ by cancellation and still fail here.

    **Arguments:**

    - `times`: the nodes $s_k$ (those of the MINDE grid).
    - `cross_entropy`, `cross_entropy_stderr`, `accuracy`: the noisy classifier's held-out $CE_{s_k}$, its stderr
      and its accuracy at each node.
    - `upper`: $H(Y)$.
    - `residual`: $r_T$.
    """

    times: np.ndarray
    cross_entropy: np.ndarray
    cross_entropy_stderr: np.ndarray
    accuracy: np.ndarray
    upper: float
    residual: float

    @property
    def lower(self) -> np.ndarray:
        """$H(Y) - CE_{s_k} - r_T$ at each node."""
        return self.upper - self.cross_entropy - self.residual

    def tail(self, estimate: Estimate) -> tuple[np.ndarray, np.ndarray]:
        r"""MINDE from each node to T (`value - cumulative`) and a bound on its stderr.

        The per-image tail is not stored, so its stderr is bounded by the triangle inequality of standard
        deviations: $\mathrm{se}(\text{total} - \text{cum}_k) \le \mathrm{se}(\text{total}) + \mathrm{se}(\text{cum}_k)$
        (conservative: the flags below are never raised by an underestimated stderr)."""
        if (estimate.times is None or np.shape(estimate.times) != self.times.shape
                or not np.allclose(estimate.times, self.times, rtol=1e-6, atol=0.0)):
            raise ValueError("the estimate's curve must be on the nodes of this LabelInformationCurve "
                             f"({len(self.times)} times from {self.times[0]:.3g}).")
        return estimate.value - estimate.cumulative, estimate.stderr + estimate.cumulative_stderr

    def _scores(self, estimate: Estimate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The estimate's tail, and by how many combined stderr it lies below the lower bound and above H(Y)."""
        tail, tail_se = self.tail(estimate)
        z_low = (self.lower - tail) / np.hypot(tail_se, self.cross_entropy_stderr)
        z_high = (tail - self.upper) / np.maximum(tail_se, 1e-300)
        return tail, z_low, z_high

    def violations(self, estimate: Estimate, n_sigma: float = 2.0) -> dict:
        """Where the estimate's tail leaves the bounds by more than `n_sigma` combined stderr: the nodes below
        $H(Y) - CE_s - r_T$ and above $H(Y)$, each with the largest shortfall (in stderr) and its time."""
        _, z_low, z_high = self._scores(estimate)
        out = {}
        for name, z in (("below", z_low), ("above", z_high)):
            worst = int(np.argmax(z))
            out[name] = {"n_times": int(np.sum(z > n_sigma)), "times": self.times[z > n_sigma].tolist(),
                         "worst_time": float(self.times[worst]), "worst_z": float(z[worst])}
        return out

    def check(self, estimate: Estimate, name: str, n_sigma: float = 2.0) -> Estimate:
        """`estimate` with a flag when its curve leaves the time-resolved bounds anywhere (see `violations`)."""
        flags = list(estimate.flags)
        tail, z_low, z_high = self._scores(estimate)
        n = len(self.times)
        if np.any(z_low > n_sigma):
            k = int(np.argmax(z_low))
            flags.append(f"{name} from s to T is below H(Y) - CE_s at {int(np.sum(z_low > n_sigma))} of {n} times by "
                         f"more than {n_sigma} stderr (worst at s = {self.times[k]:.3g}: {tail[k]:.4g} < "
                         f"{self.lower[k]:.4g}, {z_low[k]:.1f} stderr)")
        if np.any(z_high > n_sigma):
            k = int(np.argmax(z_high))
            flags.append(f"{name} from s to T is above H(Y) at {int(np.sum(z_high > n_sigma))} of {n} times by more "
                         f"than {n_sigma} stderr (worst at s = {self.times[k]:.3g}: {tail[k]:.4g})")
        return dataclasses.replace(estimate, flags=tuple(flags))

    def to_dict(self) -> dict:
        return {"definition": "lower = H(Y) - CE_s - r_T <= I(X_s;Y) - I(X_T;Y), CE_s the held-out cross-entropy "
                              "of a noise-conditional classifier at time s; r_T = alpha(T) tr Cov(X) / "
                              "(2 (1 - alpha(T))) >= I(X_T;Y)",
                "times": self.times.tolist(), "lower": self.lower.tolist(),
                "lower_stderr": self.cross_entropy_stderr.tolist(), "cross_entropy": self.cross_entropy.tolist(),
                "accuracy": self.accuracy.tolist(), "upper": self.upper, "residual": self.residual}


def label_information_curve(noisy_classifier, sde: VPSDE, x: Float[Array, "batch channels height width"],
                            y: Int[Array, " batch"], times: Float[np.ndarray, " n_times"], *, label_entropy: float,
                            data_variance: float, key: PRNGKeyArray) -> LabelInformationCurve:
    r"""The `LabelInformationCurve` at `times` from a trained noise-conditional classifier and held-out `(x, y)`.

    **Arguments:**

    - `noisy_classifier`: logits of $p_\phi(y|x_s)$, called `(x_s, s)` (e.g. `learned.train_noisy_classifier`'s),
      not trained on `(x, y)`.
    - `sde`: the forward process.
    - `x`, `y`: held-out images and labels.
    - `times`: the nodes (those of the MINDE grid).
    - `label_entropy`: $H(Y)$ in nats.
    - `data_variance`: $\operatorname{tr}\Sigma_X$, the total variance of the data (for $r_T$).
    - `key`: PRNG key for the noise.
    """
    if not (np.isfinite(data_variance) and data_variance >= 0):
        raise ValueError(f"data_variance must be a finite number >= 0; got {data_variance!r}.")
    ce, ce_se, accuracy = learned.noisy_cross_entropy_curve(noisy_classifier, sde, x, y, times, key=key)
    alpha_t = float(sde.alpha(sde.T))
    return LabelInformationCurve(times=np.asarray(times, np.float64), cross_entropy=ce, cross_entropy_stderr=ce_se,
                                 accuracy=accuracy, upper=float(label_entropy),
                                 residual=alpha_t * float(data_variance) / (2 * (1 - alpha_t)))


# ---------------------------------------------------------------------------------------------- estimates
@dataclasses.dataclass(frozen=True)
class ImageInformation:
    """Neural entropies and mutual information of one conditional image model, in nats per image."""

    neural_entropy: Estimate
    conditional_neural_entropy: Estimate
    minde: Estimate
    difference: Estimate
    bounds: Bounds

    def quantities(self) -> dict:
        """The `quantities` block of results.json."""
        return {
            "neural_entropy": self.neural_entropy.to_dict(),
            "conditional_neural_entropy": self.conditional_neural_entropy.to_dict(),
            "mutual_information": {"minde": self.minde.to_dict(), "difference": self.difference.to_dict()},
            "bounds": self.bounds.to_dict(),
            "flags": [*self.minde.flags, *self.difference.flags],
        }

    def curves(self) -> dict:
        """The `curves` block of results.json: each time-resolved estimate's curve."""
        return curves_of({name: getattr(self, name)
                          for name in ("neural_entropy", "conditional_neural_entropy", "minde", "difference")})


def image_information(model, x: Float[Array, "batch channels height width"], y: Int[Array, " batch"], *,
                      bounds: Bounds, times: AbstractTimeIntegrator = UniformGrid(n_times=500),
                      chunk_size: int = 16, key: PRNGKeyArray) -> ImageInformation:
    r"""$S_{NN}^X$, $S_{NN}^{X|Y}$ (Eq. 11), $I_{MINDE}$ (Eq. 13) and $I_{diff}$ (Eq. 46) from one conditional model.

    The unconditional $e(x, s)$ is `model(x, s, None)` (the null label). The four are read on the same noisy inputs,
    from one unconditional and one conditional network call per image and time (`verify.information_estimates`), so
    $I_{diff}$ is exactly $S_{NN}^{X|Y} - S_{NN}^X$. Both mutual-information estimates are checked against `bounds`
    and flagged when outside by more than 2 standard errors.

    **Arguments:**

    - `model`: a label-conditional protocol model (e.g. `learned.EntropyUNet` with `num_classes`).
    - `x`, `y`: evaluation images and their labels (the paper: the first 1,000 test images).
    - `bounds`: the `Bounds` from `information_bounds`.
    - `times`: the time integrator (the paper's protocol: `UniformGrid(n_times=500)`).
    - `chunk_size`: images per compiled call (times `n_times` network evaluations each on a grid).
    - `key`: a PRNG key.

    **Returns:**

    An `ImageInformation`.
    """
    shared = _shared_estimates(model, x, y, times=times, chunk_size=chunk_size, key=key)
    return ImageInformation(shared.neural_entropy, shared.conditional_neural_entropy,
                            bounds.check(shared.minde, "I_MINDE"), bounds.check(shared.difference, "I_diff"), bounds)


# ---------------------------------------------------------------------------------------------- samples
def cfg_samples(model, num_classes: int, per_class: int, weights: tuple[float, ...], *, n_steps: int = 50,
                s_end: float = 1e-3, image_shape: tuple[int, ...] | None = None,
                key: PRNGKeyArray) -> dict[float, np.ndarray]:
    r"""Guided probability-flow samples (Eq. 59) for every class and guidance weight $w$, from shared starting noise.

    **Arguments:**

    - `model`: a label-conditional protocol model; `model(x, s, None)` is the unconditional one.
    - `num_classes`, `per_class`: labels `0..num_classes-1`, `per_class` images each.
    - `weights`: guidance weights $w$ ($w = 0$: the conditional flow).
    - `n_steps`: Heun steps from $s = T$ to `s_end`.
    - `image_shape`: the shape of one image (default: `model.config.image_shape`, as an `EntropyUNet` has).
    - `key`: PRNG key for the starting points $x_T \sim p_{eq}$.

    **Returns:**

    `{w: images}` with images of shape (num_classes, per_class, *image_shape).
    """
    shape = tuple(model.config.image_shape if image_shape is None else image_shape)
    y = jnp.repeat(jnp.arange(num_classes), per_class)
    x_T = jax.random.normal(key, (num_classes * per_class, *shape), jnp.float32)
    dt0 = -(model.sde.T - s_end) / n_steps
    out = {}
    for w in weights:
        x = sample_probability_flow(model, x_T, y=y, w=float(w), s_end=s_end, solver=diffrax.Heun(),
                                    stepsize_controller=diffrax.ConstantStepSize(), dt0=dt0, max_steps=n_steps + 1)
        out[float(w)] = np.asarray(x, np.float32).reshape(num_classes, per_class, *shape)
    return out


def plot_sample_grid(samples: dict[float, np.ndarray], path, *, pixel_range=(0.0, 1.0), title=None) -> Path:
    """One panel per guidance weight: rows are class labels (named on the axis), columns samples. Returns the PNG path."""
    lo, hi = pixel_range
    n_cls, per = next(iter(samples.values())).shape[:2]
    # each tile about 0.35 inch, so 8 x 8 digits are visible and rows can be read
    fig, axes = new_figure(1, len(samples), figsize=(max(2.5, 0.35 * per + 0.8) * len(samples), 0.35 * n_cls + 1.2))
    for ax, (w, images) in zip(axes[0], samples.items()):
        n_cls, per, c, h, wd = images.shape
        pad = np.ones((n_cls, per, c, h + 1, wd + 1), np.float32)  # a one-pixel white gutter between tiles
        pad[:, :, :, :h, :wd] = np.clip((images - lo) / (hi - lo), 0, 1)
        tiles = pad.transpose(0, 3, 1, 4, 2).reshape(n_cls * (h + 1), per * (wd + 1), c)
        ax.imshow(tiles[..., 0] if c == 1 else tiles, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(f"CFG w = {w:g}")
        ax.set_yticks((np.arange(n_cls) + 0.5) * (h + 1) - 0.5, [str(k) for k in range(n_cls)], fontsize=7)
        ax.set_ylabel("label")
        ax.set_xticks([])
    return save_figure(fig, path, title=title)


# ---------------------------------------------------------------------------------------------- experiment
WEIGHTINGS = {"likelihood": learned.Likelihood, "constant": lambda sde: learned.Constant()}
"""The DEM loss weightings `ImageExperiment.weighting` names, each built for the experiment's process."""


def check_dem_training(owner: str, weighting: str, time_sampler, sde: VPSDE) -> float:
    """One clear error unless `weighting` names a `WEIGHTINGS` entry and `time_sampler` is a time density;
    returns the smallest training time of `time_sampler` on `sde`."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"{owner}.weighting must be one of {sorted(WEIGHTINGS)}; got {weighting!r}.")
    if not isinstance(time_sampler, AbstractTimeDensity):
        raise ValueError(f"{owner}.time_sampler must be a time density (learned.LogSNRTime(s_min), "
                         f"learned.UniformTime()); got {time_sampler!r}.")
    return time_sampler.support(sde)[0]


def dem_loss(weighting: str, time_sampler, sde: VPSDE, **kwargs) -> DEMLoss:
    """The `DEMLoss` of a named weighting (`WEIGHTINGS`) built for `sde`, with `time_sampler` and `kwargs`."""
    return DEMLoss(WEIGHTINGS[weighting](sde), time_sampler, **kwargs)


def _first_node(grid, sde: VPSDE) -> float:
    return float(np.min(grid.nodes_weights(sde)[0]))


@dataclasses.dataclass(frozen=True)
class ImageExperiment:
    r"""Everything an image experiment needs besides the data (frozen).

    **Arguments:**

    - `unet`: the network's `UNetConfig` (its `image_shape` and `num_classes` must match the data).
    - `train`: the `TrainConfig`.
    - `classifier`: the bound classifier's `ClassifierConfig`.
    - `sde`: the forward process (the paper: beta_min = 0.1, beta_max = 16, T = 1).
    - `weighting`: the DEM loss's $\lambda(s)$: `"likelihood"` ($\beta/2$, the error in the $S_{NN}$ and MINDE
      integrals) or `"constant"` (the paper's).
    - `time_sampler`: how the training times are drawn: `LogSNRTime(s_min)` (uniform in log-SNR on
      $[s_{\min}T, T]$) or `UniformTime()` (the paper's).
    - `times`: the time integrator for the estimates; keep it inside the training times (the default: 128 cells
      uniform in log-SNR from $10^{-4}$ T; the paper: `UniformGrid(n_times=500)`).
    - `condition_dropout`: label dropout during training (one network gives $e(x,s;y)$ and $e(x,s)$).
    - `n_eval`: evaluate on the first `n_eval` test images (the paper: 1,000).
    - `chunk_size`: images per compiled estimation call.
    - `cfg_weights`: guidance weights of the sample grid; `per_class`, `sample_steps` its size and step count.
    - `compare_train`: also estimate $S_{NN}^X$ and $I_{MINDE}$ on `n_eval` training images; the gap to the held-out
      values is the memorisation signature (reported under `quantities.memorisation`).
    - `dataset`, `data_dir`, `pixel_range`, `n_train`: the data set by its name in `learned.DATASETS`, where its
      files are (when it needs them), the pixel scaling, and how many training images to use (`None`: all); used by
      `run` when no data are passed.
    - `checkpoint_dir`: where the U-Net's training checkpoints go (and the classifiers', in its `classifiers/`),
      relative to the output folder (an absolute path is used as it is), or `None` for none. The last checkpoint is
      the trained model, saved with the results.
    - `resume`: what to do with a checkpoint already there (`learned.train`'s `resume`: "auto" resumes only the same
      run, "overwrite" trains afresh).
    - `guidance`: `None` for one U-Net with a label embedding (`unet.num_classes` labels and a null label); a
      `ClassifierConfig` for `learned.ClassifierGuided`: an unconditional U-Net plus the input-gradient of a noisy
      classifier of that configuration, trained by `learned.GuidedLoss` with weight `guidance_cross_entropy` (the
      label part of the score is then the gradient of a posterior, and no error of the unconditional network reaches
      $I_{MINDE}$).
    - `guidance_cross_entropy`: the cross-entropy weight of `learned.GuidedLoss` (with `guidance`).
    - `guidance_training`: with `guidance`, `"joint"` (each `ClassifierGuided` network trained as one model by
      `learned.GuidedLoss`) or `"separate"`: one unconditional U-Net trained by the DEM loss on all training images,
      and each network's classifier trained by cross-entropy alone (`learned.train_noisy_classifier`, `guidance.steps`
      steps, on that network's images: with `cross_fit` the two halves), so the label part is fitted to the labels'
      values, a far less noisy target than the DEM loss's (`benchmarks/bench_classifier_fisher.py`). The networks then
      share the U-Net, which cancels from every MINDE estimate; the classifiers are checkpointed in
      `checkpoint_dir / "classifiers"`.
    - `cross_fit`: train two networks (their own initialisations) on the two halves of the training images and add
      the cross-fitted $I_{MINDE}$ (`verify.mutual_information_minde_crossfit`), free of the plug-in's upward bias
      by the fit's variance; the other estimates come from the first network. On by default: the plug-in
      $I_{MINDE}$ of one network reads the fit's variance as information (on digits, about 1.5 to 2 nats).
    - `posterior`: a `ClassifierConfig` for a noise-conditional classifier (`learned.train_noisy_classifier`, trained
      on all training images at the networks' training times), or `None`. When given, the run adds the
      time-resolved bounds $H(Y) - CE_s \le I(X_s;Y) \le H(Y)$ at the grid's nodes (`LabelInformationCurve`,
      checked against each MINDE curve) and, with `cross_fit`, the posterior-centred cross-fit (each network's
      conditional outputs centred on their posterior mixture, so a bias the two unconditional outputs share cannot
      reach it; `num_classes` network calls per time and network).
    - `posterior_draws`: `None` for that centring's exact mixture over all labels, or M to centre each network on the
      mean of its outputs at M labels drawn from the posterior (independently per network, so the estimate stays
      unbiased; 1 + M calls per time and network instead of `num_classes`). Needs `posterior`.
    - `gaussian_base`: `None`, or the $\mathrm{SNR}_{1/2}$ of a `learned.ClassGaussianBase`: each network learns
      the residual of a Gaussian model of each class fitted to its own training images (rank 64, shrinkage 0.5), whose
      exact label part $g(s)\nabla\log p_G(y|x_s)$ carries the label where the diffused classes are near Gaussian.
      With `guidance_training="separate"` the classifiers carry it instead: each adds the gated logits of the
      Gaussian model of its own images and learns the residual (`learned.train_noisy_classifier(gaussian_base=...)`).
      Not with `guidance_training="joint"`.

    The defaults are the measured ones (`benchmarks/bench_images_crossfit.py`, `bench_images_quick.py`, digits):
    the Gaussian half's likelihood weighting with log-SNR times, label dropout 0.5 and a cross-fitted pair put the
    digits $I_{MINDE}$ inside its bounds; the paper's constant weighting with uniform times and dropout 0.1 read it 1.5 to 3 times
    $H(Y)$ (plug-in) and, with dropout 0.5, below the lower bound (cross-fitted).
    """

    unet: UNetConfig
    train: TrainConfig
    classifier: ClassifierConfig
    sde: VPSDE = VPSDE(beta_min=0.1, beta_max=16.0, T=1.0)
    weighting: str = "likelihood"
    time_sampler: AbstractTimeDensity = LogSNRTime(s_min=1e-4)
    times: AbstractTimeIntegrator = LogSNRGrid(n_times=128, s_min=1e-4)
    condition_dropout: float = 0.5
    n_eval: int = 1000
    chunk_size: int = 16
    cfg_weights: tuple[float, ...] = (0.0, 1.0, 3.0)
    per_class: int = 4
    sample_steps: int = 100
    compare_train: bool = True
    dataset: str = "digits"
    data_dir: str | None = None
    pixel_range: tuple[float, float] = (0.0, 1.0)
    n_train: int | None = None
    checkpoint_dir: str | None = "checkpoints"
    resume: str = "auto"
    guidance: ClassifierConfig | None = None
    guidance_cross_entropy: float = 1.0
    guidance_training: str = "joint"
    cross_fit: bool = True
    posterior: ClassifierConfig | None = None
    posterior_draws: int | None = None
    gaussian_base: float | None = None

    def __post_init__(self):
        for name in ("n_eval", "chunk_size", "per_class", "sample_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ImageExperiment.{name} must be a positive integer; got {value!r}.")
        if self.n_eval < 2:
            raise ValueError(f"ImageExperiment.n_eval must be >= 2 (a standard error needs two images); got {self.n_eval}.")
        if self.n_train is not None and (isinstance(self.n_train, bool) or not isinstance(self.n_train, int)
                                         or self.n_train < 1):
            raise ValueError(f"ImageExperiment.n_train must be a positive integer or None; got {self.n_train!r}.")
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"ImageExperiment.condition_dropout must lie in [0, 1); got {self.condition_dropout!r}.")
        if len(self.pixel_range) != 2 or not self.pixel_range[0] < self.pixel_range[1]:
            raise ValueError(f"ImageExperiment.pixel_range must be (low, high) with low < high; got {self.pixel_range!r}.")
        if not all(np.isfinite(w) for w in self.cfg_weights):
            raise ValueError(f"ImageExperiment.cfg_weights must be finite; got {self.cfg_weights!r}.")
        lowest = check_dem_training("ImageExperiment", self.weighting, self.time_sampler, self.sde)
        first = _first_node(self.times, self.sde) if isinstance(self.times, AbstractGrid) else lowest
        if first < lowest * (1 - 1e-9):
            raise ValueError(f"ImageExperiment.times reaches s = {first:.3g}, below the "
                             f"smallest training time {lowest:.3g} of {self.time_sampler!r}: the networks never saw it.")
        if self.posterior is not None and not isinstance(self.posterior, ClassifierConfig):
            raise ValueError(f"ImageExperiment.posterior must be a learned.ClassifierConfig or None; got {self.posterior!r}.")
        draws = self.posterior_draws
        if draws is not None and (isinstance(draws, bool) or not isinstance(draws, int) or draws < 1
                                  or self.posterior is None):
            raise ValueError("ImageExperiment.posterior_draws must be None or a positive int, and needs a posterior; "
                             f"got {self.posterior_draws!r} with posterior {self.posterior!r}.")
        if self.guidance is not None and not isinstance(self.guidance, ClassifierConfig):
            raise ValueError(f"ImageExperiment.guidance must be a learned.ClassifierConfig or None; got {self.guidance!r}.")
        learned.ClassGaussianBase.check_snr_half(self.gaussian_base, "ImageExperiment.gaussian_base")
        if self.gaussian_base is not None and self.guidance is not None and self.guidance_training != "separate":
            raise ValueError("ImageExperiment.gaussian_base needs the label-embedding U-Net (guidance=None) or "
                             "separately trained classifiers (guidance_training='separate').")
        if self.guidance_training not in ("joint", "separate") or (self.guidance_training == "separate"
                                                                    and self.guidance is None):
            raise ValueError("ImageExperiment.guidance_training must be 'joint' or 'separate', and 'separate' needs "
                             f"guidance; got {self.guidance_training!r} with guidance {self.guidance!r}.")
        if not (np.isfinite(self.guidance_cross_entropy) and self.guidance_cross_entropy >= 0):
            raise ValueError("ImageExperiment.guidance_cross_entropy must be a finite number >= 0; "
                             f"got {self.guidance_cross_entropy!r}.")

    def model_and_loss(self, *, key: PRNGKeyArray, train_x=None, train_y=None) -> tuple[eqx.Module, eqx.Module]:
        """A freshly initialised label-conditional protocol model and the loss that trains it; with `gaussian_base`
        the network is wrapped in the `learned.ClassGaussianBase` fitted to its training images `train_x`,
        `train_y`."""
        dem = dem_loss(self.weighting, self.time_sampler, self.sde, condition_dropout=self.condition_dropout,
                       model_key=self.unet.dropout > 0)
        if self.guidance is None:
            network = EntropyUNet(self.unet, self.sde, key=key)
            if self.gaussian_base is None:
                return network, dem
            if train_x is None or train_y is None:
                raise ValueError("ImageExperiment.model_and_loss: gaussian_base needs the network's training images "
                                 "(train_x, train_y) to fit its Gaussian class model.")
            return learned.ClassGaussianBase.fit(network, train_x, train_y, snr_half=self.gaussian_base), dem
        unconditional, k_c = self._unconditional(key)
        model = learned.ClassifierGuided(unconditional, learned.NoisyClassifier(self.guidance, self.sde, key=k_c))
        return model, learned.GuidedLoss(dem, cross_entropy=self.guidance_cross_entropy)

    def _unconditional(self, key: PRNGKeyArray) -> tuple[EntropyUNet, PRNGKeyArray]:
        """The guided model's unconditional U-Net (from the first half of `key`) and the classifier's key."""
        k_u, k_c = jax.random.split(key)
        if self.guidance.image_shape != self.unet.image_shape or self.guidance.num_classes != self.unet.num_classes:
            raise ValueError(f"ImageExperiment.guidance is for images {self.guidance.image_shape} with "
                             f"{self.guidance.num_classes} classes; the U-Net's are {self.unet.image_shape} with "
                             f"{self.unet.num_classes}.")
        return EntropyUNet(dataclasses.replace(self.unet, num_classes=None), self.sde, key=k_u), k_c


def _plot_rates(info: ImageInformation, path: Path, title: str, crossfit: Estimate | None = None,
                centred: Estimate | None = None, label_curve: LabelInformationCurve | None = None) -> Path | None:
    s_x, s_xy, minde = info.neural_entropy, info.conditional_neural_entropy, info.minde
    if s_x.times is None:
        return None
    minde_rates = [{"label": "$I$ rate (MINDE)", "y": minde.rate, "stderr": minde.rate_stderr}]
    minde_cumulative = [{"label": "$I(s)$ (MINDE)", "y": minde.cumulative, "stderr": minde.cumulative_stderr}]
    tails = []
    for label, est in (("cross-fit", crossfit), ("cross-fit, posterior-centred", centred)):
        if est is None or est.times is None:
            continue
        color = f"C{len(minde_rates)}"  # the same colour in every panel
        minde_rates.append({"label": f"$I$ rate ({label})", "y": est.rate, "stderr": est.rate_stderr, "color": color})
        minde_cumulative.append({"label": f"$I(s)$ ({label})", "y": est.cumulative, "stderr": est.cumulative_stderr,
                                 "color": color})
        if label_curve is not None:
            tail, tail_se = label_curve.tail(est)
            tails.append({"label": f"MINDE from s to T ({label})", "y": tail, "stderr": tail_se, "color": color})
    for label, value, color in (("$H(Y)$", info.bounds.upper, "k"), ("$H(Y) - CE$", info.bounds.lower, "0.5")):
        minde_cumulative.append({"label": label, "y": np.full(len(s_x.times), value), "exact": True, "color": color})
    panels = [
        ("entropy rate (cf. Fig. 16)", "nats per unit s", [
            {"label": "$S^X_{NN}$ rate", "y": s_x.rate, "stderr": s_x.rate_stderr},
            {"label": "$S^{X|Y}_{NN}$ rate", "y": s_xy.rate, "stderr": s_xy.rate_stderr},
        ]),
        ("cumulative neural entropy", "nats", [
            {"label": "$S^X_{NN}(s)$", "y": s_x.cumulative, "stderr": s_x.cumulative_stderr},
            {"label": "$S^{X|Y}_{NN}(s)$", "y": s_xy.cumulative, "stderr": s_xy.cumulative_stderr},
        ]),
        ("MINDE integrand", "nats per unit s", minde_rates),
        ("cumulative MINDE (0 to s)", "nats", minde_cumulative),
    ]
    if tails:
        panels.append(("label information $I(X_s;Y)$", "nats", [
            *tails,
            {"label": "$H(Y) - CE_s - r_T$ (noisy classifier)", "y": label_curve.lower,
             "stderr": label_curve.cross_entropy_stderr, "color": "0.4"},
            {"label": "$H(Y)$", "y": np.full(len(s_x.times), label_curve.upper), "exact": True, "color": "k"},
        ]))
    return plot_curves(s_x.times, panels, path, title=title, log_x=True)


def configured_data(config) -> ImageData:
    """The data set an experiment config names: `config.dataset` from `config.data_dir` at `config.pixel_range`,
    its first `config.n_train` training images (all when `None`)."""
    data = learned.load_dataset(config.dataset, config.data_dir, pixel_range=config.pixel_range)
    return data if config.n_train is None else data.subset(n_train=config.n_train)


def run(config: ImageExperiment, out: str | Path, *, key: PRNGKeyArray, data: ImageData | None = None,
        parallel: learned.DataParallel | None = None, instance: dict | None = None) -> dict:
    """Load `config.dataset` (unless `data` is given) and run `run_image_experiment` on it, with the U-Net's
    checkpoints in `out / config.checkpoint_dir`.

    **Arguments:**

    - `config`: an `ImageExperiment`.
    - `out`: output directory.
    - `key`: PRNG key.
    - `data`: the `ImageData`, if already loaded (then `dataset`, `data_dir`, `pixel_range`, `n_train` are unused).
    - `parallel`: a `learned.DataParallel` for data-parallel training, or `None`.
    - `instance`: extra entries for the `instance` block (e.g. the CLI's seed).

    **Returns:**

    The results payload (also written to `out/results.json`).
    """
    if data is None:
        data = configured_data(config)
    ckpt = None if config.checkpoint_dir is None else Path(out) / config.checkpoint_dir
    return run_image_experiment(data, config, out, checkpoint_dir=ckpt, parallel=parallel, instance=instance, key=key)


def training_parts(experiment: ImageExperiment, data: ImageData) -> list[slice]:
    """The training images of each network: all of them, or with `cross_fit` the two halves."""
    if not experiment.cross_fit:
        return [slice(0, len(data.train_x))]
    half = len(data.train_x) // 2
    return [slice(0, half), slice(half, 2 * half)]


def train_networks(experiment: ImageExperiment, data: ImageData, checkpoint_dir: str | Path | None, *,
                   key: PRNGKeyArray, parallel: learned.DataParallel | None = None,
                   first_only: bool = False) -> list[learned.TrainResult]:
    """Train (or resume) the experiment's networks: one on all training images, or with `cross_fit` one on each half,
    checkpointed in `checkpoint_dir / "a"` and `/ "b"`. The first network is the one the other estimates use, and
    `first_only` trains only it.

    `key` is the key of the whole run (`run_image_experiment`'s): the networks' initialisation and training keys are
    drawn from it here, the same way for every caller, so a later command (or a benchmark) given the same key resumes
    the networks `separability images` finished instead of training new ones."""
    init_key, train_key, *_ = jax.random.split(key, 5)  # the first two of run_image_experiment's five keys
    parts = training_parts(experiment, data)
    if experiment.guidance is not None and experiment.guidance_training == "separate":
        return _train_separately(experiment, data, parts[:1] if first_only else parts, checkpoint_dir,
                                 init_key=init_key, train_key=train_key, parallel=parallel)
    results = []
    for i, part in enumerate(parts[:1] if first_only else parts):
        part_dir = checkpoint_dir if checkpoint_dir is None or len(parts) == 1 else Path(checkpoint_dir) / "ab"[i]
        model, loss = experiment.model_and_loss(key=jax.random.fold_in(init_key, i) if i else init_key,
                                                train_x=data.train_x[part], train_y=data.train_y[part])
        results.append(learned.train(model, data.train_x[part], data.train_y[part], config=experiment.train, loss=loss,
                                     checkpoint_dir=part_dir, resume=experiment.resume, parallel=parallel,
                                     key=jax.random.fold_in(train_key, i) if i else train_key))
    return results


def classifier_dir(checkpoint_dir: str | Path | None, name: str, config: ClassifierConfig, **extra) -> Path | None:
    """Where the classifier `name` of `config` (and `extra` settings) of a run checkpointed in `checkpoint_dir` keeps
    its checkpoint (`None`: none). The folder is named by a hash of the configuration, so a later command on the same
    networks with another classifier (e.g. `--classifier-steps`) trains its own instead of refusing the first's."""
    if checkpoint_dir is None:
        return None
    settings = json.dumps({"config": dataclasses.asdict(config), **extra}, sort_keys=True, default=str)
    return Path(checkpoint_dir) / "classifiers" / f"{name}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def _train_separately(experiment: ImageExperiment, data: ImageData, parts: list[slice],
                      checkpoint_dir: str | Path | None, *, init_key: PRNGKeyArray, train_key: PRNGKeyArray,
                      parallel: learned.DataParallel | None) -> list[learned.TrainResult]:
    """`guidance_training="separate"`: one unconditional U-Net on all training images (checkpointed in
    `checkpoint_dir`), and per part a noisy classifier trained by cross-entropy on that part's images; each result's
    models are `ClassifierGuided(U-Net, that classifier)` and its losses the U-Net's."""
    unet, k_c = experiment._unconditional(init_key)
    dem = dem_loss(experiment.weighting, experiment.time_sampler, experiment.sde, model_key=experiment.unet.dropout > 0)
    fit = learned.train(unet, data.train_x, None, config=experiment.train, loss=dem, checkpoint_dir=checkpoint_dir,
                        resume=experiment.resume, parallel=parallel, key=train_key)
    results = []
    for i, part in enumerate(parts):
        classifier = learned.train_noisy_classifier(
            experiment.guidance, experiment.sde, data.train_x[part], data.train_y[part], times=experiment.time_sampler,
            gaussian_base=experiment.gaussian_base, progress=experiment.train.progress,
            checkpoint_dir=classifier_dir(checkpoint_dir, "guidance_" + "ab"[i], experiment.guidance,
                                          gaussian_base=experiment.gaussian_base), resume=experiment.resume,
            key=jax.random.fold_in(k_c, i))
        results.append(learned.TrainResult(model=learned.ClassifierGuided(fit.model, classifier),
                                           ema_model=learned.ClassifierGuided(fit.ema_model, classifier),
                                           losses=fit.losses))
    return results


def run_image_experiment(data: ImageData, experiment: ImageExperiment, out: str | Path, *,
                         checkpoint_dir: str | Path | None = None, parallel: learned.DataParallel | None = None,
                         instance: dict | None = None, key: PRNGKeyArray) -> dict:
    """Train the conditional U-Net and the bound classifier, estimate, plot, and write `out/results.json`.

    **Arguments:**

    - `data`: an `ImageData`.
    - `experiment`: an `ImageExperiment`.
    - `out`: output directory (results.json, loss.csv, rates.png, samples.png).
    - `checkpoint_dir`: where the U-Net's training checkpoints go (resumed when present), or `None`; the
      classifiers' (the bound's, the posterior's, with `guidance_training="separate"` each network's) go in its
      `classifiers/` folder.
    - `parallel`: a `learned.DataParallel` for data-parallel training, or `None`.
    - `instance`: extra entries for the `instance` block (e.g. the CLI's seed).
    - `key`: PRNG key.

    **Returns:**

    The results payload (also written to `out/results.json`).
    """
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unet_cfg = experiment.unet
    if unet_cfg.image_shape != data.image_shape or unet_cfg.num_classes != data.num_classes:
        raise ValueError(f"UNetConfig has image_shape {unet_cfg.image_shape}, num_classes {unet_cfg.num_classes}; "
                         f"the data have {data.image_shape}, {data.num_classes}.")
    _, _, k_cls, k_est, k_samp = jax.random.split(key, 5)  # the first two: train_networks'
    timings = {}

    t0 = time.perf_counter()
    results = train_networks(experiment, data, checkpoint_dir, key=key, parallel=parallel)
    result = results[0]
    timings["train_s"] = time.perf_counter() - t0
    losses = np.asarray(result.losses)
    np.savetxt(out / "loss.csv", np.column_stack([np.arange(len(losses)), losses]), delimiter=",",
               header="step,loss", comments="", fmt=["%d", "%.6g"])

    t0 = time.perf_counter()
    classifier = learned.train_classifier(experiment.classifier, data.train_x, data.train_y,
                                          checkpoint_dir=classifier_dir(checkpoint_dir, "bound",
                                                                        experiment.classifier),
                                          resume=experiment.resume, key=k_cls)
    x_eval, y_eval = data.held_out(experiment.n_eval, "ImageExperiment.n_eval")
    bounds = information_bounds(
        classifier, x_eval, y_eval, label_entropy=data.label_entropy(),
        label_entropy_definition=f"H(Y), plug-in entropy of all {len(data.train_y) + len(data.test_y)} labels of "
                                 f"{data.name} (train and test)")
    timings["classifier_s"] = time.perf_counter() - t0

    noisy, label_curve = None, None
    if experiment.posterior is not None:
        t0 = time.perf_counter()
        noisy = learned.train_noisy_classifier(experiment.posterior, experiment.sde, data.train_x, data.train_y,
                                               times=experiment.time_sampler,
                                               checkpoint_dir=classifier_dir(checkpoint_dir, "posterior",
                                                                             experiment.posterior),
                                               resume=experiment.resume, key=jax.random.fold_in(k_cls, 1))
        if isinstance(experiment.times, AbstractGrid):
            label_curve = label_information_curve(
                noisy, experiment.sde, x_eval, y_eval, experiment.times.nodes_weights(experiment.sde)[0],
                label_entropy=bounds.upper, data_variance=float(np.var(data.train_x, axis=0).sum()),
                key=jax.random.fold_in(k_cls, 2))
        timings["noisy_classifier_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    info = image_information(result.ema_model, jnp.asarray(x_eval), jnp.asarray(y_eval), bounds=bounds,
                             times=experiment.times, chunk_size=experiment.chunk_size, key=k_est)
    crossfit = None
    if experiment.cross_fit:
        crossfit = bounds.check(mutual_information_minde_crossfit(
            results[0].ema_model, results[1].ema_model, jnp.asarray(x_eval), jnp.asarray(y_eval),
            times=experiment.times, chunk_size=experiment.chunk_size, key=k_est), "I_MINDE (cross-fit)")
    timings["estimation_s"] = time.perf_counter() - t0
    centred = None
    if experiment.cross_fit and noisy is not None:
        t0 = time.perf_counter()
        centred = bounds.check(mutual_information_minde_crossfit(
            results[0].ema_model, results[1].ema_model, jnp.asarray(x_eval), jnp.asarray(y_eval),
            times=experiment.times, posterior=noisy, posterior_draws=experiment.posterior_draws,
            chunk_size=experiment.chunk_size, key=k_est),
            "I_MINDE (cross-fit, posterior-centred)")
        timings["centred_estimation_s"] = time.perf_counter() - t0
    if label_curve is not None:
        info = dataclasses.replace(info, minde=label_curve.check(info.minde, "I_MINDE"))
        crossfit = None if crossfit is None else label_curve.check(crossfit, "I_MINDE (cross-fit)")
        centred = None if centred is None else label_curve.check(centred, "I_MINDE (cross-fit, posterior-centred)")

    own = training_parts(experiment, data)[0]  # the first network's training images (with cross_fit its half)
    memorisation = None
    if experiment.compare_train:
        # The same estimates on as many training images: a network that memorised its training set reads them
        # differently from held-out images (the gap is the memorisation signature; same keys, so the comparison is
        # paired in the noise). The training images are the first network's own (with cross_fit its half).
        t0 = time.perf_counter()
        x_seen = jnp.asarray(data.train_x[own][: experiment.n_eval])
        y_seen = jnp.asarray(data.train_y[own][: experiment.n_eval])
        seen = _shared_estimates(result.ema_model, x_seen, y_seen, times=experiment.times,
                                 chunk_size=experiment.chunk_size, key=k_est)
        seen = {"neural_entropy": seen.neural_entropy, "minde": seen.minde}
        held_out = {"neural_entropy": info.neural_entropy, "minde": info.minde}
        memorisation = {
            "definition": "the estimates on up to n_eval of the first network's training images beside those on "
                          "the held-out images; gap = training minus held-out, stderr of the difference of "
                          "independent means",
            "n_training_images": int(len(x_seen)),
            **{name: {"training_images": seen[name].to_dict(), "held_out_images": held_out[name].to_dict(),
                      "gap": {"value": seen[name].value - held_out[name].value,
                              "stderr": math.hypot(seen[name].stderr, held_out[name].stderr)}}
               for name in seen},
        }
        timings["training_images_estimation_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    figures = {}
    rates = _plot_rates(info, out / "rates.png", f"{data.name}: neural entropy rates (EMA network)", crossfit,
                        centred, label_curve)
    if rates is not None:
        figures["rates"] = rates.name
    samples = cfg_samples(result.ema_model, data.num_classes, experiment.per_class, experiment.cfg_weights,
                          n_steps=experiment.sample_steps, image_shape=data.image_shape, key=k_samp)
    figures["samples"] = plot_sample_grid(samples, out / "samples.png", pixel_range=data.pixel_range,
                                          title=f"{data.name}: probability-flow samples, rows = labels").name
    timings["sampling_s"] = time.perf_counter() - t0

    times = experiment.times
    gaussians = None if experiment.gaussian_base is None else (
        result.model.gaussians if experiment.guidance is None else result.model.classifier.base)
    payload = {
        "experiment": "images",
        "instance": {
            "dataset": data.name, "image_shape": data.image_shape, "num_classes": data.num_classes,
            "n_train": int(len(data.train_x)), "n_test": int(len(data.test_x)), "n_eval": int(len(x_eval)),
            "n_eval_requested": experiment.n_eval, "pixel_range": data.pixel_range,
            "sde": {"beta_min": experiment.sde.beta_min, "beta_max": experiment.sde.beta_max, "T": experiment.sde.T},
            "unet": config_dict(unet_cfg), "parameters": learned.parameter_count(result.model),
            "train": config_dict(experiment.train), "classifier": config_dict(experiment.classifier),
            "condition_dropout": experiment.condition_dropout,
            "weighting": experiment.weighting,
            "time_sampler": {"density": type(experiment.time_sampler).__name__,
                             "support": list(experiment.time_sampler.support(experiment.sde))},
            "model": ("EntropyUNet with a label embedding" + ("" if experiment.gaussian_base is None else
                      f", residual of a ClassGaussianBase (SNR_1/2 = {experiment.gaussian_base})"))
                     if experiment.guidance is None else
                     (f"ClassifierGuided (GuidedLoss, cross-entropy weight {experiment.guidance_cross_entropy})"
                      if experiment.guidance_training == "joint" else
                      "ClassifierGuided (an unconditional U-Net on all training images by the DEM loss, each "
                      "network's noisy classifier on its own images by cross-entropy" + (
                          ")" if experiment.gaussian_base is None else
                          f", the residual of a Gaussian class model of them, SNR_1/2 = {experiment.gaussian_base})")),
            "guidance_training": None if experiment.guidance is None else experiment.guidance_training,
            "guidance": None if experiment.guidance is None else config_dict(experiment.guidance),
            "cross_fit": experiment.cross_fit,
            "gaussian_base": None if experiment.gaussian_base is None else {
                "snr_half": experiment.gaussian_base, "rank": int(gaussians.evecs.shape[-1]),
                "shrinkage": gaussians.shrinkage},
            "posterior": None if experiment.posterior is None else config_dict(experiment.posterior),
            "posterior_draws": experiment.posterior_draws,
            "n_train_per_network": int(len(data.train_x[own])),
            "times": {"integrator": type(times).__name__, **{f.name: getattr(times, f.name) for f in dataclasses.fields(times)
                                                              if not isinstance(getattr(times, f.name), eqx.Module)}},
            **(instance or {}),
        },
        "quantities": _with_crossfit(info.quantities(), crossfit, centred, label_curve) | {"memorisation": memorisation},
        "curves": info.curves() | curves_of({"minde_crossfit": crossfit, "minde_crossfit_centred": centred}),
        "training": {"final_loss_mean_last_10pct": float(np.mean(losses[-max(1, len(losses) // 10):])),
                     "steps": int(len(losses)), "loss_log": "loss.csv"},
        "cfg_weights": list(experiment.cfg_weights),
        "figures": figures,
        "checkpoints": None if checkpoint_dir is None else str(checkpoint_dir),
        "timings_s": timings,
        "units": "nats per image (summed over pixels); rates in nats per unit forward time s",
        **provenance(start),
    }
    write_json(out / "results.json", payload)
    return payload


def _with_crossfit(quantities: dict, crossfit: Estimate | None, centred: Estimate | None = None,
                   label_curve: LabelInformationCurve | None = None) -> dict:
    """`quantities` with the cross-fitted MINDEs (and their flags) and the time-resolved bounds added, when there
    are any (the plug-in's flags are already in `quantities`)."""
    extra = {name: est for name, est in (("minde_crossfit", crossfit), ("minde_crossfit_centred", centred))
             if est is not None}
    mi = {**quantities["mutual_information"], **{name: est.to_dict() for name, est in extra.items()}}
    bounds = quantities["bounds"] if label_curve is None else {**quantities["bounds"],
                                                               "time_resolved": label_curve.to_dict()}
    flags = [*quantities["flags"], *(f for est in extra.values() for f in est.flags)]
    return {**quantities, "mutual_information": mi, "bounds": bounds, "flags": flags}
