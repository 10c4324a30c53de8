"""Issue 10: the digits tau-scan's latent I(Z;Y), plug-in against cross-fitted latent MI models.

The committed scan (`separability autoencoder --dataset digits --tau 0.02,0.05,0.1,0.2,0.4 --latent-dim 20 --steps 800
--vae-steps 600 --mi-steps 1500 --no-latent-crossfit`, `results/autoencoder_digits/`) measures I(Z;Y) with one latent
MI model per latent (plug-in MINDE, the default when it ran) and flags three I(Z_per;Y) above H(Y). This script runs
the same command (same flags, same seed, so the same autoencoders: read back from `--checkpoints` when that folder
holds the scan's checkpoints, trained afresh otherwise) with `--latent-crossfit`, now the default: two latent models on
disjoint halves of the training latents, the cross-fitted MINDE, which removes the upward bias of their independent
fit errors. Since session 19 each autoencoder's keys come from the seed and its name, not its place in the scan, so
checkpoints of scans run before then are refused (their fingerprints' keys differ) and the script trains afresh only
in an empty folder.

    python benchmarks/bench_autoencoder_crossfit.py --checkpoints OUT_OF_THE_SCAN/checkpoints
        [--out benchmarks/results/autoencoder_digits_crossfit]
"""

from __future__ import annotations

import argparse
import pathlib

from verify.cli import main as cli

RESULTS = pathlib.Path(__file__).parent / "results" / "autoencoder_digits_crossfit"
SCAN = ["autoencoder", "--dataset", "digits", "--tau", "0.02,0.05,0.1,0.2,0.4", "--latent-dim", "20", "--steps", "800",
        "--vae-steps", "600", "--mi-steps", "1500", "--no-progress"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", type=pathlib.Path, required=True,
                   help="the scan's checkpoint folder (read back; written when absent)")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = p.parse_args(argv)
    return cli([*SCAN, "--latent-crossfit", "--checkpoint-dir", str(args.checkpoints.resolve()), "--out", str(args.out)])


if __name__ == "__main__":
    raise SystemExit(main())
