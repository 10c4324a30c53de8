"""GaussianMixture: exact densities/scores/posteriors against scipy, Monte Carlo estimates against quadrature."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from gaussian_oracle import Estimate, GaussianMixture, GaussianMixtureModel, VPSDE
from verify.protocol import EntropyModel


SDE = VPSDE()


# ------------------------------------------------------------------ independent references (scipy only)
def alpha_ref(s, sde=SDE):
    """alpha(s) = exp(-int_0^s beta), the integral done by quadrature rather than VPSDE's closed form."""
    int_beta, _ = integrate.quad(lambda u: sde.beta_min + (sde.beta_max - sde.beta_min) * u / sde.T, 0.0, s)
    return math.exp(-int_beta)


def diffused(mix, s):
    """Component means and covariances of p_s(x|y=k) = N(sqrt(alpha) m_k, alpha C_k + (1 - alpha) I)."""
    a = alpha_ref(s)
    return math.sqrt(a) * mix.means, a * mix.covs + (1.0 - a) * np.eye(mix.dim_x)


def component_logpdfs(mix, x, s):
    means, covs = diffused(mix, s)
    return np.array([stats.multivariate_normal(m, c).logpdf(x) for m, c in zip(means, covs)])


def mixture_logpdf(mix, x, s):
    with np.errstate(divide="ignore"):
        return special.logsumexp(np.log(mix.weights) + component_logpdfs(mix, x, s))


def bayes_posterior(mix, x, s):
    with np.errstate(divide="ignore"):
        log_joint = np.log(mix.weights) + component_logpdfs(mix, x, s)
    return np.exp(log_joint - special.logsumexp(log_joint))


def finite_difference_score(mix, x, s, h=1e-5):
    eye = np.eye(mix.dim_x)
    return np.array([(mixture_logpdf(mix, x + h * e, s) - mixture_logpdf(mix, x - h * e, s)) / (2 * h) for e in eye])


class Quad1D:
    """Exact 1-D information quantities of a labelled mixture by scipy quadrature over x."""

    def __init__(self, weights, means, variances):
        self.w, self.m, self.v = (np.asarray(a, dtype=float) for a in (weights, means, variances))
        self.lo = float(np.min(self.m) - 14 * np.sqrt(np.max(self.v) + 1))
        self.hi = float(np.max(self.m) + 14 * np.sqrt(np.max(self.v) + 1))

    def at(self, s):
        a = alpha_ref(s)
        return Quad1D(self.w, math.sqrt(a) * self.m, a * self.v + 1.0 - a)

    def _parts(self, x):
        log_n = -0.5 * (np.log(2 * np.pi * self.v) + (x - self.m) ** 2 / self.v)
        log_w_n = np.log(self.w) + log_n
        top = np.max(log_w_n)
        log_p = top + math.log(np.sum(np.exp(log_w_n - top)))
        return log_n, log_p, np.exp(log_w_n - log_p)

    def _integrate(self, f):
        value, _ = integrate.quad(f, self.lo, self.hi, limit=200, epsabs=1e-11, epsrel=1e-11)
        return value

    def prior_entropy(self):
        return float(-np.sum(self.w * np.log(self.w)))

    def posterior_entropy(self, x):
        """-sum_k p(k|x) log p(k|x): the per-sample integrand of H(Y|X)."""
        _, _, post = self._parts(x)
        return -np.sum(special.xlogy(post, post))

    def central_moments(self, f):
        """Mean, variance and fourth central moment of f(X), X from this mixture, by quadrature (relative tolerance
        only, so that a nearly constant f keeps its small moments accurate)."""
        def moment(g):
            value, _ = integrate.quad(lambda x: math.exp(self._parts(x)[1]) * g(x), self.lo, self.hi, limit=400,
                                      epsabs=0.0, epsrel=1e-10)
            return value
        mean = moment(f)
        return mean, moment(lambda x: (f(x) - mean) ** 2), moment(lambda x: (f(x) - mean) ** 4)

    def mutual_information(self):
        def f(x):
            log_n, log_p, _ = self._parts(x)
            return np.sum(self.w * np.exp(log_n) * (log_n - log_p))
        return self._integrate(f)

    def label_entropy(self):
        return self._integrate(lambda x: math.exp(self._parts(x)[1]) * self.posterior_entropy(x))

    def kl_to_standard_normal(self):
        def f(x):
            _, log_p, _ = self._parts(x)
            return math.exp(log_p) * (log_p + 0.5 * (math.log(2 * math.pi) + x * x))
        return self._integrate(f)

    def label_entropy_rate(self, s):
        """beta/2 int p_s(x) sum_k p(k|x) (score_k - score)^2 dx, from this (undiffused) mixture diffused to s."""
        at, f = self.at(s), self.rate_integrand(s)
        return at._integrate(lambda x: math.exp(at._parts(x)[1]) * f(x))

    def rate_integrand(self, s):
        """x -> beta/2 sum_k p(k|x) (score_k - score)^2 at time s: the per-sample integrand of the label rate."""
        at = self.at(s)
        beta = SDE.beta_min + (SDE.beta_max - SDE.beta_min) * s / SDE.T

        def f(x):
            _, _, post = at._parts(x)
            scores = -(x - at.m) / at.v
            return 0.5 * beta * np.sum(post * (scores - post @ scores) ** 2)
        return f


