"""Tests for learned/: the MLP, the DEM loss (against the exact e* of a joint Gaussian), training and resume."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned as L
from gaussian_oracle import VPSDE, JointGaussian, PiecewiseConstant
from verify.protocol import EntropyModel

SDE = VPSDE()


def _small(dim_x=4, dim_y=2, *, key, **kw):
    return L.EntropyMLP(L.MLPConfig(dim_x=dim_x, dim_y=dim_y, width=32, depth=1, **kw), SDE, key=key)


class _Scaled(eqx.Module):
    """c * model (a test double around the exact e*)."""

    model: eqx.Module
    scale: jax.Array
    shift: float = 0.0

    @property
    def sde(self):
        return self.model.sde

    def __call__(self, x, s, y=None):
        return self.scale * self.model(x, s, y) + self.shift


@pytest.fixture(scope="module")
def joint():
    return JointGaussian.determinism(4, 2, 0.5, key=jax.random.key(7))


# ---------------------------------------------------------------------------------------------- network
def test_protocol_and_shapes(key):
    k1, k2, k3, kx = jax.random.split(key, 4)
    vec = _small(key=k1)
    lab = L.EntropyMLP(L.MLPConfig(dim_x=4, num_classes=3, width=32, depth=1), SDE, key=k2)
    unc = L.EntropyMLP(L.MLPConfig(dim_x=4, width=32, depth=1), SDE, key=k3)
    pair = L.Pair(unc, vec)
    x = jax.random.normal(kx, (4,))
    for model, y in [(vec, jnp.ones(2)), (lab, jnp.asarray(1)), (unc, None), (pair, jnp.ones(2))]:
        assert isinstance(model, EntropyModel)
        assert isinstance(model.sde, VPSDE)
        out = model(x, 0.3, y)
        assert out.shape == (4,) and out.dtype == jnp.float32
        assert model(x, 0.3).shape == (4,)
        batch = jax.vmap(lambda a: model(a, 0.3))(jnp.stack([x, 2 * x, -x]))
        assert batch.shape == (3, 4) and batch.dtype == jnp.float32
    # The output layer starts at zero: an untrained network is the forward dynamics, e = 0.
    assert jnp.all(vec(x, 0.3, jnp.ones(2)) == 0)
    with pytest.raises(ValueError, match="shape"):
        vec(jnp.ones(3), 0.3)
    with pytest.raises(ValueError, match="shape"):
        vec(x, 0.3, jnp.ones(3))
    with pytest.raises(ValueError, match="unconditional"):
        unc(x, 0.3, jnp.ones(2))
    with pytest.raises(ValueError, match="integer"):
        lab(x, 0.3, jnp.ones(2))
    with pytest.raises(ValueError, match="either"):
        L.MLPConfig(dim_x=4, dim_y=2, num_classes=3)
    with pytest.raises(ValueError, match="one forward process"):
        L.Pair(unc, L.EntropyMLP(L.MLPConfig(dim_x=4, dim_y=2, width=8, depth=1), VPSDE(beta_max=16.0), key=k1))


def _randomise(model, key):
    """Give every parameter a random value (so outputs depend on every input)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [0.3 * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    model = eqx.combine(jax.tree.unflatten(tree, leaves), static)
    if isinstance(model.condition, L.VectorCondition):
        cond = model.condition
        model = eqx.tree_at(lambda m: (m.condition.loc, m.condition.scale), model, (jnp.zeros_like(cond.loc), jnp.ones_like(cond.scale)))
    return model


def test_null_conditioning(key):
    k1, k2, k3, kx, ky = jax.random.split(key, 5)
    x, y = jax.random.normal(kx, (4,)), jax.random.normal(ky, (2,))
    vec = _randomise(_small(key=k1), k3)
    null = vec(x, 0.4)
    assert jnp.array_equal(vec(x, 0.4, y, drop=jnp.asarray(True)), null)
    assert jnp.array_equal(vec(x, 0.4, y, drop=jnp.asarray(False)), vec(x, 0.4, y))
    assert not jnp.allclose(vec(x, 0.4, y), null)
    assert not jnp.allclose(vec(x, 0.4, y), vec(x, 0.4, 2 * y))
    # The null embedding drives y=None and nothing else.
    moved = eqx.tree_at(lambda m: m.condition.null, vec, vec.condition.null + 1.0)
    assert jnp.array_equal(moved(x, 0.4, y), vec(x, 0.4, y))
    assert not jnp.allclose(moved(x, 0.4), null)
    # Labels: the null label is the extra last row.
    lab = _randomise(L.EntropyMLP(L.MLPConfig(dim_x=4, num_classes=3, width=32, depth=1), SDE, key=k2), k3)
    assert lab.condition.embedding.weight.shape[0] == 4
    assert jnp.array_equal(lab(x, 0.4, jnp.asarray(2), drop=jnp.asarray(True)), lab(x, 0.4))
    outs = [lab(x, 0.4, jnp.asarray(c)) for c in range(3)] + [lab(x, 0.4)]
    assert len({tuple(np.asarray(o).round(6)) for o in outs}) == 4
    # Standardising y changes the input map, not the caller's units.
    data_y = 3.0 + 5.0 * jax.random.normal(ky, (1000, 2))
    std = vec.standardise_condition(data_y)
    np.testing.assert_allclose(std.condition.loc, data_y.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.condition.scale, data_y.std(0), rtol=1e-5)
    np.testing.assert_allclose(std(x, 0.4, std.condition.loc + std.condition.scale * y), vec(x, 0.4, y), rtol=1e-4, atol=1e-5)


def test_output_scaling_matches_gaussian_e_star_size():
    r"""$c_{out}$ is the rms size of $e^*$ along a direction of variance $\sigma_{min}^2 \ll 1$ (up to $1-\sigma^2$)."""
    net = L.EntropyMLP(L.MLPConfig(dim_x=1, min_std=0.05), SDE, key=jax.random.key(0))
    lam = 0.05**2
    for s in [0.0, 1e-3, 0.05, 0.5, 1.0]:
        alpha = float(SDE.alpha(s))
        rms = alpha * (1 - lam) / np.sqrt(1 + alpha * (lam - 1))
        _, c_out = net.scalings(s)
        np.testing.assert_allclose(float(c_out) * (1 - lam), rms, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- time samplers
@pytest.mark.parametrize("weighting", [L.Constant(), L.Likelihood(SDE)])
def test_time_samplers_unbiased(weighting, key):
    r"""$\mathbb E[f(s)/q(s)] = \int_0^T f$ for $f(s) = \cos(3s)$: exact density weights, so no bias."""
    n = 200_000
    s_min = 1e-5
    for sampler, lower in [(L.UniformTime(), 0.0), (L.ImportanceTime(SDE, weighting, num_bins=64), 0.0),
                           (L.LogSNRTime(s_min), s_min * SDE.T),
                           (PiecewiseConstant.log_uniform(SDE.T, s_min=1e-4, n_bins=16), 0.0)]:
        # the density integrates to one over its support (quadrature on a grid fine in log s; the mass left out
        # below 1e-12 is at most of order sqrt(1e-12) for ImportanceTime's 1/sqrt(s) density)
        grid = np.geomspace(max(lower, 1e-12), SDE.T, 400_001)
        np.testing.assert_allclose(np.trapezoid(np.asarray(sampler.pdf(SDE, grid)), grid), 1.0, atol=2e-3)
        assert sampler.support(SDE) == (lower, SDE.T) and sampler.covers(SDE) == (lower == 0.0)
        s, inv_q = jax.vmap(lambda k: sampler(SDE, key=k))(jax.random.split(key, n))
        assert jnp.all((s >= lower) & (s <= SDE.T))
        values = np.asarray(jnp.cos(3 * s) * inv_q)
        est, se = values.mean(), values.std() / np.sqrt(n)
        exact = (np.sin(3.0) - np.sin(3.0 * lower)) / 3.0  # LogSNRTime covers [s_min T, T]
        assert abs(est - exact) < 4 * se, (type(sampler).__name__, est, se)
    with pytest.raises(ValueError, match="num_bins"):
        L.ImportanceTime(SDE, weighting, num_bins=0)


def test_importance_time_draws_follow_its_pdf(key):
    """Guards `ImportanceTime.sample` drawing only bin midpoints (`u = (k + 0.5)/num_bins`): the draws' empirical CDF
    is the CDF of `pdf` integrated numerically (Kolmogorov-Smirnov), and they have no atoms."""
    from scipy import stats

    sampler = L.ImportanceTime(SDE, L.Likelihood(SDE), num_bins=16)
    n = 20_000
    s = np.asarray(sampler.sample(SDE, (n,), key=key))
    assert np.unique(s).size > 0.999 * n  # a continuous density: no repeated values
    # CDF from the density alone: integrate q(T u^2) 2 T u du (finite near u = 0) on a fine grid in u = sqrt(s/T)
    u = np.linspace(0.0, 1.0, 2**18 + 1)
    integrand = np.asarray(sampler.pdf(SDE, SDE.T * u[1:] ** 2)) * 2 * SDE.T * u[1:]
    integrand = np.concatenate([integrand[:1], integrand])
    cdf_u = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(u))])
    np.testing.assert_allclose(cdf_u[-1], 1.0, atol=1e-4)
    result = stats.kstest(s, lambda t: np.interp(np.sqrt(np.clip(t / SDE.T, 0.0, 1.0)), u, cdf_u))
    assert result.pvalue > 1e-4, result


