"""`separability images --quick` over seeds: does the digits cross-fitted I_MINDE land inside its bounds?

The quick path's CI test asserts it for one seed; this records it for several, beside the plug-in estimates and the
bounds, so the test's pass is not a lucky draw. Each seed is the CLI run itself (its checkpoints are kept in
`--work`, and a run whose checkpoints are already there resumes them instead of training again).

    python benchmarks/bench_images_quick.py --seeds 0,1,2 --work out/bench_images_quick
    (writes benchmarks/results/images_quick_digits.json)
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib

from verify import device, versions, write_json
from verify.cli import main as cli

RESULTS = pathlib.Path(__file__).parent / "results" / "images_quick_digits.json"


def inside(est: dict, lower: dict, upper: dict) -> bool:
    """Within [H(Y) - CE, H(Y)] up to 2 stderr (the stderr of CE included below), as the images flags read it."""
    return (lower["value"] - 2 * math.hypot(est["stderr"], lower["stderr"]) <= est["value"]
            <= upper["value"] + 2 * est["stderr"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--work", default="out/bench_images_quick", help="folder for each seed's run and checkpoints")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        out = pathlib.Path(args.work) / f"seed{seed}"
        resumed = (out / "checkpoints" / "b" / "checkpoint.eqx").exists()
        assert cli(["images", "--quick", "--seed", str(seed), "--out", str(out), "--no-progress"]) == 0
        payload = json.loads((out / "results.json").read_text())
        q = payload["quantities"]
        mi, bounds = q["mutual_information"], q["bounds"]
        rows.append({
            "seed": seed,
            "wall_time_s": payload["wall_time_s"],
            # a run whose checkpoints were already there resumed them: its wall time has no training in it
            "resumed_finished_checkpoints": resumed,
            "timings_s": payload["timings_s"],
            "neural_entropy": q["neural_entropy"]["value"], "neural_entropy_stderr": q["neural_entropy"]["stderr"],
            "conditional_neural_entropy": q["conditional_neural_entropy"]["value"],
            "conditional_neural_entropy_stderr": q["conditional_neural_entropy"]["stderr"],
            **{name: {"value": est["value"], "stderr": est["stderr"],
                      "inside_bounds": inside(est, bounds["lower"], bounds["upper"])} for name, est in mi.items()},
            "bounds": {"lower": bounds["lower"]["value"], "lower_stderr": bounds["lower"]["stderr"],
                       "upper": bounds["upper"]["value"]},
        })
        r = rows[-1]
        print(f"seed {seed}: cross-fit {r['minde_crossfit']['value']:.3f} ± {r['minde_crossfit']['stderr']:.3f}, "
              f"plug-in {r['minde']['value']:.3f}, bounds [{r['bounds']['lower']:.3f}, {r['bounds']['upper']:.3f}]",
              flush=True)
    instance = json.loads((out / "results.json").read_text())["instance"]
    write_json(args.out, {"benchmark": "images_quick", "command": "separability images --quick --seed S",
                          "instance": {k: instance[k] for k in ("dataset", "n_train_per_network", "n_eval", "train",
                                                                "condition_dropout", "weighting", "time_sampler",
                                                                "times", "cross_fit")},
                          "rows": rows, "versions": versions(), "device": device()})
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
