"""Estimators over the model protocol, learned-versus-oracle experiments, and the `separability` CLI."""

from .protocol import EntropyModel as EntropyModel, Estimate as Estimate