@pytest.mark.parametrize("weighting", [L.Constant(), L.Likelihood(SDE)])
def test_importance_time_is_proportional_to_its_documented_shape(weighting):
    r"""Guards a dropped Jacobian $2Tu$ in `ImportanceTime`'s density in $u$: $q(s) \propto \lambda(s)
    \sqrt{1 + 1/(1 - \alpha(s))}$ on $[10^{-6}, T]$ up to the bin resolution (without it the ratio goes like
    $s^{1/2}$)."""
    sampler = L.ImportanceTime(SDE, weighting)  # the default 512 bins
    s = np.geomspace(1e-6, SDE.T, 2001)
    shape = np.asarray(weighting(s)) * np.sqrt(1.0 + 1.0 / -np.expm1(-np.asarray(SDE.int_beta(s))))
    ratio = shape / np.asarray(sampler.pdf(SDE, s))
    assert ratio.max() / ratio.min() < 1.05, (ratio.min(), ratio.max())


# ---------------------------------------------------------------------------------------------- DEM loss at the exact e*
def _per_sample(loss, model, x, y, key):
    keys = jax.random.split(key, x.shape[0])
    return np.asarray(jax.vmap(lambda a, b, k: loss.per_sample(model, a, b, key=k))(x, y, keys))


def _expected_minimum(joint, weighting, conditional):
    r"""$-\int_0^T\lambda(s)\sum_i 1/(1 + \alpha(s)(\lambda_i - 1))\,ds$ (Gauss-Legendre in $u = \sqrt{s/T}$)."""
    u, w = np.polynomial.legendre.leggauss(200)
    u, w = 0.5 * (u + 1), 0.5 * w
    s = SDE.T * u**2
    evals = np.linalg.eigvalsh(joint.sigma_x_given_y if conditional else joint.sigma_x)
    alpha = np.asarray(SDE.alpha(s))[:, None]
    tr = np.sum(1.0 / (1.0 + alpha * (evals - 1.0)), axis=1)
    return -np.sum(w * 2 * SDE.T * u * np.asarray(weighting(s)) * tr)


