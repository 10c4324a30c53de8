r"""How much of the label information does a Gaussian model of each class carry, time by time? (no training)

`learned.ClassGaussians` fits one Gaussian per class to the training images (rank-r eigen-part plus an isotropic
rest, class covariances shrunk towards the pooled within-class one) and diffuses it exactly. Two questions, both
answered on held-out images at the images experiment's MINDE grid:

1. As a classifier of noisy images: its held-out cross-entropy CE_s and accuracy (and so its bound
   H(Y) - CE_s - r_T <= I(X_s;Y) - I(X_T;Y), `verify.experiments.label_information_curve`), beside the trained
   noise-conditional classifier of a finished `--posterior-steps` run (`--reference`), for each shrinkage.
2. As the base of `learned.ClassGaussianBase`: the MINDE curve of the gated base alone (network output zero), i.e.
   the label information the base hands the network before training, from s to T, against the same bounds.

Where the Gaussian classifier's CE_s is close to the trained one's, the diffused classes are close to Gaussian and
the base's label part is close to the truth; that is where the gate should be open.

    python benchmarks/bench_gaussian_base.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \
        --reference benchmarks/results/images_fmnist_cpu_posterior/results.json \
        --out benchmarks/results/gaussian_base_fmnist.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import learned  # noqa: E402
from verify import LogSNRGrid, mutual_information_minde, provenance, write_json  # noqa: E402
from verify.experiments import ImageExperiment, label_information_curve, save_figure  # noqa: E402


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation options this script shares with `bench_classifier_fisher.py`."""
    parser.add_argument("--n-eval", type=int, default=200)
    parser.add_argument("--n-times", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="JSON path; the figure goes beside it")


def evaluation_setup(args: argparse.Namespace):
    """The data set, the images experiment's MINDE grid (`--n-times` log-SNR cells) and its nodes, and the first
    `--n-eval` held-out images with their labels."""
    data = learned.load_dataset(args.dataset, args.data_dir)
    sde = ImageExperiment.sde
    grid = LogSNRGrid(n_times=args.n_times, s_min=ImageExperiment.time_sampler.s_min * sde.T)
    times = np.asarray(grid.nodes_weights(sde)[0])
    return data, grid, times, jnp.asarray(data.test_x[: args.n_eval]), jnp.asarray(data.test_y[: args.n_eval])


def load_reference(path: pathlib.Path, data, times: np.ndarray) -> dict:
    """A `separability images --posterior-steps` run's results.json, checked to be on `data` and at `times`."""
    ref = json.loads(path.read_text())
    if ref["instance"]["dataset"] != data.name:
        raise SystemExit(f"{path} is a run on {ref['instance']['dataset']!r}, not {data.name!r}.")
    resolved = ref["quantities"]["bounds"].get("time_resolved")
    if resolved is None:
        raise SystemExit(f"{path} has no time-resolved bounds (run it with --posterior-steps).")
    if not np.allclose(resolved["times"], times, rtol=1e-6):
        raise SystemExit(f"{path} was evaluated at other times than this grid.")
    return ref


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(learned.DATASETS))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--reference", type=pathlib.Path, default=None,
                        help="results.json of a `separability images --posterior-steps` run on this data set")
    parser.add_argument("--shrinkage", default="0,0.5,0.95", help="comma-separated shrinkages to compare")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--snr-half", type=float, default=4.0, help="the base's gate (ClassGaussianBase.snr_half)")
    add_evaluation_arguments(parser)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    data, grid, times, x, y = evaluation_setup(args)
    sde = ImageExperiment.sde
    common = dict(label_entropy=data.label_entropy(), data_variance=float(np.var(data.train_x, axis=0).sum()))
    k_curve, k_minde = jax.random.split(jax.random.key(args.seed))
    reference = None
    if args.reference is not None:
        reference = load_reference(args.reference, data, times)["quantities"]["bounds"]["time_resolved"]

    payload = {"dataset": data.name, "n_train": int(len(data.train_x)), "n_eval": int(len(x)), "rank": args.rank,
               "snr_half": args.snr_half, "times": times.tolist(), "label_entropy": common["label_entropy"],
               "reference": None if args.reference is None else str(args.reference), "shrinkage": {}}
    fig, (ax_ce, ax_tail) = plt.subplots(1, 2, figsize=(10, 3.8))
    if reference is not None:
        ax_ce.plot(times, reference["cross_entropy"], "k--", label="trained noisy classifier")
        ax_tail.plot(times, reference["lower"], "k--", label="$H(Y) - CE_s - r_T$ (trained)")
    for shrinkage in (float(v) for v in args.shrinkage.split(",")):
        t0 = time.perf_counter()
        gaussians = learned.ClassGaussians.fit(sde, data.train_x, data.train_y, data.num_classes, rank=args.rank,
                                               shrinkage=shrinkage)
        curve = label_information_curve(gaussians, sde, x, y, times, key=k_curve, **common)
        base = learned.ClassGaussianBase(learned.ZeroNetwork(sde), gaussians, snr_half=args.snr_half)
        minde = mutual_information_minde(base, x, y, times=grid, chunk_size=50, key=k_minde)
        tail, tail_se = curve.tail(minde)
        payload["shrinkage"][str(shrinkage)] = {
            "cross_entropy": curve.cross_entropy.tolist(), "cross_entropy_stderr": curve.cross_entropy_stderr.tolist(),
            "accuracy": curve.accuracy.tolist(), "lower": curve.lower.tolist(),
            "base_minde": {"value": minde.value, "stderr": minde.stderr, "tail": tail.tolist(),
                           "tail_stderr_bound": tail_se.tolist()},
            "wall_s": time.perf_counter() - t0,
        }
        line, = ax_ce.plot(times, curve.cross_entropy, label=f"Gaussian classes, shrinkage {shrinkage:g}")
        ax_tail.plot(times, tail, color=line.get_color(), label=f"gated base alone, shrinkage {shrinkage:g}")
        print(f"shrinkage {shrinkage:g}: CE_s at s/T = 0.16, 0.27, 0.40: "
              + ", ".join(f"{np.interp(s, times, curve.cross_entropy):.3f}" for s in (0.16, 0.27, 0.40))
              + f"; base MINDE {minde.value:.3f} ± {minde.stderr:.3f}")
    ax_tail.axhline(common["label_entropy"], color="k", lw=0.8, label="$H(Y)$")
    for ax, title in ((ax_ce, "held-out cross-entropy $CE_s$"), (ax_tail, "label information from s to T")):
        ax.set_xscale("log")
        ax.set_xlabel("forward time s")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    ax_ce.set_ylim(0, 3.5)
    ax_tail.set_ylim(-0.5, 4.0)
    fig.suptitle(f"{data.name}: a Gaussian model of each class (rank {args.rank}), "
                 f"gate SNR$_{{1/2}}$ = {args.snr_half:g}", fontsize=9)
    save_figure(fig, args.out.with_suffix(".png"), dpi=120)
    write_json(args.out, payload | {"figure": args.out.with_suffix(".png").name, **provenance(start)})
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
