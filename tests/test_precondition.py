"""learned.Preconditioned: exact for Gaussian data with the right inner map, constants untrained, protocol."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned as L
from gaussian_oracle import JointGaussian
from verify.protocol import EntropyModel


class _WhitenedExact(eqx.Module):
    """F*(z) = alpha (Sigma - I) z: the inner map that makes the preconditioned model exact for N(0, Sigma)."""

    sde: object
    sigma: jax.Array

    def __call__(self, z, s, y=None):
        return self.sde.alpha(s) * ((self.sigma - jnp.eye(z.shape[0])) @ z)


def _joint():
    return JointGaussian.determinism(6, 3, 1.0, key=jax.random.key(4))


@pytest.mark.parametrize("s", [1e-4, 0.02, 0.5, 1.0])
def test_exact_inner_map_gives_exact_e_star(s, key):
    g = _joint()
    evals, evecs = np.linalg.eigh(g.sigma_x)
    model = L.Preconditioned(_WhitenedExact(g.sde, jnp.asarray(g.sigma_x)), jnp.asarray(evecs), jnp.asarray(evals))
    x = jax.random.normal(key, (g.dim_x,))
    np.testing.assert_allclose(model(x, s), g.model()(x, s), rtol=1e-9, atol=1e-12)


def test_fit_uses_empirical_covariance_and_zero_network_is_zero(key):
    g = _joint()
    x, _ = g.sample(50_000, key=key)
    net = L.EntropyMLP(L.MLPConfig(dim_x=g.dim_x, width=16, depth=1, dtype=jnp.float64), g.sde, key=key)
    model = L.Preconditioned.fit(net, x)
    np.testing.assert_allclose((model.evecs * model.evals) @ model.evecs.T, np.cov(np.asarray(x), rowvar=False), rtol=1e-10, atol=1e-12)
    assert isinstance(model, EntropyModel) and model.sde == g.sde
    np.testing.assert_array_equal(model(x[0], 0.3), np.zeros(g.dim_x))  # output layer starts at zero


def test_covariance_is_not_trained(key):
    g = _joint()
    x, _ = g.sample(1000, key=key)
    net = L.EntropyMLP(L.MLPConfig(dim_x=g.dim_x, width=16, depth=1), g.sde, key=key)
    model = L.Preconditioned.fit(net, x)
    loss = L.DEMLoss(L.Likelihood(g.sde), L.ImportanceTime(g.sde, L.Likelihood(g.sde)))
    grads = eqx.filter_grad(lambda m: loss(m, x[:64].astype(jnp.float32), key=key))(model)
    assert not np.any(np.asarray(grads.evals)) and not np.any(np.asarray(grads.evecs))
    result = L.train(model, x, config=L.TrainConfig(steps=20, steps_per_call=10, checkpoint_every=10, progress=False),
                     loss=loss, key=key)
    np.testing.assert_array_equal(result.model.evals, model.evals)


@pytest.mark.parametrize("data,match", [(np.ones(5), "shape"), (np.full((10, 2), np.nan), "finite")])
def test_fit_rejects_bad_data(data, match, key):
    net = L.EntropyMLP(L.MLPConfig(dim_x=2, width=8, depth=1), _joint().sde, key=key)
    with pytest.raises(ValueError, match=match):
        L.Preconditioned.fit(net, data)


def test_fit_with_vector_condition_estimates_sigma_x_given_y(key):
    g = _joint()
    n = 200_000
    x, y = g.sample(n, key=key)
    net = L.EntropyMLP(L.MLPConfig(dim_x=g.dim_x, dim_y=g.dim_y, width=8, depth=1), g.sde, key=key)
    model = L.Preconditioned.fit(net, x, y)
    est = np.asarray((model.evecs * model.evals) @ model.evecs.T, np.float64)
    exact = g.sigma_x_given_y
    # Sample covariance entries have standard error sqrt((C_ii C_jj + C_ij^2) / n).
    se = np.sqrt((np.outer(np.diag(exact), np.diag(exact)) + exact**2) / n)
    assert np.all(np.abs(est - exact) < 4.5 * se)


def test_fit_with_labels_uses_pooled_within_class_covariance(key):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=600)
    data = rng.normal(size=(600, 2)) * np.array([1.0, 0.1]) + np.array([[0, 0], [5, 1], [-3, 2]])[labels]
    expected = sum(((data[labels == k] - data[labels == k].mean(0)).T @ (data[labels == k] - data[labels == k].mean(0)))
                   for k in range(3)) / (600 - 1)
    net = L.EntropyMLP(L.MLPConfig(dim_x=2, num_classes=3, width=8, depth=1, dtype=jnp.float64), _joint().sde, key=key)
    model = L.Preconditioned.fit(net, data, labels)
    np.testing.assert_allclose((model.evecs * model.evals) @ model.evecs.T, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="same number of rows"):
        L.Preconditioned.fit(net, data, labels[:10])


@pytest.mark.parametrize("s", [1e-4, 0.02, 0.5, 1.0])
def test_centred_exact_inner_map_gives_exact_conditional_e_star(s, key):
    """With the exact conditional mean m(y) = Sigma_XY Sigma_Y^-1 y and Sigma_X|Y, the centred preconditioner with the
    inner map F*(z) = alpha (Sigma_X|Y - I) z (no y in it) reproduces the oracle's conditional e*(x, s; y): the
    class note's identity e* = (I - P^-1)(x - sqrt(alpha) m) + sqrt(alpha) m, on a near-deterministic pair."""
    g = JointGaussian.determinism(6, 3, 0.05, key=jax.random.key(4))
    cond = g.sigma_x_given_y
    evals, evecs = np.linalg.eigh(cond)
    slopes = np.linalg.solve(g.sigma_y, g.A @ g.sigma_x)  # (dim_y, dim_x): m(y) = y @ slopes
    model = L.Preconditioned(_WhitenedExact(g.sde, jnp.asarray(cond)), jnp.asarray(evecs), jnp.asarray(evals),
                             jnp.zeros(g.dim_x), jnp.asarray(slopes), jnp.zeros(g.dim_y), "affine")
    x, y = g.sample(1, key=key)
    np.testing.assert_allclose(model(x[0], s, y[0]), g.model()(x[0], s, y[0]), rtol=1e-8, atol=1e-10)
    # and the uncentred preconditioner with the same inner map is not: the mean term is what centring supplies
    plain = L.Preconditioned(_WhitenedExact(g.sde, jnp.asarray(cond)), jnp.asarray(evecs), jnp.asarray(evals))
    assert np.max(np.abs(plain(x[0], s, y[0]) - g.model()(x[0], s, y[0]))) > 1e-3


