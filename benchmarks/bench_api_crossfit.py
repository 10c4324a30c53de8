"""Does a second fit remove the public MINDE's excess on small data? Plug-in, mean, ensemble and cross-fit, by seed.

On 2,000 pairs one fit of `verify.MINDE()` reads high by more than its stderr (README: 2.44 +- 0.08 against 2.109 on
the 5 + 3 joint Gaussian of `tests/test_readme.py`). MINDE's plug-in $\\mathbb E\\|\\hat d\\|^2$ carries the fit's
error variance $\\mathbb E\\|n\\|^2$ on top of $\\|d\\|^2$; two fits whose errors are independent remove it in
$\\mathbb E[\\hat d_a \\cdot \\hat d_b]$ (`verify.mutual_information_minde_crossfit`). This measures, seed by seed
(a fresh draw of the pairs and fresh training keys from the same joint), on fresh evaluation pairs:

- `plugin_a`, `plugin_b`: one default fit each on the same 2,000 pairs (what `MINDE()` returns), and their `mean`
  (what `MINDE(n_fits=2)` averages);
- `ensemble`: MINDE of the averaged networks $(e_a + e_b)/2$ (the error variance halved, not removed);
- `crossfit_same`: the cross-fit of the two fits on the same pairs (independent initialisation, noise and
  validation split; the same data, so the part of the error the data set causes is shared and stays);
- `plugin_half1`, `plugin_half2`, `crossfit_halves`: two fits on disjoint halves (1,000 pairs each, no transform:
  two fitted transforms would put the networks in different coordinates; the data are Gaussian already) and their
  cross-fit (independent errors, half the data each); `MINDE(crossfit=True)` is this with one transform fitted on
  both halves.

    python benchmarks/bench_api_crossfit.py [--seeds 0 1 2 3] [--n-train 2000] [--n-eval 2000] [--steps 4000]
        [--dims 5 3] [--sigma-eps 1.0] [--tag TAG]

The joint is `JointGaussian.determinism(dim_x, dim_y, sigma_eps, key(0))` (the default is the README example's;
`--dims 25 25 --sigma-eps 5` is `bench_sample_size.py`'s). Writes
benchmarks/results/api_crossfit_<dim_x>x<dim_y>[_<tag>]_<platform>.json after every seed (a stopped run keeps its
finished seeds); a later run with the same settings adds its seeds to the rows already there (a seed run again replaces
its row).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import equinox as eqx
import jax
import numpy as np

import verify
from gaussian_oracle import JointGaussian
from _results_file import kept_rows


class _Mean(eqx.Module):
    """The protocol model whose output is the mean of two models' outputs."""

    a: eqx.Module
    b: eqx.Module

    @property
    def sde(self):
        return self.a.sde

    def __call__(self, x, s, y=None):
        return 0.5 * (self.a(x, s, y) + self.b(x, s, y))


def _same_transform(fa: verify.FittedEstimator, fb: verify.FittedEstimator) -> bool:
    leaves = [jax.tree_util.tree_leaves((f.transform_x, f.transform_y)) for f in (fa, fb)]
    return len(leaves[0]) == len(leaves[1]) and all(np.array_equal(u, v) for u, v in zip(*leaves))


