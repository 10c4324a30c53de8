"""The `separability` command line: a thin layer that parses arguments into an experiment's config and calls its
`run` (the top layer of `verify`: it imports `verify.experiments`, nothing imports it)."""

from ._main import build_parser as build_parser, main as main
