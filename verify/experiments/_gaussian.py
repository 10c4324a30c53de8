"""Learned-versus-exact experiments on the joint Gaussian (appendix D): train, estimate, compare, report.

The sweeps of the paper's Figs. 4 and 9-13 are families of instances (`Determinism`, `Flattening`, `CFG`, chosen
by name from `GAUSSIAN_FAMILIES`); `run_sweep` trains and measures one instance per value, `run_demo` one
determinism instance with a text report. Both return the results dict and write results.json and figures.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

import learned
from gaussian_oracle import VPSDE, Estimate, JointGaussian, check_key

from .._figures import plot_curves
from .._report import check_instance, provenance, write_json
from .._api import MINDE, information_estimates
from ..estimators import GeometricGrid, UniformGrid, neural_entropy

DEFAULT_TRAIN = learned.TrainConfig(
    steps=16_000, batch_size=256, lr=2e-3, warmup_steps=200, final_lr_fraction=0.02,
    steps_per_call=200, checkpoint_every=2_000, ema_decay=0.999,
)

_RESUME_MODES = ("auto", "overwrite", "unchecked")
"""What `resume` may be: the modes of `learned.train`."""


# ---------------------------------------------------------------------------------------------- checks
def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _positive_ints(owner: str, obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not _is_int(value) or value < 1:
            raise ValueError(f"{owner}.{name} must be a positive integer; got {value!r}.")


def _positive_number(owner: str, name: str, value) -> None:
    if not (_is_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"{owner}.{name} must be a finite number > 0; got {value!r}.")


def _swept(owner: str, name: str, values, *, positive: bool) -> None:
    """The swept values: a non-empty tuple of finite numbers (> 0 with `positive`), none repeated (each point writes
    to its own folder `<parameter>=<value:g>`)."""
    what = "finite numbers > 0" if positive else "finite numbers"
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{owner}.{name} must be a non-empty tuple of {what} (the swept values, e.g. "
                         f"{name}=(1.0, 0.5)); got {values!r}.")
    for v in values:
        if not (_is_real(v) and math.isfinite(v) and (v > 0 or not positive)):
            raise ValueError(f"{owner}.{name} must be a non-empty tuple of {what}; got {v!r} in {values!r}.")
    if len({f"{float(v):g}" for v in values}) != len(values):
        raise ValueError(f"{owner}.{name} must not repeat a value (to 6 significant digits: each point writes to "
                         f"its own folder {name}=<value:g>); got {values!r}.")


def _check_run_options(owner: str, obj) -> None:
    """`fit`, `checkpoint_dir` and `resume` of a `SweepConfig` or a `DemoConfig`."""
    if not isinstance(obj.fit, GaussianExperimentConfig):
        raise ValueError(f"{owner}.fit must be a GaussianExperimentConfig; got {obj.fit!r}.")
    if obj.checkpoint_dir is not None and not isinstance(obj.checkpoint_dir, (str, os.PathLike)):
        raise ValueError(f"{owner}.checkpoint_dir must be a path or None (no checkpoints); got {obj.checkpoint_dir!r}.")
    if not isinstance(obj.resume, str) or obj.resume not in _RESUME_MODES:
        raise ValueError(f"{owner}.resume must be one of {', '.join(map(repr, _RESUME_MODES))} (as in learned.train); "
                         f"got {obj.resume!r}.")


@dataclasses.dataclass(frozen=True)
class GaussianExperimentConfig:
    """How a learned model is fitted and measured on one joint-Gaussian instance.

    **Arguments:**

    - `n_train`: training pairs drawn from the instance (or from its CFG flow), at least 2.
    - `n_eval`: fresh pairs the estimators average over, at least 2 (for a standard error).
    - `width`, `depth`: the MLP's size.
    - `separate_networks`: two networks, X|Y and X, as the paper did; otherwise one network trained with
      condition dropout `condition_dropout` (a float in (0, 1)) gives both.
    - `train`: the optimiser settings of each network.
    - `n_times`: points of the uniform time grid (the paper's reference protocol uses 100 for Gaussians).
    - `precondition`: wrap each network in `learned.Preconditioned` (whitened inputs and outputs from the
      training data's covariance); `False` gives the plain MLP of the paper.

    Every field is checked when the config is made (one `ValueError` naming it), so a bad value stops a run before
    any training.
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

    def __post_init__(self):
        owner = "GaussianExperimentConfig"
        for name in ("n_train", "n_eval"):
            value = getattr(self, name)
            if not _is_int(value) or value < 2:
                what = "a standard error needs two pairs" if name == "n_eval" else "a covariance needs two pairs"
                raise ValueError(f"{owner}.{name} must be an integer >= 2 ({what}); got {value!r}.")
        _positive_ints(owner, self, "width", "depth", "n_times")
        for name in ("separate_networks", "precondition"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{owner}.{name} must be True or False; got {getattr(self, name)!r}.")
        p = self.condition_dropout
        if not (isinstance(p, float) and 0 < p < 1):  # what verify.MINDE takes
            raise ValueError(f"{owner}.condition_dropout must be a float in (0, 1); got {p!r}.")
        if not isinstance(self.train, learned.TrainConfig):
            raise ValueError(f"{owner}.train must be a learned.TrainConfig (e.g. DEFAULT_TRAIN); got {self.train!r}.")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["train"] = {k: v for k, v in dataclasses.asdict(self.train).items() if k != "progress"}
        return out


def estimator(config: GaussianExperimentConfig, sde) -> MINDE:
    """The public estimator (`verify.MINDE`) that fits the model(s) of `config` on the forward process `sde`: no
    transform (the joint-Gaussian data are already what the networks are built for) and no validation split (the
    paper's protocol trains on every pair; with 200,000 pairs there is nothing to guard against), and both networks
    whitened by Cov(x) without centring, the configuration the committed Gaussian results were measured with."""
    return MINDE(width=config.width, depth=config.depth, separate_networks=config.separate_networks,
                 condition_dropout=config.condition_dropout, precondition=config.precondition, transform=None,
                 validation_fraction=0.0, centre=False,
                 n_times=config.n_times, sde=sde, train=config.train, progress=config.train.progress)


def fit(
    x, y, sde, config: GaussianExperimentConfig, *, checkpoint_dir: Path | None = None, resume: str = "auto",
    key: PRNGKeyArray
) -> eqx.Module:
    """Train the entropy-matching model(s) of `config` on pairs (x, y); returns one protocol model.

    The public `verify.MINDE(...).fit` does the work (the one implementation of fitting): the likelihood weighting
    $\\lambda = \\sigma^2/2$, as in the paper's Gaussian experiments, with times drawn uniformly in log-SNR
    (`learned.LogSNRTime`), where the information lives. Each network checkpoints into its own subfolder of
    `checkpoint_dir` (if given); `resume` is passed to `learned.train`.
    """
    check_key(key)
    if not isinstance(config, GaussianExperimentConfig):
        raise ValueError(f"config must be a GaussianExperimentConfig; got {type(config).__name__}.")
    return estimator(config, sde).fit(x, y, checkpoint_dir=checkpoint_dir, resume=resume, key=key).model


def measure(model, x, y, *, n_times: int, key: PRNGKeyArray) -> dict[str, Estimate]:
    """S_NN, S_NN^{X|Y}, I_MINDE and I_diff of a protocol model on pairs (x, y) on the uniform time grid (the
    paper's reference protocol, `verify.information_estimates`), and both neural entropies again on a log-spaced
    grid down to s = 1e-8.

    The uniform grid's first cell cannot resolve the log-singular rate near s = 0 of nearly flat data: under
    flattening it loses 35 % of S_tot for the exact e* itself (`benchmarks/bench_time_grid.py`).
    """
    log_grid = GeometricGrid(n_times=2 * n_times, s_min=1e-8)
    k_four, k_sl, k_cl = jax.random.split(check_key(key), 3)
    return {
        **information_estimates(model, x, y, times=UniformGrid(n_times=n_times), key=k_four),
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
    checkpoint_dir: str | Path | None = "checkpoints",
    resume: str = "auto",
    key: PRNGKeyArray,
) -> dict:
    """Train on one instance, measure, and write `out/results.json` and `out/rates.png`.

    `sampler(n, key=...) -> (x, y)` replaces `joint.sample` (the CFG experiment trains on guided samples);
    `exact_override` then supplies the exact values those samples have. The networks' checkpoints go to
    `out / checkpoint_dir` (an absolute path is used as it is; `None`: no checkpoints). A checkpoint records what
    it was trained on, so a later run with another key, instance or configuration refuses it instead of
    silently resuming; `resume="overwrite"` trains afresh there (see `learned.train`).
    """
    start = time.perf_counter()
    key = check_key(key)
    if not isinstance(joint, JointGaussian):
        raise ValueError(f"joint must be a gaussian_oracle.JointGaussian; got {type(joint).__name__}.")
    if not isinstance(config, GaussianExperimentConfig):
        raise ValueError(f"config must be a GaussianExperimentConfig; got {type(config).__name__}.")
    if not isinstance(resume, str) or resume not in _RESUME_MODES:
        raise ValueError(f"resume must be one of {', '.join(map(repr, _RESUME_MODES))}; got {resume!r}.")
    out = Path(out)
    sample = sampler if sampler is not None else joint.sample
    k_data, k_fit, k_eval_data, k_measure = jax.random.split(key, 4)
    x, y = sample(config.n_train, key=k_data)
    model = fit(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), joint.sde, config,
                checkpoint_dir=None if checkpoint_dir is None else out / checkpoint_dir, resume=resume, key=k_fit)
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
        "checkpoints": None if checkpoint_dir is None else str(out / checkpoint_dir),
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


# ---------------------------------------------------------------------------------------------- families
@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One instance of a sweep: the swept `value`, the exact `joint`, its `instance` record, and optionally a
    `sampler(n, *, key) -> (x, y)` replacing `joint.sample` with the `exact` values of what it samples."""

    value: float
    joint: JointGaussian
    instance: dict
    sampler: Callable | None = None
    exact: dict | None = None


class AbstractFamily(abc.ABC):
    """A family of joint-Gaussian instances swept over one parameter (frozen dataclasses below)."""

    parameter: str
    log_x: bool = False

    @abc.abstractmethod
    def values(self) -> tuple[float, ...]:
        """The swept values, in order."""

    @abc.abstractmethod
    def points(self, *, key: PRNGKeyArray) -> Iterator[SweepPoint]:
        """The instances, built from `key` (the same key for every value, so only the parameter changes)."""


@dataclasses.dataclass(frozen=True)
class Determinism(AbstractFamily):
    """$Y = AX + \\varepsilon$ with a random A, swept over the noise $\\sigma_\\varepsilon$ (Eq. 51; Figs. 4, 9, 11, 12)."""

    dim_x: int = 25
    dim_y: int = 15
    sigma_eps: tuple[float, ...] = (1.0, 0.6, 0.25)
    parameter = "sigma_eps"

    def __post_init__(self):
        _positive_ints("Determinism", self, "dim_x", "dim_y")
        _swept("Determinism", "sigma_eps", self.sigma_eps, positive=True)

    def values(self):
        return tuple(self.sigma_eps)

    def points(self, *, key):
        for sigma in self.sigma_eps:
            joint = JointGaussian.determinism(self.dim_x, self.dim_y, sigma, key=key)
            yield SweepPoint(sigma, joint, {"family": "determinism", "dim_x": self.dim_x, "dim_y": self.dim_y,
                                            "sigma_eps": sigma, "eps": 1e-3})


@dataclasses.dataclass(frozen=True)
class Flattening(AbstractFamily):
    """Data flattened onto k directions, swept over the small eigenvalue $\\lambda_\\delta$ (Eq. 52; Fig. 13)."""

    dim_x: int = 25
    dim_y: int = 15
    k: int = 10
    lambda_delta: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    sigma_eps: float = 1.0
    parameter = "lambda_delta"
    log_x = True

    def __post_init__(self):
        _positive_ints("Flattening", self, "dim_x", "dim_y")
        if not _is_int(self.k) or not 1 <= self.k <= self.dim_x:
            raise ValueError(f"Flattening.k must be an integer in 1..dim_x = {self.dim_x} (the large eigenvalues); "
                             f"got {self.k!r}.")
        _swept("Flattening", "lambda_delta", self.lambda_delta, positive=True)
        _positive_number("Flattening", "sigma_eps", self.sigma_eps)

    def values(self):
        return tuple(self.lambda_delta)

    def points(self, *, key):
        for lam in self.lambda_delta:
            joint = JointGaussian.flattening(self.dim_x, self.dim_y, self.k, lam, self.sigma_eps, key=key)
            yield SweepPoint(lam, joint, {"family": "flattening", "dim_x": self.dim_x, "dim_y": self.dim_y,
                                          "sigma_eps": self.sigma_eps, "k": self.k, "lambda_delta": lam, "eps": 1e-6})


@dataclasses.dataclass(frozen=True)
class CFG(AbstractFamily):
    """Networks trained on exact classifier-free-guided samples of a determinism instance, swept over $w$ (Fig. 10).

    The samples are the exact guided probability-flow map (`JointGaussian.cfg_sample`), so the truth is the exact
    $I(X_{CFG}; Y)(w)$.
    """

    dim_x: int = 25
    dim_y: int = 15
    sigma_eps: float = 1.0
    w: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 6.0)
    s_end: float = 1e-3
    parameter = "w"

    def __post_init__(self):
        _positive_ints("CFG", self, "dim_x", "dim_y")
        _positive_number("CFG", "sigma_eps", self.sigma_eps)
        _swept("CFG", "w", self.w, positive=False)
        T = VPSDE().T  # the process of JointGaussian.determinism
        if not (_is_real(self.s_end) and 0 < self.s_end < T):
            raise ValueError(f"CFG.s_end must be a number in (0, T) = (0, {T}) (where the guided flow stops); "
                             f"got {self.s_end!r}.")

    def values(self):
        return tuple(self.w)

    def points(self, *, key):
        joint = JointGaussian.determinism(self.dim_x, self.dim_y, self.sigma_eps, key=key)
        for w in self.w:
            def sampler(n, *, key, w=w):
                k_y, k_flow = jax.random.split(key)
                _, y = joint.sample(n, key=k_y)
                return joint.cfg_sample(y, w, key=k_flow, s_end=self.s_end), y

            exact = {"exact": joint.cfg_mutual_information(w, self.s_end), "exact_unguided": joint.mutual_information()}
            yield SweepPoint(w, joint, {"family": "determinism", "dim_x": self.dim_x, "dim_y": self.dim_y,
                                        "sigma_eps": self.sigma_eps, "eps": 1e-3, "w": w, "s_end": self.s_end},
                             sampler, exact)


GAUSSIAN_FAMILIES: Mapping[str, type[AbstractFamily]] = MappingProxyType(
    {"determinism": Determinism, "flattening": Flattening, "cfg": CFG})
"""The sweep families by name (what `separability gaussian --experiment NAME` runs)."""


# ---------------------------------------------------------------------------------------------- runs
@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A Gaussian sweep: the `family` (its instances and swept values), how each instance is fitted (`fit`), and
    where each point's checkpoints go (`checkpoint_dir`, relative to the point's folder; an absolute path gets one
    subfolder per point; `None`: none) and what to do with checkpoints already there (`resume`, as in
    `learned.train`)."""

    family: AbstractFamily
    fit: GaussianExperimentConfig = GaussianExperimentConfig()
    checkpoint_dir: str | None = "checkpoints"
    resume: str = "auto"

    def __post_init__(self):
        if not isinstance(self.family, AbstractFamily):
            raise ValueError(f"SweepConfig.family must be a family such as Determinism() (an instance; "
                             f"GAUSSIAN_FAMILIES maps each name to its class); got {self.family!r}.")
        _check_run_options("SweepConfig", self)


def _keys(key: PRNGKeyArray) -> tuple[PRNGKeyArray, PRNGKeyArray]:
    """The instance key is `key` itself (so `jax.random.key(seed)` rebuilds the instance); training uses a fold of it."""
    return key, jax.random.fold_in(key, 1)


def _sweep_figure(points: list[dict], xs, xlabel: str, path: Path, *, log_x: bool, cfg: bool) -> Path:
    def series(quantity, name):
        blocks = [p["quantities"][quantity] for p in points]
        return (np.array([b["exact"] for b in blocks]), np.array([b[name]["value"] for b in blocks]),
                np.array([b[name]["stderr"] for b in blocks]))

    specs = ((("$I(X_{CFG}; Y)$", "mutual_information", ("minde", "difference")),) if cfg else
             (("$S^X$", "total_entropy", ("neural",)), ("$S^{X|Y}$", "conditional_total_entropy", ("neural",)),
              ("$I(X;Y)$", "mutual_information", ("minde", "difference"))))
    panels = []
    for title, quantity, names in specs:
        curves = []
        for i, name in enumerate(names):
            exact, value, se = series(quantity, name)
            if i == 0:
                curves.append({"label": "exact", "y": exact, "exact": True, "color": "k"})
            curves.append({"label": name, "y": value, "stderr": se, "color": f"C{i}"})
        panels.append((title, "nats", curves))
    return plot_curves(xs, panels, path, xlabel=xlabel, log_x=log_x)


def run_sweep(config: SweepConfig, out: str | Path, *, key: PRNGKeyArray, instance: Mapping | None = None,
              on_point: Callable[[dict, Path], None] | None = None) -> dict:
    """Train and measure every instance of `config.family`; write one results.json per point (in `out` itself for
    a single point, else in `out/<parameter>=<value>/`), and for several points `out/summary.json` and `sweep.png`.

    **Arguments:**

    - `config`: a `SweepConfig`.
    - `out`: the output folder.
    - `key`: the instance key (`jax.random.key(seed)` rebuilds the instances); training uses `fold_in(key, 1)`.
    - `instance`: extra entries for every point's `instance` record (e.g. the CLI's seed).
    - `on_point`: called as `on_point(payload, folder)` after each point (the CLI prints a summary).

    **Returns:**

    `{"points": [payload, ...]}` (and `"summary"` for several points).
    """
    start = time.perf_counter()
    if not isinstance(config, SweepConfig):
        raise ValueError(f"config must be a SweepConfig; got {type(config).__name__}.")
    key = check_key(key)
    check_instance(instance)
    if on_point is not None and not callable(on_point):
        raise ValueError(f"on_point must be callable as on_point(payload, folder), or None; got {on_point!r}.")
    out = Path(out)
    family = config.family
    instance_key, train_key = _keys(key)
    values = family.values()
    points = []
    for point in family.points(key=instance_key):
        sub = out if len(values) == 1 else out / f"{family.parameter}={point.value:g}"
        experiment = "cfg" if isinstance(family, CFG) else point.instance["family"]
        ckpt = config.checkpoint_dir
        if ckpt is not None and Path(ckpt).is_absolute() and len(values) > 1:
            ckpt = Path(ckpt) / sub.name
        payload = run_instance(point.joint, {**point.instance, **(instance or {})}, config.fit, sub,
                               experiment=experiment, sampler=point.sampler, exact_override=point.exact,
                               checkpoint_dir=ckpt, resume=config.resume, key=train_key)
        points.append(payload)
        if on_point is not None:
            on_point(payload, sub)
    result: dict = {"points": points}
    if len(points) > 1:
        summary = {
            "experiment": "cfg" if isinstance(family, CFG) else type(family).__name__.lower(),
            "parameter": family.parameter, "values": list(values),
            "points": [{"instance": p["instance"], "quantities": p["quantities"]} for p in points],
            **provenance(start),
        }
        _sweep_figure(points, np.asarray(values), family.parameter, out / "sweep.png", log_x=family.log_x,
                      cfg=isinstance(family, CFG))
        write_json(out / "summary.json", summary)
        result["summary"] = summary
    return result


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The main job: one determinism instance ($D_X = 25$, $D_Y = 15$, $\\sigma_\\varepsilon = 1$ by default)."""

    dim_x: int = 25
    dim_y: int = 15
    sigma_eps: float = 1.0
    fit: GaussianExperimentConfig = GaussianExperimentConfig()
    checkpoint_dir: str | None = "checkpoints"
    resume: str = "auto"

    def __post_init__(self):
        _positive_ints("DemoConfig", self, "dim_x", "dim_y")
        _positive_number("DemoConfig", "sigma_eps", self.sigma_eps)
        _check_run_options("DemoConfig", self)


def run_demo(config: DemoConfig, out: str | Path, *, key: PRNGKeyArray, instance: Mapping | None = None) -> dict:
    """Train the two MLPs on one determinism instance and write results.json, rates.png and report.txt.

    **Arguments:**

    - `config`: a `DemoConfig`.
    - `out`: the output folder.
    - `key`: the instance key (`jax.random.key(seed)`); training uses `fold_in(key, 1)`.
    - `instance`: extra entries for the `instance` record (e.g. the CLI's seed).

    **Returns:**

    The results payload.
    """
    if not isinstance(config, DemoConfig):
        raise ValueError(f"config must be a DemoConfig; got {type(config).__name__}.")
    key = check_key(key)
    check_instance(instance)
    out = Path(out)
    family = Determinism(config.dim_x, config.dim_y, (config.sigma_eps,))
    instance_key, train_key = _keys(key)
    point = next(family.points(key=instance_key))
    payload = run_instance(point.joint, {**point.instance, **(instance or {})}, config.fit, out, experiment="demo",
                           checkpoint_dir=config.checkpoint_dir, resume=config.resume, key=train_key)
    head = ", ".join(f"{k}={v}" for k, v in payload["instance"].items())
    report = [f"separability demo: {head}", f"device {payload['device']}; wall time {payload['wall_time_s']:.0f} s",
              ""] + summary_lines(payload)
    (out / "report.txt").write_text("\n".join(report) + "\n")
    return payload
