r"""Is the MINDE curve right at every time? The label information I(X_s;Y) against a noisy classifier's bound.

MINDE's cumulative curve runs from s = 0; from a node s to T it estimates I(X_s;Y) - I(X_T;Y). A noise-conditional
classifier's held-out cross-entropy CE_s bounds H(Y|X_s) from above at every s, so
    H(Y) - CE_s - r_T <= I(X_s;Y) - I(X_T;Y) <= H(Y)
(`verify.experiments.LabelInformationCurve`; r_T >= I(X_T;Y) is the Gaussian-channel bound). Checking the curve
node by node tells where an image MINDE goes wrong, which its total inside [H(Y) - CE, H(Y)] cannot: a curve that
gains too much label information at small s and too little at large s can land its total inside by cancellation.

This script trains one `learned.NoisyClassifier` on a data set's training images (times uniform in log-SNR on the
images experiment's support), evaluates CE_s on the held-out images of finished `separability images` runs at their
MINDE grid's nodes, and checks each run's saved curves (`curves.minde_crossfit`, `curves.minde`). No U-Net is
retrained: the curves are read from each run's results.json.

    python benchmarks/bench_label_bounds.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \
        --runs benchmarks/results/images_fmnist_cpu_dropout08 ... --out benchmarks/results/label_bounds_fmnist.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import learned  # noqa: E402
from verify import Estimate, device, versions, write_json  # noqa: E402
from verify.experiments import ImageExperiment, label_information_curve  # noqa: E402

CURVES = ("minde_crossfit", "minde")


def _estimate(results: dict, name: str) -> Estimate | None:
    curve = results["curves"].get(name)
    if curve is None:
        return None
    mi = results["quantities"]["mutual_information"][name]
    return Estimate(mi["value"], mi["stderr"], times=np.asarray(curve["times"]), rate=np.asarray(curve["rate"]),
                    rate_stderr=np.asarray(curve["rate_stderr"]), cumulative=np.asarray(curve["cumulative"]),
                    cumulative_stderr=np.asarray(curve["cumulative_stderr"]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(learned.DATASETS))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--runs", nargs="+", required=True, type=pathlib.Path,
                        help="finished `separability images` output folders of this data set")
    parser.add_argument("--steps", type=int, default=2000, help="noisy-classifier training steps")
    parser.add_argument("--channels", default="32,64")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="JSON path; the figure goes beside it")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    runs = {}
    for folder in args.runs:
        results = json.loads((folder / "results.json").read_text())
        if results["instance"]["dataset"] != args.dataset:
            raise SystemExit(f"{folder} is a run on {results['instance']['dataset']!r}, not {args.dataset!r}.")
        runs[folder.name] = results
    first = next(iter(runs.values()))["instance"]
    data = learned.load_dataset(args.dataset, args.data_dir, pixel_range=tuple(first["pixel_range"]))
    sde = ImageExperiment.sde
    if [first["sde"][k] for k in ("beta_min", "beta_max", "T")] != [sde.beta_min, sde.beta_max, sde.T]:
        raise SystemExit(f"the runs' process {first['sde']} is not the images experiment's {sde}.")
    channels = tuple(int(c) for c in args.channels.split(","))
    config = learned.ClassifierConfig(data.image_shape, data.num_classes, channels=channels, hidden=args.hidden,
                                      steps=args.steps)
    k_train, k_eval = jax.random.split(jax.random.key(args.seed))
    data_variance = float(np.var(data.train_x, axis=0).sum())  # tr Cov(X), for r_T
    t0 = time.perf_counter()
    classifier = learned.train_noisy_classifier(config, sde, data.train_x, data.train_y,
                                                times=ImageExperiment.time_sampler, key=k_train)
    train_s = time.perf_counter() - t0

    payload = {"dataset": data.name, "n_train": int(len(data.train_x)), "classifier": {
        "channels": list(channels), "hidden": args.hidden, "steps": args.steps, "train_s": train_s,
        "times": repr(ImageExperiment.time_sampler)}, "runs": {}}
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.6), squeeze=False)
    for ax, (name, results) in zip(axes[0], runs.items()):
        n_eval = results["instance"]["n_eval"]
        x, y = data.test_x[:n_eval], data.test_y[:n_eval]
        estimates = {c: _estimate(results, c) for c in CURVES}
        times = next(e.times for e in estimates.values() if e is not None)
        bound = label_information_curve(classifier, sde, x, y, times, label_entropy=data.label_entropy(),
                                        data_variance=data_variance, key=k_eval)
        entry = {"n_eval": n_eval, "condition_dropout": results["instance"].get("condition_dropout"),
                 "seed": results["instance"].get("seed"), "bound": bound.to_dict(), "curves": {}}
        ax.plot(times, bound.lower, "k--", label="$H(Y) - CE_s - r_T$")
        ax.fill_between(times, bound.lower - 2 * bound.cross_entropy_stderr, bound.lower + 2 * bound.cross_entropy_stderr,
                        color="0.8")
        ax.axhline(bound.upper, color="k", lw=0.8, label="$H(Y)$")
        for c, est in estimates.items():
            if est is None:
                continue
            tail, tail_se = bound.tail(est)
            entry["curves"][c] = {"total": {"value": est.value, "stderr": est.stderr},
                                  "tail": tail.tolist(), "tail_stderr_bound": tail_se.tolist(),
                                  "violations": bound.violations(est), "flags": list(bound.check(est, c).flags)}
            if c == "minde_crossfit":
                ax.plot(times, tail, label="cross-fit MINDE, s to T")
                ax.fill_between(times, tail - 2 * tail_se, tail + 2 * tail_se, alpha=0.25)
        ax.set_xscale("log")
        ax.set_xlabel("forward time s")
        ax.set_title(name, fontsize=8)
        ax.set_ylim(-0.5, max(4.0, bound.upper + 0.5))
        payload["runs"][name] = entry
    axes[0][0].set_ylabel("$I(X_s;Y)$, nats")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure = args.out.with_suffix(".png")
    fig.savefig(figure, dpi=120)
    payload |= {"figure": figure.name, "wall_time_s": time.perf_counter() - start, "device": device(),
                "versions": versions()}
    write_json(args.out, payload)
    for name, entry in payload["runs"].items():
        for c, curve in entry["curves"].items():
            v = curve["violations"]
            print(f"{name} {c}: total {curve['total']['value']:.3f} ± {curve['total']['stderr']:.3f}; below at "
                  f"{v['below']['n_times']} times (worst s = {v['below']['worst_time']:.3g}, z = {v['below']['worst_z']:.1f}); "
                  f"above H(Y) at {v['above']['n_times']}")
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
