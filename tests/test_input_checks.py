"""Bad input gets one clear error naming the argument and what was expected, before any work starts (audit).

Each test here failed on the code before it: a config that constructed and failed minutes later (or never), a raw
JAX or NumPy error, or a value silently used as something else.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned
from gaussian_oracle import GaussianMixture, JointGaussian, PiecewiseConstant, VPSDE, cfg_covariance, \
    cfg_mutual_information, cfg_mutual_information_curve
from verify.estimators import GeometricGrid, UniformGrid
from verify.experiments import CFG, DemoConfig, Determinism, Flattening, GaussianExperimentConfig, OracleConfig, \
    SweepConfig, EXPERIMENTS, cfg_table, run_demo, run_instance, run_sweep

SDE = VPSDE()
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def joint():
    return JointGaussian.determinism(3, 2, 1.0, key=jax.random.key(1))


# ---------------------------------------------------------------------------------------------- experiment configs
@pytest.mark.parametrize("kwargs,match", [
    ({"n_eval": -5}, "n_eval must be an integer >= 2"),
    ({"n_eval": 1}, "n_eval must be an integer >= 2"),
    ({"n_times": 0}, "n_times must be a positive integer"),
    ({"n_train": -1}, "n_train must be an integer >= 2"),
    ({"n_train": True}, "n_train must be an integer >= 2"),
    ({"width": 2.5}, "width must be a positive integer"),
    ({"depth": 0}, "depth must be a positive integer"),
    ({"separate_networks": "no"}, "separate_networks must be True or False"),
    ({"precondition": 1}, "precondition must be True or False"),
    ({"condition_dropout": 1.0}, r"condition_dropout must be a float in \(0, 1\)"),
    ({"condition_dropout": math.nan}, r"condition_dropout must be a float in \(0, 1\)"),
    ({"train": {"steps": 10}}, "train must be a learned.TrainConfig"),
])
def test_gaussian_experiment_config_refuses(kwargs, match):
    with pytest.raises(ValueError, match=r"GaussianExperimentConfig\." + match):
        GaussianExperimentConfig(**kwargs)


@pytest.mark.parametrize("make,match", [
    (lambda: Determinism(sigma_eps=(1.0, -0.5)), r"Determinism.sigma_eps must be .*> 0.*-0.5"),
    (lambda: Determinism(sigma_eps=0.5), r"Determinism.sigma_eps must be a non-empty tuple"),
    (lambda: Determinism(sigma_eps=()), r"Determinism.sigma_eps must be a non-empty tuple"),
    (lambda: Determinism(sigma_eps=(1.0, math.inf)), r"Determinism.sigma_eps must be .*finite"),
    (lambda: Determinism(sigma_eps=(1.0, 1.0)), r"Determinism.sigma_eps must not repeat"),
    (lambda: Determinism(sigma_eps=(True,)), r"Determinism.sigma_eps must be"),
    (lambda: Determinism(dim_x=0), r"Determinism.dim_x must be a positive integer"),
    (lambda: Flattening(dim_x=2, k=5), r"Flattening.k must be an integer in 1..dim_x = 2 .*; got 5"),
    (lambda: Flattening(lambda_delta=(0.1, 0.0)), r"Flattening.lambda_delta must be .*> 0"),
    (lambda: Flattening(sigma_eps=-1.0), r"Flattening.sigma_eps must be a finite number > 0"),
    (lambda: CFG(w=(math.nan,)), r"CFG.w must be .*finite"),
    (lambda: CFG(w=()), r"CFG.w must be a non-empty tuple"),
    (lambda: CFG(s_end=0.0), r"CFG.s_end must be a number in \(0, T\)"),
    (lambda: CFG(dim_y=-1), r"CFG.dim_y must be a positive integer"),
])
def test_family_refuses(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_families_keep_their_defaults():
    for family in (Determinism(), Flattening(), CFG(), CFG(w=(-1.0, 0, 2))):
        assert family.values()


@pytest.mark.parametrize("make,match", [
    (lambda: SweepConfig(Determinism(), resume="nope"), r"SweepConfig.resume must be one of 'auto', 'overwrite'"),
    (lambda: SweepConfig("determinism"), r"SweepConfig.family must be a family such as Determinism\(\)"),
    (lambda: SweepConfig(Determinism), r"SweepConfig.family must be a family"),
    (lambda: SweepConfig(Determinism(), fit=None), r"SweepConfig.fit must be a GaussianExperimentConfig"),
    (lambda: SweepConfig(Determinism(), checkpoint_dir=3), r"SweepConfig.checkpoint_dir must be a path or None"),
    (lambda: DemoConfig(sigma_eps=0.0), r"DemoConfig.sigma_eps must be a finite number > 0"),
    (lambda: DemoConfig(dim_x=2.0), r"DemoConfig.dim_x must be a positive integer"),
    (lambda: DemoConfig(resume="yes"), r"DemoConfig.resume must be one of"),
    (lambda: DemoConfig(fit=GaussianExperimentConfig(n_eval=1)), r"GaussianExperimentConfig.n_eval"),
    (lambda: OracleConfig(sigma_eps=True), r"sigma_eps must be a finite number > 0"),
])
def test_run_configs_refuse(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_runs_refuse_an_integer_seed_before_any_work(tmp_path, joint):
    """An integer key failed inside JAX (`fold_in`), or, for `run_instance`, after sampling the training data."""
    fit = GaussianExperimentConfig(n_train=8, n_eval=4, width=4, depth=1, n_times=2)
    calls = (
        lambda: run_sweep(SweepConfig(Determinism(2, 1, (1.0,)), fit), tmp_path / "sweep", key=0),
        lambda: run_demo(DemoConfig(2, 1, 1.0, fit), tmp_path / "demo", key=0),
        lambda: run_instance(joint, {}, fit, tmp_path / "instance", experiment="x", key=0),
        lambda: EXPERIMENTS["oracle"].run(OracleConfig(2, 1, n_times=3, n_cfg=0), tmp_path / "oracle", key=0),
        lambda: cfg_table(3, (2,), (0.0, 1.0), key=0),
    )
    for call in calls:
        with pytest.raises(ValueError, match="key must be a single JAX PRNG key"):
            call()
    assert not any(tmp_path.iterdir())


def test_runs_refuse_a_config_of_another_kind(tmp_path):
    with pytest.raises(ValueError, match="config must be a SweepConfig"):
        run_sweep(DemoConfig(), tmp_path, key=KEY)
    with pytest.raises(ValueError, match="config must be a DemoConfig"):
        run_demo(SweepConfig(Determinism()), tmp_path, key=KEY)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- learned keys
def _mlp(dim_x=2, **kw):
    return learned.EntropyMLP(learned.MLPConfig(dim_x=dim_x, width=8, depth=1, **kw), SDE, key=KEY)


_IMAGE = (1, 4, 4)
_CLASSIFIER = learned.ClassifierConfig(_IMAGE, 3, channels=(2, 2), hidden=4)
_UNET = learned.UNetConfig(image_shape=_IMAGE, channels=4, channel_mult=(1,), num_res_blocks=1,
                           attention_resolutions=(), num_groups=2)


def _guided():
    classifier = learned.NoisyMLPClassifier(2, 3, SDE, width=4, depth=1, key=KEY)
    return learned.ClassifierGuided(learned.ZeroNetwork(SDE), classifier)


@pytest.mark.parametrize("call", [
    lambda k: learned.EntropyMLP(learned.MLPConfig(dim_x=2, width=8, depth=1), SDE, key=k),
    lambda k: learned.EntropyUNet(_UNET, SDE, key=k),
    lambda k: learned.ConvEncoder(learned.EncoderConfig(_IMAGE, 2, channels=(2,), hidden=4), key=k),
    lambda k: learned.VAE(learned.LinearEncoder(np.ones((1, 2)), 1.0), key=k),
    lambda k: learned.ConvClassifier(_CLASSIFIER, key=k),
    lambda k: learned.NoisyClassifier(_CLASSIFIER, SDE, key=k),
    lambda k: learned.NoisyMLPClassifier(2, 3, SDE, key=k),
    lambda k: _guided()(jnp.zeros(2), 0.5, 1, key=k),
    lambda k: learned.LinearEncoder(np.ones((1, 2)), 1.0).sample(jnp.zeros(2), key=k),
    lambda k: learned.encode_batch(learned.VAE(learned.LinearEncoder(np.ones((1, 2)), 1.0), key=KEY),
                                   np.zeros((3, 2), np.float32), key=k),
    lambda k: learned.noisy_cross_entropy_curve(learned.NoisyMLPClassifier(2, 3, SDE, key=KEY), SDE,
                                                np.zeros((4, 2)), np.zeros(4, int), [0.5], key=k),
], ids=["EntropyMLP", "EntropyUNet", "ConvEncoder", "VAE", "ConvClassifier", "NoisyClassifier", "NoisyMLPClassifier",
        "ClassifierGuided", "encoder.sample", "encode_batch", "noisy_cross_entropy_curve"])
@pytest.mark.parametrize("key", [0, jax.random.split(KEY, 2)], ids=["int", "batch"])
def test_learned_entry_points_refuse_a_bad_key(call, key):
    with pytest.raises(ValueError, match="key must be a single JAX PRNG key"):
        call(key)


def test_learned_entry_points_take_both_kinds_of_key():
    for key in (KEY, jax.random.PRNGKey(0)):
        learned.EntropyMLP(learned.MLPConfig(dim_x=2, width=8, depth=1), SDE, key=key)
        assert _guided()(jnp.zeros(2), 0.5, 1, key=key).shape == (2,)


# ---------------------------------------------------------------------------------------------- other learned inputs
def test_likelihood_refuses_a_non_vpsde():
    with pytest.raises(ValueError, match=r"Likelihood.sde must be a VPSDE .*; got None"):
        learned.Likelihood(None)


def test_pair_refuses_networks_of_different_widths():
    with pytest.raises(ValueError, match=r"Pair: both networks must take inputs of one shape; .*\(3,\).*\(4,\)"):
        learned.Pair(_mlp(3), _mlp(4, dim_y=2))
    with pytest.raises(ValueError, match="Pair.conditional must be a protocol model"):
        learned.Pair(_mlp(3), None)


def test_preconditioned_fit_refuses_conditions_of_another_width():
    net = _mlp(2, dim_y=2)
    x, y = np.random.default_rng(0).normal(size=(2, 50, 2))
    learned.Preconditioned.fit(net, x, y)
    with pytest.raises(ValueError, match=r"data_y must have shape \(batch, 2\) .*dim_y = 2.*got \(50, 3\)"):
        learned.Preconditioned.fit(net, x, np.ones((50, 3)))
    with pytest.raises(ValueError, match=r"data_x must have shape \(batch, 2\) .*dim_x = 2.*got \(50, 3\)"):
        learned.Preconditioned.fit(net, np.ones((50, 3)), y)
    with pytest.raises(ValueError, match="centre must be True or False"):
        learned.Preconditioned.fit(net, x, y, centre="no")


# ---------------------------------------------------------------------------------------------- oracle: CFG
def test_cfg_refuses_a_joint_that_is_not_a_joint_gaussian():
    mixture = GaussianMixture(np.ones(1), np.zeros((1, 2)), np.eye(2)[None])
    for joint in (mixture, None):
        with pytest.raises(ValueError, match="joint must be a gaussian_oracle.JointGaussian"):
            cfg_mutual_information(joint, 1.0)
        with pytest.raises(ValueError, match="joint must be a gaussian_oracle.JointGaussian"):
            cfg_covariance(joint, 1.0)


def test_cfg_refuses_empty_w_and_non_bool_exact_start(joint):
    with pytest.raises(ValueError, match="w must hold at least one guidance strength"):
        cfg_mutual_information(joint, np.array([]))
    for call in (lambda: cfg_mutual_information(joint, 1.0, exact_start="no"),
                 lambda: cfg_covariance(joint, 1.0, exact_start=1),
                 lambda: cfg_mutual_information_curve(joint, 1.0, 0.5, exact_start=None)):
        with pytest.raises(ValueError, match="exact_start must be True or False"):
            call()


# ---------------------------------------------------------------------------------------------- oracle: time densities
@pytest.mark.parametrize("call,match", [
    (lambda: PiecewiseConstant.log_uniform(1.0, s_min=0.0), r"s_min must lie in \(0, T\) = \(0, 1.0\) .*; got 0.0"),
    (lambda: PiecewiseConstant.log_uniform(1.0, s_min=2.0), r"s_min must lie in \(0, T\)"),
    (lambda: PiecewiseConstant.log_uniform(1.0, n_bins=2.5), "n_bins must be a positive integer; got 2.5"),
    (lambda: PiecewiseConstant.log_uniform(1.0, n_bins=0), "n_bins must be a positive integer; got 0"),
    (lambda: PiecewiseConstant.log_uniform(-1.0), "T must be > 0"),
    (lambda: PiecewiseConstant.uniform(math.inf), "T must be finite"),
    (lambda: PiecewiseConstant([0.0, 0.5, 1.0], ["a", "b"]), "probs must hold real numbers"),
    (lambda: PiecewiseConstant([0.0, 1j], [1.0]), "edges must hold real numbers"),
    (lambda: PiecewiseConstant([0.0, math.inf], [1.0]), "edges must be finite"),
    (lambda: PiecewiseConstant.fit([0.2, 0.5], [1.0, 1.0], T="1"), "T must hold real numbers"),
    (lambda: PiecewiseConstant.fit([0.2, 0.5], ["1", "2"], T=1.0), "profile must hold real numbers"),
    (lambda: PiecewiseConstant.fit([0.2, 0.5], [1.0, 1.0], T=1.0, floor="x"), "floor must hold real numbers"),
])
def test_piecewise_constant_refuses(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_piecewise_constant_keeps_valid_input():
    assert PiecewiseConstant.log_uniform(2, s_min=1e-3, n_bins=np.int64(4)).T == 2.0
    assert PiecewiseConstant([0, 1], [1]).T == 1.0


# ---------------------------------------------------------------------------------------------- integrators
def test_grids_refuse_a_non_bool_trapezoid_and_infinite_s_min():
    with pytest.raises(ValueError, match="UniformGrid.trapezoid must be True or False; got 'no'"):
        UniformGrid(trapezoid="no")
    with pytest.raises(ValueError, match="UniformGrid.s_min must be a finite number >= 0"):
        UniformGrid(s_min=math.inf)
    with pytest.raises(ValueError, match="GeometricGrid.s_min must be a finite number > 0"):
        GeometricGrid(s_min=math.inf)


def test_check_labels_refuses_a_label_out_of_range_eagerly_and_compiled():
    """`gaussian_oracle.check_labels` (the classifier losses and the class means use it): a batch of labels comes back
    unchanged, and one label outside 0..K-1 anywhere in it is refused, eagerly and under jit, never clipped."""
    from gaussian_oracle import check_labels

    good = jnp.array([0, 2, 1])
    assert np.array_equal(check_labels(good, 3, "three classes"), good)
    for bad in (-1, 3):
        labels = jnp.array([0, bad, 1])
        with pytest.raises(eqx.EquinoxRuntimeError, match=r"unknown label: y must lie in 0..2, three classes"):
            jax.block_until_ready(check_labels(labels, 3, "three classes"))
        with pytest.raises(eqx.EquinoxRuntimeError, match=r"unknown label: y must lie in 0..2, three classes"):
            jax.block_until_ready(eqx.filter_jit(lambda y: check_labels(y, 3, "three classes"))(labels))
