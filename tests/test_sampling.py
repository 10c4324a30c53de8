"""Samplers driven by the exact e*: their samples follow the oracle's diffused Gaussians within sampling error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import diffrax

from gaussian_oracle import JointGaussian, cfg_flow_map
from verify import sample_probability_flow, sample_reverse_sde

N = 3000
S_END = 1e-3


@pytest.fixture(scope="module")
def joint():
    return JointGaussian.determinism(4, 2, 0.5, key=jax.random.key(7))


def _diffused(joint, cov, s):
    a = float(joint.sde.alpha(s))
    return a * cov + (1 - a) * np.eye(cov.shape[0])


def _draw(cov, mean, n, key):
    z = np.asarray(jax.random.normal(key, (n, cov.shape[0])))
    return mean + z @ np.linalg.cholesky(cov).T


def _assert_gaussian_moments(samples, mean, cov):
    """Each mean entry and each covariance entry within 4 standard errors (Gaussian sampling variances)."""
    samples = np.asarray(samples)
    n = samples.shape[0]
    z_mean = (samples.mean(0) - mean) / np.sqrt(np.diag(cov) / n)
    emp = np.cov(samples.T)
    var_emp = (np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n
    z_cov = (emp - cov) / np.sqrt(var_emp)
    assert np.max(np.abs(z_mean)) < 4.0, z_mean
    assert np.max(np.abs(z_cov)) < 4.0, z_cov


@pytest.mark.parametrize("sampler", ["sde", "flow"])
def test_unconditional_samples_match_sigma_x(joint, sampler):
    T = joint.sde.T
    x_T = _draw(_diffused(joint, joint.sigma_x, T), 0.0, N, jax.random.key(1))
    if sampler == "sde":
        x = sample_reverse_sde(joint.model(), x_T, n_steps=400, s_end=S_END, key=jax.random.key(2))
    else:
        x = sample_probability_flow(joint.model(), x_T, s_end=S_END)
    _assert_gaussian_moments(x, np.zeros(4), _diffused(joint, joint.sigma_x, S_END))


@pytest.mark.parametrize("sampler", ["sde", "flow"])
def test_conditional_samples_match_the_posterior(joint, sampler):
    T = joint.sde.T
    _, y = joint.sample(1, key=jax.random.key(3))
    y = np.asarray(y[0])
    gain = joint.sigma_x @ joint.A.T @ np.linalg.inv(joint.sigma_y)
    post_mean = gain @ y
    post_cov = joint.sigma_x - gain @ joint.A @ joint.sigma_x
    mean_T = np.sqrt(float(joint.sde.alpha(T))) * post_mean
    x_T = _draw(_diffused(joint, post_cov, T), mean_T, N, jax.random.key(4))
    ys = np.tile(y, (N, 1))
    if sampler == "sde":
        x = sample_reverse_sde(joint.model(), x_T, y=ys, n_steps=400, s_end=S_END, key=jax.random.key(5))
    else:
        x = sample_probability_flow(joint.model(), x_T, y=ys, s_end=S_END)
    mean_end = np.sqrt(float(joint.sde.alpha(S_END))) * post_mean
    _assert_gaussian_moments(x, mean_end, _diffused(joint, post_cov, S_END))


def test_reverse_sde_from_standard_normal_reaches_the_data(joint):
    """Started from p_eq = N(0, I) (not p_T), the sampler still lands on Sigma_X: p_T and p_eq differ by ~e^-10."""
    x_T = np.asarray(jax.random.normal(jax.random.key(6), (N, 4)))
    x = sample_reverse_sde(joint.model(), x_T, n_steps=400, s_end=S_END, key=jax.random.key(8))
    _assert_gaussian_moments(x, np.zeros(4), _diffused(joint, joint.sigma_x, S_END))


def test_guided_flow_matches_an_independent_linear_ode(joint):
    """w > 0: the diffrax flow equals scipy's solve_ivp of the same linear ODE, written from Sigma_X, A, sigma_eps."""
    w, T = 2.5, joint.sde.T
    sx, a_mat, se = joint.sigma_x, joint.A, joint.sigma_eps
    sy = a_mat @ sx @ a_mat.T + se**2 * np.eye(2)
    gain = sx @ a_mat.T @ np.linalg.inv(sy)
    sc = sx - gain @ a_mat @ sx
    eye = np.eye(4)

    def rhs(s, x, y):
        alpha = float(np.exp(-(0.1 * s + 0.5 * (20.0 - 0.1) * s**2)))
        beta = 0.1 + (20.0 - 0.1) * s
        score_c = -np.linalg.solve(alpha * sc + (1 - alpha) * eye, x - np.sqrt(alpha) * gain @ y)
        score_u = -np.linalg.solve(alpha * sx + (1 - alpha) * eye, x)
        score = (1 + w) * score_c - w * score_u
        return -0.5 * beta * x - 0.5 * beta * score

    x_T = np.asarray(jax.random.normal(jax.random.key(9), (5, 4)))
    _, y = joint.sample(5, key=jax.random.key(10))
    y = np.asarray(y)
    assert (joint.sde.beta_min, joint.sde.beta_max, T) == (0.1, 20.0, 1.0)
    ours = np.asarray(sample_probability_flow(joint.model(), x_T, y=y, w=w, s_end=S_END))
    ref = np.stack([
        solve_ivp(rhs, (T, S_END), x_T[i], args=(y[i],), method="DOP853", rtol=1e-10, atol=1e-10).y[:, -1]
        for i in range(5)
    ])
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
    # Guidance changes the result: w = 0 differs from w = 2.5 by far more than the tolerance.
    plain = np.asarray(sample_probability_flow(joint.model(), x_T, y=y, w=0.0, s_end=S_END))
    assert np.max(np.abs(plain - ours)) > 1e-1


