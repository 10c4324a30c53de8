"""`separability images`: train a conditional U-Net on an image dataset; S_NN, I(X;Y) with bounds, rate curves, samples."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import learned
from learned import ClassifierConfig, TrainConfig, UNetConfig

from ._images import ImageExperiment, run_image_experiment
from ._time import ImportanceSampler, PiecewiseConstant, UniformGrid

DATASETS = ("digits", "mnist5k", "fashion-mnist", "mnist", "cifar10", "tiny-imagenet")
_NEEDS_DIR = ("mnist", "cifar10", "tiny-imagenet")


def load_dataset(name: str, data_dir: str | None, pixel_range: tuple[float, float]) -> learned.ImageData:
    """The CLI's one string-to-loader map."""
    if name in _NEEDS_DIR and data_dir is None:
        raise ValueError(f"--dataset {name} needs --data-dir (the directory holding the {name} files).")
    if name == "digits":
        return learned.load_digits(pixel_range=pixel_range)
    if name == "mnist5k":
        return learned.load_mnist5k(path=data_dir, pixel_range=pixel_range)
    if name == "fashion-mnist":
        return learned.load_fashion_mnist(data_dir or learned._datasets.FASHION_MNIST_DIR, pixel_range=pixel_range)
    if name == "mnist":
        return learned.load_mnist(data_dir, pixel_range=pixel_range)
    if name == "cifar10":
        return learned.load_cifar10(data_dir, pixel_range=pixel_range)
    return learned.load_tiny_imagenet(data_dir, pixel_range=pixel_range)


