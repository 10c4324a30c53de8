"""Tests for learned.train: exact resume, fingerprinted checkpoints, corrupt files, Ctrl-C, keys, the classifier."""

import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import learned as L
from gaussian_oracle import VPSDE, JointGaussian

from _reference import quadrant_images

SDE = VPSDE()
CFG = L.TrainConfig(steps=20, batch_size=32, steps_per_call=5, checkpoint_every=10, progress=False, lr=1e-3)


@pytest.fixture(scope="module")
def joint():
    return JointGaussian.determinism(4, 2, 0.5, key=jax.random.key(7))


def _small(dim_x=4, dim_y=2, *, key, width=32):
    return L.EntropyMLP(L.MLPConfig(dim_x=dim_x, dim_y=dim_y, width=width, depth=1), SDE, key=key)


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(eqx.filter(a, eqx.is_array)), jax.tree.leaves(eqx.filter(b, eqx.is_array))
    return len(la) == len(lb) and all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(la, lb))


def _problem(key, n=512):
    """Small correlated (x, y) data, a network and a key: enough for a few training steps."""
    k_y, k_x, k_net, k_train = jax.random.split(key, 4)
    y = jax.random.normal(k_y, (n, 2))
    x = 0.8 * jnp.concatenate([y, -y], axis=1) + 0.6 * jax.random.normal(k_x, (n, 4))
    return np.asarray(x, np.float32), np.asarray(y, np.float32), _small(key=k_net, width=16), k_train


def _interrupt_at(n):
    def callback(step, values):
        if step == n:
            raise KeyboardInterrupt

    return callback


def _no_steps(step, values):
    raise AssertionError("a finished checkpoint should be returned without training")


# ---------------------------------------------------------------------------------------------- exact resume
def test_checkpoint_resume_is_bitwise(joint, key, tmp_path):
    k_data, k_net, k_train = jax.random.split(key, 3)
    x, y = joint.sample(2000, key=k_data)
    net = _small(key=k_net).standardise_condition(y)
    cfg = L.TrainConfig(steps=40, batch_size=64, steps_per_call=5, checkpoint_every=10, progress=False, lr=1e-3)
    loss = L.DEMLoss(L.Likelihood(SDE), L.ImportanceTime(SDE, L.Likelihood(SDE)), 0.1)
    straight = L.train(net, x, y, config=cfg, loss=loss, key=k_train)
    assert straight.losses.shape == (40,) and np.all(np.isfinite(straight.losses))

    class Killed(Exception):
        pass

    def kill_at(n, error):
        def callback(step, values):
            assert values.shape == (5,)
            if step == n:
                raise error

        return callback

    # A crash after step 35: the periodic checkpoint at step 30 is the last one; resume redoes 30..40.
    with pytest.raises(Killed):
        L.train(net, x, y, config=cfg, loss=loss, key=k_train, checkpoint_dir=tmp_path / "a", callback=kill_at(35, Killed()))
    step, partial = L.load_checkpoint(tmp_path / "a", net, cfg, key=k_train)
    assert step == 30 and partial.losses.shape == (30,)
    resumed = L.train(net, x, y, config=cfg, loss=loss, key=k_train, checkpoint_dir=tmp_path / "a")
    # Ctrl-C after step 15 checkpoints at 15 before re-raising.
    with pytest.raises(KeyboardInterrupt):
        L.train(net, x, y, config=cfg, loss=loss, key=k_train, checkpoint_dir=tmp_path / "b",
                callback=kill_at(15, KeyboardInterrupt()))
    assert L.load_checkpoint(tmp_path / "b", net, cfg, key=k_train)[0] == 15
    interrupted = L.train(net, x, y, config=cfg, loss=loss, key=k_train, checkpoint_dir=tmp_path / "b")
    for run in (resumed, interrupted):
        assert np.array_equal(run.losses, straight.losses)
        assert _leaves_equal(run.model, straight.model) and _leaves_equal(run.ema_model, straight.ema_model)
    assert not _leaves_equal(straight.model, net)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["checkpoint.eqx", "checkpoint.json"]
    # A finished run resumes to itself without training.
    again = L.train(net, x, y, config=cfg, loss=loss, key=k_train, checkpoint_dir=tmp_path / "a",
                    callback=kill_at(-1, AssertionError("no steps expected")))
    assert _leaves_equal(again.ema_model, straight.ema_model)
    # A checkpoint from another config is refused with a clear message.
    with pytest.raises(ValueError, match="Cannot resume") as error:
        L.train(net, x, y, config=L.TrainConfig(steps=50, batch_size=64, steps_per_call=5, checkpoint_every=10,
                                                progress=False), loss=loss, key=k_train, checkpoint_dir=tmp_path / "a")
    assert "steps 40 in the checkpoint, 50 now" in str(error.value)