def test_bad_inputs(joint):
    x_T = np.zeros((3, 4))
    with pytest.raises(ValueError, match="needs y"):
        sample_probability_flow(joint.model(), x_T, w=1.0)
    with pytest.raises(ValueError, match="s_end"):
        sample_reverse_sde(joint.model(), x_T, s_end=1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="one row per"):
        sample_probability_flow(joint.model(), x_T, y=np.zeros((2, 2)))
    for w in (float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="finite guidance weight"):
            sample_probability_flow(joint.model(), x_T, y=np.zeros((3, 2)), w=w)


def test_starting_points_and_conditions_are_checked(joint):
    """A NaN row of x_T came back as a NaN sample from the reverse SDE and as a time error from the flow; integer
    x_T failed inside jax.random; n_steps=True ran one step: each is one clear error naming the input."""
    model = joint.model()
    x_T = np.random.default_rng(0).normal(size=(4, 4))
    bad = x_T.copy()
    bad[1, 0] = np.nan
    y = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"x_T must be finite; 1 of its 4 rows .*rows 1\)"):
        sample_reverse_sde(model, bad, n_steps=5, key=jax.random.key(0))
    with pytest.raises(ValueError, match="x_T must be finite"):
        sample_probability_flow(model, bad)
    with pytest.raises(ValueError, match="x_T must be a float array"):
        sample_reverse_sde(model, np.ones((4, 4), np.int32), n_steps=5, key=jax.random.key(0))
    y_bad = y.copy()
    y_bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="y must be finite"):
        sample_reverse_sde(model, x_T, y=y_bad, n_steps=5, key=jax.random.key(0))
    with pytest.raises(ValueError, match="y must be finite"):
        sample_probability_flow(model, x_T, y=y_bad)
    with pytest.raises(ValueError, match="n_steps must be a positive int"):
        sample_reverse_sde(model, x_T, n_steps=True, key=jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(sample_reverse_sde(model, x_T, y=y, n_steps=5, key=jax.random.key(0)))))


