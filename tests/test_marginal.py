"""`gaussian_oracle.marginal_kl_curves`: exact per-coordinate KL(p_s(x_k) || N(0,1)) of a diffused empirical data set.

Tiers: adaptive quadrature of the known mixture (brute force, independent of the trapezoid rule), the joint Gaussian's
closed form for large Gaussian samples within a stated sampling tolerance, and properties (KL >= 0, decreasing in s,
between the moment-matched Gaussian's KL and the convexity bound).
"""

import jax
import numpy as np
import pytest
import scipy.integrate

from gaussian_oracle import JointGaussian, VPSDE, marginal_kl_curves

SDE = VPSDE()
TIMES = np.array([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.3, 1.0])


def _quad_kl(values, weights, s, sde=SDE):
    """KL(sum_j w_j N(mu v_j, var) || N(0, 1)) by scipy's adaptive quadrature over the merged +-12 sd windows."""
    mu, var = float(sde.mu(s)), float(sde.var(s))
    sd = np.sqrt(var)

    def integrand(z):
        a = np.log(weights) - (z - mu * values) ** 2 / (2 * var)
        top = a.max()
        log_p = top + np.log(np.exp(a - top).sum()) - 0.5 * np.log(2 * np.pi * var)
        return np.exp(log_p) * (log_p + 0.5 * np.log(2 * np.pi) + 0.5 * z * z)

    windows = []
    for v in np.sort(values):
        lo, hi = mu * v - 12 * sd, mu * v + 12 * sd
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = hi
        else:
            windows.append([lo, hi])
    total = 0.0
    for lo, hi in windows:
        inside = [mu * v for v in values if lo < mu * v < hi]
        total += scipy.integrate.quad(integrand, lo, hi, points=inside or None, limit=2000, epsabs=1e-13,
                                      epsrel=1e-12)[0]
    return total


def _data(values, counts):
    return np.repeat(np.asarray(values, float), counts)[:, None]


CASES = {
    "two points": ([0.0, 1.0], [3, 7]),
    "three points": ([-1.0, 0.2, 2.5], [2, 5, 3]),
    "17 pixel levels": (np.arange(17) / 16, np.random.default_rng(0).integers(1, 200, 17)),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_adaptive_quadrature_from_tiny_to_final_time(case):
    """Tolerance 1e-9 nats: the trapezoid rule at 4 nodes per sigma against scipy.quad (itself ~1e-12 here)."""
    values, counts = CASES[case]
    kl = marginal_kl_curves(_data(values, counts), TIMES, SDE)[:, 0]
    weights = np.asarray(counts) / np.sum(counts)
    ref = np.array([_quad_kl(np.asarray(values, float), weights, s) for s in TIMES])
    np.testing.assert_allclose(kl, ref, rtol=0, atol=1e-9)


def test_one_value_is_the_gaussian_closed_form():
    """A constant coordinate diffuses to N(mu v, sigma^2): KL = (mu^2 v^2 + sigma^2 - 1 - log sigma^2) / 2."""
    kl = marginal_kl_curves(np.full((5, 1), 0.7), TIMES, SDE)[:, 0]
    mu, var = np.asarray(SDE.mu(TIMES)), np.asarray(SDE.var(TIMES))
    np.testing.assert_allclose(kl, 0.5 * (mu**2 * 0.49 + var - 1 - np.log(var)), rtol=1e-12, atol=1e-14)


def test_image_shapes_are_flattened_and_coordinates_are_independent_of_each_other():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 5, (50, 1, 3, 2)) / 4.0
    kl = marginal_kl_curves(images, TIMES[2:5], SDE)
    assert kl.shape == (3, 6)
    for k in (0, 3, 5):
        alone = marginal_kl_curves(images.reshape(50, -1)[:, k:k + 1], TIMES[2:5], SDE)[:, 0]
        np.testing.assert_allclose(kl[:, k], alone, rtol=1e-13, atol=1e-15)
    assert marginal_kl_curves(images, 0.01, SDE).shape == (6,)


