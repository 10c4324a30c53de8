"""The posterior-centred latent I(Z;Y) through the library path, on the latents an autoencoder run saved.

`separability autoencoder --posterior-steps N` reports, beside each latent's null-label MINDE, the posterior-centred
cross-fit (`LatentInformationConfig.posterior`). The MNIST-5k scan was run before that option existed. This script
re-measures the latents it saved (`--save-latents` wrote `latents.npz`) by `verify.experiments.latent_information`,
with the run's recorded latent MI recipe (its results.json, `instance.latent_mi`) plus `posterior=POSTERIOR_TRAIN`:
the call the experiment makes, without retraining the autoencoders.

By default each latent gets the key the run gave it (`verify.experiments.split_keys` of the run's seed and tau).
The latent models are then the run's own fits, so the null-label numbers must reproduce the run's; the JSON says
whether they do, to 1e-6. The centred cross-fit, its one-fit plug-in and the noisy classifier's lower bound are then
what `--posterior-steps 4000` would have added to that run. `--refit-key K` fits with key K instead.

    python benchmarks/bench_latent_posterior_centred.py benchmarks/results/autoencoder_mnist5k_4000/tau_0.1 \
        [--refit-key K] [--out RUN/posterior_centred.json]

Writes one JSON (each latent as it finishes) with the run's reported numbers beside the re-measured ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import numpy as np

import learned
from gaussian_oracle import VPSDE
from verify import provenance, write_json
from verify.experiments import (
    POSTERIOR_TIMES,
    POSTERIOR_TRAIN,
    LatentInformationConfig,
    latent_information,
    split_keys,
)


def recorded_config(latent_mi: dict) -> LatentInformationConfig:
    """The run's latent MI recipe (`instance.latent_mi`), with the library's posterior classifier added."""
    if latent_mi.get("times") != "ImportanceSampler":
        raise ValueError(f"this script rebuilds the default ImportanceSampler times only; the run used "
                         f"{latent_mi.get('times')!r}.")
    return LatentInformationConfig(width=latent_mi["width"], depth=latent_mi["depth"],
                                   train=learned.TrainConfig(**latent_mi["train"]),
                                   label_dropout=latent_mi["label_dropout"], knn_neighbours=latent_mi["knn_neighbours"],
                                   logistic_c=latent_mi["logistic_c"], crossfit=latent_mi["crossfit"],
                                   posterior=POSTERIOR_TRAIN)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=pathlib.Path, help="a run folder with results.json and latents.npz")
    p.add_argument("--refit-key", type=int, default=None, help="fit with this PRNG seed, not the run's keys")
    p.add_argument("--out", type=pathlib.Path, default=None, help="default: RUN/posterior_centred.json")
    args = p.parse_args(argv)
    results, latents = args.run / "results.json", args.run / "latents.npz"
    for path in (results, latents):
        if not path.exists():
            raise SystemExit(f"{path} is missing: RUN must be a folder written by separability autoencoder "
                             f"--save-latents.")
    out = args.out or args.run / "posterior_centred.json"
    start = time.perf_counter()
    payload_in = json.loads(results.read_text())
    inst, quantities = payload_in["instance"], payload_in["quantities"]
    config = recorded_config(inst["latent_mi"])
    h_y = quantities["bounds"]["upper"]["value"]
    reported = {row["tau"]: row for row in quantities["mutual_information"]}
    with np.load(latents) as arrays:
        data = {k: arrays[k] for k in arrays}
    y_train, y_eval = data.pop("y_train"), data.pop("y_eval")
    draws = inst["latent_draws"]
    rows = []
    for name in sorted(k.removeprefix("z_train_") for k in data if k.startswith("z_train_")):
        part, _, model = name.partition("_")  # "sem_split_tau=0.1" -> "sem", "split_tau=0.1"
        tau = float(model.rpartition("=")[2])
        if args.refit_key is None:  # the key the run gave this latent's model
            keys = split_keys(jax.random.key(inst["seed"]), tau)
            key = keys.semantic if part == "sem" else keys.perceptual
        else:
            key = jax.random.key(args.refit_key)
        t0 = time.perf_counter()
        info = latent_information(data[f"z_train_{name}"], np.tile(y_train, draws), data[f"z_eval_{name}"], y_eval,
                                  num_classes=inst["num_classes"], label_entropy=h_y, config=config,
                                  sde=VPSDE(**inst["sde"]), name=f"I(Z_{part};Y) at tau={tau:g}",
                                  groups=np.tile(np.arange(len(y_train)), draws), key=key)
        was = reported[tau]["semantic" if part == "sem" else "perceptual"]
        same = abs(info.minde.value - was["value"]) <= 1e-6 and abs(info.minde.stderr - was["stderr"]) <= 1e-6
        rows.append({"latent": name, "tau": tau, "remeasured": info.to_dict(),
                     "reported_by_the_run": {"value": was["value"], "stderr": was["stderr"],
                                             "reproduced_to_1e-6": same},
                     "seconds": time.perf_counter() - t0})
        print(f"{name}: null-label {info.minde.value:.3f} ± {info.minde.stderr:.3f} (run: {was['value']:.3f}"
              f"{', reproduced' if same else ''}), centred {info.centred.value:.3f} ± {info.centred.stderr:.3f}, "
              f"noisy-classifier bound {info.posterior_bound['value']:.3f}, logistic {info.bounds.lower:.3f}",
              flush=True)
        write_json(out, {"benchmark": "latent_posterior_centred", "run": str(args.run), "label_entropy": h_y,
                         "keys": "the run's" if args.refit_key is None else args.refit_key,
                         "latent_mi": {**inst["latent_mi"], "posterior": {
                             "classifier": "learned.NoisyMLPClassifier", "width": config.posterior_width,
                             "depth": config.posterior_depth, "train": dataclasses.asdict(POSTERIOR_TRAIN),
                             "times": repr(POSTERIOR_TIMES)}},
                         "rows": rows, "units": "nats", **provenance(start)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
