"""Network evaluations for S_NN of an image model to a target stderr: importance sampling in time vs the paper's grid.

The paper's protocol: a uniform grid of 500 times (midpoint rule on [0, T]) over the first 1,000 test images, i.e.
500,000 network evaluations. Here the same trained network's S_NN (Eq. 11) is also estimated by importance sampling
(`verify.ImportanceSampler`) with a proposal fitted to a cheap pilot (64 images on a 24-cell geometric grid; its cost
is counted) and a uniform floor of 0.1, so the estimate is unbiased over [0, T]. Evaluations needed for a target
stderr tau scale as n_evals * (stderr / tau)^2; the ratio grid / IS is the saving (goal: >= 10x). The two values
must also agree within their stderrs plus the grid's discretisation bias (reported as a z-score).

The network: an `EntropyUNet` trained here (or resumed from `--checkpoint-dir`) on `--dataset` with the CLI's
presets. GPU:
    python benchmarks/bench_images_is.py --dataset fashion-mnist --steps 20000 --checkpoint-dir ckpt/fmnist
CPU smoke (proves the script runs; numbers are not the goal):
    python benchmarks/bench_images_is.py --smoke      (writes benchmarks/results/images_is_cpu_smoke.json)
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import learned
from gaussian_oracle import VPSDE
from verify import GeometricGrid, ImportanceSampler, PiecewiseConstant, UniformGrid, neural_entropy
from verify import device, versions, write_json

RESULTS = pathlib.Path(__file__).parent / "results"


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.value)
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--n-images", type=int, default=1000, help="grid: the first N test images (paper: 1,000)")
    p.add_argument("--n-times", type=int, default=500, help="grid times (paper: 500)")
    p.add_argument("--n-is", type=int, default=10_000, help="importance sampling: data draws (test images, cycled)")
    p.add_argument("--per-sample", type=int, default=1, help="importance sampling: times per data draw")
    p.add_argument("--n-pilot", type=int, default=64)
    p.add_argument("--target", type=float, default=1.0, help="target stderr in nats")
    p.add_argument("--chunk-size", type=int, default=8)
    p.add_argument("--smoke", action="store_true", help="tiny CPU configuration that only proves the script runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.smoke:
        args.dataset, args.steps, args.batch_size, args.lr = "digits", 100, 32, 1e-3
        args.n_images, args.n_times, args.n_is, args.n_pilot, args.chunk_size = 64, 20, 512, 16, 32

    keys = iter(jax.random.split(jax.random.key(args.seed), 8))
    data = learned.load_dataset(args.dataset, args.data_dir, pixel_range=(0.0, 1.0))
    unet = learned.DATASETS[args.dataset].unet_preset(data.num_classes)
    if args.smoke:
        unet = dataclasses.replace(unet, channels=16, embed_dim=64, num_groups=4)
    if args.bf16:
        unet = dataclasses.replace(unet, compute_dtype=jnp.bfloat16)
    sde = VPSDE(0.1, 16.0, 1.0)
    per_call = min(args.steps, 5 if args.smoke else 100)
    config = learned.TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=min(500, args.steps // 10),
                                 max_grad_norm=1.0, steps_per_call=per_call, checkpoint_every=per_call * max(1, 1000 // per_call),
                                 progress=not args.smoke, unroll=True if args.smoke else 1)
    start = time.perf_counter()
    trained = learned.train(learned.EntropyUNet(unet, sde, key=next(keys)), data.train_x, data.train_y, config=config,
                            loss=learned.DEMLoss(condition_dropout=0.1), checkpoint_dir=args.checkpoint_dir, key=next(keys))
    train_s = time.perf_counter() - start
    model = trained.ema_model
    x = jnp.asarray(data.test_x)
    x_grid = x[: args.n_images]
    x_is = x[np.arange(args.n_is) % x.shape[0]]

    grid, grid_s = _timed(lambda: neural_entropy(model, x_grid, times=UniformGrid(n_times=args.n_times),
                                                chunk_size=args.chunk_size, key=next(keys)))
    pilot, pilot_s = _timed(lambda: neural_entropy(model, x[: args.n_pilot], times=GeometricGrid(24, 1e-4),
                                                  chunk_size=args.chunk_size, key=next(keys)))
    proposal = PiecewiseConstant.fit(pilot.times, pilot.rate, T=sde.T, floor=0.1)
    sampler = ImportanceSampler(proposal, n_per_sample=args.per_sample)
    chunk = args.chunk_size * max(1, args.n_times // args.per_sample)
    imp, imp_s = _timed(lambda: neural_entropy(model, x_is, times=sampler, chunk_size=chunk, key=next(keys)))

    def needed(est):
        return est.n_evals * (est.stderr / args.target) ** 2

    ratio = needed(grid) / needed(imp)
    ratio_with_pilot = needed(grid) / (needed(imp) + pilot.n_evals)
    z = (grid.value - imp.value) / np.hypot(grid.stderr, imp.stderr)
    payload = {
        "benchmark": "images_importance_sampling", "smoke": bool(args.smoke),
        "note": ("CPU smoke configuration: proves the script runs; NOT a measurement of the GPU goal"
                 if args.smoke else "goal: >= 10x fewer network evaluations than the 1,000 x 500 uniform grid"),
        "dataset": data.name, "train_steps": args.steps, "train_s": train_s,
        "final_loss": float(np.mean(trained.losses[-max(1, len(trained.losses) // 10):])),
        "target_stderr_nats": args.target,
        "grid": {**grid.to_dict(), "n_images": args.n_images, "n_times": args.n_times, "wall_s": grid_s,
                 "evals_for_target": needed(grid)},
        "pilot": {**pilot.to_dict(), "n_images": args.n_pilot, "wall_s": pilot_s},
        "importance": {**imp.to_dict(), "n_draws": args.n_is, "per_sample": args.per_sample, "floor": 0.1,
                       "wall_s": imp_s, "evals_for_target": needed(imp)},
        "evals_ratio_grid_over_is": ratio, "evals_ratio_including_pilot": ratio_with_pilot,
        "agreement_z": float(z),
        "device": device(), "versions": versions(),
    }
    name = "images_is_cpu_smoke" if args.smoke else f"images_is_{data.name.replace('-', '_')}"
    out = pathlib.Path(args.out) if args.out else RESULTS / f"{name}.json"
    write_json(out, payload)
    print(f"S_NN grid {grid} ({grid.n_evals} evals), IS {imp} ({imp.n_evals} evals + pilot {pilot.n_evals}); "
          f"evals for stderr {args.target}: ratio {ratio:.1f}x ({ratio_with_pilot:.1f}x with pilot); z = {z:.2f}")
    print(f"→ {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
