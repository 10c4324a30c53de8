r"""Does a noise-conditional classifier trained by cross-entropy carry the label part of the score? (no U-Net)

The U-Nets of `separability images --cpu` learn the label part of the score from the DEM loss, whose target
(the noise, 784 numbers per image) carries the label only through a part of squared size about the MINDE integrand
(a few nats against 784): the label part is learnt from a small signal in a large noise, and on MNIST-5k it stays
short where the label is decided. A noisy classifier learns the same quantity by cross-entropy, a much less noisy
target. For the exact posterior the label part of the score is its input-gradient,
$e(x, s; y) - e(x, s) = \nabla_x \log p_s(y|x)$ (`learned.ClassifierGuided`), so MINDE of
`ClassifierGuided(zero, classifier)` is the classifier's Fisher information along the noise,
$\int_0^T \tfrac{\beta}{2}\mathbb E\|\nabla_x\log p_\phi(y|\tilde x_s)\|^2 ds$, and equals $I(X;Y) - I(X_T;Y)$ when
$p_\phi$ is the exact posterior (the I-MMSE identity). A trained classifier's values can be right (its
cross-entropy near $H(Y|X_s)$) while its input-gradients are not, so this measures whether they are:

- the plug-in Fisher MINDE of a classifier trained on all training images, and the cross-fit of two classifiers
  trained on the two halves (`verify.mutual_information_minde_crossfit`, free of the gradients' fitting noise),
  on held-out images at the images experiment's MINDE grid;
- each curve from s to T against the time-resolved bounds $H(Y) - CE_s - r_T \le I(X_s;Y) - I(X_T;Y) \le H(Y)$ of
  the all-images classifier (`verify.experiments.label_information_curve`), and the totals against
  $[H(Y) - CE, H(Y)]$ of a `--reference` run's clean classifier.

    python benchmarks/bench_classifier_fisher.py --dataset mnist5k \
        --reference benchmarks/results/images_mnist5k_cpu_gaussian_base8/results.json \
        --out benchmarks/results/classifier_fisher_mnist5k.json
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import learned  # noqa: E402
from bench_gaussian_base import add_evaluation_arguments, evaluation_setup, load_reference  # noqa: E402
from gaussian_oracle import PiecewiseConstant  # noqa: E402
from verify import mutual_information_minde, mutual_information_minde_crossfit, provenance, write_json  # noqa: E402
from verify.cli import PRESETS  # noqa: E402
from verify.experiments import (ImageExperiment, LabelInformationCurve, label_information_curve,  # noqa: E402
                                save_figure)

REPORT_TIMES = (0.087, 0.159, 0.268, 0.403, 0.537)


def _summary(name: str, estimate, curve) -> dict:
    tail, tail_se = curve.tail(estimate)
    checked = curve.check(estimate, name)
    at = {f"{t:g}": float(np.interp(t, curve.times, tail)) for t in REPORT_TIMES}
    print(f"{name}: {estimate.value:.3f} ± {estimate.stderr:.3f}; from s to T at s/T = "
          + " / ".join(f"{v:.2f}" for v in at.values()) + f"; flags: {list(checked.flags)}")
    return {"value": estimate.value, "stderr": estimate.stderr, "n_evals": estimate.n_evals, "tail": tail.tolist(),
            "tail_stderr_bound": tail_se.tolist(), "tail_at": at, "flags": list(checked.flags)}


def decided_times(sde, times: np.ndarray, lower: np.ndarray, floor: float) -> PiecewiseConstant:
    r"""Training times concentrated where the label is decided: each cell between consecutive nodes gets probability
    $\propto$ the drop of the label-information bound `lower` across it (clipped at 0), mixed with weight `floor` of
    the log-SNR-uniform density (`ImageExperiment.time_sampler`) so that every time is still trained."""
    s_min = ImageExperiment.time_sampler.s_min * sde.T
    edges = np.concatenate([[0.0, s_min], times[(times > s_min) & (times < sde.T)], [sde.T]])
    rho = np.asarray(sde.log_snr(np.maximum(edges, s_min)), np.float64)
    log_snr = np.maximum(rho[:-1] - rho[1:], 0.0) / (rho[1] - rho[-1])
    drop = np.zeros(len(edges) - 1)
    inner = np.searchsorted(edges, times[1:]) - 1  # the cell that ends at node k + 1 starts at node k
    drop[inner] = np.maximum(lower[:-1] - lower[1:], 0.0)
    probs = (1 - floor) * drop / drop.sum() + floor * log_snr
    probs[0] = 1e-4 * probs.max()  # [0, s_min): never drawn by the log-SNR density; a sliver keeps every bin positive
    return PiecewiseConstant(edges, probs / probs.sum())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(learned.DATASETS))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--reference", type=pathlib.Path, required=True,
                        help="results.json of a `separability images --posterior-steps` run on this data set (its "
                             "clean-classifier bounds and its MINDE curves are drawn beside these)")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps of each noisy classifier")
    parser.add_argument("--no-all", dest="all", action="store_false",
                        help="train only the two halves' classifiers (no plug-in on all images); the time-resolved "
                             "bounds are then the reference run's")
    parser.add_argument("--channels", type=int, nargs=2, default=None, metavar=("C1", "C2"),
                        help="the classifiers' channels (default: the --cpu preset's)")
    parser.add_argument("--hidden", type=int, default=None, help="the classifiers' dense width (default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=learned.ClassifierConfig.batch_size)
    parser.add_argument("--decided-times", type=float, default=None, metavar="FLOOR",
                        help="train the classifiers at times concentrated where the reference's label-information "
                             "bound drops, mixed with this weight of log-SNR-uniform times (default: log-SNR uniform)")
    parser.add_argument("--gaussian-base", type=float, default=None, metavar="SNR_HALF",
                        help="each classifier adds the gated logits of a Gaussian class model of its own training "
                             "images (learned.train_noisy_classifier's gaussian_base) and learns the residual")
    add_evaluation_arguments(parser)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    data, grid, times, x, y = evaluation_setup(args)
    ref = load_reference(args.reference, data, times)
    sde = ImageExperiment.sde
    preset = PRESETS["cpu"]  # the architecture of the `--cpu` run's bound and noisy classifiers
    config = learned.ClassifierConfig(
        data.image_shape, data.num_classes, steps=args.steps, batch_size=args.batch_size,
        channels=preset.classifier_channels if args.channels is None else tuple(args.channels),
        hidden=preset.classifier_hidden if args.hidden is None else args.hidden)
    key = jax.random.key(args.seed)
    k_train, k_curve, k_est = jax.random.split(key, 3)
    half = len(data.train_x) // 2
    parts = {"all": slice(0, 2 * half)} if args.all else {}
    parts |= {"a": slice(0, half), "b": slice(half, 2 * half)}
    resolved = ref["quantities"]["bounds"]["time_resolved"]
    reference_curve = LabelInformationCurve(times, np.asarray(resolved["cross_entropy"]),
                                            np.asarray(resolved["lower_stderr"]), np.asarray(resolved["accuracy"]),
                                            resolved["upper"], resolved["residual"])
    training_times = (ImageExperiment.time_sampler if args.decided_times is None
                      else decided_times(sde, times, reference_curve.lower, args.decided_times))
    classifiers, timings = {}, {}
    for i, (name, part) in enumerate(parts.items()):
        t0 = time.perf_counter()
        classifiers[name] = learned.train_noisy_classifier(config, sde, data.train_x[part], data.train_y[part],
                                                           times=training_times, gaussian_base=args.gaussian_base,
                                                           key=jax.random.fold_in(k_train, i))
        timings[f"classifier_{name}_s"] = time.perf_counter() - t0
        print(f"noisy classifier on {name} ({part.stop - part.start} images): {timings[f'classifier_{name}_s']:.0f} s")

    t0 = time.perf_counter()
    common = dict(label_entropy=data.label_entropy(), data_variance=float(np.var(data.train_x, axis=0).sum()))
    if args.all:
        curve = label_information_curve(classifiers["all"], sde, x, y, times, key=k_curve, **common)
    else:
        curve = reference_curve
    # classifier a's own held-out bound: how well the classifier whose gradients are measured fits the labels' values
    own = label_information_curve(classifiers["a"], sde, x, y, times, key=k_curve, **common)
    guided = {name: learned.ClassifierGuided(learned.ZeroNetwork(sde), c) for name, c in classifiers.items()}
    estimates = {} if not args.all else {
        "plug_in_all": mutual_information_minde(guided["all"], x, y, times=grid, chunk_size=50, key=k_est)}
    estimates |= {
        "plug_in_a": mutual_information_minde(guided["a"], x, y, times=grid, chunk_size=50, key=k_est),
        "crossfit": mutual_information_minde_crossfit(guided["a"], guided["b"], x, y, times=grid, chunk_size=50,
                                                      key=k_est),
    }
    timings["estimation_s"] = time.perf_counter() - t0
    bounds = ref["quantities"]["bounds"]
    print(f"bounds: H(Y) - CE = {bounds['lower']['value']:.3f} ± {bounds['lower']['stderr']:.3f} <= I <= "
          f"H(Y) = {bounds['upper']['value']:.4f}; node bound at s/T = "
          + " / ".join(f"{np.interp(t, times, curve.lower):.2f}" for t in REPORT_TIMES)
          + "; classifier a's own (from s_min): "
          + " / ".join(f"{np.interp(t, times, own.lower):.2f}" for t in (times[0], *REPORT_TIMES)))
    payload = {
        "dataset": data.name, "n_train": int(2 * half), "n_eval": int(len(x)), "classifier": dataclasses.asdict(config),
        "training_times": "log-SNR uniform" if args.decided_times is None else
        f"decided_times(floor={args.decided_times}): the reference's bound drop, mixed with log-SNR uniform",
        "gaussian_base": args.gaussian_base,
        "times": times.tolist(), "reference": str(args.reference),
        "time_resolved_bounds_from": "the noisy classifier on all images" if args.all else "the reference run",
        "bounds": {"upper": bounds["upper"], "lower": bounds["lower"],
                   "time_resolved": {"lower": curve.lower.tolist(),
                                     "cross_entropy_stderr": curve.cross_entropy_stderr.tolist(),
                                     "cross_entropy": curve.cross_entropy.tolist(),
                                     "accuracy": curve.accuracy.tolist(), "residual": curve.residual,
                                     "lower_at": {f"{t:g}": float(np.interp(t, times, curve.lower))
                                                  for t in REPORT_TIMES}}},
        "classifier_a_lower_at": {f"{t:g}": float(np.interp(t, times, own.lower)) for t in (times[0], *REPORT_TIMES)},
        "fisher_minde": {name: _summary(f"Fisher MINDE ({name})", est, curve) for name, est in estimates.items()},
        "timings": timings,
    }
    payload["classifier"]["image_shape"] = list(config.image_shape)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(times, curve.lower, "k--", label="$H(Y) - CE_s - r_T$ ("
            + ("a noisy classifier on all images" if args.all else "the reference run's noisy classifier") + ")")
    ax.axhline(common["label_entropy"], color="k", lw=0.8, label="$H(Y)$")
    for name, est in estimates.items():
        tail, _ = curve.tail(est)
        ax.plot(times, tail, label=f"classifier Fisher MINDE, {name.replace('_', ' ')}")
    if "minde_crossfit_centred" in ref["curves"]:
        total = ref["quantities"]["mutual_information"]["minde_crossfit_centred"]["value"]
        cumulative = np.asarray(ref["curves"]["minde_crossfit_centred"]["cumulative"])
        ax.plot(times, total - cumulative, ":", label="the reference's U-Nets, posterior-centred cross-fit")
    ax.set_xscale("log")
    ax.set_xlabel("forward time s")
    ax.set_ylabel("label information from s to T (nats)")
    ax.set_ylim(-0.5, 4.0)
    ax.legend(fontsize=7)
    ax.set_title(f"{data.name}: the label part of a cross-entropy classifier", fontsize=9)
    save_figure(fig, args.out.with_suffix(".png"), dpi=120)
    write_json(args.out, payload | {"figure": args.out.with_suffix(".png").name, **provenance(start)})
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
