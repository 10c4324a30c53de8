"""Autoencoders (appendix E): encoders, the DAE and its split loss (Eq. 70), the VAE, the latent-MI pipeline, the CLI.

Exact checks: the split loss at tau = 0 / tau = T equals the single-latent DAE loss bit for bit; a DAE with a frozen
linear encoder and the oracle's exact e* as decoder reproduces the joint Gaussian's I(X;Z) and S^{X|Z} within 4
stderr; the KL and the Gaussian negative log-likelihood against scipy; the latent-MI pipeline against a Gaussian
mixture's exact I(Z;Y) (slow); bad inputs one clear error each.
"""

import copy
import dataclasses
import functools
import hashlib
import json
import math
import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import learned
from gaussian_oracle import VPSDE, GaussianMixture, JointGaussian, PiecewiseConstant
from verify import ImportanceSampler, mutual_information_minde, neural_entropy
from verify.cli import main
from verify.experiments import (
    POSTERIOR_TRAIN,
    LatentInformationConfig,
    crossfit_halves,
    fit_latent_model,
    fit_latent_posterior,
    latent_information,
    merge_autoencoder_results,
    split_keys,
)

from _processes import Step, separability

SDE = VPSDE(beta_min=0.1, beta_max=16.0, T=1.0)


class _Tanh(learned.AbstractEncoder):
    """A small nonlinear encoder of 6-vectors (test double)."""

    weight: jax.Array
    latent: int = eqx.field(static=True)

    @property
    def input_shape(self):
        return (6,)

    @property
    def dim_latent(self):
        return self.latent

    def __call__(self, x):
        h = self.weight @ x
        return h, 0.3 * jnp.tanh(h) - 0.5


class _WrongShape(learned.AbstractEncoder):
    """An encoder whose mean has one coordinate too many (test double)."""

    @property
    def input_shape(self):
        return (6,)

    @property
    def dim_latent(self):
        return 3

    def __call__(self, x):
        return jnp.zeros(4), jnp.zeros(3)


def _encoder(seed, latent=3):
    w = np.random.default_rng(seed).normal(size=(latent, 6)) / math.sqrt(6)
    return _Tanh(jnp.asarray(w, jnp.float32), latent)


def _decoder(dim_y=3, seed=0):
    """An `EntropyMLP` decoder of 6-vectors with a latent condition, its output layer randomised so that it depends
    on the latent from the start (untrained networks output zero)."""
    k_init, k_out = jax.random.split(jax.random.key(seed))
    mlp = learned.EntropyMLP(learned.MLPConfig(dim_x=6, dim_y=dim_y, width=32, depth=1), SDE, key=k_init)
    return eqx.tree_at(lambda m: m.output.weight, mlp, 0.3 * jax.random.normal(k_out, mlp.output.weight.shape))


# ---------------------------------------------------------------------------------------------- split loss
@pytest.mark.parametrize("noisy", [False, True])
def test_split_loss_at_the_ends_is_the_single_dae_loss(noisy, key):
    gamma = 0.7
    sem, per, dec = _encoder(1), _encoder(2), _decoder()
    x = jax.random.normal(jax.random.key(3), (32, 6), jnp.float32)
    loss = eqx.filter_jit(learned.AutoencoderLoss(learned.DEMLoss(), gamma=gamma))
    at_zero = loss(learned.SplitAutoencoder(sem, per, dec, 0.0, noisy_semantic=noisy), x, None, key=key)
    at_end = loss(learned.SplitAutoencoder(sem, per, dec, SDE.T, noisy_semantic=noisy), x, None, key=key)
    single_sem = loss(learned.DiffusionAutoencoder(sem, dec), x, None, key=key)
    single_per = loss(learned.DiffusionAutoencoder(per, dec), x, None, key=key)
    assert float(at_zero) == pytest.approx(float(single_sem), rel=1e-6, abs=0)
    assert float(at_end) == pytest.approx(float(single_per), rel=1e-6, abs=0)
    # the two single DAEs differ, so the equalities are not an accident of a latent-blind decoder
    assert abs(float(single_sem) - float(single_per)) > 1e-3 * abs(float(single_sem))
    middle = loss(learned.SplitAutoencoder(sem, per, dec, 0.3, noisy_semantic=noisy), x, None, key=key)
    assert np.isfinite(float(middle)) and float(middle) not in (float(single_sem), float(single_per))


def test_split_model_routes_the_latent_by_time():
    sem, per, dec = _encoder(1), _encoder(2), _decoder()
    model = learned.SplitAutoencoder(sem, per, dec, 0.25)
    x = jnp.linspace(-1, 1, 6)
    z_sem, z_per = jnp.arange(3.0), -jnp.arange(3.0)
    y = jnp.concatenate([z_sem, z_per])
    times = jnp.array([0.1, 0.2499, 0.25, 0.9])
    routed = eqx.filter_jit(jax.vmap(lambda m, s: m(x, s, y), in_axes=(None, 0)))(model, times)
    direct = eqx.filter_jit(jax.vmap(lambda d, s, z: d(x, s, z), in_axes=(None, 0, 0)))(
        dec, times, jnp.stack([z_per, z_per, z_sem, z_sem]))
    np.testing.assert_array_equal(routed, direct)
    np.testing.assert_array_equal(model(x, 0.5, None), dec(x, 0.5, None))
    assert float(model.tau) == pytest.approx(0.25)


