"""`separability oracle`: the exact report — closed-form values, curves and figures, no training."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from gaussian_oracle import JointGaussian

from ._figures import plot_curves
from ._report import provenance, write_json

SIGMA_SWEEP = (1.0, 0.6, 0.25)
LAMBDA_SWEEP = tuple(10.0 ** np.arange(-6, 0.5, 0.5))


def time_grid(sde, n: int) -> np.ndarray:
    """Times in [0, T] dense near 0, where rates peak: log-spaced from 1e-5 T joined to a linear grid."""
    head = np.geomspace(1e-5 * sde.T, 0.05 * sde.T, n // 2, endpoint=False)
    tail = np.linspace(0.05 * sde.T, sde.T, n - n // 2 - 1)
    return np.concatenate([[0.0], head, tail])


def exact_summary(g: JointGaussian) -> dict:
    """All closed-form totals of one instance, in nats."""
    return {
        "mutual_information": {"exact": g.mutual_information()},
        "total_entropy": {"exact": g.total_entropy(), "exact_at_T": g.total_entropy_curve(g.sde.T)},
        "conditional_total_entropy": {
            "exact": g.conditional_total_entropy(),
            "exact_at_T": g.conditional_total_entropy_curve(g.sde.T),
        },
        "total_correlation": {"exact": g.total_correlation()},
        "sum_marginal_kls": {"exact": float(np.sum(g.marginal_kls()))},
    }


def exact_curves(g: JointGaussian, times: np.ndarray) -> dict:
    return {
        "times": times,
        "total_entropy": g.total_entropy_curve(times),
        "conditional_total_entropy": g.conditional_total_entropy_curve(times),
        "mutual_information": g.mutual_information_curve(times),
        "total_correlation": g.total_correlation_curve(times),
        "entropy_rate": g.entropy_rate(times),
        "conditional_entropy_rate": g.conditional_entropy_rate(times),
        "mutual_information_rate": g.mutual_information_rate(times),
    }


def cfg_table(dim_x: int = 25, dims_y=(5, 10, 15), w=np.linspace(0.0, 20.0, 21), *, sigma_eps: float = 1.0,
              seed: int = 0, s_end: float = 1e-3) -> dict:
    r"""Exact $I(X_{CFG}; Y)(w)$ for determinism instances, one row per $D_Y$ (the paper's Fig. 10, exact), in nats.

    Each row also holds the unguided $I(X;Y)$ (Eq. 49), $I(X_{s_end}; Y)$ and the flow started from the exact
    $p_T$ instead of $\mathcal N(0, I)$, so both truncation errors at w = 0 can be read off.
    """
    w = np.asarray(w, dtype=np.float64)
    rows = []
    for dim_y in dims_y:
        joint = JointGaussian.determinism(dim_x, dim_y, sigma_eps, key=jax.random.key(seed))
        rows.append({
            "dim_y": dim_y,
            "mutual_information": float(joint.mutual_information()),
            "mutual_information_at_s_end": float(joint.mutual_information() - joint.mutual_information_curve(s_end)),
            "cfg_mutual_information": joint.cfg_mutual_information(w, s_end).tolist(),
            "cfg_mutual_information_exact_start": joint.cfg_mutual_information(w, s_end, exact_start=True).tolist(),
        })
    return {"dim_x": dim_x, "sigma_eps": sigma_eps, "key": seed, "s_end": s_end, "w": w.tolist(), "rows": rows,
            "ground_truth": "exact (linear flow, no sampling); mutual_information is Eq. (49)"}


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    out = Path(args.out)
    g = JointGaussian.determinism(args.dim_x, args.dim_y, args.sigma_eps, key=jax.random.key(args.seed))
    times = time_grid(g.sde, args.n_times)
    curves = exact_curves(g, times)
    figures = {}

    figures["curves"] = plot_curves(
        times,
        [
            ("cumulative information", "nats", [
                {"label": "$S^X_{tot}(s)$", "y": curves["total_entropy"], "exact": True},
                {"label": "$S^{X|Y}_{tot}(s)$", "y": curves["conditional_total_entropy"], "exact": True},
                {"label": "$I(X;Y) - I(X_s;Y)$", "y": curves["mutual_information"], "exact": True},
                {"label": "$TC(X) - TC(X_s)$", "y": curves["total_correlation"], "exact": True},
            ]),
            ("rates", "nats per unit s", [
                {"label": "entropy rate", "y": curves["entropy_rate"], "exact": True},
                {"label": "conditional entropy rate", "y": curves["conditional_entropy_rate"], "exact": True},
                {"label": "MINDE integrand", "y": curves["mutual_information_rate"], "exact": True},
            ]),
        ],
        out / "curves.png",
        title=f"Joint Gaussian, determinism D_X={g.dim_x}, D_Y={g.dim_y}, sigma_eps={g.sigma_eps} (exact)",
        log_x=True,
    )

    sweep = {}
    rate_curves, cum_curves = [], []
    for sigma in SIGMA_SWEEP:
        h = JointGaussian.determinism(args.dim_x, args.dim_y, sigma, key=jax.random.key(args.seed))
        sweep[str(sigma)] = exact_summary(h)
        rate_curves.append({"label": f"$\\sigma_\\epsilon$={sigma}", "y": h.conditional_entropy_rate(times), "exact": True})
        cum_curves.append({"label": f"$\\sigma_\\epsilon$={sigma}", "y": h.conditional_total_entropy_curve(times), "exact": True})
    figures["determinism_sweep"] = plot_curves(
        times,
        [("conditional entropy rate (cf. Fig. 12)", "nats per unit s", rate_curves),
         ("$S^{X|Y}_{tot}(s)$", "nats", cum_curves)],
        out / "determinism_sweep.png",
        log_x=True,
    )

    flat = {"lambda_delta": np.array(LAMBDA_SWEEP), "total_entropy": [], "mutual_information": [], "total_correlation": []}
    for lam in LAMBDA_SWEEP:
        h = JointGaussian.flattening(50, 8, 10, lam, 1.0, key=jax.random.key(args.seed))
        flat["total_entropy"].append(h.total_entropy())
        flat["mutual_information"].append(h.mutual_information())
        flat["total_correlation"].append(h.total_correlation())
    figures["flattening_sweep"] = plot_curves(
        flat["lambda_delta"],
        [("flattening D_X=50, D_Y=8, k=10 (cf. Fig. 13)", "nats", [
            {"label": "$S^X_{tot}$", "y": flat["total_entropy"], "exact": True},
            {"label": "TC(X)", "y": flat["total_correlation"], "exact": True},
            {"label": "I(X;Y)", "y": flat["mutual_information"], "exact": True},
        ])],
        out / "flattening_sweep.png",
        xlabel="$\\lambda_\\delta$",
        log_x=True,
    )

    cfg = None
    if not args.skip_cfg:
        from ._figures_cfg import plot_cfg_curve

        cfg = cfg_table(25, seed=args.seed, w=np.linspace(0.0, 20.0, args.n_cfg))
        figures["cfg"] = plot_cfg_curve(cfg, out / "cfg.png")

    payload = {
        "experiment": "oracle",
        "instance": {"family": "determinism", "dim_x": g.dim_x, "dim_y": g.dim_y, "sigma_eps": g.sigma_eps,
                     "seed": args.seed, "eps": 1e-3, "sde": {"beta_min": g.sde.beta_min, "beta_max": g.sde.beta_max, "T": g.sde.T}},
        "quantities": exact_summary(g),
        "curves": curves,
        "determinism_sweep": sweep,
        "flattening_sweep": flat,
        "cfg": cfg,
        "figures": {k: str(Path(v).name) for k, v in figures.items()},
        "units": "nats; rates in nats per unit forward time s",
        **provenance(start),
    }
    write_json(out / "results.json", payload)
    q = payload["quantities"]
    print(f"exact oracle report → {out}/results.json")
    print(f"  I(X;Y)        = {q['mutual_information']['exact']:.6f} nats")
    print(f"  S_tot^X       = {q['total_entropy']['exact']:.6f} nats   (TC = {q['total_correlation']['exact']:.6f})")
    print(f"  S_tot^(X|Y)   = {q['conditional_total_entropy']['exact']:.6f} nats")
    if cfg is not None:
        for row in cfg["rows"]:
            picks = [0, len(cfg["w"]) // 4, len(cfg["w"]) // 2, len(cfg["w"]) - 1]
            vals = ", ".join(f"w={cfg['w'][i]:g}: {row['cfg_mutual_information'][i]:.2f}" for i in picks)
            print(f"  I_CFG D_Y={row['dim_y']:2d} (I={row['mutual_information']:.2f}): {vals}")
    print(f"  figures: {', '.join(payload['figures'].values())}")
    return payload


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("oracle", help="exact closed-form report (JSON + PNG figures), no training")
    p.add_argument("--out", default="out/oracle", help="output directory (default: out/oracle)")
    p.add_argument("--dim-x", type=int, default=25)
    p.add_argument("--dim-y", type=int, default=15)
    p.add_argument("--sigma-eps", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="instance = JointGaussian.determinism(..., key=jax.random.key(seed))")
    p.add_argument("--n-times", type=int, default=400)
    p.add_argument("--n-cfg", type=int, default=21, help="number of CFG weights w in [0, 20]")
    p.add_argument("--skip-cfg", action="store_true", help="skip the CFG curve")
    p.set_defaults(func=run)
