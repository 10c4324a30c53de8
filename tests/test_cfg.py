"""Classifier-free guidance for the joint Gaussian: exact I(X_CFG; Y), the flow map and the sampler."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from gaussian_oracle import JointGaussian, VPSDE
from gaussian_oracle import (cfg_covariance, cfg_flow_map, cfg_mutual_information, cfg_mutual_information_curve,
                             cfg_sample)
from scipy.optimize import brentq


S_END = 1e-3


@pytest.fixture(scope="module")
def small():
    return JointGaussian.determinism(6, 3, 1.0, key=jax.random.key(3))


@pytest.fixture(scope="module")
def paper():
    """The paper's size (appendix D.1): D_X = 25, D_Y = 15, sigma_eps = 1."""
    return JointGaussian.determinism(25, 15, 1.0, key=jax.random.key(0))


def _reference_flow(joint, w, s_end):
    """(Phi, Psi) of the guided PF-ODE, written independently: dense inverses, scipy DOP853, T -> s_end."""
    sde, dx, dy = joint.sde, joint.dim_x, joint.dim_y
    sx, a = joint.sigma_x, joint.A
    sxy = sx @ a.T
    gain = sxy @ np.linalg.inv(joint.sigma_y)
    s_cond = sx - gain @ sxy.T

    def rhs(s, flat):
        alpha = np.exp(-(sde.beta_min * s + 0.5 * (sde.beta_max - sde.beta_min) * s**2 / sde.T))
        beta = sde.beta_min + (sde.beta_max - sde.beta_min) * s / sde.T
        c_inv = np.linalg.inv(alpha * s_cond + (1 - alpha) * np.eye(dx))
        p_inv = np.linalg.inv(alpha * sx + (1 - alpha) * np.eye(dx))
        state = flat.reshape(dx, dx + dy)
        # dx/ds = -beta/2 [x + (1+w)(-C^{-1}(x - sqrt(alpha) M y)) - w(-P^{-1} x)]
        lin = -0.5 * beta * (np.eye(dx) - (1 + w) * c_inv + w * p_inv)
        drive = -0.5 * beta * (1 + w) * np.sqrt(alpha) * c_inv @ gain
        out = lin @ state
        out[:, dx:] += drive
        return out.ravel()

    y0 = np.concatenate([np.eye(dx), np.zeros((dx, dy))], axis=1).ravel()
    sol = solve_ivp(rhs, (sde.T, s_end), y0, method="DOP853", rtol=1e-13, atol=1e-15)
    final = sol.y[:, -1].reshape(dx, dx + dy)
    return final[:, :dx], final[:, dx:]


def _info(phi, psi, sigma_y):
    _, num = np.linalg.slogdet(phi @ phi.T + psi @ sigma_y @ psi.T)
    _, den = np.linalg.slogdet(phi @ phi.T)
    return 0.5 * (num - den)


# ------------------------------------------------------------------ tier 1: independent computations
@pytest.mark.parametrize("w", [0.0, 0.7, 3.0])
def test_matches_scipy_reference_small(small, w):
    phi_ref, psi_ref = _reference_flow(small, w, S_END)
    phi, psi = cfg_flow_map(small, w, S_END)
    np.testing.assert_allclose(phi, phi_ref, rtol=1e-6, atol=1e-8 * np.abs(phi_ref).max())
    np.testing.assert_allclose(psi, psi_ref, rtol=1e-6, atol=1e-8 * np.abs(psi_ref).max())
    info_ref = _info(phi_ref, psi_ref, small.sigma_y)
    assert cfg_mutual_information(small, w, S_END) == pytest.approx(info_ref, rel=1e-5)


def test_matches_scipy_reference_paper_size(paper):
    w = 1.0
    info_ref = _info(*_reference_flow(paper, w, S_END), paper.sigma_y)
    assert cfg_mutual_information(paper, w, S_END) == pytest.approx(info_ref, rel=1e-5)


@pytest.mark.parametrize("s_end", [1e-3, 0.05])
def test_w0_exact_start_is_closed_form(paper, small, s_end):
    """Unguided and started from the exact p_T(x|y), the flow reproduces I(X_s; Y) = I(X;Y) - (curve)."""
    for joint in (paper, small):
        closed = joint.mutual_information() - joint.mutual_information_curve(s_end)
        assert cfg_mutual_information(joint, 0.0, s_end, exact_start=True) == pytest.approx(closed, rel=1e-5)