def test_dae_protocol_and_unet_decoder(key):
    """`dae(x, s, z)` is the U-Net's latent-conditioned output; encode gives the mean, or draws with a key."""
    unet = learned.EntropyUNet(learned.UNetConfig(image_shape=(1, 4, 4), channels=8, channel_mult=(1,),
                                                  num_res_blocks=1, attention_resolutions=(), embed_dim=16,
                                                  num_groups=4, dim_latent=2), SDE, key=key)
    params, static = eqx.partition(unet, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)  # randomised: an untrained U-Net's zero branches ignore the latent
    keys = jax.random.split(key, len(leaves))
    unet = eqx.combine(jax.tree.unflatten(tree, [a + 0.2 * jax.random.normal(k, a.shape, a.dtype)
                                                 for a, k in zip(leaves, keys)]), static)
    enc = learned.ConvEncoder(learned.EncoderConfig((1, 4, 4), 2, channels=(4,), hidden=8), key=key)
    dae = learned.DiffusionAutoencoder(enc, learned.UNetDecoder(unet))
    x = jax.random.uniform(key, (1, 4, 4), jnp.float32)
    z = jnp.array([0.5, -1.0], jnp.float32)

    @eqx.filter_jit
    def outputs(dae, unet, x, z):
        return dae(x, 0.3, z), unet(x, 0.3, None, latent=z), dae(x, 0.3, None)

    through_dae, direct, null = outputs(dae, unet, x, z)
    np.testing.assert_array_equal(through_dae, direct)
    assert not np.allclose(through_dae, null)
    mu, log_sigma = enc(x)
    np.testing.assert_array_equal(dae.encode(x), mu)
    eta = jax.random.normal(key, (2,), jnp.float32)
    np.testing.assert_allclose(dae.encode(x, key=key), mu + jnp.exp(log_sigma) * eta, rtol=1e-6)
    np.testing.assert_allclose(log_sigma, -2.0, atol=1e-6)  # an untrained encoder's posterior: init_log_sigma


# ---------------------------------------------------------------------------------------------- encoder, VAE
def test_kl_and_gaussian_likelihood_against_scipy(key):
    enc = _encoder(4)
    x = jnp.linspace(-1.0, 2.0, 6)
    mu, log_sigma = (np.asarray(a, np.float64) for a in enc(x))
    sigma = np.exp(log_sigma)
    # KL(q || p) = -H(q) + cross-entropy(q, p), both from scipy's closed forms
    cross = np.sum(0.5 * np.log(2 * np.pi) + 0.5 * (mu**2 + sigma**2))
    kl = cross - np.sum(scipy.stats.norm(mu, sigma).entropy())
    assert float(enc.kl(x)) == pytest.approx(kl, rel=1e-5)
    assert float(jnp.sum(enc.kl_per_coordinate(x))) == pytest.approx(kl, rel=1e-5)
    vae = learned.VAE(enc, sigma_dec=0.3, key=key)
    z = jnp.array([0.2, -0.4, 1.0])
    nll = -np.sum(scipy.stats.norm(np.asarray(vae.decode(z), np.float64), 0.3).logpdf(np.asarray(x)))
    assert float(vae.negative_log_likelihood(x, z)) == pytest.approx(nll, rel=1e-5)


def test_reparameterised_draws_have_the_encoder_moments(key):
    enc = _encoder(5)
    x = jnp.linspace(-1.0, 1.0, 6)
    draws = np.asarray(jax.vmap(lambda k: enc.sample(x, key=k))(jax.random.split(key, 4000)), np.float64)
    mu, log_sigma = (np.asarray(a, np.float64) for a in enc(x))
    sigma = np.exp(log_sigma)
    se = sigma / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - mu) < 4 * se)
    assert np.all(np.abs(draws.std(axis=0) / sigma - 1) < 4 / math.sqrt(2 * len(draws)))
    grad = jax.grad(lambda e: jnp.sum(e.sample(x, key=key)), allow_int=True)(enc)
    assert float(jnp.abs(grad.weight).sum()) > 0  # gradients reach the encoder through the draw


def test_untrained_conv_encoder_means_differ_between_images(key):
    """The means of an untrained `ConvEncoder` spread across the digits by more than its initial posterior width.

    Without its normalisations the spread was 2e-4 per coordinate (each layer shrank it about three-fold) against a
    width of 1, a latent no decoder can tell from its noise: the DAE latents then carried no label at any tau."""
    digits = learned.load_digits()
    x = jnp.asarray(digits.test_x[:200])
    for k, init in zip(jax.random.split(key, 3), (-2.0, -3.0, 0.0)):
        enc = learned.ConvEncoder(learned.EncoderConfig((1, 8, 8), 20, channels=(16, 32), hidden=64,
                                                        init_log_sigma=init), key=k)
        mu, log_sigma = jax.vmap(enc)(x)
        assert float(jnp.mean(jnp.std(mu, axis=0))) > 0.1
        np.testing.assert_allclose(log_sigma, init, atol=1e-5)
    with pytest.raises(ValueError, match="init_log_sigma must be a finite number above min_log_sigma"):
        learned.EncoderConfig((1, 8, 8), 20, min_log_sigma=-3.0, init_log_sigma=-3.0)


def test_vae_trains_through_the_one_loop(key):
    x = np.random.default_rng(0).uniform(size=(64, 1, 4, 4)).astype(np.float32)
    enc = learned.ConvEncoder(learned.EncoderConfig((1, 4, 4), 2, channels=(4,), hidden=8), key=key)
    vae = learned.VAE(enc, sigma_dec=0.2, hidden=16, depth=1, key=key)
    config = learned.TrainConfig(steps=60, batch_size=32, lr=3e-3, steps_per_call=30, checkpoint_every=30,
                                 ema_decay=0.0, progress=False)
    result = learned.train(vae, x, None, config=config, loss=learned.VAELoss(gamma=1.0), key=key)
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])


# ---------------------------------------------------------------------------------------------- oracle tie-in
def test_exact_decoder_through_the_dae_reproduces_the_joint_gaussian(key):
    """x ~ N(0, Sigma_X), z = W x + sigma eta: the DAE with the frozen linear encoder and the exact e* of
    `JointGaussian(Sigma_X, A=W, sigma_eps=sigma)` as decoder gives I(X;Z) and S^{X|Z} within 4 stderr."""
    rng = np.random.default_rng(7)
    dim_x, dim_z, sigma = 5, 3, 0.7
    h = rng.normal(size=(dim_x, dim_x)) / math.sqrt(dim_x)
    sigma_x = h @ h.T + 0.3 * np.eye(dim_x)
    w = rng.normal(size=(dim_z, dim_x)) / math.sqrt(dim_x)
    joint = JointGaussian(sigma_x, w, sigma, sde=SDE)
    dae = learned.DiffusionAutoencoder(learned.LinearEncoder(w, sigma), joint.model())
    k_x, k_z, k_mi, k_s = jax.random.split(key, 4)
    n = 4000
    x = jax.random.normal(k_x, (n, dim_x)) @ jnp.asarray(np.linalg.cholesky(sigma_x)).T
    z = learned.encode_batch(dae, np.asarray(x), key=k_z).astype(np.float64)
    residual = z - np.asarray(x) @ w.T
    assert abs(residual.std() / sigma - 1) < 0.05  # the encoder draws z = W x + sigma eta
    times = ImportanceSampler(PiecewiseConstant.log_uniform(SDE.T), n_per_sample=4)
    mi = mutual_information_minde(dae, x, jnp.asarray(z), times=times, key=k_mi)
    # MINDE with exact scores integrates to I(X;Z) - I(X_T;Z); at beta_max = 16 the tail is 4e-4 nats, 1 % of a stderr
    assert mi.within(joint.mutual_information_curve(SDE.T), 4.0), (mi, joint.mutual_information())
    assert mi.within(joint.mutual_information(), 4.0) and mi.stderr < 0.05 * joint.mutual_information()
    s_xz = neural_entropy(dae, x, y=jnp.asarray(z), times=times, key=k_s)
    assert s_xz.within(joint.conditional_total_entropy_curve(SDE.T), 4.0), s_xz