WEIGHTS_1D, MEANS_1D, VARS_1D = (0.3, 0.7), (-1.0, 1.5), (0.5, 0.8)


@pytest.fixture(scope="module")
def mix1d():
    return GaussianMixture(WEIGHTS_1D, np.array(MEANS_1D)[:, None], np.array(VARS_1D)[:, None, None])


@pytest.fixture(scope="module")
def quad1d():
    return Quad1D(WEIGHTS_1D, MEANS_1D, VARS_1D)


@pytest.fixture(scope="module")
def mix2d():
    """Three full-covariance components in R^2, one nearly flat (low rank plus eps I)."""
    covs = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.2, -0.1], [-0.1, 0.4]], [[0.8, 0.79], [0.79, 0.8]]])
    return GaussianMixture([0.5, 0.2, 0.3], [[0.0, 1.0], [1.5, -0.5], [-1.0, -1.0]], covs)


def fig1_quad(mix_fig1, separation, spread, eps):
    """Fig. 1 projected on its line: the along-line mixture N(-+separation/2, spread^2 + eps); off-line N(0, eps)."""
    return Quad1D(mix_fig1.weights, (-0.5 * separation, 0.5 * separation), (spread**2 + eps,) * 2)


POINTS = np.array([[0.3, -0.2], [2.0, 1.0], [-1.5, 0.7], [0.01, 0.02]])
TIMES = (0.0, 1e-3, 0.1, 0.5, 1.0)
TIMES_1D = np.array([0.0, 0.01, 0.1, 0.3, 0.6, 1.0])
N = 20_000  # Monte Carlo samples: one size for every estimate, so each kernel compiles once per shape


# ------------------------------------------------------------------ tier 1: exact, against scipy and jax.grad
@eqx.filter_jit
def _exact_quantities(model, points, s):
    """Everything tier 1 checks, for a batch of points, in one compiled call."""

    def one(x):
        labels = jnp.arange(model.n_components)
        cond_log_prob = jax.vmap(lambda k: model.log_prob(x, s, k))(labels)
        cond_score = jax.vmap(lambda k: model.score(x, s, k))(labels)
        cond_grad = jax.vmap(lambda k: jax.grad(model.log_prob)(x, s, k))(labels)
        return (model.log_prob(x, s), cond_log_prob, model.posterior(x, s), model.score(x, s),
                jax.grad(model.log_prob)(x, s), cond_score, cond_grad)

    return jax.vmap(one)(points)