def test_centred_fit_estimates_the_conditional_mean_and_starts_at_it(key):
    g = _joint()
    n = 200_000
    x, y = g.sample(n, key=key)
    net = L.EntropyMLP(L.MLPConfig(dim_x=g.dim_x, dim_y=g.dim_y, width=8, depth=1, dtype=jnp.float64), g.sde, key=key)
    model = L.Preconditioned.fit(net, x, y, centre=True)
    slopes = np.linalg.solve(g.sigma_y, g.A @ g.sigma_x)
    # least-squares slopes: stderr about sqrt(diag(Sigma_X|Y)_j / (n lambda(Sigma_Y))); 1e-2 is > 5 of them here
    np.testing.assert_allclose(model.mean_coef, slopes, atol=1e-2)
    np.testing.assert_allclose(model.mean, np.asarray(x).mean(0), rtol=1e-12, atol=1e-12)
    s = 0.3
    root = float(np.sqrt(g.sde.alpha(s)))
    m_hat = np.asarray(model.mean) + (np.asarray(y[0]) - np.asarray(model.y_mean)) @ np.asarray(model.mean_coef)
    np.testing.assert_allclose(model(x[0], s, y[0]), root * m_hat, rtol=1e-12)  # the inner network starts at 0
    np.testing.assert_allclose(model(x[0], s, y[0], drop=True), root * np.asarray(model.mean), rtol=1e-12)
    np.testing.assert_allclose(model(x[0], s), root * np.asarray(model.mean), rtol=1e-12)


def test_centred_fit_with_labels_uses_class_means(key):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=600)
    centres = np.array([[0.0, 0.0], [5.0, 1.0], [-3.0, 2.0], [9.0, 9.0]])
    data = rng.normal(size=(600, 2)) * np.array([1.0, 0.1]) + centres[labels]
    net = L.EntropyMLP(L.MLPConfig(dim_x=2, num_classes=4, width=8, depth=1, dtype=jnp.float64), _joint().sde, key=key)
    model = L.Preconditioned.fit(net, data, labels, centre=True)
    expected = np.stack([data[labels == k].mean(0) for k in range(3)])
    np.testing.assert_allclose(model.mean_coef[:3], expected, rtol=1e-12)
    np.testing.assert_allclose(model.mean_coef[3], data.mean(0), rtol=1e-12)  # a class absent from the data
    root = float(np.sqrt(_joint().sde.alpha(0.5)))
    np.testing.assert_allclose(model(data[0], 0.5, labels[0]), root * expected[labels[0]], rtol=1e-12)
    with pytest.raises(ValueError, match="mean_kind"):
        L.Preconditioned(net, model.evecs, model.evals, model.mean, None, None, "quadratic")
    with pytest.raises(ValueError, match="mean_coef"):
        L.Preconditioned(net, model.evecs, model.evals, model.mean, None, None, "class")