@pytest.mark.slow
def test_learned_decoder_through_the_dae_reproduces_the_joint_gaussian(key):
    """The same DAE with a learned decoder (a preconditioned `EntropyMLP` with a latent condition and latent dropout,
    trained by `learned.train` on the AutoencoderLoss; the encoder is frozen) gives I(X;Z) within 2 %."""
    rng = np.random.default_rng(7)
    dim_x, dim_z, sigma = 5, 3, 0.7
    h = rng.normal(size=(dim_x, dim_x)) / math.sqrt(dim_x)
    sigma_x = h @ h.T + 0.3 * np.eye(dim_x)
    w = rng.normal(size=(dim_z, dim_x)) / math.sqrt(dim_x)
    joint = JointGaussian(sigma_x, w, sigma, sde=SDE)
    k_x, k_init, k_train, k_z, k_mi = jax.random.split(key, 5)
    chol = np.linalg.cholesky(sigma_x)
    x = (np.asarray(jax.random.normal(k_x, (20_000, dim_x))) @ chol.T).astype(np.float32)
    encoder = learned.LinearEncoder(w, sigma)
    net = learned.EntropyMLP(learned.MLPConfig(dim_x=dim_x, dim_y=dim_z, width=128, depth=2), SDE, key=k_init)
    dae = learned.DiffusionAutoencoder(encoder, learned.Preconditioned.fit(net, x))
    loss = learned.AutoencoderLoss(learned.DEMLoss(learned.Likelihood(SDE), learned.LogSNRTime(),
                                                   condition_dropout=0.2), gamma=0.0)
    config = learned.TrainConfig(steps=6000, batch_size=512, lr=2e-3, warmup_steps=200, final_lr_fraction=0.02,
                                 steps_per_call=200, checkpoint_every=200, ema_decay=0.999, progress=False)
    trained = learned.train(dae, x, None, config=config, loss=loss, key=k_train).ema_model
    x_eval = x[:4000]
    z = learned.encode_batch(trained, x_eval, key=k_z)
    times = ImportanceSampler(PiecewiseConstant.log_uniform(SDE.T), n_per_sample=4)
    mi = mutual_information_minde(trained, jnp.asarray(x_eval), jnp.asarray(z), times=times, key=k_mi)
    exact = joint.mutual_information_curve(SDE.T)
    assert abs(mi.value - exact) < 0.02 * exact + 4 * mi.stderr, (mi, exact)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_one_clear_error_each(key):
    sem, dec = _encoder(1), _decoder(dim_y=3)
    with pytest.raises(ValueError, match="latent size mismatch"):
        learned.DiffusionAutoencoder(_encoder(1, latent=4), dec)
    with pytest.raises(ValueError, match="latent size mismatch"):
        learned.SplitAutoencoder(sem, _encoder(2, latent=4), dec, 0.1)
    with pytest.raises(ValueError, match="latent size mismatch"):
        learned.SplitAutoencoder(_encoder(1, latent=4), _encoder(2, latent=4), dec, 0.1)
    for tau in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"tau must be a number in \[0, T\]"):
            learned.SplitAutoencoder(sem, _encoder(2), dec, tau)
    with pytest.raises(ValueError, match=r"must return \(mu, log_sigma\) of shape \(3,\)"):
        learned.DiffusionAutoencoder(_WrongShape(), dec)
    dae = learned.DiffusionAutoencoder(sem, dec)
    x = np.ones((4, 6), np.float32)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        learned.encode_batch(dae, x)
    with pytest.raises(ValueError, match="NaN"):
        learned.train(dae, x, None, config=learned.TrainConfig(steps=1, batch_size=2, steps_per_call=1,
                                                               checkpoint_every=1, progress=False),
                      loss=learned.AutoencoderLoss(), key=key)
    with pytest.raises(ValueError, match="trains without labels"):
        learned.AutoencoderLoss()(dae, jnp.ones((4, 6)), jnp.zeros(4, int), key=key)
    with pytest.raises(ValueError, match=r"y \(the latent\) must have shape \(3,\)"):
        dae(jnp.ones(6), 0.5, jnp.ones(2))


def test_experiment_refuses_a_tau_below_the_training_times():
    from verify.experiments import AutoencoderExperiment

    unet = learned.UNetConfig.digits_tiny(channels=8, embed_dim=16, num_groups=4, num_classes=None)
    train = learned.TrainConfig(steps=1, batch_size=2, steps_per_call=1, checkpoint_every=1, progress=False)
    with pytest.raises(ValueError, match="the perceptual latent, used for s < tau, would never be trained"):
        AutoencoderExperiment(unet=unet, train=train, vae_train=train, taus=(0.0, 1e-5))
    with pytest.raises(ValueError, match="weighting must be one of"):
        AutoencoderExperiment(unet=unet, train=train, vae_train=train, weighting="uniform")
    experiment = AutoencoderExperiment(unet=unet, train=train, vae_train=train, taus=(0.0, 1e-5),
                                       time_sampler=learned.UniformTime())
    assert experiment.gamma == 0.01 and experiment.weighting == "likelihood"
    with pytest.raises(ValueError, match="must not repeat a split time"):
        AutoencoderExperiment(unet=unet, train=train, vae_train=train, taus=(0.1, 0.2, 0.1))
    with pytest.raises(ValueError, match="nothing to run"):
        AutoencoderExperiment(unet=unet, train=train, vae_train=train, taus=(), comparison=False)
    for name in ("comparison", "save_latents"):
        with pytest.raises(ValueError, match=f"{name} must be True or False"):
            AutoencoderExperiment(unet=unet, train=train, vae_train=train, **{name: 1})
    assert AutoencoderExperiment(unet=unet, train=train, vae_train=train, taus=()).comparison is True