def test_train_input_errors(joint, key, tmp_path):
    x, y = joint.sample(2000, key=key)
    net = _small(key=key)
    cfg = L.TrainConfig(steps=40, batch_size=64, steps_per_call=5, checkpoint_every=10, progress=False, lr=1e-3)
    with pytest.raises(ValueError, match="same number of rows"):
        L.train(net, x, y[:500], config=cfg, key=key)
    with pytest.raises(ValueError, match="finite"):
        L.train(net, x.at[3, 1].set(jnp.nan), y, config=cfg, key=key)
    with pytest.raises(ValueError, match="finite"):
        L.train(net, x, y.at[0, 0].set(jnp.inf), config=cfg, key=key)
    with pytest.raises(ValueError, match="multiple"):
        L.TrainConfig(steps=10, steps_per_call=3, checkpoint_every=5)
    with pytest.raises(ValueError, match="TrainConfig"):
        L.train(net, x, y, config={"steps": 10}, key=key)
    with pytest.raises(ValueError, match="weight_decay"):
        L.TrainConfig(weight_decay=-1e-4)
    with pytest.raises(ValueError, match="resume must be one of 'auto', 'overwrite', 'unchecked'"):
        L.train(net, x, y, config=cfg, checkpoint_dir=tmp_path, resume="never", key=key)
    with pytest.raises(ValueError, match="loss must be callable"):
        L.train(net, x, y, config=cfg, loss="dem", key=key)
    # uint8 data (images not scaled) trained without a word, at losses of 1e4
    with pytest.raises(ValueError, match=r"data_x must be a float array .* got shape \(2000, \d+\), dtype uint8 "
                                         r"\(integer data such as uint8 images are not scaled silently"):
        L.train(net, np.full(x.shape, 255, np.uint8), y, config=cfg, key=key)
    with pytest.raises(ValueError, match=r"data_x holds no rows \(shape \(0, \d+\)\)"):  # a gather error before
        L.train(net, x[:0], y[:0], config=cfg, key=key)
    with pytest.raises(ValueError, match="data_y must hold real numbers or integer labels; got dtype bool"):
        L.train(net, x, np.asarray(y) > 0, config=cfg, key=key)
    # Data so large that float32 overflows: the loss is non-finite; the last finite state is kept.
    loss = L.DEMLoss(L.Likelihood(SDE), L.ImportanceTime(SDE, L.Likelihood(SDE)), 0.1)
    with pytest.raises(FloatingPointError, match="non-finite at step 0"):
        L.train(net, 1e25 * x, y, config=cfg, loss=loss, key=key, checkpoint_dir=tmp_path)
    step, kept = L.load_checkpoint(tmp_path, net, cfg, key=key)
    assert step == 0 and _leaves_equal(kept.model, net)


# ---------------------------------------------------------------------------------------------- stale checkpoints
def test_checkpoint_of_another_run_is_refused(key, tmp_path):
    """Regression: a checkpoint was reused for another key, data, model or loss whenever the shapes matched."""
    x, y, net, k_train = _problem(key)
    loss = L.DEMLoss(condition_dropout=0.1)
    folder = tmp_path / "run"
    first = L.train(net, x, y, config=CFG, loss=loss, checkpoint_dir=folder, key=k_train)
    recorded = json.loads((folder / "checkpoint.json").read_text())
    assert recorded["config"]["steps"] == 20 and "progress" not in recorded["config"]
    assert recorded["data_x"]["shape"] == [512, 4] and recorded["data_x"]["dtype"] == "float32"
    assert recorded["model"]["type"] == "EntropyMLP" and recorded["loss"]["type"] == "DEMLoss"
    assert recorded["written_by"]["separability"]

    other_key = jax.random.fold_in(k_train, 1)
    cases = {
        "key": dict(key=other_key),
        "data_x": dict(data_x=np.where(np.arange(512)[:, None] == 0, x + 1e-3, x)),
        "data_y": dict(data_y=y[::-1]),
        "model": dict(model=_small(key=jax.random.key(99), width=16)),
        "loss": dict(loss=L.DEMLoss(condition_dropout=0.2)),
    }
    base = dict(model=net, data_x=x, data_y=y, loss=loss, key=k_train)
    for item, change in cases.items():
        args = {**base, **change}
        with pytest.raises(ValueError, match=f"trained with a different {item} than this call") as error:
            L.train(args["model"], args["data_x"], args["data_y"], config=CFG, loss=args["loss"], checkpoint_dir=folder,
                    key=args["key"], callback=_no_steps)
        message = str(error.value)
        assert str(folder) in message and "resume=\"overwrite\"" in message and "new checkpoint_dir" in message
    # A different seed changes the model's initial values, the data and the key together: all are named.
    x2, y2, net2, k2 = _problem(jax.random.fold_in(key, 1))
    with pytest.raises(ValueError, match="different model, data_x, data_y, key"):
        L.train(net2, x2, y2, config=CFG, loss=loss, checkpoint_dir=folder, key=k2)
    # The same data given as float64 is trained as the same float32: it still resumes.
    same = L.train(net, x.astype(np.float64), y, config=CFG, loss=loss, checkpoint_dir=folder, key=k_train,
                   callback=_no_steps)
    assert _leaves_equal(same.ema_model, first.ema_model)
    # Cosmetic fields (progress, checkpoint_every) do not block resuming.
    cosmetic = dataclasses.replace(CFG, checkpoint_every=5, progress=True)
    same = L.train(net, x, y, config=cosmetic, loss=loss, checkpoint_dir=folder, key=k_train, callback=_no_steps)
    assert _leaves_equal(same.ema_model, first.ema_model)
    # An unfinished checkpoint is refused the same way.
    with pytest.raises(KeyboardInterrupt):
        L.train(net, x, y, config=CFG, loss=loss, checkpoint_dir=tmp_path / "half", key=k_train,
                callback=_interrupt_at(10))
    with pytest.raises(ValueError, match="different key"):
        L.train(net, x, y, config=CFG, loss=loss, checkpoint_dir=tmp_path / "half", key=other_key)