def test_properties_nonnegative_decreasing_and_between_the_bounds():
    """KL >= KL of the moment-matched Gaussian (Pythagoras for the Gaussian family) >= 0; KL <= the convexity bound
    sum_j pi_j KL(N(mu v_j, sigma^2) || N(0,1)); decreasing in s (data processing along the OU semigroup); -> 0 at T."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 17, (300, 8)) / 16.0 + rng.normal(0, 1, 8) * (rng.random((300, 8)) < 0.1)
    s = np.geomspace(1e-5, 1.0, 25)
    kl = marginal_kl_curves(x, s, SDE)
    mu, var = np.asarray(SDE.mu(s))[:, None], np.asarray(SDE.var(s))[:, None]
    m, v = mu * x.mean(0), mu**2 * x.var(0) + var
    lower = 0.5 * (m**2 + v - 1 - np.log(v))
    upper = 0.5 * (mu**2 * (x**2).mean(0) + var - 1 - np.log(var))
    assert np.all(lower >= 0)
    assert np.all(kl >= lower - 1e-12)
    assert np.all(kl <= upper + 1e-12)
    assert np.all(np.diff(kl, axis=0) < 0)
    assert np.all(kl[-1] < 1e-3)


def test_large_gaussian_samples_match_the_joint_gaussian_closed_form():
    r"""Diffused marginal of N(0, Sigma_kk): variance V = 1 + alpha (Sigma_kk - 1), KL = (V - 1 - log V)/2, which at
    alpha = 1 is `JointGaussian.marginal_kls`. The data's KL is a plug-in estimate: its first-order fluctuation is
    the mean over samples of psi(x) = mu^2 x^2 (1 - 1/V) / 2, so its stderr is mu^2 |1 - 1/V| sqrt(2) Sigma_kk /
    (2 sqrt n); we allow 4 of those plus the plug-in's bias, below 1/(n sigma) (1e-3 here)."""
    sigma = np.array([[0.3, 0.1, 0.0], [0.1, 2.5, 0.8], [0.0, 0.8, 0.6]])
    joint = JointGaussian(sigma, np.ones((1, 3)), 1.0)
    n = 20_000
    x, _ = joint.sample(n, key=jax.random.key(7))
    s = np.array([0.05, 0.2, 0.6])
    kl = marginal_kl_curves(np.asarray(x), s, joint.sde)
    alpha, mu = np.asarray(joint.sde.alpha(s))[:, None], np.asarray(joint.sde.mu(s))[:, None]
    diag = np.diag(sigma)
    v = 1 + alpha * (diag - 1)
    exact = 0.5 * (v - 1 - np.log(v))
    np.testing.assert_allclose(0.5 * (diag - 1 - np.log(diag)), joint.marginal_kls(), rtol=1e-12)
    stderr = mu**2 * np.abs(1 - 1 / v) * np.sqrt(2) * diag / (2 * np.sqrt(n))
    bias = 1.0 / (n * np.sqrt(np.asarray(joint.sde.var(s))))[:, None]
    assert np.all(np.abs(kl - exact) <= 4 * stderr + bias), (kl - exact) / stderr


@pytest.mark.parametrize("bad, match", [
    (dict(s=0.0), "infinite"), (dict(s=np.array([[0.1]])), "1-D"), (dict(s=1.5), r"\[0, T\]"),
    (dict(x=np.ones(4)), "shape"), (dict(x=np.array([[np.nan]])), "finite"), (dict(nodes_per_sd=0.5), "nodes_per_sd"),
    # uint8 images (0..255) were read as pixel values: 449,056 nats for 200 digits where 37 when scaled
    (dict(x=np.full((4, 2), 255, np.uint8)), "x must be a float array of data points; got dtype uint8"),
])
def test_bad_input_is_refused(bad, match):
    args = dict(x=np.ones((4, 2)), s=0.1, nodes_per_sd=4.0) | bad
    with pytest.raises(ValueError, match=match):
        marginal_kl_curves(args["x"], args["s"], SDE, nodes_per_sd=args["nodes_per_sd"])