# ---------------------------------------------------------------------------------------------- latent MI
def _mixture(dim=20, k=10, scale=0.45, seed=0):
    rng = np.random.default_rng(seed)
    means = scale * rng.normal(size=(k, dim))
    return GaussianMixture(np.full(k, 1.0 / k), means, np.stack([np.eye(dim)] * k), sde=SDE)


@pytest.mark.slow
def test_latent_information_recovers_a_gaussian_mixture(key):
    """The latent-MI pipeline (label-conditioned latent diffusion model + MINDE) on 20-d latents with 10 labels:
    within 5 % of the mixture's exact I(Z;Y), so is the posterior-centred MINDE (cross-fitted, and plug-in from one
    fit), and both lower bounds (logistic, noisy classifier) hold around it."""
    mixture = _mixture()
    k_tr, k_te, k_mc, k_run = jax.random.split(key, 4)
    z_tr, y_tr = (np.asarray(a) for a in mixture.sample(8000, key=k_tr))
    z_te, y_te = (np.asarray(a) for a in mixture.sample(2000, key=k_te))
    exact = mixture.mutual_information(n=20_000, key=k_mc)
    config = LatentInformationConfig(train=learned.TrainConfig(
        steps=4000, batch_size=256, lr=2e-3, warmup_steps=100, final_lr_fraction=0.05, steps_per_call=200,
        checkpoint_every=200, ema_decay=0.995, progress=False))
    info = latent_information(z_tr, y_tr.astype(np.int32), z_te, y_te.astype(np.int32), num_classes=10,
                              label_entropy=math.log(10), config=dataclasses.replace(config, posterior=POSTERIOR_TRAIN),
                              key=k_run)
    assert 0.5 < exact.value < 2.0  # neither trivial nor saturated
    assert abs(info.minde.value - exact.value) < 0.05 * exact.value, (info.minde, exact)
    assert abs(info.centred.value - exact.value) < 0.05 * exact.value, (info.centred, exact)
    for lower, stderr in ((info.bounds.lower, info.bounds.lower_stderr),
                          (info.posterior_bound["value"], info.posterior_bound["stderr"])):
        assert lower - 4 * stderr < exact.value < info.bounds.upper
    one = latent_information(z_tr, y_tr.astype(np.int32), z_te, y_te.astype(np.int32), num_classes=10,
                             label_entropy=math.log(10), key=k_run,
                             config=dataclasses.replace(config, crossfit=False, posterior=POSTERIOR_TRAIN))
    assert one.minde.value == one.plain_minde.value and one.centred.value == one.centred_plain.value
    assert abs(one.centred.value - exact.value) < 0.05 * exact.value, (one.centred, exact)
    assert 0.1 < info.knn_accuracy < 1.0


@pytest.mark.slow
def test_latent_information_bounds_and_flags(key):
    """Short run on 4-d mixture latents: the structure, the bounds from the logistic regression and the flags
    (raised exactly when the estimate is outside [H(Y) - CE, H(Y)] by more than 2 combined stderr)."""
    mixture = _mixture(dim=4, k=3, scale=1.5, seed=1)
    k_tr, k_te, k_run = jax.random.split(key, 3)
    z_tr, y_tr = (np.asarray(a) for a in mixture.sample(600, key=k_tr))
    z_te, y_te = (np.asarray(a) for a in mixture.sample(200, key=k_te))
    config = LatentInformationConfig(width=32, depth=1, train=learned.TrainConfig(
        steps=200, batch_size=128, lr=3e-3, steps_per_call=100, checkpoint_every=100, ema_decay=0.9,
        progress=False))
    p = np.bincount(np.concatenate([y_tr, y_te]), minlength=3) / (len(y_tr) + len(y_te))
    h_y = float(-(p * np.log(p)).sum())
    info = latent_information(z_tr, y_tr.astype(np.int32), z_te, y_te.astype(np.int32), num_classes=3,
                              label_entropy=h_y, config=config, key=k_run)
    b = info.bounds
    assert b.upper == h_y and 0 < b.lower < b.upper and b.lower_stderr > 0
    assert b.cross_entropy == pytest.approx(h_y - b.lower)
    est = info.minde
    assert np.isfinite(est.value) and est.stderr > 0
    outside = (est.value > b.upper + 2 * est.stderr
               or est.value < b.lower - 2 * math.hypot(est.stderr, b.lower_stderr))
    assert any("bound" in f for f in est.flags) == outside
    assert 0.33 < info.knn_accuracy <= 1.0
    with pytest.raises(ValueError, match="finite"):
        latent_information(np.full((10, 4), np.nan), np.zeros(10, int), z_te, y_te, num_classes=3,
                           label_entropy=h_y, config=config, key=k_run)


def _tiny_latent_problem(key):
    """A 20-step latent-MI config and `run(**kwargs)`: `latent_information` on 64 training and 32 held-out 3-d
    latents of a 2-class mixture (H(Y) = log 2) with that config unless `config=` is given; the tests that use it
    share its compiled fits."""
    mixture = _mixture(dim=3, k=2, scale=1.5, seed=2)
    k_tr, k_te, k_run = jax.random.split(key, 3)
    z_tr, y_tr = (np.asarray(a) for a in mixture.sample(64, key=k_tr))
    z_te, y_te = (np.asarray(a) for a in mixture.sample(32, key=k_te))
    config = LatentInformationConfig(width=8, depth=1, train=learned.TrainConfig(
        steps=20, batch_size=16, lr=1e-3, steps_per_call=10, checkpoint_every=20, progress=False))

    def run(**kwargs):
        return latent_information(z_tr, y_tr.astype(np.int32), z_te, y_te.astype(np.int32), num_classes=2,
                                  label_entropy=math.log(2), key=k_run, **{"config": config, **kwargs})

    return config, run


