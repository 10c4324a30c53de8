"""Estimators over the model protocol, learned-versus-oracle experiments, and the `separability` CLI."""

from .protocol import EntropyModel as EntropyModel, Estimate as Estimate
from ._estimators import (
    mutual_information_difference as mutual_information_difference,
    mutual_information_minde as mutual_information_minde,
    neural_entropy as neural_entropy,
)
from ._sampling import sample_probability_flow as sample_probability_flow, sample_reverse_sde as sample_reverse_sde
from ._time import (
    AbstractGrid as AbstractGrid,
    AbstractTimeIntegrator as AbstractTimeIntegrator,
    GeometricGrid as GeometricGrid,
    ImportanceSampler as ImportanceSampler,
    PiecewiseConstant as PiecewiseConstant,
    UniformGrid as UniformGrid,
)
from ._validate import (
    Task as Task,
    ValidationReport as ValidationReport,
    ValidationRow as ValidationRow,
    default_tasks as default_tasks,
    gaussian_plugin_mi as gaussian_plugin_mi,
    validate as validate,
)
from ._images import (
    Bounds as Bounds,
    ImageExperiment as ImageExperiment,
    ImageInformation as ImageInformation,
    cfg_samples as cfg_samples,
    image_information as image_information,
    information_bounds as information_bounds,
    run_image_experiment as run_image_experiment,
)