@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("weighting", [L.Constant(), L.Likelihood(SDE)])
def test_dem_loss_minimised_by_exact_model(joint, weighting, conditional, key):
    k_data, k_loss = jax.random.split(key)
    n = 40_000
    x, y = joint.sample(n, key=k_data)
    y = y if conditional else None
    keys = jax.random.split(k_loss, n)
    exact = joint.model()
    loss = L.DEMLoss(weighting, L.ImportanceTime(SDE, weighting))

    def per(scale, shift=0.0):
        def one(c, a, b, k):
            return loss.per_sample(_Scaled(exact, c, shift), a, b, key=k)

        values, grads = jax.vmap(jax.value_and_grad(one), in_axes=(None, 0, 0 if conditional else None, 0))(
            jnp.asarray(scale), x, y, keys
        )
        return np.asarray(values), np.asarray(grads)

    def mean_se(v):
        return v.mean(), v.std() / np.sqrt(n)

    base, grad = per(1.0)
    # (1) The value equals the closed-form minimum -int lambda Tr Sigma_s^{-1}.
    expected = _expected_minimum(joint, weighting, conditional)
    m, se = mean_se(base)
    assert abs(m - expected) < 4 * se, (m, se, expected)
    # The batch loss is the mean of the per-sample terms.
    np.testing.assert_allclose(float(loss(exact, x, y, key=k_loss)), m, rtol=1e-10)
    # (2) d/dc L(c e*) at c = 1 vanishes within Monte Carlo error; at c = 1.2 it is clearly positive.
    m, se = mean_se(grad)
    assert abs(m) < 4 * se, (m, se)
    up, grad_up = per(1.2)
    m, se = mean_se(grad_up)
    assert m > 4 * se, (m, se)
    # (3) Perturbed models have a higher loss (paired: the same s and eta per sample).
    for diff in (up - base, per(1.0, 0.1)[0] - base):
        m, se = mean_se(diff)
        assert m > 4 * se, (m, se)


