"""Why the online label entropy of the digits U-Net reads about 0.5 nats at small s, where the cross-fitted I-MMSE
curve on held-out digits reads about 0.07: the model's own samples, or the online estimator?

The online Bayes classifier (`verify.label_profile_online`) scores the model's own reverse trajectories, so its
H(Y|X_s) is that of the model's distribution, not of the data. A noise-conditional classifier trained on the real
digits (`learned.train_noisy_classifier`) reads the same states (`reference=`), which splits the 0.5 nats in two:
- the classifier on real held-out digits diffused to s (how decided real digits are, to the classifier);
- the classifier on the trajectories' states (how decided the model's samples are, to the same classifier);
- the online curve minus the classifier's on the same states, trajectory by trajectory (`gap`, a paired stderr).
The same three are read along trajectories of each label's own drift (the label drawn from the prior,
`class_profiles_online` at w = 0), where the recursion scores each step under the drifts of the model that made it.
No reference here is exact: the classifier is a model of the data's posterior, and the model's samples lie off the
data. Two step counts of the trajectories show how much of the gap is the Euler-Maruyama step.

    python benchmarks/bench_online_label_reference.py --checkpoints OUT/checkpoints [--steps N]
    (the checkpoint folder of `separability images --quick [--steps N]`, seed 0; without it the first network trains
    in --work; writes benchmarks/results/online_label_reference_digits.json and .png, or ..._steps<N>.json/.png)

With `--steps` the network is trained for N steps instead of the quick preset's, which shows whether the gap is the
network's fit (it shrinks with training) or the estimator's.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import learned
from verify import class_profiles_online, device, label_profile_online, versions, write_json
from verify.cli import build_parser, prepare_images
from verify.experiments import plot_curves, train_networks

RESULTS = pathlib.Path(__file__).parent / "results" / "online_label_reference_digits.json"
REPORT_TIMES = (1e-3, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5)


def _at(times: np.ndarray, mean: np.ndarray, se: np.ndarray, s: float) -> dict:
    i = int(np.argmin(np.abs(times - s)))
    return {"time": float(times[i]), "value": float(mean[i]), "stderr": float(se[i])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", default=None, help="`separability images --quick --seed S`'s checkpoint folder")
    p.add_argument("--work", default=None, help="where to train the network without --checkpoints (default: a temp)")
    p.add_argument("--seed", type=int, default=0, help="the images run's seed (its networks' keys)")
    p.add_argument("--steps", type=int, default=None,
                   help="the images run's --steps (training steps per network; default: the --quick preset's)")
    p.add_argument("--classifier-steps", type=int, default=3000)
    p.add_argument("--n", type=int, default=100, help="trajectories")
    p.add_argument("--n-steps", default="50,200", help="Euler-Maruyama steps of the trajectories, comma-separated")
    p.add_argument("--out", default=None, help=f"default {RESULTS.name}, or ..._steps<N>.json with --steps N")
    args = p.parse_args(argv)

    checkpoints = args.checkpoints or str(pathlib.Path(args.work or tempfile.mkdtemp()) / "checkpoints")
    steps = [] if args.steps is None else ["--steps", str(args.steps)]
    image_args = build_parser().parse_args(["images", "--quick", "--seed", str(args.seed), *steps, "--checkpoint-dir",
                                            checkpoints, "--no-progress"])
    data, experiment = prepare_images(image_args)
    start = time.perf_counter()
    # the first network of `images --quick` (the one `separability labels` runs the online classifier on), resumed
    model = train_networks(experiment, data, checkpoints, key=jax.random.key(args.seed), first_only=True)[0].ema_model
    sde = model.sde
    prior = data.label_prior()
    timings = {"network_s": time.perf_counter() - start}

    t0 = time.perf_counter()
    config = learned.ClassifierConfig(tuple(data.image_shape), data.num_classes, channels=(32, 64), hidden=128,
                                      steps=args.classifier_steps)
    classifier = learned.train_noisy_classifier(config, sde, data.train_x, data.train_y, key=jax.random.key(7))
    timings["classifier_s"] = time.perf_counter() - t0

    def probabilities(x, s):
        return jax.nn.softmax(classifier(x, s))

    # the classifier on the real held-out digits, diffused to each report time
    x0, y0 = jnp.asarray(data.test_x), np.asarray(data.test_y)
    real = []
    for i, s in enumerate(REPORT_TIMES):
        time_s = jnp.asarray(s, x0.dtype)
        keys = jax.random.split(jax.random.fold_in(jax.random.key(3), i), len(y0))
        x_s = jax.vmap(lambda xi, k: sde.perturb(xi, time_s, key=k))(x0, keys)
        prob = np.asarray(jax.vmap(lambda xi: probabilities(xi, time_s))(x_s), np.float64)
        logp = np.log(np.maximum(prob, 1e-300))
        entropy, ce = -(prob * logp).sum(-1), -logp[np.arange(len(y0)), y0]
        real.append({"s": s, "entropy": float(entropy.mean()), "entropy_stderr": float(entropy.std(ddof=1)
                                                                                       / np.sqrt(len(y0))),
                     "cross_entropy": float(ce.mean()), "accuracy": float((prob.argmax(-1) == y0).mean())})
        print(f"real held-out digits, s = {s:g}: classifier entropy {real[-1]['entropy']:.3f}, "
              f"cross-entropy {real[-1]['cross_entropy']:.3f}, accuracy {real[-1]['accuracy']:.3f}", flush=True)

    def report(curves) -> dict:
        pick = {"online": curves.entropy, "classifier_on_same_states": curves.reference_entropy, "gap": curves.gap}
        return {name: [_at(est.times, est.cumulative, est.cumulative_stderr, s) for s in REPORT_TIMES]
                for name, est in pick.items()}

    rows, panels = [], []
    shape = tuple(data.image_shape)
    per_class = max(2, args.n // data.num_classes)
    for n_steps in (int(k) for k in args.n_steps.split(",")):
        t0 = time.perf_counter()
        curves = label_profile_online(model, shape, prior, n=args.n, n_steps=n_steps, s_end=1e-3,
                                      reference=probabilities, key=jax.random.key(11))
        timings[f"online_{n_steps}_steps_s"] = time.perf_counter() - t0
        # the same on trajectories of each label's conditional drift (y drawn from the prior): the mixture of the
        # conditional models, whose path posterior the recursion computes exactly (given the Euler steps)
        t0 = time.perf_counter()
        _, by_class = class_profiles_online(model, shape, prior, n_per_class=per_class, n_steps=n_steps, s_end=1e-3,
                                            reference=probabilities, key=jax.random.key(12))
        timings[f"online_class_trajectories_{n_steps}_steps_s"] = time.perf_counter() - t0
        rows.append({"n_steps": n_steps, **report(curves), "class_trajectories": report(by_class)})
        print(f"{n_steps} steps:", flush=True)
        for name, block in (("unconditional trajectories", rows[-1]), ("class-conditional trajectories",
                                                                        rows[-1]["class_trajectories"])):
            print(f" {name}:", flush=True)
            for i, s in enumerate(REPORT_TIMES):
                o, c, g = (block[key][i] for key in ("online", "classifier_on_same_states", "gap"))
                print(f"  s = {o['time']:.3f}: online {o['value']:.3f} ± {o['stderr']:.3f}, classifier on the same "
                      f"states {c['value']:.3f} ± {c['stderr']:.3f}, gap {g['value']:+.3f} ± {g['stderr']:.3f}",
                      flush=True)
        panels.append((f"{n_steps} Euler-Maruyama steps, {args.n} trajectories", "entropy (nats)", [
            {"label": "online Bayes classifier (the model's posterior)", "y": curves.entropy.cumulative,
             "stderr": curves.entropy.cumulative_stderr, "times": curves.entropy.times},
            {"label": "data classifier on the same states", "y": curves.reference_entropy.cumulative,
             "stderr": curves.reference_entropy.cumulative_stderr, "times": curves.reference_entropy.times},
            {"label": "online, class-conditional trajectories", "y": by_class.entropy.cumulative,
             "stderr": by_class.entropy.cumulative_stderr, "times": by_class.entropy.times},
            {"label": "data classifier on the class-conditional states", "y": by_class.reference_entropy.cumulative,
             "stderr": by_class.reference_entropy.cumulative_stderr, "times": by_class.reference_entropy.times},
            {"label": "data classifier on real held-out digits", "y": [r["entropy"] for r in real],
             "stderr": [r["entropy_stderr"] for r in real], "times": list(REPORT_TIMES)},
        ]))
    out = pathlib.Path(args.out) if args.out is not None else (
        RESULTS if args.steps is None else RESULTS.with_name(f"{RESULTS.stem}_steps{args.steps}.json"))
    figure = plot_curves(np.asarray(REPORT_TIMES), panels, out.with_suffix(".png"), log_x=True,
                         title="H(Y|X_s) along the digits U-Net's reverse trajectories")
    write_json(out, {"benchmark": "online_label_reference",
                     "command": "separability images --quick --seed S [--steps N]; "
                                "this script on its checkpoints [--steps N]",
                     "instance": {"dataset": data.name, "seed": args.seed, "n_trajectories": args.n,
                                  "n_per_class": per_class,
                                  "classifier": {"channels": list(config.channels), "hidden": config.hidden,
                                                 "steps": config.steps},
                                  "network_train_steps": experiment.train.steps,
                                  "held_out_images": int(len(y0))},
                     "real_held_out": real, "trajectories": rows, "figure": figure.name, "timings_s": timings,
                     "versions": versions(), "device": device()})
    print(f"→ {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
