"""Does per-component preprocessing rescue the learned MI estimators beyond Gaussians? Exact I known on every task.

On each `verify.robustness_tasks()` task (multivariate Student-t with 1 to 3 degrees of freedom, the exact I(X;Y) in
closed form; bounded Gaussian-copula data in (0, 1); Gaussian-mixture pairs, exact I by quadrature) one fit per transform (none, `RobustScaling`, `MarginalGaussianisation`) gives MINDE and the entropy
difference on held-out pairs (`FittedEstimator.estimate_all`), beside the Gaussian plug-in. Both maps are invertible
per component, so the truth is the same for every column. A small CPU budget by default:

    python benchmarks/bench_robustness.py [--suite robustness|student-t|bounded|mixture|default] [--steps 1000]
        [--n 5000] [--width 128]

`--suite robustness` runs every task of the registry, `student-t`, `bounded` and `mixture` one family of it;
`--suite default` runs the harness's `verify.default_tasks()` instead (does Gaussianisation cost anything where the
data are Gaussian or only transformed?). Writes benchmarks/results/robustness_<suite>_<platform>.json.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import numpy as np

import verify


def _family(prefix):
    return lambda: tuple(t for t in verify.robustness_tasks() if t.name.startswith(prefix))


SUITES = {"robustness": verify.robustness_tasks, "student-t": _family("student-t"), "bounded": _family("bounded"),
          "mixture": _family("mixture"), "default": verify.default_tasks}
TRANSFORMS = {"none": None, "robust_scaling": verify.RobustScaling(), "gaussianisation": verify.MarginalGaussianisation()}


def main() -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--n", type=int, default=5000, help="pairs per task (80 %% train, 20 %% evaluation)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--suite", choices=tuple(SUITES), default="robustness")
    parser.add_argument("--tasks", nargs="*", default=None, help="task names (default: every task of the suite)")
    parser.add_argument("--transforms", nargs="*", choices=tuple(TRANSFORMS), default=tuple(TRANSFORMS))
    args = parser.parse_args()
    transforms = {name: TRANSFORMS[name] for name in args.transforms}
    rows = []
    for i, task in enumerate(SUITES[args.suite]()):
        if args.tasks and task.name not in args.tasks:
            continue
        k_data, k_fit, k_est = jax.random.split(jax.random.key(i), 3)
        x, y = (np.asarray(a, np.float32) for a in task.sample(args.n, key=k_data))
        n_train = int(0.8 * args.n)
        row = {"task": task.name, "exact": task.mutual_information,
               "gaussian_plugin": verify.gaussian_plugin_mi(x[n_train:], y[n_train:]).to_dict()}
        for name, transform in transforms.items():
            t0 = time.perf_counter()
            est = verify.MINDE(steps=args.steps, width=args.width, transform=transform, progress=False)
            try:
                fitted = est.fit(x[:n_train], y[:n_train], key=k_fit)
                four = fitted.estimate_all(x[n_train:], y[n_train:], key=k_est)
                row[name] = {"minde": four["minde"].to_dict(), "difference": four["difference"].to_dict(),
                             "wall_time_s": time.perf_counter() - t0}
            except FloatingPointError as error:
                row[name] = {"error": str(error), "wall_time_s": time.perf_counter() - t0}
            print(task.name, name, {k: v for k, v in row[name].items()}, flush=True)
        rows.append(row)
    print(f"\n{'task':<20} {'exact':>7} {'plug-in':>8} " + " ".join(f"{n + ' MINDE/diff':>30}" for n in transforms))
    for r in rows:
        cells = []
        for n in transforms:
            c = r[n]
            cells.append(f"{'error':>30}" if "error" in c else
                         f"{c['minde']['value']:7.3f}±{c['minde']['stderr']:.3f} / {c['difference']['value']:7.3f}±{c['difference']['stderr']:.3f}")
        print(f"{r['task']:<20} {r['exact']:7.3f} {r['gaussian_plugin']['value']:8.3f} " + " ".join(cells))
    out = pathlib.Path(__file__).parent / "results" / f"robustness_{args.suite}_{jax.devices()[0].platform}.json"
    verify.write_json(out, {"benchmark": "bench_robustness", "suite": args.suite, "steps": args.steps, "n": args.n, "width": args.width,
                            "units": "nats", "rows": rows, **verify.provenance(start)})


if __name__ == "__main__":
    main()
