"""Why the digits U-Net's I(X;Y) leaves its bounds: I_MINDE and S_NN against training steps, on held-out and
training images, for two label-dropout rates (issue: image estimates that hold).

The network is `separability images --quick`'s (digits_tiny with 16 channels, embedding 64, 4 groups), trained by
an explicit optax loop written with public names only (Adam, warm-up 50 steps then constant lr 1e-3, gradient
clipping 1, EMA 0.99, batch 64), so that the same run can be measured at 500, 1,000, 2,000 and 4,000 steps. At each
of those steps the EMA network is measured on 200 held-out and 200 training images: I_MINDE (Eq. 13), S_NN^X and
S_NN^{X|Y} (Eq. 11) by importance sampling (log-uniform proposal, 16 times per image: no grid bias), and I_MINDE on a
32-point uniform grid with its rate curve. Bounds: H(Y) = 2.302 nats (all 1,797 labels); H(Y) - CE = 2.05 with the
quick run's classifier.

    python benchmarks/bench_images_generalisation.py --label-dropout 0.1 --name base
    python benchmarks/bench_images_generalisation.py --label-dropout 0.5 --name ld05
    (each appends its run to benchmarks/results/images_generalisation_digits.json; about 10 minutes on 2 CPU cores)
    python benchmarks/bench_images_generalisation.py --empirical --name memorising
    (the same I_MINDE with the exact e* of the diffused training set, `gaussian_oracle.EmpiricalMixture`: what a
    network that memorised its 1,500 training images would read; about a minute)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import learned
from gaussian_oracle import VPSDE, EmpiricalMixture
from verify import (
    ImportanceSampler,
    PiecewiseConstant,
    UniformGrid,
    device,
    mutual_information_minde,
    neural_entropy,
    versions,
    write_json,
)

RESULTS = pathlib.Path(__file__).parent / "results" / "images_generalisation_digits.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="the run's name in the results file")
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--evals", default="500,1000,2000,4000", help="steps at which the EMA network is measured")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--empirical", action="store_true", help="measure the exact empirical-data model instead of training")
    p.add_argument("--dequantise", action="store_true",
                   help="add uniform noise of one quantisation step (1/16: digits store 0..16) to every training batch, "
                        "so the model learns a continuous density instead of resolving the 17-level pixel lattice")
    p.add_argument("--cross-entropy", type=float, default=0.0,
                   help="with --guided: add this weight times the classifier's cross-entropy on noisy images (times "
                        "uniform in [0, T]) to the DEM loss, so p_phi(y|x_s) is also fitted as a posterior")
    p.add_argument("--guided", action="store_true",
                   help="learned.ClassifierGuided: an unconditional U-Net plus the input-gradient of a noise-conditional "
                        "classifier (consistent by construction) instead of one label-embedding U-Net")
    args = p.parse_args(argv)
    evals = [int(v) for v in args.evals.split(",")]

    data = learned.load_digits()
    sde = VPSDE(0.1, 16.0, 1.0)
    if args.empirical:
        return _empirical(args, data, sde)
    if args.guided:
        k_u, k_c = jax.random.split(jax.random.key(args.seed))
        unet = learned.UNetConfig.digits_tiny(num_classes=None, channels=16, embed_dim=64, num_groups=4)
        classifier = learned.ClassifierConfig((1, 8, 8), 10, channels=(16, 32), hidden=64)
        model = learned.ClassifierGuided(learned.EntropyUNet(unet, sde, key=k_u),
                                         learned.NoisyClassifier(classifier, sde, key=k_c))
    else:
        unet = learned.UNetConfig.digits_tiny(num_classes=10, channels=16, embed_dim=64, num_groups=4)
        model = learned.EntropyUNet(unet, sde, key=jax.random.key(args.seed))
    loss = learned.DEMLoss(condition_dropout=args.label_dropout)
    schedule = optax.join_schedules([optax.linear_schedule(0, 1e-3, 50), optax.constant_schedule(1e-3)], [50])
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = opt.init(params)
    ema = params
    x_tr, y_tr = jnp.asarray(data.train_x), jnp.asarray(data.train_y)

    step_width = 1.0 / 16.0 if args.dequantise else 0.0

    @eqx.filter_jit
    def step(params, opt_state, ema, key, decay):
        k_batch, k_loss = jax.random.split(key)
        k_deq = jax.random.fold_in(key, 7)  # its own stream: runs without --dequantise draw what they always drew
        idx = jax.random.randint(k_batch, (64,), 0, x_tr.shape[0])
        xb = x_tr[idx] + step_width * (jax.random.uniform(k_deq, x_tr[idx].shape, x_tr.dtype) - 0.5)
        def objective(q):
            m = eqx.combine(q, static)
            value = loss(m, xb, y_tr[idx], key=k_loss)
            if args.cross_entropy:
                ce = learned.noisy_cross_entropy(m.classifier, xb, y_tr[idx], key=jax.random.fold_in(key, 11))
                value = value + args.cross_entropy * ce
            return value

        value, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        ema = jax.tree.map(lambda e, q: decay * e + (1 - decay) * q, ema, params)
        return params, opt_state, ema, value

    grid = UniformGrid(n_times=32)
    importance = ImportanceSampler(PiecewiseConstant.log_uniform(sde.T, s_min=1e-4), n_per_sample=16)
    key = jax.random.key(args.seed + 1)
    start = time.perf_counter()
    rows = []
    for i in range(1, evals[-1] + 1):
        key, k = jax.random.split(key)
        decay = jnp.asarray(min(0.99, (1 + i) / (10 + i)), jnp.float32)
        params, opt_state, ema, value = step(params, opt_state, ema, k, decay)
        if i not in evals:
            continue
        m = eqx.combine(ema, static)
        row = {"step": i, "wall_time_s": time.perf_counter() - start, "loss": float(value)}
        for split, xs, ys in (("held_out", data.test_x[:200], data.test_y[:200]),
                              ("training", data.train_x[:200], data.train_y[:200])):
            xs, ys = jnp.asarray(xs), jnp.asarray(ys)
            row[split] = {
                "minde": mutual_information_minde(m, xs, ys, times=importance, chunk_size=50, key=jax.random.key(5)),
                "neural_entropy": neural_entropy(m, xs, times=importance, chunk_size=50, key=jax.random.key(6)),
                "conditional_neural_entropy": neural_entropy(m, xs, y=ys, times=importance, chunk_size=50,
                                                             key=jax.random.key(6)),
            }
        on_grid = mutual_information_minde(m, jnp.asarray(data.test_x[:200]), jnp.asarray(data.test_y[:200]),
                                           times=grid, chunk_size=50, key=jax.random.key(5))
        row["held_out"]["minde_grid"] = on_grid.to_dict(curves=True)
        rows.append(row)
        print(args.name, i, {s: round(row[s]["minde"].value, 3) for s in ("held_out", "training")}, flush=True)

    _save(args.name, {"label_dropout": args.label_dropout, "seed": args.seed, "rows": rows,
                      "dequantised": bool(args.dequantise), "cross_entropy_weight": args.cross_entropy,
                      "model": "ClassifierGuided" if args.guided else "EntropyUNet with a label embedding"})
    return 0


def _save(name: str, run: dict) -> None:
    payload = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"benchmark": "images_generalisation", "runs": {}}
    payload["runs"][name] = {**run, "versions": versions(), "device": device()}
    write_json(RESULTS, payload)
    print(f"→ {RESULTS}")


def _empirical(args, data, sde) -> int:
    """I_MINDE of the exactly diffused training set (a perfectly memorising model) on held-out and training images."""
    model = EmpiricalMixture(data.train_x, data.train_y, sde).model()
    importance = ImportanceSampler(PiecewiseConstant.log_uniform(sde.T, s_min=1e-4), n_per_sample=16)
    row = {}
    for split, xs, ys in (("held_out", data.test_x[:200], data.test_y[:200]),
                          ("training", data.train_x[:200], data.train_y[:200])):
        row[split] = {"minde": mutual_information_minde(model, jnp.asarray(xs), jnp.asarray(ys), times=importance,
                                                        chunk_size=25, key=jax.random.key(5))}
        print(args.name, split, row[split]["minde"], flush=True)
    _save(args.name, {"model": "gaussian_oracle.EmpiricalMixture of the 1,500 training images", "rows": [row]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
