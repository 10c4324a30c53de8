r"""The information budget (Sec. 4, Eq. 7): how much of a model's neural entropy is total correlation, how much
is mutual information with the label, and where in time each part lives.

For an image model (trained by the images experiment, `ImageExperiment`, whose results and checkpoint land in
`out/images`): $S_{NN}^X$, $S_{NN}^{X|Y}$, the exact marginal sum $\sum_k KL_k$, $TC = S_{NN}^X - \sum_k KL_k$ and
$I(X;Y)$ by MINDE (with the classifier bounds), each as a total over $[s_{\min}, T]$ and split at $\tau$ into the
semantic ($s \ge \tau$) and perceptual ($s < \tau$) parts, with the shares $TC/S_{NN}$ and $I/S_{NN}$, and their curves
over s (`budget.png`, the paper's Fig. 16 with TC and the marginals added). Beside $S_{NN}^X(s \to T)$ it draws the
memorisation ceiling $D_{KL}(p_s\|\mathcal N) - D_{KL}(p_T\|\mathcal N)$ of the training images diffused exactly
(`gaussian_oracle.EmpiricalMixture.kl_divergence`, Monte Carlo over exact densities): what a network that memorised
its training set would hold from s to T. With `gaussian=True` the same budget of the oracle's joint Gaussians (exact
$e^*$, closed-form marginals) beside the closed forms.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

import learned
from gaussian_oracle import EmpiricalMixture, Estimate, JointGaussian, VPSDE, marginal_kl_curves

from .._figures import plot_curves
from .._report import provenance, write_json
from ..estimators import InformationBudget, geometric_grid_through, information_budget
from . import _images
from ._images import Bounds, ImageExperiment

__all__ = ["BudgetConfig", "run"]

_QUANTITIES = ("neural_entropy", "conditional_neural_entropy", "marginal_sum", "total_correlation",
               "mutual_information")
_PIECES = ("total", "semantic", "perceptual")
_CEILING_CHUNK = 250
_GRID_DEFINITIONS = {
    "grid_error": "curves.<name>.grid_error: the estimated quadrature error, at each node, of the curve accumulated "
                  "from s to T on the time grid (tail_quadrature_error of the curve's mean rate; TC's is S_NN^X's, "
                  "the marginal sum being exact), which the stderr does not cover; curves.<name>.grid_error_noise: "
                  "what the same estimate gives for the rate's sampling noise alone (it does not shrink with more "
                  "cells)",
    "S_NN_X_grid_limited_from_s": "the smallest grid time at which S_NN^X(s -> T)'s grid_error less its "
                                  "grid_error_noise exceeds its stderr: there the curve is limited by the time grid, "
                                  "not by the samples, and a grid with more cells (n_times) resolves it; None if at no "
                                  "node (the curve's flags give the count and s range)",
    "S_NN_X_grid_error_max": "the largest grid_error of S_NN^X(s -> T) over the grid's nodes, nats",
}


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    r"""The budget experiment (frozen).

    **Arguments:**

    - `image`: the image experiment that trains the model (its data set, network, training, bounds classifier,
      checkpoints); unused with `gaussian=True`.
    - `tau`: the split time between the perceptual ($s < \tau$) and semantic ($s \ge \tau$) parts.
    - `n_times`, `s_min`: the log-spaced grid of the budget (its lower end moved to the nearest point that puts
      `tau` on a cell edge, `geometric_grid_through`).
    - `chunk_size`: images per compiled call.
    - `gaussian`: budget the oracle's joint Gaussians instead (exact $e^*$, no training).
    - `gaussian_samples`: data samples per Gaussian instance; `gaussian_dims`: (dim_x, dim_y).
    - `ceiling_samples`: Monte Carlo samples of the memorisation ceiling (a multiple of 250; 0 skips it).
    """

    image: ImageExperiment | None = None
    tau: float = 0.1
    n_times: int = 64
    s_min: float = 1e-3
    chunk_size: int = 32
    gaussian: bool = False
    gaussian_samples: int = 2000
    gaussian_dims: tuple[int, int] = (10, 4)
    ceiling_samples: int = 2000

    def __post_init__(self):
        if not self.gaussian:
            if not isinstance(self.image, ImageExperiment):
                raise ValueError("BudgetConfig.image must be an ImageExperiment (or set gaussian=True).")
            if self.image.checkpoint_dir is None:
                raise ValueError("the budget reads the trained network back from the images experiment's checkpoint: "
                                 "BudgetConfig.image.checkpoint_dir must not be None.")
        for name in ("n_times", "chunk_size", "gaussian_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"BudgetConfig.{name} must be an integer >= 2; got {value!r}.")
        c = self.ceiling_samples
        if isinstance(c, bool) or not isinstance(c, int) or c < 0 or c % _CEILING_CHUNK:
            raise ValueError(f"BudgetConfig.ceiling_samples must be 0 or a positive multiple of {_CEILING_CHUNK}; "
                             f"got {c!r}.")
        if not 0 < self.s_min < self.tau < 1.0:
            raise ValueError(f"BudgetConfig needs 0 < s_min < tau < T = 1; got s_min={self.s_min}, tau={self.tau}.")


def _table(budget: InformationBudget) -> dict:
    return {q: {p: budget.parts[q][p].to_dict() for p in _PIECES} for q in _QUANTITIES}


def _flags(budget: InformationBudget) -> list[str]:
    out = [f for q in budget.parts.values() for e in q.values() for f in e.flags]
    out += [f for q in budget.fractions.values() for e in q.values() for f in e.flags]
    return out + list(budget.curves["total_correlation"].flags)


def _plot(budget: InformationBudget, path: Path, title: str, exact: dict | None = None,
          ceiling: Estimate | None = None) -> Path:
    c = budget.curves
    times = c["neural_entropy"].times

    def curve(name, label):
        return {"label": label, "y": c[name].cumulative, "stderr": c[name].cumulative_stderr}

    tails = [curve("neural_entropy", r"$S^X_{NN}(s\to T)$"),
             curve("conditional_neural_entropy", r"$S^{X|Y}_{NN}(s\to T)$"),
             {"label": r"$\sum_k KL_k(s)$ (exact)", "y": budget.marginal_sum},
             curve("total_correlation", r"$TC(X_s)$"), curve("mutual_information", r"$I(X_s;Y)$")]
    if ceiling is not None:
        tails.append({"label": "memorisation ceiling", "y": ceiling.cumulative, "stderr": ceiling.cumulative_stderr,
                      "exact": True, "color": "C7"})
    for name, values in (exact or {}).items():
        tails.append({"label": f"{name} (closed form)", "y": values, "exact": True, "color": "k"})
    rates = [{"label": r"$S^X_{NN}$ rate", "y": c["neural_entropy"].rate, "stderr": c["neural_entropy"].rate_stderr},
             {"label": r"$S^{X|Y}_{NN}$ rate", "y": c["conditional_neural_entropy"].rate,
              "stderr": c["conditional_neural_entropy"].rate_stderr},
             {"label": "MINDE integrand", "y": c["mutual_information"].rate,
              "stderr": c["mutual_information"].rate_stderr}]
    s_tail = c["neural_entropy"].cumulative
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = [{"label": r"$TC(X_s)/S^X_{NN}(s\to T)$", "y": c["total_correlation"].cumulative / s_tail},
                  {"label": r"$I(X_s;Y)/S^X_{NN}(s\to T)$", "y": c["mutual_information"].cumulative / s_tail}]
    return plot_curves(times, [("accumulated from s to T (Eq. 7)", "nats", tails),
                               ("rates (cf. Fig. 16)", "nats per unit s", rates),
                               ("shares of the neural entropy", "fraction", shares)],
                       path, title=f"{title}  (tau = {budget.tau:.3g})", log_x=True)


def _summary(budget: InformationBudget) -> dict:
    p, f = budget.parts, budget.fractions
    tc = budget.curves["total_correlation"]
    negative = np.flatnonzero(tc.cumulative < -2.0 * tc.cumulative_stderr)
    limited = np.flatnonzero(budget.grid_limited("neural_entropy"))
    return {"S_NN_X": p["neural_entropy"]["total"].value, "marginal_sum": p["marginal_sum"]["total"].value,
            "TC": p["total_correlation"]["total"].value, "I_MINDE": p["mutual_information"]["total"].value,
            "TC_share": f["total_correlation"]["total"].value, "I_share": f["mutual_information"]["total"].value,
            "TC_dominates": bool(p["total_correlation"]["total"].value > 0.5 * p["neural_entropy"]["total"].value),
            "TC_dominates_definition": "TC total > half of S_NN^X total",
            "TC_curve_negative_up_to_s": None if not negative.size else float(tc.times[negative].max()),
            "S_NN_X_grid_limited_from_s": None if not limited.size else float(tc.times[limited].min()),
            "S_NN_X_grid_error_max": float(np.max(budget.grid_error["neural_entropy"]))}


def memorisation_ceiling(points, labels, sde: VPSDE, times: np.ndarray, *, n: int,
                         key: PRNGKeyArray) -> tuple[Estimate, Estimate]:
    r"""$D_{KL}(p_s\|\mathcal N(0, I)) - D_{KL}(p_T\|\mathcal N(0, I))$ of the points diffused exactly, at `times`: the
    $S_{tot}(s \to T)$ of the empirical distribution, i.e. what a network that memorised `points` would give for
    $S_{NN}^X(s \to T)$. Monte Carlo over exact densities (`EmpiricalMixture.kl_divergence`, the same draws at every
    time); the stderr adds the two terms' in quadrature (conservative: the common draws correlate them).
    Returns the curve and $D_{KL}(p_T\|\mathcal N(0, I))$ itself."""
    at = np.append(np.asarray(times, np.float64), sde.T)
    kl = EmpiricalMixture(points, labels, sde).kl_divergence(at, n=n, key=key, chunk=min(n, _CEILING_CHUNK))
    se = np.hypot(kl.cumulative_stderr[:-1], kl.cumulative_stderr[-1])
    curve = kl.cumulative[:-1] - kl.cumulative[-1]
    return (Estimate(curve[0], se[0], times=at[:-1], cumulative=curve, cumulative_stderr=se, n_evals=n * at.size),
            Estimate(kl.cumulative[-1], kl.cumulative_stderr[-1]))


def _ceiling_block(ceiling: Estimate, budget: InformationBudget, kl_at_T: dict, n_points: int, n: int) -> dict:
    s_x = budget.curves["neural_entropy"]
    resolved = ceiling.cumulative > 4.0 * ceiling.cumulative_stderr
    unresolved = np.flatnonzero(~resolved)
    below = np.flatnonzero(s_x.cumulative > ceiling.cumulative + 2.0 * np.hypot(s_x.cumulative_stderr,
                                                                                 ceiling.cumulative_stderr))
    return {"definition": "KL(p_s || N(0, I)) - KL(p_T || N(0, I)) of the training images diffused exactly (a mixture "
                          "of N(mu(s) x_i, (1 - mu(s)^2) I)): the S_NN^X(s -> T) of a network that memorised them; "
                          "Monte Carlo over exact densities, same draws at every time",
            "points": f"the {n_points} training images of the budgeted network's S_NN^X", "samples": n,
            "kl_at_T": kl_at_T,
            "times": ceiling.times, "cumulative": ceiling.cumulative, "cumulative_stderr": ceiling.cumulative_stderr,
            "relative_stderr_max_where_resolved": float(np.max(
                ceiling.cumulative_stderr[resolved] / ceiling.cumulative[resolved], initial=0.0)),
            "unresolved_from_s": None if not unresolved.size else float(ceiling.times[unresolved.min()]),
            "unresolved_definition": "the smallest grid time from which on some value is within 4 stderr of 0 (the "
                                     "ceiling vanishes towards T); below it every node is resolved",
            "S_NN_X_above_ceiling_at_s": ceiling.times[below].tolist(),
            "S_NN_X_above_ceiling_definition": "grid times where the learned S_NN^X(s -> T) (held-out images) exceeds "
                                               "the ceiling by more than 2 combined stderr: no contradiction (the "
                                               "ceiling is of the training points), but what the network holds there "
                                               "beyond a memorised training set is mostly its own fit error"}


# ---------------------------------------------------------------------------------------------- images
def _run_images(config: BudgetConfig, out: Path, key: PRNGKeyArray, data: learned.ImageData | None,
                instance: dict | None) -> dict:
    start = time.perf_counter()
    image = config.image
    if data is None:
        data = _images.configured_data(image)
    # the images experiment gets `key` itself, so its run (and checkpoint) is `separability images`'s with this seed
    k_img, k_budget = key, jax.random.fold_in(key, 1)
    images_out = out / "images"
    ckpt = Path(image.checkpoint_dir) if Path(image.checkpoint_dir).is_absolute() else images_out / image.checkpoint_dir
    t0 = time.perf_counter()
    images = _images.run_image_experiment(data, image, images_out, checkpoint_dir=ckpt, instance=instance, key=k_img)
    timings = {"images_experiment_s": time.perf_counter() - t0}
    # the first trained EMA network, resumed from the checkpoints the images experiment finished (no training: the
    # same keys and folders; whatever way the images experiment trains it, separately guided included)
    finished = dataclasses.replace(image, resume="auto")  # a --restart has been done by the images experiment
    model = _images.train_networks(finished, data, ckpt, key=k_img, first_only=True)[0].ema_model
    first = _images.training_parts(image, data)[0]

    t0 = time.perf_counter()
    grid = geometric_grid_through(config.tau, config.n_times, config.s_min, image.sde.T)
    x_marg = np.concatenate([np.asarray(data.train_x), np.asarray(data.test_x)])
    x_eval, y_eval = map(jnp.asarray, data.held_out(image.n_eval, "BudgetConfig.image.n_eval"))
    budget = information_budget(model, x_eval, y_eval, tau=config.tau, times=grid, chunk_size=config.chunk_size,
                                marginal_kl=lambda s: marginal_kl_curves(x_marg, s, image.sde), key=k_budget)
    timings["budget_s"] = time.perf_counter() - t0
    ceiling = ceiling_block = None
    if config.ceiling_samples:
        t0 = time.perf_counter()
        nodes = budget.curves["neural_entropy"].times
        # the images S_NN^X's network was trained on: its half, or all with separately trained guidance (one
        # unconditional U-Net on all training images)
        seen = slice(None) if image.guidance is not None and image.guidance_training == "separate" else first
        train_x, train_y = np.asarray(data.train_x[seen]), np.asarray(data.train_y[seen])
        ceiling, kl_T = memorisation_ceiling(train_x, train_y, image.sde, nodes, n=config.ceiling_samples,
                                             key=jax.random.fold_in(key, 2))
        ceiling_block = _ceiling_block(ceiling, budget, kl_T.to_dict(), len(train_x), config.ceiling_samples)
        timings["ceiling_s"] = time.perf_counter() - t0
    b = images["quantities"]["bounds"]
    bounds = Bounds(upper=b["upper"]["value"], lower=b["lower"]["value"], lower_stderr=b["lower"]["stderr"],
                    cross_entropy=b["lower"]["cross_entropy"], accuracy=b["lower"]["classifier_accuracy"],
                    upper_definition=b["upper"]["definition"])
    mi = budget.parts["mutual_information"]
    budget = dataclasses.replace(budget, parts={**budget.parts, "mutual_information": {
        **mi, "total": bounds.check(mi["total"], "I_MINDE (total)")}})
    figure = _plot(budget, out / "budget.png", f"{data.name}: information budget (EMA network)", ceiling=ceiling)
    payload = {
        "experiment": "budget",
        "instance": {"dataset": data.name, "n_eval": int(x_eval.shape[0]),
                     "n_eval_requested": image.n_eval, "tau": budget.tau,
                     "tau_requested": config.tau,
                     "s_min": budget.s_min, "n_times": config.n_times, "grid": "GeometricGrid (midpoint cells), "
                     "tau on a cell edge", "marginal_data": f"all {len(x_marg)} images of {data.name} (train and test)",
                     "images_results": "images/results.json",
                     "sde": {"beta_min": image.sde.beta_min, "beta_max": image.sde.beta_max, "T": image.sde.T},
                     **(instance or {})},
        "definitions": {
            "total": "integral over [s_min, T] (grid midpoint sum)", "semantic": "part from tau to T",
            "perceptual": "part from s_min to tau",
            "marginal_sum": "sum_k [KL(p_s(x_k)||N(0,1)) - KL(p_T(x_k)||N(0,1))], exact (1-D quadrature)",
            "total_correlation": "S_NN^X minus the marginal sum: TC(X_s) - TC(X_T) by Eq. 7",
            "mutual_information": "MINDE integral (Eq. 13)",
            "fractions": "ratio of per-image means, stderr by the delta method",
            "negative_tc": "TC below 0 means S_NN^X is below the data's own independent-pixel part: the model does not "
                           "hold what the exact marginals of the (quantised) pixel values carry at those times",
            **_GRID_DEFINITIONS,
        },
        "summary": _summary(budget),
        "quantities": {**_table(budget), "fractions": {q: {p: e.to_dict() for p, e in v.items()}
                                                       for q, v in budget.fractions.items()},
                       "bounds": bounds.to_dict(), "flags": _flags(budget)},
        "curves": budget.to_dict()["curves"],
        "memorisation_ceiling": ceiling_block,
        "figures": {"budget": figure.name},
        "timings_s": timings,
        "units": "nats per image (summed over pixels)",
        **provenance(start),
    }
    write_json(out / "results.json", payload)
    return payload


# ---------------------------------------------------------------------------------------------- Gaussians
def _gaussian_instances(config: BudgetConfig, key: PRNGKeyArray) -> dict[str, JointGaussian]:
    dim_x, dim_y = config.gaussian_dims
    k_det, k_flat = jax.random.split(key)
    return {"determinism": JointGaussian.determinism(dim_x, dim_y, 1.0, key=k_det),
            "flattening": JointGaussian.flattening(dim_x, dim_y, max(1, dim_x // 3), 1e-3, 1.0, key=k_flat)}


def _closed_marginals(joint: JointGaussian):
    diag = np.diag(joint.sigma_x)

    def kl(s):
        v = 1.0 + np.asarray(joint.sde.alpha(np.asarray(s, np.float64)), np.float64)[:, None] * (diag - 1.0)
        return 0.5 * (v - 1.0 - np.log(v))

    return kl


def _closed_parts(joint: JointGaussian, budget: InformationBudget) -> dict:
    """The closed forms of every part: each curve `c` accumulated from 0, so the part over [a, b] is c(b) - c(a)."""
    lo, tau, T = budget.s_min, budget.tau, budget.T
    marg = _closed_marginals(joint)
    m = lambda s: float(marg(np.array([s])).sum() - marg(np.array([T])).sum())  # noqa: E731
    curves = {"neural_entropy": joint.total_entropy_curve,
              "conditional_neural_entropy": joint.conditional_total_entropy_curve,
              "total_correlation": joint.total_correlation_curve,
              "mutual_information": joint.mutual_information_curve}
    out = {name: {"total": float(c(T) - c(lo)), "semantic": float(c(T) - c(tau)), "perceptual": float(c(tau) - c(lo))}
           for name, c in curves.items()}
    out["marginal_sum"] = {"total": m(lo), "semantic": m(tau), "perceptual": m(lo) - m(tau)}
    return out


def _run_gaussian(config: BudgetConfig, out: Path, key: PRNGKeyArray, instance: dict | None) -> dict:
    start = time.perf_counter()
    sde = VPSDE()
    grid = geometric_grid_through(config.tau, config.n_times, config.s_min, sde.T)
    k_inst, k_est = jax.random.split(key)
    rows = {}
    for i, (name, joint) in enumerate(_gaussian_instances(config, k_inst).items()):
        k_sample, k_budget = jax.random.split(jax.random.fold_in(k_est, i))
        x, y = joint.sample(config.gaussian_samples, key=k_sample)
        budget = information_budget(joint.model(), x, y, tau=config.tau, times=grid, chunk_size=config.chunk_size,
                                    marginal_kl=_closed_marginals(joint), key=k_budget)
        exact = _closed_parts(joint, budget)
        table = _table(budget)
        for q in _QUANTITIES:
            for p in _PIECES:
                est = budget.parts[q][p]
                table[q][p]["exact"] = exact[q][p]
                table[q][p]["z"] = None if est.stderr == 0 else est.z_score(exact[q][p])
        nodes = budget.curves["neural_entropy"].times
        tc_exact = joint.total_correlation_curve(sde.T) - joint.total_correlation_curve(nodes)
        figure = _plot(budget, out / f"budget_{name}.png", f"joint Gaussian ({name}): information budget, exact e*",
                       exact={"TC(X_s)": tc_exact})
        rows[name] = {"quantities": table, "summary": _summary(budget), "flags": _flags(budget),
                      "curves": budget.to_dict()["curves"], "figure": figure.name,
                      "closed_form": {"S_tot": joint.total_entropy(), "TC": joint.total_correlation(),
                                      "I": joint.mutual_information()}}
    payload = {"experiment": "budget", "mode": "gaussian",
               "instance": {"tau": config.tau, "s_min": float(sde.T - grid.nodes_weights(sde)[1].sum()),
                            "n_times": config.n_times, "samples": config.gaussian_samples,
                            "dims": list(config.gaussian_dims), **(instance or {})},
               "definitions": {"exact": "closed form of the same part over the same interval",
                               "z": "(estimate - exact) / stderr; the grid's discretisation is not in the stderr",
                               **_GRID_DEFINITIONS},
               "instances": rows, "units": "nats", **provenance(start)}
    write_json(out / "results.json", payload)
    return payload


def run(config: BudgetConfig, out: str | Path, *, key: PRNGKeyArray, data: learned.ImageData | None = None,
        instance: dict | None = None) -> dict:
    """Run the budget experiment and write `out/results.json` and `out/budget*.png`.

    **Arguments:**

    - `config`: a `BudgetConfig`.
    - `out`: output directory (the images experiment writes into `out/images`).
    - `key`: PRNG key.
    - `data`: the `ImageData`, if already loaded.
    - `instance`: extra entries for the `instance` block (e.g. the CLI's seed).

    **Returns:**

    The results payload.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.gaussian:
        return _run_gaussian(config, out, key, instance)
    return _run_images(config, out, key, data, instance)
