"""Estimators over the model protocol and the time integrators they use (the library layer of `verify`).

Here: `neural_entropy` (Eq. 11), `mutual_information_minde` (Eq. 13), `mutual_information_difference` (Eq. 46),
`label_entropy` (H(Y|X_s) by the I-MMSE identity), and
the integrators that cover the time axis (`UniformGrid`, `GeometricGrid`, `ImportanceSampler` over any
`gaussian_oracle.AbstractTimeDensity`). May import `gaussian_oracle` and `verify.protocol`; never `learned`,
`verify.experiments` or `verify.cli`, and nothing that touches matplotlib.
"""

from gaussian_oracle import PiecewiseConstant as PiecewiseConstant

from ._information import (
    mutual_information_difference as mutual_information_difference,
    mutual_information_minde as mutual_information_minde,
    neural_entropy as neural_entropy,
)
from ._label_entropy import FromEnd as FromEnd, label_entropy as label_entropy
from ._online import label_entropy_online as label_entropy_online
from ._integrators import (
    AbstractGrid as AbstractGrid,
    AbstractTimeIntegrator as AbstractTimeIntegrator,
    GeometricGrid as GeometricGrid,
    ImportanceSampler as ImportanceSampler,
    Integrand as Integrand,
    UniformGrid as UniformGrid,
)
