"""EntropyUNet: shapes, protocol, null label, latent conditioning, mixed precision, presets' size and cost."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned as L
from gaussian_oracle import VPSDE
from verify import EntropyModel

SDE = VPSDE(0.1, 16.0, 1.0)
TINY = L.UNetConfig(image_shape=(2, 8, 8), channels=8, channel_mult=(1, 2), num_res_blocks=1,
                    attention_resolutions=(4,), embed_dim=16, num_classes=3, num_groups=4, num_heads=2)


def _randomised(model, scale=0.1, seed=0):
    """A copy with every parameter perturbed (the zero-initialised output layers would hide everything)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda a: jnp.asarray(np.asarray(a) + scale * rng.standard_normal(a.shape), a.dtype) if eqx.is_inexact_array(a) else a,
        model)


@eqx.filter_jit
def _call(model, x, s, y, latent=None, drop=False):
    return jax.vmap(lambda xi, si, yi: model(xi, si, yi, latent=latent, drop=drop))(x, s, y)


@eqx.filter_jit
def _call_null(model, x, s):
    return jax.vmap(lambda xi, si: model(xi, si, None))(x, s)


def test_shapes_protocol_and_zero_start(key):
    model = L.EntropyUNet(TINY, SDE, key=key)
    assert isinstance(model, EntropyModel)
    x = jax.random.normal(key, (3, *TINY.image_shape))
    s = jnp.array([0.01, 0.3, 0.9])
    y = jnp.array([0, 1, 2])
    e = _call(model, x, s, y)
    assert e.shape == x.shape and e.dtype == jnp.float32
    np.testing.assert_array_equal(e, 0.0)  # zero-initialised residual branches and output: e = 0 at the start
    e = _call(_randomised(model), x, s, y)
    assert np.all(np.isfinite(e)) and np.abs(e).max() > 1e-3
    # one sample at a time equals the vmapped batch
    np.testing.assert_allclose(_randomised(model)(x[1], s[1], y[1]), e[1], rtol=1e-5, atol=1e-6)


def test_null_label_and_dropout_flag(key):
    model = _randomised(L.EntropyUNet(TINY, SDE, key=key))
    x = jax.random.normal(key, (3, *TINY.image_shape))
    s = jnp.full(3, 0.2)
    y = jnp.array([0, 1, 2])
    e_null = _call_null(model, x, s)
    e_drop = _call(model, x, s, y, drop=True)
    np.testing.assert_allclose(e_drop, e_null, rtol=1e-6, atol=1e-6)
    e_y = _call(model, x, s, y)
    assert np.abs(e_y - e_null).max() > 1e-3  # labels change the output
    e_other = _call(model, x, s, (y + 1) % 3)
    assert np.abs(e_y - e_other).max() > 1e-3
    with pytest.raises(ValueError, match="integer class label"):
        model(x[0], 0.2, jnp.array([1, 2]))
    unconditional = L.EntropyUNet(TINY.__class__(**{**TINY.__dict__, "num_classes": None}), SDE, key=key)
    with pytest.raises(ValueError, match="no label input"):
        unconditional(x[0], 0.2, 1)


def test_latent_conditioning(key):
    cfg = L.UNetConfig(image_shape=(1, 4, 4), channels=8, channel_mult=(1,), num_res_blocks=1, attention_resolutions=(),
                       embed_dim=16, num_classes=None, dim_latent=5, num_groups=4)
    model = _randomised(L.EntropyUNet(cfg, SDE, key=key))
    x = jax.random.normal(key, (1, 1, 4, 4))
    z1, z2 = jnp.ones(5), -jnp.ones(5)
    f = eqx.filter_jit(lambda m, z, d: m(x[0], 0.3, latent=z, drop=d))
    g = eqx.filter_jit(lambda m: m(x[0], 0.3))
    assert np.abs(f(model, z1, False) - f(model, z2, False)).max() > 1e-3
    np.testing.assert_allclose(f(model, z1, True), g(model), rtol=1e-6, atol=1e-6)  # drop -> null latent
    with pytest.raises(ValueError, match="latent must have shape"):
        model(x[0], 0.3, latent=jnp.ones(4))
    with pytest.raises(ValueError, match="no latent input"):
        L.EntropyUNet(TINY, SDE, key=key)(jnp.zeros(TINY.image_shape), 0.3, latent=z1)