def test_w0_exact_start_covariance_is_diffused_joint(small):
    """At w = 0 from p_T the flow map carries p_T(x, y) to p_s(x, y) = N(0, [[a S_X + (1-a) I, sqrt(a) S_XY], ...])."""
    alpha = float(np.exp(-small.sde.int_beta(S_END)))
    sxy = small.sigma_x @ small.A.T
    expected = np.block([
        [alpha * small.sigma_x + (1 - alpha) * np.eye(small.dim_x), np.sqrt(alpha) * sxy],
        [np.sqrt(alpha) * sxy.T, small.sigma_y],
    ])
    np.testing.assert_allclose(cfg_covariance(small, 0.0, S_END, exact_start=True), expected, rtol=0, atol=1e-7)


def test_start_truncation_error_scales_as_sqrt_alpha_T():
    """Starting at N(0, I) instead of p_T misses the mean sqrt(alpha_T) M y: the error is O(alpha_T^{1/2}).

    Measured on D_X = 25, D_Y = 15, key 0 at beta_max = 20 (alpha_T = 4.3e-5): -0.0240 nats of I(X;Y) = 19.585,
    beside the stop truncation I(X;Y) - I(X_{s_end};Y) = 0.0219 nats at s_end = 1e-3.
    """
    log_alpha, log_err = [], []
    for beta_max in (20.0, 24.0, 28.0, 32.0):
        sde = VPSDE(beta_max=beta_max)
        joint = JointGaussian.determinism(6, 3, 1.0, key=jax.random.key(0), sde=sde)
        err = cfg_mutual_information(joint, 0.0, S_END) - cfg_mutual_information(joint, 0.0, S_END, exact_start=True)
        log_alpha.append(-float(sde.int_beta(sde.T)))
        log_err.append(np.log(abs(err)))
    slope = np.polyfit(log_alpha, log_err, 1)[0]
    assert slope == pytest.approx(0.5, abs=0.02)


def test_truncation_errors_at_paper_size(paper):
    """The two w = 0 truncations on the paper's instance, each pinned to its own closed-form or exact-start value."""
    mi = paper.mutual_information()
    stop = paper.mutual_information_curve(S_END)
    exact_start = cfg_mutual_information(paper, 0.0, S_END, exact_start=True)
    noise_start = cfg_mutual_information(paper, 0.0, S_END)
    assert exact_start == pytest.approx(mi - stop, rel=1e-8)
    start_error = noise_start - exact_start
    # Both truncations are small (well under 1 %), and the start error is of order sqrt(alpha_T) * I(X;Y).
    sqrt_alpha_t = np.exp(-0.5 * float(paper.sde.int_beta(paper.sde.T)))
    assert 0 < stop < 2e-3 * mi
    assert 0.05 * sqrt_alpha_t * mi < abs(start_error) < 2 * sqrt_alpha_t * mi


def test_solvers_and_tolerances_agree(paper):
    """At w = 20 the information is hundreds of nats; two solvers and two tolerances must agree."""
    default = cfg_mutual_information(paper, 20.0)
    tight = cfg_mutual_information(paper, 20.0, rtol=1e-12, atol=1e-12)
    tsit = cfg_mutual_information(paper, 20.0, solver=diffrax.Tsit5(), rtol=1e-11, atol=1e-11)
    assert default > 10 * paper.mutual_information()
    assert default == pytest.approx(tight, rel=1e-8)
    assert tsit == pytest.approx(tight, rel=1e-8)


WS = np.linspace(0.0, 20.0, 21)


def test_vectorised_w_matches_scalar_calls(small):
    batch = cfg_mutual_information(small, WS)
    assert batch.shape == WS.shape and batch.dtype == np.float64
    np.testing.assert_allclose(batch[[0, 3, 20]], [cfg_mutual_information(small, w) for w in WS[[0, 3, 20]]],
                               rtol=1e-12)


