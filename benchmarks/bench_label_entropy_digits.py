"""H(Y|X_s) of a learned digits model by both estimators, beside the exact empirical-data oracle.

Trains the `--quick` label-embedding U-Net (500 steps, as `separability images --quick`) and measures the label
entropy H(Y|X_s) on a log grid: by the I-MMSE identity on 200 held-out images (`verify.label_entropy`), and by the
online Bayes classifier along 200 reverse trajectories of 200 steps (`verify.label_entropy_online`); beside them the
exact curve of the diffused training set (`gaussian_oracle.EmpiricalMixture`, what a memorising model gives).

    python benchmarks/bench_label_entropy_digits.py   (-> results/label_entropy_digits.json; a few minutes on 2 CPU cores)
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import learned
from gaussian_oracle import VPSDE, EmpiricalMixture
from verify import GeometricGrid, device, label_entropy, label_entropy_online, versions, write_json

RESULTS = pathlib.Path(__file__).parent / "results" / "label_entropy_digits.json"


def main() -> int:
    start = time.perf_counter()
    data = learned.load_digits()
    sde = VPSDE(0.1, 16.0, 1.0)
    unet = learned.UNetConfig.digits_tiny(num_classes=10, channels=16, embed_dim=64, num_groups=4)
    config = learned.TrainConfig(steps=500, batch_size=64, lr=1e-3, warmup_steps=50, final_lr_fraction=0.1,
                                 max_grad_norm=1.0, ema_decay=0.99, steps_per_call=5, checkpoint_every=500,
                                 progress=False, unroll=True)
    model = learned.train(learned.EntropyUNet(unet, sde, key=jax.random.key(0)), data.train_x, data.train_y,
                          config=config, loss=learned.DEMLoss(condition_dropout=0.1), key=jax.random.key(1)).ema_model
    prior = data.label_prior()
    h_y = data.label_entropy()

    grid = GeometricGrid(n_times=48, s_min=1e-3)
    immse = label_entropy(model, jnp.asarray(data.test_x[:200]), jnp.asarray(data.test_y[:200]), prior_entropy=h_y,
                          times=grid, chunk_size=50, key=jax.random.key(2))
    online = label_entropy_online(model, (1, 8, 8), prior, n=200, n_steps=200, key=jax.random.key(3))
    oracle = EmpiricalMixture(data.train_x, data.train_y, sde)
    picks = np.array([1e-3, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.8])
    memorising = oracle.label_entropy(picks, n=1000, key=jax.random.key(4), chunk=100)

    def at(est, s):
        i = int(np.argmin(np.abs(est.times - s)))
        return {"time": float(est.times[i]), "value": float(est.cumulative[i]), "stderr": float(est.cumulative_stderr[i])}

    table = [{"s": float(s), "immse_held_out": at(immse, s), "online": at(online, s),
              "memorising_exact": {"value": float(memorising.cumulative[k]), "stderr": float(memorising.cumulative_stderr[k])}}
             for k, s in enumerate(picks)]
    for row in table:
        print(f"s={row['s']:<6g} I-MMSE {row['immse_held_out']['value']:7.3f} ± {row['immse_held_out']['stderr']:.3f}   "
              f"online {row['online']['value']:6.3f} ± {row['online']['stderr']:.3f}   "
              f"memorising {row['memorising_exact']['value']:6.3f} ± {row['memorising_exact']['stderr']:.3f}", flush=True)
    write_json(RESULTS, {"benchmark": "label_entropy_digits", "prior_entropy": h_y, "table": table,
                         "immse": immse.to_dict(curves=True), "online": online.to_dict(curves=True),
                         "units": "nats", "versions": versions(), "device": device(),
                         "wall_time_s": time.perf_counter() - start})
    print(f"→ {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
