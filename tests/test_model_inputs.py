"""One input rule for every protocol model: times in [0, T] and labels in 0..K-1, never clipped or extrapolated.

Concrete bad input raises a `ValueError` at once; traced bad input (jit, vmap, training) raises an
`EquinoxRuntimeError` when the computation runs. Parametrised over every model that satisfies the protocol.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned as L
from gaussian_oracle import GaussianMixture, JointGaussian, VPSDE

# T = 0.3 is not a float32 number: float32(0.3) > 0.3, so this also checks that the rule compares in s's dtype.
SDE = VPSDE(0.1, 16.0, 0.3)
T = SDE.T
NUM_CLASSES = 4
TIME_RULE = r"s must lie in \[0, T\] = \[0, 0.3\]"
LABEL_RULE = r"unknown label.*y must lie in 0\.\.3 \(num_classes=4\)"


def _mlp(**kwargs):
    config = L.MLPConfig(dim_x=3, width=8, depth=1, embed_width=8, num_frequencies=2, **kwargs)
    return L.EntropyMLP(config, SDE, key=jax.random.key(0))


def _unet():
    config = L.UNetConfig(image_shape=(1, 4, 4), channels=8, channel_mult=(1,), num_res_blocks=1,
                          attention_resolutions=(), embed_dim=16, num_classes=NUM_CLASSES, num_groups=4)
    return L.EntropyUNet(config, SDE, key=jax.random.key(1))


def _joint():
    return JointGaussian(np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]]), np.ones((2, 3)), 0.5, SDE)


def _mixture():
    means = np.arange(3 * NUM_CLASSES, dtype=float).reshape(NUM_CLASSES, 3) / 5
    return GaussianMixture(np.full(NUM_CLASSES, 1 / NUM_CLASSES), means, np.stack([np.eye(3)] * NUM_CLASSES), SDE)


def _models():
    """(name, model, one x, one valid y or None, whether y is a label)."""
    x3 = np.array([0.3, -0.2, 1.0])
    labelled = _mlp(num_classes=NUM_CLASSES)
    evecs, evals = jnp.eye(3, dtype=jnp.float32), jnp.array([0.5, 1.0, 2.0], jnp.float32)
    return [
        ("mlp-label", labelled, x3, 2, True),
        ("mlp-vector", _mlp(dim_y=2), x3, np.array([0.1, 0.2]), False),
        ("mlp-unconditional", _mlp(), x3, None, False),
        ("unet", _unet(), np.ones((1, 4, 4)), 1, True),
        ("preconditioned", L.Preconditioned(labelled, evecs, evals), x3, 3, True),
        ("pair", L.Pair(_mlp(), labelled), x3, 0, True),
        ("joint", _joint().model(), x3, np.array([0.1, 0.2]), False),
        ("mixture", _mixture().model(), x3, 1, True),
    ]


MODELS = _models()
IDS = [m[0] for m in MODELS]
LABELLED = [m for m in MODELS if m[4]]


def _batched(model, y):
    """The vmapped, jitted call of every estimator and training step; `y` is a batch or None."""
    if y is None:
        return eqx.filter_jit(jax.vmap(lambda m, x, s: m(x, s), in_axes=(None, 0, 0)))
    return eqx.filter_jit(jax.vmap(lambda m, x, s, y: m(x, s, y), in_axes=(None, 0, 0, 0)))


def _call_batch(model, x, s, y, labels=None):
    """`model` on copies of `x` at the times `s`, with `y` repeated (or the batch of `labels`)."""
    xs = jnp.stack([jnp.asarray(x)] * len(s))
    if labels is not None:
        ys = labels
    elif y is None:
        return jax.block_until_ready(_batched(model, None)(model, xs, s))
    else:
        ys = jnp.stack([jnp.asarray(y)] * len(s))
    return jax.block_until_ready(_batched(model, ys)(model, xs, s, ys))


# ------------------------------------------------------------------ times
@pytest.mark.parametrize("name, model, x, y, _", MODELS, ids=IDS)
def test_times_in_range_are_accepted(name, model, x, y, _):
    for s in (0.0, T, np.float32(T), jnp.asarray(T, jnp.float32), 0, 0.5 * T):
        assert np.all(np.isfinite(model(x, s, y) if y is not None else model(x, s)))
    grid = jnp.linspace(0.0, T, 4, dtype=jnp.float32)  # ends at float32(T) > T in float64: still inside
    assert np.all(np.isfinite(_call_batch(model, x, grid, y)))


@pytest.mark.parametrize("s", [-1e-3, T + 1e-6, 1.5, np.nan, np.inf, np.float32(-0.0001)])
@pytest.mark.parametrize("name, model, x, y, _", MODELS, ids=IDS)
def test_times_outside_are_refused_eagerly(name, model, x, y, _, s):
    with pytest.raises(ValueError, match=TIME_RULE):
        model(x, s) if y is None else model(x, s, y)


@pytest.mark.parametrize("bad", [1.5, np.nan])
@pytest.mark.parametrize("name, model, x, y, _", MODELS, ids=IDS)
def test_times_outside_are_refused_under_jit_and_vmap(name, model, x, y, _, bad):
    s = jnp.array([0.1, bad, 0.2])
    with pytest.raises(eqx.EquinoxRuntimeError, match=TIME_RULE):
        _call_batch(model, x, s, y)


def test_check_time_is_the_one_rule():
    sde = VPSDE(T=2.0)
    for s in (0, 2, 1.5, np.array([0.0, 2.0]), jnp.float32(2.0)):
        assert sde.check_time(s) is s  # concrete times come back untouched, not converted
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\] = \[0, 2.0\].*got 3.0"):
        sde.check_time(np.array([1.0, 3.0]), "t")
    with pytest.raises(ValueError, match="got nan"):
        sde.check_time(float("nan"))
    for bad in (True, 1j, "0.5", np.array([0.5 + 0j])):
        with pytest.raises(ValueError, match="real time"):
            sde.check_time(bad)
    checked = eqx.filter_jit(sde.check_time)
    np.testing.assert_array_equal(checked(jnp.array([0.0, 1.0, 2.0])), [0.0, 1.0, 2.0])
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"s must lie in \[0, T\]"):
        jax.block_until_ready(checked(jnp.array([0.0, 2.5])))
    with pytest.raises(Exception, match=r"s must lie in \[0, T\]"):  # plain jax.jit reports it as a JAX error
        jax.block_until_ready(jax.jit(sde.check_time)(jnp.array([jnp.nan])))
    # the closed-form curves follow the same rule (float64 results)
    assert sde.check_times(np.float32(1.0)).dtype == np.float64
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        sde.check_times([0.5, 2.5])


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize("bad", [NUM_CLASSES, NUM_CLASSES + 7, 100, -1])
@pytest.mark.parametrize("name, model, x, y, _", LABELLED, ids=[m[0] for m in LABELLED])
def test_labels_out_of_range_are_refused_eagerly(name, model, x, y, _, bad):
    """Regression: label K (or 100) of a K-class network was silently the last class, -1 the first."""
    with pytest.raises(ValueError, match=LABEL_RULE):
        model(x, 0.1, bad)
    with pytest.raises(ValueError, match=LABEL_RULE):
        model(x, 0.1, jnp.asarray(bad, jnp.int32))


@pytest.mark.parametrize("name, model, x, y, _", LABELLED, ids=[m[0] for m in LABELLED])
def test_labels_out_of_range_are_refused_under_jit_and_vmap(name, model, x, y, _):
    s = jnp.full(3, 0.1)
    assert np.all(np.isfinite(_call_batch(model, x, s, y, jnp.array([0, NUM_CLASSES - 1, 1]))))
    for bad in (NUM_CLASSES, -1):
        with pytest.raises(eqx.EquinoxRuntimeError, match="unknown label.*num_classes=4"):
            _call_batch(model, x, s, y, jnp.array([0, bad, 1]))


@pytest.mark.parametrize("model", [MODELS[0][1], MODELS[3][1]], ids=["mlp", "unet"])
def test_dropout_does_not_make_a_bad_label_valid(model):
    """The null label is reached only through y=None or drop=True, and drop does not excuse a bad label."""
    x = MODELS[0][2] if isinstance(model, L.EntropyMLP) else MODELS[3][2]
    np.testing.assert_array_equal(model(x, 0.1, 2, drop=True), model(x, 0.1))
    with pytest.raises(ValueError, match=LABEL_RULE):
        model(x, 0.1, NUM_CLASSES, drop=True)
    f = eqx.filter_jit(jax.vmap(lambda m, y, d: m(x, 0.1, y, drop=d), in_axes=(None, 0, 0)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="unknown label"):
        jax.block_until_ready(f(model, jnp.array([0, NUM_CLASSES]), jnp.array([False, True])))


@pytest.mark.parametrize("bad", [1.0, True, np.array([0, 1])])
def test_label_type_is_checked(bad):
    with pytest.raises(ValueError, match="integer label"):
        MODELS[0][1](MODELS[0][2], 0.1, bad)


def test_loss_and_training_step_refuse_bad_labels():
    """The loss (vmapped) and a training step (jitted gradient) stop on a bad label instead of using class K-1."""
    model = MODELS[0][1]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((16, 3)), jnp.float32)
    y = rng.integers(0, NUM_CLASSES, 16).astype(np.int32)
    loss = L.DEMLoss(condition_dropout=0.1)
    step = eqx.filter_jit(eqx.filter_value_and_grad(lambda m, x, y, key: loss(m, x, y, key=key)))
    value, _ = step(model, x, jnp.asarray(y), jax.random.key(0))
    assert np.isfinite(value)
    y[5] = NUM_CLASSES
    with pytest.raises(eqx.EquinoxRuntimeError, match="unknown label"):
        jax.block_until_ready(loss(model, x, jnp.asarray(y), key=jax.random.key(0)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="unknown label"):
        jax.block_until_ready(step(model, x, jnp.asarray(y), jax.random.key(1)))
