"""Network evaluations for S_NN and I_MINDE of an image model: importance sampling in time vs the paper's grid.

The paper's protocol: a uniform grid of 500 times (midpoint rule on [0, T]) over the first 1,000 test images, i.e.
500,000 network evaluations for S_NN (and twice that for I_MINDE, whose integrand calls the conditional and the
unconditional model). Here the same trained network's S_NN (Eq. 11) and I_MINDE (Eq. 13) are also estimated by
importance sampling (`verify.ImportanceSampler`): each quantity's proposal is fitted to a cheap pilot (the first test
images on a geometric grid of cells from 1e-4 T; its cost is counted) mixed with a uniform floor, so the estimate is
unbiased over [0, T]; then each of the first `--n-is` test images draws `--per-sample` times from it.

The floor is a price as well as a safety net: a fraction phi of the draws spread uniformly over [0, T] adds a relative
variance of about phi / (1 - phi) wherever the rate is concentrated. S_NN's image rate is concentrated (on MNIST-5k
about 20,000 nats per unit time below s = 0.01 T and under 10 above 0.6 T) and its pilot is precise (about 2 % per image
and cell), so its pilot (`--entropy-pilot`) is 16 images on 96 cells with a floor of 0.01; I_MINDE's integrand is far
noisier per image, so its pilot (`--minde-pilot`) is 64 images on 24 cells with a floor of 0.1, which bounds f/q where
the pilot under-reads the rate.

The target is the stderr of the protocol at `--protocol-images` images (1,000). The grid is run on the first
`--n-images` of them; its stderr is a mean over independent images, so at the protocol's size it is
stderr * sqrt(n_images / protocol_images) (exact when `--n-images` is the protocol's; on a CPU a subsample keeps the
500-time grid affordable, and the JSON says so). The evaluations importance sampling needs for that stderr are
n_evals * (stderr / target)^2; the ratio protocol / IS is the saving (goal: >= 10x). The two values must also agree
within their stderrs plus the grid's discretisation bias (reported as a z-score).

The network: the first network of a `separability images` run, resumed from its checkpoint (`--images` are the
command's flags and `--run` its `--out`; the same flags and seed give the same checkpoint fingerprint, and a missing
checkpoint is trained first, as the command would). CPU (MNIST-5k at the 30-minute preset, the grid on 100 images):
    separability images --cpu --no-guided --dataset mnist5k --out out/mnist5k_cpu
    python benchmarks/bench_images_is.py --images "--cpu --no-guided --dataset mnist5k" \
        --run out/mnist5k_cpu --n-images 100
GPU (the protocol in full, on the full preset's network):
    python benchmarks/bench_images_is.py --images "--dataset fashion-mnist" --run out/fmnist --n-images 1000
Smoke (proves the script runs; numbers are not the goal): --smoke (writes results/images_is_cpu_smoke.json).
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from verify import (
    GeometricGrid,
    ImportanceSampler,
    PiecewiseConstant,
    UniformGrid,
    device,
    mutual_information_minde,
    neural_entropy,
    versions,
    write_json,
)
from verify.cli import build_parser, prepare_images
from verify.experiments import train_networks

RESULTS = pathlib.Path(__file__).parent / "results"


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.value)
    return out, time.perf_counter() - start


def compare(name, estimator, x, y, args, *, n_times, chunk_size, T, pilot_design, key):
    """Grid on the first `--n-images`, pilot, and importance sampling on the first `--n-is` images for one quantity."""
    k_grid, k_pilot, k_is = jax.random.split(key, 3)
    n_pilot, cells, floor = pilot_design
    grid, grid_s = _timed(lambda: estimator(x[: args.n_images], y[: args.n_images],
                                            times=UniformGrid(n_times=n_times), chunk_size=chunk_size, key=k_grid))
    pilot, pilot_s = _timed(lambda: estimator(x[:n_pilot], y[:n_pilot], times=GeometricGrid(cells, 1e-4 * T),
                                              chunk_size=chunk_size, key=k_pilot))
    proposal = PiecewiseConstant.fit(pilot.times, pilot.rate, T=T, floor=floor)
    chunk = chunk_size * max(1, n_times // args.per_sample)
    imp, imp_s = _timed(lambda: estimator(x[: args.n_is], y[: args.n_is],
                                          times=ImportanceSampler(proposal, n_per_sample=args.per_sample),
                                          chunk_size=chunk, key=k_is))
    scale = args.n_images / args.protocol_images
    target = grid.stderr * np.sqrt(scale)  # the protocol's stderr: a mean over independent images
    protocol_evals = grid.n_evals / scale
    is_needed = imp.n_evals * (imp.stderr / target) ** 2
    z = (grid.value - imp.value) / np.hypot(grid.stderr, imp.stderr)
    print(f"{name}: grid {grid} on {args.n_images} images ({grid.n_evals} evals, {grid_s:.0f} s); IS {imp} "
          f"({imp.n_evals} evals, {imp_s:.0f} s) + pilot {pilot.n_evals}; for the protocol's stderr {target:.4g}: "
          f"{protocol_evals:.0f} vs {is_needed:.0f} evals, ratio {protocol_evals / is_needed:.1f}x "
          f"({protocol_evals / (is_needed + pilot.n_evals):.1f}x with the pilot); z = {z:.2f}")
    return {
        "grid": {**grid.to_dict(), "n_images": args.n_images, "n_times": n_times, "wall_s": grid_s},
        "protocol": {"n_images": args.protocol_images, "n_times": n_times, "n_evals": protocol_evals,
                     "stderr": target, "measured": args.n_images == args.protocol_images,
                     "definition": "the grid's stderr scaled to protocol_images by sqrt(n_images / protocol_images)"},
        "pilot": {**pilot.to_dict(), "n_images": n_pilot, "n_times": cells, "wall_s": pilot_s},
        "importance": {**imp.to_dict(), "n_images": args.n_is, "per_sample": args.per_sample, "floor": floor,
                       "wall_s": imp_s, "evals_for_protocol_stderr": is_needed},
        "evals_ratio_protocol_over_is": protocol_evals / is_needed,
        "evals_ratio_including_pilot": protocol_evals / (is_needed + pilot.n_evals),
        "agreement_z": float(z),
    }


def _pilot(text: str) -> tuple[int, int, float]:
    try:
        images, cells, floor = text.split(",")
        design = int(images), int(cells), float(floor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'IMAGES,CELLS,FLOOR', e.g. 16,96,0.01; got {text!r}") from None
    if design[0] < 2 or design[1] < 1 or not 0 < design[2] <= 1:
        raise argparse.ArgumentTypeError(f"need IMAGES >= 2, CELLS >= 1 and 0 < FLOOR <= 1; got {text!r}")
    return design


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="--cpu --no-guided --dataset mnist5k",
                   help="the flags of the `separability images` run whose first network is measured")
    p.add_argument("--run", default=None, help="that run's --out (its checkpoints are resumed)")
    p.add_argument("--n-images", type=int, default=1000, help="grid: the first N test images (protocol: 1,000)")
    p.add_argument("--protocol-images", type=int, default=1000, help="images of the protocol whose stderr is the target")
    p.add_argument("--n-times", type=int, default=500, help="grid times (paper: 500)")
    p.add_argument("--n-is", type=int, default=1000, help="importance sampling: the first N test images")
    p.add_argument("--per-sample", type=int, default=1, help="importance sampling: times per image")
    p.add_argument("--entropy-pilot", type=_pilot, default=(16, 96, 0.01),
                   help="S_NN's pilot 'IMAGES,CELLS,FLOOR': test images, geometric cells, uniform floor (16,96,0.01)")
    p.add_argument("--minde-pilot", type=_pilot, default=(64, 24, 0.1), help="I_MINDE's pilot (64,24,0.1)")
    p.add_argument("--chunk-size", type=int, default=8, help="grid: images per compiled call")
    p.add_argument("--smoke", action="store_true", help="tiny CPU configuration that only proves the script runs")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    n_times = args.n_times
    if args.smoke:
        args.images, args.run = "--quick --steps 100 --no-cross-fit", args.run or tempfile.mkdtemp()
        args.n_images, args.protocol_images, n_times, args.n_is = 64, 64, 20, 200
        args.entropy_pilot, args.minde_pilot = (16, 24, 0.01), (16, 24, 0.1)
    if args.run is None:
        p.error("--run (the `separability images` output folder) is required")
    images = build_parser().parse_args(["images", *shlex.split(args.images), "--out", args.run, "--no-progress"])
    data, experiment = prepare_images(images)
    key = jax.random.key(images.seed)
    start = time.perf_counter()
    result, = train_networks(experiment, data, pathlib.Path(args.run) / experiment.checkpoint_dir, key=key,
                             first_only=True)
    train_s = time.perf_counter() - start
    model = result.ema_model
    n = max(args.n_images, args.n_is, args.entropy_pilot[0], args.minde_pilot[0])
    if n > len(data.test_x):
        p.error(f"{data.name} has {len(data.test_x)} test images; asked for {n}")
    x, y = jnp.asarray(data.test_x[:n]), jnp.asarray(data.test_y[:n])

    def entropy(x, y, **kw):
        return neural_entropy(model, x, **kw)

    def minde(x, y, **kw):
        return mutual_information_minde(model, x, y, **kw)

    k_s, k_i = jax.random.split(jax.random.fold_in(key, 7))
    quantities = {"neural_entropy": compare("S_NN", entropy, x, y, args, n_times=n_times,
                                            chunk_size=args.chunk_size, T=experiment.sde.T,
                                            pilot_design=args.entropy_pilot, key=k_s),
                  "minde": compare("I_MINDE", minde, x, y, args, n_times=n_times,
                                   chunk_size=max(1, args.chunk_size // 2), T=experiment.sde.T,
                                   pilot_design=args.minde_pilot, key=k_i)}
    payload = {
        "benchmark": "images_importance_sampling", "smoke": bool(args.smoke),
        "note": ("CPU smoke configuration: proves the script runs; NOT a measurement of the goal" if args.smoke else
                 "goal: >= 10x fewer network evaluations than the 1,000-image x 500-time grid for its stderr"),
        "dataset": data.name, "images_flags": args.images, "network": "first (a) network of the run, EMA weights",
        "train_steps": experiment.train.steps, "resume_or_train_s": train_s, "quantities": quantities,
        "device": device(), "versions": versions(),
    }
    name = "images_is_cpu_smoke" if args.smoke else f"images_is_{data.name.replace('-', '_')}"
    out = pathlib.Path(args.out) if args.out else RESULTS / f"{name}.json"
    write_json(out, payload)
    print(f"→ {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