def test_likelihood_weighted_excess_loss_is_the_neural_entropy(joint, key):
    r"""Guards `Likelihood` weighting by $\beta$ instead of $\beta/2$ (Eq. 40): it is $\beta(s)/2$, and the centred DEM
    loss of $c\,e^*$ exceeds that of $e^*$ by $(c-1)^2\int_0^T\tfrac{\beta}{2}\mathbb E\|e^*\|^2 = (c-1)^2 S_{tot}(T)$,
    the closed-form total entropy (paired: the same data, times and noise for both models)."""
    w = L.Likelihood(SDE)
    for s in (0.0, 1e-4, 0.37, SDE.T):
        np.testing.assert_allclose(float(w(s)), float(SDE.beta(s)) / 2, rtol=1e-12)
    k_data, k_loss = jax.random.split(key)
    n = 20_000
    x, _ = joint.sample(n, key=k_data)
    keys = jax.random.split(k_loss, n)
    loss = L.DEMLoss(w, L.ImportanceTime(SDE, w))
    exact = joint.model()

    def per(scale):
        return np.asarray(jax.vmap(lambda a, k: loss.per_sample(_Scaled(exact, jnp.asarray(scale)), a, None, key=k))(
            x, keys))

    c = 2.0
    diff = per(c) - per(1.0)
    m, se = diff.mean(), diff.std(ddof=1) / np.sqrt(n)
    expected = (c - 1.0) ** 2 * float(joint.total_entropy_curve(SDE.T))
    assert abs(m - expected) < 4 * se and se < 0.1 * expected, (m, se, expected)


def test_centred_and_verbatim_losses_share_gradients(joint, key):
    """Centring subtracts a theta-independent term: the same gradient, and the difference is lambda/q ||k||^2."""
    k_data, k_loss, k_net = jax.random.split(key, 3)
    x, y = joint.sample(64, key=k_data)
    net = _randomise(_small(key=k_net), k_net)
    w = L.Likelihood(SDE)
    centred, verbatim = L.DEMLoss(w, L.UniformTime(), 0.2), L.DEMLoss(w, L.UniformTime(), 0.2, centred=False)
    g1 = eqx.filter_jit(eqx.filter_grad(lambda m: centred(m, x, y, key=k_loss)))(net)
    g2 = eqx.filter_jit(eqx.filter_grad(lambda m: verbatim(m, x, y, key=k_loss)))(net)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-3 * float(jnp.max(jnp.abs(b))) + 1e-6)
    assert float(verbatim(net, x, y, key=k_loss)) > float(centred(net, x, y, key=k_loss))
    with pytest.raises(ValueError, match="condition_dropout"):
        L.DEMLoss(w, L.UniformTime(), 1.0)
    with pytest.raises(ValueError, match="weighting"):
        L.DEMLoss("likelihood")
    with pytest.raises(ValueError, match="batch size"):
        centred(net, x, y[:10], key=k_loss)
    other = L.EntropyMLP(L.MLPConfig(dim_x=4, dim_y=2, width=8, depth=1), VPSDE(beta_max=16.0), key=k_net)
    with pytest.raises(ValueError, match="Likelihood weighting"):
        centred(other, x, y, key=k_loss)


def test_condition_dropout_uses_null(joint, key):
    """With dropout probability p the loss mixes the conditional and the null-conditioned network."""
    k_data, k_loss, k_net = jax.random.split(key, 3)
    x, y = joint.sample(256, key=k_data)
    net = _randomise(_small(key=k_net), k_net)
    w = L.Constant()
    keys = jax.random.split(k_loss, 256)
    drop = L.DEMLoss(w, L.UniformTime(), 0.5)

    @eqx.filter_jit
    def run(net, loss, y):
        return jax.vmap(lambda a, b, k: loss.per_sample(net, a, b, key=k), in_axes=(0, None if y is None else 0, 0))(
            x, y, keys
        )

    values, cond, null = (np.asarray(run(net, *args)) for args in [(drop, y), (L.DEMLoss(w), y), (L.DEMLoss(w), None)])
    same_c, same_n = np.isclose(values, cond, rtol=1e-5), np.isclose(values, null, rtol=1e-5)
    assert np.all(same_c | same_n)
    assert 80 < same_n.sum() < 176 and 80 < same_c.sum() < 176


