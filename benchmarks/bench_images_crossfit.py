"""Is the digits U-Net's excess I_MINDE the squared norm of its own estimation noise? A cross-fit test.

MINDE reads $\\int \\tfrac\\beta2 \\mathbb E\\|\\hat d\\|^2$ with $\\hat d = e_\\theta(x,s;y) - e_\\theta(x,s)$. If
$\\hat d = d + n$ with $n$ a fit error of mean zero, $\\mathbb E\\|\\hat d\\|^2 = \\|d\\|^2 + \\mathbb E\\|n\\|^2$: the
plug-in squared norm is biased up by the error's variance, on held-out and training images alike (what
`bench_images_generalisation.py` measured). Two independent fits $a$, $b$ have independent errors, so the cross
term $\\int \\tfrac\\beta2 \\mathbb E[\\hat d_a \\cdot \\hat d_b]$ has no such bias. This script trains two
networks (different seeds; `--split` also gives them disjoint halves of the training set) with the loop of
`bench_images_generalisation.py` and reports, at each evaluation step, I_MINDE of each network and the cross term,
all by importance sampling (log-uniform, 16 times per image) on the same 200 held-out images.

    python benchmarks/bench_images_crossfit.py --name seeds
    python benchmarks/bench_images_crossfit.py --name halves --split
    python benchmarks/bench_images_crossfit.py --name guided_halves --split --guided --label-dropout 0.2
    python benchmarks/bench_images_crossfit.py --name ld05_halves --split --label-dropout 0.5
    python benchmarks/bench_images_crossfit.py --name ld05_halves_centred --split --label-dropout 0.5 --centre
    (each appends to benchmarks/results/images_crossfit_digits.json)
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
from gaussian_oracle import VPSDE
from verify import (
    ImportanceSampler,
    PiecewiseConstant,
    device,
    mutual_information_minde,
    mutual_information_minde_crossfit,
    versions,
    write_json,
)

RESULTS = pathlib.Path(__file__).parent / "results" / "images_crossfit_digits.json"


def _trainer(model, loss, x_tr, y_tr, lr_schedule, batch):
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr_schedule))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    @eqx.filter_jit
    def step(params, opt_state, ema, key, decay):
        k_batch, k_loss = jax.random.split(key)
        idx = jax.random.randint(k_batch, (batch,), 0, x_tr.shape[0])
        value, grads = jax.value_and_grad(lambda q: loss(eqx.combine(q, static), x_tr[idx], y_tr[idx], key=k_loss))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        ema = jax.tree.map(lambda e, q: decay * e + (1 - decay) * q, ema, params)
        return params, opt_state, ema, value

    return params, static, opt.init(params), step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--split", action="store_true", help="train the two networks on disjoint halves of the training set")
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--evals", default="1000,2000,4000")
    p.add_argument("--n-eval", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guided", action="store_true",
                   help="learned.ClassifierGuided (unconditional U-Net + noisy classifier) trained by learned.GuidedLoss")
    p.add_argument("--cross-entropy", type=float, default=1.0, help="with --guided: GuidedLoss's cross-entropy weight")
    p.add_argument("--centre", action="store_true",
                   help="learned.ClassCentred: the U-Net sees x - sqrt(alpha) m(y), with m(y) its training part's class "
                        "mean (the data mean for the null label), and that shift is added back to its output")
    p.add_argument("--likelihood", action="store_true",
                   help="the Gaussian half's training: likelihood weighting and times uniform in log-SNR on [s_min T, T] "
                        "(default: the paper's constant weighting and uniform times)")
    p.add_argument("--s-min", type=float, default=1e-4, help="with --likelihood: the smallest training time (fraction of T)")
    args = p.parse_args(argv)
    evals = [int(v) for v in args.evals.split(",")]

    data = learned.load_digits()
    sde = VPSDE(0.1, 16.0, 1.0)
    if args.likelihood:
        dem = learned.DEMLoss(learned.Likelihood(sde), learned.LogSNRTime(s_min=args.s_min),
                              condition_dropout=args.label_dropout)
    else:
        dem = learned.DEMLoss(condition_dropout=args.label_dropout)
    loss = learned.GuidedLoss(dem, cross_entropy=args.cross_entropy) if args.guided else dem

    def new_model(key, xp, yp):
        if not args.guided:
            unet = learned.UNetConfig.digits_tiny(num_classes=10, channels=16, embed_dim=64, num_groups=4)
            network = learned.EntropyUNet(unet, sde, key=key)
            return learned.ClassCentred.fit(network, xp, yp) if args.centre else network
        k_u, k_c = jax.random.split(key)
        unet = learned.UNetConfig.digits_tiny(num_classes=None, channels=16, embed_dim=64, num_groups=4)
        classifier = learned.ClassifierConfig((1, 8, 8), 10, channels=(16, 32), hidden=64)
        return learned.ClassifierGuided(learned.EntropyUNet(unet, sde, key=k_u),
                                        learned.NoisyClassifier(classifier, sde, key=k_c))

    schedule = optax.join_schedules([optax.linear_schedule(0, 1e-3, 50), optax.constant_schedule(1e-3)], [50])
    x_all, y_all = jnp.asarray(data.train_x), jnp.asarray(data.train_y)
    half = x_all.shape[0] // 2
    parts = [(x_all[:half], y_all[:half]), (x_all[half:], y_all[half:])] if args.split else [(x_all, y_all)] * 2
    runs = []
    for i, (xp, yp) in enumerate(parts):
        model = new_model(jax.random.key(args.seed + 100 * i), xp, yp)
        params, static, opt_state, step = _trainer(model, loss, xp, yp, schedule, 64)
        runs.append({"params": params, "ema": params, "static": static, "opt": opt_state, "step": step,
                     "key": jax.random.key(args.seed + 1 + 100 * i)})

    importance = ImportanceSampler(PiecewiseConstant.log_uniform(sde.T, s_min=1e-4), n_per_sample=16)
    xs, ys = jnp.asarray(data.test_x[:args.n_eval]), jnp.asarray(data.test_y[:args.n_eval])
    start = time.perf_counter()
    rows = []
    for i in range(1, evals[-1] + 1):
        decay = jnp.asarray(min(0.99, (1 + i) / (10 + i)), jnp.float32)
        for r in runs:
            r["key"], k = jax.random.split(r["key"])
            r["params"], r["opt"], r["ema"], _ = r["step"](r["params"], r["opt"], r["ema"], k, decay)
        if i not in evals:
            continue
        a, b = (eqx.combine(r["ema"], r["static"]) for r in runs)
        row = {"step": i, "wall_time_s": time.perf_counter() - start,
               "minde_a": mutual_information_minde(a, xs, ys, times=importance, chunk_size=50, key=jax.random.key(5)),
               "minde_b": mutual_information_minde(b, xs, ys, times=importance, chunk_size=50, key=jax.random.key(5)),
               "crossfit": mutual_information_minde_crossfit(a, b, xs, ys, times=importance, chunk_size=50,
                                                             key=jax.random.key(5))}
        rows.append(row)
        print(args.name, i, {k: f"{v.value:.3f} ± {v.stderr:.3f}" for k, v in row.items() if hasattr(v, "value")},
              flush=True)
        # written after every evaluation, so a run stopped early keeps the rows it finished
        payload = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"benchmark": "images_crossfit", "runs": {}}
        payload["runs"][args.name] = {
            "split": bool(args.split), "label_dropout": args.label_dropout,
            "model": "ClassifierGuided + GuidedLoss" if args.guided else "EntropyUNet, label embedding",
            "cross_entropy_weight": args.cross_entropy if args.guided else None, "seed": args.seed,
            "class_centred": bool(args.centre),
            "training_times": (f"likelihood weighting, LogSNRTime(s_min={args.s_min})" if args.likelihood
                               else "constant weighting, UniformTime"),
            "n_eval": args.n_eval, "evals_requested": evals, "rows": rows, "versions": versions(), "device": device()}
        write_json(RESULTS, payload)
    print(f"→ {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
