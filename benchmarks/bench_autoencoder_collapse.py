"""Issue 10: does the digits diffusion autoencoder's latent collapse onto the prior, and what keeps it open?

One DAE (`learned.DiffusionAutoencoder`: a `ConvEncoder` with D_Z = 20 and the quick-size `EntropyUNet` decoder
conditioned on z) trained on scikit-learn's digits for `--steps` steps per configuration of (DEM weighting, KL weight
gamma). After training, on 297 held-out digits:

- the KL of q(z|x) to N(0, I) per latent coordinate (nats, averaged over images): a coordinate at ~0 is collapsed
  onto the prior and carries nothing; their sum bounds I(X;Z) from above;
- the 5-NN label accuracy of the means mu(x) and of draws z ~ q(z|x) (chance: 0.10). The means can separate the
  labels while the draws do not: mu(x) is then a scaled-down feature far inside the posterior noise, which the
  decoder cannot read. The autoencoder experiment measures draws;
- the spread of the means across images against the posterior width: per coordinate k the ratio
  snr_k = Var_x(mu_k) / E_x(sigma_k^2), and sum_k 0.5 log(1 + snr_k), the information a Gaussian channel with that
  signal-to-noise ratio would carry (nats; a yardstick, not an estimate of I(X;Z)). A large KL with a small snr is a
  posterior that narrowed around one point, not a latent in use.

A configuration is weighting:gamma[:init_log_sigma] (init_log_sigma: the encoder's untrained log sigma, default
the EncoderConfig default).

    python benchmarks/bench_autoencoder_collapse.py [--steps 600] [--configs constant:1,constant:0.01,likelihood:1,constant:0]
        [--out benchmarks/results/autoencoder_collapse_digits.json]

Writes the JSON after every configuration.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.neighbors import KNeighborsClassifier

import learned
from gaussian_oracle import VPSDE
from verify import provenance, write_json

RESULTS = pathlib.Path(__file__).parent / "results" / "autoencoder_collapse_digits.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--configs", default="constant:1,constant:0.01,likelihood:1,constant:0",
                   help="comma-separated weighting:gamma pairs (weighting: constant or likelihood)")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS, help="the results JSON")
    args = p.parse_args(argv)
    start = time.perf_counter()
    data = learned.load_digits()
    sde = VPSDE(0.1, 16.0, 1.0)
    x_tr, y_tr = data.train_x, np.asarray(data.train_y)
    x_ev, y_ev = data.test_x[:300], np.asarray(data.test_y[:300])
    unet = learned.UNetConfig.digits_tiny(channels=16, embed_dim=64, num_groups=4, num_classes=None, dim_latent=20)
    rows = []
    for item in args.configs.split(","):
        weighting, gamma, *init = item.split(":")
        extra = {"init_log_sigma": float(init[0])} if init else {}
        t0 = time.perf_counter()
        k_e, k_d, k_t = jax.random.split(jax.random.key(0), 3)
        enc_config = learned.EncoderConfig((1, 8, 8), 20, channels=(16, 32), hidden=64, **extra)
        encoder = learned.ConvEncoder(enc_config, key=k_e)
        model = learned.DiffusionAutoencoder(encoder, learned.UNetDecoder(learned.EntropyUNet(unet, sde, key=k_d)))
        if weighting == "constant":
            dem = learned.DEMLoss()
        elif weighting == "likelihood":  # the autoencoder experiment's default: log-SNR times from 1e-4 T
            dem = learned.DEMLoss(learned.Likelihood(sde), learned.LogSNRTime(s_min=1e-4))
        else:
            raise ValueError(f"weighting must be constant or likelihood; got {weighting!r}.")
        config = learned.TrainConfig(steps=args.steps, batch_size=64, lr=1e-3, warmup_steps=50, final_lr_fraction=0.1,
                                     max_grad_norm=1.0, ema_decay=0.99, steps_per_call=50, checkpoint_every=args.steps,
                                     progress=False)
        loss = learned.AutoencoderLoss(dem, gamma=float(gamma))
        trained = learned.train(model, x_tr, None, config=config, loss=loss, key=k_t).ema_model
        kl = np.asarray(jax.vmap(trained.encoder.kl_per_coordinate)(jnp.asarray(x_ev))).mean(axis=0)
        mu, log_sigma = (np.asarray(a, np.float64) for a in jax.vmap(trained.encoder)(jnp.asarray(x_ev)))
        snr = mu.var(axis=0) / np.exp(2 * log_sigma).mean(axis=0)
        knn = {}
        for name, k_tr, k_ev in (("means", None, None), ("draws", jax.random.key(1), jax.random.key(2))):
            z_tr = np.asarray(learned.encode_batch(trained, x_tr, key=k_tr))
            z_ev = np.asarray(learned.encode_batch(trained, x_ev, key=k_ev))
            acc = float(KNeighborsClassifier(5).fit(z_tr, y_tr).score(z_ev, y_ev))
            knn[name] = {"value": acc, "stderr": float(np.sqrt(acc * (1 - acc) / len(y_ev)))}
        row = {"weighting": weighting, "gamma": float(gamma), "init_log_sigma": enc_config.init_log_sigma,
               "steps": args.steps, "kl_total": float(kl.sum()),
               "active_dims_kl_above_0.1": int((kl > 0.1).sum()), "kl_per_dim": [float(v) for v in kl],
               "mean_spread": float(mu.std(axis=0).mean()), "posterior_width": float(np.exp(log_sigma).mean()),
               "gaussian_channel_nats": float(0.5 * np.log1p(snr).sum()),
               "knn_accuracy": knn, "wall_time_s": time.perf_counter() - t0}
        rows.append(row)
        print({k: v for k, v in row.items() if k != "kl_per_dim"}, flush=True)
        write_json(args.out, {"benchmark": "autoencoder_collapse", "dataset": "digits", "n_eval": len(y_ev),
                             "latent_dim": 20, "rows": rows, "units": "nats", **provenance(start)})
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