def test_latent_information_groups(key):
    """`groups` splits the cross-fit by group: one group per row is the row split of `groups=None`, to the bit, while
    draws grouped by image give other halves (so other numbers); groups of the wrong shape or type, or a single group
    to split between two fits, are refused."""
    _, run = _tiny_latent_problem(key)

    def measure(groups):
        info = run(groups=groups)
        return info.minde.value, info.plain_minde.value

    rows = measure(None)
    assert measure(np.arange(64)) == rows
    assert measure(np.arange(64) % 16) != rows  # 4 rows per group: the halves are groups of rows
    for bad, match in ((np.arange(63), "one per training row"), (np.arange(64.0), "integers"),
                       (np.zeros(64, int), "at least 2 groups")):
        with pytest.raises(ValueError, match=match):
            measure(bad)


def test_crossfit_halves_and_fit_latent_model(key):
    """`crossfit_halves` splits the distinct groups in two (half of them, rounded down, and the rest), never a group
    between the halves; `fit_latent_model` fits labelled and unconditional latent models and refuses mismatched
    labels, dropout without labels or outside [0, 1), and latents that are not finite 2-d arrays."""
    rng = np.random.default_rng(0)
    groups = rng.permutation(np.repeat(np.arange(11) * 7, 3))  # 11 groups of 3 rows, not numbered 0..10
    first, second = crossfit_halves(groups, np.random.default_rng(1))
    assert np.array_equal(np.sort(np.concatenate([first, second])), np.arange(33))
    assert len(np.unique(groups[first])) == 5 and len(np.unique(groups[second])) == 6
    assert not set(groups[first]) & set(groups[second])
    for bad, match in ((np.zeros(4, int), "at least 2 groups"), (np.arange(4.0), "integer"),
                       (np.zeros((2, 2), int), "1-d")):
        with pytest.raises(ValueError, match=match):
            crossfit_halves(bad, np.random.default_rng(0))

    z, y = rng.normal(size=(32, 3)), rng.integers(0, 2, 32).astype(np.int32)
    config = LatentInformationConfig(width=8, depth=1, train=learned.TrainConfig(
        steps=10, batch_size=8, lr=1e-3, steps_per_call=5, checkpoint_every=10, progress=False))
    k_i, k_t = jax.random.split(key)
    fit = functools.partial(fit_latent_model, config=config, init_key=k_i, train_key=k_t)
    labelled, unconditional = fit(z, y, num_classes=2), fit(z, None, num_classes=None)
    x, s = jnp.asarray(z[0], jnp.float32), jnp.float32(0.3)
    assert labelled(x, s, 1).shape == unconditional(x, s, None).shape == (3,)
    for args, kwargs, match in (((z, y), {"num_classes": None}, "or neither"),
                                ((z, None), {"num_classes": 2}, "or neither"),
                                ((z, None), {"num_classes": None, "label_dropout": 0.5}, "no label to drop"),
                                ((z, y), {"num_classes": 2, "label_dropout": 1.0}, r"\[0, 1\)"),
                                ((np.full((32, 3), np.nan), y), {"num_classes": 2}, "finite"),
                                ((z[:, 0], y), {"num_classes": 2}, "finite, of shape")):
        with pytest.raises(ValueError, match=match):
            fit(*args, **kwargs)


def test_latent_posterior_learns_the_exact_posterior(key):
    """`fit_latent_posterior` (a `learned.NoisyMLPClassifier` trained by noisy cross-entropy) on 4-d latents of a
    3-class mixture: its held-out cross-entropy at each time is within 0.05 nats above the mixture's exact
    H(Y|Z_s) (exact posteriors; no classifier reads below it beyond Monte Carlo error), and the classifier refuses
    a vector of the wrong size, a time outside [0, T] and sizes that are not integers."""
    mixture = _mixture(dim=4, k=3, scale=0.5, seed=3)
    k_tr, k_te, k_fit, k_ce, k_h = jax.random.split(key, 5)
    z_tr, y_tr = (np.asarray(a) for a in mixture.sample(4000, key=k_tr))
    z_te, y_te = (np.asarray(a) for a in mixture.sample(4000, key=k_te))
    train = dataclasses.replace(POSTERIOR_TRAIN, steps=600, checkpoint_every=600)
    clf = fit_latent_posterior(z_tr, y_tr.astype(np.int32), num_classes=3, train=train, width=64, sde=SDE, key=k_fit)
    assert isinstance(clf, learned.NoisyMLPClassifier) and clf.num_classes == 3
    times = np.array([1e-3, 0.1, 0.3])
    ce, ce_se, _ = learned.noisy_cross_entropy_curve(clf, SDE, z_te, y_te, times, key=k_ce)
    exact = mixture.label_entropy(times, n=40_000, key=k_h)
    h, h_se = np.asarray(exact.cumulative), np.asarray(exact.cumulative_stderr)
    assert 0.3 < h[0] < h[-1] < math.log(3) - 0.05  # neither decided nor forgotten over the checked times
    # CE_s - H(Y|Z_s) is the expected KL from the exact posterior (>= 0); both are Monte Carlo means over
    # independent samples
    assert np.all(ce - h > -3 * np.hypot(ce_se, h_se)), (ce, h)
    assert np.all(ce - h < 0.05 + 3 * np.hypot(ce_se, h_se)), (ce, h)
    with pytest.raises(ValueError, match=r"one vector of shape \(4,\)"):
        clf(jnp.zeros(5), 0.5)
    with pytest.raises(ValueError, match="s must"):
        clf(jnp.zeros(4), 1.5)
    for bad, match in (({"num_classes": 1}, "num_classes must be an integer >= 2"),
                       ({"width": 2.0}, "width must be an integer")):
        with pytest.raises(ValueError, match=match):
            learned.NoisyMLPClassifier(**{"dim": 4, "num_classes": 3, "sde": SDE, "key": key, **bad})