# ---------------------------------------------------------------------------------------------- ClassCentred
class _LabelBlind(eqx.Module):
    """The exact e* of the zero-mean N(0, C) as an inner network that ignores the label (and accepts `drop`)."""

    inner: eqx.Module

    @property
    def sde(self):
        return self.inner.sde

    def __call__(self, u, s, y=None, **kwargs):
        return self.inner(u, s)


def _shared_covariance_mixture():
    from gaussian_oracle import GaussianMixture
    rng = np.random.default_rng(3)
    root = rng.normal(size=(4, 4))
    cov = root @ root.T / 4 + 0.05 * np.eye(4)
    means = rng.normal(size=(3, 4)) * 2.0
    mixture = GaussianMixture(np.array([0.2, 0.3, 0.5]), means, np.stack([cov] * 3))
    centred = GaussianMixture(np.array([1.0]), np.zeros((1, 4)), cov[None])
    return mixture, centred, means


@pytest.mark.parametrize("s", [1e-4, 0.05, 0.5, 1.0])
def test_class_centred_exact_for_shared_covariance_classes(s, key):
    """e*(x, s; y) of Gaussian classes with one covariance C is sqrt(alpha) m_y + e*_{N(0, C)}(x - sqrt(alpha) m_y):
    a label-blind inner network reproduces every class's exact conditional e* (the mixture oracle's)."""
    mixture, centred, means = _shared_covariance_mixture()
    model = L.ClassCentred(_LabelBlind(centred.model()), jnp.asarray(means), jnp.asarray(means.mean(0)))
    x = jax.random.normal(key, (5, 4), jnp.float64) * 3.0
    for label in range(3):
        for xi in x:
            np.testing.assert_allclose(model(xi, s, label), mixture.model()(xi, s, label), rtol=1e-9, atol=1e-11)
    assert isinstance(model, EntropyModel)


def test_class_centred_fit_means_null_label_and_start(key):
    """fit: class means and data mean (absent class -> data mean); an untrained inner network gives sqrt(alpha) m(y);
    y=None and drop=True use the data mean; one clear error per bad input."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=300)
    images = rng.normal(size=(300, 1, 4, 4)) + labels[:, None, None, None]
    config = L.UNetConfig.digits_tiny(num_classes=4, channels=8, embed_dim=16, num_groups=4, image_shape=(1, 4, 4))
    net = L.EntropyUNet(config, _joint().sde, key=key)
    model = L.ClassCentred.fit(net, images, labels, dtype=jnp.float64)
    for k in range(3):
        np.testing.assert_allclose(model.class_means[k], images[labels == k].mean(0), rtol=1e-12)
    np.testing.assert_allclose(model.class_means[3], images.mean(0), rtol=1e-12)
    root = float(np.sqrt(net.sde.alpha(0.3)))
    np.testing.assert_allclose(model(images[0], 0.3, labels[0]), root * model.class_means[labels[0]], rtol=1e-6)
    np.testing.assert_allclose(model(images[0], 0.3), root * model.mean, rtol=1e-6)
    np.testing.assert_allclose(model(images[0], 0.3, labels[0], drop=True), root * model.mean, rtol=1e-6)
    assert model.config is config
    with pytest.raises(ValueError, match="integer label"):
        L.ClassCentred.fit(net, images, labels.astype(float))
    with pytest.raises(ValueError, match=r"0\.\.3"):
        L.ClassCentred.fit(net, images, labels + 2)
    with pytest.raises(ValueError, match="finite"):
        L.ClassCentred.fit(net, np.full_like(images, np.nan), labels)
    with pytest.raises(ValueError, match="num_classes"):
        L.ClassCentred(net, model.class_means[0], model.mean)


def test_class_centred_means_are_not_trained(key):
    """The means are constants: zero gradient through the DEM loss, unchanged by `learned.train`."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=64)
    x = rng.normal(size=(64, 3)).astype(np.float32) + labels[:, None]
    net = L.EntropyMLP(L.MLPConfig(dim_x=3, num_classes=2, width=8, depth=1), _joint().sde, key=key)
    model = L.ClassCentred.fit(net, x, labels)
    loss = L.DEMLoss(condition_dropout=0.5)
    grads = eqx.filter_grad(lambda m: loss(m, jnp.asarray(x), jnp.asarray(labels), key=key))(model)
    assert not np.any(np.asarray(grads.class_means)) and not np.any(np.asarray(grads.mean))
    result = L.train(model, x, labels, config=L.TrainConfig(steps=20, steps_per_call=10, checkpoint_every=10,
                                                            progress=False), loss=loss, key=key)
    np.testing.assert_array_equal(result.model.class_means, model.class_means)


