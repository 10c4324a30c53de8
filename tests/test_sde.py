"""VPSDE: schedule, kernel and perturbation against their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from gaussian_oracle import VPSDE


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