@pytest.mark.parametrize("w", [0.0, 2.0])
def test_guided_flow_reproduces_the_exact_cfg_map(joint, w):
    """The numerical guided sampler with the exact e* is the oracle's exact flow map Phi x_T + Psi y (Eq. 59): two
    independent code paths (adaptive Tsit5 on the protocol model; continuous-time linear algebra in float64)."""
    key_y, key_t = jax.random.split(jax.random.key(11))
    _, y = joint.sample(64, key=key_y)
    x_t = jax.random.normal(key_t, (64, joint.dim_x))
    with jax.enable_x64(True):
        x = sample_probability_flow(joint.model(), jnp.asarray(x_t, jnp.float64), y=jnp.asarray(y, jnp.float64), w=w,
                                    s_end=S_END, stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10))
    phi, psi = cfg_flow_map(joint, w, S_END)
    expected = np.asarray(x_t, np.float64) @ phi.T + np.asarray(y, np.float64) @ psi.T
    np.testing.assert_allclose(np.asarray(x), expected, rtol=0, atol=1e-7)


def test_guided_flow_fixed_steps(joint):
    """A fixed-step Heun solve converges to the exact map (error well below 1e-3 at 400 steps)."""
    key_y, key_t = jax.random.split(jax.random.key(12))
    _, y = joint.sample(8, key=key_y)
    x_t = jax.random.normal(key_t, (8, joint.dim_x))
    n = 400
    x = sample_probability_flow(joint.model(), x_t, y=y, w=1.0, s_end=S_END, solver=diffrax.Heun(),
                                stepsize_controller=diffrax.ConstantStepSize(), dt0=-(joint.sde.T - S_END) / n,
                                max_steps=n + 1)
    phi, psi = cfg_flow_map(joint, 1.0, S_END)
    np.testing.assert_allclose(np.asarray(x), np.asarray(x_t) @ phi.T + np.asarray(y) @ psi.T, atol=1e-3)


def _c(joint_sigma, s):
    """The exact diffused covariance alpha(s) Sigma + (1 - alpha(s)) I, alpha written out for the default schedule."""
    alpha = np.exp(-(0.1 * s + 0.5 * 19.9 * s**2))
    return alpha * joint_sigma + (1 - alpha) * np.eye(joint_sigma.shape[0])


def _sqrtm(c):
    lam, v = np.linalg.eigh(c)
    return (v * np.sqrt(lam)) @ v.T


def test_reverse_sde_few_steps_follow_the_exact_euler_maruyama_recursion(joint):
    """Three Euler-Maruyama steps from s = T to s_end = 0.4 (h = 0.2, steps at s = 1, 0.8, 0.6) are a linear Gaussian
    recursion for e*(x, s) = (I - C_s^{-1}) x: x <- M_k x + sqrt(beta_k h) z with M_k = I + h beta_k (I/2 - C_k^{-1}),
    so the mean is M_2 M_1 M_0 m_T and the covariance P <- M P M^T + beta_k h I, written out here from Sigma_X. The
    samples' 4 means and 10 covariance entries are checked at 4 standard errors (a fresh key fails ~1e-3 of runs)."""
    assert (joint.sde.beta_min, joint.sde.beta_max, joint.sde.T) == (0.1, 20.0, 1.0)
    n_steps, s_end, n = 3, 0.4, 20000
    h = (1.0 - s_end) / n_steps
    m = np.array([1.0, -0.5, 0.25, 2.0])
    p = _c(joint.sigma_x, 1.0)
    x_T = _draw(p, m, n, jax.random.key(13))
    for k in range(n_steps):
        s = 1.0 - k * h
        beta = 0.1 + 19.9 * s
        step = np.eye(4) + h * beta * (0.5 * np.eye(4) - np.linalg.inv(_c(joint.sigma_x, s)))
        m, p = step @ m, step @ p @ step.T + beta * h * np.eye(4)
    x = sample_reverse_sde(joint.model(), x_T, n_steps=n_steps, s_end=s_end, key=jax.random.key(14))
    _assert_gaussian_moments(x, m, p)


