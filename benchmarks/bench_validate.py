"""Our learned MI estimators through the validation harness, beside the Gaussian plug-in baseline.

For every `verify.default_tasks()` task (exact I from 0.13 to 62.9 nats; Gaussian, flattened and non-Gaussian
by invertible per-component maps), `verify.validate` draws pairs; our estimator trains two covariance-
preconditioned MLPs on 80 % of them (the public `verify.MINDE(steps=...).fit` with its default schedule, centring,
validation split and selection; `--steps` defaults to MINDE's 4,000) and estimates I by MINDE and by the entropy
difference on the rest. One training serves both estimators: a MINDE row's `wall_s` is the fit and the estimate,
a difference row's only the lookup of the same fit's number.

    python benchmarks/bench_validate.py [--steps 4000] [--n-samples 20000] [--transform gaussianisation|none]
        [--suite default|robustness|all]

`--suite robustness` runs `verify.robustness_tasks()` instead (heavy-tailed, bounded and mixture tasks), `all` both.
Writes benchmarks/results/validate_<platform>.json and validate_<platform>.png (estimate against truth), with the
suite's name after "validate" for any suite but `default`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import numpy as np

import verify
from verify import provenance, write_json


TRANSFORMS = {"none": None, "gaussianisation": verify.MarginalGaussianisation()}
SUITES = {"default": verify.default_tasks, "robustness": verify.robustness_tasks,
          "all": lambda: verify.default_tasks() + verify.robustness_tasks()}


def main() -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000, help="training steps per network (MINDE's default)")
    parser.add_argument("--n-samples", type=int, default=20000)
    parser.add_argument("--transform", choices=tuple(TRANSFORMS), default="gaussianisation",
                        help="per-component preprocessing fitted on the training split (MINDE's default)")
    parser.add_argument("--suite", choices=tuple(SUITES), default="default")
    args = parser.parse_args()
    estimator = verify.MINDE(steps=args.steps, transform=TRANSFORMS[args.transform], progress=False)
    results = {}

    def learned(x, y, *, key):
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        n_train = int(0.8 * x.shape[0])
        k_fit, k_est = jax.random.split(key)
        fitted = estimator.fit(x[:n_train], y[:n_train], key=k_fit)
        est = fitted.estimate_all(x[n_train:], y[n_train:], key=k_est)
        results[float(x[0, 0])] = est["difference"]
        return est["minde"]

    def difference(x, y, *, key):
        return results[float(np.asarray(x, np.float32)[0, 0])]

    out_dir = pathlib.Path(__file__).parent / "results"
    platform = jax.devices()[0].platform
    reports = {}
    tasks = SUITES[args.suite]()
    stem = "validate" if args.suite == "default" else f"validate_{args.suite}"
    for name, function in (("minde", learned), ("difference", difference), ("gaussian_plugin", verify.gaussian_plugin_mi)):
        report = verify.validate(function, tasks, n_samples=args.n_samples, key=jax.random.key(0))
        reports[name] = json.loads(report.to_json())
        print(f"--- {name}\n{report.table()}")
        if name == "minde":
            report.plot(out_dir / f"{stem}_{platform}.png")
    write_json(out_dir / f"{stem}_{platform}.json",
               {"benchmark": "bench_validate", "suite": args.suite, "train_steps": args.steps, "transform": args.transform,
                "n_samples": args.n_samples, "reports": reports, **provenance(start)})


if __name__ == "__main__":
    main()
