"""`separability images`: train a conditional U-Net on an image data set; S_NN, I(X;Y) with bounds, rates, samples."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import learned
from learned import ClassifierConfig, LogSNRTime, TrainConfig, UniformTime

from ..estimators import ImportanceSampler, LogSNRGrid, PiecewiseConstant, UniformGrid
from ..experiments import EXPERIMENTS, ImageExperiment
from ._common import (
    about_ten_checkpoints,
    add_dataset,
    add_output,
    add_seed,
    at_least_two,
    checkpoint_dir,
    describe_checkpoints,
    float_list,
    int_list,
    load_image_data,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    probability,
    resume,
)

QUICK = "digits"
"""The data set of `--quick`, the CPU smoke configuration tested in CI."""
QUICK_STEPS = 1000
"""Training steps of each `--quick` network (`benchmarks/bench_images_crossfit.py`: the digits cross-fit lies inside
its bounds from 1,000 steps on). `benchmarks/bench_images_quick.py` (session 30, seeds 0, 1, 2): the cross-fit reads
2.267, 2.378, 2.316 nats (mean 2.320) at 1,000 steps and 2.427, 2.308, 2.248 (mean 2.328) at 1,500, all inside
[H(Y) - CE, H(Y)] within 2 stderr; the seeds spread more than the step counts differ, and 1,000 steps cost a third
less training (about 90 s of CI's quick image fixture)."""
CPU_STEPS = 1200
"""Training steps of `--cpu`'s unconditional U-Net. The label part of the score comes from a 16/32-channel noisy
classifier of 3,000 steps on each half of the training images (`--guided --guidance-training separate`), on
Fashion-MNIST learning the residual of a Gaussian class model (SNR_1/2 = 4): about 27-28 minutes on 2 idle cores,
with the cross-fitted I_MINDE inside [H(Y) - CE, H(Y)] on both data sets (`benchmarks/results/images_*_cpu_preset*/`,
`benchmarks/README.md`). The first preset, two label-embedding U-Nets of these steps (`--no-guided`), read 1.96 on
MNIST-5k (below 2.27) and 3.08 on Fashion-MNIST (above 2.30); on MNIST-5k the Gaussian base lowers the classifiers'
cross-fit (1.84, below), so the preset uses it on Fashion-MNIST only."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """The value each unset flag of `separability images` takes: the full run, `--quick` or `--cpu`.

    `datasets` are the data sets the preset is sized for (`None`: any); `unet` overrides the data set's U-Net preset;
    `steps_per_call=None` is the platform's choice (a few unrolled steps on a CPU, a long scan on a GPU)."""

    name: str
    datasets: tuple[str, ...] | None
    unet: tuple[tuple[str, object], ...]
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    ema_decay: float
    steps_per_call: int | None
    classifier_channels: tuple[int, ...]
    classifier_hidden: int
    classifier_steps: int
    posterior_steps: int
    n_times: int
    n_eval: int
    chunk_size: int
    per_class: int
    sample_steps: int
    guided: bool = False
    guidance_training: str = "joint"
    guidance_steps: int = 1500
    guidance_channels: tuple[int, ...] | None = None
    gaussian_base: tuple[tuple[str, float], ...] = ()

    def check(self, dataset: str) -> None:
        if self.datasets is not None and dataset not in self.datasets:
            raise ValueError(f"--{self.name} is sized for --dataset {' or '.join(self.datasets)}; got {dataset!r}.")

    @property
    def noisy_classifier_channels(self) -> tuple[int, ...]:
        """The channels of `--guided`'s noisy classifiers: `guidance_channels`, else the bound classifier's."""
        return self.guidance_channels or self.classifier_channels

    def gaussian_base_for(self, dataset: str) -> float | None:
        """The SNR_1/2 of the preset's `learned.ClassGaussianBase` on `dataset` (`None`: none)."""
        return dict(self.gaussian_base).get(dataset)

    @property
    def gaussian_base_help(self) -> str:
        """'4 on fashion-mnist' or 'off', for the help of `--gaussian-base`."""
        return ", ".join(f"{snr:g} on {name}" for name, snr in self.gaussian_base) or "off"


_SMALL_UNET = (("channels", 16), ("embed_dim", 64))
PRESETS = {
    "full": Preset("full", None, (), steps=20_000, batch_size=128, lr=2e-4, warmup_steps=500, ema_decay=0.999,
                   steps_per_call=None, classifier_channels=(32, 64), classifier_hidden=128, classifier_steps=3000,
                   posterior_steps=3000, n_times=128, n_eval=1000, chunk_size=8, per_class=4, sample_steps=100),
    "quick": Preset("quick", (QUICK,), _SMALL_UNET + (("num_groups", 4),), steps=QUICK_STEPS, batch_size=64,
                    lr=1e-3, warmup_steps=50, ema_decay=0.99, steps_per_call=5, classifier_channels=(16, 32),
                    classifier_hidden=64, classifier_steps=300, posterior_steps=0, n_times=32, n_eval=200,
                    chunk_size=32, per_class=2, sample_steps=16),
    # the 28 x 28 data sets in about 28 minutes on 2 cores: one unconditional U-Net (the quick network, 8 groups) of
    # 1,200 steps and on each half of the images a 16/32-channel noisy classifier of 3,000 steps (on Fashion-MNIST
    # learning the residual of a Gaussian class model), the label part of the score (CPU_STEPS)
    "cpu": Preset("cpu", ("mnist5k", "fashion-mnist", "mnist"), _SMALL_UNET, steps=CPU_STEPS, batch_size=64,
                  lr=1e-3, warmup_steps=50, ema_decay=0.99, steps_per_call=None, classifier_channels=(32, 64),
                  classifier_hidden=128, classifier_steps=500, posterior_steps=0, n_times=32, n_eval=200,
                  chunk_size=32, per_class=2, sample_steps=16, guided=True, guidance_training="separate",
                  guidance_steps=3000, guidance_channels=(16, 32), gaussian_base=(("fashion-mnist", 4.0),)),
}
"""The presets of `separability images` (and of the commands built on it) by name."""


def preset_values(field: str) -> str:
    """'default 128; --quick 64; --cpu 64': a flag's value in each preset, for its help."""
    full, quick, cpu = (getattr(PRESETS[name], field) for name in ("full", "quick", "cpu"))
    return f"default {full}; --quick {quick}; --cpu {cpu}"


def preset_of(args: argparse.Namespace) -> Preset:
    """The preset `--quick` or `--cpu` selects (the full run otherwise), checked against `--dataset`, and the flags
    checked against the configuration they choose (`refuse_unused_flags`)."""
    preset = PRESETS["quick" if args.quick else "cpu" if getattr(args, "cpu", False) else "full"]
    preset.check(args.dataset)
    refuse_unused_flags(args, preset)
    return preset


def refuse_unused_flags(args: argparse.Namespace, preset: Preset) -> None:
    """One error for a flag given explicitly that the configuration chosen would not use (nothing is dropped
    silently): `--train-s-min` with `--training-times uniform`; a `--guidance-*` flag without `--guided` (the
    preset's or the flag); `--guidance-steps` with joint guidance training; `--guidance-cross-entropy` with separate
    guidance training."""
    training_times(args)
    guided = preset.guided if args.guided is None else args.guided
    given = [flag for flag in ("--guidance-training", "--guidance-steps", "--guidance-channels",
                               "--guidance-cross-entropy") if getattr(args, flag[2:].replace("-", "_")) is not None]
    if not guided:
        if given:
            raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with --guided "
                             f"(the noisy classifiers {'it configures' if len(given) == 1 else 'they configure'}); "
                             "this run trains label-embedding U-Nets: add --guided, or leave "
                             f"{'it' if len(given) == 1 else 'them'} out.")
        return
    training = args.guidance_training or preset.guidance_training
    if training == "joint" and args.guidance_steps is not None:
        raise ValueError("--guidance-steps applies only with --guided --guidance-training separate (the steps of "
                         "the separately trained noisy classifiers); with joint training each classifier trains with "
                         "its U-Net, for --steps.")
    if training == "separate" and args.guidance_cross_entropy is not None:
        raise ValueError("--guidance-cross-entropy applies only with --guided --guidance-training joint (the weight "
                         "of the classifier's cross-entropy in learned.GuidedLoss); separately trained classifiers "
                         "learn by cross-entropy alone.")


