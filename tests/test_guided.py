"""learned.ClassifierGuided: a conditional model whose conditional and unconditional outputs are consistent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned
from gaussian_oracle import VPSDE
from verify import EntropyModel

SDE = VPSDE(0.1, 16.0, 1.0)


@pytest.fixture(scope="module")
def model():
    k_u, k_c = jax.random.split(jax.random.key(0))
    unet = learned.UNetConfig.digits_tiny(num_classes=None, channels=8, embed_dim=16, num_groups=2)
    classifier = learned.ClassifierConfig((1, 8, 8), 4, channels=(4, 8), hidden=16)
    m = learned.ClassifierGuided(learned.EntropyUNet(unet, SDE, key=k_u), learned.NoisyClassifier(classifier, SDE, key=k_c))
    # random (not zero) output layers, so the identities are tested on a non-trivial network
    leaves, tree = jax.tree.flatten(m)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [leaf + 0.3 * jax.random.normal(k, leaf.shape, leaf.dtype) if isinstance(leaf, jax.Array) and
              jnp.issubdtype(leaf.dtype, jnp.floating) else leaf for leaf, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, leaves)


@pytest.mark.parametrize("s", [0.01, 0.3, 0.9])
def test_unconditional_is_the_posterior_average_of_the_conditionals(model, s):
    """sum_y p(y|x) e(x, s; y) = e(x, s): the exact-score identity, here by construction."""
    assert isinstance(model, EntropyModel)
    x = jax.random.uniform(jax.random.key(2), (1, 8, 8))
    e_u = model(x, s)
    e_c = jnp.stack([model(x, s, k) for k in range(4)])
    post = jax.nn.softmax(model.classifier(x, s))
    np.testing.assert_allclose(np.asarray(jnp.einsum("k,kchw->chw", post, e_c)), np.asarray(e_u), atol=1e-5)
    assert float(jnp.max(jnp.abs(e_c - e_u))) > 1e-3  # the label does change the output
    np.testing.assert_allclose(np.asarray(model(x, s, 2, drop=True)), np.asarray(e_u))  # drop: the null label


def test_label_part_is_the_classifier_gradient_and_bad_labels_refused(model):
    x = jax.random.uniform(jax.random.key(3), (1, 8, 8))
    g = jax.grad(lambda z: jax.nn.log_softmax(model.classifier(z, 0.2))[1])(x)
    np.testing.assert_allclose(np.asarray(model(x, 0.2, 1) - model(x, 0.2)), np.asarray(g), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown label 4"):
        model(x, 0.2, 4)
    with pytest.raises(ValueError, match="must lie in"):
        model(x, 1.5, 0)


def test_trains_with_the_dem_loss(model):
    """One jitted gradient step of the DEM loss with label dropout is finite and moves both parts."""
    import equinox as eqx

    x = jax.random.uniform(jax.random.key(4), (16, 1, 8, 8))
    y = jnp.arange(16) % 4
    loss = learned.DEMLoss(condition_dropout=0.2)
    grads = eqx.filter_jit(eqx.filter_grad(lambda m: loss(m, x, y, key=jax.random.key(5))))(model)
    norms = [float(jnp.linalg.norm(jnp.ravel(g))) for g in jax.tree.leaves(eqx.filter(grads, eqx.is_array))]
    assert all(np.isfinite(norms))
    g_u = jax.tree.leaves(eqx.filter(grads.unconditional, eqx.is_array))
    g_c = jax.tree.leaves(eqx.filter(grads.classifier, eqx.is_array))
    assert max(float(jnp.abs(g).max()) for g in g_u) > 0 and max(float(jnp.abs(g).max()) for g in g_c) > 0


def test_guided_loss_is_dem_plus_noisy_cross_entropy(model):
    import optax

    x = jax.random.uniform(jax.random.key(6), (8, 1, 8, 8))
    y = jnp.arange(8) % 4
    key = jax.random.key(7)
    dem = learned.DEMLoss(condition_dropout=0.2)
    k_dem, k_ce = jax.random.split(key)
    # the cross-entropy term, written independently: the same times and noise, optax's cross-entropy
    k_s, k_n = jax.random.split(k_ce)
    s = jax.random.uniform(k_s, (8,), x.dtype, 1e-5, 1.0)
    noise = jax.random.normal(k_n, x.shape, x.dtype)
    x_s = SDE.mu(s)[:, None, None, None] * x + jnp.sqrt(SDE.var(s))[:, None, None, None] * noise
    ce = optax.softmax_cross_entropy_with_integer_labels(jax.vmap(model.classifier)(x_s, s), y).mean()
    expected = dem(model, x, y, key=k_dem) + 0.5 * ce
    got = learned.GuidedLoss(dem, cross_entropy=0.5)(model, x, y, key=key)
    np.testing.assert_allclose(float(got), float(expected), rtol=1e-6)
    assert float(learned.GuidedLoss(dem, 0.0)(model, x, y, key=key)) == pytest.approx(float(dem(model, x, y, key=k_dem)))
