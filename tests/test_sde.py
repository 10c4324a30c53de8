"""VPSDE: schedule, kernel and perturbation against their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from gaussian_oracle import VPSDE, LogSNRTime, PiecewiseConstant, UniformTime


def test_defaults():
    sde = VPSDE()
    assert (sde.beta_min, sde.beta_max, sde.T) == (0.1, 20.0, 1.0)


@pytest.mark.parametrize("s", [0.0, 1e-6, 0.3, 1.0])
def test_mu_is_exp_of_half_integrated_beta(s):
    sde = VPSDE(0.1, 16.0, 1.0)
    integral, _ = integrate.quad(lambda u: float(sde.beta(u)), 0.0, s, epsabs=1e-14, epsrel=1e-13)
    np.testing.assert_allclose(sde.mu(s), np.exp(-0.5 * integral), rtol=1e-12)
    np.testing.assert_allclose(sde.var(s), -np.expm1(-integral), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(sde.alpha(s), sde.mu(s) ** 2, rtol=1e-12)
    np.testing.assert_allclose(sde.sigma(s) ** 2, sde.beta(s), rtol=1e-14)


def test_var_accurate_near_zero():
    sde = VPSDE()
    s = 1e-12
    # 1 - exp(-B) ~ B for tiny B: expm1 keeps full relative precision.
    np.testing.assert_allclose(sde.var(s), sde.beta_min * s, rtol=1e-9)


def test_vectorised_in_s():
    sde = VPSDE()
    s = jnp.linspace(0, 1, 7)
    assert sde.mu(s).shape == (7,)
    np.testing.assert_allclose(sde.mu(s), jnp.stack([sde.mu(t) for t in s]), rtol=1e-14)


def test_perturb_moments(key):
    sde = VPSDE()
    x = jnp.array([2.0, -1.0, 0.5])
    keys = jax.random.split(key, 20000)
    xs = jax.vmap(lambda k: sde.perturb(x, 0.4, key=k))(keys)
    n = xs.shape[0]
    mean_err = np.abs(np.mean(xs, 0) - sde.mu(0.4) * x)
    assert np.all(mean_err < 4 * np.sqrt(sde.var(0.4) / n))
    var_se = sde.var(0.4) * np.sqrt(2 / n)
    assert np.all(np.abs(np.var(xs, 0) - sde.var(0.4)) < 4 * var_se)


def test_grad_log_peq_is_gradient_of_standard_normal():
    sde = VPSDE()
    x = jnp.array([0.3, -2.0])
    g = jax.grad(lambda z: jax.scipy.stats.norm.logpdf(z).sum())(x)
    np.testing.assert_allclose(sde.grad_log_peq(x), g, rtol=1e-14)


@pytest.mark.parametrize(
    "kwargs", [dict(beta_min=0.0), dict(beta_min=2.0, beta_max=1.0), dict(T=0.0), dict(T=float("nan"))]
)
def test_bad_schedule(kwargs):
    with pytest.raises(ValueError):
        VPSDE(**kwargs)


@pytest.mark.parametrize("s", [-0.1, 1.5, float("nan")])
def test_check_times_rejects(s):
    with pytest.raises(ValueError):
        VPSDE().check_times(s)


def test_log_snr_against_alpha():
    """rho(s) = log(alpha / (1 - alpha)), finite at s = 0 (the variance floored), decreasing in s."""
    sde = VPSDE(0.1, 16.0, 1.0)
    s = np.array([1e-4, 0.01, 0.3, 1.0])
    alpha = np.exp(-(0.1 * s + 0.5 * 15.9 * s**2))
    np.testing.assert_allclose(np.asarray(sde.log_snr(s)), np.log(alpha / (1 - alpha)), rtol=1e-9)
    assert np.isfinite(float(sde.log_snr(0.0))) and float(sde.log_snr(0.0)) > float(sde.log_snr(1e-4))


def _data_methods(sde, x, s):
    """The three VPSDE methods that act on data `x` at time `s`, each as a call without arguments."""
    return (lambda: sde.perturb(x, s, key=jax.random.key(0)), lambda: sde.drift(x, s),
            lambda: sde.reverse_step_mean(x, x, s, 0.01))


def test_data_methods_refuse_a_time_that_would_enlarge_the_data():
    """An (n,) time against (n, 1) data would broadcast to (n, n): refused, also under jit (a static shape check).
    One time per row as (n, 1) gives each row its own time: the drift against -beta(s_i)/2 x_i written out, and
    the step mean against x + h(-beta x / 2 + beta e)."""
    sde = VPSDE()
    x = jnp.arange(1.0, 6.0)[:, None]
    s = jnp.linspace(0.1, 1.0, 5)
    for call in _data_methods(sde, x, s):
        with pytest.raises(ValueError, match="without enlarging"):
            call()
    with pytest.raises(ValueError, match="h must broadcast"):
        sde.reverse_step_mean(x, x, 0.5, jnp.full(5, 0.01))
    with pytest.raises(ValueError, match="without enlarging"):
        jax.jit(sde.drift)(x, s)
    beta = 0.1 + 19.9 * np.linspace(0.1, 1.0, 5)
    np.testing.assert_allclose(sde.drift(x, s[:, None]), -0.5 * beta[:, None] * np.asarray(x), rtol=1e-6)
    e = -np.asarray(x)
    np.testing.assert_allclose(sde.reverse_step_mean(x, e, s[:, None], 0.01),
                               np.asarray(x) + 0.01 * (-1.5 * beta[:, None] * np.asarray(x)), rtol=1e-6)
    assert sde.perturb(x, s[:, None], key=jax.random.key(0)).shape == (5, 1)
    assert sde.perturb(jnp.ones((2, 3)), 0.5, key=jax.random.key(0)).shape == (2, 3)


@pytest.mark.parametrize("s", [-1.0, -0.001, 5.0, float("nan")])
def test_data_methods_refuse_concrete_times_outside_the_process(s):
    """perturb(x, -0.001) gave NaN, perturb(x, -1.0) a plausible draw (the quadratic int beta mirrors), 5.0 an
    extrapolation: a concrete time outside [0, T] is refused."""
    for call in _data_methods(VPSDE(), jnp.ones(2), s):
        with pytest.raises(ValueError, match="must lie in"):
            call()


@pytest.mark.parametrize("density", [UniformTime(), LogSNRTime(), PiecewiseConstant.uniform(2.0)],
                         ids=["uniform", "log_snr", "piecewise"])
def test_time_density_of_an_integer_time_is_not_truncated(density):
    """pdf(1) was cast to the integer dtype of s (0); it is the float density, equal to pdf(1.0), against the
    definitions: 1/T for the uniform ones, beta(s) / (range (1 - alpha(s))) for LogSNRTime, written out here."""
    sde = VPSDE(T=2.0)
    if isinstance(density, LogSNRTime):
        int_beta = lambda t: 0.1 * t + 0.5 * 19.9 * t**2 / 2.0  # noqa: E731
        rho = lambda t: -int_beta(t) - np.log(-np.expm1(-int_beta(t)))  # noqa: E731
        exact = (0.1 + 19.9 / 2.0) / ((rho(1e-5 * 2.0) - rho(2.0)) * -np.expm1(-int_beta(1.0)))
    else:
        exact = 0.5
    at_int, at_float = density.pdf(sde, 1), density.pdf(sde, 1.0)
    assert jnp.issubdtype(at_int.dtype, jnp.floating)
    assert float(at_int) == float(at_float) == pytest.approx(exact, rel=1e-5)


def test_piecewise_constant_refuses_unnormalised_probabilities():
    """probs [1, 3] were renormalised silently to [0.25, 0.75]; now refused. Normalised probabilities give the
    density p_k / width_k; the constructors normalise their own."""
    with pytest.raises(ValueError, match="sum to one"):
        PiecewiseConstant([0.0, 0.5, 1.0], [1.0, 3.0])
    density = PiecewiseConstant([0.0, 0.5, 1.0], [0.25, 0.75])
    np.testing.assert_allclose(density.pdf(VPSDE(), jnp.array([0.25, 0.75])), [0.5, 1.5], rtol=1e-6)
    fitted = PiecewiseConstant.fit(np.linspace(0.1, 0.9, 9), np.arange(9.0), T=1.0)
    for built in (PiecewiseConstant.uniform(3.0), PiecewiseConstant.log_uniform(1.0, n_bins=7), fitted):
        assert abs(float(np.sum(np.asarray(built.probs, np.float64))) - 1.0) < 1e-6


@pytest.mark.parametrize("beta_min, beta_max, T", [(0.1, 20.0, 1.0), (0.5, 8.0, 2.5), (1.0, 1.0, 0.5)])
def test_schedule_against_quadrature_of_the_written_out_beta(beta_min, beta_max, T):
    """beta(s) = b0 + (b1 - b0) s / T written out here, and mu, alpha, var against scipy's quadrature of it, for
    T != 1 too (the existing checks ran at T = 1, where a dropped 1/T changes nothing)."""
    sde = VPSDE(beta_min, beta_max, T)
    beta = lambda u: beta_min + (beta_max - beta_min) * u / T  # noqa: E731
    for s in (0.0, 0.3 * T, T):
        integral, _ = integrate.quad(beta, 0.0, s, epsabs=1e-14, epsrel=1e-13)
        np.testing.assert_allclose(sde.beta(s), beta(s), rtol=1e-14)
        np.testing.assert_allclose(sde.int_beta(s), integral, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(sde.mu(s), np.exp(-0.5 * integral), rtol=1e-12)
        np.testing.assert_allclose(sde.alpha(s), np.exp(-integral), rtol=1e-12)
        np.testing.assert_allclose(sde.var(s), -np.expm1(-integral), rtol=1e-12, atol=1e-300)


def test_check_time_accepts_both_end_points():
    """[0, T] is closed: 0 and T pass, concrete and traced (under jit), and so does a float32 grid ending at
    float32(T); just outside is refused."""
    sde = VPSDE(T=2.0)
    np.testing.assert_array_equal(sde.check_times([0.0, 1.0, 2.0]), [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(jax.jit(sde.check_time)(jnp.array([0.0, 2.0])), [0.0, 2.0])
    assert sde.check_time(np.float32(2.0)) == 2.0
    with pytest.raises(ValueError, match="must lie in"):
        sde.check_times(np.nextafter(2.0, 3.0))
