"""H(Y|X_s) by the I-MMSE identity, with exact models, against exact references (two-class quadrature, the empirical
oracle's exact posteriors)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaussian_oracle import EmpiricalMixture, GaussianMixture
from verify import GeometricGrid, UniformGrid, label_entropy


def test_two_class_curve_matches_the_quadrature_at_every_node():
    mixture = GaussianMixture.symmetric_two_class(np.array([1.2, -0.4, 0.3]), 0.6)
    x, y = mixture.sample(3000, key=jax.random.key(0))
    at_T = float(mixture.two_class_label_entropy(mixture.sde.T))
    est = label_entropy(mixture.model(), x, y, prior_entropy=mixture.prior_entropy(), entropy_at_T=at_T,
                        times=GeometricGrid(n_times=384, s_min=1e-4), key=jax.random.key(1))
    exact = mixture.two_class_label_entropy(est.times)
    # Monte Carlo error (4 stderr) plus the grid's deterministic midpoint error, which the stderr does not cover:
    # near T the stderr vanishes (measured on 96 nodes: up to 3e-4 at s ~ 0.7; 384 nodes divide it by about 16).
    grid_error = 1e-4
    assert np.all(np.abs(est.cumulative - exact) <= 4 * est.cumulative_stderr + grid_error), (est.cumulative, exact)
    assert exact[0] < 0.2 and exact[-1] > 0.69  # from decided to forgotten: the check spans the whole curve
    assert est.flags == ()
    assert np.all(est.rate >= 0)  # the label is only ever forgotten along the forward process
    assert 0 < mixture.prior_entropy() - at_T < 1e-4  # the default start H(Y) is high by I(X_T;Y) only


def test_empirical_oracle_curve_from_its_own_points():
    rng = np.random.default_rng(2)
    points, labels = rng.normal(size=(30, 4)), np.repeat(np.arange(3), 10)
    oracle = EmpiricalMixture(points, labels)
    model = oracle.model()
    x = jnp.asarray(np.repeat(points, 40, axis=0))
    y = jnp.asarray(np.repeat(labels, 40))
    est = label_entropy(model, x, y, prior_entropy=oracle.prior_entropy(),
                        times=GeometricGrid(n_times=64, s_min=1e-3), key=jax.random.key(3))
    picks = [8, 24, 40, 56]
    ref = oracle.label_entropy(est.times[picks], n=4000, key=jax.random.key(4))
    z = (est.cumulative[picks] - ref.cumulative) / np.hypot(est.cumulative_stderr[picks], ref.cumulative_stderr)
    assert np.max(np.abs(z)) < 4.0, (est.cumulative[picks], ref.cumulative)


def test_bad_inputs():
    mixture = GaussianMixture.symmetric_two_class(np.array([1.0, 0.0]), 0.5)
    x, y = mixture.sample(10, key=jax.random.key(0))
    model = mixture.model()
    from verify import ImportanceSampler, PiecewiseConstant

    with pytest.raises(ValueError, match="must be a grid"):
        label_entropy(model, x, y, prior_entropy=np.log(2), times=ImportanceSampler(PiecewiseConstant.uniform(1.0)),
                      key=jax.random.key(0))
    with pytest.raises(ValueError, match="prior_entropy"):
        label_entropy(model, x, y, prior_entropy=-1.0, times=UniformGrid(8), key=jax.random.key(0))
    with pytest.raises(Exception, match="unknown label"):  # inside jit: eqx.error_if's runtime error, same text
        label_entropy(model, x, jnp.full(10, 2), prior_entropy=np.log(2), times=UniformGrid(8), key=jax.random.key(0))


def test_online_bayes_classifier_matches_the_quadrature_overall_and_per_class():
    """Trajectories of the exact reverse SDE with the online posterior recursion give H(Y|X_s) within 4 stderr of
    the two-class quadrature; per class (trajectories of p(x|c)) the symmetric mixture gives the same curve."""
    from verify import label_entropy_online

    mixture = GaussianMixture.symmetric_two_class(np.array([1.2, -0.4, 0.3]), 0.6)
    picks = [0, 50, 100, 150, 250, 400]
    for label in (None, 0, 1):
        est = label_entropy_online(mixture.model(), (3,), np.array([0.5, 0.5]), n=2000, n_steps=500, label=label,
                                   key=jax.random.key(10 + (label or 0)))
        exact = mixture.two_class_label_entropy(est.times[picks])
        z = (est.cumulative[picks] - exact) / est.cumulative_stderr[picks]
        assert np.max(np.abs(z)) < 4.0, (label, z)
    assert est.value == est.cumulative[0] and est.times[0] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="prior must hold"):
        label_entropy_online(mixture.model(), (3,), np.array([0.7, 0.7]), key=jax.random.key(0))
    with pytest.raises(ValueError, match="label must be None"):
        label_entropy_online(mixture.model(), (3,), np.array([0.5, 0.5]), label=2, key=jax.random.key(0))
