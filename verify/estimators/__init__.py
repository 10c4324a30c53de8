"""Estimators over the model protocol and the time integrators they use (the library layer of `verify`).

Here: `neural_entropy` (Eq. 11), `mutual_information_minde` (Eq. 13), `mutual_information_difference` (Eq. 46),
`label_entropy` (H(Y|X_s) by the I-MMSE identity), `total_correlation` and `information_budget` (TC(X_s) by Eq. 7
with exact marginals, and the budget split at tau), and
the integrators that cover the time axis (`UniformGrid`, `GeometricGrid`, `ImportanceSampler` over any
`gaussian_oracle.AbstractTimeDensity`). May import `gaussian_oracle` and `verify.protocol`; never `learned`,
`verify.experiments` or `verify.cli`, and nothing that touches matplotlib.
"""

from gaussian_oracle import PiecewiseConstant as PiecewiseConstant

from ._information import (
    mutual_information_difference as mutual_information_difference,
    mutual_information_minde as mutual_information_minde,
    mutual_information_minde_crossfit as mutual_information_minde_crossfit,
    neural_entropy as neural_entropy,
    plugin_label_entropy as plugin_label_entropy,
)
from ._budget import (
    InformationBudget as InformationBudget,
    geometric_grid_through as geometric_grid_through,
    information_budget as information_budget,
    total_correlation as total_correlation,
)
from ._label_entropy import (
    FromEnd as FromEnd,
    HalfTime as HalfTime,
    LogSNRGrid as LogSNRGrid,
    half_time as half_time,
    Peak as Peak,
    check_label_model as check_label_model,
    label_entropy as label_entropy,
    label_entropy_per_class as label_entropy_per_class,
    peak_time as peak_time,
    tail_quadrature_error as tail_quadrature_error,
)
from ._online import (
    OnlineLabelCurves as OnlineLabelCurves,
    class_profiles_online as class_profiles_online,
    label_entropy_online as label_entropy_online,
    label_profile_online as label_profile_online,
)
from ._integrators import (
    AbstractGrid as AbstractGrid,
    AbstractTimeIntegrator as AbstractTimeIntegrator,
    GeometricGrid as GeometricGrid,
    ImportanceSampler as ImportanceSampler,
    Integrand as Integrand,
    UniformGrid as UniformGrid,
)
