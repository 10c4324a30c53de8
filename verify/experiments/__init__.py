"""The paper's experiments, one module each: a frozen config, `run(config, out, *, key)` that returns the results
dict and writes results.json and figures, and nothing command-line specific.

`EXPERIMENTS` maps each experiment's name to its `Experiment` record (what the `separability` command lists); the
Gaussian sweeps are chosen from `GAUSSIAN_FAMILIES`, image data sets from `learned.DATASETS`. This layer may import
`gaussian_oracle`, `learned`, `verify.estimators` and the rest of the `verify` library, and matplotlib (only when a
figure is drawn); `verify.cli` builds on it, nothing below imports it.
"""

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType

from .._figures import new_figure as new_figure, plot_curves as plot_curves, save_figure as save_figure
from . import _autoencoder, _budget, _gaussian, _images, _labels, _oracle
from ._autoencoder import (
    AutoencoderExperiment as AutoencoderExperiment,
    crossfit_halves as crossfit_halves,
    fit_latent_model as fit_latent_model,
    fit_latent_posterior as fit_latent_posterior,
    LatentInformation as LatentInformation,
    LatentInformationConfig as LatentInformationConfig,
    latent_information as latent_information,
    POSTERIOR_TIMES as POSTERIOR_TIMES,
    POSTERIOR_TRAIN as POSTERIOR_TRAIN,
    merge_autoencoder_results as merge_autoencoder_results,
    reconstruct as reconstruct,
    split_keys as split_keys,
    SplitKeys as SplitKeys,
)
from ._budget import BudgetConfig as BudgetConfig
from ._gaussian import (
    CFG as CFG,
    DEFAULT_TRAIN as DEFAULT_TRAIN,
    GAUSSIAN_FAMILIES as GAUSSIAN_FAMILIES,
    AbstractFamily as AbstractFamily,
    DemoConfig as DemoConfig,
    Determinism as Determinism,
    Flattening as Flattening,
    GaussianExperimentConfig as GaussianExperimentConfig,
    SweepConfig as SweepConfig,
    fit as fit,
    measure as measure,
    run_demo as run_demo,
    run_instance as run_instance,
    run_sweep as run_sweep,
    summary_lines as summary_lines,
)
from ._images import (
    Bounds as Bounds,
    ImageExperiment as ImageExperiment,
    ImageInformation as ImageInformation,
    cfg_samples as cfg_samples,
    image_information as image_information,
    information_bounds as information_bounds,
    LabelInformationCurve as LabelInformationCurve,
    label_information_curve as label_information_curve,
    plot_sample_grid as plot_sample_grid,
    run_image_experiment as run_image_experiment,
    train_networks as train_networks,
)
from ._labels import (
    MIXTURES as MIXTURES,
    AbstractLabelSource as AbstractLabelSource,
    ImageSource as ImageSource,
    LabelExperiment as LabelExperiment,
    MixtureSource as MixtureSource,
    MixtureSpec as MixtureSpec,
)
from ._oracle import (
    OracleConfig as OracleConfig,
    cfg_table as cfg_table,
    exact_curves as exact_curves,
    exact_summary as exact_summary,
    plot_cfg_curve as plot_cfg_curve,
)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment: its `name`, a one-line `description`, its `config` type and `run(config, out, *, key,
    **options) -> dict`."""

    name: str
    description: str
    config: type
    run: Callable[..., dict]


EXPERIMENTS: Mapping[str, Experiment] = MappingProxyType({
    "oracle": Experiment("oracle", "exact closed-form report (JSON + PNG figures), no training",
                         _oracle.OracleConfig, _oracle.run),
    "demo": Experiment("demo", "main job: learned S_NN, I_MINDE, I_diff beside exact values (CPU, about 10 min)",
                       _gaussian.DemoConfig, _gaussian.run_demo),
    "gaussian": Experiment("gaussian", "determinism / flattening / CFG sweeps, learned vs exact",
                           _gaussian.SweepConfig, _gaussian.run_sweep),
    "images": Experiment("images", "conditional U-Net on images: S_NN, I(X;Y) with bounds, rates, CFG samples",
                         _images.ImageExperiment, _images.run),
    "labels": Experiment("labels", "when the label is decided: H(Y|X_s) by two estimators beside an exact reference, "
                         "per-class rates, CFG peak shift", _labels.LabelExperiment, _labels.run),
    "budget": Experiment("budget", "information budget of an image model: S_NN, exact marginals, TC (Eq. 7), I(X;Y), "
                         "split at tau into semantic and perceptual parts", _budget.BudgetConfig, _budget.run),
    "autoencoder": Experiment("autoencoder", "split-loss diffusion autoencoder over tau: I(Z_sem;Y), I(Z_per;Y) with "
                              "bounds, k-NN accuracy; DAE vs VAE", _autoencoder.AutoencoderExperiment, _autoencoder.run),
})
"""Every experiment by name; a new experiment is one entry here (and its command-line adapter in `verify.cli`)."""
