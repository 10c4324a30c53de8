"""The `separability` command: one subcommand per registered experiment (`verify.experiments.EXPERIMENTS`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from types import MappingProxyType

from ..experiments import EXPERIMENTS
from ._autoencoder import AutoencoderCommand
from ._budget import BudgetCommand
from ._common import Formatter
from ._gaussian import DemoCommand, GaussianCommand
from ._images import ImagesCommand
from ._labels import LabelsCommand
from ._oracle import OracleCommand

COMMANDS: Mapping[str, object] = MappingProxyType({
    "oracle": OracleCommand(), "demo": DemoCommand(), "gaussian": GaussianCommand(), "images": ImagesCommand(),
    "labels": LabelsCommand(),
    "budget": BudgetCommand(),
    "autoencoder": AutoencoderCommand(),
})
"""The command-line adapter of each experiment: `add_arguments(parser)` and `run(args) -> dict`."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, its subcommands listed from the experiment registry."""
    missing = set(EXPERIMENTS) ^ set(COMMANDS)
    if missing:  # a registered experiment without a command, or a command without an experiment
        raise RuntimeError(f"experiments and commands disagree: {sorted(missing)}")
    parser = argparse.ArgumentParser(
        prog="separability",
        description="Measure where the information in a diffusion model lives, checked against exact oracles. "
                    "All information in nats.",
        formatter_class=Formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="EXPERIMENT",
                                title="experiments (separability EXPERIMENT --help for its options)")
    for name, experiment in EXPERIMENTS.items():
        p = sub.add_parser(name, help=experiment.description, description=experiment.description,
                           formatter_class=Formatter)
        COMMANDS[name].add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success, 2 on a bad input, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command].run(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        message = str(err)
        if message.startswith("Cannot resume"):  # a checkpoint from another run, or a damaged one
            message += ("\nOn the command line: --restart trains afresh in the same folder, --checkpoint-dir DIR "
                        "chooses another, --no-checkpoints writes none.")
        print(f"separability {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"separability {args.command}: interrupted (exit status 130).", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
