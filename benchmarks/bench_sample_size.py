"""Bias of the public MINDE against the number of pairs, with and without the held-out validation selection.

A 25 + 25 joint Gaussian of the determinism family (Eq. 51, sigma_eps = 5, seed 0; exact I(X;Y) = 6.316 nats in
closed form, Eq. 49). For each n, `verify.MINDE(...).fit` gets n pairs and the estimate is read on a fixed set of
fresh evaluation pairs (the same for every n and variant, so only the training data change). Variants:

- `none`: `validation_fraction=0`, every pair trains, the last EMA weights are used;
- `report`: 10 % held out and its loss recorded, the last EMA weights used (what the smaller training set costs);
- `select`: 10 % held out, the EMA weights at the lowest held-out loss used (early-stopping selection);
- `crossfit`: `select` with `crossfit=True`: two fits, each on half of the n pairs (10 % of each half held out), and
  the cross-fitted MINDE of the two (`verify.CrossFittedEstimator`); beside it each half's own plug-in MINDE and
  I_diff (`a`, `b`). Its `difference` is the mean of the two halves' I_diff (no cross-fit of it exists);
- `crossfit_none`: `none` with `crossfit=True` (every pair of each half trains, the last weights are used).

    python benchmarks/bench_sample_size.py [--ns 2000 5000 10000] [--steps 2000] [--width 128]
        [--variants none report select crossfit crossfit_none] [--n-eval 4000] [--seed 0] [--tag TAG]

Writes benchmarks/results/api_sample_size[_<tag>]_<platform>.json (each cell: the estimate, its relative error, the
networks' train and held-out losses, the selected step and the wall time of the fit). A later run with the same task,
steps, width, n-eval and estimator keeps the cells (seed, n, variant) of the file that it does not run again.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import numpy as np

import verify
from gaussian_oracle import JointGaussian
from _results_file import kept_rows


VARIANTS = {"none": dict(validation_fraction=0.0), "report": dict(validation_fraction=0.1, select_on_validation=False),
            "select": dict(validation_fraction=0.1, select_on_validation=True),
            "crossfit": dict(validation_fraction=0.1, select_on_validation=True, crossfit=True),
            "crossfit_none": dict(validation_fraction=0.0, crossfit=True)}


def _cell(fitted, x_eval, y_eval, key) -> tuple[dict, tuple]:
    """MINDE and I_diff of a fit on the evaluation pairs (for a cross-fit: the cross-fitted MINDE, the halves' mean
    I_diff and each half's own numbers), and the `FitInfo`s."""
    if isinstance(fitted, verify.CrossFittedEstimator):
        halves = {h: getattr(fitted, h).estimate_all(x_eval, y_eval, key=key) for h in fitted.HALVES}
        difference = [halves[h]["difference"] for h in fitted.HALVES]
        mean = verify.Estimate(sum(d.value for d in difference) / 2,
                               0.5 * sum(d.stderr ** 2 for d in difference) ** 0.5)
        return ({"minde": fitted.estimate(x_eval, y_eval, key=key), "difference": mean,
                 **{f"{h}_{q}": halves[h][q] for h in fitted.HALVES for q in ("minde", "difference")}},
                fitted.info)
    four = fitted.estimate_all(x_eval, y_eval, key=key)
    return {"minde": four["minde"], "difference": four["difference"]}, (fitted.info,)


def main() -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ns", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--n-eval", type=int, default=4000)
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=tuple(VARIANTS))
    parser.add_argument("--sigma-eps", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0, help="the training pairs' draw and the training keys "
                        "(0: the first run's; the evaluation pairs are the same for every seed)")
    parser.add_argument("--tag", default="", help="names the results file (e.g. a run at other steps)")
    args = parser.parse_args()
    joint = JointGaussian.determinism(25, 25, args.sigma_eps, key=jax.random.key(0))
    exact = float(joint.mutual_information())
    k_eval, k_train, k_fit, k_est = jax.random.split(jax.random.key(1), 4)
    if args.seed:  # another draw of the training pairs and other training keys; the evaluation pairs stay
        k_train, k_fit, k_est = jax.random.split(jax.random.fold_in(jax.random.key(1), args.seed), 3)
    x_eval, y_eval = (np.asarray(a, np.float32) for a in joint.sample(args.n_eval, key=k_eval))
    x_all, y_all = (np.asarray(a, np.float32) for a in joint.sample(max(args.ns), key=k_train))
    plugin = verify.gaussian_plugin_mi(x_eval, y_eval)
    print(f"exact I = {exact:.4f} nats; Gaussian plug-in on the evaluation pairs {plugin.value:.4f} ± {plugin.stderr:.4f}")
    tag = f"_{args.tag}" if args.tag else ""
    out = pathlib.Path(__file__).parent / "results" / f"api_sample_size{tag}_{jax.devices()[0].platform}.json"
    settings = {"benchmark": "bench_sample_size",
                "task": f"JointGaussian.determinism(25, 25, {args.sigma_eps}, key(0))",
                "steps": args.steps, "width": args.width, "n_eval": args.n_eval,
                "estimator": verify.MINDE(steps=args.steps, width=args.width, progress=False)}
    rows = kept_rows(out, settings, lambda r: r.get("seed", 0) == args.seed and r["n"] in args.ns
                     and r["variant"] in args.variants)  # rows before `--seed` existed are seed 0's
    for n in args.ns:
        x, y = x_all[:n], y_all[:n]  # nested: each larger data set contains the smaller ones
        for name in args.variants:
            est = verify.MINDE(steps=args.steps, width=args.width, progress=False, **VARIANTS[name])
            t0 = time.perf_counter()
            fitted = est.fit(x, y, key=k_fit)
            fit_time = time.perf_counter() - t0
            cell, infos = _cell(fitted, x_eval, y_eval, k_est)
            m, d = cell["minde"], cell["difference"]
            row = {"seed": args.seed, "n": n, "variant": name, **VARIANTS[name], "exact": exact,
                   **{q: e.to_dict() for q, e in cell.items()}, "minde_relative_error": (m.value - exact) / exact,
                   "difference_relative_error": (d.value - exact) / exact, "fit_wall_time_s": fit_time,
                   "info": infos[0].to_dict() if len(infos) == 1 else [i.to_dict() for i in infos]}
            rows.append(row)
            sel = ", ".join(f"{f.name} step {f.selected_step}" for i in infos for f in i.networks)
            print(f"n={n:6d} {name:<8} MINDE {m.value:7.3f} ± {m.stderr:.3f} ({row['minde_relative_error']:+.1%})  "
                  f"diff {d.value:7.3f} ± {d.stderr:.3f} ({row['difference_relative_error']:+.1%})  "
                  f"[{sel}]  fit {fit_time:.0f} s", flush=True)
            rows.sort(key=lambda r: (r.get("seed", 0), r["n"], list(VARIANTS).index(r["variant"])))
            verify.write_json(out, {**settings, "exact": exact, "gaussian_plugin_eval": plugin.to_dict(),
                                    "units": "nats", "rows": rows, **verify.provenance(start)})


if __name__ == "__main__":
    main()