def test_latent_information_posterior_centred(key):
    """With `LatentInformationConfig.posterior` the null-label MINDE and the bounds are those of the run without
    it, to the bit; the posterior-centred MINDE (cross-fitted, or plug-in without `crossfit`) is reported beside
    it with its own flags and the first fit's plug-in centring, and the noisy classifier's lower bound is H(Y) minus
    its held-out cross-entropy (the centring without `crossfit` is checked in the slow mixture test).
    A posterior that is not a TrainConfig, or a classifier size that is not a positive integer, is refused."""
    config, run = _tiny_latent_problem(key)
    posterior = dataclasses.replace(POSTERIOR_TRAIN, steps=20, batch_size=16, warmup_steps=5, steps_per_call=10,
                                    checkpoint_every=20)

    def measure(**changes):
        return run(config=dataclasses.replace(config, **changes))

    plain = measure()  # the fits and estimates of test_latent_information_groups' first call: compiled there
    assert plain.centred is None and plain.posterior_bound is None and plain.flags == list(plain.minde.flags)
    assert "posterior_centred" not in plain.to_dict()
    info = measure(posterior=posterior, posterior_width=16)
    assert (info.minde.value, info.minde.stderr, info.plain_minde.value) == \
        (plain.minde.value, plain.minde.stderr, plain.plain_minde.value)
    assert info.bounds == plain.bounds
    c, b = info.centred, info.bounds
    assert np.isfinite(c.value) and c.stderr > 0 and c.value != info.minde.value
    outside = c.value > b.upper + 2 * c.stderr or c.value < b.lower - 2 * math.hypot(c.stderr, b.lower_stderr)
    assert any("bound" in f for f in c.flags) == outside
    assert info.flags == [*info.minde.flags, *c.flags]
    bound = info.posterior_bound
    assert bound["value"] == pytest.approx(math.log(2) - bound["cross_entropy"]) and bound["stderr"] > 0
    out = info.to_dict()
    one = info.centred_plain  # the first fit's plug-in centring, beside the cross-fit
    assert np.isfinite(one.value) and one.stderr > 0 and one.value != c.value
    assert out["posterior_centred"] == {"value": c.value, "stderr": c.stderr, "flags": list(c.flags),
                                        "plain_minde_one_fit": {"value": one.value, "stderr": one.stderr}}
    assert out["lower_bound"]["posterior_classifier"] == bound
    for bad, match in (({"posterior": 4000}, "posterior must be a learned.TrainConfig"),
                       ({"posterior_width": 0}, "posterior_width must be a positive integer"),
                       ({"posterior_depth": True}, "posterior_depth must be a positive integer")):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(config, **bad)


def test_split_keys_depend_on_the_run_key_and_tau_only():
    """`split_keys`: the five keys of a split DAE are distinct, the same for the same run key and tau, and different
    for another tau or run key (a run in parts refits each part's own models; the full check, that a re-measurement
    with them reproduces a run's numbers to 1e-6, is benchmarks/bench_latent_posterior_centred.py's on the committed
    MNIST-5k latents)."""
    key = jax.random.key(0)
    data = [np.asarray(jax.random.key_data(k)) for k in split_keys(key, 0.1)]
    assert len({d.tobytes() for d in data}) == 5
    again = [np.asarray(jax.random.key_data(k)) for k in split_keys(key, 0.1)]
    assert all(np.array_equal(a, b) for a, b in zip(data, again))
    for other in (split_keys(key, 0.2), split_keys(jax.random.key(1), 0.1)):
        assert not any(np.array_equal(a, np.asarray(jax.random.key_data(b))) for a, b in zip(data, other))
    assert split_keys(key, 0.1)._fields == ("init", "fit", "latents", "semantic", "perceptual")


