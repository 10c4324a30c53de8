"""Issue 10: the latent cross-fit must split images, not draws.

The autoencoder experiment trains its latent MI models on `latent_draws` = 4 draws z ~ q(z|x) per training image. Until
session 20 the cross-fit (`LatentInformationConfig.crossfit`) split those *rows* into two halves, so each of the two
latent models saw almost every training image (through different draws), and the errors they make by fitting those
particular images were shared, which the cross-fit cannot remove. Now the experiment passes `groups` (the image of each
row) and the halves split the images.

This script measures the difference where the answer is exact: a 10-label Gaussian mixture in 20 dimensions with unit
component covariances stands for the encoder means mu(x) of `n_images` training "images"; each image gives 4 rows
mu + jitter * eta (eta standard normal), as the encoder's draws do. Held-out pairs are fresh draws of the same
distribution, whose exact I(Z;Y) is that of the mixture with covariance (1 + jitter^2) I (Monte Carlo over 40,000
points, `GaussianMixture.mutual_information`). For each jitter, three readings with the experiment's latent MI settings
(`LatentInformationConfig()` with the MNIST-5k scan's 3,000 steps): the cross-fit on row halves (`groups=None`) and
on image halves (`groups` = image of each row), on the same rows and keys, each with the plug-in MINDE of its first
half's fit beside it.

    python benchmarks/bench_latent_crossfit_groups.py [--jitter 0.05,0.3] [--scale 0.8] [--images 4000] [--seeds 0,1]

Writes benchmarks/results/latent_crossfit_groups.json (rows as they finish).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import jax
import numpy as np

import learned
from gaussian_oracle import VPSDE, GaussianMixture
from verify import provenance, write_json
from verify.experiments import LatentInformationConfig, latent_information

RESULTS = pathlib.Path(__file__).parent / "results" / "latent_crossfit_groups.json"
DIM, LABELS, DRAWS, N_EVAL = 20, 10, 4, 1000
SDE = VPSDE(beta_min=0.1, beta_max=16.0, T=1.0)
# the MNIST-5k scan's latent MI training (`separability autoencoder --dataset mnist5k`, instance.latent_mi.train)
TRAIN = learned.TrainConfig(steps=3000, batch_size=256, lr=2e-3, warmup_steps=100, final_lr_fraction=0.05,
                            steps_per_call=100, checkpoint_every=3000, ema_decay=0.99, progress=False)


def mixture(means: np.ndarray, variance: float) -> GaussianMixture:
    return GaussianMixture(np.full(LABELS, 1.0 / LABELS), means, np.stack([variance * np.eye(DIM)] * LABELS), sde=SDE)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jitter", default="0.05,0.3", help="draw noise per image, in units of the component std")
    p.add_argument("--scale", type=float, default=0.8, help="std of the component means around 0")
    p.add_argument("--images", type=int, default=4000, help="training images (4 rows each)")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = p.parse_args(argv)
    start = time.perf_counter()
    means = args.scale * np.random.default_rng(0).normal(size=(LABELS, DIM))
    rows = []
    for jitter in (float(j) for j in args.jitter.split(",")):
        full = mixture(means, 1.0 + jitter**2)
        exact = full.mutual_information(n=40_000, key=jax.random.key(99))
        for seed in (int(s) for s in args.seeds.split(",")):
            k_mu, k_eta, k_ev, k_run = jax.random.split(jax.random.key(seed), 4)
            mu, y = (np.asarray(a) for a in mixture(means, 1.0).sample(args.images, key=k_mu))
            eta = np.asarray(jax.random.normal(k_eta, (DRAWS, args.images, DIM)))
            z_tr = (mu[None] + jitter * eta).reshape(-1, DIM)  # row r: a draw of image r % images, as in the experiment
            y_tr = np.tile(y, DRAWS).astype(np.int32)
            image = np.tile(np.arange(args.images), DRAWS)
            z_ev, y_ev = (np.asarray(a) for a in full.sample(N_EVAL, key=k_ev))
            row = {"jitter": jitter, "seed": seed, "exact": [exact.value, exact.stderr]}
            for split, groups in (("rows", None), ("images", image)):
                t0 = time.perf_counter()
                info = latent_information(z_tr, y_tr, z_ev, y_ev.astype(np.int32), num_classes=LABELS,
                                          label_entropy=math.log(LABELS), config=LatentInformationConfig(train=TRAIN),
                                          sde=SDE, groups=groups, key=k_run)
                row[f"crossfit_{split}"] = [info.minde.value, info.minde.stderr]
                row[f"plugin_{split}"] = [info.plain_minde.value, info.plain_minde.stderr]  # the first half's fit
                row[f"{split}_s"] = time.perf_counter() - t0
            rows.append(row)
            print(f"jitter {jitter:g} seed {seed}: exact {exact.value:.3f} ± {exact.stderr:.3f}; "
                  + "; ".join(f"{k} {row[k][0]:.3f} ± {row[k][1]:.3f}"
                              for k in ("plugin_rows", "crossfit_rows", "plugin_images", "crossfit_images")), flush=True)
            write_json(args.out, {"benchmark": "latent_crossfit_groups", "dim": DIM, "labels": LABELS, "draws": DRAWS,
                                  "images": args.images, "n_eval": N_EVAL, "scale": args.scale,
                                  "train": {"steps": TRAIN.steps, "batch_size": TRAIN.batch_size, "lr": TRAIN.lr},
                                  "rows": rows, "units": "nats", **provenance(start)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