def build_experiment(args: argparse.Namespace, data: learned.ImageData) -> ImageExperiment:
    """Turn parsed arguments into an `ImageExperiment` (the data set's U-Net, the preset of `--quick` or `--cpu`
    (`preset_of`), explicit flags override)."""
    preset = preset_of(args)
    unet = learned.DATASETS[args.dataset].unet_preset(data.num_classes)
    overrides = dict(preset.unet)
    for flag in ("channels", "embed_dim", "num_res_blocks", "dropout", "num_heads", "channel_mult",
                 "attention_resolutions"):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    if args.min_std is not None:
        overrides["min_std"] = None if args.min_std <= 0 else args.min_std
    if args.bf16:
        overrides["compute_dtype"] = jnp.bfloat16
    unet = dataclasses.replace(unet, **overrides)

    def flag(name: str):
        value = getattr(args, name)
        return getattr(preset, name) if value is None else value

    steps = flag("steps")
    # XLA on a CPU runs convolutions with loop-carried weights ~30x slower inside a scan: there a few fully unrolled
    # steps per call are fastest (and compile in seconds); on a GPU a long scan is.
    on_cpu = jax.default_backend() == "cpu"
    per_call = args.steps_per_call or preset.steps_per_call or (2 if on_cpu else 100)
    per_call = min(per_call, steps)
    train = TrainConfig(
        steps=steps, batch_size=flag("batch_size"), lr=flag("lr"),
        warmup_steps=min(flag("warmup_steps"), steps),
        final_lr_fraction=1.0, max_grad_norm=1.0, ema_decay=flag("ema_decay"),
        steps_per_call=per_call, checkpoint_every=about_ten_checkpoints(steps, per_call),
        progress=not args.no_progress, unroll=True if (args.unroll or on_cpu or preset.name == "quick") else 1,
    )
    classifier = ClassifierConfig(data.image_shape, data.num_classes, channels=preset.classifier_channels,
                                  hidden=preset.classifier_hidden, steps=flag("classifier_steps"))
    posterior_steps = flag("posterior_steps")
    posterior = None if posterior_steps == 0 else dataclasses.replace(classifier, steps=posterior_steps)
    n_times = flag("n_times")
    guided = flag("guided")
    # the preset's guidance training only with guidance (--cpu --no-guided is a label-embedding U-Net)
    guidance_training = args.guidance_training or (preset.guidance_training if guided else "joint")
    # the preset's Gaussian base was measured with its own label model, so it goes with it: --no-guided or another
    # --guidance-training under --cpu drops it unless --gaussian-base is given (0: off)
    if args.gaussian_base is not None:
        gaussian_base = args.gaussian_base or None
    else:
        same_model = guided == preset.guided and (not guided or guidance_training == preset.guidance_training)
        gaussian_base = preset.gaussian_base_for(args.dataset) if same_model else None
    sde = ImageExperiment.sde  # the experiment's process (the paper's beta_max = 16, T = 1)
    log_snr, s_min = training_times(args)
    # the estimates integrate over the times the networks were trained on
    if args.importance:
        times = ImportanceSampler(PiecewiseConstant.log_uniform(sde.T, s_min=s_min if log_snr else 1e-5),
                                  n_per_sample=n_times)
    else:
        times = LogSNRGrid(n_times=n_times, s_min=s_min * sde.T) if log_snr else UniformGrid(n_times=n_times)
    return ImageExperiment(
        unet=unet, train=train, classifier=classifier, times=times,
        weighting=args.weighting or ImageExperiment.weighting,
        time_sampler=LogSNRTime(s_min=s_min) if log_snr else UniformTime(),
        condition_dropout=args.label_dropout if args.label_dropout is not None else ImageExperiment.condition_dropout,
        n_eval=flag("n_eval"), chunk_size=flag("chunk_size"), cfg_weights=args.cfg_weights,
        per_class=flag("per_class"), sample_steps=flag("sample_steps"),
        dataset=args.dataset, data_dir=args.data_dir, pixel_range=args.pixel_range, n_train=args.n_train,
        checkpoint_dir=checkpoint_dir(args), resume=resume(args),
        # the bound classifier's architecture with the preset's noisy-classifier channels (or --guidance-channels),
        # noise-conditional; trained apart, for --guidance-steps
        guidance=None if not guided else dataclasses.replace(
            classifier, channels=tuple(args.guidance_channels or preset.noisy_classifier_channels),
            steps=classifier.steps if guidance_training == "joint" else flag("guidance_steps")),
        guidance_cross_entropy=(ImageExperiment.guidance_cross_entropy if args.guidance_cross_entropy is None
                                else args.guidance_cross_entropy), guidance_training=guidance_training,
        cross_fit=args.cross_fit, posterior=posterior,
        posterior_draws=args.posterior_draws,
        gaussian_base=gaussian_base,
    )


