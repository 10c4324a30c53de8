"""`separability budget`: the information budget of an image model (S_NN, marginal sum, TC by Eq. 7, I(X;Y)), split at
tau into semantic and perceptual parts; `--gaussian` for the oracle's joint Gaussians."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax


from ..experiments import EXPERIMENTS, BudgetConfig
from ._common import load_image_data, positive_float, positive_int
from ._images import QUICK, ImagesCommand, build_experiment, preset_of


def _image_flags_given(args: argparse.Namespace) -> list[str]:
    """The images experiment's flags given on the command line (any value but the default), as typed; `--out`,
    `--seed`, `--quick` and `--no-progress`, which `--gaussian` uses too, are not counted."""
    parser = argparse.ArgumentParser(add_help=False)
    ImagesCommand().add_arguments(parser)
    given = []
    for action in parser._actions:
        if action.dest in ("out", "seed", "quick", "no_progress") or not action.option_strings:
            continue
        value = getattr(args, action.dest)
        if value != action.default:
            given.append(action.option_strings[-1 if value is False else 0])
    return given


class BudgetCommand:
    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        ImagesCommand().add_arguments(p)  # the images experiment's options: data set, network, training, --quick
        p.set_defaults(out="out/budget")
        g = p.add_argument_group("budget")
        g.add_argument("--tau", type=positive_float, default=0.1,
                       help="split time: the semantic part is s >= tau, the perceptual part s < tau")
        g.add_argument("--budget-times", type=positive_int, default=None,
                       help="log-spaced cells of the budget's grid (default 64; --quick 40)")
        g.add_argument("--s-min", type=positive_float, default=1e-3,
                       help="lower end of the budget's grid (moved slightly so that tau is a cell edge)")
        g.add_argument("--ceiling-samples", type=int, default=None,
                       help="Monte Carlo samples of the memorisation ceiling, a multiple of 250, 0 to skip "
                            "(default 2000; --quick 1000)")
        g.add_argument("--gaussian", action="store_true",
                       help="budget the oracle's joint Gaussians (exact e*, closed-form marginals) instead of images")

    def run(self, args: argparse.Namespace) -> dict:
        start = time.perf_counter()
        n_times = args.budget_times if args.budget_times is not None else (40 if args.quick else 64)
        if args.gaussian:
            ignored = _image_flags_given(args)
            if ignored:
                verb = "configures" if len(ignored) == 1 else "configure"
                raise ValueError(f"{', '.join(ignored)} {verb} the images experiment; --gaussian budgets the "
                                 "oracle's joint Gaussians (exact e*), which uses none of them: leave them out.")
            config = BudgetConfig(tau=args.tau, n_times=max(n_times, 128), s_min=args.s_min, gaussian=True)
            payload = EXPERIMENTS["budget"].run(config, args.out, key=jax.random.key(args.seed),
                                                instance={"seed": args.seed})
            for name, row in payload["instances"].items():
                print(f"joint Gaussian {name}:")
                for q, parts in row["quantities"].items():
                    t = parts["total"]
                    print(f"  {q:<28} {t['value']:9.4f} ± {t['stderr']:.4f}   exact {t['exact']:9.4f}")
            print(f"→ {args.out}/results.json; wall time {time.perf_counter() - start:.1f} s")
            return payload
        preset_of(args)  # the preset and the flags checked before the data load
        data = load_image_data(args, QUICK)
        image = build_experiment(args, data)
        if args.quick:  # the CI smoke run: skip the images experiment's training-image estimates (memorisation gap)
            image = dataclasses.replace(image, compare_train=False)
        ceiling = args.ceiling_samples if args.ceiling_samples is not None else (1000 if args.quick else 2000)
        config = BudgetConfig(image=image, tau=args.tau, n_times=n_times, s_min=args.s_min,
                              chunk_size=image.chunk_size, ceiling_samples=ceiling)
        print(f"separability budget --dataset {data.name} → {args.out}")
        payload = EXPERIMENTS["budget"].run(config, args.out, key=jax.random.key(args.seed), data=data,
                                            instance={"seed": args.seed, "quick": bool(args.quick)})
        q = payload["quantities"]
        print(f"information budget ({data.name}, tau = {payload['instance']['tau']:.3g}, "
              f"s_min = {payload['instance']['s_min']:.3g}) → {Path(args.out)}/results.json")
        print(f"  {'':<28} {'total':>16} {'semantic':>16} {'perceptual':>16}")
        for name in ("neural_entropy", "conditional_neural_entropy", "marginal_sum", "total_correlation",
                     "mutual_information"):
            cells = [f"{q[name][p]['value']:8.2f} ± {q[name][p]['stderr']:<5.2f}"
                     for p in ("total", "semantic", "perceptual")]
            print(f"  {name:<28} {' '.join(cells)}")
        for name in ("total_correlation", "mutual_information"):
            cells = [f"{q['fractions'][name][p]['value']:8.3f} ± {q['fractions'][name][p]['stderr']:<5.3f}"
                     for p in ("total", "semantic", "perceptual")]
            print(f"  {name + ' / S_NN':<28} {' '.join(cells)}")
        if payload["memorisation_ceiling"] is not None:
            c, s_x = payload["memorisation_ceiling"], payload["curves"]["neural_entropy"]
            marg = payload["curves"]["marginal_sum"]["cumulative"]
            print(f"  memorisation ceiling ({c['points']}) beside S_NN^X(s -> T) and the marginal sum:")
            for i in sorted({0, len(c["times"]) // 4, len(c["times"]) // 2, 3 * len(c["times"]) // 4}):
                print(f"    s = {c['times'][i]:<9.3g} ceiling {c['cumulative'][i]:9.2f} ± "
                      f"{c['cumulative_stderr'][i]:<6.2f} S_NN^X {s_x['cumulative'][i]:9.2f} ± "
                      f"{s_x['cumulative_stderr'][i]:<6.2f} marginals {marg[i]:9.2f}")
        for flag in q["flags"]:
            print(f"  FLAG: {flag}")
        print(f"  wall time {time.perf_counter() - start:.1f} s")
        return payload
