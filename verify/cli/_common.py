"""Pieces every command shares: the seed, the output and checkpoint folders, the image data set, comma-separated
lists."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import learned


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default and keeps the description's line breaks."""


def _int_at_least(low: int, requirement: str):
    """An argparse type: an integer >= `low`, refused with `requirement` in the message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{requirement}; got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{requirement}; got {value}")
        return value

    return parse


positive_int = _int_at_least(1, "must be a positive integer")
at_least_two = _int_at_least(2, "must be at least 2 (a standard error needs two samples)")
nonnegative_int = _int_at_least(0, "must be an integer >= 0")


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text}")
    return value


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1); got {text}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers such as 1,2,2; got {text!r}") from None


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers such as 0,1,3; got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"must be finite numbers; got {text!r}")
    return values


def add_seed(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--seed", type=int, default=0, help=f"integer seed; {what} uses jax.random.key(seed)")


def add_output(p: argparse.ArgumentParser, default: str, *, checkpoints: bool) -> None:
    p.add_argument("--out", default=default, help="output folder for results.json and the figures")
    if checkpoints:
        p.add_argument("--checkpoint-dir", default="checkpoints",
                       help="where training checkpoints go, relative to --out (or an absolute path). A checkpoint "
                            "records the configuration, data and key it was trained with: a matching one is resumed, "
                            "a different one is refused with an error")
        p.add_argument("--no-checkpoints", action="store_true", help="train without writing checkpoints")
        p.add_argument("--restart", action="store_true",
                       help="discard the checkpoints already in the checkpoint folder and train afresh")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def about_ten_checkpoints(steps: int, per_call: int) -> int:
    """`checkpoint_every` for about ten checkpoints per run (a multiple of `per_call`), so an interrupted run loses
    at most about a tenth of its work."""
    return per_call * max(1, -(-steps // per_call) // 10)


def checkpoint_dir(args: argparse.Namespace) -> str | None:
    return None if args.no_checkpoints else args.checkpoint_dir


def resume(args: argparse.Namespace) -> str:
    return "overwrite" if args.restart else "auto"


def describe_checkpoints(args: argparse.Namespace) -> str:
    if args.no_checkpoints:
        return "checkpoints: none (--no-checkpoints)"
    return f"checkpoints: {Path(args.out) / args.checkpoint_dir}"


def add_dataset(p: argparse.ArgumentParser, default: str | None) -> None:
    """`--dataset` (any name of `learned.DATASETS`) and `--data-dir`."""
    p.add_argument("--dataset", choices=tuple(learned.DATASETS), default=default,
                   help="the data set: " + "; ".join(f"{n}: {s.description}" for n, s in learned.DATASETS.items()))
    p.add_argument("--data-dir", default=None,
                   help="where the data set's files are: " + "; ".join(
                       f"{n}: {s.data_dir_help}" for n, s in learned.DATASETS.items() if s.data_dir_help))


def load_image_data(args: argparse.Namespace, quick_dataset: str) -> learned.ImageData:
    """The data set of `--dataset` (its first `--n-train` training images), after the one check of each rule:
    `--quick` runs on `quick_dataset` only, a data set whose files are not bundled needs `--data-dir`, and an
    `--n-train` or `--n-eval` (the first N test images) given is at most the images the data set has (refused, not
    capped)."""
    if getattr(args, "quick", False) and args.dataset != quick_dataset:
        raise ValueError(f"--quick runs on --dataset {quick_dataset} only (the CPU smoke configuration).")
    spec = learned.DATASETS[args.dataset]
    if spec.needs_dir and args.data_dir is None:
        raise ValueError(f"--dataset {args.dataset} needs --data-dir: {spec.data_dir_help}.")
    data = learned.load_dataset(args.dataset, args.data_dir, pixel_range=getattr(args, "pixel_range", (0.0, 1.0)))
    limits = (("--n-train", len(data.train_x), "training images (leave --n-train out for all of them)"),
              ("--n-eval", len(data.test_x), "held-out (test) images"))
    for flag, have, what in limits:
        n = getattr(args, flag[2:].replace("-", "_"), None)
        if n is not None and n > have:
            raise ValueError(f"{flag} {n} is more than --dataset {args.dataset} has: give at most its {have} {what}.")
    return data if getattr(args, "n_train", None) is None else data.subset(n_train=args.n_train)
