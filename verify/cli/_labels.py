"""`separability labels`: when the label is decided, H(Y|X_s) by two estimators beside an exact reference, per class
and under classifier-free guidance; on an exact mixture (`--mixture`) or a U-Net trained on images (`--dataset`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

import learned

from ..experiments import EXPERIMENTS, MIXTURES, ImageSource, LabelExperiment, MixtureSource
from ._common import (
    add_output,
    add_seed,
    at_least_two,
    float_list,
    load_image_data,
    positive_float,
    positive_int,
)
from ._images import NETWORK_FLAGS, QUICK, QUICK_STEPS, TRAINING_FLAGS, ImagesCommand, build_experiment

# (quick, full) estimation presets per kind of source; explicit flags override them
_MIXTURE_PRESETS = {
    False: dict(n_times=64, n_eval=10_000, n_trajectories=4000, n_per_class=2000, n_steps=400, n_reference=20_000,
                chunk_size=1000),
    True: dict(n_times=32, n_eval=1000, n_trajectories=600, n_per_class=300, n_steps=200, n_reference=2000,
               chunk_size=1000),
}
# n_trajectories = K * n_per_class where it can, so the unconditional and the per-class runs share one compiled scan.
# On images every online step evaluates the network K + 1 times per trajectory (each label's transition and the
# unconditional one), so the trajectories dominate the cost: n_steps * (n_trajectories + 3 n_per_class K) * (K + 1).
_IMAGE_PRESETS = {
    False: dict(n_times=48, n_eval=300, n_trajectories=100, n_per_class=10, n_steps=100, n_reference=1000,
                chunk_size=50),
    True: dict(n_times=24, n_eval=200, n_trajectories=50, n_per_class=5, n_steps=50, n_reference=200,
               chunk_size=50),
}
_IMAGE_STEPS = {False: 1000, True: None}
"""Training steps of the image network: --quick is `separability images --quick`'s network and steps (`None`: its
default); the default trains the same network for 1,000 steps."""


def _image_experiment(args: argparse.Namespace, data: learned.ImageData):
    """The `ImageExperiment` that `separability images` builds from the same flags (its presets, checkpoints)."""
    parser = argparse.ArgumentParser(add_help=False)
    ImagesCommand().add_arguments(parser)
    forwarded = ["--dataset", args.dataset, "--out", args.out, "--checkpoint-dir", args.checkpoint_dir,
                 "--seed", str(args.seed)]
    steps = args.steps or _IMAGE_STEPS[args.quick]
    if steps is not None:
        forwarded += ["--steps", str(steps)]
    if args.data_dir is not None:
        forwarded += ["--data-dir", args.data_dir]
    if args.n_train is not None:
        forwarded += ["--n-train", str(args.n_train)]
    # the quick network (channels 16, embed 64, 4 groups) for every data set on a CPU budget: `images --quick`'s
    forwarded += ["--quick"] if args.dataset == QUICK else ["--channels", "16", "--embed-dim", "64"]
    for flag, _, _ in _IMAGE_FLAGS:  # explicit network and training flags override (given later, argparse keeps them)
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            forwarded += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    for flag in ("no_checkpoints", "restart", "no_progress"):
        if getattr(args, flag):
            forwarded.append("--" + flag.replace("_", "-"))
    if not args.cross_fit:
        forwarded.append("--no-cross-fit")
    return build_experiment(parser.parse_args(forwarded), data)


_IMAGE_FLAGS = NETWORK_FLAGS + TRAINING_FLAGS
"""Flags passed through to `separability images` (same meaning there), so that a network trained there, or by
`separability budget`, with a non-default configuration is resumed from its checkpoint instead of retrained."""


class LabelsCommand:
    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        src = p.add_argument_group("source (one of)").add_mutually_exclusive_group()
        src.add_argument("--mixture", choices=tuple(MIXTURES), default=None,
                         help="an exact mixture: " + "; ".join(f"{n}: {s.description}" for n, s in MIXTURES.items()))
        src.add_argument("--dataset", choices=tuple(learned.DATASETS), default=None,
                         help="train (or reuse from --checkpoint-dir) the conditional U-Net of `separability images`")
        p.add_argument("--data-dir", default=None, help="where the data set's files are (see separability images)")
        p.add_argument("--n-train", type=positive_int, default=None, help="use only the first N training images")
        add_output(p, "out/labels", checkpoints=True)
        p.add_argument("--quick", action="store_true",
                       help=f"smoke run (tested in CI): with --dataset {QUICK} the two networks of `separability "
                            "images --quick` (resumed from their checkpoints when given the same --checkpoint-dir), "
                            "then about 3 minutes of measurement on 2 CPU cores; with --mixture seconds")
        add_seed(p, "training, data and estimation")
        g = p.add_argument_group("image network and training, with --dataset (default: `separability images --quick`'s "
                                 "network; these flags mean what they mean there)")
        for flag, parse, text in _IMAGE_FLAGS:
            g.add_argument(flag, type=parse, default=None, help=text)
        g = p.add_argument_group("estimation (default: the preset of the source; --quick: smaller)")
        g.add_argument("--steps", type=positive_int, default=None,
                       help=f"training steps of each image network (default {_IMAGE_STEPS[False]}; --quick "
                            f"{QUICK_STEPS}, as `separability images --quick`)")
        g.add_argument("--cross-fit", action=argparse.BooleanOptionalAction, default=True,
                       help="as `separability images`: a network on each half of the training images, and the I-MMSE "
                            "curves cross-fitted from the two (the first network's plug-in curve beside them); "
                            "--no-cross-fit: one network on all images, plug-in curves")
        g.add_argument("--n-times", type=at_least_two, default=None, help="I-MMSE grid times (uniform in log-SNR)")
        g.add_argument("--s-min", type=positive_float, default=1e-3, help="smallest grid time")
        g.add_argument("--n-eval", type=at_least_two, default=None, help="data pairs of the I-MMSE estimator")
        g.add_argument("--n-trajectories", type=at_least_two, default=None,
                       help="unconditional trajectories of the online classifier")
        g.add_argument("--n-per-class", type=at_least_two, default=None,
                       help="trajectories per class, per guidance weight")
        g.add_argument("--n-steps", type=at_least_two, default=None, help="Euler-Maruyama steps of the trajectories")
        g.add_argument("--cfg-weights", type=float_list, default=(0.0, 1.0, 3.0),
                       help="guidance weights, the first 0 (the baseline of the peak shift)")
        g.add_argument("--report-times", type=float_list, default=(0.01, 0.05, 0.1, 0.2, 0.5),
                       help="times of the summary table")
        g.add_argument("--n-reference", type=at_least_two, default=None, help="Monte Carlo samples of the reference")

    def run(self, args: argparse.Namespace) -> dict:
        start = time.perf_counter()
        if (args.mixture is None) == (args.dataset is None):
            raise ValueError("give one source: --mixture NAME (an exact model) or --dataset NAME (a trained U-Net).")
        data = None
        given = [flag for flag, _, _ in _IMAGE_FLAGS if getattr(args, flag[2:].replace("-", "_")) is not None]
        if args.mixture is not None and not args.cross_fit:
            given.append("--no-cross-fit")
        if args.mixture is not None and given:
            raise ValueError(f"{', '.join(given)} configure the image network of --dataset; an exact --mixture has "
                             "no network.")
        if args.mixture is not None:
            source = MixtureSource(args.mixture)
            preset = _MIXTURE_PRESETS[args.quick]
        else:
            data = load_image_data(args, QUICK)
            source = ImageSource(_image_experiment(args, data))
            preset = _IMAGE_PRESETS[args.quick]
        chosen = {name: getattr(args, name) if getattr(args, name) is not None else value
                  for name, value in preset.items() if name != "chunk_size"}
        config = LabelExperiment(source=source, s_min=args.s_min, cfg_weights=tuple(args.cfg_weights),
                                 report_times=tuple(args.report_times), chunk_size=preset["chunk_size"],
                                 progress=not args.no_progress, **chosen)
        what = f"--mixture {args.mixture}" if args.mixture else f"--dataset {args.dataset}"
        print(f"separability labels {what}{' --quick' if args.quick else ''} → {args.out}")
        payload = EXPERIMENTS["labels"].run(config, args.out, key=jax.random.key(args.seed), data=data,
                                            instance={"seed": args.seed, "quick": bool(args.quick)})
        _print(payload, Path(args.out), time.perf_counter() - start)
        return payload


def _print(payload: dict, out: Path, wall: float) -> None:
    q = payload["quantities"]
    print(f"H(Y) = {q['prior_entropy']:.4f} nats; reference: {payload['instance']['reference']}")
    pair = "immse_plugin" in q["report"][0]
    columns = {"immse": "I-MMSE cross-fit" if pair else "I-MMSE",
               **({"immse_plugin": "I-MMSE plug-in"} if pair else {}), "online": "online",
               "online_conditional": "online by class", "reference": "reference"}
    print(f"  {'s':>6}  " + "  ".join(f"{name:>17}" for name in columns.values()))
    for row in q["report"]:
        cells = [f"{row[k]['value']:7.4f} ± {row[k]['stderr']:.4f}" for k in columns]
        print(f"  {row['s']:>6g}  " + "  ".join(f"{c:>17}" for c in cells))
    pk = q["peaks"]
    print("  rate peak (s): " + ", ".join(f"{k} {pk[k]['time']:.3f} [{pk[k]['plausible'][0]:.3f}, "
                                          f"{pk[k]['plausible'][1]:.3f}]" for k in ("immse", "online", "reference")))
    print("  per-class peak (I-MMSE / online / reference): " + "; ".join(
        f"{c}: {v['immse']['time']:.3f}/{v['online']['time']:.3f}/{v['reference']['time']:.3f}"
        for c, v in pk["per_class"].items()))
    print("  CFG shift of the class-averaged entropy curve (rate peak / half-decision time): " + ", ".join(
        f"w={w:g}: {shift:+.3f} / {q['cfg_half_time_shift'][w]:+.3f}" for w, shift in q["cfg_peak_shift"].items()))
    if q["checks"] is not None:
        c = q["checks"]
        print(f"  exact checks: I-MMSE max |z| {c['immse_max_z']:.2f}, online max |z| {c['online_max_z']:.2f}, "
              f"online minus exact posterior on the same trajectories at most {c['online_gap_max_abs']:.4f} nats")
    for flag in q["flags"]:
        print(f"  FLAG: {flag}")
    print(f"  figures: {', '.join(payload['figures'].values())}; wall time {wall:.1f} s → {out}/results.json")
