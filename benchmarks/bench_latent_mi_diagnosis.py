"""Issue 10: where along the diffusion a latent I(Z;Y) estimate gains more than the labels allow.

The MNIST-5k scan measures I(Z_sem;Y) above H(Y) at tau = 0.1 T (flagged), although the same latent MI pipeline
recovers a 20-d, 10-label Gaussian mixture's exact I(Z;Y) near 2.1 nats with the same sizes
(`bench_latent_crossfit_groups.py`). This script takes the latents one run measured (`separability autoencoder ...
--save-latents` writes `latents.npz`) and resolves the measurement in time:

- two latent MI models are fitted as the experiment fits them (`LatentInformationConfig`'s recipe; the run's training
  schedule read from its results.json, `--width/--depth/--steps/--dropout` override it): each on the draws of one half
  of the training images; with `--separate` each is a conditional network and an unconditional one of its own
  (`learned.Pair`), both trained on every batch, in place of one network whose null label sees `--dropout` of them;
- on a log-SNR grid (`LogSNRGrid`, 64 cells from s = 1e-4 T) the cross-fitted MINDE, the plug-in MINDE and the
  entropy difference of the first model (`verify.estimators`, with their time-resolved `cumulative`), and the
  denoising-loss difference of both (the unconditional branch's score-matching loss minus the conditional one's, at
  the same noisy points: in expectation the MINDE integrand plus |u_unc|^2 - |u_cond|^2, u a branch's score error),
  each as the tail I(Z_s;Y) = integral from s to T;
- at eight times, lower bounds H(Y) - CE_s from a logistic regression and an MLP classifier fitted on noisy training
  latents z_s and scored on noisy held-out ones. Since I(Z_0;Y) <= H(Y) and I(Z_s;Y) >= H(Y) - CE_s, the true
  increment I(Z_0;Y) - I(Z_s;Y) is at most CE_s: an estimated increment above CE_s (beyond its stderr) is an excess
  located in [0, s];
- with `--posterior`, noise-conditional classifiers p(y|z_s, s) (`learned.NoisyMLPClassifier`, an MLP on z_s and
  the log-SNR, trained by cross-entropy on noisy training latents: `verify.experiments.fit_latent_posterior`, as
  `LatentInformationConfig.posterior` trains it) in two roles. One, trained on all training rows, replaces the
  unconditional output: the posterior-centred MINDE (`mutual_information_minde(..., posterior=...)`, cross-fitted
  and plug-in) centres e(z_s, s; y) on the posterior mixture of the conditional outputs, so an error the null-label
  output makes beyond the conditional ones cannot reach it; its held-out CE_s is one more lower bound. Two more, one
  per half of the images, are the label part of a classifier-guided model (`learned.ClassifierGuided`, e(z, s; y) =
  e(z, s) + grad log p(y|z_s)), whose MINDE (cross-fitted and plug-in) is the classifiers' alone: on MNIST-5k
  images this was the estimate that landed inside its bounds.

    python benchmarks/bench_latent_mi_diagnosis.py RUN/latents.npz --latent sem_split_tau=0.1
        [--width 128 --depth 2 --steps 3000 --dropout 0.5 | --separate] [--posterior]
        [--out benchmarks/results/latent_mi_diagnosis]

Writes <out>/<run>_<latent>[_<overrides>].json and .png (tails against s, H(Y) and the classifier bounds).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

import learned  # noqa: E402
from gaussian_oracle import VPSDE  # noqa: E402
from verify import provenance, write_json  # noqa: E402
from verify.estimators import (  # noqa: E402
    LogSNRGrid,
    mutual_information_difference,
    mutual_information_minde,
    mutual_information_minde_crossfit,
)
from verify.experiments import (  # noqa: E402
    POSTERIOR_TIMES,
    POSTERIOR_TRAIN,
    LatentInformationConfig,
    crossfit_halves,
    fit_latent_model,
    fit_latent_posterior,
)

RESULTS = pathlib.Path(__file__).parent / "results" / "latent_mi_diagnosis"
BOUND_TIMES = (0.0, 0.01, 0.025, 0.063, 0.1, 0.158, 0.25, 0.4)


def fit_models(a_train, y_rows, halves, config: LatentInformationConfig, sde, num_classes, key, separate=False):
    """Two latent diffusion models, each on one half's rows: one label-conditioned network with label dropout (the
    experiment's recipe, `fit_latent_model`), or with `separate` a `learned.Pair` of a conditional network (no
    dropout) and an unconditional one, each trained on every batch of the half."""

    def fit(rows, labels, k, **dropout):
        k_init, k_train = jax.random.split(k)
        return fit_latent_model(a_train[rows], None if labels is None else y_rows[rows], num_classes=labels,
                                config=config, sde=sde, init_key=k_init, train_key=k_train, **dropout)

    models = []
    for rows, k in zip(halves, jax.random.split(key, len(halves))):
        if separate:
            k_c, k_u = jax.random.split(k)
            models.append(learned.Pair(fit(rows, None, k_u), fit(rows, num_classes, k_c, label_dropout=0.0)))
        else:
            models.append(fit(rows, num_classes, k))
    return models


def loss_difference(models, z, y, nodes, weights, key):
    """Tail integrals of the denoising-loss difference (mean over the models) at the grid's nodes, and the total."""
    sde = models[0].sde

    @jax.jit
    def rate(s, k):
        eps = jax.random.normal(k, z.shape)
        sigma = jnp.sqrt(sde.var(s))
        xs = sde.mu(s) * z + sigma * eps
        out = 0.0
        for m in models:
            r_u = jax.vmap(lambda x: m(x, s, None))(xs) - xs + eps / sigma
            r_c = jax.vmap(lambda x, c: m(x, s, c))(xs, y) - xs + eps / sigma
            out = out + 0.5 * sde.beta(s) * (jnp.sum(r_u**2, -1) - jnp.sum(r_c**2, -1))
        return jnp.mean(out) / len(models)

    values = np.array([float(rate(jnp.float32(s), k)) for s, k in zip(nodes, jax.random.split(key, len(nodes)))])
    pieces = values * weights
    return np.cumsum(pieces[::-1])[::-1] - 0.5 * pieces, float(pieces.sum())  # as the estimators' cumulative


