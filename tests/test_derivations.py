"""Executable derivations: each test checks one step of the paper numerically on random instances.

Read top to bottom alongside arXiv 2509.23937; every docstring names the step it checks. The
checks use explicit matrices, quadrature and Monte Carlo, never the oracle's own eigen-formulas,
except where the oracle's code *is* the object under test (scores, e*).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from gaussian_oracle import JointGaussian

import _reference as ref

SEEDS = [0, 1, 2]


def _instance(seed, dim_x=6, dim_y=3, sigma_eps=0.5):
    return JointGaussian.determinism(dim_x, dim_y, sigma_eps, key=jax.random.key(seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_eq3_equals_eq6(seed):
    r"""Eq. 3 = Eq. 6: $\int_0^T \frac{\sigma^2}{2}\mathbb E\|\nabla\log p_{eq} - \nabla\log p_s\|^2 ds
    = D_{KL}(p_d\|p_{eq}) - D_{KL}(p_T\|p_{eq})$.

    Left: scipy quadrature of the trace-form expectation; right: two Gaussian KLs by slogdet.
    """
    g = _instance(seed)
    lhs, _ = integrate.quad(lambda s: ref.entropy_integrand(g, s), 0.0, 1.0, epsabs=0, epsrel=1e-11, limit=200)
    p_t, _ = ref.diffused(g, 1.0)
    zero = np.zeros(g.dim_x)
    rhs = ref.gaussian_kl_to_standard(zero, g.sigma_x) - ref.gaussian_kl_to_standard(zero, p_t)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_eq7_kl_splits_into_marginals_and_total_correlation(seed):
    r"""Eq. 7: $D_{KL}(p_d\|p_{eq}) = \sum_k D_{KL}(p_d(x_k)\|p_{eq}(x_k)) + TC(X)$, with TC as the KL
    from the joint to the product of its marginals (computed as a KL between two Gaussians)."""
    g = _instance(seed)
    sx = g.sigma_x
    marginals = sum(0.5 * (sx[k, k] - 1 - np.log(sx[k, k])) for k in range(g.dim_x))
    tc = ref.gaussian_kl(sx, np.diag(np.diag(sx)))
    np.testing.assert_allclose(marginals + tc, ref.gaussian_kl_to_standard(np.zeros(g.dim_x), sx), rtol=1e-10)
    np.testing.assert_allclose(g.total_correlation(), tc, rtol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_eq8_entropy_matching_vector(seed, key):
    r"""Eq. 8: $e^*(x, s; y) = -2b_+(x, s)/\sigma^2(s) + \nabla\log p_s(x|y)$; with $b_+ = -\beta x/2$ and
    $\sigma^2 = \beta$ this is $x + \nabla\log p_s(x|y)$. Checked on the oracle's model with the drift and
    diffusion taken from the SDE object and the score from `jax.grad` of the log-density."""
    g = _instance(seed)
    model, sde = g.model(), g.sde
    s = 0.21
    kx, ky = jax.random.split(key)
    x, y = jax.random.normal(kx, (g.dim_x,)), jax.random.normal(ky, (g.dim_y,))
    _, c = ref.diffused(g, s)
    _, _, _, gain, _ = ref.blocks(g)
    mean = jnp.asarray(np.sqrt(ref.alpha(s)) * gain @ np.asarray(y))
    score = jax.grad(lambda z: jax.scipy.stats.multivariate_normal.logpdf(z, mean, jnp.asarray(c)))(x)
    expected = -2 * sde.drift(x, s) / sde.sigma(s) ** 2 + score
    np.testing.assert_allclose(model(x, s, y), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_eq9_eq10_conditional_model_stores_mutual_information(seed):
    r"""Eqs. 9-10: $S^{X|Y}_{tot} - S^X_{tot} = S(X) - S(X|Y) = I(X;Y)$, both sides from definitions:
    differential entropies $\frac12\log|2\pi e\Sigma|$ on the right, averaged KLs on the left."""
    g = _instance(seed)
    sx, _, sy, gain, sc = ref.blocks(g)
    s_x = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * sx)[1]
    s_x_given_y = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * sc)[1]
    cond_kl = 0.5 * (np.trace(sc) + np.trace(gain @ sy @ gain.T) - g.dim_x - np.linalg.slogdet(sc)[1])
    lhs = cond_kl - ref.gaussian_kl_to_standard(np.zeros(g.dim_x), sx)
    np.testing.assert_allclose(lhs, s_x - s_x_given_y, rtol=1e-10)
    np.testing.assert_allclose(lhs, g.mutual_information(), rtol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_eq12_eq44_minde_with_exact_scores(seed):
    r"""Eq. 12/44: with exact scores $\int_0^T\frac{\beta}{2}\mathbb E\|\nabla\log p_s(x|y) - \nabla\log p_s(x)\|^2
    = I(X;Y) - I(X_T;Y)$; the integrand by explicit covariances, $I(X_T;Y)$ from the joint covariance."""
    g = _instance(seed)
    lhs, _ = integrate.quad(lambda s: ref.minde_integrand(g, s), 0.0, 1.0, epsabs=0, epsrel=1e-11, limit=200)
    p_t, _ = ref.diffused(g, 1.0)
    sx, sxy, sy, _, _ = ref.blocks(g)
    a = ref.alpha(1.0)
    joint = np.block([[p_t, np.sqrt(a) * sxy], [np.sqrt(a) * sxy.T, sy]])
    i_t = 0.5 * (np.linalg.slogdet(p_t)[1] + np.linalg.slogdet(sy)[1] - np.linalg.slogdet(joint)[1])
    i_0 = 0.5 * (np.linalg.slogdet(sy)[1] - g.dim_y * np.log(g.sigma_eps**2))
    np.testing.assert_allclose(lhs, i_0 - i_t, rtol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("s", [0.01, 0.3, 0.9])
def test_eq37_tweedie(seed, s):
    r"""Eq. 37 (Tweedie): $\nabla\log p_s(\tilde x) = -(\tilde x - \mu(s)\mathbb E[x|\tilde x])/(1 - \mu^2)$, with the
    posterior mean $\mathbb E[x|\tilde x] = \mu\Sigma_X P_s^{-1}\tilde x$ from Gaussian conditioning; compared with
    the oracle's score."""
    g = _instance(seed)
    p, _ = ref.diffused(g, s)
    mu, var = np.sqrt(ref.alpha(s)), 1 - ref.alpha(s)
    xt = np.random.default_rng(seed).normal(size=g.dim_x)
    posterior_mean = mu * g.sigma_x @ np.linalg.solve(p, xt)
    tweedie = -(xt - mu * posterior_mean) / var
    np.testing.assert_allclose(g.score(jnp.asarray(xt), s), tweedie, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_eq43_integration_by_parts(seed, key):
    r"""Eq. 43 (IBP): $\mathbb E_{x\sim p_s(\cdot|y)}[\nabla\cdot v(x)] = -\mathbb E[v(x)\cdot\nabla\log p_s(x|y)]$ for
    $v = \nabla\log p_s(x) - \nabla\log p_s(x|y)$. The divergence comes from `jax.jacfwd` of the oracle's scores,
    the right side is a Monte Carlo average over $x \sim p_s(\cdot|y)$, compared within 4 standard errors."""
    g = _instance(seed)
    model = g.model()
    s = 0.15
    ky, kx = jax.random.split(key)
    y = jax.random.normal(ky, (g.dim_y,))
    v = lambda x: model.score(x, s) - model.score(x, s, y)
    div = jnp.trace(jax.jacfwd(v)(jnp.zeros(g.dim_x)))  # v is affine: its divergence is constant
    _, c = ref.diffused(g, s)
    _, _, _, gain, _ = ref.blocks(g)
    mean = np.sqrt(ref.alpha(s)) * gain @ np.asarray(y)
    n = 200_000
    xs = mean + jax.random.normal(kx, (n, g.dim_x)) @ jnp.asarray(np.linalg.cholesky(c)).T
    terms = -jax.vmap(lambda x: v(x) @ model.score(x, s, y))(xs)
    se = np.std(terms) / np.sqrt(n)
    assert abs(np.mean(terms) - div) < 4 * se, (float(np.mean(terms)), float(div), float(se))


@pytest.mark.parametrize("seed", SEEDS)
def test_minde_integrand_equals_difference_of_entropy_rates(seed):
    r"""Pointwise in s: $\mathbb E\|e(x,s;y) - e(x,s)\|^2 = \mathbb E\|e(x,s;y)\|^2 - \mathbb E\|e(x,s)\|^2$, because
    $\mathbb E[\nabla\log p_s(x|y)\,|\,x] = \nabla\log p_s(x)$ and $\mathbb E[(\nabla\log p_s(x|y) - \nabla\log p_s(x))\cdot x] = 0$.
    This is why the MINDE rate and the entropy-difference rate (Eq. 46) agree for exact models."""
    g = _instance(seed)
    for s in (0.0, 0.05, 0.5, 1.0):
        lhs = ref.minde_integrand(g, s)
        rhs = ref.entropy_integrand(g, s, conditional=True) - ref.entropy_integrand(g, s)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-9)
