"""The `separability` command line."""

from __future__ import annotations

import argparse
import sys

from . import _cmd_gaussian, _cmd_images, _cmd_oracle

COMMANDS = (_cmd_gaussian, _cmd_oracle, _cmd_images)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="separability",
        description="Measure where the information in a diffusion model lives, checked against exact oracles.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "out", "") is None:
        args.out = args.out_default
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"separability {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