def prepare_images(args: argparse.Namespace) -> tuple[learned.ImageData, ImageExperiment]:
    """The data and the `ImageExperiment` that `separability images` with parsed `args` runs, without running it (the
    preset is checked before the data set loads)."""
    preset_of(args)
    data = load_image_data(args, QUICK)
    return data, build_experiment(args, data)


def _pixel_range(text: str) -> tuple[float, float]:
    values = float_list(text)
    if len(values) != 2 or not values[0] < values[1]:
        raise argparse.ArgumentTypeError(f"must be two numbers 'low,high' with low < high; got {text!r}")
    return values


NETWORK_FLAGS = (
    ("--channels", positive_int, "base channel count"),
    ("--channel-mult", int_list, "channel multipliers per level, e.g. 1,2,2"),
    ("--num-res-blocks", positive_int, "residual blocks per level"),
    ("--embed-dim", positive_int, "time/label embedding width"),
)


def _choice(*names: str):
    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(names)}; got {text!r}")
        return text
    parse.__name__ = "one of " + ", ".join(names)
    return parse


def _small_time(text: str) -> float:
    value = positive_float(text)
    if not value < 1e-2:
        raise argparse.ArgumentTypeError(f"must be a fraction of T in (0, 0.01); got {text!r}")
    return value