# ------------------------------------------------------------------ properties
@pytest.mark.parametrize("dims", [(6, 3), (25, 5)])
def test_information_increases_with_w(dims):
    joint = JointGaussian.determinism(*dims, 1.0, key=jax.random.key(0))
    info = cfg_mutual_information(joint, WS)
    assert np.all(np.diff(info) > 0)
    assert info[0] < joint.mutual_information()  # the truncations only lose information at w = 0


def test_float64_whatever_the_mode(small):
    expected = cfg_mutual_information(small, 2.0)
    with jax.enable_x64(False):
        got = cfg_mutual_information(small, 2.0)
    assert isinstance(got, np.float64) and got == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------ sampler
@pytest.mark.parametrize("w", [0.0, 2.0])
def test_sample_covariance(small, key, w):
    joint = small
    n = 5_000
    key_y, key_s = jax.random.split(key)
    _, y = joint.sample(n, key=key_y)
    x = cfg_sample(joint, y, w, key=key_s)
    r = np.concatenate([np.asarray(x), np.asarray(y)], axis=1)
    emp = r.T @ r / n  # both are zero-mean
    exact = cfg_covariance(joint, w, S_END)
    targets = [exact]
    if w == 0.0:  # unguided: Sigma_X, up to truncations (about 1 % here) below the sampling error at this n
        targets.append(np.block([[joint.sigma_x, joint.sigma_x @ joint.A.T], [joint.A @ joint.sigma_x, joint.sigma_y]]))
    for target in targets:
        var = (np.outer(np.diag(target), np.diag(target)) + target**2) / n
        z = (emp - target) / np.sqrt(var)
        assert np.max(np.abs(z)) < 4.5


