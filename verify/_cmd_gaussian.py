"""`separability demo` and `separability gaussian`: learned estimates beside exact values on joint Gaussians."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from gaussian_oracle import JointGaussian

from ._figures import plot_curves
from ._gaussian import DEFAULT_TRAIN, GaussianExperimentConfig, run_instance, summary_lines
from ._report import provenance, write_json


def _config(args) -> GaussianExperimentConfig:
    train = dataclasses.replace(
        DEFAULT_TRAIN, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        checkpoint_every=max(DEFAULT_TRAIN.steps_per_call, args.steps // 10 // DEFAULT_TRAIN.steps_per_call * DEFAULT_TRAIN.steps_per_call),
        progress=not args.no_progress,
    )
    if args.steps % train.steps_per_call:
        raise ValueError(f"--steps must be a multiple of {train.steps_per_call}; got {args.steps}.")
    return GaussianExperimentConfig(
        n_train=args.n_train, n_eval=args.n_eval, width=args.width, depth=args.depth,
        separate_networks=not args.one_network, condition_dropout=args.condition_dropout, train=train,
        n_times=args.n_times, precondition=not args.plain,
    )


def _keys(seed: int):
    """The instance key is `jax.random.key(seed)` (anyone can rebuild the instance); training uses a fold of it."""
    base = jax.random.key(seed)
    return base, jax.random.fold_in(base, 1)


def _print(payload: dict, out: Path) -> None:
    inst = ", ".join(f"{k}={v}" for k, v in payload["instance"].items())
    print(f"\n{payload['experiment']} ({inst})  wall time {payload['wall_time_s']:.0f} s")
    for line in summary_lines(payload):
        print("  " + line)
    print(f"  → {out / 'results.json'}")


def _sweep_figure(points: list[dict], xs, xlabel: str, path: Path, *, log_x: bool) -> Path:
    def series(quantity, key):
        blocks = [p["quantities"][quantity] for p in points]
        return (np.array([b["exact"] for b in blocks]), np.array([b[key]["value"] for b in blocks]),
                np.array([b[key]["stderr"] for b in blocks]))

    panels = []
    for title, quantity, keys in (("$S^X$", "total_entropy", ("neural",)),
                                  ("$S^{X|Y}$", "conditional_total_entropy", ("neural",)),
                                  ("$I(X;Y)$", "mutual_information", ("minde", "difference"))):
        curves = []
        for i, key in enumerate(keys):
            exact, value, se = series(quantity, key)
            if i == 0:
                curves.append({"label": "exact", "y": exact, "exact": True, "color": "k"})
            curves.append({"label": key, "y": value, "stderr": se, "color": f"C{i}"})
        panels.append((title, "nats", curves))
    return plot_curves(xs, panels, path, xlabel=xlabel, log_x=log_x)


def run_demo(args) -> dict:
    """Determinism D_X=25, D_Y=15, sigma_eps=1: the learned numbers beside the exact ones."""
    instance_key, train_key = _keys(args.seed)
    joint = JointGaussian.determinism(args.dim_x, args.dim_y, args.sigma_eps, key=instance_key)
    instance = {"family": "determinism", "dim_x": args.dim_x, "dim_y": args.dim_y, "sigma_eps": args.sigma_eps,
                "seed": args.seed, "eps": 1e-3}
    out = Path(args.out)
    payload = run_instance(joint, instance, _config(args), out, experiment="demo", key=train_key)
    report = [f"separability demo: determinism D_X={args.dim_x}, D_Y={args.dim_y}, sigma_eps={args.sigma_eps}, seed={args.seed}",
              f"device {payload['device']}; wall time {payload['wall_time_s']:.0f} s", ""] + summary_lines(payload)
    (out / "report.txt").write_text("\n".join(report) + "\n")
    _print(payload, out)
    return payload


def run_gaussian(args) -> dict:
    start = time.perf_counter()
    out = Path(args.out)
    config = _config(args)
    instance_key, train_key = _keys(args.seed)
    points = []
    if args.experiment == "determinism":
        values, label, log_x = args.sigma_eps, "sigma_eps", False
        for sigma in values:
            joint = JointGaussian.determinism(args.dim_x, args.dim_y, sigma, key=instance_key)
            inst = {"family": "determinism", "dim_x": args.dim_x, "dim_y": args.dim_y, "sigma_eps": sigma,
                    "seed": args.seed, "eps": 1e-3}
            sub = out if len(values) == 1 else out / f"sigma_eps={sigma:g}"
            points.append(run_instance(joint, inst, config, sub, experiment="determinism", key=train_key))
            _print(points[-1], sub)
    elif args.experiment == "flattening":
        values, label, log_x = args.lambda_delta, "lambda_delta", True
        for lam in values:
            sigma = args.sigma_eps[0]
            joint = JointGaussian.flattening(args.dim_x, args.dim_y, args.k, lam, sigma, key=instance_key)
            inst = {"family": "flattening", "dim_x": args.dim_x, "dim_y": args.dim_y, "sigma_eps": sigma,
                    "seed": args.seed, "k": args.k, "lambda_delta": lam, "eps": 1e-6}
            sub = out if len(values) == 1 else out / f"lambda_delta={lam:g}"
            points.append(run_instance(joint, inst, config, sub, experiment="flattening", key=train_key))
            _print(points[-1], sub)
    else:  # cfg
        values, label, log_x = args.w, "w", False
        sigma = args.sigma_eps[0]
        joint = JointGaussian.determinism(args.dim_x, args.dim_y, sigma, key=instance_key)
        for w in values:
            def sampler(n, *, key, w=w):
                k_y, k_flow = jax.random.split(key)
                _, y = joint.sample(n, key=k_y)
                return joint.cfg_sample(y, w, key=k_flow), y

            exact = {"exact": joint.cfg_mutual_information(w), "exact_unguided": joint.mutual_information()}
            inst = {"family": "determinism", "dim_x": args.dim_x, "dim_y": args.dim_y, "sigma_eps": sigma,
                    "seed": args.seed, "eps": 1e-3, "w": w, "s_end": 1e-3}
            sub = out if len(values) == 1 else out / f"w={w:g}"
            points.append(run_instance(joint, inst, config, sub, experiment="cfg", sampler=sampler,
                                       exact_override=exact, key=train_key))
            _print(points[-1], sub)
    if len(points) > 1:
        summary = {
            "experiment": args.experiment, "parameter": label, "values": list(values),
            "points": [{"instance": p["instance"], "quantities": p["quantities"]} for p in points],
            **provenance(start),
        }
        if args.experiment != "cfg":
            _sweep_figure(points, np.asarray(values), label, out / "sweep.png", log_x=log_x)
        else:
            mi = [p["quantities"]["mutual_information"] for p in points]
            plot_curves(np.asarray(values), [("I(X_CFG; Y)", "nats", [
                {"label": "exact", "y": [m["exact"] for m in mi], "exact": True, "color": "k"},
                {"label": "MINDE", "y": [m["minde"]["value"] for m in mi], "stderr": [m["minde"]["stderr"] for m in mi]},
            ])], out / "sweep.png", xlabel="w")
        write_json(out / "summary.json", summary)
        print(f"\nsweep summary → {out / 'summary.json'}, figure → {out / 'sweep.png'}")
    return {"points": points}


def _common(p: argparse.ArgumentParser, *, dim_x: int, dim_y: int, steps: int) -> None:
    p.add_argument("--out", required=False, default=None, help="output directory")
    p.add_argument("--dim-x", type=int, default=dim_x)
    p.add_argument("--dim-y", type=int, default=dim_y)
    p.add_argument("--seed", type=int, default=0, help="instance = JointGaussian.<family>(..., key=jax.random.key(seed))")
    p.add_argument("--steps", type=int, default=steps, help="optimiser steps per network")
    p.add_argument("--batch-size", type=int, default=DEFAULT_TRAIN.batch_size)
    p.add_argument("--lr", type=float, default=DEFAULT_TRAIN.lr)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--n-train", type=int, default=200_000)
    p.add_argument("--n-eval", type=int, default=2_000)
    p.add_argument("--n-times", type=int, default=100, help="uniform time grid of the estimators (paper: 100)")
    p.add_argument("--one-network", action="store_true", help="one network with condition dropout instead of two")
    p.add_argument("--condition-dropout", type=float, default=0.2)
    p.add_argument("--plain", action="store_true",
                   help="plain MLPs as in the paper (default: covariance-preconditioned, see learned.Preconditioned)")
    p.add_argument("--no-progress", action="store_true")


def add_parser(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="main job: learned S_NN, I_MINDE, I_diff beside exact values (CPU, ~10 min)")
    _common(demo, dim_x=25, dim_y=15, steps=DEFAULT_TRAIN.steps)
    demo.add_argument("--sigma-eps", type=float, default=1.0)
    demo.set_defaults(func=run_demo, out_default="out/demo")

    g = subparsers.add_parser("gaussian", help="determinism / flattening / CFG sweeps, learned vs exact")
    g.add_argument("--experiment", choices=("determinism", "flattening", "cfg"), required=True)
    _common(g, dim_x=25, dim_y=15, steps=DEFAULT_TRAIN.steps)
    g.add_argument("--sigma-eps", type=float, nargs="+", default=[1.0, 0.6, 0.25],
                   help="noise std(s); a sweep for determinism, the first value otherwise")
    g.add_argument("--lambda-delta", type=float, nargs="+", default=[1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    g.add_argument("--k", type=int, default=10, help="flattening: number of large eigenvalues")
    g.add_argument("--w", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 6.0], help="CFG weights")
    g.set_defaults(func=run_gaussian, out_default="out/gaussian")
