"""The empirical-data oracle against independent computations: GaussianMixture, jax.grad of a float64 log-density,
limits in s, and the estimators on its own exact e*."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaussian_oracle import VPSDE, EmpiricalMixture, GaussianMixture, PiecewiseConstant
from verify import EntropyModel, ImportanceSampler, mutual_information_minde

SDE = VPSDE()


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(12, 3))
    labels = np.array([0, 1, 2] * 4)
    return EmpiricalMixture(points, labels, SDE)


def _log_density(points, labels, x, s, y=None):
    """log p_s(x | y) (or log p_s(x)) of the diffused points, written independently with float64 NumPy-style jnp."""
    alpha = jnp.exp(-(SDE.beta_min * s + 0.5 * (SDE.beta_max - SDE.beta_min) * s**2 / SDE.T))
    mu, var = jnp.sqrt(alpha), 1.0 - alpha
    keep = np.ones(len(points), bool) if y is None else labels == y
    sq = jnp.sum((x - mu * points[keep]) ** 2, axis=1)
    d = points.shape[1]
    return jax.scipy.special.logsumexp(-sq / (2 * var)) - jnp.log(keep.sum()) - 0.5 * d * jnp.log(2 * jnp.pi * var)


@pytest.mark.parametrize("s", [1e-3, 0.05, 0.3, 1.0])
def test_scores_and_posterior_against_grad_of_log_density(small, s):
    model = small.model()
    assert isinstance(model, EntropyModel)
    x = jnp.asarray(np.random.default_rng(1).normal(size=3))
    pts, lab = jnp.asarray(small.points), small.labels
    for y in (None, 0, 1, 2):
        expected = jax.grad(lambda z: _log_density(pts, lab, z, s, y))(x) + x  # e* = grad log p_s + x
        np.testing.assert_allclose(np.asarray(model(x, s, y)), np.asarray(expected), rtol=1e-9, atol=1e-9)
    logs = jnp.array([_log_density(pts, lab, x, s, k) + jnp.log(4 / 12) for k in range(3)])
    np.testing.assert_allclose(np.asarray(model.posterior(x, s)), np.asarray(jax.nn.softmax(logs)), rtol=1e-9)


def test_one_point_per_class_equals_a_gaussian_mixture_with_vanishing_covariance():
    means = np.array([[1.0, 0.0], [-0.5, 1.0], [0.0, -1.5]])
    empirical = EmpiricalMixture(means, np.arange(3), SDE).model()
    mixture = GaussianMixture(np.full(3, 1 / 3), means, np.stack([1e-12 * np.eye(2)] * 3), SDE).model()
    x = jnp.array([0.3, -0.2])
    for s in (0.01, 0.2, 0.9):
        for y in (None, 0, 2):
            np.testing.assert_allclose(np.asarray(empirical(x, s, y)), np.asarray(mixture(x, s, y)), rtol=1e-7, atol=1e-7)


def test_label_entropy_limits_and_curve(small):
    """H(Y|X_s) -> 0 as s -> 0 for distinct points, -> H(Y) (= log 3) near T; increasing in between."""
    times = np.array([1e-4, 0.01, 0.1, 0.3, 1.0])
    h = small.label_entropy(times, n=2000, key=jax.random.key(0))
    assert h.cumulative[0] < 1e-6
    assert h.cumulative[-1] == pytest.approx(math.log(3), abs=0.02)
    assert np.all(np.diff(h.cumulative) > -4 * h.cumulative_stderr[1:])
    # the erased information I(X;Y) - I(X_s;Y) = H(Y|X_s) - H(Y|X), with H(Y|X) = 0 for distinct points
    i = small.mutual_information_curve(0.1, n=2000, key=jax.random.key(0))
    assert small.mutual_information() == small.prior_entropy() == pytest.approx(math.log(3), abs=1e-15)
    assert i.value == pytest.approx(h.cumulative[2], abs=1e-12) and i.stderr == h.cumulative_stderr[2]


def test_minde_on_its_own_points_equals_label_entropy_at_T(small):
    """With the exact e* of the diffused data set and its own points, MINDE gives I(X;Y) - I(X_T;Y) = H(Y|X_T)
    (the points are distinct, so H(Y|X) = 0), the oracle's `mutual_information_curve(T)`, within 4 standard errors:
    the estimators on an exact label path."""
    model = small.model()
    times = ImportanceSampler(PiecewiseConstant.log_uniform(SDE.T, s_min=1e-6), n_per_sample=32)
    x = jnp.asarray(np.repeat(small.points, 50, axis=0))
    y = jnp.asarray(np.repeat(small.labels, 50))
    est = mutual_information_minde(model, x, y, times=times, key=jax.random.key(3))
    at_T = small.mutual_information_curve(SDE.T, n=4000, key=jax.random.key(4))
    truth = at_T.value
    assert abs(est.value - truth) < 4 * math.hypot(est.stderr, at_T.stderr), (est, truth)
    assert truth > 1.0  # most of H(Y) = log 3 is resolved: the check is not near zero


def test_mutual_information_curve_follows_the_package_convention():
    """Duplicated points with different labels: H(Y|X) is the label entropy within each group of identical points,
    here 1/2 log 2 (two groups of two points, one group mixed), so I(X;Y) = H(Y) - 1/2 log 2 by hand. The curve is
    the information erased between 0 and s, as `JointGaussian.mutual_information_curve`: 0 within 4 stderr at small
    s (the groups are still apart, the twins never were), I(X;Y) near T (everything erased), H(Y|X_s) - H(Y|X) at every
    time with the same draws, its rate that of H(Y|X_s); `chunk` is forwarded."""
    points = np.array([[0.0, 0.0], [0.0, -0.0], [4.0, 4.0], [4.0, 4.0]])
    mixture = EmpiricalMixture(points, np.array([0, 1, 0, 0]), SDE)
    h_y = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert mixture.prior_entropy() == pytest.approx(h_y, rel=1e-14)
    assert mixture.mutual_information() == pytest.approx(h_y - 0.5 * math.log(2), rel=1e-14)
    times = np.array([1e-3, 0.2, 1.0])
    curve = mixture.mutual_information_curve(times, n=400, key=jax.random.key(5), chunk=100)
    h = mixture.label_entropy(times, n=400, key=jax.random.key(5), chunk=100)
    np.testing.assert_allclose(curve.cumulative, h.cumulative - 0.5 * math.log(2), rtol=0, atol=1e-13)
    np.testing.assert_array_equal(curve.rate, h.rate)
    np.testing.assert_array_equal(curve.cumulative_stderr, h.cumulative_stderr)
    assert abs(curve.cumulative[0]) < 4 * curve.cumulative_stderr[0]  # which twin was drawn: binomial noise
    assert curve.cumulative[-1] == pytest.approx(mixture.mutual_information(), abs=0.02)
    assert curve.cumulative[0] < curve.cumulative[1] < curve.cumulative[2] and curve.flags == ()
    scalar = mixture.mutual_information_curve(0.2, n=400, key=jax.random.key(5), chunk=100)
    assert scalar.value == pytest.approx(curve.cumulative[1], abs=1e-13)


def test_bad_inputs(small):
    with pytest.raises(ValueError, match="labels must be"):
        EmpiricalMixture(np.zeros((3, 2)), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="at least one point"):
        EmpiricalMixture(np.zeros((3, 2)), np.array([0, 2, 2]))
    with pytest.raises(ValueError, match="finite"):
        EmpiricalMixture(np.full((3, 2), np.nan), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="points must be a float array of data points; got dtype uint8"):
        EmpiricalMixture(np.full((3, 2), 255, np.uint8), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="unknown label 3"):
        small.model()(jnp.zeros(3), 0.5, 3)
    with pytest.raises(ValueError, match=r"s = 0"):
        small.label_entropy(0.0, n=250, key=jax.random.key(0))
    with pytest.raises(ValueError, match="must lie in"):
        small.model()(jnp.zeros(3), 1.5)
    for method in (small.label_entropy, small.kl_divergence, small.mutual_information_curve):
        with pytest.raises(ValueError, match="PRNG key"):
            method(0.5, n=250, key=0)


# ---------------------------------------------------------------------------------------------- KL(p_s || N(0, I))
@pytest.mark.parametrize("s", [1e-4, 0.02, 0.3, 1.0])
def test_kl_of_one_point_is_the_gaussian_closed_form(s):
    """One point: p_s = N(mu x0, v I), so KL(p_s || N(0, I)) = (D v + mu^2 ||x0||^2 - D - D log v) / 2, within 4
    stderr."""
    x0 = np.array([[0.7, -1.2, 0.3, 2.0, 0.0]])
    est = EmpiricalMixture(x0, np.array([0]), SDE).kl_divergence(s, n=2000, key=jax.random.key(1))
    mu, v, d = float(SDE.mu(s)), float(SDE.var(s)), x0.shape[1]
    exact = 0.5 * (d * v + mu**2 * np.sum(x0**2) - d - d * math.log(v))
    assert est.within(exact, 4.0), (est, exact)
    assert est.stderr > 0


def test_kl_of_one_dimensional_points_by_quadrature():
    """A 1-D mixture of diffused points: KL(p_s || N(0, 1)) = int p_s log(p_s / N) by adaptive quadrature (scipy,
    independent of the Monte Carlo), within 4 stderr at every time of the curve; the curve falls with s."""
    from scipy import integrate, stats

    points = np.array([[-1.5], [0.2], [0.25], [2.0], [3.1]])
    mixture = EmpiricalMixture(points, np.zeros(5, int), SDE)
    times = np.array([2e-3, 0.03, 0.2, 0.6])
    est = mixture.kl_divergence(times, n=4000, key=jax.random.key(2), chunk=500)
    for k, s in enumerate(times):
        mu, sd = float(SDE.mu(s)), math.sqrt(float(SDE.var(s)))

        def integrand(x):
            p = np.mean(stats.norm.pdf(x, mu * points[:, 0], sd))
            return p * (math.log(p) - stats.norm.logpdf(x)) if p > 0 else 0.0

        breaks = sorted(mu * points[:, 0])
        exact = integrate.quad(integrand, -12, 12, points=breaks, limit=400, epsabs=1e-10)[0]
        z = (est.cumulative[k] - exact) / est.cumulative_stderr[k]
        assert abs(z) < 4, (s, est.cumulative[k], exact, z)
    assert np.all(np.diff(est.cumulative) < 0)
    np.testing.assert_array_equal(est.times, times)


def test_kl_dominates_the_sum_of_marginal_kls(small):
    """KL(p_s || N(0, I)) = sum_k KL(p_s(x_k) || N(0, 1)) + TC(X_s) >= the exact marginal sum (TC >= 0), within 4
    stderr; here the gap is sizeable at small s (12 points in 3-D are far from independent coordinates)."""
    from gaussian_oracle import marginal_kl_curves

    times = np.array([1e-3, 0.05, 0.5])
    est = small.kl_divergence(times, n=2000, key=jax.random.key(3))
    marg = marginal_kl_curves(small.points, times, SDE).sum(1)
    assert np.all(est.cumulative > marg - 4 * est.cumulative_stderr), (est.cumulative, marg)
    assert est.cumulative[0] - marg[0] > 10 * est.cumulative_stderr[0]


def test_kl_refuses_bad_times_and_sizes(small):
    with pytest.raises(ValueError, match=r"s = 0"):
        small.kl_divergence(np.array([0.0, 0.5]), n=250, key=jax.random.key(0))
    with pytest.raises(ValueError, match="multiple of chunk"):
        small.kl_divergence(0.5, n=300, key=jax.random.key(0))


def _label_entropy_by_quadrature(points, labels, s):
    """H(Y|X_s) of 1-D points by scipy quadrature over x of -sum_k p(x, k) log p(k|x), with X_s | i ~ N(mu x_i, v),
    mu and v written from the linear schedule here (not the package's VPSDE methods)."""
    import scipy.integrate
    import scipy.special

    int_beta = SDE.beta_min * s + 0.5 * (SDE.beta_max - SDE.beta_min) * s**2 / SDE.T
    mu, var = math.exp(-0.5 * int_beta), -math.expm1(-int_beta)
    classes = np.unique(labels)

    def integrand(x):
        log_kernel = -((x - mu * points) ** 2) / (2 * var) - 0.5 * math.log(2 * math.pi * var) - math.log(len(points))
        log_joint = np.array([scipy.special.logsumexp(log_kernel[labels == k]) for k in classes])  # log p(x, k)
        log_post = log_joint - scipy.special.logsumexp(log_joint)
        return -float(np.sum(np.exp(log_joint) * log_post))

    lo, hi = mu * points.min() - 12 * math.sqrt(var), mu * points.max() + 12 * math.sqrt(var)
    return scipy.integrate.quad(integrand, lo, hi, points=list(mu * points), epsabs=1e-13, epsrel=1e-12, limit=400)[0]


def test_label_entropy_rate_is_the_derivative_of_quadrature_entropy():
    """The `rate` of `label_entropy` is d/ds H(Y|X_s): a central difference of an independent scipy quadrature of
    H(Y|X_s) for three 1-D points, within 4 stderr at each time (and `cumulative` is H(Y|X_s) itself). Guards the
    factor 1/2 of the rate beta/2 sum_k p_k |e_k - e|^2 (mutation: the rate doubled, plotted as the exact reference
    rate by the labels experiment)."""
    points, labels = np.array([-1.0, 0.2, 1.0]), np.array([0, 1, 0])
    mixture = EmpiricalMixture(points[:, None], labels, SDE)
    times = np.array([0.05, 0.1, 0.3])
    est = mixture.label_entropy(times, n=20_000, key=jax.random.key(7), chunk=500)
    step = 1e-4
    for i, s in enumerate(times):
        exact_h = _label_entropy_by_quadrature(points, labels, s)
        exact_rate = (_label_entropy_by_quadrature(points, labels, s + step)
                      - _label_entropy_by_quadrature(points, labels, s - step)) / (2 * step)
        assert exact_rate > 0.2  # the rate is far from zero, so doubling it is many stderr off
        assert abs(est.cumulative[i] - exact_h) < 4 * est.cumulative_stderr[i], (s, est.cumulative[i], exact_h)
        assert abs(est.rate[i] - exact_rate) < 4 * est.rate_stderr[i], (s, est.rate[i], est.rate_stderr[i], exact_rate)


def test_mutual_information_weights_groups_of_duplicates_by_size():
    """I(X;Y) of duplicated points by hand: points [a, a, a, b] with labels [0, 1, 1, 0] have H(Y) = log 2 and
    H(Y|X) = 3/4 h(1/3) (h: binary entropy in nats; the group {a} of three points holds one 0 and two 1s, the
    group {b} is pure), so I = log 2 - 3/4 h(1/3). Guards the weighting of each group's label entropy by its size
    (mutation: an unweighted mean over groups, 1/2 h(1/3), which groups of equal size cannot tell apart)."""
    a, b = [0.5, -1.0], [2.0, 3.0]
    mixture = EmpiricalMixture(np.array([a, a, a, b]), np.array([0, 1, 1, 0]), SDE)
    h_third = -(math.log(1 / 3) / 3 + 2 / 3 * math.log(2 / 3))
    assert mixture.prior_entropy() == pytest.approx(math.log(2), abs=1e-12)
    assert mixture.mutual_information() == pytest.approx(math.log(2) - 0.75 * h_third, abs=1e-12)


def test_value_of_a_curve_is_its_last_time():
    """For an array of times, `value`/`stderr` are the curve's last entry (the docstrings): H(Y|X_s) at s = 0.6 of
    three 1-D points against the scipy quadrature above, and KL(p_s || N(0, I)) at s = 0.5 of one point against its
    Gaussian closed form (D v + mu^2 ||x0||^2 - D - D log v)/2, each within 4 stderr; the first times (0.02, 0.05),
    whose values differ from the last by many stderr, are what `value` would be if it were the first entry
    (mutation)."""
    points, labels = np.array([-1.0, 0.2, 1.0]), np.array([0, 1, 0])
    h = EmpiricalMixture(points[:, None], labels, SDE).label_entropy(np.array([0.05, 0.6]), n=4000,
                                                                      key=jax.random.key(8), chunk=500)
    exact_h = _label_entropy_by_quadrature(points, labels, 0.6)
    assert abs(h.value - exact_h) < 4 * h.stderr, (h, exact_h)
    assert abs(_label_entropy_by_quadrature(points, labels, 0.05) - exact_h) > 20 * h.stderr
    x0 = np.array([[0.7, -1.2, 0.3, 2.0, 0.0]])
    kl = EmpiricalMixture(x0, np.array([0]), SDE).kl_divergence(np.array([0.02, 0.5]), n=2000, key=jax.random.key(9))
    mu, v, d = float(SDE.mu(0.5)), float(SDE.var(0.5)), x0.shape[1]
    exact_kl = 0.5 * (d * v + mu**2 * np.sum(x0**2) - d - d * math.log(v))
    assert abs(kl.value - exact_kl) < 4 * kl.stderr, (kl, exact_kl)
    assert kl.cumulative[0] - exact_kl > 20 * kl.stderr