def _weighted(weight):
    """A loss written the usual way, as a closure over its setting."""
    base = L.DEMLoss(condition_dropout=0.1)

    def loss(model, x, y, *, key):
        return weight * base(model, x, y, key=key)

    return loss


def test_function_losses_are_told_apart_by_their_settings(key, tmp_path):
    """Regression: a loss that is a Python function was fingerprinted by its name alone, so a closure with another
    weight, or any other lambda, silently resumed (or returned) the checkpoint of the first."""
    x, y, net, k_train = _problem(key)
    folder = tmp_path / "run"
    L.train(net, x, y, config=CFG, loss=_weighted(1.0), checkpoint_dir=folder, key=k_train)
    with pytest.raises(ValueError, match="trained with a different loss than this call"):
        L.train(net, x, y, config=CFG, loss=_weighted(1000.0), checkpoint_dir=folder, key=k_train, callback=_no_steps)
    L.train(net, x, y, config=CFG, loss=_weighted(1.0), checkpoint_dir=folder, key=k_train, callback=_no_steps)
    base = L.DEMLoss()
    twice = tmp_path / "twice"
    L.train(net, x, y, config=CFG, loss=lambda m, a, b, *, key: 2.0 * base(m, a, b, key=key), checkpoint_dir=twice,
            key=k_train)
    with pytest.raises(ValueError, match="different loss"):
        L.train(net, x, y, config=CFG, loss=lambda m, a, b, *, key: 3.0 * base(m, a, b, key=key), checkpoint_dir=twice,
                key=k_train, callback=_no_steps)


def test_checkpoints_of_the_previous_fingerprint_still_resume(key, tmp_path):
    """A fingerprint written before functions were described (only the by-name hash, no held-out data) still resumes
    when the call is the same, and is still refused when the model differs."""
    x, y, net, k_train = _problem(key)
    folder = tmp_path / "run"
    first = L.train(net, x, y, config=CFG, loss=L.DEMLoss(), checkpoint_dir=folder, key=k_train)
    path = folder / "checkpoint.json"
    recorded = json.loads(path.read_text())
    assert recorded["validation_x"] is None and recorded["validation_y"] is None
    # The MLP holds a function (its embedding's final activation), so its two hashes differ.
    assert recorded["model"]["sha256"] != recorded["model"]["sha256_v1"]
    for item in ("model", "loss"):
        recorded[item]["sha256"] = recorded[item].pop("sha256_v1")
    del recorded["validation_x"], recorded["validation_y"]
    path.write_text(json.dumps(recorded))
    same = L.train(net, x, y, config=CFG, loss=L.DEMLoss(), checkpoint_dir=folder, key=k_train, callback=_no_steps)
    assert _leaves_equal(same.ema_model, first.ema_model)
    path.write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match="different model"):
        L.train(_small(key=jax.random.key(99), width=16), x, y, config=CFG, loss=L.DEMLoss(), checkpoint_dir=folder,
                key=k_train)


def test_resume_modes(key, tmp_path):
    x, y, net, k_train = _problem(key)
    folder = tmp_path / "run"
    L.train(net, x, y, config=CFG, checkpoint_dir=folder, key=k_train)
    other_key = jax.random.fold_in(k_train, 1)
    fresh = L.train(net, x, y, config=CFG, key=other_key)
    # "overwrite": warn, delete, train afresh -- the same result as a run without checkpoints.
    with pytest.warns(UserWarning, match="deleting the checkpoint"):
        over = L.train(net, x, y, config=CFG, checkpoint_dir=folder, resume="overwrite", key=other_key)
    assert np.array_equal(over.losses, fresh.losses) and _leaves_equal(over.ema_model, fresh.ema_model)
    assert json.loads((folder / "checkpoint.json").read_text())["key"]["data"] == np.asarray(
        jax.random.key_data(other_key)).tolist()
    again = L.train(net, x, y, config=CFG, checkpoint_dir=folder, key=other_key, callback=_no_steps)
    assert _leaves_equal(again.ema_model, fresh.ema_model)
    # "unchecked": resume from a checkpoint of another key (with a warning) and adopt it.
    with pytest.warns(UserWarning, match="differs from this call in key"):
        taken = L.train(net, x, y, config=CFG, checkpoint_dir=folder, resume="unchecked", key=k_train, callback=_no_steps)
    assert _leaves_equal(taken.ema_model, fresh.ema_model)
    L.train(net, x, y, config=CFG, checkpoint_dir=folder, key=k_train, callback=_no_steps)
    # A checkpoint without its fingerprint (an older version's) is refused under "auto", taken under "unchecked".
    (folder / "checkpoint.json").unlink()
    with pytest.raises(ValueError, match="has no checkpoint.json beside it"):
        L.train(net, x, y, config=CFG, checkpoint_dir=folder, key=k_train)
    with pytest.warns(UserWarning, match="fingerprint"):
        L.train(net, x, y, config=CFG, checkpoint_dir=folder, resume="unchecked", key=k_train, callback=_no_steps)
    (folder / "checkpoint.json").write_text('{"format": 1, "conf')
    with pytest.raises(ValueError, match="checkpoint.json is corrupt"):
        L.train(net, x, y, config=CFG, checkpoint_dir=folder, key=k_train)


