"""learned.ClassifierGuided: a conditional model whose conditional and unconditional outputs are consistent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned
from gaussian_oracle import VPSDE
from verify import EntropyModel

from _reference import quadrant_images

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


# ---------------------------------------------------------------------------------------------- the noisy classifier
def test_noisy_cross_entropy_curve_of_the_exact_posterior_is_the_label_entropy():
    """With the exact posterior log p(y|x_s) as the classifier, CE_s = H(Y|X_s): the two-class mixture's 1-D
    quadrature, within 4 stderr at every time."""
    from gaussian_oracle import GaussianMixture

    mixture = GaussianMixture.symmetric_two_class(np.array([1.0, -0.5, 0.5]), sigma=0.7, sde=SDE)
    exact_model = mixture.model()
    x, y = mixture.sample(4000, key=jax.random.key(8))
    times = np.array([0.02, 0.1, 0.3, 0.6])
    ce, se, accuracy = learned.noisy_cross_entropy_curve(lambda xs, s: jnp.log(exact_model.posterior(xs, s)), SDE,
                                                         x, y, times, key=jax.random.key(9))
    exact = mixture.two_class_label_entropy(times)
    assert np.all(np.abs(ce - exact) < 4 * se), (ce, se, exact)
    assert exact[0] < 0.15 and exact[-1] > 0.6 and np.all(np.diff(accuracy) < 0)  # the times span the decision
    with pytest.raises(ValueError, match=r"in \[0, T"):
        learned.noisy_cross_entropy_curve(lambda xs, s: jnp.zeros(2), SDE, x, y, np.array([1.5]), key=jax.random.key(0))
    with pytest.raises(ValueError, match="integer labels"):
        learned.noisy_cross_entropy_curve(lambda xs, s: jnp.zeros(2), SDE, x, y.astype(float), times, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\)"):
        learned.noisy_cross_entropy_curve(lambda xs, s: jnp.zeros(2), SDE, x, y + 1, times, key=jax.random.key(0))


def test_train_noisy_classifier_checkpoints_and_returns_a_finished_one_without_training(tmp_path):
    """With `checkpoint_dir` the classifier is `train`'s checkpointed run: the same call later loads it (bitwise the
    same weights, no step taken), and a call of another configuration refuses to resume it."""
    import equinox as eqx

    x, y = quadrant_images(jax.random.key(20), 64)
    cfg = learned.ClassifierConfig((1, 8, 8), 3, channels=(4, 4), hidden=8, steps=10, batch_size=8)
    folder = tmp_path / "clf"
    first = learned.train_noisy_classifier(cfg, SDE, x, y, checkpoint_dir=folder, key=jax.random.key(21))
    assert (folder / "checkpoint.eqx").exists() and (folder / "checkpoint.json").exists()
    plain = learned.train_noisy_classifier(cfg, SDE, x, y, key=jax.random.key(21))
    assert eqx.tree_equal(eqx.filter(first, eqx.is_array), eqx.filter(plain, eqx.is_array))
    written = (folder / "checkpoint.eqx").stat().st_mtime_ns
    again = learned.train_noisy_classifier(cfg, SDE, x, y, checkpoint_dir=folder, key=jax.random.key(21))
    assert eqx.tree_equal(eqx.filter(first, eqx.is_array), eqx.filter(again, eqx.is_array))
    assert (folder / "checkpoint.eqx").stat().st_mtime_ns == written  # training would have saved at its last step
    with pytest.raises(ValueError, match="another run"):
        learned.train_noisy_classifier(cfg, SDE, x, y[::-1].copy(), checkpoint_dir=folder, key=jax.random.key(21))


def test_train_noisy_classifier_is_train_with_the_noisy_loss_and_learns_the_posterior_at_small_noise():
    from learned import LogSNRTime

    x, y = quadrant_images(jax.random.key(10), 400)
    xt, yt = quadrant_images(jax.random.key(11), 300)
    cfg = learned.ClassifierConfig((1, 8, 8), 3, channels=(4, 8), hidden=16, steps=200, batch_size=32, lr=3e-3)
    times = LogSNRTime(s_min=1e-4)
    k_train = jax.random.key(12)
    classifier = learned.train_noisy_classifier(cfg, SDE, x, y, times=times, key=k_train)
    assert isinstance(classifier, learned.NoisyClassifier)
    ce, se, accuracy = learned.noisy_cross_entropy_curve(classifier, SDE, xt, yt, np.array([1e-3, 1.0]),
                                                         key=jax.random.key(13))
    # clean enough to classify at s = 1e-3; at s = T (alpha ~ 3e-4) nothing is left to classify: CE ~ log 3
    assert accuracy[0] > 0.9 and ce[0] < 0.3 * np.log(3), (ce, accuracy)
    assert abs(ce[1] - np.log(3)) < 0.1, ce
    # the wrapper is `train` with a NoisyClassifierLoss and the clean classifier's schedule
    import equinox as eqx

    k_init, k_loop = jax.random.split(k_train)
    direct = learned.train(learned.NoisyClassifier(cfg, SDE, key=k_init), x, y, loss=learned.NoisyClassifierLoss(times),
                           key=k_loop, config=learned.TrainConfig(
                               steps=200, batch_size=32, lr=3e-3, final_lr_fraction=0.0, weight_decay=cfg.weight_decay,
                               ema_decay=0.0, steps_per_call=5, checkpoint_every=5, progress=False, unroll=True))
    a, b = (jax.tree.leaves(eqx.filter(m, eqx.is_array)) for m in (direct.model, classifier))
    assert all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(a, b))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        learned.train_noisy_classifier(cfg, SDE, x, np.where(y == 2, 3, y), key=k_train)
    with pytest.raises(ValueError, match="needs integer labels"):
        learned.NoisyClassifierLoss()(classifier, jnp.asarray(x[:4]), None, key=k_train)


def test_noisy_classifier_with_a_gaussian_base_is_exact_for_gaussian_classes_and_learns_only_the_residual(key):
    """With `base` the logits are the network's plus g(s) log p_G(y|x_s): with exact moments, g = 1 and the network's
    output layer zeroed, the label part of `ClassifierGuided` is the mixture oracle's e*(x, s; y) - e*(x, s) at every
    time; `train_noisy_classifier(gaussian_base=...)` fits the base to the classifier's own images and leaves it
    untrained; a base of other images or classes, or a bad gate, is one clear error."""
    import equinox as eqx
    from gaussian_oracle import GaussianMixture

    rng = np.random.default_rng(5)
    weights, means = np.array([0.2, 0.3, 0.5]), rng.normal(size=(3, 6)) * 1.5
    mixture = GaussianMixture.low_rank(weights, means, rng.normal(size=(3, 6, 2)), eps=0.05)
    exact = mixture.model()
    gaussians = learned.ClassGaussians.from_moments(mixture.sde, weights, means.reshape(3, 1, 2, 3), mixture.covs,
                                                    rank=2, floor=1e-12, dtype=jnp.float64)
    cfg = learned.ClassifierConfig((1, 2, 3), 3, channels=(4, 4), hidden=8)
    clf = learned.NoisyClassifier(cfg, mixture.sde, base=gaussians, snr_half=None, key=key)
    silent = eqx.tree_at(lambda c: (c.network.out.weight, c.network.out.bias), clf,
                         (jnp.zeros_like(clf.network.out.weight), jnp.zeros_like(clf.network.out.bias)))
    guided = learned.ClassifierGuided(learned.ZeroNetwork(mixture.sde), silent)  # the label part alone
    for x in jax.random.normal(jax.random.key(3), (3, 6), jnp.float64) * 2.0:
        for s in (0.05, 0.3, 1.0):
            for label in range(3):
                want = np.asarray(exact(x, s, label) - exact(x, s))
                got = np.asarray(guided(x.reshape(1, 2, 3), s, label)).reshape(6)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max() + 1e-12)

    gated = learned.NoisyClassifier(cfg, mixture.sde, base=gaussians, snr_half=4.0, key=key)
    x = np.asarray(jax.random.normal(jax.random.key(4), (1, 2, 3)), np.float32)
    plain = learned.NoisyClassifier(cfg, mixture.sde, key=key)  # the same network, no base
    gate = float(learned.ClassGaussianBase(learned.ZeroNetwork(mixture.sde), gaussians, 4.0).gate(0.3))
    np.testing.assert_allclose(gated(x, 0.3), plain(x, 0.3) + gate * np.asarray(gaussians(x, 0.3)), rtol=1e-5)

    images, labels = quadrant_images(jax.random.key(6), 64)
    small = learned.ClassifierConfig((1, 8, 8), 3, channels=(4, 4), hidden=8, steps=10, batch_size=8,
                                     weight_decay=0.5)
    trained = learned.train_noisy_classifier(small, SDE, images, labels, gaussian_base=4.0, key=jax.random.key(7))
    fitted = learned.ClassGaussians.fit(SDE, images, labels, 3)
    assert trained.snr_half == 4.0
    for name in learned.ClassGaussians.constant_fields:
        np.testing.assert_array_equal(getattr(trained.base, name), getattr(fitted, name))
    with pytest.raises(ValueError, match="NoisyClassifier.base models images"):
        learned.NoisyClassifier(small, SDE, base=gaussians, key=key)
    with pytest.raises(ValueError, match="gaussian_base must be a finite SNR"):
        learned.train_noisy_classifier(small, SDE, images, labels, gaussian_base=-1.0, key=key)


def test_classifier_guided_takes_a_vector_classifier_with_num_classes(key):
    """Any classifier module with a `num_classes` attribute serves `ClassifierGuided`: with the mixture oracle's exact
    log-posterior as the classifier, the label part is e*(x, s; y) - e*(x, s) at every time, and a label outside
    [0, num_classes) is refused."""
    import equinox as eqx
    from gaussian_oracle import GaussianMixture

    class ExactPosterior(eqx.Module):
        mixture: GaussianMixture
        num_classes: int = eqx.field(static=True)

        def __call__(self, x, s, *, key=None):
            return jnp.log(self.mixture.posterior(x, s))

    rng = np.random.default_rng(6)
    mixture = GaussianMixture.low_rank(np.array([0.2, 0.3, 0.5]), rng.normal(size=(3, 4)) * 1.5,
                                       rng.normal(size=(3, 4, 2)), eps=0.05)
    exact = mixture.model()
    guided = learned.ClassifierGuided(learned.ZeroNetwork(mixture.sde), ExactPosterior(mixture, 3))
    assert guided.num_classes == 3
    for x in jax.random.normal(key, (3, 4), jnp.float64) * 2.0:
        for s in (0.05, 0.3, 1.0):
            for label in range(3):
                want = np.asarray(exact(x, s, label) - exact(x, s))
                np.testing.assert_allclose(guided(x, s, label), want, rtol=1e-6, atol=1e-9 * np.abs(want).max())
    with pytest.raises(ValueError):
        guided(x, 0.3, 3)


def test_noisy_cross_entropy_curve_stderr_is_that_of_the_rows():
    """Guards a wrong scale of `noisy_cross_entropy_curve`'s stderr (e.g. doubled): at s = 0 nothing is diffused, so it
    is exactly std(nll, ddof=1)/sqrt(n) of the exact posterior's per-row negative log-likelihoods computed here; at
    s > 0 it matches the spread of those rows diffused with noise drawn here (within sampling error)."""
    from gaussian_oracle import GaussianMixture

    mixture = GaussianMixture.symmetric_two_class(np.array([1.0, -0.5, 0.5]), sigma=0.7, sde=SDE)
    exact_model = mixture.model()

    def log_posterior(xs, s):
        return jnp.log(exact_model.posterior(xs, s))

    n = 4000
    x, y = mixture.sample(n, key=jax.random.key(30))
    x = jnp.asarray(x, jnp.float32)
    times = np.array([0.0, 0.3])
    ce, se, _ = learned.noisy_cross_entropy_curve(log_posterior, SDE, x, y, times, key=jax.random.key(31))

    def nll(s, noise):
        x_s = SDE.mu(s) * x + jnp.sqrt(SDE.var(s)) * noise
        log_p = jax.vmap(lambda a: jax.nn.log_softmax(log_posterior(a, s)))(x_s)
        return -np.asarray(jnp.take_along_axis(log_p, jnp.asarray(y)[:, None], axis=1)[:, 0], np.float64)

    clean = nll(jnp.float32(0.0), jnp.zeros_like(x))
    np.testing.assert_allclose(ce[0], clean.mean(), rtol=1e-5)
    np.testing.assert_allclose(se[0], clean.std(ddof=1) / np.sqrt(n), rtol=1e-5)
    noisy = nll(jnp.float32(0.3), jax.random.normal(jax.random.key(32), x.shape, x.dtype))
    ratio = se[1] / (noisy.std(ddof=1) / np.sqrt(n))
    assert 0.85 < ratio < 1.15, (se[1], ratio)
