"""Training throughput of the EntropyUNet (images/s) and its model-FLOPs utilisation, beside the reference Flax U-Net.

Reference (DESIGN.md, measured on one H100): the paper's Flax U-Net at the CIFAR-10 configuration (ch 256, emb 1024,
ch_mult (1, 1, 1), 2 res blocks, attention at 16 and 8 plus middle, 42.1M parameters), fp32 Adam, entropy-matching
loss: 701 img/s at batch 32 and 2,200 img/s at batch 128. Goal: >= 3x, bfloat16 compute allowed.

One timed unit is one jitted call inside the public `learned.train` — the exact training step users run (DEM
loss with label dropout, Adam, EMA), `--steps-per-call` steps scanned, data resident on the device. Compile time is
reported separately; the throughput is the minimum time over `--repeats` calls (timed between the callbacks
`learned.train` makes after each finished call).
FLOPs are counted by hand (`learned.unet_forward_flops`; XLA's cost analysis misses cuDNN convolutions), a training
step as 3x the forward pass; MFU = achieved FLOP/s / `--peak-tflops` (H100 SXM dense bf16: 989).

GPU:  python benchmarks/bench_unet.py --batch-sizes 32,128 --dtypes float32,bfloat16
      (writes benchmarks/results/unet_<device>.json)
CPU smoke (proves the script runs; numbers are not the goal):
      python benchmarks/bench_unet.py --smoke   (writes benchmarks/results/unet_cpu_smoke.json)
The `--cpu` preset's network on 2 cores, training as `separability images --cpu` runs it (batch 64, 2 unrolled steps
per call) and its estimation (`--estimation`: S_NN on a 32-cell log-SNR grid, 32 images per compiled call):
      python benchmarks/bench_unet.py --preset cpu --batch-sizes 64 --dtypes float32 --steps-per-call 2 --unroll \
          --estimation   (writes benchmarks/results/unet_cpu_cpu_preset_unrolled.json)
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import learned
from gaussian_oracle import VPSDE
from verify import LogSNRGrid, device, neural_entropy, versions, write_json
from verify.cli import PRESETS
from verify.experiments import ImageExperiment

REFERENCE_IMG_S = {32: 701.0, 128: 2200.0}
RESULTS = pathlib.Path(__file__).parent / "results"
SDE = ImageExperiment.sde  # the images experiment's process (beta_max = 16, T = 1)


def measure(unet: learned.UNetConfig, batch_size: int, steps_per_call: int, repeats: int, n_data: int,
            unroll: int | bool, parallel: learned.DataParallel | None) -> dict:
    """Compile time and the best-of-`repeats` images/s of `steps_per_call` training steps at `batch_size`.

    Runs the public `learned.train` for `repeats + 1` jitted calls and times each call by the `callback` it makes
    after every call (the losses it receives are already on the host, so each interval is a finished call); the
    first interval holds the compilation.
    """
    model = learned.EntropyUNet(unet, SDE, key=jax.random.key(0))
    steps = steps_per_call * (repeats + 1)
    config = learned.TrainConfig(steps=steps, batch_size=batch_size, lr=2e-4, steps_per_call=steps_per_call,
                                 checkpoint_every=steps_per_call, progress=False, unroll=unroll)
    loss = learned.DEMLoss(condition_dropout=0.1)
    rng = np.random.default_rng(0)
    x = np.asarray(rng.uniform(0, 1, (n_data, *unet.image_shape)), np.float32)
    y = np.asarray(rng.integers(0, unet.num_classes or 1, n_data), np.int32) if unet.num_classes else None
    stamps, last = [], []

    def tick(step, values):
        stamps.append(time.perf_counter())
        last[:] = [values]

    start = time.perf_counter()
    learned.train(model, x, y, config=config, loss=loss, parallel=parallel, callback=tick, key=jax.random.key(1))
    compile_s = stamps[0] - start
    times = list(np.diff(stamps))
    if not np.all(np.isfinite(last[0])):
        raise FloatingPointError("the benchmark's training loss became non-finite")
    best = min(times)
    img_s = batch_size * steps_per_call / best
    return {"batch_size": batch_size, "steps_per_call": steps_per_call, "compile_plus_first_call_s": compile_s,
            "call_times_s": times, "best_call_s": best, "images_per_s": img_s,
            "final_loss": float(np.asarray(last[0])[-1])}


def measure_estimation(unet: learned.UNetConfig, n_images: int, n_times: int, chunk_size: int, repeats: int) -> dict:
    """Compile time and network evaluations per second of `verify.neural_entropy` on `n_images` images over an
    `n_times`-cell log-SNR grid with `chunk_size` images per compiled call: the estimation of `separability images`.

    The first call holds the compilation; the rate is the best of `repeats` further calls (untrained network: the
    cost of an evaluation does not depend on the weights)."""
    model = learned.EntropyUNet(unet, SDE, key=jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (n_images, *unet.image_shape)), jnp.float32)
    grid = LogSNRGrid(n_times=n_times, s_min=1e-4)

    def call(i):
        start = time.perf_counter()
        est = neural_entropy(model, x, times=grid, chunk_size=chunk_size, key=jax.random.key(i))
        jax.block_until_ready(est.value)
        return time.perf_counter() - start, est.n_evals

    first, n_evals = call(0)
    times = [call(i + 1)[0] for i in range(repeats)]
    best = min(times)
    return {"n_images": n_images, "n_times": n_times, "chunk_size": chunk_size, "network_evaluations": n_evals,
            "compile_plus_first_call_s": first, "call_times_s": times, "best_call_s": best,
            "evaluations_per_s": n_evals / best}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", default="32,128")
    p.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes (parameters stay float32)")
    p.add_argument("--steps-per-call", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n-data", type=int, default=4096, help="resident synthetic images (content does not affect speed)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the device (H100 SXM: 989)")
    p.add_argument("--unroll", action="store_true", help="fully unroll the scanned steps (helps on CPU)")
    p.add_argument("--data-parallel", action="store_true", help="split batches over all jax.devices()")
    p.add_argument("--smoke", action="store_true", help="tiny CPU configuration that only proves the script runs")
    p.add_argument("--preset", choices=("cifar10", "mnist-small", "cpu"), default="cifar10",
                   help="cifar10: the reference configuration (42.1M parameters); mnist-small: the MNIST-5k / "
                        "Fashion-MNIST preset of `separability images` (1.7M parameters, 28 x 28); cpu: its network "
                        "under `--cpu` (0.44M parameters)")
    p.add_argument("--estimation", action="store_true",
                   help="also time S_NN estimation (compile and network evaluations/s) as `separability images` runs it")
    p.add_argument("--estimation-images", type=int, default=64, help="images of the estimation timing")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    unet = {"cifar10": lambda: learned.UNetConfig.cifar10_reference(dropout=0.0),
            "mnist-small": learned.UNetConfig.mnist_small,
            "cpu": lambda: learned.UNetConfig.mnist_small(**dict(PRESETS["cpu"].unet))}[args.preset]()
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    steps_per_call, repeats, n_data, unroll = args.steps_per_call, args.repeats, args.n_data, args.unroll
    if args.smoke:
        unet = dataclasses.replace(unet, channels=16, embed_dim=64, image_shape=(3, 16, 16), attention_resolutions=(8, 4))
        batch_sizes, steps_per_call, repeats, n_data, unroll = (4, 8), 2, 2, 64, True
    parallel = learned.DataParallel.over() if args.data_parallel else None
    flops_fwd = learned.unet_forward_flops(unet)
    params = learned.parameter_count(eqx.filter_eval_shape(learned.EntropyUNet, unet, VPSDE(), key=jax.random.key(0)))
    rows = []
    for dtype_name in args.dtypes.split(","):
        cfg = dataclasses.replace(unet, compute_dtype=getattr(jnp, dtype_name))
        for batch in batch_sizes:
            row = {"compute_dtype": dtype_name, **measure(cfg, batch, steps_per_call, repeats, n_data, unroll, parallel)}
            achieved = row["images_per_s"] * 3 * flops_fwd
            row["model_tflops_per_s"] = achieved / 1e12
            row["mfu"] = achieved / (args.peak_tflops * 1e12)
            if not args.smoke and args.preset == "cifar10" and batch in REFERENCE_IMG_S:
                row["reference_images_per_s"] = REFERENCE_IMG_S[batch]
                row["speedup_vs_reference"] = row["images_per_s"] / REFERENCE_IMG_S[batch]
            rows.append(row)
            print(f"{dtype_name:>9} batch {batch:>4}: {row['images_per_s']:10.1f} img/s  "
                  f"compile {row['compile_plus_first_call_s']:.1f} s  MFU {100 * row['mfu']:.2f} %"
                  + (f"  ({row['speedup_vs_reference']:.2f}x reference)" if "speedup_vs_reference" in row else ""),
                  flush=True)
    estimation = None
    if args.estimation:
        preset = PRESETS["cpu"]
        n_times, chunk = (8, 4) if args.smoke else (preset.n_times, preset.chunk_size)
        estimation = measure_estimation(unet, 8 if args.smoke else args.estimation_images, n_times, chunk,
                                        repeats=1 if args.smoke else 2)
        print(f"estimation: {estimation['evaluations_per_s']:.0f} network evaluations/s, compile + first call "
              f"{estimation['compile_plus_first_call_s']:.1f} s", flush=True)
    kind = jax.devices()[0].device_kind
    name = "unet_cpu_smoke" if args.smoke else "unet_" + re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")
    if args.preset != "cifar10" and not args.smoke:
        name += "_" + {"cpu": "cpu_preset"}.get(args.preset, args.preset.replace("-", "_"))
        name += "_unrolled" if unroll else "_scanned"
    out = pathlib.Path(args.out) if args.out else RESULTS / f"{name}.json"
    write_json(out, {
        "benchmark": "unet_training_throughput", "smoke": bool(args.smoke), "preset": args.preset,
        "steps_per_call": steps_per_call, "unroll": bool(unroll),
        "note": ("CPU smoke configuration: proves the script runs; NOT a measurement of the GPU goal"
                 if args.smoke else "reference: paper's Flax U-Net, fp32, one H100: 701 img/s (b32), 2200 img/s (b128)"),
        "unet": {f.name: (getattr(unet, f.name) if not isinstance(getattr(unet, f.name), type) else getattr(unet, f.name).__name__)
                 for f in dataclasses.fields(unet)},
        "parameters": params, "forward_flops_per_image": flops_fwd, "train_flops_per_image": 3 * flops_fwd,
        "peak_tflops": args.peak_tflops, "data_parallel_devices": parallel.num_devices if parallel else 1,
        "rows": rows, "estimation": estimation, "device": device(), "versions": versions(),
    })
    print(f"→ {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