def test_input_and_config_errors(key):
    model = L.EntropyUNet(TINY, SDE, key=key)
    with pytest.raises(ValueError, match="shape"):
        model(jnp.zeros((2, 8, 9)), 0.3)
    with pytest.raises(ValueError, match="scalar time"):
        model(jnp.zeros(TINY.image_shape), jnp.zeros(2))
    with pytest.raises(ValueError, match="divisible"):
        L.UNetConfig(image_shape=(1, 28, 28), channel_mult=(1, 2, 2, 2))
    with pytest.raises(ValueError, match="num_heads"):
        L.UNetConfig(image_shape=(1, 8, 8), channels=6, num_heads=4)
    with pytest.raises(ValueError, match="dropout"):
        L.UNetConfig(image_shape=(1, 8, 8), dropout=1.0)
    with pytest.raises(ValueError, match="UNetConfig"):
        L.EntropyUNet({"channels": 8}, SDE, key=key)


def test_bfloat16_compute_tracks_float32(key):
    model32 = _randomised(L.EntropyUNet(TINY, SDE, key=key), scale=0.05)
    cfg16 = L.UNetConfig(**{**TINY.__dict__, "compute_dtype": jnp.bfloat16})
    model16 = _randomised(L.EntropyUNet(cfg16, SDE, key=key), scale=0.05)  # the same parameters, bf16 compute
    x = jax.random.normal(key, (4, *TINY.image_shape))
    s = jnp.linspace(0.05, 0.9, 4)
    y = jnp.array([0, 1, 2, 0])
    for a, b in zip(jax.tree.leaves(eqx.filter(model32, eqx.is_array)), jax.tree.leaves(eqx.filter(model16, eqx.is_array))):
        np.testing.assert_array_equal(a, b)
    e32, e16 = _call(model32, x, s, y), _call(model16, x, s, y)
    assert e16.dtype == jnp.float32  # the output is float32 whatever the compute dtype
    rel = np.linalg.norm(e16 - e32) / np.linalg.norm(e32)
    assert 0 < rel < 0.05  # bfloat16 has an 8-bit mantissa: a few per mille per op, percent-level overall
    params = [a for a in jax.tree.leaves(model16) if eqx.is_inexact_array(a)]
    assert all(a.dtype == jnp.float32 for a in params)  # parameters stay float32


def test_cifar_reference_size_and_cost():
    """Counted without allocating: ~42.1M parameters (the reference Flax U-Net) and ~25 GFLOP per forward image."""
    cfg = L.UNetConfig.cifar10_reference()
    shape = eqx.filter_eval_shape(L.EntropyUNet, cfg, SDE, key=jax.random.key(0))
    count = L.parameter_count(shape)
    assert abs(count - 42.1e6) < 0.05e6, count
    flops = L.unet_forward_flops(cfg)
    assert 24e9 < flops < 26e9, flops  # DESIGN.md: about 25 GFLOP forward per 32 x 32 image
    small = L.parameter_count(eqx.filter_eval_shape(L.EntropyUNet, L.UNetConfig.mnist_small(), SDE, key=jax.random.key(0)))
    assert 1e6 < small < 3e6


def test_flop_count_matches_xla_cost_analysis(key):
    """Cross-check the hand count against XLA's CPU cost analysis, which counts only the in-bounds taps of a padded
    3 x 3 convolution (about 8 % fewer on a 16 x 16 image) and also elementwise work, so it lands a little below."""
    cfg = L.UNetConfig(image_shape=(3, 16, 16), channels=32, channel_mult=(1, 1), num_res_blocks=2,
                       attention_resolutions=(8,), embed_dim=64, num_classes=None, num_groups=4)
    model = L.EntropyUNet(cfg, SDE, key=key)
    analysed = jax.jit(lambda x: model(x, 0.3)).lower(jnp.zeros(cfg.image_shape, jnp.float32)).compile().cost_analysis()
    analysed = analysed[0] if isinstance(analysed, list) else analysed
    ratio = analysed["flops"] / L.unet_forward_flops(cfg)
    assert 0.85 < ratio <= 1.0, ratio


def _layers(model):
    is_layer = lambda node: isinstance(node, (eqx.nn.Linear, eqx.nn.Conv2d))
    return [node for node in jax.tree.leaves(model, is_leaf=is_layer) if is_layer(node)]


