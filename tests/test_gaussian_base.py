"""learned.ClassGaussians / ClassGaussianBase: exact for Gaussian classes against the mixture oracle, the fit's
moments, the gate, the null label, constants untrained, one clear error per bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import learned as L
from gaussian_oracle import VPSDE, GaussianMixture
from verify.protocol import EntropyModel


class _Zero(eqx.Module):
    """An inner network that outputs zero (so the wrapper is its base alone)."""

    sde: VPSDE

    def __call__(self, x, s, y=None, **kwargs):
        return jnp.zeros_like(jnp.asarray(x))


def _low_rank_mixture():
    """Three classes in 6 dimensions, each rank 2 plus 0.05 I (so rank-2 `ClassGaussians` are exact): the oracle,
    and its weights, means and covariances."""
    rng = np.random.default_rng(5)
    factors = rng.normal(size=(3, 6, 2))
    means = rng.normal(size=(3, 6)) * 1.5
    weights = np.array([0.2, 0.3, 0.5])
    mixture = GaussianMixture.low_rank(weights, means, factors, eps=0.05)
    return mixture, weights, means, mixture.covs


@pytest.mark.parametrize("s", [1e-4, 0.05, 0.5, 1.0])
@pytest.mark.parametrize("rank", [2, None])
def test_base_is_the_exact_mixture_e_star(s, rank, key):
    """With exact moments and g = 1, the base alone is the oracle's e*(x, s; y) for every label, its posterior
    mixture is the unconditional e*(x, s), and the logits give the oracle's posterior p(k|x_s); rank 2 (low rank plus
    the isotropic rest) is as exact as the full eigen-decomposition."""
    mixture, weights, means, covs = _low_rank_mixture()
    gaussians = L.ClassGaussians.from_moments(mixture.sde, weights, means, covs, rank=rank, floor=1e-12,
                                              dtype=jnp.float64)
    model = L.ClassGaussianBase(_Zero(mixture.sde), gaussians, snr_half=None)
    exact = mixture.model()
    for x in jax.random.normal(key, (4, 6), jnp.float64) * 2.0:
        for label in range(3):
            np.testing.assert_allclose(model(x, s, label), exact(x, s, label), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(model(x, s), exact(x, s), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(jax.nn.softmax(gaussians(x, s)), mixture.posterior(x, s), rtol=1e-9, atol=1e-13)
    assert isinstance(model, EntropyModel)


def test_fit_moments_shrinkage_and_prior():
    """fit: label frequencies, class means, and with shrinkage 0 and full rank each class's sample covariance
    (np.cov); with shrinkage 1 every class has the pooled within-class covariance."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=400)
    x = rng.normal(size=(400, 1, 2, 2)) * (1 + labels[:, None, None, None]) + labels[:, None, None, None]
    sde = VPSDE()

    def covariances(g):
        v = np.asarray(g.evecs)
        return np.einsum("kdr,kr,ker->kde", v, np.asarray(g.evals), v)

    own = L.ClassGaussians.fit(sde, x, labels, 3, rank=None, shrinkage=0.0, floor=1e-12, dtype=jnp.float64)
    assert own.shrinkage == 0.0
    flat = x.reshape(400, 4)
    for k in range(3):
        np.testing.assert_allclose(own.means[k], flat[labels == k].mean(0), rtol=1e-12)
        np.testing.assert_allclose(covariances(own)[k], np.cov(flat[labels == k], rowvar=False), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.exp(own.log_prior), np.bincount(labels) / 400, rtol=1e-12)
    pooled = L.ClassGaussians.fit(sde, x, labels, 3, rank=None, shrinkage=1.0, floor=1e-12, dtype=jnp.float64)
    counts = np.bincount(labels)
    expected = sum((counts[k] - 1) * np.cov(flat[labels == k], rowvar=False) for k in range(3)) / (400 - 3)
    for k in range(3):
        np.testing.assert_allclose(covariances(pooled)[k], expected, rtol=1e-9, atol=1e-12)
    low = L.ClassGaussians.fit(sde, x, labels, 3, rank=1, shrinkage=0.0, floor=1e-12, dtype=jnp.float64)
    full_evals = np.linalg.eigvalsh(np.cov(flat[labels == 0], rowvar=False))
    np.testing.assert_allclose(low.evals[0, 0], full_evals[-1], rtol=1e-9)
    np.testing.assert_allclose(low.rest[0], full_evals[:-1].mean(), rtol=1e-9)  # the trace is kept