DEM_FLAGS = (
    ("--weighting", _choice("likelihood", "constant"),
     "DEM loss weighting: likelihood (beta/2, default) or constant (the paper's)"),
    ("--training-times", _choice("log-snr", "uniform"),
     "training times: uniform in log-SNR on [s_min T, T] (default) or uniform in s (the paper's)"),
    ("--train-s-min", _small_time, "with log-SNR times: the smallest training and estimation time, a fraction of T "
                             "(default 1e-4)"),
)
"""The DEM loss flags of every command that trains a diffusion network (`training_times` reads them)."""


def training_times(args: argparse.Namespace) -> tuple[bool, float]:
    """`(log_snr, s_min)` from `--training-times` and `--train-s-min` (defaults: `ImageExperiment.time_sampler`);
    `--train-s-min` given with `--training-times uniform` is refused (uniform times have no smallest time)."""
    log_snr = (args.training_times or "log-snr") == "log-snr"
    if not log_snr and args.train_s_min is not None:
        raise ValueError("--train-s-min applies only with --training-times log-snr (the default): --training-times "
                         "uniform draws s uniformly on [0, T], with no smallest time to set; leave --train-s-min out.")
    return log_snr, args.train_s_min if args.train_s_min is not None else ImageExperiment.time_sampler.s_min


TRAINING_FLAGS = (
    ("--label-dropout", probability, "label dropout: the fraction of steps trained on the null label (default 0.5; "
                                     "0.1 read I_MINDE 1.5 to 3 times H(Y) on digits)"),
    *DEM_FLAGS,
    ("--batch-size", positive_int, f"minibatch size ({preset_values('batch_size')})"),
    ("--lr", positive_float, f"peak learning rate ({preset_values('lr')})"),
    ("--warmup-steps", nonnegative_int, f"linear warm-up steps, 0 for none ({preset_values('warmup_steps')})"),
    ("--ema-decay", probability, f"EMA decay ({preset_values('ema_decay')})"),
)
"""The U-Net and training flags (flag, parser, help) that `separability labels` passes through to this command with
the same meaning, so that the network they configure is the one resumed from its checkpoint."""

