"""Bias of the public MINDE against the number of pairs, with and without the held-out validation selection.

A 25 + 25 joint Gaussian of the determinism family (Eq. 51, sigma_eps = 5, seed 0; exact I(X;Y) = 6.316 nats in
closed form, Eq. 49). For each n, `verify.MINDE(...).fit` gets n pairs and the estimate is read on a fixed set of
fresh evaluation pairs (the same for every n and variant, so only the training data change). Variants:

- `none`: `validation_fraction=0`, every pair trains, the last EMA weights are used;
- `report`: 10 % held out and its loss recorded, the last EMA weights used (what the smaller training set costs);
- `select`: 10 % held out, the EMA weights at the lowest held-out loss used (early-stopping selection).

    python benchmarks/bench_sample_size.py [--ns 2000 5000 10000] [--steps 2000] [--width 128]
        [--variants none report select] [--n-eval 4000]

Writes benchmarks/results/api_sample_size_<platform>.json (each cell: the estimate, its relative error, the
networks' train and held-out losses, the selected step and the wall time of the fit).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import numpy as np

import verify
from gaussian_oracle import JointGaussian


VARIANTS = {"none": dict(validation_fraction=0.0), "report": dict(validation_fraction=0.1, select_on_validation=False),
            "select": dict(validation_fraction=0.1, select_on_validation=True)}


def main() -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ns", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--n-eval", type=int, default=4000)
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=tuple(VARIANTS))
    parser.add_argument("--sigma-eps", type=float, default=5.0)
    args = parser.parse_args()
    joint = JointGaussian.determinism(25, 25, args.sigma_eps, key=jax.random.key(0))
    exact = float(joint.mutual_information())
    k_eval, k_train, k_fit, k_est = jax.random.split(jax.random.key(1), 4)
    x_eval, y_eval = (np.asarray(a, np.float32) for a in joint.sample(args.n_eval, key=k_eval))
    x_all, y_all = (np.asarray(a, np.float32) for a in joint.sample(max(args.ns), key=k_train))
    plugin = verify.gaussian_plugin_mi(x_eval, y_eval)
    print(f"exact I = {exact:.4f} nats; Gaussian plug-in on the evaluation pairs {plugin.value:.4f} ± {plugin.stderr:.4f}")
    rows = []
    for n in args.ns:
        x, y = x_all[:n], y_all[:n]  # nested: each larger data set contains the smaller ones
        for name in args.variants:
            est = verify.MINDE(steps=args.steps, width=args.width, progress=False, **VARIANTS[name])
            t0 = time.perf_counter()
            fitted = est.fit(x, y, key=k_fit)
            fit_time = time.perf_counter() - t0
            four = fitted.estimate_all(x_eval, y_eval, key=k_est)
            m, d = four["minde"], four["difference"]
            row = {"n": n, "variant": name, **VARIANTS[name], "exact": exact, "minde": m.to_dict(),
                   "difference": d.to_dict(), "minde_relative_error": (m.value - exact) / exact,
                   "difference_relative_error": (d.value - exact) / exact, "fit_wall_time_s": fit_time,
                   "info": fitted.info.to_dict()}
            rows.append(row)
            sel = ", ".join(f"{f.name} step {f.selected_step}" for f in fitted.info.networks)
            print(f"n={n:6d} {name:<7} MINDE {m.value:7.3f} ± {m.stderr:.3f} ({row['minde_relative_error']:+.1%})  "
                  f"diff {d.value:7.3f} ± {d.stderr:.3f} ({row['difference_relative_error']:+.1%})  "
                  f"[{sel}]  fit {fit_time:.0f} s", flush=True)
    out = pathlib.Path(__file__).parent / "results" / f"api_sample_size_{jax.devices()[0].platform}.json"
    verify.write_json(out, {
        "benchmark": "bench_sample_size", "task": f"JointGaussian.determinism(25, 25, {args.sigma_eps}, key(0))",
        "exact": exact, "gaussian_plugin_eval": plugin.to_dict(), "steps": args.steps, "width": args.width,
        "n_eval": args.n_eval, "units": "nats",
        "estimator": verify.MINDE(steps=args.steps, width=args.width, progress=False).to_dict(),
        "rows": rows, **verify.provenance(start)})


if __name__ == "__main__":
    main()