def classifier_bounds(a_train, y_rows, n_images, a_eval, y_eval, h_y, sde, seed=0):
    """H(Y) - CE_s (value, stderr) of a logistic regression and an MLP on noisy latents at BOUND_TIMES."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in BOUND_TIMES:
        mu, sd = (1.0, 0.0) if s == 0 else (float(sde.mu(s)), math.sqrt(float(sde.var(s))))
        n_tr = mu * a_train + sd * rng.normal(size=a_train.shape)
        n_ev = mu * a_eval + sd * rng.normal(size=a_eval.shape)
        row = {"s": s}
        # the MLP's early-stopping split must not hold draws of its own training images: one draw per image
        for name, clf, fit_rows in (("logistic", LogisticRegression(max_iter=3000), slice(None)),
                                    ("mlp", MLPClassifier((256, 256), alpha=1e-3, early_stopping=True, max_iter=300,
                                                          random_state=seed), slice(0, n_images))):
            clf.fit(n_tr[fit_rows], y_rows[fit_rows])
            proba = np.zeros((len(n_ev), int(y_rows.max()) + 1))
            proba[:, clf.classes_] = clf.predict_proba(n_ev)
            nll = -np.log(np.maximum(proba[np.arange(len(y_eval)), y_eval], 1e-12))
            row[name] = [h_y - float(nll.mean()), float(nll.std(ddof=1) / math.sqrt(len(nll)))]
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("latents", type=pathlib.Path, help="a run's latents.npz (its results.json beside it)")
    p.add_argument("--latent", required=True, help="which latent: dae, vae, sem_split_tau=..., per_split_tau=...")
    p.add_argument("--width", type=int)
    p.add_argument("--depth", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--separate", action="store_true",
                   help="an unconditional network of its own beside a conditional one (no label dropout)")
    p.add_argument("--posterior", action="store_true",
                   help="also the posterior-centred MINDE, with a noise-conditional classifier on the latents")
    p.add_argument("--posterior-steps", type=int, default=4000, help="training steps of that classifier")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = p.parse_args(argv)
    start = time.perf_counter()
    results = json.loads((args.latents.parent / "results.json").read_text())
    inst = results["instance"]
    h_y = float(results["quantities"]["bounds"]["upper"]["value"])
    with np.load(args.latents) as saved:
        if f"z_train_{args.latent}" not in saved:
            raise SystemExit(f"{args.latents} holds no latent {args.latent!r}; it holds "
                             f"{sorted(k[8:] for k in saved if k.startswith('z_train_'))}.")
        z_tr, z_ev = saved[f"z_train_{args.latent}"], saved[f"z_eval_{args.latent}"]
        y_train, y_eval = saved["y_train"].astype(np.int32), saved["y_eval"].astype(np.int32)
    n_images, draws = len(y_train), len(z_tr) // len(y_train)
    y_rows, image = np.tile(y_train, draws), np.tile(np.arange(n_images), draws)

    recorded = inst["latent_mi"]
    train = learned.TrainConfig(**{**recorded["train"], **({"steps": args.steps} if args.steps else {}),
                                   "checkpoint_every": args.steps or recorded["train"]["steps"]})
    config = LatentInformationConfig(width=args.width or recorded["width"], depth=args.depth or recorded["depth"],
                                     train=train, label_dropout=args.dropout or recorded["label_dropout"])
    sde = VPSDE(**inst["sde"])
    loc, scale = z_tr.mean(axis=0), np.maximum(z_tr.std(axis=0), 1e-8)
    a_tr, a_ev = ((z_tr - loc) / scale).astype(np.float32), ((z_ev - loc) / scale).astype(np.float32)

    halves = crossfit_halves(image, np.random.default_rng(args.seed))  # all draws of an image in one half
    k_fit, k_est, k_loss = jax.random.split(jax.random.key(args.seed), 3)
    t0 = time.perf_counter()
    model_a, model_b = fit_models(a_tr, y_rows, halves, config, sde, inst["num_classes"], k_fit, args.separate)
    fit_s = time.perf_counter() - t0

    grid = LogSNRGrid(n_times=64, s_min=1e-4 * sde.T)
    z, y = jnp.asarray(a_ev), jnp.asarray(y_eval)
    estimates = {"crossfit": mutual_information_minde_crossfit(model_a, model_b, z, y, times=grid, key=k_est),
                 "plugin": mutual_information_minde(model_a, z, y, times=grid, key=k_est),
                 "entropy_difference": mutual_information_difference(model_a, z, y, times=grid, key=k_est)}
    nodes, weights = grid.nodes_weights(sde)
    s_nodes = np.asarray(estimates["crossfit"].times)
    curves = {}
    for name, est in estimates.items():
        tail = float(est.value) - np.asarray(est.cumulative)  # from each node (its cell's upper half) to T
        curves[name] = {"total": [float(est.value), float(est.stderr)], "tail": tail.tolist()}
    tail_loss, total_loss = loss_difference((model_a, model_b), z, y, nodes, np.asarray(weights), k_loss)
    curves["loss_difference"] = {"total": [total_loss, None], "tail": tail_loss.tolist()}
    bounds = classifier_bounds(a_tr, y_rows, n_images, a_ev, y_eval, h_y, sde, args.seed)
    if args.posterior:
        k_post, k_ce = jax.random.split(jax.random.fold_in(jax.random.key(args.seed), 1))
        t0 = time.perf_counter()
        # one classifier on all training rows centres both latent models; one per half of the images gives the
        # label part of a classifier-guided model (e = e_unc + grad log p(y|z_s)), whose MINDE is the classifier's
        k_all, k_a, k_b = jax.random.split(k_post, 3)
        fit_posterior = functools.partial(fit_latent_posterior, num_classes=inst["num_classes"], sde=sde,
                                          train=dataclasses.replace(POSTERIOR_TRAIN, steps=args.posterior_steps,
                                                                    checkpoint_every=args.posterior_steps))
        posterior = fit_posterior(a_tr, y_rows, key=k_all)
        guided = [learned.ClassifierGuided(learned.ZeroNetwork(sde), fit_posterior(a_tr[rows], y_rows[rows], key=k))
                  for rows, k in zip(halves, (k_a, k_b))]
        fit_s += time.perf_counter() - t0
        centred = {"crossfit_posterior": mutual_information_minde_crossfit(model_a, model_b, z, y, times=grid,
                                                                           posterior=posterior, key=k_est),
                   "plugin_posterior": mutual_information_minde(model_a, z, y, times=grid, posterior=posterior,
                                                                key=k_est),
                   "crossfit_classifier": mutual_information_minde_crossfit(*guided, z, y, times=grid, key=k_est),
                   "plugin_classifier": mutual_information_minde(guided[0], z, y, times=grid, key=k_est)}
        for name, est in centred.items():
            curves[name] = {"total": [float(est.value), float(est.stderr)],
                            "tail": (float(est.value) - np.asarray(est.cumulative)).tolist()}
        # its log-SNR input is infinite at s = 0: there it is scored at its smallest training time, whose bound
        # holds at s = 0 too (I(Z_s;Y) does not increase with s)
        at = np.maximum(np.asarray(BOUND_TIMES), POSTERIOR_TIMES.s_min * sde.T)
        ce, ce_se, _ = learned.noisy_cross_entropy_curve(posterior, sde, a_ev, y_eval, at, key=k_ce)
        for row, c, c_se, s_at in zip(bounds, ce, ce_se, at):
            row["noisy_mlp"] = [h_y - float(c), float(c_se)]
            row["noisy_mlp_scored_at"] = float(s_at)

    # each cross-fit's increment over [0, s] against the most it may be (CE_s = H(Y) - lower bound at s)
    def increments(cross):
        out = []
        for row in bounds:
            tail_s = float(np.interp(np.log(max(row["s"], s_nodes[0])), np.log(s_nodes), cross["tail"]))
            best = max((row[k] for k in ("logistic", "mlp", "noisy_mlp") if k in row), key=lambda v: v[0])
            out.append({"s": row["s"], "increment": cross["total"][0] - tail_s, "most_allowed": h_y - best[0],
                        "excess_at_least": cross["total"][0] - tail_s - (h_y - best[0]),
                        "stderr": math.hypot(cross["total"][1], best[1])})
        return out

    excess = increments(curves["crossfit"])
    centred_excess = {name: increments(curves[name]) for name in ("crossfit_posterior", "crossfit_classifier")
                      if name in curves}

    tag = "_".join([args.latents.parent.name, args.latent]
                   + [f"{k}{getattr(args, k)}" for k in ("width", "depth", "steps", "dropout") if getattr(args, k)]
                   + (["separate"] if args.separate else []) + (["posterior"] if args.posterior else []))
    payload = {"benchmark": "latent_mi_diagnosis", "run": str(args.latents), "latent": args.latent, "H_Y": h_y,
               "latent_mi": {"width": config.width, "depth": config.depth, "steps": train.steps,
                             "label_dropout": None if args.separate else config.label_dropout,
                             "separate_unconditional": args.separate,
                             "posterior": (f"learned.NoisyMLPClassifier, MLP 256 x 2, {args.posterior_steps} "
                                           "steps; one on all rows, one per half" if args.posterior else None)},
               "n_train_images": n_images, "draws": draws, "n_eval": len(y_eval), "fit_s": fit_s,
               "times": s_nodes.tolist(), "curves": curves, "classifier_bounds": bounds, "increment_check": excess,
               **({"increment_check_centred": centred_excess} if centred_excess else {}),
               "units": "nats; s in units of the latent SDE's time", **provenance(start)}
    write_json(args.out / f"{tag}.json", payload)

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, style in (("crossfit", "-"), ("plugin", "--"), ("entropy_difference", ":"), ("loss_difference", "-."),
                        ("crossfit_posterior", "-"), ("plugin_posterior", "--"), ("crossfit_classifier", "-"),
                        ("plugin_classifier", "--")):
        if name not in curves:
            continue
        ax.plot(s_nodes, curves[name]["tail"], style, label=f"{name.replace('_', ' ')} "
                f"({curves[name]['total'][0]:.2f})")
    for name, marker in (("logistic", "o"), ("mlp", "s"), ("noisy_mlp", "^")):
        if name not in bounds[0]:
            continue
        s_b = [max(r["s"], s_nodes[0]) for r in bounds]
        ax.errorbar(s_b, [r[name][0] for r in bounds], [2 * r[name][1] for r in bounds], fmt=marker, ms=4,
                    capsize=2, label=f"H(Y) - CE_s, {name}")
    ax.axhline(h_y, color="k", lw=0.8, label=f"H(Y) = {h_y:.3f}")
    ax.set(xscale="log", xlabel="s", ylabel="I(Z_s;Y) estimate (nats)",
           title=f"{args.latents.parent.name}: {args.latent}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / f"{tag}.png", dpi=130)
    print(f"{tag}: " + ", ".join(f"{k} {v['total'][0]:.3f}" for k, v in curves.items()) + f"; H(Y) {h_y:.3f}")
    for name, rows in {"crossfit": excess, **centred_excess}.items():
        for row in rows:
            print(f"  {name} [0, {row['s']:g}]: gains {row['increment']:.3f}, at most {row['most_allowed']:.3f} "
                  f"(excess >= {row['excess_at_least']:.3f} ± {row['stderr']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
