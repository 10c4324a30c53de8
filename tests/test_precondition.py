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