def test_gate_null_label_and_untrained_network(key):
    """g = 1/2 where SNR = snr_half, ~0 at small s, ~1 at T; y=None and drop=True give the posterior mixture; an
    untrained U-Net's output is its own plus the gated base (the U-Net's output convolution starts at zero)."""
    mixture, weights, means, covs = _low_rank_mixture()
    gaussians = L.ClassGaussians.from_moments(mixture.sde, weights, means, covs, rank=2, dtype=jnp.float64)
    model = L.ClassGaussianBase(_Zero(mixture.sde), gaussians, snr_half=4.0)
    sde = mixture.sde
    s_half = scipy.optimize.brentq(lambda t: float(sde.log_snr(t)) - np.log(4.0), 1e-3, sde.T, xtol=1e-12)
    np.testing.assert_allclose(model.gate(s_half), 0.5, atol=1e-6)
    assert float(model.gate(1e-4)) < 1e-3 and float(model.gate(sde.T)) > 0.99
    x = jax.random.normal(key, (6,), jnp.float64)
    gate = float(model.gate(0.3))
    np.testing.assert_allclose(model(x, 0.3), gate * mixture.model()(x, 0.3), rtol=1e-5)
    np.testing.assert_allclose(model(x, 0.3, 1, drop=True), model(x, 0.3), rtol=1e-12)
    np.testing.assert_allclose(model(x, 0.3, 1, drop=False), gate * mixture.model()(x, 0.3, 1), rtol=1e-5)

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    images = rng.normal(size=(60, 1, 4, 4)) + labels[:, None, None, None]
    config = L.UNetConfig.digits_tiny(num_classes=3, channels=8, embed_dim=16, num_groups=4, image_shape=(1, 4, 4))
    net = L.EntropyUNet(config, sde, key=key)
    wrapped = L.ClassGaussianBase.fit(net, images, labels, rank=4)
    out = wrapped(images[0], 0.4, labels[0])
    np.testing.assert_allclose(out, net(images[0], 0.4, labels[0]) + wrapped.base(images[0], 0.4, labels[0]),
                               rtol=1e-6)
    assert out.shape == (1, 4, 4) and wrapped.config is config


def test_constants_are_not_trained(key):
    """The Gaussian model's arrays are constants: zero gradient through the DEM loss, and AdamW's decay leaves them
    alone (`constant_fields` of the nested `ClassGaussians`) while it acts on the network's weights."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=128)
    x = (rng.normal(size=(128, 3)) + labels[:, None]).astype(np.float32)
    net = L.EntropyMLP(L.MLPConfig(dim_x=3, num_classes=2, width=8, depth=1), VPSDE(), key=key)
    model = L.ClassGaussianBase.fit(net, x, labels, rank=2)
    loss = L.DEMLoss(condition_dropout=0.5)
    grads = eqx.filter_grad(lambda m: loss(m, jnp.asarray(x), jnp.asarray(labels), key=key))(model)
    for leaf in jax.tree.leaves(grads.gaussians):
        assert not np.any(np.asarray(leaf))
    config = L.TrainConfig(steps=20, steps_per_call=10, checkpoint_every=10, weight_decay=0.5, progress=False)
    trained = L.train(model, x, labels, config=config, loss=loss, key=key).model
    for name in L.ClassGaussians.constant_fields:
        np.testing.assert_array_equal(getattr(trained.gaussians, name), getattr(model.gaussians, name))
    before = jax.tree.leaves(eqx.filter(model.network, eqx.is_inexact_array))
    after = jax.tree.leaves(eqx.filter(trained.network, eqx.is_inexact_array))
    assert any(np.max(np.abs(a - b)) > 1e-6 for a, b in zip(before, after))


def test_bad_input(key):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    x = rng.normal(size=(60, 1, 4, 4))
    sde = VPSDE()
    with pytest.raises(ValueError, match="at least two training images"):
        L.ClassGaussians.fit(sde, x, np.where(labels == 2, 0, labels), 3)
    with pytest.raises(ValueError, match="lie in 0..2"):
        L.ClassGaussians.fit(sde, x, labels + 1, 3)
    with pytest.raises(ValueError, match="finite"):
        L.ClassGaussians.fit(sde, np.full_like(x, np.nan), labels, 3)
    with pytest.raises(ValueError, match="integer label"):
        L.ClassGaussians.fit(sde, x, labels.astype(float), 3)
    with pytest.raises(ValueError, match="rank must be"):
        L.ClassGaussians.fit(sde, x, labels, 3, rank=17)
    with pytest.raises(ValueError, match="shrinkage"):
        L.ClassGaussians.fit(sde, x, labels, 3, shrinkage=1.5)
    gaussians = L.ClassGaussians.fit(sde, x, labels, 3, rank=4)
    with pytest.raises(ValueError, match=r"shape \(1, 4, 4\)"):
        gaussians(x[0, 0], 0.5)
    config = L.UNetConfig.digits_tiny(num_classes=4, channels=8, embed_dim=16, num_groups=4, image_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="4 classes"):
        L.ClassGaussianBase(L.EntropyUNet(config, sde, key=key), gaussians)
    with pytest.raises(ValueError, match="snr_half"):
        L.ClassGaussianBase(_Zero(sde), gaussians, snr_half=-1.0)
    with pytest.raises(ValueError, match="integer label"):
        L.ClassGaussianBase(_Zero(sde), gaussians)(x[0], 0.5, 1.0)


def test_parameter_count_leaves_the_class_model_out(key):
    """`learned.parameter_count` counts the network's weights, not the Gaussian class model's fixed arrays."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    config = L.UNetConfig.digits_tiny(num_classes=3, channels=8, embed_dim=16, num_groups=4, image_shape=(1, 4, 4))
    net = L.EntropyUNet(config, VPSDE(), key=key)
    wrapped = L.ClassGaussianBase.fit(net, rng.normal(size=(60, 1, 4, 4)), labels, rank=4)
    assert L.parameter_count(wrapped) == L.parameter_count(net) > 0


