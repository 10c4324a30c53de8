"""Exact ground truth for information in diffusion models: closed forms only, float64, no training."""

from ._cfg import (
    cfg_covariance as cfg_covariance,
    cfg_flow_map as cfg_flow_map,
    cfg_mutual_information as cfg_mutual_information,
    cfg_sample as cfg_sample,
)
from ._estimate import Estimate as Estimate, mean_stderr as mean_stderr
from ._keys import check_key as check_key
from ._joint import JointGaussian as JointGaussian, JointGaussianModel as JointGaussianModel
from ._mixture import GaussianMixture as GaussianMixture, GaussianMixtureModel as GaussianMixtureModel
from ._sde import VPSDE as VPSDE
from ._time import (
    AbstractTimeDensity as AbstractTimeDensity,
    LogSNRTime as LogSNRTime,
    PiecewiseConstant as PiecewiseConstant,
    UniformTime as UniformTime,
)