# ---------------------------------------------------------------------------------------------- training
@eqx.filter_jit
def _excess_curves(model, exact, x, y, s, eta):
    def one(args):
        si, et = args
        xs = SDE.mu(si) * x + jnp.sqrt(SDE.var(si)) * et
        if y is None:
            e, es = (jax.vmap(lambda a: f(a, si))(xs) for f in (model, exact))
        else:
            e, es = (jax.vmap(lambda a, b: f(a, si, b))(xs, y) for f in (model, exact))
        return jnp.mean(jnp.sum((e - es) ** 2, -1)), jnp.mean(jnp.sum(es**2, -1))

    return jax.lax.map(one, (s, eta))


def _excess(model, joint, *, key, conditional, n=1000, n_s=32):
    r"""$\int_0^T\tfrac{\beta}{2}\mathbb E\|e - e^*\|^2$ and $\int_0^T\tfrac{\beta}{2}\mathbb E\|e^*\|^2$ (Gauss-Legendre in $\sqrt{s}$)."""
    u, w = np.polynomial.legendre.leggauss(n_s)
    u, w = 0.5 * (u + 1), 0.5 * w
    s = SDE.T * u**2
    kx, ke = jax.random.split(key)
    x, y = joint.sample(n, key=kx)
    eta = jax.random.normal(ke, (n_s,) + x.shape)
    err, ref = _excess_curves(model, joint.model(), x, y if conditional else None, jnp.asarray(s), eta)
    weight = w * 2 * SDE.T * u * 0.5 * np.asarray(SDE.beta(s))
    return float(np.sum(weight * np.asarray(err))), float(np.sum(weight * np.asarray(ref)))


def test_short_training_approaches_exact_model(key):
    """A few hundred steps: one network with condition dropout learns both e(x,s;y) and e(x,s)."""
    joint = JointGaussian.determinism(4, 2, 1.0, key=jax.random.key(3))
    k_data, k_net, k_train, k_eval, k_loss = jax.random.split(key, 5)
    x, y = joint.sample(20_000, key=k_data)
    net = L.EntropyMLP(L.MLPConfig(dim_x=4, dim_y=2, width=64, depth=2), SDE, key=k_net).standardise_condition(y)
    w = L.Likelihood(SDE)
    loss = L.DEMLoss(w, L.ImportanceTime(SDE, w), 0.2)
    cfg = L.TrainConfig(steps=600, batch_size=256, lr=3e-3, warmup_steps=50, final_lr_fraction=0.05,
                        steps_per_call=100, checkpoint_every=600, progress=False)
    result = L.train(net, x, y, config=cfg, loss=loss, key=k_train)
    # The loss (paired: same batch, times and noise) went down.
    before, after = loss(net, x[:4000], y[:4000], key=k_loss), loss(result.ema_model, x[:4000], y[:4000], key=k_loss)
    assert float(after) < float(before)
    for conditional in (True, False):
        err, ref = _excess(result.ema_model, joint, key=k_eval, conditional=conditional)
        # The zero network's error is `ref`; after training the error is a small fraction of it.
        assert err < 0.25 * ref, (conditional, err, ref)


class _AtZero(L.AbstractTimeDensity):
    """A time density concentrated at s = 0 (weight 1/q = T), the draw that used to make the loss NaN."""

    def support(self, sde):
        return 0.0, 0.0

    def sample(self, sde, shape, *, key, dtype=float):
        return jnp.zeros(shape, dtype)

    def pdf(self, sde, s):
        return jnp.full(jnp.shape(s), 1.0 / sde.T)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_loss_finite_at_time_zero(joint, dtype, key):
    """Regression: a sampled s = 0 gave var = 0, an infinite kernel score and a NaN loss mid-training."""
    model = joint.model()
    x, _ = joint.sample(8, key=key)
    for weighting in (L.Constant(), L.Likelihood(joint.sde)):
        value = L.DEMLoss(weighting, _AtZero())(model, x.astype(dtype), key=key)
        assert np.isfinite(value)


class _NeedsKey(eqx.Module):
    """A protocol model with dropout-like noise: it must be given a key."""

    sde: VPSDE

    def __call__(self, x, s, y=None, *, key=None):
        if key is None:
            raise ValueError("this model needs key= (dropout)")
        return 0.1 * jax.random.normal(key, x.shape, x.dtype)


def test_model_key_reaches_networks_with_dropout(key):
    """`DEMLoss(model_key=True)` hands each evaluation its own key (U-Net dropout trains only with it)."""
    x = jnp.ones((4, 3))
    model = _NeedsKey(SDE)
    with pytest.raises(ValueError, match="needs key"):
        L.DEMLoss()(model, x, key=key)
    a = L.DEMLoss(model_key=True)(model, x, key=key)
    b = L.DEMLoss(model_key=True)(model, x, key=jax.random.fold_in(key, 1))
    assert np.isfinite(a) and a != b
