"""Image pipeline: bounds and flags, held-out cross-entropy, and the `separability images --quick` run end to end."""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaussian_oracle import Estimate
import learned
from learned import load_digits
from verify.cli import PRESETS, main
from verify.experiments import (Bounds, ImageExperiment, LabelInformationCurve, information_bounds,
                                label_information_curve, train_networks)
from verify.estimators import LogSNRGrid, UniformGrid, mutual_information_minde_crossfit


class _Logits(eqx.Module):
    """A stub classifier: fixed logits from the first pixel (label = round(pixel)) with a given confidence."""

    confidence: float
    num_classes: int = eqx.field(static=True)

    def __call__(self, x, *, key=None):
        label = jnp.round(x[0, 0, 0]).astype(jnp.int32)
        return self.confidence * jax.nn.one_hot(label, self.num_classes)


def test_bounds_flag_only_outside_by_two_stderr():
    bounds = Bounds(upper=2.3, lower=2.0, lower_stderr=0.03, cross_entropy=0.3, accuracy=0.95)
    assert bounds.check(Estimate(2.2, 0.05), "I").flags == ()
    assert bounds.check(Estimate(2.38, 0.05), "I").flags == ()  # 1.6 stderr above H(Y): not flagged
    above = bounds.check(Estimate(2.5, 0.05), "I").flags
    assert len(above) == 1 and "above the upper bound" in above[0]
    # below: the lower bound's own stderr counts too (combined sqrt(0.05^2 + 0.03^2) = 0.058)
    assert bounds.check(Estimate(1.9, 0.05), "I").flags == ()
    below = bounds.check(Estimate(1.85, 0.05), "I").flags
    assert len(below) == 1 and "below the lower bound" in below[0]
    d = bounds.to_dict()
    assert d["upper"]["value"] == 2.3 and d["lower"]["value"] == 2.0 and d["lower"]["stderr"] == 0.03


