"""The `separability` command line: a thin layer that parses arguments into an experiment's config and calls its
`run` (the top layer of `verify`: it imports `verify.experiments`, nothing imports it).

`build_image_experiment(args, data)` is the `ImageExperiment` that `separability images` with those parsed arguments
runs, `prepare_images(args)` loads the data and builds it as the command does, and `PRESETS` are its presets (the
full run, `--quick`, `--cpu`)."""

from ._images import (
    PRESETS as PRESETS,
    Preset as Preset,
    build_experiment as build_image_experiment,
    prepare_images as prepare_images,
)
from ._main import build_parser as build_parser, main as main
