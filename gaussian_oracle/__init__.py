"""Exact ground truth for information in diffusion models: closed forms only, float64, no training."""

from ._estimate import Estimate as Estimate
from ._joint import JointGaussian as JointGaussian, JointGaussianModel as JointGaussianModel
from ._mixture import GaussianMixture as GaussianMixture, GaussianMixtureModel as GaussianMixtureModel
from ._sde import VPSDE as VPSDE
