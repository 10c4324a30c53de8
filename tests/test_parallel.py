"""Data parallelism: on 4 forced host devices, `train(..., parallel=DataParallel.over())` splits every batch across the
devices (the compiled step holds an all-reduce) and reproduces the single-device run to float tolerance."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

import learned as L
from gaussian_oracle import VPSDE

SCRIPT = textwrap.dedent(
    """
    import re
    import jax, jax.numpy as jnp, numpy as np, equinox as eqx
    import learned as L
    from learned import _train
    from gaussian_oracle import VPSDE

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 6)).astype(np.float32)
    y = rng.integers(0, 3, 256)
    net = L.EntropyMLP(L.MLPConfig(dim_x=6, num_classes=3, width=32, depth=2, embed_width=16), VPSDE(), key=jax.random.key(0))
    cfg = L.TrainConfig(steps=12, batch_size=32, lr=1e-3, steps_per_call=4, checkpoint_every=4, progress=False)
    loss = L.DEMLoss(condition_dropout=0.2)
    single = L.train(net, x, y, config=cfg, loss=loss, key=jax.random.key(1))
    parallel = L.DataParallel.over()
    multi = L.train(net, x, y, config=cfg, loss=loss, parallel=parallel, key=jax.random.key(1))

    a = jax.tree.leaves(eqx.filter(single.ema_model, eqx.is_inexact_array))
    b = jax.tree.leaves(eqx.filter(multi.ema_model, eqx.is_inexact_array))
    worst = max(float(jnp.max(jnp.abs(u - v)) / (float(jnp.max(jnp.abs(u))) + 1e-12)) for u, v in zip(a, b))
    moved = max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(a, jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array))))
    np.testing.assert_allclose(multi.losses, single.losses, rtol=1e-4, atol=1e-5)
    assert moved > 1e-3, moved          # training did move the weights
    assert worst < 1e-4, worst          # and both runs agree to float32 tolerance
    assert len(b[0].sharding.device_set) == 4  # the parameters live on all four devices

    # The compiled step splits the batch: an all-reduce of the gradients appears only with the mesh.
    state = _train._State(np.asarray(0), net, net, _train._optimizer(cfg).init(eqx.filter(net, eqx.is_inexact_array)),
                          jax.random.key_data(jax.random.key(1)))
    xs, ys, state = parallel.replicate((jnp.asarray(x), jnp.asarray(y), state))
    args = (state, xs, ys, loss, _train._optimizer(cfg), cfg.ema_decay, 2, 32)
    with_mesh = _train._advance.lower(*args, parallel).lowered.compile().as_text()
    without = _train._advance.lower(*args, None).lowered.compile().as_text()
    # (scalar all-reduces come from the eqx.error_if input checks on replicated inputs; the gradient's are arrays)
    def array_all_reduces(text):
        return [line for line in text.splitlines()
                if " all-reduce(" in line and re.search(r"\\[\\d", line.split(" all-reduce(")[0])]
    assert array_all_reduces(with_mesh) and not array_all_reduces(without)
    try:
        L.train(net, x, y, config=L.TrainConfig(steps=2, batch_size=30, steps_per_call=1, checkpoint_every=1,
                progress=False), parallel=parallel, key=jax.random.key(1))
        raise AssertionError("an uneven batch must be refused")
    except ValueError as error:
        assert "multiple of the number of devices" in str(error)
    print("OK", worst, moved)
    """
)


def test_data_parallel_matches_single_device(tmp_path):
    # the suite's compile settings (tests/conftest.py: this short run is compile-bound) plus four host devices
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu",
               JAX_DISABLE_MOST_OPTIMIZATIONS=str(int(jax.config.read("jax_disable_most_optimizations"))))
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "OK" in result.stdout


def test_data_parallel_checks():
    parallel = L.DataParallel.over(jax.devices()[:1])
    assert parallel.num_devices == 1
    parallel.check_batch(7)  # one device takes any batch
    with pytest.raises(ValueError, match="single axis"):
        L.DataParallel(parallel.mesh, axis="data")
    net = L.EntropyMLP(L.MLPConfig(dim_x=2, width=4, depth=1, embed_width=4), VPSDE(), key=jax.random.key(0))
    cfg = L.TrainConfig(steps=1, steps_per_call=1, checkpoint_every=1, progress=False)
    with pytest.raises(ValueError, match="DataParallel"):
        L.train(net, jax.numpy.zeros((8, 2)), config=cfg, parallel="all", key=jax.random.key(0))
