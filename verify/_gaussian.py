"""Learned-versus-exact experiments on the joint Gaussian (appendix D): train, estimate, compare, report."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

import learned
from gaussian_oracle import Estimate, JointGaussian

from ._estimators import mutual_information_difference, mutual_information_minde, neural_entropy
from ._figures import plot_curves
from ._report import provenance, write_json
from ._time import GeometricGrid, UniformGrid

DEFAULT_TRAIN = learned.TrainConfig(
    steps=16_000, batch_size=256, lr=2e-3, warmup_steps=200, final_lr_fraction=0.02,
    steps_per_call=200, checkpoint_every=2_000, ema_decay=0.999,
)


@dataclasses.dataclass(frozen=True)
class GaussianExperimentConfig:
    """How a learned model is fitted and measured on one joint-Gaussian instance.

    **Arguments:**

    - `n_train`: training pairs drawn from the instance (or from its CFG flow).
    - `n_eval`: fresh pairs the estimators average over.
    - `width`, `depth`: the MLP's size.
    - `separate_networks`: two networks, X|Y and X, as the paper did; otherwise one network trained with
      condition dropout `condition_dropout` gives both.
    - `train`: the optimiser settings of each network.
    - `n_times`: points of the uniform time grid (the paper's reference protocol uses 100 for Gaussians).
    - `precondition`: wrap each network in `learned.Preconditioned` (whitened inputs and outputs from the
      training data's covariance); `False` gives the plain MLP of the paper.
    """

    n_train: int = 200_000
    n_eval: int = 2_000
    width: int = 256
    depth: int = 3
    separate_networks: bool = True
    condition_dropout: float = 0.2
    train: learned.TrainConfig = DEFAULT_TRAIN
    n_times: int = 100
    precondition: bool = True

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["train"] = {k: v for k, v in dataclasses.asdict(self.train).items() if k != "progress"}
        return out


def fit(
    x, y, sde, config: GaussianExperimentConfig, *, checkpoint_dir: Path | None = None, key: PRNGKeyArray
) -> eqx.Module:
    """Train the entropy-matching model(s) of `config` on pairs (x, y); returns one protocol model.

    The likelihood weighting $\\lambda = \\sigma^2/2$ is used, as in the paper's Gaussian experiments, with
    times drawn uniformly in log-SNR (`learned.LogSNRTime`), where the information lives.
    """
    dim_x, dim_y = x.shape[1], y.shape[1]
    weighting = learned.Likelihood(sde)
    times = learned.LogSNRTime()
    k_init_c, k_init_u, k_train_c, k_train_u = jax.random.split(key, 4)

    def ckpt(name):
        return None if checkpoint_dir is None else Path(checkpoint_dir) / name

    def wrap(network):
        # Both networks are whitened by the covariance of x: the within-condition covariance (fit with y) was
        # measured no better on the demo problem (I_MINDE -1.36 % vs -1.25 %).
        return learned.Preconditioned.fit(network, x) if config.precondition else network

    conditional = wrap(learned.EntropyMLP(
        learned.MLPConfig(dim_x=dim_x, dim_y=dim_y, width=config.width, depth=config.depth), sde, key=k_init_c
    ).standardise_condition(y))
    if not config.separate_networks:
        loss = learned.DEMLoss(weighting, times, condition_dropout=config.condition_dropout)
        return learned.train(conditional, x, y, config=config.train, loss=loss, checkpoint_dir=ckpt("joint"),
                             key=k_train_c).ema_model
    unconditional = wrap(learned.EntropyMLP(
        learned.MLPConfig(dim_x=dim_x, width=config.width, depth=config.depth), sde, key=k_init_u
    ))
    loss = learned.DEMLoss(weighting, times)
    cond = learned.train(conditional, x, y, config=config.train, loss=loss, checkpoint_dir=ckpt("conditional"),
                         key=k_train_c).ema_model
    unc = learned.train(unconditional, x, None, config=config.train, loss=loss, checkpoint_dir=ckpt("unconditional"),
                        key=k_train_u).ema_model
    return learned.Pair(unc, cond)


def measure(model, x, y, *, n_times: int, key: PRNGKeyArray) -> dict[str, Estimate]:
    """S_NN, S_NN^{X|Y}, I_MINDE and I_diff of a protocol model on pairs (x, y) on the uniform time grid (the
    paper's reference protocol), and both neural entropies again on a log-spaced grid down to s = 1e-8.

    The uniform grid's first cell cannot resolve the log-singular rate near s = 0 of nearly flat data: under
    flattening it loses 35 % of S_tot for the exact e* itself (`benchmarks/bench_time_grid.py`).
    """
    grid = UniformGrid(n_times=n_times)
    log_grid = GeometricGrid(n_times=2 * n_times, s_min=1e-8)
    k_s, k_c, k_m, k_d, k_sl, k_cl = jax.random.split(key, 6)
    return {
        "neural": neural_entropy(model, x, times=grid, key=k_s),
        "conditional_neural": neural_entropy(model, x, y=y, times=grid, key=k_c),
        "minde": mutual_information_minde(model, x, y, times=grid, key=k_m),
        "difference": mutual_information_difference(model, x, y, times=grid, key=k_d),
        "neural_log_grid": neural_entropy(model, x, times=log_grid, key=k_sl),
        "conditional_neural_log_grid": neural_entropy(model, x, y=y, times=log_grid, key=k_cl),
    }


def _entry(exact: float, estimate: Estimate) -> dict:
    out = estimate.to_dict()
    out["relative_error"] = (estimate.value - exact) / exact if exact else None
    out["z"] = estimate.z_score(exact)
    return out


def quantities(joint: JointGaussian, est: dict[str, Estimate]) -> dict:
    """The results.json `quantities` block: exact values (T -> infinity closed forms) beside each estimate."""
    T = joint.sde.T
    mi, s_x, s_xy = joint.mutual_information(), joint.total_entropy(), joint.conditional_total_entropy()
    return {
        "mutual_information": {
            "exact": mi, "exact_at_T": joint.mutual_information_curve(T),
            "minde": _entry(mi, est["minde"]), "difference": _entry(mi, est["difference"]),
        },
        "total_entropy": {"exact": s_x, "exact_at_T": joint.total_entropy_curve(T), "neural": _entry(s_x, est["neural"]),
                          "neural_log_grid": _entry(s_x, est["neural_log_grid"])},
        "conditional_total_entropy": {
            "exact": s_xy, "exact_at_T": joint.conditional_total_entropy_curve(T),
            "neural": _entry(s_xy, est["conditional_neural"]),
            "neural_log_grid": _entry(s_xy, est["conditional_neural_log_grid"]),
        },
    }


def curves(joint: JointGaussian, est: dict[str, Estimate]) -> dict:
    """Learned rate curves on the grid, each beside the exact rate at the same times."""
    times = est["neural"].times
    out = {"times": times}
    for name, exact_rate in (("neural", joint.entropy_rate), ("conditional_neural", joint.conditional_entropy_rate),
                             ("minde", joint.mutual_information_rate)):
        e = est[name]
        out[name] = {"rate": e.rate, "rate_stderr": e.rate_stderr, "exact_rate": exact_rate(times),
                     "cumulative": e.cumulative, "cumulative_stderr": e.cumulative_stderr}
    return out


def plot_rates(curve: dict, path: Path, title: str) -> Path:
    """Exact (dashed) and learned (solid, ±2 stderr band) rate curves of one instance."""
    panels = []
    for name, label in (("neural", "entropy rate  $S_{NN}^X$"), ("conditional_neural", "conditional  $S_{NN}^{X|Y}$"),
                        ("minde", "MINDE integrand  $I(X;Y)$")):
        c = curve[name]
        panels.append((label, "nats per unit s", [
            {"label": "exact", "y": c["exact_rate"], "exact": True, "color": "k"},
            {"label": "learned", "y": c["rate"], "stderr": c["rate_stderr"], "color": "C0"},
        ]))
    return plot_curves(curve["times"], panels, path, title=title, log_x=True)


def run_instance(
    joint: JointGaussian,
    instance: dict,
    config: GaussianExperimentConfig,
    out: Path,
    *,
    experiment: str,
    sampler: Callable | None = None,
    exact_override: dict | None = None,
    key: PRNGKeyArray,
) -> dict:
    """Train on one instance, measure, and write `out/results.json` and `out/rates.png`.

    `sampler(n, key=...) -> (x, y)` replaces `joint.sample` (the CFG experiment trains on guided samples);
    `exact_override` then supplies the exact values those samples have.
    """
    start = time.perf_counter()
    out = Path(out)
    sample = sampler if sampler is not None else joint.sample
    k_data, k_fit, k_eval_data, k_measure = jax.random.split(key, 4)
    x, y = sample(config.n_train, key=k_data)
    model = fit(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), joint.sde, config,
                checkpoint_dir=out / "checkpoints", key=k_fit)
    xe, ye = sample(config.n_eval, key=k_eval_data)
    est = measure(model, jnp.asarray(xe, jnp.float32), jnp.asarray(ye, jnp.float32), n_times=config.n_times, key=k_measure)
    q = quantities(joint, est)
    if exact_override:
        q = {"mutual_information": {**exact_override, "minde": _entry(exact_override["exact"], est["minde"]),
                                    "difference": _entry(exact_override["exact"], est["difference"])},
             "total_entropy": {"neural": est["neural"].to_dict(), "neural_log_grid": est["neural_log_grid"].to_dict()},
             "conditional_total_entropy": {"neural": est["conditional_neural"].to_dict(),
                                           "neural_log_grid": est["conditional_neural_log_grid"].to_dict()}}
    curve = curves(joint, est)
    figure = plot_rates(curve, out / "rates.png", title=f"{experiment}: " + ", ".join(f"{k}={v}" for k, v in instance.items()))
    payload = {
        "experiment": experiment,
        "instance": instance,
        "quantities": q,
        "curves": curve if not exact_override else None,
        "config": config.to_dict(),
        "figures": [figure.name],
        "units": "nats",
        **provenance(start),
    }
    write_json(out / "results.json", payload)
    return payload


def summary_lines(payload: dict) -> list[str]:
    """A short text report: each learned number beside its exact value."""
    q = payload["quantities"]
    rows = [
        ("S_NN^X      (Eq. 11)", q["total_entropy"], "neural"),
        ("S_NN^(X|Y)  (Eq. 11)", q["conditional_total_entropy"], "neural"),
        ("S_NN^X      log grid", q["total_entropy"], "neural_log_grid"),
        ("S_NN^(X|Y)  log grid", q["conditional_total_entropy"], "neural_log_grid"),
        ("I_MINDE     (Eq. 13)", q["mutual_information"], "minde"),
        ("I_diff      (Eq. 46)", q["mutual_information"], "difference"),
    ]
    lines = [f"{'quantity':22s} {'exact':>10s} {'learned':>10s} {'stderr':>8s} {'rel.err':>8s}"]
    for label, block, key in rows:
        e = block[key]
        exact = block.get("exact")
        rel = f"{100 * e['relative_error']:+7.2f}%" if e.get("relative_error") is not None else ""
        exact_s = f"{exact:10.4f}" if exact is not None else f"{'':>10s}"
        lines.append(f"{label:22s} {exact_s} {e['value']:10.4f} {e['stderr']:8.4f} {rel}")
        for flag in e.get("flags", []):
            lines.append(f"    FLAG: {flag}")
    return lines
