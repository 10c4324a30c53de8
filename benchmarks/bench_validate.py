"""Our learned MI estimators through the validation harness, beside the Gaussian plug-in baseline.

For every `verify.default_tasks()` task (exact I from 0.13 to 62.9 nats; Gaussian, flattened and non-Gaussian
by invertible per-component maps), `verify.validate` draws pairs; our estimator trains two covariance-
preconditioned MLPs on 80 % of them (a short budget, `--steps`) and estimates I by MINDE and by the entropy
difference on the rest. One training serves both estimators.

    python benchmarks/bench_validate.py [--steps 1600] [--n-samples 20000]

Writes benchmarks/results/validate_<platform>.json and validate_<platform>.png (estimate against truth).
"""

from __future__ import annotations

import argparse
import json
import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp

import verify
from gaussian_oracle import VPSDE
from verify.experiments import DEFAULT_TRAIN, GaussianExperimentConfig, fit, measure
from verify import provenance, write_json


def main() -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1600, help="a multiple of 200")
    parser.add_argument("--n-samples", type=int, default=20000)
    args = parser.parse_args()
    config = GaussianExperimentConfig(train=dataclasses.replace(DEFAULT_TRAIN, steps=args.steps, progress=False,
                                                                checkpoint_every=args.steps))
    results = {}

    def learned(x, y):
        x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
        n_train = int(0.8 * x.shape[0])
        model = fit(x[:n_train], y[:n_train], VPSDE(), config, key=jax.random.key(1))
        est = measure(model, x[n_train:], y[n_train:], n_times=config.n_times, key=jax.random.key(2))
        results[float(x[0, 0])] = est["difference"]
        return est["minde"]

    def difference(x, y):
        return results[float(jnp.asarray(x, jnp.float32)[0, 0])]

    out_dir = pathlib.Path(__file__).parent / "results"
    platform = jax.devices()[0].platform
    reports = {}
    for name, estimator in (("minde", learned), ("difference", difference), ("gaussian_plugin", verify.gaussian_plugin_mi)):
        report = verify.validate(estimator, n_samples=args.n_samples, key=jax.random.key(0))
        reports[name] = json.loads(report.to_json())
        print(f"--- {name}\n{report.table()}")
        if name == "minde":
            report.plot(out_dir / f"validate_{platform}.png")
    write_json(out_dir / f"validate_{platform}.json",
               {"benchmark": "bench_validate", "train_steps": args.steps, "n_samples": args.n_samples,
                "reports": reports, **provenance(start)})


if __name__ == "__main__":
    main()