def test_covariance_and_sample_stop_at_s_end(small, key):
    """Away from the default s_end = 1e-3 (here 0.2, w = 2), with (Phi, Psi) from the independent scipy flow:
    cfg_covariance is [[Phi Phi^T + Psi S_Y Psi^T, Psi S_Y], [., S_Y]] (exactly symmetric) and cfg_sample is
    Phi x_T + Psi y with x_T = jax.random.normal(key, (batch, dim_x)), as documented."""
    s_end, w = 0.2, 2.0
    phi, psi = _reference_flow(small, w, s_end)
    sy = small.sigma_y
    expected = np.block([[phi @ phi.T + psi @ sy @ psi.T, psi @ sy], [(psi @ sy).T, sy]])
    cov = cfg_covariance(small, w, s_end)
    np.testing.assert_allclose(cov, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(cov, cov.T)  # symmetric to the bit, as its docstring says
    key_y, key_s = jax.random.split(key)
    _, y = small.sample(5, key=key_y)
    x = cfg_sample(small, y, w, key=key_s, s_end=s_end)
    x_t = np.asarray(jax.random.normal(key_s, (5, small.dim_x)), dtype=np.float64)
    np.testing.assert_allclose(np.asarray(x), x_t @ phi.T + np.asarray(y) @ psi.T, rtol=1e-6, atol=1e-9)


def test_sample_dtype_follows_the_caller(small, key):
    key_y, key_s = jax.random.split(key)
    _, y = small.sample(8, key=key_y)
    phi, psi = cfg_flow_map(small, 1.0, S_END)
    with jax.enable_x64(False):
        x32 = cfg_sample(small, np.asarray(y), 1.0, key=key_s)
        x_t32 = np.asarray(jax.random.normal(key_s, (8, small.dim_x)), dtype=np.float64)
    assert x32.dtype == jnp.float32 and x32.shape == (8, small.dim_x)
    np.testing.assert_allclose(np.asarray(x32), x_t32 @ phi.T + np.asarray(y) @ psi.T, atol=1e-4)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("w", [np.nan, np.inf, 1j, "2", np.ones((2, 2)), True])
def test_rejects_bad_w(small, w):
    with pytest.raises(ValueError, match="w"):
        cfg_mutual_information(small, w)


@pytest.mark.parametrize("s_end", [0.0, -0.1, 1.0, 2.0, np.nan, [1e-3, 1e-2]])
def test_rejects_bad_s_end(small, s_end):
    with pytest.raises(ValueError, match="s_end"):
        cfg_mutual_information(small, 1.0, s_end)


def test_rejects_bad_options(small, key):
    with pytest.raises(ValueError, match="rtol"):
        cfg_mutual_information(small, 1.0, rtol=0.0)
    with pytest.raises(ValueError, match="solver"):
        cfg_mutual_information(small, 1.0, solver="tsit5")
    with pytest.raises(ValueError, match="y must have shape"):
        cfg_sample(small, np.zeros((4, small.dim_y + 1)), 1.0, key=key)
    with pytest.raises(ValueError, match="scalar w"):
        cfg_sample(small, np.zeros((4, small.dim_y)), [1.0, 2.0], key=key)
    with pytest.raises(ValueError, match="scalar w"):
        cfg_covariance(small, [1.0, 2.0])


def test_joint_methods_delegate(small, key):
    assert small.cfg_mutual_information(1.0) == cfg_mutual_information(small, 1.0)
    _, y = small.sample(3, key=key)
    np.testing.assert_array_equal(np.asarray(small.cfg_sample(y, 1.0, key=key)),
                                  np.asarray(cfg_sample(small, y, 1.0, key=key)))


# ------------------------------------------------------------------------------------ the diffused CFG samples
def _composed_time(sde, s_end, s):
    """The time t with alpha(t) = alpha(s_end) alpha(s): diffusing X_{s_end} on by s lands on X_t (root-found)."""
    target = float(sde.int_beta(s_end) + sde.int_beta(s))
    return brentq(lambda t: float(sde.int_beta(t)) - target, 0.0, 50.0 * sde.T, xtol=1e-15, rtol=1e-15)


def test_cfg_curve_w0_exact_start_is_the_diffused_joint(small):
    """Unguided from p_T the samples are X_{s_end}; diffusing them by s gives X_t with alpha(t) = alpha(s_end) alpha(s),
    so the curve is the joint's I(X_{s_end};Y) - I(X_t;Y) = curve_joint(t) - curve_joint(s_end)."""
    times = np.array([0.0, 1e-5, 1e-3, 0.05, 0.3])
    got = cfg_mutual_information_curve(small, 0.0, times, S_END, exact_start=True)
    before = small.mutual_information_curve(S_END)
    expected = [small.mutual_information_curve(_composed_time(small.sde, S_END, s)) - before for s in times]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("w", [2.0, 6.0])
def test_cfg_curve_matches_dense_reference(small, w):
    """Against log-determinants of the independently integrated flow map (scipy DOP853, dense inverses):
    curve(s) = I(X;Y) - 1/2[logdet(a S_X + v I) - logdet(a S_X|Y + v I)] for the samples' covariances."""
    phi, psi = _reference_flow(small, w, S_END)
    s_cond, s_x = phi @ phi.T, phi @ phi.T + psi @ small.sigma_y @ psi.T
    info = _info(phi, psi, small.sigma_y)
    times = np.array([1e-4, 1e-2, 0.3, small.sde.T])
    expected = []
    for s in times:
        a = float(np.exp(-small.sde.int_beta(s)))
        diffused = 0.5 * (np.linalg.slogdet(a * s_x + (1 - a) * np.eye(small.dim_x))[1]
                          - np.linalg.slogdet(a * s_cond + (1 - a) * np.eye(small.dim_x))[1])
        expected.append(info - diffused)
    np.testing.assert_allclose(cfg_mutual_information_curve(small, w, times, S_END), expected, rtol=1e-6)


def test_cfg_curve_limits_and_errors(small, paper):
    """Zero at s = 0, non-decreasing in s, the method is the function; bad w and s get one clear error each."""
    times = np.linspace(0.0, 1.0, 41)
    curve = cfg_mutual_information_curve(small, 1.0, times)
    assert curve[0] == 0.0 and np.all(np.diff(curve) >= -1e-12)
    np.testing.assert_array_equal(small.cfg_mutual_information_curve(1.0, times), curve)
    # strong guidance: the window [1e-5 T, T] holds far less than I(X_CFG;Y) (the reason it is exported)
    window = np.diff(paper.cfg_mutual_information_curve(6.0, [1e-5, 1.0]))[0]
    assert window < 0.7 * cfg_mutual_information(paper, 6.0)
    with pytest.raises(ValueError, match="scalar w"):
        cfg_mutual_information_curve(small, [1.0, 2.0], 0.1)
    with pytest.raises(ValueError, match=r"\[0, T\]|T\]"):
        cfg_mutual_information_curve(small, 1.0, 1.5)
