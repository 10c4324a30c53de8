"""The library that checks learned information against exact answers: protocol, estimators, samplers, validation.

Layers, each importing only those below it:

- `verify.protocol`: the model protocol and `Estimate`.
- `verify.estimators`: `neural_entropy`, `mutual_information_minde`, `mutual_information_difference` and the time
  integrators; `verify` re-exports them, with the samplers and the validation harness.
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
    UniformGrid as UniformGrid,
    label_entropy as label_entropy,
    label_entropy_online as label_entropy_online,
    mutual_information_difference as mutual_information_difference,
    mutual_information_minde as mutual_information_minde,
    neural_entropy as neural_entropy,
)
from ._sampling import sample_probability_flow as sample_probability_flow, sample_reverse_sde as sample_reverse_sde
from ._validate import (
    Task as Task,
    ValidationReport as ValidationReport,
    ValidationRow as ValidationRow,
    default_tasks as default_tasks,
    gaussian_plugin_mi as gaussian_plugin_mi,
    validate as validate,
)
from ._report import device as device, provenance as provenance, versions as versions, write_json as write_json
