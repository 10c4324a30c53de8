"""How much of a neural-entropy "failure" is the time grid? Re-measure saved flattening networks.

The paper's reference protocol integrates S_NN on a uniform grid of 100 times (midpoint rule here). Under
flattening (Eq. 52, small lambda_delta) the rate has a log singularity near s = 0 that the first cell cannot
resolve. This script loads the unconditional network saved by

    separability gaussian --experiment flattening --dim-x 50 --dim-y 8 --k 10 --lambda-delta ... \\
        --steps 6000 --n-train 100000 [--plain] --out RUN

and evaluates S_NN with the uniform grid and with a 200-cell log-spaced grid down to s = 1e-8, for the
learned model AND for the exact e* on the same data and noise, so the grid's bias and the network's error
separate.

    python benchmarks/bench_time_grid.py RUN/lambda_delta=1e-06 [--plain] [--lambda-delta 1e-6]

Appends to benchmarks/results/time_grid.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp

import learned
from gaussian_oracle import JointGaussian
from verify import neural_entropy
from verify.experiments import DEFAULT_TRAIN
from verify import provenance, write_json
from verify import GeometricGrid, UniformGrid


def main() -> None:
    import time

    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the run folder of one flattening point (holds checkpoints/unconditional)")
    parser.add_argument("--lambda-delta", type=float, required=True)
    parser.add_argument("--plain", action="store_true", help="the run used --plain (no preconditioner)")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--n-eval", type=int, default=1000)
    args = parser.parse_args()
    g = JointGaussian.flattening(50, 8, 10, args.lambda_delta, 1.0, key=jax.random.key(0))
    x, _ = g.sample(args.n_eval, key=jax.random.key(5))
    net = learned.EntropyMLP(learned.MLPConfig(dim_x=50, width=256, depth=3), g.sde, key=jax.random.key(0))
    if not args.plain:
        net = learned.Preconditioned.fit(net, x)
    config = dataclasses.replace(DEFAULT_TRAIN, steps=args.steps, progress=False)
    step, result = learned.load_checkpoint(pathlib.Path(args.run) / "checkpoints" / "unconditional", net, config,
                                           key=jax.random.key(0))
    x = jnp.asarray(x, jnp.float32)
    exact = float(g.total_entropy())
    row = {"run": args.run, "lambda_delta": args.lambda_delta, "network": "plain" if args.plain else "preconditioned",
           "train_steps": step, "exact_total_entropy": exact}
    for name, grid in (("uniform_100", UniformGrid(100)), ("geometric_200_from_1e-8", GeometricGrid(200, 1e-8))):
        learned_est = neural_entropy(result.ema_model, x, times=grid, key=jax.random.key(7))
        exact_est = neural_entropy(g.model(), x, times=grid, key=jax.random.key(7))
        row[name] = {"learned": learned_est.to_dict(), "exact_model": exact_est.to_dict(),
                     "learned_relative_error": learned_est.value / exact - 1,
                     "exact_model_relative_error": exact_est.value / exact - 1}
        print(f"{row['network']:15s} lambda_delta={args.lambda_delta:g} {name:24s} learned {learned_est} "
              f"({100 * (learned_est.value / exact - 1):+.2f}%), exact e* {exact_est} "
              f"({100 * (exact_est.value / exact - 1):+.2f}%), exact {exact:.2f}")
    path = pathlib.Path(__file__).parent / "results" / "time_grid.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = [r for r in rows if (r["lambda_delta"], r["network"]) != (args.lambda_delta, row["network"])] + [row]
    write_json(path, {"benchmark": "bench_time_grid", "rows": rows, **provenance(start)})


if __name__ == "__main__":
    main()