def test_information_bounds_from_held_out_cross_entropy():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = np.zeros((400, 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = y
    p = np.bincount(y, minlength=4) / 400
    h_y = -(p * np.log(p)).sum()
    sharp = information_bounds(_Logits(30.0, 4), x, y, label_entropy=h_y)  # a perfect classifier: CE ~ 0, lower ~ H(Y)
    assert sharp.upper == pytest.approx(h_y) and sharp.accuracy == 1.0
    assert sharp.lower == pytest.approx(h_y, abs=1e-9)
    blind = information_bounds(_Logits(0.0, 4), x, y, label_entropy=h_y)  # uniform guesses: CE = log 4, lower = H(Y) - log 4 <= 0
    assert blind.cross_entropy == pytest.approx(math.log(4)) and blind.lower == pytest.approx(h_y - math.log(4))
    # a confident but sometimes wrong classifier: CE is the mean negative log-probability of the true label
    x_wrong = x.copy()
    x_wrong[:100, 0, 0, 0] = (y[:100] + 1) % 4
    c = 2.0
    wrong = information_bounds(_Logits(c, 4), x_wrong, y, label_entropy=h_y)
    nll_right = -(c - np.log(np.exp(c) + 3))
    nll_wrong = -(0 - np.log(np.exp(c) + 3))
    assert wrong.cross_entropy == pytest.approx(0.25 * nll_wrong + 0.75 * nll_right, rel=1e-6)
    assert wrong.lower_stderr > 0


def test_cross_entropy_refuses_labels_outside_the_logits():
    """Regression: `learned.cross_entropy` scored label -1 as the last class (a finite, wrong CE) and raised a bare
    IndexError for a label past the last logit or a float label. Each is now one ValueError naming the rule."""
    x = np.zeros((4, 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = [0, 1, 2, 3]
    classifier = _Logits(2.0, 4)
    ce, _, accuracy = learned.cross_entropy(classifier, x, np.array([0, 1, 2, 3]))
    assert ce == pytest.approx(-(2.0 - np.log(np.exp(2.0) + 3)), rel=1e-6) and accuracy == 1.0
    for y in ([0, 1, 2, -1], [0, 1, 2, 4]):
        with pytest.raises(ValueError, match=r"y must hold labels in \[0, 4\) \(the classifier's 4 logits\); "
                                             r"got values from -?\d to \d"):
            learned.cross_entropy(classifier, x, np.array(y))
    for y in (np.array([0.0, 1.0, 2.0, 3.0]), np.array([True, False, True, False])):
        with pytest.raises(ValueError, match=f"y must hold integer labels; got dtype {y.dtype}"):
            learned.cross_entropy(classifier, x, y)
    for y in (np.array([[0], [1], [2], [3]]), np.array([0, 1, 2])):
        with pytest.raises(ValueError, match="need at least 2 held-out images with one label each"):
            learned.cross_entropy(classifier, x, y)


def test_label_information_curve_holds_for_the_exact_model_and_catches_a_cancelling_curve():
    """Exact MINDE curve of a two-class mixture against the exact posterior's CE_s: no node outside the time-resolved
    bounds. A curve with the same total whose information arrives too early (at small s) is flagged, though its
    total lies inside [H(Y) - CE, H(Y)]."""
    from gaussian_oracle import VPSDE, GaussianMixture
    from verify.estimators import mutual_information_minde

    sde = VPSDE(0.1, 16.0, 1.0)
    mean = np.array([1.0, -0.5, 0.5])
    mixture = GaussianMixture.symmetric_two_class(mean, sigma=0.7, sde=sde)
    exact_model = mixture.model()
    x, y = mixture.sample(2000, key=jax.random.key(20))
    grid = LogSNRGrid(n_times=24, s_min=1e-4)
    minde = mutual_information_minde(exact_model, x, y, times=grid, key=jax.random.key(21))
    h_y = math.log(2)
    curve = label_information_curve(lambda xs, s: jnp.log(exact_model.posterior(xs, s)), sde, x, y, minde.times,
                                    label_entropy=h_y, data_variance=3 * 0.7**2 + float(mean @ mean),
                                    key=jax.random.key(22))
    assert 0 < curve.residual < 1e-3
    assert curve.check(minde, "I_MINDE").flags == ()
    v = curve.violations(minde)
    assert v["below"]["n_times"] == 0 and v["above"]["n_times"] == 0
    # a curve that produces all its information below the median node: same total, wrong shape
    k = len(minde.times) // 2
    early = np.where(np.arange(len(minde.times)) < k, minde.value / k, 0.0)
    cancelling = Estimate(minde.value, minde.stderr, times=minde.times, rate=minde.rate, rate_stderr=minde.rate_stderr,
                          cumulative=np.cumsum(early) - 0.5 * early, cumulative_stderr=minde.cumulative_stderr)
    flags = curve.check(cancelling, "I_MINDE").flags
    assert len(flags) == 1 and "below H(Y) - CE_s" in flags[0], flags
    high = Estimate(5.0, 0.01, times=minde.times, cumulative=np.zeros(len(minde.times)),
                    cumulative_stderr=np.zeros(len(minde.times)))
    assert "above H(Y)" in curve.check(high, "I").flags[-1]
    with pytest.raises(ValueError, match="nodes of this LabelInformationCurve"):
        curve.check(Estimate(1.0, 0.1, times=minde.times[:-1], cumulative=minde.cumulative[:-1],
                             cumulative_stderr=minde.cumulative_stderr[:-1]), "I")
    assert isinstance(curve, LabelInformationCurve) and len(curve.to_dict()["lower"]) == len(minde.times)


def test_images_quick_end_to_end(quick_images):
    """The CI run: `separability images --quick` on scikit-learn's digits, CPU, about six minutes: two networks on
    the two halves of the training images, and the cross-fitted I_MINDE inside its bounds within 2 stderr.

    Seed 0 (session 30, 1,000 steps per network) reads 2.267 ± 0.059 against H(Y) - CE = 2.118 ± 0.036 and H(Y) +
    2 stderr = 2.420. Seeds 1 and 2 read 2.378 ± 0.049 and 2.316 ± 0.058, and at 1,500 steps seed 0 read 2.435 ±
    0.069, 0.006 nats inside (`benchmarks/results/images_quick_digits.json`, benchmarks/README.md): the seeds spread
    by about 0.1 nats, which the stderr (evaluation noise only) does not hold. A change of the quick preset, data split
    or initialisation can move seed 0 across without an error anywhere: read the new value before judging the code."""
    assert quick_images.ran["images"].returncode == 0
    out, checkpoints = quick_images.out["images"], quick_images.checkpoints
    assert (checkpoints / "a" / "checkpoint.eqx").exists() and (checkpoints / "b" / "checkpoint.eqx").exists()
    payload = json.loads((out / "results.json").read_text())
    for key in ("experiment", "instance", "quantities", "versions", "device", "wall_time_s"):
        assert key in payload
    assert payload["experiment"] == "images" and payload["instance"]["dataset"] == "digits"
    # the evaluation images asked for beside those used: --quick asks for 200, fewer than digits' 297 test images
    n_eval = PRESETS["quick"].n_eval
    assert payload["instance"]["n_eval_requested"] == n_eval and payload["instance"]["n_eval"] == min(n_eval, 297)
    q = payload["quantities"]
    for name in ("neural_entropy", "conditional_neural_entropy"):
        assert q[name]["value"] > 0 and q[name]["stderr"] > 0
    bounds = q["bounds"]
    upper, lower, lower_se = bounds["upper"]["value"], bounds["lower"]["value"], bounds["lower"]["stderr"]
    digits = load_digits()
    labels = np.concatenate([digits.train_y, digits.test_y])
    p = np.bincount(labels, minlength=10) / len(labels)
    assert upper == pytest.approx(-(p[p > 0] * np.log(p[p > 0])).sum())  # H(Y) of all 1,797 labels, not a subset
    assert "1797 labels" in bounds["upper"]["definition"]
    assert bounds["lower"]["classifier_accuracy"] > 0.8 and 0 < lower < upper
    flags = []
    for name in ("minde", "difference", "minde_crossfit"):
        est = q["mutual_information"][name]
        assert np.isfinite(est["value"]) and est["stderr"] > 0
        outside = (est["value"] > upper + 2 * est["stderr"]
                   or est["value"] < lower - 2 * math.hypot(est["stderr"], lower_se))
        bound_flags = [f for f in est.get("flags", []) if "bound H(Y)" in f]
        assert bool(bound_flags) == outside  # flagged exactly when outside [H(Y) - CE, H(Y)] by > 2 stderr
        flags += est.get("flags", [])
    assert q["flags"] == flags
    # issue 9's goal for the quick path: the cross-fitted I_MINDE inside [H(Y) - CE, H(Y)] within 2 stderr, and
    # S_NN^{X|Y} >= S_NN^X - 2 stderr (the plug-in I_MINDE of one network is not: it reads the fit's variance)
    cross = q["mutual_information"]["minde_crossfit"]
    assert lower - 2 * math.hypot(cross["stderr"], lower_se) <= cross["value"] <= upper + 2 * cross["stderr"]
    assert not cross.get("flags")
    s_x, s_xy = q["neural_entropy"], q["conditional_neural_entropy"]
    assert s_xy["value"] >= s_x["value"] - 2 * math.hypot(s_x["stderr"], s_xy["stderr"])
    memo = q["memorisation"]  # training-image estimates beside the held-out ones, on the first network's own images
    assert memo["n_training_images"] == min(payload["instance"]["n_eval"], payload["instance"]["n_train_per_network"])
    for name in ("neural_entropy", "minde"):
        block = memo[name]
        assert block["held_out_images"]["value"] == pytest.approx(q[name]["value"] if name != "minde"
                                                                 else q["mutual_information"]["minde"]["value"])
        assert block["gap"]["value"] == pytest.approx(block["training_images"]["value"] - block["held_out_images"]["value"])
        assert block["gap"]["stderr"] > 0
    curves = payload["curves"]["neural_entropy"]
    assert len(curves["times"]) == len(curves["rate"]) == payload["instance"]["times"]["n_times"]
    # the headline estimate's curve is saved too, on the same times; its cumulative integral at the last node (the
    # last half cell short of T) is the reported value less that half cell
    cross_curve = payload["curves"]["minde_crossfit"]
    assert cross_curve["times"] == curves["times"]
    assert abs(cross_curve["cumulative"][-1] - cross["value"]) <= 0.05 * abs(cross["value"]) + 2 * cross["stderr"]
    for figure in payload["figures"].values():
        assert (out / figure).stat().st_size > 1000
    assert (out / "loss.csv").read_text().startswith("step,loss")


def _experiment(**kwargs) -> ImageExperiment:
    unet = learned.UNetConfig.digits_tiny(num_classes=10, channels=16, embed_dim=64, num_groups=4)
    return ImageExperiment(unet=unet, train=learned.TrainConfig(steps=2, batch_size=4),
                           classifier=learned.ClassifierConfig((1, 8, 8), 10, channels=(8, 8), hidden=8), **kwargs)


def test_experiment_trains_with_its_weighting_and_times():
    """The default loss is the Gaussian half's (likelihood weighting, log-SNR times from 1e-4 T); the paper's
    (constant, uniform) is a choice; an unknown weighting, a non-density sampler and an estimation grid below the
    training times are refused."""
    _, loss = _experiment().model_and_loss(key=jax.random.key(0))
    assert isinstance(loss.weighting, learned.Likelihood) and loss.time_sampler == learned.LogSNRTime(s_min=1e-4)
    assert loss.condition_dropout == 0.5
    _, paper = _experiment(weighting="constant", time_sampler=learned.UniformTime(),
                           times=UniformGrid(n_times=500)).model_and_loss(key=jax.random.key(0))
    assert isinstance(paper.weighting, learned.Constant) and isinstance(paper.time_sampler, learned.UniformTime)
    with pytest.raises(ValueError, match="weighting must be one of"):
        _experiment(weighting="uniform")
    with pytest.raises(ValueError, match="time_sampler must be a time density"):
        _experiment(time_sampler=UniformGrid(n_times=8))
    with pytest.raises(ValueError, match="below the smallest training time"):
        _experiment(times=LogSNRGrid(n_times=8, s_min=1e-5))


def test_guided_experiment_builds_a_consistent_model():
    """`guidance` gives `ClassifierGuided` (an unconditional U-Net, label through a classifier gradient) trained by
    `GuidedLoss`; whose label part averages to zero under its own posterior, as an exact score family's does."""
    config = _experiment(guidance=learned.ClassifierConfig((1, 8, 8), 10, channels=(8, 8), hidden=8),
                         guidance_cross_entropy=0.5)
    model, loss = config.model_and_loss(key=jax.random.key(0))
    assert isinstance(model, learned.ClassifierGuided) and isinstance(loss, learned.GuidedLoss)
    assert model.unconditional.config.num_classes is None and loss.cross_entropy == 0.5
    x = jax.random.uniform(jax.random.key(1), (1, 8, 8))

    @eqx.filter_jit
    def posterior_average_of_label_part(model, x):
        parts = jax.vmap(lambda y: model.log_posterior_grad(x, 0.3, y))(jnp.arange(10))
        return jnp.tensordot(jax.nn.softmax(model.classifier(x, 0.3)), parts, 1), jnp.max(jnp.abs(parts))

    average, size = posterior_average_of_label_part(model, x)
    assert size > 1e-6  # the label parts are not all zero (small at initialisation) ...
    np.testing.assert_allclose(average, 0.0, atol=1e-5 * float(size))  # ... but average to zero (float32 networks)
    plain, plain_loss = _experiment().model_and_loss(key=jax.random.key(0))
    assert isinstance(plain, learned.EntropyUNet) and isinstance(plain_loss, learned.DEMLoss)


def test_gaussian_base_experiment_wraps_each_network_on_its_own_images():
    """`gaussian_base` wraps the U-Net in a `ClassGaussianBase` fitted to the images passed (each cross-fit network
    its own half), with the gate asked for; it needs those images, a positive SNR, and the label-embedding U-Net."""
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(200, 1, 8, 8)), np.arange(200) % 10
    model, loss = _experiment(gaussian_base=4.0).model_and_loss(key=jax.random.key(0), train_x=x, train_y=y)
    assert isinstance(model, learned.ClassGaussianBase) and model.snr_half == 4.0 and isinstance(loss, learned.DEMLoss)
    np.testing.assert_allclose(model.gaussians.means[3], x[y == 3].reshape(20, -1).mean(0), rtol=1e-5)
    with pytest.raises(ValueError, match="needs the network's training images"):
        _experiment(gaussian_base=4.0).model_and_loss(key=jax.random.key(0))
    with pytest.raises(ValueError, match="gaussian_base must be a finite SNR"):
        _experiment(gaussian_base=0.0)
    with pytest.raises(ValueError, match="label-embedding U-Net"):
        _experiment(gaussian_base=4.0, guidance=learned.ClassifierConfig((1, 8, 8), 10))


def test_posterior_draws_need_a_posterior_and_a_positive_count():
    posterior = learned.ClassifierConfig((1, 8, 8), 10, channels=(8, 8), hidden=8)
    assert _experiment(posterior=posterior, posterior_draws=3).posterior_draws == 3
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="posterior_draws must be None or a positive int"):
            _experiment(posterior=posterior, posterior_draws=bad)
    with pytest.raises(ValueError, match="needs a posterior"):
        _experiment(posterior_draws=2)


class _Louder(eqx.Module):
    """A noisy classifier with its logits times 100."""

    classifier: eqx.Module

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def __call__(self, x, s, *, key=None):
        return 100.0 * self.classifier(x, s, key=key)


def test_separate_guidance_shares_one_unconditional_unet_that_cancels_from_minde(tmp_path):
    """`guidance_training="separate"`: one unconditional U-Net on all training images and one cross-entropy classifier
    per half; the two networks share the U-Net, their classifiers differ, and the cross-fitted MINDE is the
    classifiers' alone: the same value, to float precision, with the U-Net replaced by zero."""
    data = load_digits().subset(n_train=64)
    guidance = learned.ClassifierConfig((1, 8, 8), 10, channels=(8, 8), hidden=8, steps=3, batch_size=8)
    config = _experiment(guidance=guidance, guidance_training="separate", cross_fit=True, checkpoint_dir=None)
    a, b = train_networks(config, data, tmp_path, key=jax.random.key(0))
    assert (tmp_path / "checkpoint.eqx").exists()  # the one U-Net; its classifiers beside it, resumed the next time
    for n in "ab":  # one folder per classifier, named by its configuration
        assert len(list((tmp_path / "classifiers").glob(f"guidance_{n}-*/checkpoint.eqx"))) == 1
    again = train_networks(config, data, tmp_path, key=jax.random.key(0))
    assert all(eqx.tree_equal(eqx.filter(r.ema_model, eqx.is_array), eqx.filter(s.ema_model, eqx.is_array))
               for r, s in zip((a, b), again))
    for result in (a, b):
        assert isinstance(result.ema_model, learned.ClassifierGuided)
        assert result.ema_model.unconditional.config.num_classes is None and len(result.losses) == 2
    assert eqx.tree_equal(a.ema_model.unconditional, b.ema_model.unconditional)
    assert not eqx.tree_equal(a.ema_model.classifier, b.ema_model.classifier)
    x, y = jnp.asarray(data.test_x[:6]), jnp.asarray(data.test_y[:6])
    kwargs = dict(times=LogSNRGrid(n_times=4, s_min=1e-4), chunk_size=6, key=jax.random.key(1))
    # the classifiers' logits scaled up: after three steps their part of the score is of order 1e-4 against the
    # U-Net's order-1 output, whose float32 rounding (half an ulp) then moves MINDE by up to ~1e-4 relative, by an
    # amount that depends on how the compiler rounds (8e-5 measured with XLA:CPU's older fusion emitter; 4e-8 so)
    a, b = (eqx.tree_at(lambda m: m.classifier, r.ema_model, _Louder(r.ema_model.classifier)) for r in (a, b))
    full = mutual_information_minde_crossfit(a, b, x, y, **kwargs)
    zero = learned.ZeroNetwork(config.sde)
    bare = mutual_information_minde_crossfit(*(learned.ClassifierGuided(zero, m.classifier) for m in (a, b)),
                                             x, y, **kwargs)
    assert full.value > 1e-5
    np.testing.assert_allclose(full.value, bare.value, rtol=1e-5)
    np.testing.assert_allclose(full.stderr, bare.stderr, rtol=1e-4)


def test_separate_guidance_with_a_gaussian_base_fits_each_classifier_on_its_own_half():
    """`gaussian_base` with `guidance_training="separate"`: each classifier adds the gated Gaussian class model of
    its own half (the cross-fit stays a product of two independent fits) and the U-Net stays unconditional."""
    data = load_digits().subset(n_train=200)  # every class at least twice in each half
    guidance = learned.ClassifierConfig((1, 8, 8), 10, channels=(8, 8), hidden=8, steps=3, batch_size=8)
    config = _experiment(guidance=guidance, guidance_training="separate", gaussian_base=4.0, checkpoint_dir=None)
    half = len(data.train_x) // 2
    halves = (slice(0, half), slice(half, 2 * half))
    for result, part in zip(train_networks(config, data, None, key=jax.random.key(0)), halves):
        assert isinstance(result.model.unconditional, learned.EntropyUNet) and result.model.classifier.snr_half == 4.0
        own = learned.ClassGaussians.fit(config.sde, data.train_x[part], data.train_y[part], 10)
        np.testing.assert_array_equal(result.model.classifier.base.means, own.means)
    with pytest.raises(ValueError, match="guidance_training='separate'"):
        _experiment(gaussian_base=4.0, guidance=guidance, guidance_training="joint")


def test_separate_guidance_needs_guidance():
    assert _experiment(guidance=learned.ClassifierConfig((1, 8, 8), 10)).guidance_training == "joint"
    with pytest.raises(ValueError, match="'separate' needs guidance"):
        _experiment(guidance_training="separate")
    with pytest.raises(ValueError, match="guidance_training must be 'joint' or 'separate'"):
        _experiment(guidance=learned.ClassifierConfig((1, 8, 8), 10), guidance_training="apart")


def test_guided_experiment_refuses_a_mismatched_classifier():
    with pytest.raises(ValueError, match="guidance is for images"):
        _experiment(guidance=learned.ClassifierConfig((1, 8, 8), 5)).model_and_loss(key=jax.random.key(0))
    with pytest.raises(ValueError, match="guidance_cross_entropy"):
        _experiment(guidance_cross_entropy=-1.0)


@pytest.mark.slow
def test_images_guided_cross_fit_end_to_end(tmp_path):
    """`--guided --cross-fit`: two ClassifierGuided networks on the two halves of the training images, checkpointed
    apart, and the cross-fitted MINDE reported and bound-checked beside the plug-in one."""
    out = tmp_path / "cf"
    assert main(["images", "--quick", "--guided", "--cross-fit", "--steps", "20", "--n-eval", "8", "--n-times", "4",
                 "--classifier-steps", "10", "--per-class", "1", "--sample-steps", "2", "--no-progress",
                 "--out", str(out)]) == 0
    payload = json.loads((out / "results.json").read_text())
    instance, q = payload["instance"], payload["quantities"]
    assert instance["cross_fit"] and instance["model"].startswith("ClassifierGuided")
    assert instance["n_train_per_network"] == len(load_digits().train_x) // 2
    assert (out / "checkpoints" / "a" / "checkpoint.eqx").exists() and (out / "checkpoints" / "b" / "checkpoint.eqx").exists()
    cross = q["mutual_information"]["minde_crossfit"]
    assert np.isfinite(cross["value"]) and cross["stderr"] > 0
    assert set(cross.get("flags", [])) <= set(q["flags"])


def test_images_posterior_on_the_quick_networks(quick_images):
    """`--posterior-steps` on the quick run's networks (resumed from their checkpoints): a noise-conditional classifier
    adds the time-resolved bounds at the grid's nodes (checked against every MINDE curve) and the posterior-centred
    cross-fit, with its curve, its flags and its panel; `--posterior-draws` centres on drawn labels instead. (The
    commands are the session fixture's "posterior" and "posterior_draws", run after `images --quick`.)"""
    ran = quick_images.ran
    assert ran["posterior"].returncode == 0
    trained = {part: ran["images"].checkpoints[part] for part in "ab"}
    assert {part: ran["posterior"].checkpoints[part] for part in "ab"} == trained  # resumed, not trained again
    out = quick_images.out["posterior"]
    payload = json.loads((out / "results.json").read_text())
    q, curves = payload["quantities"], payload["curves"]
    assert payload["instance"]["posterior"]["steps"] == 10
    centred = q["mutual_information"]["minde_crossfit_centred"]
    assert np.isfinite(centred["value"]) and centred["stderr"] > 0
    assert centred["n_evals"] == 2 * 10 * 32 * 32  # two networks x ten labels per node and image
    assert set(centred.get("flags", [])) <= set(q["flags"])
    resolved = q["bounds"]["time_resolved"]
    assert resolved["times"] == curves["minde_crossfit_centred"]["times"] == curves["minde"]["times"]
    np.testing.assert_allclose(resolved["lower"], resolved["upper"] - np.asarray(resolved["cross_entropy"])
                               - resolved["residual"])
    assert 0 < resolved["residual"] < 0.1 and resolved["upper"] == q["bounds"]["upper"]["value"]
    assert "noisy_classifier_s" in payload["timings_s"] and (out / "rates.png").exists()
    # the same with the mixture drawn: 1 + 2 labels per network, node and image
    assert ran["posterior_draws"].returncode == 0
    payload = json.loads((quick_images.out["posterior_draws"] / "results.json").read_text())
    assert payload["instance"]["posterior_draws"] == 2 and payload["instance"]["preset"] == "quick"
    centred = payload["quantities"]["mutual_information"]["minde_crossfit_centred"]
    assert np.isfinite(centred["value"]) and centred["stderr"] > 0 and centred["n_evals"] == 2 * 3 * 32 * 32


def test_images_gaussian_base_trains_resumes_and_reports(tmp_path):
    """`--gaussian-base` end to end at toy size: the wrapped networks train, checkpoint and resume (the template is
    rebuilt from the same training images), and the report names the model; the estimates are finite."""
    out = tmp_path / "gb"
    argv = ["images", "--quick", "--steps", "4", "--steps-per-call", "2", "--gaussian-base", "4", "--n-eval", "4",
            "--n-times", "4", "--classifier-steps", "4", "--per-class", "1", "--sample-steps", "2", "--no-cross-fit",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    first = json.loads((out / "results.json").read_text())
    assert "ClassGaussianBase (SNR_1/2 = 4.0)" in first["instance"]["model"]
    assert first["instance"]["gaussian_base"] == {"snr_half": 4.0, "rank": 64, "shrinkage": 0.5}
    stamp = (out / "checkpoints" / "checkpoint.eqx").stat().st_mtime_ns
    assert main(argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert (out / "checkpoints" / "checkpoint.eqx").stat().st_mtime_ns == stamp  # resumed, not retrained
    mi, again_mi = first["quantities"]["mutual_information"], again["quantities"]["mutual_information"]
    assert np.isfinite(mi["minde"]["value"]) and mi["minde"]["stderr"] > 0
    assert again_mi["minde"]["value"] == mi["minde"]["value"]  # the same network and keys give the same number