def test_initialisation_is_equinox_default_with_zero_branches(key):
    """Explicit per-layer initialisation: U(+-1/sqrt(fan-in)) for linear and conv layers, N(0, 1) embeddings,
    GroupNorm (1, 0), and zero for the last layer of every residual branch, the output conv and the null latent."""
    from scipy import stats

    cfg = L.UNetConfig(image_shape=(2, 8, 8), channels=16, channel_mult=(1, 2), num_res_blocks=1,
                       attention_resolutions=(4,), embed_dim=32, num_classes=40, dim_latent=4, num_groups=4)
    model = L.EntropyUNet(cfg, SDE, key=key)
    levels = (*model.down, *model.up)
    blocks = [b for level in levels for b in level.blocks] + [model.middle[0], model.middle[2]]
    attentions = [a for level in levels for a in level.attentions if a is not None] + [model.middle[1]]
    zero = [b.conv2 for b in blocks] + [a.proj for a in attentions] + [model.conv_out]
    assert len(blocks) == 8 and len(attentions) == 4
    for layer in zero:
        np.testing.assert_array_equal(layer.weight, 0.0)
        np.testing.assert_array_equal(layer.bias, 0.0)
    np.testing.assert_array_equal(model.latent_null, 0.0)
    random = [layer for layer in _layers(model) if all(layer is not z for z in zero)]
    assert len(random) == len(_layers(model)) - len(zero) > 20
    scaled = []
    for layer in random:
        bound = 1.0 / np.sqrt(np.prod(layer.weight.shape[1:]))  # fan-in: in_features, or in_channels * kernel area
        for p in (layer.weight, layer.bias):
            assert p.dtype == jnp.float32 and np.abs(p).max() <= bound
            scaled.append(np.ravel(p) / bound)
    scaled = np.concatenate(scaled)
    assert stats.kstest(scaled, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    labels = np.ravel(model.label_embed.weight)
    assert model.label_embed.weight.shape == (41, 32)
    assert stats.kstest(labels, stats.norm.cdf).pvalue > 1e-3
    norms = [n for n in jax.tree.leaves(model, is_leaf=lambda n: isinstance(n, L._unet._GroupNorm))
             if isinstance(n, L._unet._GroupNorm)]
    assert len(norms) == 2 * len(blocks) + len(attentions) + 1
    for norm in norms:
        np.testing.assert_array_equal(norm.weight, 1.0)
        np.testing.assert_array_equal(norm.bias, 0.0)
    # every layer draws its own numbers, a key gives one network, another key another
    firsts = [float(layer.weight.ravel()[0]) for layer in random]
    assert len(set(firsts)) == len(firsts)
    again, other = L.EntropyUNet(cfg, SDE, key=key), L.EntropyUNet(cfg, SDE, key=jax.random.fold_in(key, 1))
    for a, b, c in zip(*(jax.tree.leaves(eqx.filter(m, eqx.is_array)) for m in (model, again, other))):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(jax.tree.leaves(eqx.filter(model, eqx.is_array)),
                                                          jax.tree.leaves(eqx.filter(other, eqx.is_array))))
    # building under eval_shape gives the same structure (parameter_count of a preset without allocating)
    shape = eqx.filter_eval_shape(L.EntropyUNet, cfg, SDE, key=key)
    assert jax.tree.structure(shape) == jax.tree.structure(model)
    assert L.parameter_count(shape) == L.parameter_count(model)


def test_unet_labels_are_not_clipped(key):
    """Regression: label num_classes (or 100) was silently the last class, -1 the first (see test_model_inputs)."""
    model = _randomised(L.EntropyUNet(TINY, SDE, key=key))
    x = jnp.zeros(TINY.image_shape)
    for bad in (3, 100, -1):
        with pytest.raises(ValueError, match=r"unknown label .*0\.\.2 \(num_classes=3\)"):
            model(x, 0.2, bad)
    with pytest.raises(eqx.EquinoxRuntimeError, match="unknown label"):
        _call(model, jnp.stack([x, x]), jnp.array([0.1, 0.2]), jnp.array([0, 3]))
    with pytest.raises(ValueError, match=r"s must lie in \[0, T\]"):
        model(x, 1.5, 0)