# ---------------------------------------------------------------------------------------------- CLI
def test_autoencoder_quick_end_to_end(tmp_path, capfd):
    """`separability autoencoder --quick` on digits (about 2 minutes): the results' structure, bounds consistency,
    latents that carry the label, a scan interrupted in its first split DAE keeping what it measured, and the scan
    run in parts and merged to the same numbers. The five command lines run in one child process with the users' XLA
    setting (`_processes.separability`: they train networks for hundreds of steps, and each reuses what the ones
    before it compiled); the merges run here.

    Measured at seed 0 (keys by part name since session 19, cross-fit halves of images since session 20):
    I(Z_sem;Y) = 0.179 ± 0.015 nats with H(Y) - CE = 0.186 ± 0.039 (D_Z = 2, tau = 0.1 T, 150 steps); the VAE's
    I(Z;Y) = 1.485 ± 0.076, k-NN accuracy 0.66.
    Before the encoder was normalised the DAE latents read 0.002 nats at every tau (a classifier on them at
    chance), which the lower thresholds below refuse."""
    out = tmp_path / "quick"
    stopped = tmp_path / "stopped"  # what the stopped run left, for the merge below
    checkpoints = str(out / "checkpoints")
    quick = ["autoencoder", "--quick", "--no-progress"]
    ckpt = ["--checkpoint-dir", checkpoints]
    parts = {"comparison": ["--tau", "none"], "tau": ["--tau", "0.1", "--no-comparison", "--save-latents"]}
    interrupted, completed, comparison, tau, posterior, rerun = separability(
        # Ctrl-C in the first split DAE
        Step([*quick, "--out", str(out)], expect=130, interrupt="split_tau", checkpoints=checkpoints,
             snapshot=str(stopped)),
        # the same command again reads the finished autoencoders back and completes the scan
        Step([*quick, "--out", str(out)], checkpoints=checkpoints),
        # the scan in parts, from the same checkpoints
        *(Step([*quick, "--out", str(tmp_path / name), *ckpt, *flags], checkpoints=checkpoints,
               snapshot=str(tmp_path / "rerun") if name == "tau" else None)
          for name, flags in parts.items()),
        # --posterior-steps (the comparison alone, from the same checkpoints)
        Step([*quick, "--out", str(tmp_path / "posterior"), *ckpt, "--tau", "none", "--posterior-steps", "200"]),
        # the whole run started in a copy of the tau part's folder, and stopped after its first part (the comparison)
        Step([*quick, "--out", str(tmp_path / "rerun"), *ckpt], expect=130, interrupt="split_tau"))

    assert interrupted.returncode == 130
    assert not (stopped / "results.json").exists()
    partial = json.loads((stopped / "results.partial.json").read_text())
    assert partial["complete"] is False and "partial" in partial and partial["figures"] == {}
    assert partial["quantities"]["mutual_information"] == [] and partial["quantities"]["knn_accuracy"] == []
    for name in ("dae", "vae"):
        block = partial["quantities"]["comparison"][name]
        assert np.isfinite(block["value"]) and block["stderr"] > 0
    interrupted_at = interrupted.checkpoints
    assert set(interrupted_at) == {"dae", "vae"}

    assert completed.returncode == 0
    assert not (out / "results.partial.json").exists()
    payload = json.loads((out / "results.json").read_text())
    assert payload["complete"] is True and "partial" not in payload
    assert payload["quantities"]["comparison"] == partial["quantities"]["comparison"]
    for name in ("experiment", "instance", "quantities", "figures", "versions", "device", "wall_time_s"):
        assert name in payload
    assert payload["experiment"] == "autoencoder" and payload["instance"]["dataset"] == "digits"
    assert payload["arrays_sha256"] == hashlib.sha256((out / "arrays.npz").read_bytes()).hexdigest()
    assert (out / "arrays.npz").stat().st_mode & 0o044  # written through a private temporary file, then opened up
    q = payload["quantities"]
    digits = learned.load_digits()
    # --quick asks for 300 held-out images, more than digits' 297: all are used, with the request recorded beside
    # them and a warning from the child process (whose stderr is this process's)
    assert payload["instance"]["n_eval_requested"] == 300
    assert payload["instance"]["n_eval"] == len(digits.test_x) == 297
    assert ("AutoencoderExperiment.n_eval = 300 is more than the 297 test images of digits: all 297 are used."
            in capfd.readouterr().err)
    labels = np.concatenate([digits.train_y, digits.test_y])
    p = np.bincount(labels, minlength=10) / len(labels)
    h_y = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    assert q["bounds"]["upper"]["value"] == pytest.approx(h_y)
    taus = payload["instance"]["taus"]
    assert [row["tau"] for row in q["mutual_information"]] == taus
    assert [row["tau"] for row in q["bounds"]["lower"]["per_tau"]] == taus
    assert [row["tau"] for row in q["knn_accuracy"]] == taus
    # the default latent I(Z;Y) is the cross-fit of two latent models, with the first model's plug-in beside it
    assert payload["instance"]["latent_mi"]["crossfit"] is True
    for row in q["mutual_information"]:
        for part in ("semantic", "perceptual"):
            assert np.isfinite(row[part]["plain_minde_one_fit"]["value"])
    flags = []
    for row, low, knn in zip(q["mutual_information"], q["bounds"]["lower"]["per_tau"], q["knn_accuracy"]):
        for part in ("semantic", "perceptual"):
            est, lower = row[part], low[part]
            assert np.isfinite(est["value"]) and est["stderr"] > 0
            assert lower["value"] == pytest.approx(h_y - lower["cross_entropy"]) and lower["stderr"] > 0
            outside = (est["value"] > h_y + 2 * est["stderr"]
                       or est["value"] < lower["value"] - 2 * math.hypot(est["stderr"], lower["stderr"]))
            assert any("bound" in f for f in est["flags"]) == outside
            assert 0 <= knn[part]["value"] <= 1
            flags += est["flags"]
    semantic = q["mutual_information"][0]["semantic"]
    assert semantic["value"] > 0.1 and q["bounds"]["lower"]["per_tau"][0]["semantic"]["value"] > 0.1
    for name in ("dae", "vae"):
        block = q["comparison"][name]
        assert block["latent_dim"] == 2 and np.isfinite(block["value"])
        assert 0 <= block["knn_accuracy"]["value"] <= 1
        flags += block["flags"]
    assert q["comparison"]["vae"]["value"] > 0.5 and q["comparison"]["vae"]["knn_accuracy"]["value"] > 0.4
    assert sorted(q["flags"]) == sorted(flags)
    r = q["reconstruction_error"]
    assert r["vae"]["value"] > 0 and r["dae"]["value"] > 0 and len(r["split"]) == len(taus)
    for figure in payload["figures"].values():
        assert (out / figure).stat().st_size > 1000
    # every autoencoder was checkpointed
    saved = completed.checkpoints
    assert set(saved) == {"dae", "vae", "split_tau=0.1"}
    assert {name: saved[name] for name in interrupted_at} == interrupted_at

    # the scan in parts: each part's keys depend on its name only, so the comparison alone and tau = 0.1 alone read
    # the full run's checkpoints back (the fingerprints match: nothing is retrained) and measure the same numbers;
    # --merge joins them into the full run's results
    assert comparison.returncode == 0 and tau.returncode == 0
    assert comparison.checkpoints == tau.checkpoints == saved
    alone = json.loads((tmp_path / "tau" / "results.json").read_text())
    assert alone["instance"]["comparison"] is False and alone["quantities"]["comparison"] == {}
    assert alone["quantities"]["reconstruction_error"]["dae"] is None and "latents_2d" not in alone["figures"]
    # --save-latents: the rows each I(Z;Y) was measured on (it changes no number: the merge below equals the full run)
    assert alone["latents"] == "latents.npz" and "latents" not in payload and not (out / "latents.npz").exists()
    inst = alone["instance"]
    with np.load(tmp_path / "tau" / "latents.npz") as lat, np.load(tmp_path / "tau" / "arrays.npz") as arr:
        assert sorted(lat) == ["y_eval", "y_train", "z_eval_per_split_tau=0.1", "z_eval_sem_split_tau=0.1",
                               "z_train_per_split_tau=0.1", "z_train_sem_split_tau=0.1"]
        assert lat["y_train"].shape == (inst["n_train"],) and lat["y_train"].dtype == np.int64
        assert lat["z_train_sem_split_tau=0.1"].shape == (inst["latent_draws"] * inst["n_train"], inst["latent_dim"])
        for part in ("sem", "per"):
            assert np.array_equal(lat[f"z_eval_{part}_split_tau=0.1"], arr[f"z_{part}_split_tau=0.1"])
        assert np.array_equal(lat["y_eval"], arr["y_eval"])
    merged_dir = tmp_path / "merged"
    assert main(["autoencoder", "--merge", str(tmp_path / "comparison"), str(tmp_path / "tau"),
                 "--out", str(merged_dir)]) == 0
    merged = json.loads((merged_dir / "results.json").read_text())
    assert merged["complete"] is True and merged["instance"]["taus"] == taus
    assert merged["instance"]["merged_from"] == [str(tmp_path / "comparison"), str(tmp_path / "tau")]
    for name in ("mutual_information", "bounds", "knn_accuracy", "comparison", "reconstruction_error", "flags"):
        assert merged["quantities"][name] == q[name], name
    assert sorted(merged["figures"]) == sorted(payload["figures"])
    for figure in merged["figures"].values():
        assert (merged_dir / figure).stat().st_size > 1000
    with np.load(out / "arrays.npz") as whole, np.load(merged_dir / "arrays.npz") as joined:
        assert sorted(whole) == sorted(joined) and all(np.array_equal(whole[k], joined[k]) for k in whole)

    # --posterior-steps: beside each latent's null-label MINDE, which is unchanged, the posterior-centred MINDE and
    # the noisy classifier's lower bound, in results and report
    assert posterior.returncode == 0
    report = posterior.stdout
    centred = json.loads((tmp_path / "posterior" / "results.json").read_text())
    assert centred["instance"]["latent_mi"]["posterior"]["train"]["steps"] == 200
    assert payload["instance"]["latent_mi"]["posterior"] is None
    for name in ("dae", "vae"):
        block, before = centred["quantities"]["comparison"][name], q["comparison"][name]
        for key in ("value", "stderr", "plain_minde_one_fit", "knn_accuracy"):
            assert block[key] == before[key], (name, key)
        assert {k: v for k, v in block["lower_bound"].items() if k != "posterior_classifier"} == before["lower_bound"]
        est, bound = block["posterior_centred"], block["lower_bound"]["posterior_classifier"]
        assert np.isfinite(est["value"]) and est["stderr"] > 0 and bound["stderr"] > 0
        assert bound["value"] == pytest.approx(h_y - bound["cross_entropy"])
        lower = block["lower_bound"]
        outside = (est["value"] > h_y + 2 * est["stderr"]
                   or est["value"] < lower["value"] - 2 * math.hypot(est["stderr"], lower["stderr"]))
        assert any("bound" in f for f in est["flags"]) == outside
        assert set(est["flags"]) <= set(centred["quantities"]["flags"])
        assert f"posterior-centred {est['value']:.3f} ± {est['stderr']:.3f}" in report
    assert centred["quantities"]["comparison"]["vae"]["posterior_centred"]["value"] > 0.5  # the VAE's label info

    # a run stopped part-way contributes what it measured; the merge is then partial too
    assert main(["autoencoder", "--merge", str(stopped), str(tmp_path / "tau"), "--out", str(tmp_path / "m1")]) == 0
    assert not (tmp_path / "m1" / "results.json").exists()
    joined = json.loads((tmp_path / "m1" / "results.partial.json").read_text())
    assert joined["complete"] is False and "partial" in joined and joined["instance"]["taus"] == taus
    assert joined["quantities"]["mutual_information"] == q["mutual_information"]
    assert joined["quantities"]["comparison"] == q["comparison"]

    # a run started where another run's results lie moves them (results, arrays, latents, figures) to previous/ first,
    # so that the results in a folder always describe its arrays.npz (before, the tau part's results.json stayed
    # beside the new run's arrays.npz, which held the comparison only, and --merge read the two together)
    assert rerun.returncode == 130 and "held an earlier run's results" in rerun.stdout
    previous = tmp_path / "rerun" / "previous"
    assert json.loads((previous / "results.json").read_text()) == json.loads((tmp_path / "tau" / "results.json")
                                                                             .read_text())
    assert sorted(p.name for p in previous.iterdir()) == sorted(["results.json", "arrays.npz", "latents.npz",
                                                                  *alone["figures"].values()])
    assert (previous / "arrays.npz").read_bytes() == (tmp_path / "tau" / "arrays.npz").read_bytes()
    assert sorted(p.name for p in (tmp_path / "rerun").iterdir()) == ["arrays.npz", "previous", "results.partial.json"]
    again = json.loads((tmp_path / "rerun" / "results.partial.json").read_text())
    assert again["quantities"]["comparison"] == q["comparison"] and again["quantities"]["mutual_information"] == []
    # a merge into a folder with results moves them aside too
    assert main(["autoencoder", "--merge", str(tmp_path / "rerun"), "--out", str(merged_dir)]) == 0
    assert json.loads((merged_dir / "previous" / "results.json").read_text()) == merged
    assert not (merged_dir / "results.json").exists()
    assert json.loads((merged_dir / "results.partial.json").read_text())["quantities"]["comparison"] == q["comparison"]
    # results read with another run's arrays.npz are refused (their arrays_sha256)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(tmp_path / "comparison" / "results.json", mixed)
    shutil.copy(tmp_path / "tau" / "arrays.npz", mixed)
    with pytest.raises(ValueError, match="arrays.npz is not the file results.json was written with"):
        merge_autoencoder_results([mixed], tmp_path / "m6")

    # what cannot be merged: a part measured twice, another experiment's run, a folder without results
    assert main(["autoencoder", "--merge", str(out), str(tmp_path / "tau"), "--out", str(tmp_path / "m2")]) == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "arrays.npz").write_bytes((tmp_path / "tau" / "arrays.npz").read_bytes())
    alone["instance"]["seed"] = 1
    (other / "results.json").write_text(json.dumps(alone))
    with pytest.raises(ValueError, match="runs of different experiments: they differ in seed"):
        merge_autoencoder_results([tmp_path / "comparison", other], tmp_path / "m3")
    # a part written before n_eval_requested was recorded merges with one written after; a different count does not
    alone["instance"]["seed"] = payload["instance"]["seed"]
    for requested, merges in [(None, True), (301, False)]:
        older = copy.deepcopy(alone)
        older.pop("arrays_sha256", None)  # written before that record too
        if requested is None:
            del older["instance"]["n_eval_requested"]
        else:
            older["instance"]["n_eval_requested"] = requested
        (other / "results.json").write_text(json.dumps(older))
        if merges:
            merge_autoencoder_results([tmp_path / "comparison", other], tmp_path / "m7")
            assert json.loads((tmp_path / "m7" / "results.json").read_text())["quantities"]["mutual_information"] == (
                merged["quantities"]["mutual_information"])
        else:
            with pytest.raises(ValueError, match="they differ in n_eval_requested"):
                merge_autoencoder_results([tmp_path / "comparison", other], tmp_path / "m8")
    with pytest.raises(ValueError, match="tau = 0.1 T is measured in both"):
        merge_autoencoder_results([out, tmp_path / "tau"], tmp_path / "m4")
    with pytest.raises(FileNotFoundError, match="holds neither results.json nor results.partial.json"):
        merge_autoencoder_results([tmp_path / "m4"], tmp_path / "m5")