@pytest.mark.parametrize("s", TIMES)
def test_log_prob_score_posterior_against_scipy(mix2d, s):
    log_p, cond_log_p, post, score, grad, cond_score, cond_grad = _exact_quantities(
        mix2d.model(), jnp.asarray(POINTS), jnp.asarray(s))
    for i, x in enumerate(POINTS):
        assert float(log_p[i]) == pytest.approx(mixture_logpdf(mix2d, x, s), rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(cond_log_p[i], component_logpdfs(mix2d, x, s), rtol=1e-12)
        np.testing.assert_allclose(post[i], bayes_posterior(mix2d, x, s), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(score[i], finite_difference_score(mix2d, x, s), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(score, grad, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(cond_score, cond_grad, rtol=1e-10, atol=1e-10)
    # The public one-sample methods agree with the model's.
    x = jnp.asarray(POINTS[0])
    assert float(mix2d.log_prob(x, s)) == pytest.approx(float(log_p[0]), rel=1e-14)
    np.testing.assert_allclose(mix2d.score(x, s), score[0], rtol=1e-14)
    np.testing.assert_allclose(mix2d.conditional_score(x, s, 2), cond_score[0, 2], rtol=1e-14)
    np.testing.assert_allclose(mix2d.posterior(x, s), post[0], rtol=1e-14)


def test_model_is_the_entropy_matching_vector(mix2d):
    model = mix2d.model()
    assert isinstance(model, GaussianMixtureModel) and isinstance(model, EntropyModel)
    assert model.sde is mix2d.sde
    x, s = jnp.asarray(POINTS[1]), 0.3
    np.testing.assert_allclose(model(x, s), mix2d.score(x, s) + x, rtol=1e-12, atol=1e-12)
    for k in range(3):
        np.testing.assert_allclose(model(x, s, k), mix2d.conditional_score(x, s, k) + x, rtol=1e-12, atol=1e-12)
    # e(x, s) is the posterior average of e(x, s; y), and vmap/jit work over a batch of labelled samples.
    np.testing.assert_allclose(model(x, s), mix2d.posterior(x, s) @ jnp.stack([model(x, s, k) for k in range(3)]))
    batch = jnp.asarray(POINTS)
    labels = jnp.array([0, 1, 2, 1])
    batched = eqx.filter_jit(lambda m, xb, sb, yb: jax.vmap(m, (0, None, 0))(xb, sb, yb))
    out = batched(model, batch, jnp.asarray(s), labels)
    np.testing.assert_allclose(out[2], model(batch[2], s, 2), rtol=1e-12)


def test_small_s_low_rank_scores_diverge_but_their_difference_does_not():
    """Fig. 1: off-line scores grow like 1/eps as s -> 0, while e(x,s;y) - e(x,s) stays bounded (Eq. 12)."""
    x, s = jnp.array([0.4, 0.5]), 1e-6
    diffs, norms = [], []
    for eps in (1e-3, 1e-6):
        model = GaussianMixture.on_a_line(eps=eps).model()
        norms.append(float(jnp.linalg.norm(model(x, s))))
        diffs.append(float(jnp.linalg.norm(model(x, s, 0) - model(x, s))))
    assert norms[1] > 100 * norms[0]
    assert diffs[1] == pytest.approx(diffs[0], rel=1e-2)


def test_caller_dtype_and_float64_estimates(key):
    mix = GaussianMixture.on_a_line()
    with jax.enable_x64(False):
        model = mix.model()
        assert model(jnp.zeros(2), 0.5).dtype == jnp.float32
        x, y = mix.sample(4, key=key)
        assert x.dtype == jnp.float32 and y.dtype == jnp.int32
        low = mix.label_entropy(0.3, n=N, key=key)
    high = mix.label_entropy(0.3, n=N, key=key)
    assert low.value == high.value and low.stderr == high.stderr


def test_sample_label_frequencies_and_component_means(mix2d, key):
    n = 40_000
    x, y = mix2d.sample(n, key=key)
    assert x.shape == (n, 2) and y.shape == (n,) and y.dtype == jnp.int32
    for k, w in enumerate(mix2d.weights):
        freq = float(jnp.mean(y == k))
        assert abs(freq - w) <= 4 * math.sqrt(w * (1 - w) / n)
        xk = np.asarray(x[y == k])
        se = np.sqrt(np.diag(mix2d.covs[k]) / len(xk))
        assert np.all(np.abs(xk.mean(0) - mix2d.means[k]) <= 4 * se)


def test_sample_component_covariances(mix2d, key):
    """Within each label the samples' covariance about the known mean is C_k, entry by entry within 4 stderr (the
    variance of an entry of the sample covariance is (C_ii C_jj + C_ij^2) / n_k); the nearly flat component's
    off-diagonal entry 0.79 is the one a wrong square root of C_k misses."""
    n = 40_000
    x, y = mix2d.sample(n, key=key)
    for k, cov in enumerate(mix2d.covs):
        dev = np.asarray(x[y == k]) - mix2d.means[k]
        emp = dev.T @ dev / len(dev)
        se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / len(dev))
        assert np.all(np.abs(emp - cov) <= 4 * se), (k, emp, cov)


def test_zero_weight_component(key):
    """A label with probability 0: H(Y) ignores it (0 log 0 = 0), its posterior is exactly 0, nothing is NaN."""
    mix = GaussianMixture([0.2, 0.0, 0.8], [[0.0], [1.0], [2.0]], np.ones((3, 1, 1)))
    assert mix.prior_entropy() == pytest.approx(-(0.2 * math.log(0.2) + 0.8 * math.log(0.8)), rel=1e-14)
    x = jnp.array([1.0])
    post = mix.posterior(x, 0.3)
    assert float(post[1]) == 0.0
    np.testing.assert_allclose(post, bayes_posterior(mix, np.asarray(x), 0.3), rtol=1e-12)
    np.testing.assert_allclose(mix.score(x, 0.3), jax.grad(mix.log_prob)(x, 0.3), rtol=1e-12)
    x, y = mix.sample(2_000, key=key)
    assert not bool(jnp.any(y == 1))
    est = mix.mutual_information(n=N, key=key)
    assert np.isfinite(est.value) and np.isfinite(est.stderr)
    assert -4 * est.stderr <= est.value <= mix.prior_entropy()


# ------------------------------------------------------------------ tier 2: Monte Carlo within 4 stderr of quadrature
def test_mutual_information_against_quadrature(mix1d, quad1d, key):
    est = mix1d.mutual_information(n=N, key=key)
    exact = quad1d.mutual_information()
    assert isinstance(est, Estimate) and 0 < est.stderr < 0.01
    assert est.within(exact, 4.0), (est, exact)
    assert 0.0 < exact < mix1d.prior_entropy()


def test_label_entropy_curve_against_quadrature(mix1d, quad1d, key):
    times = TIMES_1D
    est = mix1d.label_entropy(times, n=N, key=key)
    exact = np.array([quad1d.at(s).label_entropy() for s in times])
    np.testing.assert_array_equal(est.times, times)
    assert np.all(np.abs(est.cumulative - exact) <= 4 * est.cumulative_stderr), (est.cumulative, exact)
    assert est.value == est.cumulative[-1] and est.stderr == est.cumulative_stderr[-1]
    # H(Y|X_0) = H(Y) - I(X;Y); H(Y|X_s) rises monotonically to H(Y) at s = T.
    assert exact[0] == pytest.approx(quad1d.prior_entropy() - quad1d.mutual_information(), abs=1e-9)
    assert np.all(np.diff(exact) > 0) and np.all(np.diff(est.cumulative) > 0)
    assert exact[-1] == pytest.approx(mix1d.prior_entropy(), abs=1e-3)
    # A scalar time gives the same number as that time in the curve (same samples).
    single = mix1d.label_entropy(times[2], n=N, key=key)
    assert single.value == pytest.approx(est.cumulative[2], rel=1e-12) and single.times is None


def test_label_entropy_rate_against_quadrature(mix1d, quad1d, key):
    times = TIMES_1D
    est = mix1d.label_entropy_rate(times, n=N, key=key)
    exact = np.array([quad1d.label_entropy_rate(s) for s in times])
    assert np.all(np.abs(est.rate - exact) <= 4 * est.rate_stderr), (est.rate, exact)
    # The same rates come with label_entropy's curve.
    curve = mix1d.label_entropy(times, n=N, key=key)
    np.testing.assert_allclose(curve.rate, est.rate, rtol=1e-12)


def test_label_entropy_rate_integrates_to_the_entropy_change(quad1d):
    """dH(Y|X_s)/ds = beta/2 E||e(x,s;y) - e(x,s)||^2, checked on the exact (quadrature) curves."""
    nodes, weights = np.polynomial.legendre.leggauss(24)
    a, b = 0.0, 0.6
    s_nodes = 0.5 * (b - a) * (nodes + 1) + a
    integral = 0.5 * (b - a) * sum(w * quad1d.label_entropy_rate(s) for w, s in zip(weights, s_nodes))
    assert integral == pytest.approx(quad1d.at(b).label_entropy() - quad1d.at(a).label_entropy(), rel=1e-7)


def assert_stderr(stderr, variance, fourth, n, sigmas=4.0):
    """A Monte Carlo stderr, std_ddof1 / sqrt(n), against its exact value sqrt(variance / n). By the delta method the
    sample standard deviation has standard error sd * sqrt((mu_4 / variance^2 - 1) / (4 n)); allow `sigmas` of it."""
    exact = math.sqrt(variance / n)
    spread = exact * math.sqrt((fourth / variance**2 - 1.0) / (4 * n))
    assert abs(stderr - exact) <= sigmas * spread, (stderr, exact, spread)


def test_monte_carlo_stderrs_against_quadrature_moments(mix1d, quad1d, key):
    """Every reported stderr is sqrt(Var f(X_s) / n) of its own per-sample integrand f, within 4 sigma of the sample
    standard deviation's own error (about 0.5 % here): the variance and fourth central moment of the posterior
    entropy (for H(Y|X_s) and I(X;Y)) and of beta/2 sum_k p(k|x)(score_k - score)^2 (the label rate), by quadrature
    under p_s."""
    times = TIMES_1D
    curve = mix1d.label_entropy(times, n=N, key=key)
    rate = mix1d.label_entropy_rate(times, n=N, key=key)
    for i, s in enumerate(times):
        at = quad1d.at(s)
        _, var_h, fourth_h = at.central_moments(at.posterior_entropy)
        _, var_r, fourth_r = at.central_moments(quad1d.rate_integrand(s))
        assert_stderr(curve.cumulative_stderr[i], var_h, fourth_h, N)
        assert_stderr(curve.rate_stderr[i], var_r, fourth_r, N)
        assert_stderr(rate.rate_stderr[i], var_r, fourth_r, N)
    # A scalar time reports that time's stderr likewise (here s = 0.1).
    at = quad1d.at(times[2])
    assert_stderr(mix1d.label_entropy(times[2], n=N, key=key).stderr, *at.central_moments(at.posterior_entropy)[1:], N)
    rate_moments = at.central_moments(quad1d.rate_integrand(times[2]))[1:]
    assert_stderr(mix1d.label_entropy_rate(times[2], n=N, key=key).stderr, *rate_moments, N)
    _, var_h, fourth_h = quad1d.central_moments(quad1d.posterior_entropy)
    assert_stderr(mix1d.mutual_information(n=N, key=key).stderr, var_h, fourth_h, N)


def test_label_entropy_identity_on_fig1(key):
    """H(Y|X_s) = H(Y) - I(X;Y) + int_0^s rate, every term a Monte Carlo estimate from independent keys."""
    mix = GaussianMixture.on_a_line(eps=1e-4)
    s_end, n = 0.4, N
    key_h, key_i, key_r = jax.random.split(key, 3)
    h = mix.label_entropy(s_end, n=n, key=key_h)
    mi = mix.mutual_information(n=n, key=key_i)
    nodes, weights = np.polynomial.legendre.leggauss(16)
    rates = [mix.label_entropy_rate(0.5 * s_end * (t + 1), n=n, key=k)
             for t, k in zip(nodes, jax.random.split(key_r, len(nodes)))]
    integral = 0.5 * s_end * sum(w * r.value for w, r in zip(weights, rates))
    var = 0.25 * s_end**2 * sum((w * r.stderr) ** 2 for w, r in zip(weights, rates))
    predicted = mix.prior_entropy() - mi.value + integral
    stderr = math.sqrt(h.stderr**2 + mi.stderr**2 + var)
    assert abs(h.value - predicted) <= 4 * stderr, (h, predicted, stderr)
    assert stderr < 0.01


def test_fig1_mutual_information_and_total_entropy(key):
    """In 2-D: I(X;Y) is the along-line value; KL(p_d||p_eq) adds the divergent off-line 0.5 (eps - 1 - log eps)."""
    separation, spread, eps = 2.0, 0.5, 1e-4
    mix = GaussianMixture.on_a_line(separation, spread, eps, angle=0.3)
    line = fig1_quad(mix, separation, spread, eps)
    key_i, key_s = jax.random.split(key)
    assert mix.mutual_information(n=N, key=key_i).within(line.mutual_information(), 4.0)
    off_line = 0.5 * (eps - 1.0 - math.log(eps))
    total = mix.total_entropy(n=N, key=key_s)
    assert total.within(line.kl_to_standard_normal() + off_line, 4.0), (total, line.kl_to_standard_normal() + off_line)


def test_total_entropy_curve_against_quadrature(mix1d, quad1d, key):
    times = TIMES_1D
    est = mix1d.total_entropy_curve(times, n=N, key=key)
    kl0 = quad1d.kl_to_standard_normal()
    exact = np.array([kl0 - quad1d.at(s).kl_to_standard_normal() for s in times])
    assert est.cumulative[0] == 0.0 and est.cumulative_stderr[0] == 0.0
    assert np.all(np.abs(est.cumulative[1:] - exact[1:]) <= 4 * est.cumulative_stderr[1:]), (est.cumulative, exact)
    assert np.all(np.diff(est.cumulative) > 0)
    # Pairing: the difference's stderr is far below the stderr of KL(p_d || p_eq) itself.
    total = mix1d.total_entropy(n=N, key=key)
    assert total.within(kl0, 4.0)
    assert est.cumulative_stderr[1] < 0.1 * total.stderr


def test_total_entropy_rate_against_quadrature(mix1d, quad1d, key):
    """The rate returned with the curve is beta/2 E||e*(x_s, s)||^2, the integrand of S_tot (Eq. 3)."""
    times = TIMES_1D
    est = mix1d.total_entropy_curve(times, n=N, key=key)
    for s, rate, stderr in zip(times, est.rate, est.rate_stderr):
        at = quad1d.at(s)
        beta = SDE.beta_min + (SDE.beta_max - SDE.beta_min) * s / SDE.T

        def f(x):
            _, log_p, post = at._parts(x)
            return math.exp(log_p) * (post @ (-(x - at.m) / at.v) + x) ** 2

        assert abs(rate - 0.5 * beta * at._integrate(f)) <= 4 * stderr


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "weights, means, covs, match",
    [
        ([0.5, 0.6], [[0.0], [1.0]], np.ones((2, 1, 1)), "sum to one"),
        ([0.5, 0.5 + 1e-9], [[0.0], [1.0]], np.ones((2, 1, 1)), "sum to one"),
        ([1.5, -0.5], [[0.0], [1.0]], np.ones((2, 1, 1)), "non-negative"),
        ([[0.5, 0.5]], [[0.0], [1.0]], np.ones((2, 1, 1)), "1-dimensional"),
        ([np.nan, 1.0], [[0.0], [1.0]], np.ones((2, 1, 1)), "finite"),
        ([0.5, 0.5], [[0.0], [1.0], [2.0]], np.ones((2, 1, 1)), "means must have shape"),
        ([0.5, 0.5], [0.0, 1.0], np.ones((2, 1, 1)), "means must be 2-dimensional"),
        ([0.5, 0.5], [[0.0], [1.0]], np.ones((2, 2, 2)), "covs must have shape"),
        ([0.5, 0.5], [[0.0, 0.0], [1.0, 0.0]], [np.eye(2), [[1.0, 0.5], [0.4, 1.0]]], "covs\\[1\\] must be symmetric"),
        ([0.5, 0.5], [[0.0, 0.0], [1.0, 0.0]], [np.eye(2), [[1.0, 2.0], [2.0, 1.0]]], "covs\\[1\\] must be positive"),
        ([0.5, 0.5], [[0.0], [1.0]], [[["a"]], [["b"]]], "real numbers"),
    ],
)
def test_invalid_construction(weights, means, covs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(weights, means, covs)


def test_invalid_low_rank_and_sde():
    with pytest.raises(ValueError, match="factors must have shape"):
        GaussianMixture.low_rank([0.5, 0.5], [[0.0, 0.0], [1.0, 0.0]], np.ones((2, 3, 1)), 1e-3)
    with pytest.raises(ValueError, match="eps must be > 0"):
        GaussianMixture.low_rank([0.5, 0.5], [[0.0, 0.0], [1.0, 0.0]], np.ones((2, 2, 1)), 0.0)
    with pytest.raises(ValueError, match="sde must be a VPSDE"):
        GaussianMixture([1.0], [[0.0]], [[[1.0]]], sde="vp")
    mix = GaussianMixture.low_rank([0.5, 0.5], [[0.0, 0.0], [1.0, 0.0]], np.ones((2, 2, 1)), 1e-3)
    np.testing.assert_allclose(mix.covs[0], np.ones((2, 2)) + 1e-3 * np.eye(2))


def test_invalid_calls(key):
    mix = GaussianMixture.on_a_line()
    model, x = mix.model(), jnp.zeros(2)
    for bad in (2, -1):
        with pytest.raises(ValueError, match="unknown label"):
            model(x, 0.5, bad)
    with pytest.raises(ValueError, match="integer label"):
        model(x, 0.5, 1.0)
    with pytest.raises(ValueError, match="integer label"):
        model(x, 0.5, True)
    with pytest.raises(ValueError, match="integer label"):
        model(x, 0.5, jnp.array([0, 1]))
    with pytest.raises(ValueError, match="integer label"):
        mix.conditional_score(x, 0.5, None)
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        model(jnp.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scalar time"):
        model(x, jnp.zeros(2))
    with pytest.raises(Exception, match="unknown label"):
        jax.block_until_ready(eqx.filter_jit(model)(x, jnp.asarray(0.5), jnp.asarray(2)))
    with pytest.raises(ValueError, match="must lie in \\[0, T\\]"):
        mix.label_entropy(1.5, n=10, key=key)
    with pytest.raises(ValueError, match="1-D array"):
        mix.total_entropy_curve(np.full((2, 2), 0.5), n=10, key=key)
    with pytest.raises(ValueError, match="n must be >= 2"):
        mix.mutual_information(n=1, key=key)
    with pytest.raises(ValueError, match="positive integer"):
        mix.sample(0, key=key)
    calls = (lambda k: mix.sample(3, key=k), lambda k: mix.label_entropy(0.5, n=10, key=k),
             lambda k: mix.label_entropy_rate(0.5, n=10, key=k), lambda k: mix.mutual_information(n=10, key=k),
             lambda k: mix.total_entropy(n=10, key=k), lambda k: mix.total_entropy_curve(0.5, n=10, key=k))
    for call in calls:
        with pytest.raises(ValueError, match="PRNG key"):
            call(0)


# ------------------------------------------------------------------ bounds of the Monte Carlo estimates are flagged
def test_monte_carlo_estimates_outside_their_bounds_are_flagged():
    """A nearly uninformative mixture (I(X;Y) = 2e-4 nats): with these 200 draws the Monte Carlo I(X;Y) is 2.5 stderr
    below 0 and H(Y|X_0) as far above H(Y) = -(0.9 log 0.9 + 0.1 log 0.1), written out here. Both are flagged with
    the quantity's name; in general exactly when the value leaves [0, H(Y)] by more than 2 stderr, and for a curve
    also at every time that does."""
    mix = GaussianMixture([0.9, 0.1], [[0.0], [0.05]], [[[1.0]], [[1.0]]])
    h_y = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    key = jax.random.key(47)
    info = mix.mutual_information(n=200, key=key)
    assert info.value < -2 * info.stderr
    assert len(info.flags) == 1 and "I(X;Y)" in info.flags[0] and "below its lower bound" in info.flags[0]
    curve = mix.label_entropy(np.array([0.0, 0.02, 1.0]), n=200, key=key)
    assert curve.cumulative[0] > h_y + 2 * curve.cumulative_stderr[0]
    above = curve.cumulative > h_y + 2 * curve.cumulative_stderr
    (flag,) = [f for f in curve.flags if "curve" in f]
    assert "H(Y|X_s)" in flag and f"at {above.sum()} of 3 times" in flag
    assert any("above its upper bound" in f for f in curve.flags) == bool(above[-1])
    for k in range(5):
        est = mix.mutual_information(n=200, key=jax.random.key(k))
        assert bool(est.flags) == (est.value < -2 * est.stderr or est.value > h_y + 2 * est.stderr)


def test_an_estimate_that_is_not_finite_is_flagged():
    """NaN passed every bound comparison unflagged; check_bounds flags it whatever the bounds (NaN values are
    allowed as placeholders, so they are flagged rather than refused), and an infinite stderr likewise."""
    assert Estimate(0.5, 0.1).check_bounds(lower=0, upper=1).flags == ()
    (flag,) = Estimate(math.nan, 0.1).check_bounds(lower=0, upper=1, name="I").flags
    assert flag.startswith("I is not finite")
    for value in (math.nan, math.inf, -math.inf):
        assert Estimate(value, 0.1).check_bounds().flags[0].startswith("value is not finite")
    assert "infinite stderr" in Estimate(0.5, math.inf).check_bounds(lower=0).flags[0]
    with pytest.raises(ValueError, match="stderr must be >= 0"):
        Estimate(0.5, math.nan)


def test_mean_stderr_needs_two_real_values():
    """The mean and std(ddof=1)/sqrt(n) of [1, 2, 3, 4] by hand (2.5 and sqrt(5/3)/2), from a list as from arrays;
    one value (a NaN stderr before), booleans or a missing axis give one clear error."""
    from gaussian_oracle import mean_stderr

    for values in ([1.0, 2.0, 3.0, 4.0], np.array([1, 2, 3, 4]), jnp.array([1.0, 2.0, 3.0, 4.0])):
        mean, se = mean_stderr(values)
        assert float(mean) == pytest.approx(2.5) and float(se) == pytest.approx(math.sqrt(5 / 3) / 2, rel=1e-6)
    mean, se = jax.jit(mean_stderr)(jnp.arange(6.0).reshape(3, 2))
    np.testing.assert_allclose(mean, [2.0, 3.0]) and np.testing.assert_allclose(se, [2 / math.sqrt(3)] * 2, rtol=1e-6)
    for bad, match in (([1.0], "at least 2"), (np.ones((1, 3)), "at least 2"), ([True, False], "real numbers"),
                       (np.float64(1.0), "out of range")):
        with pytest.raises(ValueError, match=match):
            mean_stderr(bad)


# ---------------------------------------------------------------------------------------------- two classes, exactly
def test_symmetric_two_class_label_entropy_quadrature_against_monte_carlo():
    """The 1-D quadrature of H(Y|X_s) agrees with the Monte Carlo estimate over exact posteriors at every time."""
    mixture = GaussianMixture.symmetric_two_class(np.array([1.2, -0.4, 0.3]), 0.6)
    times = np.array([1e-3, 0.05, 0.15, 0.3, 0.6])
    exact = mixture.two_class_label_entropy(times)
    mc = mixture.label_entropy(times, n=20_000, key=jax.random.key(0))
    assert np.all(np.abs(mc.cumulative - exact) < 4 * mc.cumulative_stderr + 1e-12), (mc.cumulative, exact)
    assert np.all(np.diff(exact) > 0) and 0 < exact[0] < exact[-1] < np.log(2)


def test_two_class_closed_form_landmarks():
    mixture = GaussianMixture.symmetric_two_class(np.array([2.0, 0.0]), 0.5)
    s_star = mixture.speciation_time()
    assert float(mixture.two_class_signal(s_star)) == pytest.approx(1.0, rel=1e-10)
    assert float(mixture.two_class_label_entropy(s_star)) == pytest.approx(0.356316, abs=1e-6)  # a = 1
    assert float(mixture.two_class_label_entropy(mixture.sde.T)) == pytest.approx(np.log(2), abs=1e-2)
    with pytest.raises(ValueError, match="no speciation time"):
        GaussianMixture.symmetric_two_class(np.array([0.3, 0.0]), 0.5).speciation_time()
    with pytest.raises(ValueError, match="two equally likely classes"):
        GaussianMixture.on_a_line().two_class_label_entropy(0.1)


def test_two_class_signal_and_label_entropy_against_1d_quadrature():
    """Projected on m the symmetric two-class mixture is the 1-D mixture N(-+|m|, sigma^2) (the orthogonal directions
    carry no label), so H(Y|X_s) is that mixture's label entropy by quadrature over x (Quad1D), and
    a(s) = |m| sqrt(alpha / (1 - alpha + sigma^2 alpha)) with alpha from the quadrature of beta."""
    m, sigma = np.array([1.2, -0.4, 0.3]), 0.6
    mixture = GaussianMixture.symmetric_two_class(m, sigma)
    norm = float(np.linalg.norm(m))
    line = Quad1D((0.5, 0.5), (-norm, norm), (sigma**2, sigma**2))
    times = np.array([0.0, 1e-3, 0.05, 0.15, 0.3, 0.6, 1.0])
    alpha = np.array([alpha_ref(s) for s in times])
    np.testing.assert_allclose(mixture.two_class_signal(times), norm * np.sqrt(alpha / (1 - alpha + sigma**2 * alpha)),
                               rtol=1e-10)
    exact = [line.at(s).label_entropy() for s in times]
    np.testing.assert_allclose(mixture.two_class_label_entropy(times), exact, rtol=1e-8, atol=1e-10)


def test_constructors_put_the_classes_where_documented():
    """symmetric_two_class: class 1 at +m, class 0 at -m, both sigma^2 I and equally likely, so at s = 0 the posterior
    of class 1 at x = m is expit(2 |m|^2 / sigma^2); on_a_line: class 1 at +separation/2 (cos angle, sin angle),
    covariance spread^2 u u^T + eps I. All written out by hand."""
    m, sigma = np.array([1.2, -0.4, 0.3]), 0.6
    two = GaussianMixture.symmetric_two_class(m, sigma)
    np.testing.assert_array_equal(two.weights, [0.5, 0.5])
    np.testing.assert_array_equal(two.means, [-m, m])
    np.testing.assert_allclose(two.covs, [sigma**2 * np.eye(3)] * 2, rtol=1e-15)
    post = two.posterior(jnp.asarray(m), 0.0)
    np.testing.assert_allclose(post, special.expit(np.array([-2.0, 2.0]) * (m @ m) / sigma**2), rtol=1e-12)
    line = GaussianMixture.on_a_line(3.0, 0.5, 1e-3, angle=0.3, weights=(0.25, 0.75))
    u = np.array([math.cos(0.3), math.sin(0.3)])
    np.testing.assert_array_equal(line.weights, [0.25, 0.75])
    np.testing.assert_allclose(line.means, [-1.5 * u, 1.5 * u], rtol=1e-15)
    np.testing.assert_allclose(line.covs, [0.25 * np.outer(u, u) + 1e-3 * np.eye(2)] * 2, rtol=1e-14)


def test_speciation_time_is_the_root_of_a_equals_one():
    """s* solves a(s)^2 = |m|^2 alpha / (1 - alpha + sigma^2 alpha) = 1, root-found here with alpha by quadrature."""
    mixture = GaussianMixture.symmetric_two_class(np.array([2.0, 0.0]), 0.5)
    root = optimize.brentq(lambda s: 4.0 * alpha_ref(s) / (1.0 - alpha_ref(s) + 0.25 * alpha_ref(s)) - 1.0, 1e-6, 1.0,
                           xtol=1e-14, rtol=1e-14)
    assert mixture.speciation_time() == pytest.approx(root, rel=1e-9)


def test_two_class_without_signal_and_unequal_weights():
    """m = 0: no position says anything about the label, H(Y|X_s) = log 2 at every s. Unequal class weights are not
    the two-class closed form and are refused, not answered with the equal-weight number."""
    flat = GaussianMixture.symmetric_two_class(np.zeros(2), 0.7)
    np.testing.assert_allclose(flat.two_class_label_entropy(np.array([0.0, 0.3, 1.0])), math.log(2.0), rtol=1e-14)
    unequal = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.0]], [0.25 * np.eye(2)] * 2)
    with pytest.raises(ValueError, match="two equally likely classes"):
        unequal.two_class_label_entropy(0.1)
