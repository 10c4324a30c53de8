"""Equinox networks that learn the entropy-matching vector e_theta, and how to train them."""

from ._loss import (
    AbstractTimeSampler as AbstractTimeSampler,
    AbstractWeighting as AbstractWeighting,
    Constant as Constant,
    DEMLoss as DEMLoss,
    ImportanceTime as ImportanceTime,
    Likelihood as Likelihood,
    LogSNRTime as LogSNRTime,
    UniformTime as UniformTime,
    dem_loss as dem_loss,
    dem_residual as dem_residual,
)
from ._mlp import (
    AbstractCondition as AbstractCondition,
    EntropyMLP as EntropyMLP,
    LabelCondition as LabelCondition,
    MLPConfig as MLPConfig,
    Pair as Pair,
    VectorCondition as VectorCondition,
)
from ._precondition import Preconditioned as Preconditioned
from ._train import (
    TrainConfig as TrainConfig,
    TrainResult as TrainResult,
    load_checkpoint as load_checkpoint,
    train as train,
)
