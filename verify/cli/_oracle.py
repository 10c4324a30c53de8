"""`separability oracle`: the exact report, no training."""

from __future__ import annotations

import argparse

import jax

from ..experiments import EXPERIMENTS, OracleConfig

from ._common import add_seed, nonnegative_int, positive_float, positive_int


class OracleCommand:
    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default="out/oracle", help="output folder for results.json and the figures")
        add_seed(p, "the instance JointGaussian.determinism(..., key=...)")
        p.add_argument("--dim-x", type=positive_int, default=25, help="dimension of X")
        p.add_argument("--dim-y", type=positive_int, default=15, help="dimension of Y")
        p.add_argument("--sigma-eps", type=positive_float, default=1.0, help="noise std of Y = AX + eps")
        p.add_argument("--n-times", type=positive_int, default=400, help="points of the curves' time grid (>= 3)")
        p.add_argument("--n-cfg", type=nonnegative_int, default=21,
                       help="CFG weights w on a uniform grid of [0, 20] (>= 2; 0 skips the CFG curve)")
        p.add_argument("--skip-cfg", action="store_true", help="skip the CFG curve (same as --n-cfg 0)")

    def run(self, args: argparse.Namespace) -> dict:
        config = OracleConfig(args.dim_x, args.dim_y, args.sigma_eps, args.n_times, 0 if args.skip_cfg else args.n_cfg)
        payload = EXPERIMENTS["oracle"].run(config, args.out, key=jax.random.key(args.seed), instance={"seed": args.seed})
        q = payload["quantities"]
        print(f"exact oracle report → {args.out}/results.json")
        print(f"  I(X;Y)        = {q['mutual_information']['exact']:.6f} nats")
        print(f"  S_tot^X       = {q['total_entropy']['exact']:.6f} nats   (TC = {q['total_correlation']['exact']:.6f})")
        print(f"  S_tot^(X|Y)   = {q['conditional_total_entropy']['exact']:.6f} nats")
        cfg = payload["cfg"]
        if cfg is not None:
            for row in cfg["rows"]:
                picks = sorted({0, len(cfg["w"]) // 4, len(cfg["w"]) // 2, len(cfg["w"]) - 1})
                vals = ", ".join(f"w={cfg['w'][i]:g}: {row['cfg_mutual_information'][i]:.2f}" for i in picks)
                print(f"  I_CFG D_Y={row['dim_y']:2d} (I={row['mutual_information']:.2f}): {vals}")
        print(f"  figures: {', '.join(payload['figures'].values())}")
        return payload