@pytest.mark.parametrize("s", [0.05, 0.5])
def test_low_rank_logits_with_unequal_rests_against_scipy(s):
    """rank < d with classes whose discarded eigenvalues (the isotropic rest rho_k) differ: log_softmax of the logits
    is the posterior of the classes' truncated covariances U diag(lambda) U^T + rho (I - U U^T), diffused to s
    (mean sqrt(alpha) m, covariance alpha C + (1 - alpha) I), by scipy's multivariate_normal.logpdf plus the log
    prior. Guards the (d - r) log q term of the log-determinant (mutation: (d - r - 1) log q, which cancels in the
    softmax when every class has the same rest, as in the other tests)."""
    import scipy.special
    import scipy.stats

    rng = np.random.default_rng(11)
    d, rank = 5, 2
    weights = np.array([0.25, 0.35, 0.4])
    means = rng.normal(size=(3, d))
    roots = rng.normal(size=(3, d, d)) * np.array([0.3, 1.0, 2.0])[:, None, None]  # very different spectra
    covs = roots @ np.swapaxes(roots, 1, 2) + 0.1 * np.eye(d)
    sde = VPSDE()
    gaussians = L.ClassGaussians.from_moments(sde, weights, means, covs, rank=rank, floor=1e-12, dtype=jnp.float64)
    truncated, rests = [], []
    for cov in covs:
        evals, evecs = np.linalg.eigh(cov)  # ascending: the top `rank` kept, the others replaced by their mean
        top, rest = evecs[:, -rank:], evals[:-rank].mean()
        truncated.append(top @ np.diag(evals[-rank:]) @ top.T + rest * (np.eye(d) - top @ top.T))
        rests.append(rest)
    assert max(rests) > 3 * min(rests)  # the rests differ, so a wrong log-det term does not cancel
    alpha = float(np.exp(-(sde.beta_min * s + 0.5 * (sde.beta_max - sde.beta_min) * s**2 / sde.T)))
    for x in rng.normal(size=(4, d)) * 2.0:
        log_joint = np.array([np.log(w) + scipy.stats.multivariate_normal.logpdf(
            x, np.sqrt(alpha) * m, alpha * c + (1 - alpha) * np.eye(d)) for w, m, c in zip(weights, means, truncated)])
        expected = log_joint - scipy.special.logsumexp(log_joint)
        logits = gaussians(jnp.asarray(x), s)
        assert logits.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(jax.nn.log_softmax(logits)), expected, rtol=1e-9, atol=1e-9)