class ImagesCommand:
    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_dataset(p, QUICK)
        add_output(p, "out/images", checkpoints=True)
        size = p.add_mutually_exclusive_group()
        size.add_argument("--quick", action="store_true",
                          help=f"CPU run on {QUICK} in about six minutes (tested in CI): two networks of "
                               f"{QUICK_STEPS} steps, 32 grid times, 200 evaluation images")
        size.add_argument("--cpu", action="store_true",
                          help=f"CPU run on {' or '.join(PRESETS['cpu'].datasets)} in about 30 minutes on 2 cores: "
                               f"one unconditional U-Net of {CPU_STEPS} steps and a noisy classifier on each half of "
                               "the images (--guided --guidance-training separate), 32 grid times, 200 evaluation "
                               "images (benchmarks/README.md)")
        add_seed(p, "initialisation, training and estimation")
        p.add_argument("--pixel-range", type=_pixel_range, default=(0.0, 1.0),
                       help="pixel scaling 'low,high' (0,1 as in the paper's code; or -1,1)")
        p.add_argument("--n-train", type=positive_int, default=None, help="use only the first N training images")
        g = p.add_argument_group("network (default: the data set's preset)")
        for flag, parse, text in NETWORK_FLAGS:
            g.add_argument(flag, type=parse, default=None, help=text)
        g.add_argument("--attention-resolutions", type=int_list, default=None, help="e.g. 16,8")
        g.add_argument("--num-heads", type=positive_int, default=None, help="attention heads")
        g.add_argument("--dropout", type=probability, default=None, help="dropout in the residual blocks")
        g.add_argument("--min-std", type=float, default=None, help="output scaling sigma_min (<= 0: none)")
        g.add_argument("--bf16", action="store_true", help="bfloat16 compute (parameters stay float32)")
        g.add_argument("--guided", action=argparse.BooleanOptionalAction, default=None,
                       help="learned.ClassifierGuided: an unconditional U-Net plus the input-gradient of a noisy "
                            "classifier (the bound classifier's architecture), trained by learned.GuidedLoss "
                            "(--no-guided: a label-embedding U-Net; " + preset_values("guided") + ")")
        g.add_argument("--guidance-cross-entropy", type=float, default=None,
                       help="with --guided --guidance-training joint: the weight of the noisy classifier's "
                            f"cross-entropy in the loss (default {ImageExperiment.guidance_cross_entropy:g})")
        g.add_argument("--guidance-training", type=_choice("joint", "separate"), default=None,
                       help="with --guided: joint (one learned.GuidedLoss per network) or separate (one unconditional "
                            "U-Net on all training images by the DEM loss; each network's noisy classifier by "
                            "cross-entropy alone on its own images, --guidance-steps steps) ("
                            + preset_values("guidance_training") + ")")
        g.add_argument("--guidance-steps", type=positive_int, default=None,
                       help="with --guided --guidance-training separate: steps of each noisy classifier ("
                            + preset_values("guidance_steps") + ")")
        g.add_argument("--guidance-channels", type=positive_int, nargs=2, default=None, metavar=("C1", "C2"),
                       help="with --guided: the noisy classifiers' channels ("
                            + preset_values("noisy_classifier_channels") + ")")
        g.add_argument("--gaussian-base", type=nonnegative_float, default=None, metavar="SNR",
                       help="learned.ClassGaussianBase: the U-Net learns the residual of a Gaussian model of each "
                            "class (fitted to its training images), gated on below signal-to-noise ratio SNR; with "
                            "--guided --guidance-training separate the noisy classifiers do; 0: off ("
                            + preset_values("gaussian_base_help")
                            + "; a preset's only with its --guided and --guidance-training)")
        g.add_argument("--cross-fit", action=argparse.BooleanOptionalAction, default=True,
                       help="train two networks on the two halves of the training images and add the cross-fitted "
                            "I_MINDE, free of the plug-in's upward bias by the fit's variance (default; twice the "
                            "training time)")
        g = p.add_argument_group("training (default: the preset of --quick, --cpu or the full run)")
        g.add_argument("--steps", type=positive_int, default=None, help=f"optimiser steps ({preset_values('steps')})")
        for flag, parse, text in TRAINING_FLAGS:
            g.add_argument(flag, type=parse, default=None, help=text)
        g.add_argument("--steps-per-call", type=positive_int, default=None,
                       help="optimiser steps per jitted call (default: 100 scanned on a GPU; 2 unrolled on a CPU; "
                            "--quick 5)")
        g.add_argument("--unroll", action="store_true",
                       help="fully unroll the steps of each call (the default on a CPU, where it is much faster)")
        g.add_argument("--data-parallel", action="store_true", help="split every batch over all jax.devices()")
        g.add_argument("--classifier-steps", type=positive_int, default=None,
                       help=f"steps of the bound classifier ({preset_values('classifier_steps')})")
        g.add_argument("--posterior-steps", type=nonnegative_int, default=None,
                       help="steps of a noise-conditional classifier (the bound classifier's architecture) that adds "
                            "the time-resolved bounds H(Y) - CE_s <= I(X_s;Y) <= H(Y) on every MINDE curve and the "
                            "posterior-centred cross-fit; 0: none "
                            f"({preset_values('posterior_steps')})")
        g.add_argument("--posterior-draws", type=positive_int, default=None, metavar="M",
                       help="centre each network on its outputs at M labels drawn from the noisy classifier's "
                            "posterior (unbiased; 1 + M calls per time instead of one per class); default: all labels")
        g = p.add_argument_group("estimation and samples")
        g.add_argument("--n-times", type=positive_int, default=None,
                       help=f"grid cells: uniform in log-SNR over the training times ({preset_values('n_times')}), or "
                            "uniform in s with --training-times uniform")
        g.add_argument("--importance", action="store_true",
                       help="log-uniform importance sampling in time instead of the grid (n-times draws per image)")
        g.add_argument("--n-eval", type=at_least_two, default=None,
                       help=f"evaluate on the first N test images ({preset_values('n_eval')})")
        g.add_argument("--chunk-size", type=positive_int, default=None,
                       help=f"images per compiled estimation call ({preset_values('chunk_size')})")
        g.add_argument("--cfg-weights", type=float_list, default=(0.0, 1.0, 3.0),
                       help="guidance weights of the sample grid")
        g.add_argument("--per-class", type=positive_int, default=None,
                       help=f"samples per class ({preset_values('per_class')})")
        g.add_argument("--sample-steps", type=positive_int, default=None,
                       help=f"Heun steps of the sampler ({preset_values('sample_steps')})")

    def run(self, args: argparse.Namespace) -> dict:
        start = time.perf_counter()
        data, experiment = prepare_images(args)
        preset = preset_of(args)
        parallel = learned.DataParallel.over() if args.data_parallel else None
        print(f"separability images --dataset {data.name} → {args.out}  ({describe_checkpoints(args)})")
        payload = EXPERIMENTS["images"].run(experiment, args.out, key=jax.random.key(args.seed), data=data,
                                            parallel=parallel, instance={"seed": args.seed, "quick": bool(args.quick),
                                                      "preset": preset.name})
        q = payload["quantities"]
        b = q["bounds"]
        out = Path(args.out)
        print(f"image report ({data.name}, {payload['instance']['parameters']:,} parameters) → {out}/results.json")
        print(f"  S_NN^X        = {q['neural_entropy']['value']:.2f} ± {q['neural_entropy']['stderr']:.2f} nats")
        print(f"  S_NN^(X|Y)    = {q['conditional_neural_entropy']['value']:.2f} ± "
              f"{q['conditional_neural_entropy']['stderr']:.2f} nats")
        for name in q["mutual_information"]:
            est = q["mutual_information"][name]
            print(f"  I(X;Y) {name:<14} = {est['value']:.3f} ± {est['stderr']:.3f} nats")
        print(f"  bounds: H(Y) - CE = {b['lower']['value']:.3f} ± {b['lower']['stderr']:.3f} <= I <= H(Y) = "
              f"{b['upper']['value']:.3f}  (classifier accuracy {b['lower']['classifier_accuracy']:.3f})")
        for flag in q["flags"]:
            print(f"  FLAG: {flag}")
        print(f"  figures: {', '.join(payload['figures'].values())}; wall time {time.perf_counter() - start:.1f} s")
        return payload