# ---------------------------------------------------------------------------------------------- corrupt files
def test_corrupt_checkpoint_is_not_called_a_mismatch(key, tmp_path):
    """Regression: a truncated or garbage checkpoint was reported as 'does not match this model and TrainConfig'."""
    x, y, net, k_train = _problem(key)
    folder = tmp_path / "run"
    L.train(net, x, y, config=CFG, checkpoint_dir=folder, key=k_train)
    path = folder / "checkpoint.eqx"
    good = path.read_bytes()
    for content, detail in [(good[: len(good) // 2], "truncated"), (b"\x00garbage" * 100, "not a valid array record"),
                            (b"", "empty")]:
        path.write_bytes(content)
        for call in (lambda: L.train(net, x, y, config=CFG, checkpoint_dir=folder, key=k_train),
                     lambda: L.load_checkpoint(folder, net, CFG, key=k_train)):
            with pytest.raises(ValueError, match="corrupt or truncated") as error:
                call()
            message = str(error.value)
            assert str(path) in message and f"{len(content):,} bytes" in message and detail in message
            assert "does not match" not in message
    # A complete checkpoint of another network is a mismatch, and the message says where.
    path.write_bytes(good)
    wider = _small(key=jax.random.key(1), width=24)
    with pytest.raises(ValueError, match="does not match this model") as error:
        L.load_checkpoint(folder, wider, CFG, key=k_train)
    assert "float32[16" in str(error.value) and "float32[24" in str(error.value) and "corrupt or truncated" not in str(error.value)
    with pytest.raises(ValueError, match="does not match this model"):
        L.train(wider, x, y, config=CFG, checkpoint_dir=folder, resume="unchecked", key=k_train)


# ---------------------------------------------------------------------------------------------- Ctrl-C
def test_keyboard_interrupt_says_where_it_stopped(key, tmp_path, capsys):
    """Regression: Ctrl-C gave a bare traceback; now one line on stderr says what was saved, then it re-raises."""
    x, y, net, k_train = _problem(key)
    with pytest.raises(KeyboardInterrupt):
        L.train(net, x, y, config=CFG, checkpoint_dir=tmp_path, key=k_train, callback=_interrupt_at(10))
    err = capsys.readouterr().err
    assert "interrupted after step 10 of 20" in err and str(tmp_path / "checkpoint.eqx") in err
    assert "Run the same call again" in err
    with pytest.raises(KeyboardInterrupt):
        L.train(net, x, y, config=CFG, key=k_train, callback=_interrupt_at(5))
    err = capsys.readouterr().err
    assert "interrupted after step 5 of 20" in err and "progress was not saved" in err and "checkpoint_dir" in err


# ---------------------------------------------------------------------------------------------- keys
def test_key_must_be_a_prng_key(key, tmp_path):
    """Regression: key=0 failed deep inside jax with an unrelated message."""
    x, y, net, _ = _problem(key)
    cfg = L.TrainConfig(steps=5, batch_size=32, steps_per_call=5, checkpoint_every=5, progress=False)
    for bad, said in [(0, "the int 0"), (np.float32(1.0), "dtype float32"), (jax.random.split(key, 3), "batch of 3 keys")]:
        with pytest.raises(ValueError, match="key must be a JAX PRNG key made with jax.random.key") as error:
            L.train(net, x, y, config=cfg, key=bad)
        assert said in str(error.value)
    with pytest.raises(ValueError, match=r"jax.random.key\(seed\)"):
        L.train_classifier(L.ClassifierConfig((1, 8, 8), 3, steps=5), np.zeros((10, 1, 8, 8)), np.zeros(10, int), key=0)
    # A legacy uint32[2] key still works, and is the same key as the typed one.
    typed = L.train(net, x, y, config=cfg, key=jax.random.key(3))
    legacy = L.train(net, x, y, config=cfg, key=jax.random.PRNGKey(3), checkpoint_dir=tmp_path)
    assert np.array_equal(typed.losses, legacy.losses)
    L.train(net, x, y, config=cfg, key=jax.random.key(3), checkpoint_dir=tmp_path, callback=_no_steps)


# ---------------------------------------------------------------------------------------------- the loss contract
def _zero_loss(model, x, y, *, key):
    """A loss with zero gradient: only weight decay moves the parameters."""
    return 0.0 * jnp.sum(x)


def test_weight_decay_is_decoupled(key):
    r"""With a zero gradient AdamW only decays: $\theta_n = \theta_0 (1 - \mathrm{lr}\,\lambda)^n$; Adam leaves it."""
    x, _, net, k_train = _problem(key)
    assert isinstance(L.DEMLoss(), L.TrainingLoss) and isinstance(L.ClassifierLoss(), L.TrainingLoss)
    lr, wd, n = 1e-2, 0.5, 10
    cfg = L.TrainConfig(steps=n, batch_size=8, lr=lr, steps_per_call=5, checkpoint_every=5, progress=False, weight_decay=wd)
    decayed = L.train(net, x, config=cfg, loss=_zero_loss, key=k_train).model
    kept = L.train(net, x, config=dataclasses.replace(cfg, weight_decay=0.0), loss=_zero_loss, key=k_train).model
    for p0, p1, p2 in zip(*(jax.tree.leaves(eqx.filter(m, eqx.is_inexact_array)) for m in (net, decayed, kept))):
        np.testing.assert_allclose(p1, np.asarray(p0) * (1 - lr * wd) ** n, rtol=1e-5, atol=1e-7)
        assert np.array_equal(p2, p0)


def test_single_unrolled_step_has_no_loop(key):
    """Regression: `scan` of length 1 is a loop even with unroll=True (XLA CPU runs loop-carried convs ~30x slower)."""
    x, y, net, k_train = _problem(key)
    optimizer = L._train._optimizer(CFG)
    state = L._train._State(jnp.asarray(0), net, net, optimizer.init(eqx.filter(net, eqx.is_inexact_array)),
                            jax.random.key_data(k_train))
    for num, unroll, loop in [(1, 1, False), (3, 3, False), (3, 1, True)]:
        jaxpr, *_ = eqx.filter_make_jaxpr(L._train._advance)(state, jnp.asarray(x), jnp.asarray(y), _zero_loss,
                                                              optimizer, 0.9, num, 8, None, unroll)
        assert ("scan[" in str(jaxpr)) == loop, (num, unroll)
    # TrainConfig(unroll=True) trains one step per call without a loop, to the same result as a scanned run.
    unrolled = dataclasses.replace(CFG, steps=3, steps_per_call=1, checkpoint_every=1, unroll=True)
    scanned = dataclasses.replace(CFG, steps=3, steps_per_call=3, checkpoint_every=3, unroll=1)
    a, b = (L.train(net, x, y, config=c, key=k_train) for c in (unrolled, scanned))
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- the classifier
def test_train_classifier_through_train(key):
    """`train_classifier` is `train` with a `ClassifierLoss`: it learns, is reproducible and checks its inputs."""
    k_data, k_test, k_train = jax.random.split(key, 3)
    x, y = quadrant_images(k_data, 300)
    xt, yt = quadrant_images(k_test, 200)
    cfg = L.ClassifierConfig((1, 8, 8), 3, channels=(4, 8), hidden=16, steps=100, batch_size=32, lr=3e-3)
    classifier = L.train_classifier(cfg, x, y, key=k_train)
    assert isinstance(classifier, L.ConvClassifier)
    ce, se, accuracy = L.cross_entropy(classifier, xt, yt)
    assert accuracy > 0.9 and ce < 0.5 * np.log(3), (ce, accuracy)
    again = L.train_classifier(cfg, x, y, key=k_train)
    assert _leaves_equal(classifier, again)
    # The wrapper is exactly `train` with AdamW, cosine decay to 0, no EMA and a few unrolled steps per call.
    k_init, k_loop = jax.random.split(k_train)
    direct = L.train(L.ConvClassifier(cfg, key=k_init), x, y, loss=L.ClassifierLoss(), key=k_loop, config=L.TrainConfig(
        steps=100, batch_size=32, lr=3e-3, final_lr_fraction=0.0, weight_decay=cfg.weight_decay, ema_decay=0.0,
        steps_per_call=5, checkpoint_every=5, progress=False, unroll=True))
    assert _leaves_equal(direct.model, classifier)
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        L.train_classifier(cfg, x, np.where(y == 2, 3, y), key=k_train)
    with pytest.raises(ValueError, match="integer labels"):
        L.train_classifier(cfg, x, y.astype(float), key=k_train)
    with pytest.raises(ValueError, match="shape"):
        L.train_classifier(cfg, x[:, :, :4], y, key=k_train)


# ---------------------------------------------------------------------------------------------- held-out validation
def test_validation_curve_best_model_and_resume(key, tmp_path):
    """The held-out loss is measured at every validate_every steps and at the end with one fixed key, the best EMA
    model is the one at the lowest of them (its loss recomputes to the recorded value), and an interrupted run
    resumes to bitwise the same record."""
    x, y, net, k_train = _problem(key, n=640)
    x_tr, y_tr, x_val, y_val = x[:512], y[:512], x[512:], y[512:]
    cfg = dataclasses.replace(CFG, steps=23, steps_per_call=1, checkpoint_every=1, validate_every=5)
    loss = L.DEMLoss(L.Likelihood(SDE), L.LogSNRTime())
    result = L.train(net, x_tr, y_tr, config=cfg, loss=loss, validation=(x_val, y_val), key=k_train)
    record = result.validation
    np.testing.assert_array_equal(record.steps, [5, 10, 15, 20, 23])
    assert np.all(np.isfinite(record.losses))
    best = int(np.argmin(record.losses))
    assert int(record.best_step) == record.steps[best] and float(record.best_loss) == record.losses[best]
    val_key = jax.random.fold_in(k_train, 0x76616C)
    again = float(loss(record.best_model, jnp.asarray(x_val), jnp.asarray(y_val), key=jax.random.fold_in(val_key, 0)))
    assert again == pytest.approx(float(record.best_loss), rel=1e-6)
    if best == len(record.steps) - 1:
        assert _leaves_equal(record.best_model, result.ema_model)

    folder = tmp_path / "val"
    with pytest.raises(KeyboardInterrupt):
        L.train(net, x_tr, y_tr, config=cfg, loss=loss, validation=(x_val, y_val), checkpoint_dir=folder,
                callback=_interrupt_at(12), key=k_train)
    resumed = L.train(net, x_tr, y_tr, config=cfg, loss=loss, validation=(x_val, y_val), checkpoint_dir=folder,
                      key=k_train)
    np.testing.assert_array_equal(resumed.validation.losses, record.losses)
    assert _leaves_equal(resumed.validation.best_model, record.best_model)
    step, loaded = L.load_checkpoint(folder, net, cfg, key=k_train)
    assert step == 23 and np.array_equal(loaded.validation.losses, record.losses)


class _InterruptValidation:
    """The DEM loss, with a Ctrl-C while the first held-out check (rows of `n`, not the batch's) is compiled."""

    def __init__(self, n):
        self.n, self.armed, self.base = n, True, L.DEMLoss(L.Likelihood(SDE), L.LogSNRTime())

    def __call__(self, model, x, y, *, key):
        if self.armed and x.shape[0] == self.n:
            self.armed = False
            raise KeyboardInterrupt
        return self.base(model, x, y, key=key)

    def __repr__(self):
        return "_InterruptValidation()"


def test_held_out_data_are_fingerprinted_and_an_interrupted_check_is_redone(key, tmp_path):
    """Regression: the held-out data were not in the fingerprint (a run resumed with other held-out data mixed the
    two sets in one curve), and Ctrl-C during a held-out check saved the state after the step with the check
    missing, so the resumed curve had NaN there for good."""
    x, y, net, k_train = _problem(key, n=640)
    x_tr, y_tr, x_val, y_val = x[:512], y[:512], x[512:], y[512:]
    cfg = dataclasses.replace(CFG, steps=20, steps_per_call=5, checkpoint_every=5, validate_every=5)
    interrupting = _InterruptValidation(len(x_val))
    reference = L.train(net, x_tr, y_tr, config=cfg, loss=interrupting.base, validation=(x_val, y_val), key=k_train)
    folder = tmp_path / "val"
    with pytest.raises(KeyboardInterrupt):
        L.train(net, x_tr, y_tr, config=cfg, loss=interrupting, validation=(x_val, y_val), checkpoint_dir=folder,
                key=k_train)
    assert L.load_checkpoint(folder, net, cfg, key=k_train)[0] == 0  # the step waits for its check
    with pytest.raises(ValueError, match="different validation_x"):
        L.train(net, x_tr, y_tr, config=cfg, loss=interrupting, validation=(x_val[::-1], y_val),
                checkpoint_dir=folder, key=k_train)
    resumed = L.train(net, x_tr, y_tr, config=cfg, loss=interrupting, validation=(x_val, y_val),
                      checkpoint_dir=folder, key=k_train)
    np.testing.assert_array_equal(resumed.validation.losses, reference.validation.losses)
    assert np.all(np.isfinite(resumed.validation.losses))
    assert _leaves_equal(resumed.ema_model, reference.ema_model)


def test_a_run_resumes_with_other_steps_per_call(key, tmp_path):
    """A run started with 5 steps per call (a GPU's setting) resumes with 2, unrolled (a CPU's): the step sequence is
    the same, the calls are cut to land on the next checkpoint and held-out check, and the result equals the
    uninterrupted run's up to floating-point reassociation."""
    x, y, net, k_train = _problem(key, n=640)
    x_tr, y_tr, val = x[:512], y[:512], (x[512:], y[512:])
    loss = L.DEMLoss(L.Likelihood(SDE), L.LogSNRTime())
    gpu = dataclasses.replace(CFG, steps=30, steps_per_call=5, checkpoint_every=5, validate_every=10)
    cpu = dataclasses.replace(gpu, steps_per_call=2, checkpoint_every=10, unroll=True)
    reference = L.train(net, x_tr, y_tr, config=gpu, loss=loss, validation=val, key=k_train)
    folder = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        L.train(net, x_tr, y_tr, config=gpu, loss=loss, validation=val, checkpoint_dir=folder, key=k_train,
                callback=_interrupt_at(15))
    steps = []
    resumed = L.train(net, x_tr, y_tr, config=cpu, loss=loss, validation=val, checkpoint_dir=folder, key=k_train,
                      callback=lambda step, values: steps.append(step))
    assert steps == [17, 19, 20, 22, 24, 26, 28, 30]
    np.testing.assert_array_equal(resumed.validation.steps, [10, 20, 30])
    np.testing.assert_allclose(resumed.validation.losses, reference.validation.losses, rtol=1e-5)
    np.testing.assert_allclose(resumed.losses, reference.losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(eqx.filter(resumed.ema_model, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(reference.ema_model, eqx.is_array))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_validation_arguments_go_together(key):
    x, y, net, k_train = _problem(key, n=128)
    with pytest.raises(ValueError, match="validate_every"):
        L.train(net, x, y, config=dataclasses.replace(CFG, validate_every=5), key=k_train)
    with pytest.raises(ValueError, match="go together"):
        L.train(net, x, y, config=CFG, validation=(x, y), key=k_train)
    with pytest.raises(ValueError, match="multiple of steps_per_call"):
        dataclasses.replace(CFG, validate_every=7)
    with pytest.raises(ValueError, match="rows of shape"):
        L.train(net, x, y, config=dataclasses.replace(CFG, validate_every=5), validation=(x[:, :3], y), key=k_train)


# ---------------------------------------------------------------------------------------------- labels
def _labelled(key, n=256):
    """Vector data with integer labels 0, 1, 2 (each row shifted by its label)."""
    labels = np.asarray(jax.random.randint(key, (n,), 0, 3))
    x = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (n, 4)), np.float32) + labels[:, None]
    return x, labels


def _one_row_set(labels, value):
    """`labels` with one row (a rare label) set to `value`."""
    return np.where(np.arange(len(labels)) == 7, value, labels)


def _never(step, values):
    raise AssertionError("a training step ran")


def test_a_label_the_model_refuses_stops_train_before_any_step(key, tmp_path):
    """Regression: a label outside the network's classes (one row of 3 or -1 for 3 classes) surfaced as an
    EquinoxRuntimeError from inside the compiled step, and for a rare label only at the step that first drew it.
    Now one ValueError names the label, the labels' range and the network's own reason, before any step (no
    callback, no checkpoint), for data_y and for the held-out labels alike."""
    x, labels = _labelled(key)
    net = L.EntropyMLP(L.MLPConfig(dim_x=4, num_classes=3, width=16, depth=1), SDE, key=key)
    for bad, span in [(3, "from 0 to 3"), (-1, "from -1 to 2")]:
        folder = tmp_path / str(bad)
        with pytest.raises(ValueError) as error:
            L.train(net, x, _one_row_set(labels, bad), config=CFG, checkpoint_dir=folder, callback=_never, key=key)
        message = str(error.value)
        assert f"data_y holds the label {bad} (its labels run {span}), which the model refuses" in message, message
        assert "unknown label: y must lie in 0..2 (num_classes=3)" in message, message
        assert not (folder / "checkpoint.eqx").exists()
    config = dataclasses.replace(CFG, validate_every=10)
    with pytest.raises(ValueError, match=r"validation's y holds the label 3 \(its labels run from 0 to 3\), which the "
                                         r"model refuses .*unknown label"):
        L.train(net, x[:200], labels[:200], config=config, validation=(x[200:], _one_row_set(labels[200:], 3)),
                callback=_never, key=key)


class _NumberLabel(eqx.Module):
    """A user's protocol model that reads a label as a number: `y` in 0..2, integer or float, refused outside."""

    net: L.EntropyMLP

    @property
    def sde(self):
        return self.net.sde

    def __call__(self, x, s, y=None, **kwargs):
        y = eqx.error_if(y, (y < 0) | (y > 2), "this model takes labels 0, 1 and 2")
        return self.net(x, s, jnp.reshape(jnp.asarray(y, jnp.float32), (1,)), **kwargs)


def test_the_label_check_goes_through_any_loss_and_leaves_the_run_alone(key):
    """The check evaluates the loss itself (here a function around a user's model), so the model's own refusal is
    what it reports; with good labels it takes nothing from the training key: integer labels (checked) train to
    bitwise the same losses and weights as the same labels given as floats (not checked)."""
    x, labels = _labelled(key)
    model = _NumberLabel(L.EntropyMLP(L.MLPConfig(dim_x=4, dim_y=1, width=16, depth=1), SDE, key=key))
    dem = L.DEMLoss()

    def loss(m, a, b, *, key):
        return dem(m, a, b, key=key)

    with pytest.raises(ValueError, match=r"data_y holds the label 5 \(its labels run from 0 to 5\), which the model "
                                         r"refuses .*: this model takes labels 0, 1 and 2"):
        L.train(model, x, _one_row_set(labels, 5), config=CFG, loss=loss, callback=_never, key=key)
    checked = L.train(model, x, labels, config=CFG, loss=loss, key=key)
    unchecked = L.train(model, x, labels.astype(np.float32), config=CFG, loss=loss, key=key)
    np.testing.assert_array_equal(checked.losses, unchecked.losses)
    assert _leaves_equal(checked.model, unchecked.model) and _leaves_equal(checked.ema_model, unchecked.ema_model)


def _indexing_loss(model, x, y, *, key):
    """A cross-entropy of a noisy classifier at s = 0.5 that picks each label's logit by indexing, with no check."""
    logits = jax.vmap(lambda xi: model(xi, jnp.float32(0.5)))(x)
    return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])


