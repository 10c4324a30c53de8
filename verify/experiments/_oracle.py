"""The exact report: closed-form values, curves and figures of joint-Gaussian instances, no training."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from gaussian_oracle import JointGaussian, check_key

from .._figures import new_figure, plot_curves, save_figure
from .._report import check_instance, provenance, write_json

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
              s_end: float = 1e-3, key) -> dict:
    r"""Exact $I(X_{CFG}; Y)(w)$ for determinism instances, one row per $D_Y$ (the paper's Fig. 10, exact), in nats.

    Each row also holds the unguided $I(X;Y)$ (Eq. 49), $I(X_{s_end}; Y)$ and the flow started from the exact
    $p_T$ instead of $\mathcal N(0, I)$, so both truncation errors at w = 0 can be read off.
    """
    key = check_key(key)
    w = np.asarray(w, dtype=np.float64)
    rows = []
    for dim_y in dims_y:
        joint = JointGaussian.determinism(dim_x, dim_y, sigma_eps, key=key)
        rows.append({
            "dim_y": dim_y,
            "mutual_information": float(joint.mutual_information()),
            "mutual_information_at_s_end": float(joint.mutual_information() - joint.mutual_information_curve(s_end)),
            "cfg_mutual_information": joint.cfg_mutual_information(w, s_end).tolist(),
            "cfg_mutual_information_exact_start": joint.cfg_mutual_information(w, s_end, exact_start=True).tolist(),
        })
    return {"dim_x": dim_x, "sigma_eps": sigma_eps, "key": np.asarray(jax.random.key_data(key)).tolist(),
            "s_end": s_end, "w": w.tolist(), "rows": rows,
            "ground_truth": "exact (linear flow, no sampling); mutual_information is Eq. (49)"}


@dataclasses.dataclass(frozen=True)
class OracleConfig:
    """The exact report of one determinism instance and the paper's exact sweeps.

    **Arguments:**

    - `dim_x`, `dim_y`, `sigma_eps`: the determinism instance (Eq. 51).
    - `n_times`: points of the curves' time grid (at least 3).
    - `n_cfg`: CFG weights w on a uniform grid of [0, 20] (at least 2), or 0 to skip the CFG curve.
    """

    dim_x: int = 25
    dim_y: int = 15
    sigma_eps: float = 1.0
    n_times: int = 400
    n_cfg: int = 21

    def __post_init__(self):
        for name in ("dim_x", "dim_y"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}.")
        if isinstance(self.sigma_eps, bool) or not (isinstance(self.sigma_eps, (int, float))
                                                    and np.isfinite(self.sigma_eps) and self.sigma_eps > 0):
            raise ValueError(f"sigma_eps must be a finite number > 0; got {self.sigma_eps!r}.")
        if isinstance(self.n_times, bool) or not isinstance(self.n_times, int) or self.n_times < 3:
            raise ValueError(f"n_times must be an integer >= 3 (the time grid holds 0, a log part and a linear part); "
                             f"got {self.n_times!r}.")
        if isinstance(self.n_cfg, bool) or not isinstance(self.n_cfg, int) or self.n_cfg == 1 or self.n_cfg < 0:
            raise ValueError(f"n_cfg must be 0 (skip the CFG curve) or an integer >= 2; got {self.n_cfg!r}.")


def run(config: OracleConfig, out: str | Path, *, key, instance: Mapping | None = None) -> dict:
    """Write the exact report of `config` to `out` (results.json and PNG figures); `key` builds the instance.

    **Arguments:**

    - `config`: an `OracleConfig`.
    - `out`: the output folder.
    - `key`: the instance key, as in `JointGaussian.determinism(..., key=key)`.
    - `instance`: extra entries for the `instance` record (e.g. the CLI's seed).

    **Returns:**

    The results payload.
    """
    start = time.perf_counter()
    if not isinstance(config, OracleConfig):
        raise ValueError(f"config must be an OracleConfig; got {type(config).__name__}.")
    key = check_key(key)
    check_instance(instance)
    out = Path(out)
    g = JointGaussian.determinism(config.dim_x, config.dim_y, config.sigma_eps, key=key)
    times = time_grid(g.sde, config.n_times)
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
        h = JointGaussian.determinism(config.dim_x, config.dim_y, sigma, key=key)
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
        h = JointGaussian.flattening(50, 8, 10, lam, 1.0, key=key)
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
    if config.n_cfg:
        cfg = cfg_table(25, w=np.linspace(0.0, 20.0, config.n_cfg), key=key)  # the paper's Fig. 10 sizes, as before
        figures["cfg"] = plot_cfg_curve(cfg, out / "cfg.png")

    payload = {
        "experiment": "oracle",
        "instance": {"family": "determinism", "dim_x": g.dim_x, "dim_y": g.dim_y, "sigma_eps": g.sigma_eps,
                     "eps": 1e-3, **(instance or {}), "sde": {"beta_min": g.sde.beta_min, "beta_max": g.sde.beta_max, "T": g.sde.T}},
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
    return payload


def plot_cfg_curve(table: dict, path) -> Path:
    r"""Plot the exact $I(X_{CFG}; Y)(w)$, in nats, for each $D_Y$, with the unguided $I(X;Y)$ (Eq. 49) dashed.

    The left panel is the paper's Fig. 10 with exact values instead of MINDE estimates; the right panel divides
    by $I(X;Y)$ and shows the line $1 + w$ for comparison.

    **Arguments:**

    - `table`: the `cfg_table` entry of `benchmarks/results/oracle.json`: keys `w` (list), `dim_x`, and `rows`,
      each row with `dim_y`, `mutual_information` and `cfg_mutual_information` (one value per `w`).
    - `path`: where to write the PNG.

    **Returns:**

    The path written.
    """
    w = np.asarray(table["w"], dtype=float)
    rows = sorted(table["rows"], key=lambda row: row["dim_y"])
    if not rows:
        raise ValueError("table['rows'] is empty; nothing to plot.")
    from matplotlib import colormaps

    colors = colormaps["viridis"](np.linspace(0.1, 0.8, len(rows)))
    fig, axes = new_figure(1, 2, figsize=(10, 4))
    ax, ax_ratio = axes[0]
    for row, color in zip(rows, colors):
        info = np.asarray(row["cfg_mutual_information"], dtype=float)
        if info.shape != w.shape:
            raise ValueError(f"row dim_y={row['dim_y']} has {info.size} values for {w.size} values of w.")
        mi = float(row["mutual_information"])
        ax.plot(w, info, "o-", color=color, ms=3.5, lw=1.6, label=f"$D_Y = {row['dim_y']}$")
        ax.axhline(mi, color=color, ls="--", lw=1.0)
        ax_ratio.plot(w, info / mi, "o-", color=color, ms=3.5, lw=1.6, label=f"$D_Y = {row['dim_y']}$")
    ax_ratio.plot(w, 1.0 + w, ":", color="0.3", lw=1.2, label="$1 + w$")
    ax.set_xlabel("guidance strength $w$")
    ax.set_ylabel(r"$I(X_{\mathrm{CFG}}; Y)$  [nats]")
    ax.set_title(f"Exact CFG information, $D_X = {table.get('dim_x', '?')}$ (dashed: $I(X;Y)$ at $w = 0$)",
                 fontsize=10)
    ax_ratio.set_xlabel("guidance strength $w$")
    ax_ratio.set_ylabel(r"$I(X_{\mathrm{CFG}}; Y)\,/\,I(X;Y)$")
    ax_ratio.set_title("Relative gain: close to $1 + w$, no saturation", fontsize=10)
    for a in (ax, ax_ratio):
        a.set_xlim(w.min(), w.max())
        a.set_ylim(bottom=0)
        a.grid(alpha=0.3)
        a.legend(frameon=False, fontsize=9)
    return save_figure(fig, path, dpi=150)
