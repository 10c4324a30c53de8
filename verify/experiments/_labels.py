r"""When the label is decided: $H(Y|X_s)$, its rate per class, and what classifier-free guidance does to it.

Seed paper 2506.10433. For one label-conditional model (an exact `GaussianMixture`, or a U-Net trained on an image
data set with the image experiment's configuration and checkpoints) this experiment measures

- $H(Y|X_s)$ on a time grid by two independent estimators: the I-MMSE identity (`verify.label_entropy`, no
  trajectories; for images cross-fitted from the image experiment's two networks, one per half of the training
  images, when it trains two, with the first network's plug-in curve beside it) and the online Bayes classifier
  along reverse trajectories (`verify.label_profile_online`), beside a reference: the exact curve of the mixture
  (1-D quadrature for the symmetric two-class case, Monte Carlo with exact posteriors otherwise) or, for images, the
  exact curve of the diffused training set (`EmpiricalMixture`, what a model that memorised it would give);
- per class c the label's surprisal $H_c(s) = \mathbb E[-\log p(c|X_s) | Y = c]$ ($\sum_c p(c)H_c = H(Y|X_s)$) and
  its rate $dH_c/ds$ (I-MMSE on the images of class c; online along trajectories of class c), and the time of the
  rate's peak, the time of maximal information transfer (`verify.peak_time`, with the grid's resolution);
- the online curves along guided trajectories for each guidance weight w (drift $e_u + (1+w)(e_c - e_u)$, the
  convention of `sample_probability_flow` and `cfg_samples`): the shift of the rate's peak with w is the measured
  form of "guidance acts early" (a peak at larger s is a decision earlier in generation). For an exact model the
  exact posterior is evaluated on the same guided states, so the online recursion is checked there too.

The rate is $dH/ds \ge 0$ in forward time s: the information about the label that generation (running from T to 0)
produces per unit time. All information in nats.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import learned
from gaussian_oracle import VPSDE, EmpiricalMixture, Estimate, GaussianMixture, mean_stderr
from learned import ImageData

from .._figures import new_figure, plot_curves, save_figure
from .._report import config_dict, provenance, write_json
from ..estimators import (
    HalfTime,
    LogSNRGrid,
    Peak,
    class_profiles_online,
    label_entropy,
    label_entropy_per_class,
    label_profile_online,
    half_time,
    peak_time,
    tail_quadrature_error,
)
from ._images import ImageExperiment, configured_data, train_networks, training_parts

__all__ = ["MIXTURES", "MixtureSpec", "AbstractLabelSource", "MixtureSource", "ImageSource", "LabelExperiment",
           "run"]


# ---------------------------------------------------------------------------------------------- mixtures
@dataclasses.dataclass(frozen=True)
class MixtureSpec:
    """An exact labelled mixture by name: `build(sde) -> GaussianMixture`; `closed_form` when its $H(Y|X_s)$ is the
    two-class quadrature (`GaussianMixture.two_class_label_entropy`)."""

    description: str
    build: Callable[[VPSDE], GaussianMixture]
    closed_form: bool = False


def _ten_class(sde: VPSDE) -> GaussianMixture:
    # class k along its own axis at distance a_k: classes far out are decided early (large s), close ones late
    radii = np.linspace(0.6, 2.4, 10)
    means = np.eye(10) * radii[:, None]
    covs = np.stack([0.25 * np.eye(10)] * 10)
    return GaussianMixture(np.full(10, 0.1), means, covs, sde)


MIXTURES: Mapping[str, MixtureSpec] = MappingProxyType({
    "two-class": MixtureSpec("two equally likely classes N(+-m, 0.36 I) in 3-D, m = (1.2, -0.4, 0.3): H(Y|X_s) by "
                             "1-D quadrature", lambda sde: GaussianMixture.symmetric_two_class(
                                 np.array([1.2, -0.4, 0.3]), 0.6, sde), closed_form=True),
    "on-a-line": MixtureSpec("the paper's Fig. 1: two classes on a line in 2-D (GaussianMixture.on_a_line)",
                             lambda sde: GaussianMixture.on_a_line(sde=sde)),
    "ten-class": MixtureSpec("ten classes N(a_k e_k, 0.25 I) in 10-D, a_k from 0.6 to 2.4: classes decided at "
                             "different times", _ten_class),
})
"""The exact mixtures of `separability labels --mixture NAME`."""


# ---------------------------------------------------------------------------------------------- sources
@dataclasses.dataclass(frozen=True)
class _Setup:
    """What the measurement needs from a source: the model, its evaluation pairs and its reference."""

    name: str
    model: eqx.Module
    shape: tuple[int, ...]
    prior: np.ndarray
    x_eval: jax.Array
    y_eval: np.ndarray
    reference_name: str
    reference_curve: Callable[[np.ndarray, jax.Array], Estimate]
    reference_draws: Callable[[int, int, jax.Array], np.ndarray]  # (class, n, key) -> clean points of that class
    reference_model: Callable[[], eqx.Module]  # builds the reference's model in the current default dtype
    exact: bool  # the measured model is the reference itself (every check is then exact)
    entropy_at_T: float | None
    instance: dict
    timings: dict
    model_b: eqx.Module | None = None  # a second fit on other images: the I-MMSE curves are then cross-fitted


class AbstractLabelSource(abc.ABC):
    """Where the model comes from; `prepare(experiment, out, *, key, data) -> _Setup`, on the process `sde`."""

    @property
    @abc.abstractmethod
    def sde(self) -> VPSDE:
        """The forward process of the model (known before it is prepared)."""

    @abc.abstractmethod
    def prepare(self, experiment: "LabelExperiment", out: Path, *, key, data: ImageData | None) -> _Setup:
        ...


@dataclasses.dataclass(frozen=True)
class MixtureSource(AbstractLabelSource):
    """An exact `GaussianMixture` from `MIXTURES` by `name`: the measured model is its exact $e^*$.

    **Arguments:**

    - `name`: a key of `MIXTURES`.
    - `sde`: the forward process (default: the paper's beta_min = 0.1, beta_max = 16, T = 1).
    """

    name: str = "two-class"
    sde: VPSDE = VPSDE(beta_min=0.1, beta_max=16.0, T=1.0)

    def __post_init__(self):
        if self.name not in MIXTURES:
            raise ValueError(f"unknown mixture {self.name!r}; known: {', '.join(MIXTURES)}.")

    def prepare(self, experiment, out, *, key, data):
        spec = MIXTURES[self.name]
        mixture = spec.build(self.sde)
        x, y = mixture.sample(experiment.n_eval, key=key)
        single = [GaussianMixture(np.ones(1), mixture.means[c:c + 1], mixture.covs[c:c + 1], self.sde)
                  for c in range(mixture.n_components)]
        at_T = float(mixture.two_class_label_entropy(self.sde.T)) if spec.closed_form else None

        def curve(times, k):
            mc = mixture.label_entropy(times, n=experiment.n_reference, key=k)
            if not spec.closed_form:
                return mc
            return dataclasses.replace(mc, cumulative=mixture.two_class_label_entropy(times),
                                       cumulative_stderr=np.zeros_like(times), value=mixture.two_class_label_entropy(
                                           times[-1]), stderr=0.0)

        return _Setup(
            name=self.name, model=mixture.model(), shape=(mixture.dim_x,), prior=np.asarray(mixture.weights),
            x_eval=x, y_eval=np.asarray(y), exact=True, entropy_at_T=at_T,
            reference_name="exact (1-D quadrature; rate by Monte Carlo)" if spec.closed_form
            else "exact posteriors (Monte Carlo)",
            reference_curve=curve, reference_draws=lambda c, n, k: np.asarray(single[c].sample(n, key=k)[0]),
            reference_model=mixture.model,
            instance={"mixture": self.name, "description": spec.description, "dim_x": mixture.dim_x,
                      "num_classes": mixture.n_components}, timings={})


@dataclasses.dataclass(frozen=True)
class ImageSource(AbstractLabelSource):
    """A conditional U-Net trained (or resumed from its checkpoint) exactly as `separability images` trains it, from an
    `ImageExperiment` (its `unet`, `train`, `sde`, `condition_dropout`, data set and checkpoint settings); the
    reference is the exact `EmpiricalMixture` of the training images.

    **Arguments:**

    - `image`: the `ImageExperiment` whose network and training are used (its estimation settings are not).
    - `n_reference_points`: use at most this many training images per class in the empirical oracle (`None`: all).
    """

    image: ImageExperiment
    n_reference_points: int | None = None

    @property
    def sde(self) -> VPSDE:
        return self.image.sde

    def prepare(self, experiment, out, *, key, data):
        cfg = self.image
        timings = {}
        if data is None:
            data = configured_data(cfg)
        unet_cfg = cfg.unet
        if unet_cfg.image_shape != data.image_shape or unet_cfg.num_classes != data.num_classes:
            raise ValueError(f"UNetConfig has image_shape {unet_cfg.image_shape}, num_classes {unet_cfg.num_classes}; "
                             f"the data have {data.image_shape}, {data.num_classes}.")
        # the keys (`train_networks` draws them from the run's key), model and loss and checkpoint folder of
        # `run_image_experiment`: the same seed and configuration give the same checkpoint fingerprint, so a network
        # trained by `separability images` is reused as it is
        ckpt = None if cfg.checkpoint_dir is None else Path(out) / cfg.checkpoint_dir
        t0 = time.perf_counter()
        # with `cross_fit`, one network on each half of the images: the first (the one the online classifier and the
        # plug-in curve use) and the second, with which the I-MMSE curves are cross-fitted
        result, *second = train_networks(cfg, data, ckpt, key=key)
        timings["train_s"] = time.perf_counter() - t0
        losses = np.asarray(result.losses)

        prior = data.label_prior()
        points, labels = data.train_x, data.train_y
        if self.n_reference_points is not None:
            keep = np.concatenate([np.flatnonzero(labels == c)[: self.n_reference_points]
                                   for c in range(data.num_classes)])
            points, labels = points[keep], labels[keep]
        oracle = EmpiricalMixture(points, labels, cfg.sde, num_classes=data.num_classes)
        by_class = [points[labels == c] for c in range(data.num_classes)]

        def curve(times, k):
            n = experiment.n_reference
            return oracle.label_entropy(times, n=n, key=k, chunk=math.gcd(n, 100))

        def draws(c, n, k):
            return by_class[c][np.asarray(jax.random.randint(k, (n,), 0, len(by_class[c])))]

        x_eval, y_eval = data.held_out(experiment.n_eval, "LabelExperiment.n_eval")
        return _Setup(
            name=data.name, model=result.ema_model, shape=tuple(data.image_shape), prior=prior,
            x_eval=jnp.asarray(x_eval), y_eval=np.asarray(y_eval), exact=False, entropy_at_T=None,
            reference_name=f"empirical oracle: the diffused {len(points)} training images (exact posteriors; "
                           "what a memorising model gives)",
            reference_curve=curve, reference_draws=draws, reference_model=oracle.model,
            model_b=second[0].ema_model if second else None,
            instance={"dataset": data.name, "image_shape": data.image_shape, "num_classes": data.num_classes,
                      "n_train": int(len(data.train_x)), "n_eval_held_out": int(len(x_eval)),
                      "pixel_range": data.pixel_range, "unet": config_dict(unet_cfg),
                      "parameters": learned.parameter_count(result.model), "train": config_dict(cfg.train),
                      "condition_dropout": cfg.condition_dropout, "weighting": cfg.weighting,
                      "n_train_network": int(len(data.train_x[training_parts(cfg, data)[0]])),
                      "cross_fit": bool(second),
                      "final_loss_mean_last_10pct": float(np.mean(losses[-max(1, len(losses) // 10):])),
                      "checkpoints": None if ckpt is None else str(ckpt),
                      "label_entropy_definition": f"H(Y) of all {len(data.train_y) + len(data.test_y)} labels of "
                                                  f"{data.name}"},
            timings=timings)



# ---------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class LabelExperiment:
    r"""Everything the label-entropy experiment needs (frozen).

    **Arguments:**

    - `source`: a `MixtureSource` (exact model) or an `ImageSource` (trained U-Net).
    - `n_times`, `s_min`: the I-MMSE grid, `LogSNRGrid(n_times, s_min)`; the reference is evaluated on it.
    - `n_eval`: data pairs for the I-MMSE estimator (held-out test images for an image source).
    - `n_trajectories`: unconditional trajectories of the online classifier (overall $H(Y|X_s)$).
    - `n_per_class`: trajectories per class for the per-class and guided online curves (one run per w).
    - `n_steps`, `s_end`: Euler–Maruyama steps from T to `s_end` (the online curve's grid is uniform, step
      $(T - s_{end})$/`n_steps`).
    - `cfg_weights`: guidance weights, the first 0 (the baseline of the peak shifts and the per-class profiles).
    - `report_times`: times of the summary table (strictly increasing, between the curves' first and last nodes).
    - `n_reference`: Monte Carlo samples of the reference curves (per class for the per-class ones).
    - `chunk_size`: data rows per compiled I-MMSE call.
    - `progress`: show a progress bar over the measurement's stages.
    """

    source: AbstractLabelSource
    n_times: int = 48
    s_min: float = 1e-3
    n_eval: int = 300
    n_trajectories: int = 200
    n_per_class: int = 40
    n_steps: int = 200
    s_end: float = 1e-3
    cfg_weights: tuple[float, ...] = (0.0, 1.0, 3.0)
    report_times: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
    n_reference: int = 1000
    chunk_size: int = 64
    progress: bool = True

    def __post_init__(self):
        if not isinstance(self.source, AbstractLabelSource):
            raise ValueError(f"LabelExperiment.source must be a MixtureSource or ImageSource; got {self.source!r}.")
        for name in ("n_times", "n_eval", "n_trajectories", "n_per_class", "n_steps", "n_reference", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"LabelExperiment.{name} must be an integer >= 2; got {value!r}.")
        if not (0 < self.s_min < 1 and 0 <= self.s_end < 1):
            raise ValueError(f"LabelExperiment.s_min must lie in (0, T) and s_end in [0, T); got {self.s_min}, "
                             f"{self.s_end}.")
        if (not self.cfg_weights or self.cfg_weights[0] != 0 or not all(math.isfinite(w) for w in self.cfg_weights)
                or len(set(self.cfg_weights)) != len(self.cfg_weights)):
            raise ValueError(f"LabelExperiment.cfg_weights must be distinct finite numbers, the first 0 (the unguided "
                             f"baseline of the peak shifts and the per-class profiles); got {self.cfg_weights!r}.")
        t = np.asarray(self.report_times, np.float64)
        if t.ndim != 1 or t.size < 1 or not np.all(np.diff(t) > 0) or not np.all(t > 0):
            raise ValueError(f"LabelExperiment.report_times must be strictly increasing positive times; got "
                             f"{self.report_times!r}.")
        # The table interpolates the curves between their nodes: a time outside them would read the end node's value
        # (np.interp clamps) beside a reference evaluated at the time itself.
        nodes = LogSNRGrid(n_times=self.n_times, s_min=self.s_min).nodes_weights(self.source.sde)[0]
        lo, hi = max(float(nodes[0]), self.s_end), float(nodes[-1])
        if t[0] < lo or t[-1] > hi:
            raise ValueError(f"LabelExperiment.report_times must lie between the curves' first and last nodes, "
                             f"[{lo:.4g}, {hi:.4g}] (the I-MMSE grid's nodes from s_min = {self.s_min} with n_times = "
                             f"{self.n_times}, and the online curve's s_end = {self.s_end}); got {self.report_times!r}.")


# ---------------------------------------------------------------------------------------------- helpers
@eqx.filter_jit
def _posterior_stats(model, x0, c, times, key):
    """Per time: mean/stderr of the posterior entropy and of $-\\log p(c|x_s)$, over diffused draws of class c
    (common noise across times), and the per-sample values for finite differences."""
    noise = jax.random.normal(key, x0.shape, x0.dtype)

    def one_time(s):
        xs = model.sde.mu(s) * x0 + jnp.sqrt(model.sde.var(s)) * noise
        p = jax.vmap(lambda xi: model.posterior(xi, s))(xs)
        logp = jnp.log(jnp.maximum(p, jnp.finfo(p.dtype).tiny))
        return -jnp.sum(p * logp, axis=-1), -logp[:, c]

    return jax.lax.map(one_time, times)


def _finite_curve(times: np.ndarray, rows: np.ndarray) -> Estimate:
    """Curve (mean over columns) with central-difference rates sample by sample (common random numbers)."""
    mean, se = mean_stderr(rows.T)
    idx = np.arange(times.size)
    hi, lo = np.minimum(idx + 1, times.size - 1), np.maximum(idx - 1, 0)
    rate, rate_se = mean_stderr(((rows[hi] - rows[lo]) / (times[hi] - times[lo])[:, None]).T)
    return Estimate(value=mean[0], stderr=se[0], times=times, cumulative=mean, cumulative_stderr=se, rate=rate,
                    rate_stderr=rate_se)


def _reference_classes(setup: _Setup, times: np.ndarray, n: int, key) -> dict[int, dict[str, Estimate]]:
    """Exact per-class surprisal and posterior entropy of the reference on `times`, in float64."""
    out = {}
    with jax.enable_x64(True):
        model = setup.reference_model()
        for c in range(setup.prior.size):
            k_draw, k_noise = jax.random.split(jax.random.fold_in(key, c))
            x0 = jnp.asarray(setup.reference_draws(c, n, k_draw), jnp.float64)
            entropy, surprisal = _posterior_stats(model, x0, c, jnp.asarray(times), k_noise)
            out[c] = {"surprisal": _finite_curve(times, np.asarray(surprisal, np.float64)),
                      "entropy": _finite_curve(times, np.asarray(entropy, np.float64))}
    return out


def _snr_step(sde: VPSDE, config: LabelExperiment) -> float:
    return float(sde.log_snr(config.s_min) - sde.log_snr(sde.T)) / config.n_times


def _at(est: Estimate, s: float) -> dict:
    """The curve at time `s`, interpolated linearly between its grid nodes (value and stderr)."""
    return {"time": float(s), "value": float(np.interp(s, est.times, est.cumulative)),
            "stderr": float(np.interp(s, est.times, est.cumulative_stderr))}


def _peak(est: Estimate) -> Peak:
    return peak_time(est.times, est.rate, est.rate_stderr)


def _half(est: Estimate) -> HalfTime:
    return half_time(est.times, est.cumulative, est.cumulative_stderr)


def _z_max(est: Estimate, exact: Estimate, tolerance: float = 0.0) -> float:
    """Largest |estimate - exact| over the curve (same times), in combined stderr, after a deterministic `tolerance`."""
    excess = np.maximum(np.abs(est.cumulative - exact.cumulative) - tolerance, 0.0)
    se = np.hypot(est.cumulative_stderr, exact.cumulative_stderr)
    se = np.where(se > 0, se, np.inf)
    return float(np.max(np.where(excess > 0, excess / se, 0.0)))


# ---------------------------------------------------------------------------------------------- run
def run(config: LabelExperiment, out: str | Path, *, key, data: ImageData | None = None,
        instance: dict | None = None) -> dict:
    """Measure, plot and write `out/results.json` (module docstring).

    **Arguments:**

    - `config`: a `LabelExperiment`.
    - `out`: output directory (results.json, label_entropy.png, class_rates.png, cfg_shift.png).
    - `key`: PRNG key (for an image source split as by `run_image_experiment`, so its checkpoints are shared).
    - `data`: the `ImageData`, if already loaded (image sources only).
    - `instance`: extra entries for the `instance` block (e.g. the CLI's seed).

    **Returns:**

    The results payload.
    """
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # the source gets `key` itself (an image source splits it as `run_image_experiment` does, so the same seed finds
    # the same checkpoint); the estimates use keys folded from it
    k_immse, k_class, k_online, k_cfg, k_ref, k_ref_class = (jax.random.fold_in(key, 1000 + i) for i in range(6))
    setup = config.source.prepare(config, out, key=key, data=data)
    timings = dict(setup.timings)
    model, prior = setup.model, setup.prior
    h_y = float(-(prior * np.log(prior)).sum())
    grid = LogSNRGrid(n_times=config.n_times, s_min=config.s_min)
    ref_posterior = model.posterior if setup.exact else None

    bar = tqdm(total=4 + len(config.cfg_weights), desc="labels", disable=not config.progress)
    t0 = time.perf_counter()
    bar.set_postfix_str("I-MMSE")
    def overall(model_b):
        return label_entropy(model, setup.x_eval, jnp.asarray(setup.y_eval), prior_entropy=h_y,
                             entropy_at_T=setup.entropy_at_T, times=grid, model_b=model_b,
                             chunk_size=config.chunk_size, key=k_immse)

    immse = overall(setup.model_b)
    # beside a cross-fit, the first network alone on the same noisy inputs: the square of its fit error, which the
    # cross-fit leaves out, pulls this plug-in curve down
    immse_plugin = None if setup.model_b is None else overall(None)
    immse_class = label_entropy_per_class(model, setup.x_eval, setup.y_eval, prior=prior, times=grid,
                                          model_b=setup.model_b, chunk_size=config.chunk_size, key=k_class)
    timings["immse_s"] = time.perf_counter() - t0
    bar.update(2)
    bar.set_postfix_str("online, unconditional")

    t0 = time.perf_counter()
    online = label_profile_online(model, setup.shape, prior, n=config.n_trajectories, n_steps=config.n_steps,
                                  s_end=config.s_end, reference=ref_posterior, key=k_online)
    bar.update(1)
    guided = {}
    for i, w in enumerate(config.cfg_weights):
        bar.set_postfix_str(f"online, per class, w = {w:g}")
        guided[float(w)] = class_profiles_online(model, setup.shape, prior, n_per_class=config.n_per_class,
                                                 n_steps=config.n_steps, s_end=config.s_end, w=float(w),
                                                 reference=ref_posterior, key=jax.random.fold_in(k_cfg, i))
        bar.update(1)
    timings["online_s"] = time.perf_counter() - t0
    bar.set_postfix_str("reference")

    t0 = time.perf_counter()
    reference = setup.reference_curve(immse.times, k_ref)
    ref_class = _reference_classes(setup, immse.times, config.n_reference, k_ref_class)
    timings["reference_s"] = time.perf_counter() - t0
    bar.update(1)
    bar.close()

    classes = range(prior.size)
    w0 = float(config.cfg_weights[0])
    base_class, base_avg = guided[w0]
    at_report = setup.reference_curve(np.asarray(config.report_times, np.float64), k_ref)  # exact at the times
    report = [{"s": float(s), "immse": _at(immse, s), "online": _at(online.entropy, s),
               "online_conditional": _at(base_avg.entropy, s),
               "reference": {"time": float(s), "value": float(at_report.cumulative[i]),
                             "stderr": float(at_report.cumulative_stderr[i])},
               **({} if immse_plugin is None else {"immse_plugin": _at(immse_plugin, s)})}
              for i, s in enumerate(config.report_times)]
    # the two online curves read the same H(Y|X_s) for a coherent model; where they differ at the first report time
    # (independent trajectories, combined stderr), the unconditional one measures the disagreement as well
    first, coherence = report[0], []
    gap = first["online"]["value"] - first["online_conditional"]["value"]
    gap_se = math.hypot(first["online"]["stderr"], first["online_conditional"]["stderr"])
    if abs(gap) > 2 * gap_se:
        coherence.append(f"online H(Y|X_s) at s = {first['s']:g} along the unconditional drift minus along each "
                         f"label's own drift: {gap:+.3f} ± {gap_se:.3f} nats (more than 2 stderr); the model's "
                         "unconditional output is not the posterior average of its conditional ones there, and the "
                         "unconditional curve measures that too (read 'online by class')")

    def timing(est: Estimate) -> dict:
        """The rate's peak and the half-decision time of one curve."""
        return {**_peak(est).to_dict(), "half_time": _half(est).to_dict()}

    peaks = {
        "immse": timing(immse), "online": timing(online.entropy), "reference": timing(reference),
        "per_class": {c: {"immse": timing(immse_class[c]), "online": timing(base_class[c].surprisal),
                          "reference": timing(ref_class[c]["surprisal"])} for c in classes},
    }
    cfg_block = {}
    for w, (per_class, average) in guided.items():
        entry = {"average": {"entropy": average.entropy.to_dict(curves=True), "peak": timing(average.entropy),
                             "peak_shift": _peak(average.entropy).time - _peak(base_avg.entropy).time,
                             "half_time_shift": _half(average.entropy).time - _half(base_avg.entropy).time},
                 "per_class": {c: {"peak": timing(per_class[c].entropy),
                                   "peak_shift": _peak(per_class[c].entropy).time - _peak(base_class[c].entropy).time,
                                   "half_time_shift": _half(per_class[c].entropy).time
                                   - _half(base_class[c].entropy).time,
                                   "surprisal_peak": timing(per_class[c].surprisal)} for c in classes}}
        if average.reference_entropy is not None:
            entry["average"]["reference_entropy"] = average.reference_entropy.to_dict(curves=True)
            entry["average"]["reference_peak"] = timing(average.reference_entropy)
            entry["average"]["gap"] = average.gap.to_dict(curves=True)
        cfg_block[w] = entry
    resolution = {"immse_grid": f"LogSNRGrid({config.n_times}, s_min={config.s_min}): nodes uniform in log-SNR, "
                                f"{_snr_step(model.sde, config):.3f} apart (a peak is resolved to its neighbours)",
                  "online_grid": f"uniform, step {(1 - config.s_end) / config.n_steps:.4g} in s (rates by central "
                                 f"differences over {max(1, config.n_steps // 20)} steps each side)"}

    checks = None
    if setup.exact:
        exact_online = setup.reference_curve(online.entropy.times, k_ref)
        # the online classifier starts at the prior, H(Y), not at H(Y|X_T) = H(Y) - I(X_T;Y): a deterministic offset
        start_offset = 0.0 if setup.entropy_at_T is None else h_y - setup.entropy_at_T
        checks = {
            "definition": "largest |estimate - exact| over every grid time, in combined stderr, after a stated "
                          "deterministic allowance: for I-MMSE the grid's quadrature error, estimated node by node as "
                          "sum h^3 |f''| / 12 of its own mean rate (trapezoid error); for the online classifier its "
                          "start at the prior H(Y) instead of H(Y|X_T). The online gap is the online posterior entropy "
                          "minus the exact posterior's on the same trajectories (Euler-Maruyama step error, O(h))",
            "online_gap_max_abs": float(np.max(np.abs(online.gap.cumulative))),
            "immse_max_z": _z_max(immse, reference, tail_quadrature_error(grid, model.sde, immse.rate)),
            "immse_grid_error_max": float(np.max(tail_quadrature_error(grid, model.sde, immse.rate))),
            "online_max_z": _z_max(online.entropy, exact_online, start_offset),
            "online_start_offset": start_offset,
        }

    payload = {
        "experiment": "labels",
        "instance": {**setup.instance, "prior_entropy": h_y, "reference": setup.reference_name,
                     "sde": {"beta_min": model.sde.beta_min, "beta_max": model.sde.beta_max, "T": model.sde.T},
                     "n_times": config.n_times, "s_min": config.s_min, "n_eval": int(setup.x_eval.shape[0]),
                     "n_eval_requested": config.n_eval,
                     "n_trajectories": config.n_trajectories, "n_per_class": config.n_per_class,
                     "n_steps": config.n_steps, "s_end": config.s_end, "cfg_weights": list(config.cfg_weights),
                     "n_reference": config.n_reference, **(instance or {})},
        "quantities": {"prior_entropy": h_y, "report": report, "peaks": peaks,
                       "cfg_peak_shift": {w: cfg_block[w]["average"]["peak_shift"] for w in cfg_block},
                       "cfg_half_time_shift": {w: cfg_block[w]["average"]["half_time_shift"] for w in cfg_block},
                       "resolution": resolution, "checks": checks,
                       "flags": [*immse.flags, *(f for c in classes for f in immse_class[c].flags), *coherence]},
        "curves": {
            "immse": immse.to_dict(curves=True), "online": online.to_dict(), "reference": reference.to_dict(curves=True),
            **({} if immse_plugin is None else {"immse_plugin": immse_plugin.to_dict(curves=True)}),
            "per_class": {c: {"immse": immse_class[c].to_dict(curves=True),
                              "online": base_class[c].to_dict(),
                              "reference": {k: v.to_dict(curves=True) for k, v in ref_class[c].items()}}
                          for c in classes},
            "cfg": cfg_block,
        },
        "definitions": {
            "H(Y|X_s)": "label entropy given the noisy state at forward time s, nats",
            "report": "each estimator's curve interpolated linearly between its grid nodes at the report times; the "
                      "reference evaluated at those times",
            "immse": "H(Y) (or the exact H(Y|X_T)) minus the integral from s to T of the MINDE integrand; with two "
                     "networks fitted on the two halves of the training images (instance.cross_fit) the integrand "
                     "is cross-fitted, beta/2 (e_a(y) - e_a).(e_b(y) - e_b), and immse_plugin is the first network's "
                     "own beta/2 |e_a(y) - e_a|^2, biased up by the square of its fit error (curve biased down)",
            "online_conditional": "the online posterior's entropy along trajectories of each label's own drift "
                                  "e(x, s; c), c drawn from the prior (the class average of cfg at w = 0): the same "
                                  "H(Y|X_s) as online for a model whose unconditional output is the posterior average "
                                  "of its conditional ones; a learned model's two differ where it is not",
            "rate": "dH/ds >= 0 in forward time: label information produced by generation per unit time",
            "per_class": "H_c(s) = E[-log p(c|X_s) | Y = c] (sum_c p(c) H_c = H(Y|X_s)); I-MMSE on class-c images, "
                         "online along class-c trajectories (online.entropy: their mean posterior entropy)",
            "cfg": "online posterior entropy along trajectories guided towards each class with drift "
                   "e_u + (1+w)(e_c - e_u), averaged over classes with the prior; peak_shift = peak time at w minus "
                   f"at w = {w0:g} (positive: decided earlier in generation); half_time_shift likewise for the time at "
                   "which half the label information is decided (robust where the rate's peak is broad or noisy)",
        },
    }
    t0 = time.perf_counter()
    payload["figures"] = _figures(out, setup, immse, immse_plugin, online, base_avg, reference, immse_class,
                                  base_class, ref_class, guided)
    timings["figures_s"] = time.perf_counter() - t0
    payload["timings_s"] = timings
    payload["units"] = "nats; rates in nats per unit forward time s"
    payload.update(provenance(start))
    write_json(out / "results.json", payload)
    return payload


def _figures(out, setup, immse, immse_plugin, online, base_avg, reference, immse_class, base_class, ref_class,
             guided) -> dict:
    figures = {}
    ref_label = "reference (exact)" if setup.exact else "empirical oracle"
    plugin = [] if immse_plugin is None else [
        {"label": "I-MMSE plug-in (first network)", "y": immse_plugin.cumulative, "color": "0.6"}]
    path = plot_curves(immse.times, [
        ("H(Y | X_s)", "nats", [
            {"label": "I-MMSE" + ("" if immse_plugin is None else " (cross-fit)"), "y": immse.cumulative,
             "stderr": immse.cumulative_stderr}, *plugin,
            {"label": "online Bayes classifier", "y": online.entropy.cumulative,
             "stderr": online.entropy.cumulative_stderr, "times": online.entropy.times, "color": "C1"},
            {"label": "online, class-conditional trajectories", "y": base_avg.entropy.cumulative,
             "stderr": base_avg.entropy.cumulative_stderr, "times": base_avg.entropy.times, "color": "C2"},
            {"label": ref_label, "y": reference.cumulative, "exact": True, "color": "k"},
        ]),
        ("rate dH/ds (label decided)", "nats per unit s", [
            {"label": "I-MMSE" + ("" if immse_plugin is None else " (cross-fit)"), "y": immse.rate,
             "stderr": immse.rate_stderr},
            {"label": "online", "y": online.entropy.rate, "stderr": online.entropy.rate_stderr,
             "times": online.entropy.times},
            {"label": ref_label, "y": reference.rate, "exact": True, "color": "k"},
        ]),
    ], out / "label_entropy.png", title=f"{setup.name}: when the label is decided", log_x=True)
    figures["label_entropy"] = path.name

    classes = range(setup.prior.size)
    path = plot_curves(immse.times, [
        ("I-MMSE, per class" + ("" if immse_plugin is None else " (cross-fit)"), "dH_c/ds",
         [{"label": f"class {c}", "y": immse_class[c].rate, "color": f"C{c % 10}"} for c in classes]),
        ("online, class-c trajectories", "dH_c/ds", [
            {"label": f"class {c}", "y": base_class[c].surprisal.rate, "times": base_class[c].surprisal.times,
             "color": f"C{c % 10}"} for c in classes]),
        (ref_label, "dH_c/ds", [{"label": f"class {c}", "y": ref_class[c]["surprisal"].rate, "color": f"C{c % 10}"}
                                for c in classes]),
    ], out / "class_rates.png", title=f"{setup.name}: per-class rate of the label's surprisal", log_x=True)
    figures["class_rates"] = path.name

    fig, axes = new_figure(1, 3, figsize=(14.0, 3.9))
    for i, (w, (per_class, average)) in enumerate(guided.items()):
        est = average.entropy
        axes[0, 0].plot(est.times, est.cumulative, color=f"C{i}", label=f"w = {w:g}")
        axes[0, 0].fill_between(est.times, est.cumulative - 2 * est.cumulative_stderr,
                                est.cumulative + 2 * est.cumulative_stderr, color=f"C{i}", alpha=0.2, lw=0)
        axes[0, 1].plot(est.times, est.rate, color=f"C{i}", label=f"w = {w:g}")
        pk = _peak(est)
        axes[0, 1].axvline(pk.time, color=f"C{i}", ls=":", lw=1)
        peaks = [_peak(per_class[c].entropy).time for c in classes]
        axes[0, 2].plot(list(classes), peaks, "o-", color=f"C{i}", label=f"w = {w:g}")
    axes[0, 0].set(title="posterior entropy along guided trajectories", xlabel="forward time s", ylabel="nats",
                   xscale="log")
    axes[0, 1].set(title="its rate dH/ds (dotted: peak)", xlabel="forward time s", ylabel="nats per unit s")
    axes[0, 2].set(title="peak time per class", xlabel="class", ylabel="s of the rate's peak")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figures["cfg_shift"] = save_figure(fig, out / "cfg_shift.png",
                                       title=f"{setup.name}: classifier-free guidance moves the decision").name
    return figures