def test_labels_outside_a_stated_num_classes_are_refused(key):
    """Regression: a cross-entropy that picks the label's logit by indexing trains a label -1 silently as the last
    class, and a label 3 of 3 classes gives a NaN loss at some step. A model that states its `num_classes` (here
    `NoisyMLPClassifier`) has its labels checked against it before any step, whatever the loss (here one with no
    check of its own; the package's classifier losses now refuse such labels themselves)."""
    x, labels = _labelled(key)
    classifier = L.NoisyMLPClassifier(4, 3, SDE, width=16, depth=1, key=key)
    for bad, span in [(-1, "from -1 to 2"), (3, "from 0 to 3")]:
        with pytest.raises(ValueError, match=rf"data_y holds the label {bad} \(its labels run {span}\), outside 0..2 "
                                             r"of the model's num_classes = 3\. The loss takes it without an error"):
            L.train(classifier, x, _one_row_set(labels, bad), config=CFG, loss=_indexing_loss, callback=_never,
                    key=key)
        with pytest.raises(ValueError, match=rf"data_y holds the label {bad} \(its labels run {span}\), which the "
                                             r"model refuses .*unknown label: y must lie in 0..2"):
            L.train(classifier, x, _one_row_set(labels, bad), config=CFG, loss=L.NoisyClassifierLoss(),
                    callback=_never, key=key)