def _seed(joint, seed: int, args) -> dict:
    k_data, k_eval, k_a, k_b, k_h1, k_h2, k_est = jax.random.split(jax.random.key(1000 + seed), 7)
    x, y = (np.asarray(a, np.float32) for a in joint.sample(args.n_train, key=k_data))
    x_eval, y_eval = (np.asarray(a, np.float32) for a in joint.sample(args.n_eval, key=k_eval))
    est = verify.MINDE(steps=args.steps, progress=False)
    row: dict = {"seed": seed, "gaussian_plugin_train": verify.gaussian_plugin_mi(x, y).to_dict(),
                 "gaussian_plugin_eval": verify.gaussian_plugin_mi(x_eval, y_eval).to_dict()}
    t0 = time.perf_counter()
    fa, fb = est.fit(x, y, key=k_a), est.fit(x, y, key=k_b)
    if not _same_transform(fa, fb):
        raise RuntimeError("the two fits on the same pairs fitted different transforms; their networks cannot be "
                           "cross-fitted")
    xt, yt = fa.transformed(x_eval, y_eval)
    grid = verify.estimation_grid(est)
    plug = [verify.mutual_information_minde(f.model, xt, yt, times=grid, key=k_est) for f in (fa, fb)]
    row["plugin_a"], row["plugin_b"] = (p.to_dict() for p in plug)
    row["mean"] = {"value": 0.5 * (plug[0].value + plug[1].value)}
    row["ensemble"] = verify.mutual_information_minde(_Mean(fa.model, fb.model), xt, yt, times=grid,
                                                      key=k_est).to_dict()
    row["crossfit_same"] = verify.mutual_information_minde_crossfit(fa.model, fb.model, xt, yt, times=grid,
                                                                    key=k_est).to_dict()
    half = args.n_train // 2
    plain = verify.MINDE(steps=args.steps, transform=None, progress=False)
    h1, h2 = plain.fit(x[:half], y[:half], key=k_h1), plain.fit(x[half:], y[half:], key=k_h2)
    for name, f in (("plugin_half1", h1), ("plugin_half2", h2)):
        row[name] = verify.mutual_information_minde(f.model, x_eval, y_eval, times=grid, key=k_est).to_dict()
    row["crossfit_halves"] = verify.mutual_information_minde_crossfit(h1.model, h2.model, x_eval, y_eval, times=grid,
                                                                      key=k_est).to_dict()
    row["wall_time_s"] = time.perf_counter() - t0
    return row


VARIANTS = ("plugin_a", "plugin_b", "mean", "ensemble", "crossfit_same", "plugin_half1", "plugin_half2",
            "crossfit_halves")


def _summary(rows: list[dict], exact: float) -> dict:
    out = {}
    for name in VARIANTS:
        v = np.array([r[name]["value"] for r in rows])
        out[name] = {"mean": float(v.mean()), "spread": float(v.std(ddof=1)) if len(v) > 1 else None,
                     "mean_relative_error": float(v.mean() / exact - 1)}
        if "stderr" in rows[0][name]:
            z = np.array([(r[name]["value"] - exact) / r[name]["stderr"] for r in rows])
            out[name]["z"] = [float(t) for t in z]
    return out


def main() -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-eval", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--dims", type=int, nargs=2, default=[5, 3], metavar=("DIM_X", "DIM_Y"))
    parser.add_argument("--sigma-eps", type=float, default=1.0)
    parser.add_argument("--tag", default="", help="names the results file and is recorded in it (e.g. what code ran)")
    args = parser.parse_args()
    dx, dy = args.dims
    task = f"JointGaussian.determinism({dx}, {dy}, sigma_eps={args.sigma_eps}, key(0))"
    joint = JointGaussian.determinism(dx, dy, sigma_eps=args.sigma_eps, key=jax.random.key(0))
    exact = float(joint.mutual_information())
    print(f"{task}: exact I = {exact:.4f} nats", flush=True)
    tag = f"_{args.tag}" if args.tag else ""
    out = pathlib.Path(__file__).parent / "results" / f"api_crossfit_{dx}x{dy}{tag}_{jax.devices()[0].platform}.json"
    settings = {"task": task, "n_train": args.n_train, "n_eval": args.n_eval, "tag": args.tag}
    estimator = verify.MINDE(steps=args.steps, progress=False)
    rows = kept_rows(out, {**settings, "estimator": estimator}, lambda r: r["seed"] in args.seeds)
    for seed in args.seeds:
        rows.append(_seed(joint, seed, args))
        rows.sort(key=lambda r: r["seed"])
        r = next(r for r in rows if r["seed"] == seed)
        print(f"seed {seed}: " + "  ".join(f"{n} {r[n]['value']:.3f}" for n in VARIANTS)
              + f"  ({r['wall_time_s']:.0f} s)", flush=True)
        verify.write_json(out, {
            "benchmark": "bench_api_crossfit", **settings, "exact": exact, "units": "nats",
            "estimator": estimator,
            "halves_estimator": verify.MINDE(steps=args.steps, transform=None, progress=False).to_dict(),
            "rows": rows, "summary": _summary(rows, exact), **verify.provenance(start)})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
