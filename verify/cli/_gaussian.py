"""`separability demo` and `separability gaussian`: learned estimates beside exact values on joint Gaussians."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax

from ..experiments import DEFAULT_TRAIN, GAUSSIAN_FAMILIES, DemoConfig, GaussianExperimentConfig, SweepConfig, \
    run_demo, run_sweep, summary_lines
from ._common import (
    add_output,
    at_least_two,
    add_seed,
    checkpoint_dir,
    describe_checkpoints,
    finite_float,
    positive_float,
    positive_int,
    probability,
    resume,
)


def _steps_per_call(steps: int, most: int) -> int:
    """The largest divisor of `steps` not above `most`: every jitted call then scans the same number of steps."""
    return max(d for d in range(1, min(steps, most) + 1) if steps % d == 0)


def fit_config(args: argparse.Namespace) -> GaussianExperimentConfig:
    """The fitting configuration from the shared training flags (`--condition-dropout` only with `--one-network`)."""
    if args.condition_dropout is not None and not args.one_network:
        raise ValueError("--condition-dropout applies only with --one-network (one network trained with condition "
                         "dropout); the default trains two networks, X|Y and X, without it: add --one-network, or "
                         "leave --condition-dropout out.")
    per_call = _steps_per_call(args.steps, DEFAULT_TRAIN.steps_per_call)
    calls = args.steps // per_call
    train = dataclasses.replace(
        DEFAULT_TRAIN, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        warmup_steps=min(DEFAULT_TRAIN.warmup_steps, args.steps // 4),
        steps_per_call=per_call, checkpoint_every=per_call * max(1, calls // 10), progress=not args.no_progress,
    )
    return GaussianExperimentConfig(
        n_train=args.n_train, n_eval=args.n_eval, width=args.width, depth=args.depth,
        separate_networks=not args.one_network, train=train,
        condition_dropout=(GaussianExperimentConfig.condition_dropout if args.condition_dropout is None
                           else args.condition_dropout),
        n_times=args.n_times, precondition=not args.plain,
    )


def _print(payload: dict, out: Path) -> None:
    inst = ", ".join(f"{k}={v}" for k, v in payload["instance"].items())
    print(f"\n{payload['experiment']} ({inst})  wall time {payload['wall_time_s']:.0f} s")
    for line in summary_lines(payload):
        print("  " + line)
    print(f"  → {out / 'results.json'}")


def _add_fit(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training and estimation")
    g.add_argument("--steps", type=positive_int, default=DEFAULT_TRAIN.steps,
                   help="optimiser steps per network (any positive number; steps are scanned in equal jitted calls "
                        f"of at most {DEFAULT_TRAIN.steps_per_call})")
    g.add_argument("--batch-size", type=positive_int, default=DEFAULT_TRAIN.batch_size, help="minibatch size")
    g.add_argument("--lr", type=positive_float, default=DEFAULT_TRAIN.lr, help="peak Adam learning rate")
    g.add_argument("--width", type=positive_int, default=256, help="MLP hidden width")
    g.add_argument("--depth", type=positive_int, default=3, help="MLP residual blocks")
    g.add_argument("--n-train", type=positive_int, default=200_000, help="training pairs drawn from the instance")
    g.add_argument("--n-eval", type=at_least_two, default=2_000, help="fresh pairs the estimators average over (at least 2)")
    g.add_argument("--n-times", type=positive_int, default=100,
                   help="uniform time grid of the estimators (paper: 100); a log-spaced grid of twice as many times "
                        "is reported beside it")
    g.add_argument("--one-network", action="store_true", help="one network with condition dropout instead of two")
    g.add_argument("--condition-dropout", type=probability, default=None,
                   help=f"condition dropout of --one-network (default {GaussianExperimentConfig.condition_dropout:g})")
    g.add_argument("--plain", action="store_true",
                   help="plain MLPs as in the paper (default: covariance-preconditioned, see learned.Preconditioned)")


_FAMILY_OPTIONS = ("sigma_eps", "lambda_delta", "k", "w")
"""The `separability gaussian` flags (by field name) that only some of `GAUSSIAN_FAMILIES` take."""


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _field_default(cls, name: str):
    return next((f.default for f in dataclasses.fields(cls) if f.name == name), None)


def _defaults(family: str, name: str) -> str:
    """A family's default of one option, as the flag takes it ('1 0.6 0.25'), for the help."""
    value = _field_default(GAUSSIAN_FAMILIES[family], name)
    return " ".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"


