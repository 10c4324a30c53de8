"""Exact ground truth for information in diffusion models: closed forms only, float64, no training.

Here: the forward process (`VPSDE`) and the time densities over it that training and estimation share
(`UniformTime`, `LogSNRTime`, `PiecewiseConstant`); the joint Gaussian `JointGaussian` (Y = AX + eps) and the
`GaussianMixture` with their exact scores as protocol models, the exactly diffused empirical data set
`EmpiricalMixture` (what a memorising network would give) and the exact per-coordinate marginal KL curves of a
diffused data set (`marginal_kl_curves`), closed-form totals, curves and rates; the exact
classifier-free-guidance flow (`cfg_flow_map`, `cfg_mutual_information`, `cfg_mutual_information_curve`, `cfg_sample`); `Estimate` and the one Monte
Carlo accumulator `mean_stderr`; `check_key`; hypothesis strategies in `gaussian_oracle.strategies`.

Imports only JAX, Equinox, diffrax, NumPy and SciPy: nothing of `learned` or `verify`, so the truth never depends
on the code it judges.
"""

from ._cfg import (
    cfg_covariance as cfg_covariance,
    cfg_flow_map as cfg_flow_map,
    cfg_mutual_information as cfg_mutual_information,
    cfg_mutual_information_curve as cfg_mutual_information_curve,
    cfg_sample as cfg_sample,
)
from ._empirical import EmpiricalMixture as EmpiricalMixture, EmpiricalMixtureModel as EmpiricalMixtureModel
from ._estimate import Estimate as Estimate, mean_stderr as mean_stderr
from ._checks import check_label as check_label, check_labels as check_labels
from ._keys import check_key as check_key
from ._joint import JointGaussian as JointGaussian, JointGaussianModel as JointGaussianModel
from ._marginal import marginal_kl_curves as marginal_kl_curves
from ._mixture import GaussianMixture as GaussianMixture, GaussianMixtureModel as GaussianMixtureModel
from ._sde import VPSDE as VPSDE
from ._time import (
    AbstractTimeDensity as AbstractTimeDensity,
    LogSNRTime as LogSNRTime,
    PiecewiseConstant as PiecewiseConstant,
    UniformTime as UniformTime,
)
