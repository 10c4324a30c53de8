"""`separability autoencoder`: the split-loss DAE over tau, the DAE vs VAE comparison, I(Z_sem;Y) and I(Z_per;Y)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax

import learned
from learned import LogSNRTime, TrainConfig, UniformTime

from ..experiments import (
    EXPERIMENTS,
    POSTERIOR_TRAIN,
    AutoencoderExperiment,
    LatentInformationConfig,
    merge_autoencoder_results,
)
from ._common import (
    about_ten_checkpoints,
    add_dataset,
    add_output,
    add_seed,
    checkpoint_dir,
    describe_checkpoints,
    float_list,
    int_list,
    load_image_data,
    nonnegative_float,
    positive_float,
    positive_int,
    resume,
)
from ._images import DEM_FLAGS, training_times

QUICK = "digits"
"""The data set of `--quick`, the CPU smoke configuration tested in CI."""


def _taus(text: str) -> tuple[float, ...]:
    if text.strip().lower() == "none":
        return ()
    values = float_list(text)
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"must be comma-separated split times in [0, 1] (units of T), or none; "
                                         f"got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"must not repeat a split time; got {text!r}")
    return values


def build_experiment(args: argparse.Namespace, data: learned.ImageData) -> AutoencoderExperiment:
    """Turn parsed arguments into an `AutoencoderExperiment` (the data set's preset and `--quick` first, explicit
    flags override)."""
    quick = args.quick
    unet = learned.DATASETS[args.dataset].unet_preset(data.num_classes)
    overrides = dict(num_classes=None)
    if quick:
        overrides.update(channels=16, embed_dim=64, num_groups=4)
    if args.channels is not None:
        overrides["channels"] = args.channels
    unet = dataclasses.replace(unet, **overrides)
    on_cpu = jax.default_backend() == "cpu"
    steps = args.steps if args.steps is not None else (150 if quick else 4000)
    # On a CPU one step per call compiles fastest (XLA compiles unrolled steps one by one); on a GPU a long scan.
    per_call = min(steps, args.steps_per_call if args.steps_per_call is not None else (1 if on_cpu else 100))
    progress = not args.no_progress
    train = TrainConfig(steps=steps, batch_size=args.batch_size if args.batch_size is not None else 64,
                        lr=args.lr if args.lr is not None else (1e-3 if quick else 5e-4),
                        warmup_steps=min(50 if quick else 200, steps), final_lr_fraction=0.1, max_grad_norm=1.0,
                        ema_decay=0.99 if quick else 0.995, steps_per_call=per_call,
                        checkpoint_every=about_ten_checkpoints(steps, per_call), progress=progress,
                        unroll=True if on_cpu else 1)
    vae_steps = args.vae_steps if args.vae_steps is not None else (300 if quick else 4000)
    # the VAE's encoder is convolutional too: a few unrolled steps per call on a CPU
    vae_per_call = min(vae_steps, 5 if on_cpu else 100)
    vae_train = TrainConfig(steps=vae_steps, batch_size=64, lr=1e-3, warmup_steps=min(50, vae_steps),
                            final_lr_fraction=0.1, ema_decay=0.99, steps_per_call=vae_per_call,
                            checkpoint_every=about_ten_checkpoints(vae_steps, vae_per_call), progress=progress,
                            unroll=True if on_cpu else 1)
    mi_steps = args.mi_steps if args.mi_steps is not None else (400 if quick else 3000)
    mi_per_call = min(mi_steps, 100)
    posterior = None
    if args.posterior_steps is not None:
        n, per_call = args.posterior_steps, min(args.posterior_steps, POSTERIOR_TRAIN.steps_per_call)
        posterior = dataclasses.replace(POSTERIOR_TRAIN, steps=n, warmup_steps=min(POSTERIOR_TRAIN.warmup_steps, n),
                                        steps_per_call=per_call, checkpoint_every=per_call * -(-n // per_call))
    latent = LatentInformationConfig(
        width=64 if quick else 128, crossfit=args.latent_crossfit,
        train=TrainConfig(steps=mi_steps, batch_size=256, lr=2e-3, warmup_steps=min(100, mi_steps),
                          final_lr_fraction=0.05, ema_decay=0.99, steps_per_call=mi_per_call,
                          checkpoint_every=mi_per_call * -(-mi_steps // mi_per_call), progress=False),
        posterior=posterior)
    taus = args.tau if args.tau is not None else ((0.1,) if quick else (0.02, 0.05, 0.1, 0.2, 0.4))
    latent_dim = args.latent_dim if args.latent_dim is not None else (2 if quick else 20)
    log_snr, s_min = training_times(args)
    return AutoencoderExperiment(
        unet=unet, train=train, vae_train=vae_train, latent_dim=latent_dim, taus=taus,
        comparison=args.comparison, comparison_latent_dim=args.comparison_latent_dim,
        semantic_channels=args.semantic_channels or ((16, 32) if quick else (32, 64)),
        perceptual_channels=args.perceptual_channels or ((16,) if quick else (32,)),
        encoder_hidden=64 if quick else 128,
        gamma=args.gamma if args.gamma is not None else AutoencoderExperiment.gamma,
        weighting=args.weighting or AutoencoderExperiment.weighting,
        time_sampler=LogSNRTime(s_min=s_min) if log_snr else UniformTime(), noisy_semantic=args.noisy_semantic,
        sigma_dec=args.sigma_dec, latent=latent, latent_draws=args.latent_draws,
        n_eval=args.n_eval if args.n_eval is not None else (300 if quick else 1000),
        recon_steps=args.recon_steps if args.recon_steps is not None else (16 if quick else 64),
        tsne_tau=args.tsne_tau, dataset=args.dataset, data_dir=args.data_dir, n_train=args.n_train,
        checkpoint_dir=checkpoint_dir(args), resume=resume(args), save_latents=args.save_latents,
    )


class AutoencoderCommand:
    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_dataset(p, QUICK)
        add_output(p, "out/autoencoder", checkpoints=True)
        p.add_argument("--quick", action="store_true",
                       help=f"CPU smoke run on {QUICK} in a few minutes (tested in CI): tau = 0.1, D_Z = 2, "
                            "150 DAE steps")
        add_seed(p, "initialisation, training and estimation")
        p.add_argument("--merge", nargs="+", metavar="DIR", default=None,
                       help="join the results of runs in parts (the same command with other --tau and --comparison, "
                            "in the folders DIR) into --out: results.json, arrays.npz and the figures; nothing is "
                            "trained, and the other options are not used")
        p.add_argument("--n-train", type=positive_int, default=None, help="use only the first N training images")
        p.add_argument("--tau", type=_taus, default=None,
                       help="split times in units of T, trained and reported in this order "
                            "(default 0.02,0.05,0.1,0.2,0.4; --quick 0.1), or none (the comparison only). A tau "
                            "gives the same model and numbers whatever the other taus: a long scan can be run in "
                            "parts (--tau 0.1 --no-comparison here, --tau 0.2 there) and joined with --merge")
        p.add_argument("--comparison", action=argparse.BooleanOptionalAction, default=True,
                       help="the DAE vs VAE comparison at --comparison-latent-dim (--no-comparison: the split DAEs "
                            "only)")
        p.add_argument("--latent-dim", type=positive_int, default=None,
                       help="D_Z of each split-DAE latent (default 20; --quick 2)")
        p.add_argument("--comparison-latent-dim", type=positive_int, default=2, help="D_Z of the DAE vs VAE comparison")
        p.add_argument("--tsne-tau", type=float, default=0.1, help="tau of the t-SNE figure (the nearest of --tau)")
        g = p.add_argument_group("autoencoders")
        g.add_argument("--gamma", type=nonnegative_float, default=None,
                       help=f"KL weight (beta-VAE gamma; default {AutoencoderExperiment.gamma:g}, the paper's code 1)")
        g.add_argument("--noisy-semantic", action="store_true",
                       help="feed the semantic encoder the image diffused to tau instead of the clean image")
        g.add_argument("--sigma-dec", type=positive_float, default=0.1, help="the VAE decoder's fixed std")
        g.add_argument("--semantic-channels", type=int_list, default=None, help="semantic encoder stages, e.g. 32,64")
        g.add_argument("--perceptual-channels", type=int_list, default=None, help="perceptual encoder stages, e.g. 32")
        g.add_argument("--channels", type=positive_int, default=None, help="decoder U-Net base channels")
        g = p.add_argument_group("training")
        g.add_argument("--steps", type=positive_int, default=None, help="steps of each DAE (default 4000; --quick 150)")
        g.add_argument("--steps-per-call", type=positive_int, default=None,
                       help="DAE steps per jitted call (default: 1 on a CPU, 100 on a GPU)")
        g.add_argument("--batch-size", type=positive_int, default=None, help="DAE minibatch size (default 64)")
        g.add_argument("--lr", type=positive_float, default=None, help="DAE learning rate (default 5e-4; --quick 1e-3)")
        for flag, parse, text in DEM_FLAGS:
            g.add_argument(flag, type=parse, default=None, help=f"the DAE decoders' {text}")
        g.add_argument("--vae-steps", type=positive_int, default=None, help="VAE steps (default 4000; --quick 300)")
        g.add_argument("--mi-steps", type=positive_int, default=None,
                       help="steps of each latent MI model (default 3000; --quick 400)")
        g.add_argument("--latent-crossfit", action=argparse.BooleanOptionalAction, default=True,
                       help="two latent MI models on the latents of two halves of the training images and the "
                            "cross-fitted MINDE, free of the plug-in's upward bias by the fits' variance "
                            "(--no-latent-crossfit: one model on all of them, the plug-in MINDE)")
        g.add_argument("--posterior-steps", type=positive_int, default=None,
                       help="also train a noise-conditional classifier p(y|z_s, s) of N steps on each latent's "
                            f"training draws (the measured recipe: {POSTERIOR_TRAIN.steps}): adds the "
                            "posterior-centred MINDE (immune to the null-label output's errors) and that "
                            "classifier's lower bound")
        g.add_argument("--latent-draws", type=positive_int, default=4,
                       help="draws z ~ q(z|x) per training image for the latent MI model and classifiers")
        g = p.add_argument_group("measurement")
        g.add_argument("--n-eval", type=positive_int, default=None,
                       help="held-out test images measured (default 1000; --quick 300)")
        g.add_argument("--recon-steps", type=positive_int, default=None,
                       help="Heun steps of the DAE reconstructions (default 64; --quick 16)")
        g.add_argument("--save-latents", action="store_true",
                       help="also write every measured latent's training and held-out draws to latents.npz (about "
                            "1.4 MB per latent at D_Z = 20), to re-analyse the I(Z;Y) measurement")

    def run(self, args: argparse.Namespace) -> dict:
        start = time.perf_counter()
        if args.merge:
            payload = merge_autoencoder_results(args.merge, args.out)
            print(f"separability autoencoder --merge {' '.join(args.merge)} → {args.out}")
        else:
            training_times(args)  # refuses --train-s-min with --training-times uniform before the data load
            data = load_image_data(args, QUICK)
            experiment = build_experiment(args, data)
            print(f"separability autoencoder --dataset {data.name} → {args.out}  ({describe_checkpoints(args)})")
            payload = EXPERIMENTS["autoencoder"].run(experiment, args.out, key=jax.random.key(args.seed), data=data,
                                                     instance={"seed": args.seed, "quick": bool(args.quick)})
        _print_report(payload, args.out, time.perf_counter() - start)
        return payload


def _print_report(payload: dict, out, wall_time: float) -> None:
    q, instance = payload["quantities"], payload["instance"]
    h_y = q["bounds"]["upper"]["value"]
    file = "results.json" if payload["complete"] else "results.partial.json (some run was stopped part-way)"
    print(f"autoencoder report ({instance['dataset']}, D_Z = {instance['latent_dim']}) → {Path(out)}/{file}")
    print(f"  H(Y) = {h_y:.3f} nats")
    for row, low, knn in zip(q["mutual_information"], q["bounds"]["lower"]["per_tau"], q["knn_accuracy"]):
        for part in ("semantic", "perceptual"):
            est = row[part]
            print(f"  tau = {row['tau']:<5g} I(Z_{part[:3]};Y) = {est['value']:.3f} ± {est['stderr']:.3f}  "
                  f"(H(Y) - CE = {low[part]['value']:.3f} ± {low[part]['stderr']:.3f}; "
                  f"k-NN accuracy {knn[part]['value']:.3f})" + _centred_text(est, low[part]))
    for name, block in q["comparison"].items():
        print(f"  {name.upper()} (D_Z = {block['latent_dim']}): I(Z;Y) = {block['value']:.3f} ± {block['stderr']:.3f},"
              f" k-NN accuracy {block['knn_accuracy']['value']:.3f}" + _centred_text(block, block["lower_bound"]))
    r = q["reconstruction_error"]
    errors = [(name.upper(), r[name]) for name in ("dae", "vae") if r[name] is not None]
    errors += [(f"split DAE at tau = {row['tau']:g}", row) for row in r["split"]]
    print("  reconstruction MSE per pixel: " + ", ".join(f"{name} {e['value']:.4f}" for name, e in errors))
    for flag in q["flags"]:
        print(f"  FLAG: {flag}")
    print(f"  figures: {', '.join(payload['figures'].values())}; wall time {wall_time:.1f} s")


def _centred_text(estimate: dict, lower: dict) -> str:
    """The posterior-centred MINDE and the noisy classifier's bound of one latent, when measured."""
    if "posterior_centred" not in estimate:
        return ""
    c, b = estimate["posterior_centred"], lower["posterior_classifier"]
    return (f"\n      posterior-centred {c['value']:.3f} ± {c['stderr']:.3f} (noisy classifier's H(Y) - CE = "
            f"{b['value']:.3f} ± {b['stderr']:.3f})")