class DemoCommand:
    """`separability demo`: the main job."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_output(p, "out/demo", checkpoints=True)
        add_seed(p, "the instance JointGaussian.determinism(..., key=...)")
        p.add_argument("--dim-x", type=positive_int, default=25, help="dimension of X")
        p.add_argument("--dim-y", type=positive_int, default=15, help="dimension of Y")
        p.add_argument("--sigma-eps", type=positive_float, default=1.0, help="noise std of Y = AX + eps")
        _add_fit(p)

    def run(self, args: argparse.Namespace) -> dict:
        config = DemoConfig(args.dim_x, args.dim_y, args.sigma_eps, fit_config(args), checkpoint_dir(args), resume(args))
        print(f"separability demo → {args.out}  ({describe_checkpoints(args)})")
        payload = run_demo(config, args.out, key=jax.random.key(args.seed), instance={"seed": args.seed})
        _print(payload, Path(args.out))
        return payload


class GaussianCommand:
    """`separability gaussian --experiment NAME`: one of `GAUSSIAN_FAMILIES`."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--experiment", choices=tuple(GAUSSIAN_FAMILIES), required=True,
                       help="the sweep: " + "; ".join(f"{name}: {(family.__doc__ or '').splitlines()[0]}"
                                                      for name, family in GAUSSIAN_FAMILIES.items()))
        add_output(p, "out/gaussian", checkpoints=True)
        add_seed(p, "the instances JointGaussian.<family>(..., key=...)")
        p.add_argument("--dim-x", type=positive_int, default=25, help="dimension of X")
        p.add_argument("--dim-y", type=positive_int, default=15, help="dimension of Y")
        p.add_argument("--sigma-eps", type=positive_float, nargs="+", default=None,
                       help="noise std(s): determinism's swept values (default "
                            f"{_defaults('determinism', 'sigma_eps')}); one value for flattening and cfg (default "
                            f"{_defaults('flattening', 'sigma_eps')})")
        p.add_argument("--lambda-delta", type=positive_float, nargs="+", default=None,
                       help=f"flattening only: the swept small eigenvalues (default "
                            f"{_defaults('flattening', 'lambda_delta')})")
        p.add_argument("--k", type=positive_int, default=None,
                       help=f"flattening only: number of large eigenvalues (default {_defaults('flattening', 'k')})")
        p.add_argument("--w", type=finite_float, nargs="+", default=None,
                       help=f"cfg only: the swept guidance weights (default {_defaults('cfg', 'w')})")
        _add_fit(p)

    def family(self, args: argparse.Namespace):
        """The family of `--experiment` with the flags given; a flag it does not use (another family's), or more
        values of a list flag than it uses, is refused with one error, not dropped."""
        cls = GAUSSIAN_FAMILIES[args.experiment]
        options = {"dim_x": args.dim_x, "dim_y": args.dim_y}
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for name in _FAMILY_OPTIONS:
            value, flag = getattr(args, name), "--" + name.replace("_", "-")
            if value is None:  # not given: the family's default
                continue
            if name not in defaults:
                users = " or ".join(n for n, c in GAUSSIAN_FAMILIES.items() if name in _field_names(c))
                raise ValueError(f"{flag} applies only to --experiment {users}; --experiment {args.experiment} does "
                                 f"not use it: leave it out.")
            if isinstance(defaults[name], tuple):  # the swept parameter: all values
                options[name] = tuple(value)
            elif isinstance(value, list):  # a list flag the family takes one value of
                if len(value) != 1:
                    sweeps = " or ".join(n for n, c in GAUSSIAN_FAMILIES.items()
                                         if isinstance(_field_default(c, name), tuple))
                    raise ValueError(f"--experiment {args.experiment} uses one {flag} value; got {len(value)} "
                                     f"({' '.join(f'{v:g}' for v in value)}). Only --experiment {sweeps} sweeps "
                                     f"{flag}.")
                options[name] = value[0]
            else:
                options[name] = value
        return cls(**options)

    def run(self, args: argparse.Namespace) -> dict:
        config = SweepConfig(self.family(args), fit_config(args), checkpoint_dir(args), resume(args))
        print(f"separability gaussian --experiment {args.experiment} → {args.out}  ({describe_checkpoints(args)})")
        result = run_sweep(config, args.out, key=jax.random.key(args.seed), instance={"seed": args.seed},
                           on_point=_print)
        if "summary" in result:
            print(f"\nsweep summary → {Path(args.out) / 'summary.json'}, figure → {Path(args.out) / 'sweep.png'}")
        return result