def _preset(name: str, image_shape, num_classes: int) -> UNetConfig:
    if name == "digits":
        return UNetConfig.digits_tiny(num_classes=num_classes)
    if name == "cifar10":
        return UNetConfig.cifar10_reference(num_classes=num_classes)
    if name == "tiny-imagenet":
        return UNetConfig.cifar10_reference(image_shape=image_shape, num_classes=num_classes, channel_mult=(1, 1, 2, 2))
    return UNetConfig.mnist_small(image_shape=image_shape, num_classes=num_classes)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def build_experiment(args: argparse.Namespace, data: learned.ImageData) -> ImageExperiment:
    """Turn parsed arguments into an `ImageExperiment` (the `--quick` settings first, explicit flags override)."""
    unet = _preset(args.dataset, data.image_shape, data.num_classes)
    quick = args.quick
    overrides = {}
    if quick:
        overrides.update(channels=16, embed_dim=64, num_groups=4)
    for flag, field in (("channels", "channels"), ("embed_dim", "embed_dim"), ("num_res_blocks", "num_res_blocks"),
                        ("dropout", "dropout"), ("num_heads", "num_heads")):
        if getattr(args, flag) is not None:
            overrides[field] = getattr(args, flag)
    if args.channel_mult is not None:
        overrides["channel_mult"] = _ints(args.channel_mult)
    if args.attention_resolutions is not None:
        overrides["attention_resolutions"] = _ints(args.attention_resolutions)
    if args.min_std is not None:
        overrides["min_std"] = None if args.min_std <= 0 else args.min_std
    if args.bf16:
        overrides["compute_dtype"] = jnp.bfloat16
    unet = dataclasses.replace(unet, **overrides)

    steps = args.steps if args.steps is not None else (500 if quick else 20_000)
    per_call = args.steps_per_call if args.steps_per_call is not None else (5 if quick else 100)
    per_call = min(per_call, steps)
    train = TrainConfig(
        steps=steps, batch_size=args.batch_size if args.batch_size is not None else (64 if quick else 128),
        lr=args.lr if args.lr is not None else (1e-3 if quick else 2e-4),
        warmup_steps=min(args.warmup_steps if args.warmup_steps is not None else (50 if quick else 500), steps),
        final_lr_fraction=0.1 if quick else 1.0, max_grad_norm=1.0,
        ema_decay=args.ema_decay if args.ema_decay is not None else (0.99 if quick else 0.999),
        steps_per_call=per_call, checkpoint_every=per_call * max(1, 1000 // per_call),
        progress=not args.no_progress, unroll=True if (args.unroll or quick) else 1,
    )
    classifier = ClassifierConfig(
        data.image_shape, data.num_classes, channels=(16, 32) if quick else (32, 64), hidden=64 if quick else 128,
        steps=args.classifier_steps if args.classifier_steps is not None else (300 if quick else 3000))
    n_times = args.n_times if args.n_times is not None else (32 if quick else 500)
    if args.importance:
        times = ImportanceSampler(PiecewiseConstant.log_uniform(ImageExperiment.sde.T), n_per_sample=n_times)
    else:
        times = UniformGrid(n_times=n_times)
    return ImageExperiment(
        unet=unet, train=train, classifier=classifier, times=times,
        n_eval=args.n_eval if args.n_eval is not None else (200 if quick else 1000),
        chunk_size=args.chunk_size if args.chunk_size is not None else (32 if quick else 8),
        cfg_weights=_floats(args.cfg_weights), per_class=args.per_class if args.per_class is not None else (2 if quick else 4),
        sample_steps=args.sample_steps if args.sample_steps is not None else (16 if quick else 100),
    )


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    if args.quick and args.dataset != "digits":
        raise ValueError("--quick runs on --dataset digits only (the CPU smoke configuration).")
    pixel_range = _floats(args.pixel_range)
    if len(pixel_range) != 2:
        raise ValueError(f"--pixel-range must be two numbers 'low,high'; got {args.pixel_range!r}.")
    data = load_dataset(args.dataset, args.data_dir, pixel_range)
    if args.n_train is not None:
        data = data.subset(n_train=args.n_train)
    experiment = build_experiment(args, data)
    parallel = learned.DataParallel.over() if args.data_parallel else None
    payload = run_image_experiment(
        data, experiment, args.out, checkpoint_dir=args.checkpoint_dir, parallel=parallel,
        instance={"seed": args.seed, "quick": bool(args.quick)}, key=jax.random.key(args.seed))
    q = payload["quantities"]
    b = q["bounds"]
    out = Path(args.out)
    print(f"image report ({data.name}, {payload['instance']['parameters']:,} parameters) → {out}/results.json")
    print(f"  S_NN^X        = {q['neural_entropy']['value']:.2f} ± {q['neural_entropy']['stderr']:.2f} nats")
    print(f"  S_NN^(X|Y)    = {q['conditional_neural_entropy']['value']:.2f} ± {q['conditional_neural_entropy']['stderr']:.2f} nats")
    for name in ("minde", "difference"):
        est = q["mutual_information"][name]
        print(f"  I(X;Y) {name:<10} = {est['value']:.3f} ± {est['stderr']:.3f} nats")
    print(f"  bounds: H(Y) - CE = {b['lower']['value']:.3f} ± {b['lower']['stderr']:.3f} <= I <= H(Y) = {b['upper']['value']:.3f}"
          f"  (classifier accuracy {b['lower']['classifier_accuracy']:.3f})")
    for flag in q["flags"]:
        print(f"  FLAG: {flag}")
    print(f"  figures: {', '.join(payload['figures'].values())}; wall time {time.perf_counter() - start:.1f} s")
    return payload


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("images", help="conditional U-Net on images: S_NN, I(X;Y) with bounds, rates, CFG samples")
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--data-dir", default=None, help="directory of the dataset files (mnist, cifar10, tiny-imagenet; "
                   "optional for fashion-mnist, default /usr/share/datasets/fashion-mnist; for mnist5k the CSV path)")
    p.add_argument("--out", default="out/images", help="output directory (default: out/images)")
    p.add_argument("--quick", action="store_true", help="CPU smoke run on digits in a few minutes (tested in CI)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pixel-range", default="0,1", help="pixel scaling 'low,high' (default 0,1 as in the paper's code; or -1,1)")
    p.add_argument("--n-train", type=int, default=None, help="use only the first N training images")
    g = p.add_argument_group("network (defaults: the dataset's preset)")
    g.add_argument("--channels", type=int, default=None)
    g.add_argument("--channel-mult", default=None, help="e.g. 1,2,2")
    g.add_argument("--num-res-blocks", type=int, default=None)
    g.add_argument("--attention-resolutions", default=None, help="e.g. 16,8")
    g.add_argument("--embed-dim", type=int, default=None)
    g.add_argument("--num-heads", type=int, default=None)
    g.add_argument("--dropout", type=float, default=None)
    g.add_argument("--min-std", type=float, default=None, help="output scaling sigma_min (<= 0: none)")
    g.add_argument("--bf16", action="store_true", help="bfloat16 compute (parameters stay float32)")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--warmup-steps", type=int, default=None)
    g.add_argument("--ema-decay", type=float, default=None)
    g.add_argument("--steps-per-call", type=int, default=None)
    g.add_argument("--unroll", action="store_true", help="fully unroll the scanned steps (fast on CPU)")
    g.add_argument("--checkpoint-dir", default=None, help="checkpoint and resume the U-Net's training here")
    g.add_argument("--data-parallel", action="store_true", help="split every batch over all jax.devices()")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--classifier-steps", type=int, default=None)
    g = p.add_argument_group("estimation and samples")
    g.add_argument("--n-times", type=int, default=None, help="grid times (default 500; --quick 40)")
    g.add_argument("--importance", action="store_true", help="log-uniform importance sampling in time instead of the grid")
    g.add_argument("--n-eval", type=int, default=None, help="evaluate on the first N test images (default 1000)")
    g.add_argument("--chunk-size", type=int, default=None)
    g.add_argument("--cfg-weights", default="0,1,3")
    g.add_argument("--per-class", type=int, default=None)
    g.add_argument("--sample-steps", type=int, default=None)
    p.set_defaults(func=run)
