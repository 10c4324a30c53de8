"""Item 3 of issue 13: what makes learned MI saturate at high MI, measured by ablation on the harness's sharp tasks.

Three ways to precondition the two networks MINDE fits (same MLPs, schedule and data as `verify.MINDE(transform=None,
validation_fraction=0)`: width 256, depth 3, 4,000 steps, log-SNR training times down to 1e-5 T; 8,000 training and
2,000 evaluation pairs), each read on two estimation grids (100 points uniform in s; 100 cells uniform in log-SNR
over the training range [1e-5 T, T], `verify.estimators.LogSNRGrid`):

- `marginal`: both networks whitened by Cov(x), uncentred (MINDE before this measurement);
- `within`: the conditional network whitened by the within-condition covariance Sigma_X|Y, uncentred;
- `centred`: the conditional network whitened by Sigma_X|Y *and* centred by the regression of x on y, the
  unconditional one centred by the data mean (`learned.Preconditioned.fit(..., centre=True)`).

Tasks: determinism D_X = 25, D_Y = 15 at sigma_eps in {0.05 (the harness's 62.9-nat task), 0.1, 0.25, 1}; CFG-trained
data (exact guided probability-flow samples of determinism(25, 15, 1), stopped at s = 1e-3) at w = 2 and 6, given
as sigma_eps = -w.

    python benchmarks/bench_centring.py 0.05 marginal,within,centred
    python benchmarks/bench_centring.py 0.1,0.25,-2,-6,1.0 centred
    python benchmarks/bench_centring.py -6,0.25 marginal
    python benchmarks/bench_centring.py 0.5 centred
    python benchmarks/bench_centring.py -6,-2 centred 1e-7

An optional third argument moves the smallest training and grid time s_min (a fraction of T, default 1e-5, the
package's `LogSNRTime` default) for both. Every row carries, beside the exact I(X;Y), the exact *window*
I(X_{s_min};Y) - I(X_T;Y): what an estimator integrating over [s_min T, T] can see at most
(`JointGaussian.mutual_information_curve`, `gaussian_oracle.cfg_mutual_information_curve`). Strong guidance puts
information below any s_min a float32 network resolves (w = 6: 89.6 of 140.2 nats above 1e-5 T).

Each call writes benchmarks/results/centring/<tasks>_<variants>[_smin<s_min>].json (rows as they finish).
"""
import pathlib
import sys
import time

import jax
import numpy as np

import learned
from gaussian_oracle import JointGaussian
from verify import MINDE, LogSNRGrid, UniformGrid, information_estimates, provenance, write_json

est = MINDE(transform=None, validation_fraction=0.0, progress=False)
# MINDE's default schedule for 4,000 steps without a validation split (verify._api._train_config)
config = learned.TrainConfig(steps=4000, batch_size=256, lr=2e-3, warmup_steps=200, final_lr_fraction=0.02,
                             steps_per_call=200, checkpoint_every=4000, ema_decay=0.999, progress=False)
rows = []
start = time.perf_counter()
se_list = [float(a) for a in sys.argv[1].split(",")]
variants = sys.argv[2].split(",")
s_min = float(sys.argv[3]) if len(sys.argv) > 3 else learned.LogSNRTime().s_min
suffix = "" if len(sys.argv) <= 3 else f"_smin{sys.argv[3]}"
window_times = [s_min * est.sde.T, est.sde.T]
for se in se_list:
    if se < 0:  # CFG-trained data at w = -se: exact guided probability-flow samples of the determinism(25, 15, 1) pair
        w = -se
        joint = JointGaussian.determinism(25, 15, 1.0, key=jax.random.key(4))
        _, y = joint.sample(10_000, key=jax.random.key(11))
        x = joint.cfg_sample(y, w, key=jax.random.key(21), s_end=1e-3)
        exact = float(joint.cfg_mutual_information(w, 1e-3))
        window = float(np.diff(joint.cfg_mutual_information_curve(w, window_times, 1e-3))[0])
    else:
        seed = {0.05: 5, 0.1: 7, 0.25: 8, 0.5: 6, 1.0: 4}[se]
        joint = JointGaussian.determinism(25, 15, se, key=jax.random.key(seed))
        x, y = joint.sample(10_000, key=jax.random.key(11))
        exact = float(joint.mutual_information())
        window = float(np.diff(joint.mutual_information_curve(window_times))[0])
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    xt, yt, xe, ye = x[:8000], y[:8000], x[8000:], y[8000:]
    for variant in variants:
        t0 = time.perf_counter()
        k_c, k_u, k_tc, k_tu = jax.random.split(jax.random.key(12), 4)
        loss = learned.DEMLoss(learned.Likelihood(est.sde), learned.LogSNRTime(s_min=s_min))
        def mlp(cond, k):
            cfg = learned.MLPConfig(dim_x=25, dim_y=15 if cond else None, width=est.width, depth=est.depth)
            net = learned.EntropyMLP(cfg, est.sde, key=k)
            return net.standardise_condition(yt) if cond else net
        if variant == "marginal":      # the API today: both whitened by Cov(x), no centring
            cond = learned.Preconditioned.fit(mlp(True, k_c), xt)
            unc = learned.Preconditioned.fit(mlp(False, k_u), xt)
        elif variant == "within":      # conditional whitened by Sigma_X|Y, no centring
            cond = learned.Preconditioned.fit(mlp(True, k_c), xt, yt)
            unc = learned.Preconditioned.fit(mlp(False, k_u), xt)
        elif variant == "centred":     # conditional: Sigma_X|Y + regression mean; unconditional: Cov(x) + data mean
            cond = learned.Preconditioned.fit(mlp(True, k_c), xt, yt, centre=True)
            unc = learned.Preconditioned.fit(mlp(False, k_u), xt, centre=True)
        cond = learned.train(cond, xt, yt, config=config, loss=loss, key=k_tc).ema_model
        unc = learned.train(unc, xt, None, config=config, loss=loss, key=k_tu).ema_model
        fit_s = time.perf_counter() - t0
        model = learned.Pair(unc, cond)
        row = {"sigma_eps": se, "variant": variant, "exact": exact, "exact_window": window, "s_min": s_min, "fit_s": fit_s}
        for label, times in [("uniform100", UniformGrid(n_times=100)),
                             ("logsnr100_" + (sys.argv[3] if len(sys.argv) > 3 else "1e-5"), LogSNRGrid(n_times=100, s_min=s_min))]:
            e = information_estimates(model, xe, ye, times=times, key=jax.random.key(13))
            row[label] = {k: [float(e[k].value), float(e[k].stderr)] for k in ("minde", "difference", "neural", "conditional_neural")}
            print(se, variant, label, {k: f"{v[0]:.3f}±{v[1]:.3f}" + (f" ({(v[0]/exact-1)*100:+.1f}%, window {(v[0]/window-1)*100:+.1f}%)" if k in ("minde", "difference") else "") for k, v in row[label].items()}, "exact", round(exact, 3), f"fit {fit_s:.0f}s", flush=True)
        rows.append(row)
        out = pathlib.Path(__file__).parent / "results" / "centring" / f"{sys.argv[1]}_{sys.argv[2]}{suffix}.json"
        write_json(out, {"benchmark": "centring", "rows": rows, "units": "nats", **provenance(start)})