def test_a_conv_classifier_states_its_classes_so_train_checks_labels_against_them(key):
    """`ConvClassifier` gave its logits by indexing with no `num_classes` to check against, so `train` with a loss
    that indexes them took a label -1 as the last class without a word; it now states its `num_classes` (that of its
    config) and `train` refuses the label before any step."""
    cfg = L.ClassifierConfig((1, 8, 8), 3, channels=(4, 8), hidden=16)
    classifier = L.ConvClassifier(cfg, key=key)
    assert classifier.num_classes == 3
    images = np.asarray(jax.random.uniform(key, (40, 1, 8, 8)), np.float32)
    labels = np.arange(40) % 3

    def indexing(model, x, y, *, key):
        logits = jax.vmap(model)(x)
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])

    with pytest.raises(ValueError, match=r"data_y holds the label -1 .* num_classes = 3"):
        L.train(classifier, images, _one_row_set(labels, -1), config=CFG, loss=indexing, callback=_never, key=key)


def test_the_classifier_losses_refuse_a_label_out_of_range_when_called_directly(key):
    """`ClassifierLoss` and `NoisyClassifierLoss` picked each label's logit by indexing: called directly (not through
    `train`, which checks labels first), a label -1 gave the last class's loss (2.27 for both) and a label of the
    class count a NaN, with no error. Each refuses both, eagerly and compiled; labels in range give the same loss."""
    x, labels = _labelled(key, n=8)
    images = np.asarray(jax.random.uniform(key, (8, 1, 8, 8)), np.float32)
    cases = [(L.ConvClassifier(L.ClassifierConfig((1, 8, 8), 3, channels=(4, 8), hidden=16), key=key), images,
              L.ClassifierLoss()),
             (L.NoisyMLPClassifier(4, 3, SDE, width=16, depth=1, key=key), x, L.NoisyClassifierLoss())]
    for model, data, loss in cases:
        good = loss(model, data, jnp.asarray(labels), key=key)
        assert np.isfinite(good) and good == eqx.filter_jit(loss)(model, data, jnp.asarray(labels), key=key)
        for bad in (-1, 3):
            y = jnp.asarray(_one_row_set(labels, bad))
            with pytest.raises(eqx.EquinoxRuntimeError, match=r"unknown label: y must lie in 0..2"):
                jax.block_until_ready(loss(model, data, y, key=key))
            with pytest.raises(eqx.EquinoxRuntimeError, match=r"unknown label: y must lie in 0..2"):
                jax.block_until_ready(eqx.filter_jit(loss)(model, data, y, key=key))
