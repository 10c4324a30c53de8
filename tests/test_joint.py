"""JointGaussian: every closed form against an independent float64 computation (tier 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from gaussian_oracle import JointGaussian, VPSDE

import _reference as ref

RTOL = 1e-8


def _instances():
    key = jax.random.key(7)
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "determinism": JointGaussian.determinism(12, 5, 0.6, key=k1),
        "flattening": JointGaussian.flattening(12, 4, 3, 1e-3, 1.0, key=k2),
        "small": JointGaussian.determinism(2, 3, 0.25, key=k3),
    }


INSTANCES = _instances()
params = pytest.mark.parametrize("g", list(INSTANCES.values()), ids=list(INSTANCES))


@params
def test_mutual_information_eq49(g):
    _, _, sy, _, _ = ref.blocks(g)
    expected = 0.5 * (np.linalg.slogdet(sy)[1] - g.dim_y * np.log(g.sigma_eps**2))
    np.testing.assert_allclose(g.mutual_information(), expected, rtol=RTOL)


@params
def test_total_entropy_eq50(g):
    sx = g.sigma_x
    expected = 0.5 * (np.trace(sx) - np.linalg.slogdet(sx)[1] - g.dim_x)
    np.testing.assert_allclose(g.total_entropy(), expected, rtol=RTOL)
    np.testing.assert_allclose(g.total_entropy(), ref.gaussian_kl_to_standard(np.zeros(g.dim_x), sx), rtol=RTOL)


@params
def test_conditional_total_entropy_eq9(g):
    # E_y KL(N(M y, Sigma_{X|Y}) || N(0, I)) with E[(My)(My)^T] = M Sigma_Y M^T.
    _, _, sy, gain, sc = ref.blocks(g)
    expected = 0.5 * (np.trace(sc) + np.trace(gain @ sy @ gain.T) - g.dim_x - np.linalg.slogdet(sc)[1])
    np.testing.assert_allclose(g.conditional_total_entropy(), expected, rtol=RTOL)


@params
def test_eq10_difference_is_mutual_information(g):
    np.testing.assert_allclose(
        g.conditional_total_entropy() - g.total_entropy(), g.mutual_information(), rtol=RTOL, atol=1e-10
    )


@params
def test_total_correlation_and_marginals(g):
    sx = g.sigma_x
    tc = ref.gaussian_kl(sx, np.diag(np.diag(sx)))
    np.testing.assert_allclose(g.total_correlation(), tc, rtol=RTOL)
    marg = [ref.gaussian_kl_to_standard(np.zeros(1), sx[k : k + 1, k : k + 1]) for k in range(g.dim_x)]
    np.testing.assert_allclose(g.marginal_kls(), marg, rtol=RTOL, atol=1e-14)


def test_total_correlation_is_non_negative_in_floating_point():
    """Regression: an isotropic Sigma_X given as U (cI) U^T read TC = -2.2e-16 (a difference of log-determinants)."""
    from scipy.stats import ortho_group

    for i in range(24):
        dim = 2 + i % 3
        u = ortho_group.rvs(dim, random_state=i)
        sigma = (u * (0.5 + i / 100)) @ u.T
        g = JointGaussian(0.5 * (sigma + sigma.T), np.ones((1, dim)), 1.0)
        assert 0.0 <= g.total_correlation() < 1e-14
        assert g.marginal_kls().sum() + g.total_correlation() == pytest.approx(g.total_entropy(), rel=1e-12, abs=1e-12)
    assert JointGaussian(np.diag([0.5, 2.0, 3.0]), np.ones((1, 3)), 1.0).total_correlation() == 0.0
    # weak correlation: TC = -log(1 - rho^2)/2 without cancellation
    rho = 1e-9
    g = JointGaussian(np.array([[1.0, rho], [rho, 1.0]]), np.ones((1, 2)), 1.0)
    np.testing.assert_allclose(g.total_correlation(), -0.5 * np.log1p(-(rho**2)), rtol=1e-12)


@params
@pytest.mark.parametrize("s", [1e-4, 0.05, 0.3, 1.0])
def test_curves_are_kl_differences(g, s):
    p, c = ref.diffused(g, s)
    zero = np.zeros(g.dim_x)
    np.testing.assert_allclose(
        g.total_entropy_curve(s), g.total_entropy() - ref.gaussian_kl_to_standard(zero, p), rtol=1e-7
    )
    _, _, sy, gain, _ = ref.blocks(g)
    a = ref.alpha(s)
    cond_kl_s = 0.5 * (np.trace(c) + a * np.trace(gain @ sy @ gain.T) - g.dim_x - np.linalg.slogdet(c)[1])
    np.testing.assert_allclose(
        g.conditional_total_entropy_curve(s), g.conditional_total_entropy() - cond_kl_s, rtol=1e-7
    )
    # I(X_s; Y) from the joint covariance of (x_s, y).
    sx, sxy, sy, _, _ = ref.blocks(g)
    joint = np.block([[p, np.sqrt(a) * sxy], [np.sqrt(a) * sxy.T, sy]])
    i_s = 0.5 * (np.linalg.slogdet(p)[1] + np.linalg.slogdet(sy)[1] - np.linalg.slogdet(joint)[1])
    np.testing.assert_allclose(g.mutual_information_curve(s), g.mutual_information() - i_s, rtol=1e-7)
    tc_s = ref.gaussian_kl(p, np.diag(np.diag(p)))
    np.testing.assert_allclose(g.total_correlation_curve(s), g.total_correlation() - tc_s, rtol=1e-7, atol=1e-12)


@params
@pytest.mark.parametrize("s", [0.0, 1e-3, 0.1, 0.5, 1.0])
def test_rates_against_explicit_expectations(g, s):
    np.testing.assert_allclose(g.entropy_rate(s), ref.entropy_integrand(g, s), rtol=RTOL)
    np.testing.assert_allclose(g.conditional_entropy_rate(s), ref.entropy_integrand(g, s, True), rtol=RTOL)
    np.testing.assert_allclose(g.mutual_information_rate(s), ref.minde_integrand(g, s), rtol=RTOL)


@params
@pytest.mark.parametrize(
    "curve,rate",
    [
        ("total_entropy_curve", "entropy_rate"),
        ("conditional_total_entropy_curve", "conditional_entropy_rate"),
        ("mutual_information_curve", "mutual_information_rate"),
    ],
)
def test_rates_integrate_to_curves(g, curve, rate):
    """Each curve is the scipy quadrature of its rate (Eq. 3 = Eq. 6, time-resolved)."""
    for s in (0.02, 0.4, 1.0):
        quad, err = integrate.quad(lambda u: float(getattr(g, rate)(u)), 0.0, s, epsabs=0, epsrel=1e-12, limit=200)
        np.testing.assert_allclose(getattr(g, curve)(s), quad, rtol=1e-8)


@params
def test_curves_vectorised_and_float64(g):
    s = np.linspace(0.0, 1.0, 9).reshape(3, 3)
    out = g.total_entropy_curve(s)
    assert out.shape == (3, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out[1, 2], g.total_entropy_curve(s[1, 2]), rtol=1e-15)
    assert g.mutual_information_curve(0.0) == 0.0


def test_closed_forms_float64_without_x64():
    g = INSTANCES["flattening"]
    with jax.enable_x64(False):
        mi = g.mutual_information()
        curve = g.total_entropy_curve(np.array([0.1, 0.7]))
    assert isinstance(mi, np.float64) and curve.dtype == np.float64
    np.testing.assert_allclose(mi, g.mutual_information(), rtol=1e-15)


def test_constructors_reproducible_in_any_precision():
    a = JointGaussian.determinism(6, 3, 1.0, key=jax.random.key(3))
    with jax.enable_x64(False):
        b = JointGaussian.determinism(6, 3, 1.0, key=jax.random.key(3))
    np.testing.assert_array_equal(a.sigma_x, b.sigma_x)
    np.testing.assert_array_equal(a.A, b.A)


def test_determinism_structure():
    g = JointGaussian.determinism(25, 15, 1.0, key=jax.random.key(0), eps=1e-3)
    assert g.sigma_x.shape == (25, 25) and g.A.shape == (15, 25) and g.sigma_eps == 1.0
    assert np.linalg.eigvalsh(g.sigma_x)[0] >= 1e-3 - 1e-12


def test_flattening_spectrum():
    g = JointGaussian.flattening(20, 8, 5, 1e-4, 1.0, key=jax.random.key(1), eps=1e-6)
    lam = np.linalg.eigvalsh(g.sigma_x)
    np.testing.assert_allclose(lam[:15], 1e-4 + 1e-6, rtol=1e-8)
    assert np.all(lam[15:] > 0.1)
    # S_tot grows as lambda_delta shrinks while I(X;Y) stays bounded.
    h = JointGaussian.flattening(20, 8, 5, 1e-6, 1.0, key=jax.random.key(1), eps=1e-6)
    assert h.total_entropy() > g.total_entropy() + 15
    assert abs(h.mutual_information() - g.mutual_information()) < 1.0


@params
def test_scores_are_gradients_of_log_densities(g, key):
    s = 0.37
    p, c = ref.diffused(g, s)
    _, _, _, gain, _ = ref.blocks(g)
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (g.dim_x,))
    y = jax.random.normal(ky, (g.dim_y,))
    mean = np.sqrt(ref.alpha(s)) * gain @ np.asarray(y)
    logp = lambda z: jax.scipy.stats.multivariate_normal.logpdf(z, jnp.zeros(g.dim_x), jnp.asarray(p))
    logc = lambda z: jax.scipy.stats.multivariate_normal.logpdf(z, jnp.asarray(mean), jnp.asarray(c))
    np.testing.assert_allclose(g.score(x, s), jax.grad(logp)(x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.conditional_score(x, s, y), jax.grad(logc)(x), rtol=1e-9, atol=1e-12)
    model = g.model()
    np.testing.assert_allclose(model(x, s), jax.grad(logp)(x) + x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model(x, s, y), jax.grad(logc)(x) + x, rtol=1e-9, atol=1e-12)


def test_model_is_jittable_and_vmappable(key):
    g = INSTANCES["determinism"]
    model = g.model()
    x, y = g.sample(8, key=key)
    s = jnp.linspace(0.01, 1.0, 8)
    e = jax.jit(jax.vmap(model))(x, s, y)
    expected = jnp.stack([model(x[i], s[i], y[i]) for i in range(8)])
    np.testing.assert_allclose(e, expected, rtol=1e-12)


def test_sample_moments(key):
    g = INSTANCES["small"]
    n = 40000
    x, y = g.sample(n, key=key)
    r = np.hstack([x, y])
    sx, sxy, sy, _, _ = ref.blocks(g)
    cov = np.block([[sx, sxy], [sxy.T, sy]])
    emp = r.T @ r / n
    # Var of the sample second moment r_i r_j is cov_ii cov_jj + cov_ij^2 for zero-mean Gaussians.
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(emp - cov) < 4.5 * se)


@pytest.mark.parametrize(
    "args,match",
    [
        ((np.array([[1.0, 0.5], [0.4, 1.0]]), np.ones((1, 2)), 1.0), "symmetric"),
        ((np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones((1, 2)), 1.0), "positive definite"),
        ((np.eye(2), np.ones((1, 3)), 1.0), "shape"),
        ((np.eye(2), np.ones(2), 1.0), "2-dimensional"),
        ((np.eye(2), np.ones((1, 2)), 0.0), "sigma_eps must be > 0"),
        ((np.eye(2), np.ones((1, 2)), -1.0), "sigma_eps must be > 0"),
        ((np.eye(2), np.ones((1, 2)), 1e-200), "sigma_eps = 1e-200 is too small for float64"),
        ((np.array([[1.0, np.nan], [np.nan, 1.0]]), np.ones((1, 2)), 1.0), "finite"),
        ((np.eye(2).astype(complex), np.ones((1, 2)), 1.0), "real"),
        ((np.eye(2), np.ones((1, 2)), np.array([1.0, 2.0])), "scalar"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        JointGaussian(*args)


@pytest.mark.parametrize("s", [-1e-3, 1.0 + 1e-9, np.nan, [0.5, 2.0]])
def test_times_outside_range(s):
    with pytest.raises(ValueError, match=r"\[0, T\]|finite"):
        INSTANCES["small"].total_entropy_curve(s)


def test_bad_sample_shapes():
    model = INSTANCES["small"].model()
    with pytest.raises(ValueError, match="shape"):
        model(jnp.ones(3), 0.5)
    with pytest.raises(ValueError, match="shape"):
        model(jnp.ones(2), 0.5, jnp.ones(2))
    with pytest.raises(ValueError, match="scalar"):
        model(jnp.ones(2), jnp.ones(2))
    with pytest.raises(ValueError, match="positive integer"):
        INSTANCES["small"].sample(0, key=jax.random.key(0))


@pytest.mark.parametrize("key", [0, np.uint32(7), jax.random.split(jax.random.key(0), 2)], ids=["int", "uint32", "batch"])
def test_key_arguments_are_checked(key):
    """An integer seed or a batch of keys failed deep inside JAX; each public key argument now refuses it with the
    package's message (`check_key`)."""
    g = INSTANCES["small"]
    calls = (lambda: g.sample(3, key=key), lambda: JointGaussian.determinism(2, 1, 1.0, key=key),
             lambda: JointGaussian.flattening(3, 1, 1, 0.1, 1.0, key=key),
             lambda: g.cfg_sample(np.zeros((2, g.dim_y)), 1.0, key=key))
    for call in calls:
        with pytest.raises(ValueError, match="PRNG key"):
            call()


def test_custom_sde_changes_curves():
    g = INSTANCES["small"]
    h = JointGaussian(g.sigma_x, g.A, g.sigma_eps, VPSDE(0.1, 16.0, 1.0))
    assert h.total_entropy() == g.total_entropy()
    assert h.total_entropy_curve(0.5) < g.total_entropy_curve(0.5)
