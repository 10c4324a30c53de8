"""Network evaluations needed for a target stderr: importance sampling in time vs the paper's uniform grid.

Task: the joint Gaussian determinism instance D_X = 25, D_Y = 15, sigma_eps = 1 (Eq. 51), with the exact model e*
(so every estimate must also match the closed form). For S_NN (Eq. 11) and I_MINDE (Eq. 13) we run

- the uniform grid of 100 times (the paper's protocol for Gaussians; midpoint rule on [0, T]);
- importance sampling with a proposal fitted to a cheap pilot (64 data samples on a 24-cell geometric grid),
  floor 0.1; the pilot's evaluations are reported and added in the "including pilot" ratio;
- importance sampling with a fixed log-uniform proposal (no pilot), and with the uniform proposal.

Evaluations needed for a target stderr tau scale as n_evals * (stderr / tau)^2; the ratio grid / IS is independent
of tau except for the fixed pilot cost. Run:  python benchmarks/bench_importance.py  (writes results/importance.json).
"""

from __future__ import annotations

import json
import pathlib
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import numpy as np  # noqa: E402

import gaussian_oracle  # noqa: E402
from gaussian_oracle import JointGaussian  # noqa: E402
from verify import (  # noqa: E402
    GeometricGrid,
    ImportanceSampler,
    PiecewiseConstant,
    UniformGrid,
    mutual_information_minde,
    neural_entropy,
)

SEED = 0
N_GRID = 2000  # data samples for the grid (x 100 times)
N_IS = 20000  # data samples for importance sampling (x 1 time)
N_PILOT = 64
TARGET = 0.01  # nats


def _timed(fn):
    fn()  # compile
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    joint = JointGaussian.determinism(25, 15, 1.0, key=jax.random.key(SEED))
    model = joint.model()
    T = joint.sde.T
    keys = iter(jax.random.split(jax.random.key(SEED + 1), 16))
    x, y = joint.sample(N_IS, key=next(keys))
    exact = {
        "S_NN": float(joint.total_entropy_curve(T)),
        "I_MINDE": float(joint.mutual_information_curve(T)),
    }
    estimators = {
        "S_NN": lambda xx, yy, **kw: neural_entropy(model, xx, **kw),
        "I_MINDE": lambda xx, yy, **kw: mutual_information_minde(model, xx, yy, **kw),
    }
    results = {}
    for name, estimator in estimators.items():
        k_pilot, k_grid, k_fit, k_log, k_uni = (next(keys) for _ in range(5))
        pilot = estimator(x[:N_PILOT], y[:N_PILOT], times=GeometricGrid(24, 1e-5), key=k_pilot)
        proposals = {
            "fitted": PiecewiseConstant.fit(pilot.times, pilot.rate, T=T, floor=0.1),
            "log_uniform": PiecewiseConstant.log_uniform(T),
            "uniform": PiecewiseConstant.uniform(T),
        }
        grid, grid_s = _timed(lambda: estimator(x[:N_GRID], y[:N_GRID], times=UniformGrid(n_times=100), key=k_grid))
        needed_grid = grid.n_evals * (grid.stderr / TARGET) ** 2
        entry = {
            "exact": exact[name],
            "grid": {**grid.to_dict(), "z": grid.z_score(exact[name]), "wall_s": grid_s,
                     "evals_for_target": needed_grid},
            "pilot_evals": pilot.n_evals,
        }
        for label, key in zip(proposals, (k_fit, k_log, k_uni)):
            sampler = ImportanceSampler(proposals[label])
            est, wall = _timed(lambda: estimator(x, y, times=sampler, key=key))
            needed = est.n_evals * (est.stderr / TARGET) ** 2
            row = {**est.to_dict(), "z": est.z_score(exact[name]), "wall_s": wall, "evals_for_target": needed,
                   "ratio_grid_over_is": needed_grid / needed}
            if label == "fitted":
                row["ratio_including_pilot"] = needed_grid / (needed + pilot.n_evals)
            entry[f"is_{label}"] = row
        results[name] = entry
        print(f"{name}: exact {exact[name]:.4f}  grid {grid}  (z {grid.z_score(exact[name]):+.2f})")
        for label in proposals:
            r = entry[f"is_{label}"]
            print(f"   IS {label:<12} {r['value']:.4f} ± {r['stderr']:.4f} (z {r['z']:+.2f})  "
                  f"grid/IS evals for stderr {TARGET}: {r['ratio_grid_over_is']:.1f}x")

    device = jax.devices()[0]
    payload = {
        "benchmark": "importance sampling vs uniform grid: network evaluations for a target stderr",
        "task": {"family": "determinism", "dim_x": 25, "dim_y": 15, "sigma_eps": 1.0, "seed": SEED,
                 "sde": {"beta_min": joint.sde.beta_min, "beta_max": joint.sde.beta_max, "T": T},
                 "mutual_information_T_inf": float(joint.mutual_information()),
                 "total_entropy_T_inf": float(joint.total_entropy())},
        "model": "exact e* (JointGaussian.model())",
        "protocol": {"grid": "UniformGrid(n_times=100), midpoint", "n_grid_data": N_GRID, "n_is_data": N_IS,
                     "pilot": f"GeometricGrid(24, 1e-5) on {N_PILOT} data samples", "floor": 0.1,
                     "target_stderr_nats": TARGET,
                     "evals_for_target": "n_evals * (stderr / target)^2"},
        "results": results,
        "device": f"{device.platform}: {device.device_kind}",
        "versions": {"jax": jax.__version__, "equinox": eqx.__version__, "numpy": np.__version__,
                     "python": platform.python_version(), "package": getattr(gaussian_oracle, "__version__", None)},
        "dtype": "float64",
    }
    out = pathlib.Path(__file__).parent / "results" / "importance.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