def test_flow_is_the_exact_square_root_map_down_to_zero(joint):
    """The unguided flow for Gaussian data is dx/ds = -beta/2 (I - C_s^{-1}) x, diagonal in Sigma's eigenbasis, where
    x_i ~ sqrt(c_i(s)) since dc_i/ds = -beta alpha (lambda_i - 1): x(s_end) = C_{s_end}^{1/2} C_T^{-1/2} x_T. Checked
    at s_end = 0 (allowed: s_end in [0, T)), where it maps onto Sigma_X^{1/2} C_T^{-1/2} x_T, and at s_end = 0.5."""
    x_T = np.asarray(jax.random.normal(jax.random.key(15), (6, 4)))
    for s_end in (0.0, 0.5):
        x = sample_probability_flow(joint.model(), x_T, s_end=s_end,
                                    stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10))
        phi = _sqrtm(_c(joint.sigma_x, s_end)) @ np.linalg.inv(_sqrtm(_c(joint.sigma_x, 1.0)))
        np.testing.assert_allclose(np.asarray(x), x_T @ phi.T, rtol=0, atol=1e-7)


def test_guided_flow_uses_the_separate_unconditional_model(joint):
    """`unconditional_model` (here the model of another Gaussian, Sigma') gives the -w e(x, s) term only. At w = -1
    only that term is left, (1 + w) e(x|y) - w e(x) = e(x), so the flow is Sigma''s exact map
    C'_{s_end}^{1/2} C'_T^{-1/2} x_T (the closed form of the test above) whatever y is, and so it is with y=None (the
    unconditional flow, of unconditional_model alone); at w = 1.5 it equals scipy's
    solve_ivp of the guided linear ODE with the joint's posterior score and Sigma''s marginal score."""
    other = JointGaussian.determinism(4, 2, 0.5, key=jax.random.key(16))
    sx, su, a_mat, se = joint.sigma_x, other.sigma_x, joint.A, joint.sigma_eps
    assert np.max(np.abs(su - sx)) > 0.1
    x_T = np.asarray(jax.random.normal(jax.random.key(17), (3, 4)))
    _, y = joint.sample(3, key=jax.random.key(18))
    y = np.asarray(y)
    tight = diffrax.PIDController(rtol=1e-10, atol=1e-10)
    x = sample_probability_flow(joint.model(), x_T, y=y, w=-1.0, s_end=S_END, unconditional_model=other.model(),
                                stepsize_controller=tight)
    phi = _sqrtm(_c(su, S_END)) @ np.linalg.inv(_sqrtm(_c(su, 1.0)))
    np.testing.assert_allclose(np.asarray(x), x_T @ phi.T, rtol=0, atol=1e-7)
    # with y=None the flow is the unconditional one, so unconditional_model's alone: the same map
    x = sample_probability_flow(joint.model(), x_T, y=None, s_end=S_END, unconditional_model=other.model(),
                                stepsize_controller=tight)
    np.testing.assert_allclose(np.asarray(x), x_T @ phi.T, rtol=0, atol=1e-7)

    w = 1.5
    gain = sx @ a_mat.T @ np.linalg.inv(a_mat @ sx @ a_mat.T + se**2 * np.eye(2))
    sc = sx - gain @ a_mat @ sx

    def rhs(s, x, yy):
        alpha = np.exp(-(0.1 * s + 0.5 * 19.9 * s**2))
        score_c = -np.linalg.solve(_c(sc, s), x - np.sqrt(alpha) * gain @ yy)
        score_u = -np.linalg.solve(_c(su, s), x)
        return -0.5 * (0.1 + 19.9 * s) * (x + (1 + w) * score_c - w * score_u)

    ref = np.stack([solve_ivp(rhs, (1.0, S_END), x_T[i], args=(y[i],), method="DOP853", rtol=1e-10, atol=1e-10).y[:, -1]
                    for i in range(3)])
    x = sample_probability_flow(joint.model(), x_T, y=y, w=w, s_end=S_END, unconditional_model=other.model(),
                                stepsize_controller=tight)
    np.testing.assert_allclose(np.asarray(x), ref, rtol=0, atol=1e-6)
