"""The library that checks learned information against exact answers: protocol, estimators, samplers, validation.

Layers, each importing only those below it:

- `verify.protocol`: the model protocol and `Estimate`.
- `verify.estimators`: `neural_entropy`, `mutual_information_minde`, `mutual_information_difference` and the time
  integrators; `verify` re-exports them, with the samplers and the validation harness.
- `verify.estimate_mutual_information`, `MINDE`, `EntropyDifference`, `NeuralEntropy`: the public fit-and-estimate
  API for users' own (x, y) arrays (`_api.py`; it imports `learned` only when it trains or loads a network), with
  the MI-preserving per-component transforms `MarginalGaussianisation` and `RobustScaling`.
- `verify.experiments`: one module per paper experiment (frozen config -> `run` -> results.json + figures) and
  their registry `EXPERIMENTS`; imports `learned` and matplotlib (lazily), so `import verify` does not load them.
- `verify.cli`: the `separability` command line, a thin layer that parses arguments into experiment configs.

`verify` may import `gaussian_oracle` and `learned`; nothing imports `verify` but tests, benchmarks and users.
`provenance`, `write_json`, `versions` and `device` are the one way every results file records how it was made.
"""

from gaussian_oracle import AbstractTimeDensity as AbstractTimeDensity, PiecewiseConstant as PiecewiseConstant

from .protocol import EntropyModel as EntropyModel, Estimate as Estimate
from .estimators import (
    AbstractGrid as AbstractGrid,
    AbstractTimeIntegrator as AbstractTimeIntegrator,
    GeometricGrid as GeometricGrid,
    ImportanceSampler as ImportanceSampler,
    FromEnd as FromEnd,
    HalfTime as HalfTime,
    LogSNRGrid as LogSNRGrid,
    half_time as half_time,
    UniformGrid as UniformGrid,
    label_entropy as label_entropy,
    label_entropy_online as label_entropy_online,
    label_entropy_per_class as label_entropy_per_class,
    label_profile_online as label_profile_online,
    class_profiles_online as class_profiles_online,
    OnlineLabelCurves as OnlineLabelCurves,
    Peak as Peak,
    peak_time as peak_time,
    tail_quadrature_error as tail_quadrature_error,
    mutual_information_difference as mutual_information_difference,
    mutual_information_minde as mutual_information_minde,
    mutual_information_minde_crossfit as mutual_information_minde_crossfit,
    neural_entropy as neural_entropy,
    InformationBudget as InformationBudget,
    geometric_grid_through as geometric_grid_through,
    information_budget as information_budget,
    total_correlation as total_correlation,
)
from ._sampling import sample_probability_flow as sample_probability_flow, sample_reverse_sde as sample_reverse_sde
from ._validate import (
    Task as Task,
    ValidationReport as ValidationReport,
    ValidationRow as ValidationRow,
    default_tasks as default_tasks,
    StudentT as StudentT,
    GaussianCopula as GaussianCopula,
    MixturePair as MixturePair,
    gaussian_plugin_mi as gaussian_plugin_mi,
    robustness_tasks as robustness_tasks,
    validate as validate,
)
from ._report import device as device, provenance as provenance, versions as versions, write_json as write_json
from ._transforms import (
    AbstractFittedTransform as AbstractFittedTransform,
    AbstractTransform as AbstractTransform,
    MarginalGaussianisation as MarginalGaussianisation,
    RobustScaling as RobustScaling,
)
from ._api import (
    AbstractDiffusionEstimator as AbstractDiffusionEstimator,
    EntropyDifference as EntropyDifference,
    CrossFittedEstimator as CrossFittedEstimator,
    FittedEstimator as FittedEstimator,
    FitInfo as FitInfo,
    NetworkFit as NetworkFit,
    MINDE as MINDE,
    NeuralEntropy as NeuralEntropy,
    estimate_mutual_information as estimate_mutual_information,
    estimation_grid as estimation_grid,
    information_estimates as information_estimates,
)
