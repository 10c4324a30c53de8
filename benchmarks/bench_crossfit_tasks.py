"""One fit against the cross-fit beyond Gaussians: `MINDE()` and `MINDE(crossfit=True)` on the robustness tasks.

`bench_sample_size.py` and `bench_api_crossfit.py` measured the cross-fit on joint Gaussians only. Here, per task of
`verify.robustness_tasks()` (heavy tails, bounded copulas, Gaussian mixtures; exact I(X;Y) in closed form or by
quadrature) and per seed, n training pairs go to `verify.MINDE(**config).fit` once with `crossfit=False` (one fit,
the plug-in, what `estimate_mutual_information` returns) and once with `crossfit=True` (two fits on the halves, one
transform, `verify.CrossFittedEstimator`); both are read on the same fresh evaluation pairs with the same key, and
so is each half's own plug-in (`fitted.a`, `fitted.b`: one fit's reading on half the data, at no training cost);
each fit's `FitInfo` (held-out losses, selected steps) is recorded beside its reading.
Defaults: `MINDE()`'s (4,000 steps, width 256, Gaussianisation, validation selection).

    python benchmarks/bench_crossfit_tasks.py [--tasks student-t-dof2-5x3 bounded-5x3 mixture-3x3] [--seeds 0 1]
        [--n 2000] [--n-eval 2000] [--steps 4000]

Writes benchmarks/results/crossfit_tasks_n<n>_<platform>.json after every cell (a stopped run keeps its finished
cells; a later run with the same n, n-eval and steps adds its cells, replacing any it runs again).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import numpy as np

import verify
from _results_file import kept_rows


def _cell(task: verify.Task, seed: int, args) -> dict:
    k_data, k_eval, k_fit, k_est = jax.random.split(jax.random.fold_in(jax.random.key(2000), seed), 4)
    x, y = (np.asarray(a, np.float32) for a in task.sample(args.n, key=k_data))
    x_eval, y_eval = (np.asarray(a, np.float32) for a in task.sample(args.n_eval, key=k_eval))
    row: dict = {"task": task.name, "seed": seed, "exact": task.mutual_information}
    for name, crossfit in (("plugin", False), ("crossfit", True)):
        t0 = time.perf_counter()
        fitted = verify.MINDE(steps=args.steps, crossfit=crossfit, progress=False).fit(x, y, key=k_fit)
        est = fitted.estimate(x_eval, y_eval, key=k_est)
        row[name] = {**est.to_dict(), "relative_error": est.value / task.mutual_information - 1,
                     "fit_wall_time_s": time.perf_counter() - t0}
        if crossfit:  # each half's own plug-in on the same pairs: the one fit's reading at half the data
            for half in verify.CrossFittedEstimator.HALVES:
                one = getattr(fitted, half)
                est = one.estimate(x_eval, y_eval, key=k_est)
                row[f"half_{half}"] = {**est.to_dict(), "relative_error": est.value / task.mutual_information - 1,
                                       "fit_info": one.info.to_dict()}
        else:
            row[name]["fit_info"] = fitted.info.to_dict()
    return row


def main() -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = {t.name: t for t in verify.robustness_tasks()}
    parser.add_argument("--tasks", nargs="+", choices=tuple(tasks),
                        default=["student-t-dof2-5x3", "bounded-5x3", "mixture-3x3"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--n-eval", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()
    out = pathlib.Path(__file__).parent / "results" / f"crossfit_tasks_n{args.n}_{jax.devices()[0].platform}.json"
    settings = {"benchmark": "bench_crossfit_tasks", "n": args.n, "n_eval": args.n_eval, "steps": args.steps,
                "estimator": verify.MINDE(steps=args.steps, progress=False)}
    rows = kept_rows(out, settings, lambda r: r["task"] in args.tasks and r["seed"] in args.seeds)
    for name in args.tasks:
        for seed in args.seeds:
            row = _cell(tasks[name], seed, args)
            rows = sorted([*rows, row], key=lambda r: (r["task"], r["seed"]))
            print(f"{name} seed {seed}: exact {row['exact']:.4f}  "
                  + "  ".join(f"{v} {row[v]['value']:.4f} ± {row[v]['stderr']:.4f} ({row[v]['relative_error']:+.1%}, "
                              f"{row[v]['fit_wall_time_s']:.0f} s)" for v in ("plugin", "crossfit"))
                  + "  halves " + ", ".join(f"{row[h]['value']:.4f} ({row[h]['relative_error']:+.1%})"
                                            for h in ("half_a", "half_b"))
                  + "  selected steps " + "; ".join(
                      f"{v} " + ", ".join(f"{net['name']} {net['selected_step']}"
                                          for net in row[v]["fit_info"]["networks"])
                      for v in ("plugin", "half_a", "half_b")), flush=True)
            verify.write_json(out, {**settings, "units": "nats", "rows": rows, **verify.provenance(start)})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