@pytest.mark.parametrize("wrap", ["preconditioned", "class_centred"])
def test_weight_decay_leaves_the_fixed_arrays_alone(wrap, key):
    """AdamW (`TrainConfig.weight_decay > 0`) decays the inner network's weights but not the wrappers' fixed
    covariance and means (`constant_fields`), which Adam's zero gradients alone would also leave unchanged."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=128)
    x = (rng.normal(size=(128, 3)) + labels[:, None]).astype(np.float32)
    net = L.EntropyMLP(L.MLPConfig(dim_x=3, num_classes=2, width=8, depth=1), _joint().sde, key=key)
    if wrap == "preconditioned":
        model = L.Preconditioned.fit(net, x, labels, centre=True)
        fixed = ("evecs", "evals", "mean", "mean_coef")
    else:
        model = L.ClassCentred.fit(net, x, labels)
        fixed = ("class_means", "mean")
    runs = {}
    for wd in (0.0, 0.5):
        config = L.TrainConfig(steps=20, steps_per_call=10, checkpoint_every=10, weight_decay=wd, progress=False)
        runs[wd] = L.train(model, x, labels, config=config, loss=L.DEMLoss(condition_dropout=0.5), key=key).model
    for name in fixed:
        np.testing.assert_array_equal(getattr(runs[0.5], name), getattr(model, name))
    inner = [jax.tree.leaves(eqx.filter(r.network, eqx.is_inexact_array)) for r in runs.values()]
    assert any(np.max(np.abs(a - b)) > 1e-6 for a, b in zip(*inner))  # the decay did act on the weights
    assert "constant_fields" not in {f.name for f in __import__("dataclasses").fields(model)}


def test_fit_with_non_zero_mean_condition_regresses_with_an_intercept(key):
    """With conditions y of mean far from zero (y + 5), the affine fit is the least-squares regression of x on
    (1, y): its slopes, its residual (within-condition) covariance and its conditional mean match numpy's lstsq with
    an intercept column, and the fit on y + 5 gives at y + 5 the conditional mean the fit on y gives at y. Guards the
    centring of y before the regression (mutation: `centred = cond`, a regression through the origin, which the
    zero-mean y of the other tests cannot tell apart)."""
    rng = np.random.default_rng(6)
    n, dim_x, dim_y = 400, 3, 2
    y = rng.normal(size=(n, dim_y))
    x = y @ rng.normal(size=(dim_y, dim_x)) + 0.3 * rng.normal(size=(n, dim_x)) + np.array([1.0, -2.0, 0.5])
    shifted = y + 5.0
    design = np.column_stack([np.ones(n), shifted])
    beta, *_ = np.linalg.lstsq(design, x, rcond=None)  # (1 + dim_y, dim_x): intercept row, then the slopes
    residual = x - design @ beta
    net = L.EntropyMLP(L.MLPConfig(dim_x=dim_x, dim_y=dim_y, width=8, depth=1, dtype=jnp.float64), _joint().sde,
                       key=key)
    fit = L.Preconditioned.fit(net, x, shifted, centre=True)
    plain = L.Preconditioned.fit(net, x, y, centre=True)
    np.testing.assert_allclose(fit.mean_coef, beta[1:], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((fit.evecs * fit.evals) @ fit.evecs.T, residual.T @ residual / (n - 1), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(fit.conditional_mean(jnp.asarray(shifted)), design @ beta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.conditional_mean(jnp.asarray(shifted)), plain.conditional_mean(jnp.asarray(y)),
                               rtol=1e-10, atol=1e-12)


def test_class_means_refuse_a_label_out_of_range(key):
    """The class means were read by indexing, which clips (label 3 of 3 classes read as 2) and wraps round (-1 as 2):
    around a network that ignores the label, a centred preconditioner gave a number for either. It refuses them, for
    one label and in a batch, eagerly and compiled; labels in range read their class's mean."""
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 3
    data = rng.normal(size=(300, 2)) + np.array([[0.0, 0.0], [5.0, 1.0], [-3.0, 2.0]])[labels]
    sde = _joint().sde
    model = L.Preconditioned.fit(_WhitenedExact(sde, jnp.eye(2)), data, labels, centre=True)
    means = np.stack([data[labels == k].mean(0) for k in range(3)])
    np.testing.assert_allclose(model.conditional_mean(jnp.arange(3)), means, rtol=1e-5)
    x = jnp.zeros(2)
    for bad in (3, -1):
        with pytest.raises(eqx.EquinoxRuntimeError, match="unknown label: y must lie in 0..2"):
            model(x, 0.5, jnp.asarray(bad))
        with pytest.raises(eqx.EquinoxRuntimeError, match="unknown label: y must lie in 0..2"):
            jax.block_until_ready(eqx.filter_jit(model.conditional_mean)(jnp.array([0, bad, 1])))
