r"""Information estimators over the model protocol: neural entropy (Eq. 11), MINDE (Eq. 13), entropy difference (Eq. 46).

Each estimator is a pure function of a model (any `eqx.Module` with a field `sde` and `__call__(x, s, y=None)`),
data samples, a time integrator (`UniformGrid`, `GeometricGrid` or `ImportanceSampler`) and a key. It returns
an `Estimate` in nats whose stderr is the standard error of the mean of i.i.d. per-data-sample values
(see `verify.estimators`), with `n_evals` the number of network evaluations spent.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from gaussian_oracle import VPSDE, Estimate, check_key

from ._integrators import AbstractTimeIntegrator, UniformGrid, _check_finite

__all__ = ["neural_entropy", "mutual_information_minde", "mutual_information_minde_crossfit",
           "mutual_information_difference", "plugin_label_entropy"]


# ---------------------------------------------------------------------------------------------- integrands
def _perturbed(model, x0, s, key):
    return model.sde.perturb(x0, s, key=key)


def _entropy_integrand(models, datum, s, key):
    r"""$\tfrac{\beta(s)}{2}\|e(\tilde x_s, s; y)\|^2$ for one data sample (Eq. 11)."""
    (model,) = models
    x0, y = datum
    xs = _perturbed(model, x0, s, key)
    e = model(xs, s, y)
    return 0.5 * model.sde.beta(s) * jnp.sum(e**2)


def _both(models, xs, s, y):
    model, unconditional = models
    e_c = model(xs, s, y)
    e_u = model(xs, s, None) if unconditional is None else unconditional(xs, s, None)
    return e_c, e_u


def _minde_integrand(models, datum, s, key):
    r"""$\tfrac{\beta(s)}{2}\|e(\tilde x_s, s; y) - e(\tilde x_s, s)\|^2$ (Eq. 13)."""
    x0, y = datum
    xs = _perturbed(models[0], x0, s, key)
    e_c, e_u = _both(models, xs, s, y)
    return 0.5 * models[0].sde.beta(s) * jnp.sum((e_c - e_u) ** 2)


def _information_integrand(models, datum, s, key):
    r"""The rates of $S_{NN}^X$, $S_{NN}^{X|Y}$ (Eq. 11) and $I_{MINDE}$ (Eq. 13) on one noisy input, from one
    unconditional and one conditional network call: $\tfrac{\beta}{2}$ times $(\|e\|^2, \|e(y)\|^2, \|e(y) - e\|^2)$."""
    (model,) = models
    x0, y = datum
    xs = _perturbed(model, x0, s, key)
    e_c, e_u = _both((model, None), xs, s, y)
    return 0.5 * model.sde.beta(s) * jnp.stack([jnp.sum(e_u**2), jnp.sum(e_c**2), jnp.sum((e_c - e_u) ** 2)])


def _crossfit_integrand(models, datum, s, key):
    r"""$\tfrac{\beta(s)}{2}(e_a(\tilde x_s, s; y) - e_a(\tilde x_s, s))\cdot(e_b(\tilde x_s, s; y) - e_b(\tilde x_s, s))$."""
    x0, y = datum
    model_a, model_b = models
    xs = _perturbed(model_a, x0, s, key)
    d_a = model_a(xs, s, y) - model_a(xs, s, None)
    d_b = model_b(xs, s, y) - model_b(xs, s, None)
    return 0.5 * model_a.sde.beta(s) * jnp.sum(d_a * d_b)


def _centred_difference(model, posterior, xs, s, y):
    r"""$e(\tilde x_s, s; y) - \sum_k p(k|\tilde x_s)\,e(\tilde x_s, s; k)$: the label part against the posterior mixture."""
    logits = posterior(xs, s)
    e_all = jax.vmap(lambda k: model(xs, s, k))(jnp.arange(logits.shape[-1]))
    p = jax.nn.softmax(logits).astype(e_all.dtype)
    return e_all[y] - jnp.tensordot(p, e_all, axes=1)  # y checked in [0, num_labels) by _num_labels


def _centred_minde_integrand(models, datum, s, key):
    r"""$\tfrac{\beta}{2}\|e(\tilde x_s, s; y) - \sum_k p(k|\tilde x_s)e(\tilde x_s, s; k)\|^2$."""
    x0, y = datum
    model, posterior = models
    xs = _perturbed(model, x0, s, key)
    return 0.5 * model.sde.beta(s) * jnp.sum(_centred_difference(model, posterior, xs, s, y) ** 2)


def _centred_crossfit_integrand(models, datum, s, key):
    r"""$\tfrac{\beta}{2}\,\hat d_a\cdot\hat d_b$ with each $\hat d$ centred on its own posterior mixture."""
    x0, y = datum
    model_a, model_b, posterior = models
    xs = _perturbed(model_a, x0, s, key)
    d_a = _centred_difference(model_a, posterior, xs, s, y)
    d_b = _centred_difference(model_b, posterior, xs, s, y)
    return 0.5 * model_a.sde.beta(s) * jnp.sum(d_a * d_b)


def _drawn_mixtures(model, logits, xs, s, y, draws: int, groups: int, key):
    r"""$e(\tilde x_s, s; y)$ and `groups` independent unbiased draws of the posterior mixture $\sum_k p(k|\tilde x_s)
    e(\tilde x_s, s; k)$, each the mean of $e$ over `draws` labels drawn from softmax(`logits`), from one batched call
    of $1 + $ `groups` $\times$ `draws` labels."""
    drawn = jax.random.categorical(key, logits, shape=(groups * draws,)).astype(jnp.asarray(y).dtype)
    e_all = jax.vmap(lambda k: model(xs, s, k))(jnp.concatenate([jnp.reshape(y, (1,)), drawn]))
    return e_all[0], jnp.mean(jnp.reshape(e_all[1:], (groups, draws, *e_all.shape[1:])), axis=1)


def _drawn_centred_minde_integrand(models, datum, s, key):
    r"""$\tfrac{\beta}{2}\,(e(y) - \bar e_1)\cdot(e(y) - \bar e_2)$ with $\bar e_1, \bar e_2$ two independent draws of
    the posterior mixture: its mean over the draws is the exactly centred integrand."""
    x0, y = datum
    model, posterior, draws = models
    xs = _perturbed(model, x0, s, key)
    e_y, mix = _drawn_mixtures(model, posterior(xs, s), xs, s, y, draws, 2, jax.random.fold_in(key, 1))
    return 0.5 * model.sde.beta(s) * jnp.sum((e_y - mix[0]) * (e_y - mix[1]))


def _drawn_centred_crossfit_integrand(models, datum, s, key):
    r"""$\tfrac{\beta}{2}\,\hat d_a\cdot\hat d_b$ with each $\hat d$ centred on an independent draw of its own model's
    posterior mixture: its mean over the draws is the exactly centred cross-fit integrand."""
    x0, y = datum
    model_a, model_b, posterior, draws = models
    xs = _perturbed(model_a, x0, s, key)
    logits = posterior(xs, s)
    key_a, key_b = jax.random.split(jax.random.fold_in(key, 1))
    e_a, mix_a = _drawn_mixtures(model_a, logits, xs, s, y, draws, 1, key_a)
    e_b, mix_b = _drawn_mixtures(model_b, logits, xs, s, y, draws, 1, key_b)
    return 0.5 * model_a.sde.beta(s) * jnp.sum((e_a - mix_a[0]) * (e_b - mix_b[0]))


def _check_draws(draws, posterior) -> int | None:
    """`posterior_draws` as a Python int (a static argument of the compiled integrand), or None; one clear error
    otherwise."""
    if draws is None:
        return None
    if posterior is None:
        raise ValueError("posterior_draws needs a posterior: it is the number of labels drawn from it.")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ValueError(f"posterior_draws must be a positive int (labels drawn per centring) or None; got {draws!r}.")
    return int(draws)


_SUMS_TO_ONE = 1e-4
"""How far from 1 a row of probabilities may sum (float32 rounding of a softmax over hundreds of labels stays below)."""


def _probe(fn, rows, sde, s_end: float = 0.0) -> np.ndarray:
    """`fn(x, s)` evaluated once, eagerly, on each of `rows` (up to 8) at three times spread over $[s_{end}, T]$:
    float64 of shape (3, rows, *output), so that a callable of the wrong convention is refused before any
    integration or simulation."""
    rows = jnp.asarray(rows)[:8]
    times = s_end + (sde.T - s_end) * np.array([0.1, 0.5, 0.9])
    return np.stack([np.asarray(jax.vmap(lambda xi: fn(xi, s))(rows), np.float64)
                     for s in jnp.asarray(times, rows.dtype)])


def _check_logits(posterior, x, sde) -> None:
    """One error when `posterior`, which must return logits (or log-probabilities), returns probabilities: values in
    [0, 1] summing to 1 over the labels on every row and time probed. Log-probabilities never do (they are <= 0, so
    their sum is <= 0); logits could only by a coincidence on every row and time."""
    out = _probe(posterior, x, sde)
    sums = out.sum(axis=-1)
    if np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1)) and np.all(np.abs(sums - 1) <= _SUMS_TO_ONE):
        raise ValueError(f"posterior(x, s) must return logits or log-probabilities of p(k|x_s), but on the first "
                         f"{out.shape[1]} rows of x at three times it returns values in [0, 1] that sum to 1 over the "
                         f"labels: it looks like probabilities; pass log-probabilities (jnp.log(p)) or logits.")


def _check_probabilities(reference, x, sde, s_end: float, num_labels: int) -> None:
    """One error unless `reference`, which must return probabilities over `num_labels` labels, returns finite,
    non-negative values summing to 1 on every row and time probed (negative values or other sums: logits)."""
    out = _probe(reference, x, sde, s_end)
    if out.shape[2:] != (num_labels,):
        raise ValueError(f"reference(x, s) must return the probabilities of the {num_labels} labels, shape "
                         f"({num_labels},); got shape {out.shape[2:]}.")
    if not np.all(np.isfinite(out)):
        raise ValueError("reference(x, s) must return finite probabilities; it returns NaN or infinity on the first "
                         f"{out.shape[1]} samples at three times.")
    sums = out.sum(axis=-1)
    if np.any(out < 0) or np.any(np.abs(sums - 1) > _SUMS_TO_ONE):
        raise ValueError(f"reference(x, s) must return probabilities p(k|x_s), but on the first {out.shape[1]} samples "
                         f"at three times it returns values from {out.min():.4g} to {out.max():.4g} whose sums over "
                         f"the labels run from {sums.min():.4g} to {sums.max():.4g}: it looks like logits; pass "
                         f"probabilities (jax.nn.softmax).")


def _num_labels(posterior, x, y, sde) -> int:
    """The number of labels a posterior gives logits for (its output's last axis, from its shape alone), after
    checking the data, that `y` holds integer labels below it, and that the posterior does not return probabilities
    (`_check_logits`)."""
    _check_data(x, y)
    shape = jax.eval_shape(posterior, jax.ShapeDtypeStruct(np.shape(x)[1:], jnp.asarray(x).dtype),
                           jax.ShapeDtypeStruct((), jnp.float32)).shape
    if len(shape) != 1 or shape[0] < 2:
        raise ValueError(f"posterior(x, s) must return logits over the labels, shape (num_labels >= 2,); got {shape}.")
    y_np = np.asarray(y)
    if y_np.ndim != 1 or not np.issubdtype(y_np.dtype, np.integer) or y_np.min() < 0 or y_np.max() >= shape[0]:
        raise ValueError(f"with a posterior, y must hold one integer label in [0, {shape[0]}) per row (the posterior's "
                         f"{shape[0]} labels); got dtype {y_np.dtype}, shape {y_np.shape}"
                         + (f", values {y_np.min()}..{y_np.max()}." if y_np.size else "."))
    _check_logits(posterior, x, sde)
    return shape[0]


def _difference_integrand(models, datum, s, key):
    r"""$\tfrac{\beta(s)}{2}(\|e(\tilde x_s, s; y)\|^2 - \|e(\tilde x_s, s)\|^2)$ at one common $(s, \tilde x_s)$ (Eq. 46)."""
    x0, y = datum
    xs = _perturbed(models[0], x0, s, key)
    e_c, e_u = _both(models, xs, s, y)
    return 0.5 * models[0].sde.beta(s) * (jnp.sum(e_c**2) - jnp.sum(e_u**2))


# ---------------------------------------------------------------------------------------------- data checks
def _check_data(x, y):
    x_np = np.asarray(x)
    if x_np.ndim < 2:
        raise ValueError(f"x must hold a batch of samples, shape (batch, ...); got shape {x_np.shape}.")
    if not (np.issubdtype(x_np.dtype, np.floating)):
        raise ValueError(f"x must be a float array; got dtype {x_np.dtype}.")
    if x_np.shape[0] < 2:
        raise ValueError(f"need at least 2 data samples for a standard error; got {x_np.shape[0]}.")
    _check_finite("x", x_np)
    if y is None:
        return jnp.asarray(x), None
    y_np = np.asarray(y)
    if y_np.ndim < 1 or y_np.shape[0] != x_np.shape[0]:
        raise ValueError(f"x and y must have the same number of rows; got {x_np.shape[0]} and {y_np.shape[:1]}.")
    if y_np.dtype == bool or not (np.issubdtype(y_np.dtype, np.floating) or np.issubdtype(y_np.dtype, np.integer)):
        raise ValueError(f"y must be real-valued (float) or integer class labels; got dtype {y_np.dtype} (cast it "
                         "yourself if that is what you mean: it is not converted silently).")
    _check_finite("y", y_np)
    return jnp.asarray(x), jnp.asarray(y)


class PluginEntropy(NamedTuple):
    """The plug-in entropy of integer labels (`plugin_label_entropy`), nats."""

    value: float
    r"""$\hat H = -\sum_k \hat p_k\log\hat p_k$ of the labels' frequencies."""
    stderr: float
    r"""Its delta-method standard error, $\sqrt{(\sum_k \hat p_k\log^2\hat p_k - \hat H^2)/n}$ (0 for uniform
    labels)."""
    classes: int
    """K, the number of classes present."""
    n: int
    """The number of labels."""

    def slack(self, n_sigma: float) -> float:
        r"""How far the labels' $H(Y)$ may lie from the plug-in at `n_sigma`: that many stderrs plus the plug-in's
        downward bias at the same (two-sided) quantile, $\chi^2_{K-1}/2n$. The bias is all there is for uniform
        labels, whose delta-method stderr is 0; its mean, $(K - 1)/2n$, is the Miller-Madow correction."""
        from scipy.stats import chi2, norm

        bias = chi2.isf(2.0 * norm.sf(n_sigma), self.classes - 1) / (2.0 * self.n) if self.classes > 1 else 0.0
        return n_sigma * self.stderr + float(bias)


def plugin_label_entropy(y) -> PluginEntropy | None:
    r"""The entropy of integer labels' frequencies, with its standard error: the upper bound on $I(X;Y)$ that the
    labels give.

    **Arguments:**

    - `y`: class labels, a 1-D integer array (any integers: only their frequencies count).

    **Returns:**

    A `PluginEntropy` (`value`, `stderr`, `classes`, `n`, and `slack(n_sigma)`, how far the labels' $H(Y)$ may lie
    from the plug-in), or `None` when `y` is not a 1-D integer array of at least 2 labels.
    """
    labels = np.asarray(y)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size < 2:
        return None
    counts = np.bincount(labels - labels.min())
    p = counts[counts > 0] / labels.size
    h = float(-(p * np.log(p)).sum())
    se = math.sqrt(max(float((p * np.log(p) ** 2).sum()) - h * h, 0.0) / labels.size)
    return PluginEntropy(h, se, int(p.size), int(labels.size))


def _check_information(est: Estimate, y, name: str, num_labels: int | None = None) -> Estimate:
    r"""`est`, an estimate of $I(X;Y)$, flagged below 0 and above what the labels allow, each by more than 2 stderr.

    With integer labels the bound is $H(Y)$, read from the labels `y` themselves as an upper confidence limit: the
    plug-in plus its `slack(2)` (so a correct estimate of a label that X decides, $I = H(Y)$, is not flagged for the
    plug-in's own shortfall); with `num_labels` (a posterior over that many labels) no more than $\log$ `num_labels`.
    Real-valued y give no upper bound.
    """
    est = est.check_bounds(lower=0.0, name=name)
    plugin = plugin_label_entropy(y) if y is not None else None
    bounds = []
    if plugin is not None:
        slack = plugin.slack(2.0)
        bounds.append((plugin.value + slack,
                       f"H(Y) of the {plugin.n} labels: {plugin.value:.4g} +- {plugin.stderr:.2g} nats by their "
                       f"frequencies ({plugin.classes} classes), plus {slack:.2g} for the plug-in's sampling error "
                       "and bias"))
    if num_labels is not None:
        bounds.append((math.log(num_labels), f"log {num_labels}, the most a label of {num_labels} classes can share"))
    if not bounds or not math.isfinite(est.value):
        return est
    upper, why = min(bounds)
    if est.value <= upper + 2.0 * est.stderr:
        return est
    return dataclasses.replace(est, flags=(*est.flags, f"{name} {est.value:.4g} is above its upper bound {upper:.4g} "
                                                       f"by more than 2 stderr ({why})"))


def _check_outputs(calls, x, y) -> None:
    """Each `(model, labelled, name)` of `calls` traced once by shape alone (`jax.eval_shape`: nothing is computed)
    on one row of `x`, with the first row of `y` when `labelled` and `y=None` otherwise: it must be a protocol model
    (a `VPSDE` in its `sde`) whose output $e(x, s; y)$ has the shape of one row of `x` and a float dtype. The
    estimators sum the output's squares, so an output of another shape (a broadcast, a scalar, a slice) or an integer
    one would still give a number."""
    x = jnp.asarray(x)
    example, s = jax.ShapeDtypeStruct(x.shape[1:], x.dtype), jax.ShapeDtypeStruct((), x.dtype)
    label = None if y is None else jax.ShapeDtypeStruct(jnp.shape(y)[1:], jnp.asarray(y).dtype)
    for model, labelled, name in calls:
        if not isinstance(getattr(model, "sde", None), VPSDE):
            raise ValueError(f"{name} must be a protocol model: a callable model(x, s, y=None) with its forward "
                             f"process in a field `sde` (a gaussian_oracle.VPSDE); got {type(model).__name__} with "
                             f"sde {getattr(model, 'sde', None)!r}.")
        try:
            out = jax.eval_shape(model, example, s, label if labelled else None)
        except (ValueError, TypeError) as err:  # a shape the model does not take: say which rows, then its reason
            rows = f"a row of x, shape {tuple(example.shape)}" + (
                f", and a row of y, shape {tuple(label.shape)} ({label.dtype})" if labelled else "")
            raise ValueError(f"{name}(x, s, {'y' if labelled else 'None'}) does not take {rows}: {err}") from err
        if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != example.shape \
                or not jnp.issubdtype(out.dtype, jnp.floating):
            got = (f"shape {out.shape}, dtype {out.dtype}" if isinstance(out, jax.ShapeDtypeStruct)
                   else type(out).__name__)
            raise ValueError(f"{name}(x, s, {'y' if labelled else 'None'}) must return e, of the shape of one sample "
                             f"of x, {tuple(example.shape)}, in a float dtype; on one row of x it returns {got}.")


def _both_calls(model, unconditional_model) -> tuple:
    """The `_check_outputs` calls of an estimator that calls `model` with labels and, unconditionally, either
    `unconditional_model` or `model` with `y=None`."""
    if unconditional_model is None:
        return (model, True, "model"), (model, False, "model")
    return (model, True, "model"), (unconditional_model, False, "unconditional_model")


def _checked_rows(integrand, models: tuple, x, y, times: AbstractTimeIntegrator, chunk_size: int,
                  key: PRNGKeyArray, *, calls: tuple) -> np.ndarray:
    """`times.rows` after the checks every estimator makes: the integrator, the data, the models' outputs on them
    (`calls`: see `_check_outputs`), the key."""
    if not isinstance(times, AbstractTimeIntegrator):
        raise ValueError(f"times must be a time integrator (UniformGrid(...), ImportanceSampler(...)); got {times!r}.")
    x, y = _check_data(x, y)
    _check_outputs(calls, x, y)
    return times.rows(integrand, models, x, y, sde=models[0].sde, chunk_size=chunk_size, key=check_key(key))


def _integrate(integrand, models: tuple, x, y, times: AbstractTimeIntegrator, evals_per_call: int,
               chunk_size: int, key: PRNGKeyArray, *, calls: tuple) -> Estimate:
    rows = _checked_rows(integrand, models, x, y, times, chunk_size, key, calls=calls)
    return times.estimate(rows, sde=models[0].sde, evals_per_call=evals_per_call)


# ---------------------------------------------------------------------------------------------- estimators
def neural_entropy(model, x: Float[Array, "batch *shape"], *, y: Float[Array, "batch dim_y"] | None = None,
                   times: AbstractTimeIntegrator = UniformGrid(n_times=100), chunk_size: int = 1024,
                   key: PRNGKeyArray) -> Estimate:
    r"""Neural entropy $S_{NN} = \int_0^T \tfrac{\beta(s)}{2}\,\mathbb E\|e(\tilde x_s, s; y)\|^2\,ds$ (Eq. 11), in nats.

    $\tilde x_s \sim \mathcal N(\mu(s)x_0, (1 - \mu(s)^2)I)$ with $x_0$ the rows of `x`. With `y` (rows paired with
    `x`) this is the conditional $S_{NN}^{X|Y}$; for the exact $e^*$ it equals $S_{tot}(T)$ =
    `total_entropy_curve(T)` (`conditional_total_entropy_curve(T)`), which is below the $T \to \infty$ value by
    $D_{KL}(p_T \| p_{eq})$. On a grid the estimate carries the rate curve (`times`, `rate`, `rate_stderr`) and
    its running integral (`cumulative`, `cumulative_stderr`).

    **Arguments:**

    - `model`: any model satisfying the protocol (field `sde`, `__call__(x, s, y=None)` for one sample).
    - `x`: data samples $x_0$, one per row.
    - `y`: conditioning values paired with the rows of `x`, or `None` for the unconditional model.
    - `times`: the time integrator, e.g. `UniformGrid(n_times=100)` or `ImportanceSampler(proposal)`.
    - `chunk_size`: data rows evaluated per compiled call (bounds memory).
    - `key`: a PRNG key for the noise (and the times, when sampled).

    **Returns:**

    An `Estimate` in nats, flagged if significantly negative.
    """
    est = _integrate(_entropy_integrand, (model,), x, y, times, 1, chunk_size, key,
                     calls=((model, y is not None, "model"),))
    return est.check_bounds(lower=0.0, name="S_NN")


def mutual_information_minde(model, x: Float[Array, "batch *shape"], y: Float[Array, "batch dim_y"], *,
                             times: AbstractTimeIntegrator = UniformGrid(n_times=100),
                             unconditional_model=None, posterior=None, posterior_draws: int | None = None,
                             chunk_size: int = 1024, key: PRNGKeyArray) -> Estimate:
    r"""MINDE mutual information $I(X;Y) \approx \int_0^T \tfrac{\beta}{2}\mathbb E_{X,Y}\|e(\tilde x_s, s; y) - e(\tilde x_s, s)\|^2 ds$ (Eqs. 12-13), in nats.

    The expectation runs over the data pairs $(x_0, y)$ and the forward noise. With exact scores the result is
    $I(X;Y) - I(X_T;Y)$ (`mutual_information_curve(T)`). Each evaluation time costs two network calls.

    **Arguments:**

    - `model`: the conditional model; `model(x, s, None)` gives the unconditional $e$ unless
      `unconditional_model` is passed.
    - `x`, `y`: paired data samples, one pair per row.
    - `times`: the time integrator.
    - `unconditional_model`: a separately trained unconditional model (called with `y=None`), or `None`.
    - `posterior`: `posterior(x, s) -> logits` (or log-probabilities) of $p(k|\tilde x_s)$ over the integer labels
      for one sample (e.g. a trained `learned.NoisyClassifier`, or `jnp.log` of an oracle's `posterior`, which returns
      probabilities), or `None`. It is first called eagerly on a few rows of `x`, and one that returns probabilities
      (values in [0, 1] summing to 1) is refused. When given, the unconditional $e$ is never called: it is replaced by
      the posterior mixture of the conditional outputs, $\bar e = \sum_k p(k|\tilde x_s)\,e(\tilde x_s, s; k)$, the
      exact identity for exact scores. Among all centrings $c(\tilde x_s)$, $\mathbb E_{Y|\tilde x_s}\|e(\tilde
      x_s, s; Y) - c\|^2$ is least at the true posterior mean, so an unconditional output that errs (beyond the
      conditional ones) only adds to MINDE; this removes that error, at the price of one conditional call per label
      and a dependence on the posterior's calibration. Costs `num_labels` network calls per time (and one call of
      `posterior`, not counted in `n_evals`).
    - `posterior_draws`: `None` for the exact mixture over all labels, or M: the mixture is replaced by two
      independent means of $e$ over M labels drawn from the posterior, $\bar e_1, \bar e_2$, and the integrand by
      $(e(y) - \bar e_1)\cdot(e(y) - \bar e_2)$, whose mean over the draws is the exactly centred integrand (the two
      draws are independent given $\tilde x_s$). Costs $1 + 2M$ calls per time instead of `num_labels`, for some
      added variance (`Estimate.stderr` includes it).
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key.

    **Returns:**

    An `Estimate` in nats, flagged if significantly negative or, with integer labels, significantly above $H(Y)$: an
    upper confidence limit read from the labels `y` (their plug-in entropy plus 2 of its stderrs and its downward
    bias at 2 sigma: `plugin_label_entropy`), or, with a posterior, $\log(\text{num\_labels})$ where that is lower
    (the most a label of that many classes can share with X).
    """
    if y is None:
        raise ValueError("mutual_information_minde needs y, paired with the rows of x.")
    draws = _check_draws(posterior_draws, posterior)
    if posterior is not None:
        if unconditional_model is not None:
            raise ValueError("pass unconditional_model or posterior, not both: with a posterior the unconditional e "
                             "is the posterior mixture of the conditional outputs.")
        num_labels = _num_labels(posterior, x, y, model.sde)
        if draws is None:
            est = _integrate(_centred_minde_integrand, (model, posterior), x, y, times, num_labels, chunk_size, key,
                             calls=((model, True, "model"),))
        else:
            est = _integrate(_drawn_centred_minde_integrand, (model, posterior, draws), x, y, times, 1 + 2 * draws,
                             chunk_size, key, calls=((model, True, "model"),))
        return _check_information(est, y, "I_MINDE (posterior-centred)", num_labels)
    est = _integrate(_minde_integrand, (model, unconditional_model), x, y, times, 2, chunk_size, key,
                     calls=_both_calls(model, unconditional_model))
    return _check_information(est, y, "I_MINDE")


def mutual_information_minde_crossfit(model_a, model_b, x: Float[Array, "batch *shape"],
                                      y: Float[Array, "batch dim_y"], *,
                                      times: AbstractTimeIntegrator = UniformGrid(n_times=100), posterior=None,
                                      posterior_draws: int | None = None, chunk_size: int = 1024,
                                      key: PRNGKeyArray) -> Estimate:
    r"""Cross-fitted MINDE $I(X;Y) \approx \int_0^T \tfrac{\beta}{2}\mathbb E[\hat d_a \cdot \hat d_b]\,ds$ from two
    independently trained models, $\hat d = e(\tilde x_s, s; y) - e(\tilde x_s, s)$, in nats.

    MINDE's plug-in $\mathbb E\|\hat d\|^2$ is biased up by the variance of the fit: with $\hat d = d + n$ and an
    error $n$ of mean zero, $\mathbb E\|\hat d\|^2 = \|d\|^2 + \mathbb E\|n\|^2$. Two fits whose errors are
    independent (different initialisations, ideally disjoint training data) give $\mathbb E[\hat d_a\cdot\hat d_b] =
    \|d\|^2$ without that term (the U-statistic idea). A shared bias of both fits (e.g. both underfit the same way)
    is not removed, and the per-sample values may be negative. For exact models ($a = b = e^*$) this equals
    `mutual_information_minde`.

    **Arguments:**

    - `model_a`, `model_b`: two conditional models on the same `sde`; `model(x, s, None)` gives each one's
      unconditional $e$.
    - `x`, `y`: paired data samples, one pair per row (held out from both fits).
    - `times`: the time integrator.
    - `posterior`: logits (or log-probabilities, not probabilities: see `mutual_information_minde`) of
      $p(k|\tilde x_s)$, or `None`; when given, each $\hat d$ is centred on its own model's
      posterior mixture of conditional outputs instead of its unconditional output (see `mutual_information_minde`):
      a bias the two unconditional outputs share then cannot reach the estimate.
    - `posterior_draws`: `None` for the exact mixtures over all labels (2 `num_labels` calls per time), or M: each
      model's mixture is the mean of its $e$ over its own M labels drawn from the posterior, independently for the two
      models, so the product's mean over the draws is the exactly centred integrand; $2(1 + M)$ calls per time.
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key (the same noisy points $\tilde x_s$ feed both models).

    **Returns:**

    An `Estimate` in nats, flagged if significantly negative or, with integer labels, significantly above $H(Y)$ (as
    `mutual_information_minde`).
    """
    if y is None:
        raise ValueError("mutual_information_minde_crossfit needs y, paired with the rows of x.")
    if getattr(model_a, "sde", None) != getattr(model_b, "sde", None):
        raise ValueError(f"the two models must share one forward process; got {getattr(model_a, 'sde', None)} and "
                         f"{getattr(model_b, 'sde', None)}.")
    draws = _check_draws(posterior_draws, posterior)
    labelled = ((model_a, True, "model_a"), (model_b, True, "model_b"))
    if posterior is not None:
        num_labels = _num_labels(posterior, x, y, model_a.sde)
        if draws is None:
            est = _integrate(_centred_crossfit_integrand, (model_a, model_b, posterior), x, y, times, 2 * num_labels,
                             chunk_size, key, calls=labelled)
        else:
            est = _integrate(_drawn_centred_crossfit_integrand, (model_a, model_b, posterior, draws), x, y, times,
                             2 * (1 + draws), chunk_size, key, calls=labelled)
        return _check_information(est, y, "I_MINDE (cross-fit, posterior-centred)", num_labels)
    est = _integrate(_crossfit_integrand, (model_a, model_b), x, y, times, 4, chunk_size, key,
                     calls=(*labelled, (model_a, False, "model_a"), (model_b, False, "model_b")))
    return _check_information(est, y, "I_MINDE (cross-fit)")


def mutual_information_difference(model, x: Float[Array, "batch *shape"], y: Float[Array, "batch dim_y"], *,
                                  times: AbstractTimeIntegrator = UniformGrid(n_times=100),
                                  unconditional_model=None, chunk_size: int = 1024,
                                  key: PRNGKeyArray) -> Estimate:
    r"""Entropy-difference mutual information $I(X;Y) \approx S_{NN}^{X|Y} - S_{NN}^X$ (Eq. 46), in nats.

    Both neural entropies are computed at the same times and the same noisy points $\tilde x_s$ (common random
    numbers), so the integrand is the paired difference $\tfrac{\beta}{2}(\|e(\tilde x_s, s; y)\|^2 - \|e(\tilde x_s, s)\|^2)$
    and the stderr is that of the paired differences: the large, shared fluctuation of $\|e\|^2$ near $s = 0$
    cancels. With exact scores the integrand's mean equals the MINDE integrand's at every s, so the value is also
    $I(X;Y) - I(X_T;Y)$; per sample it is noisier than MINDE's.

    **Arguments:**

    - `model`: the conditional model (`model(x, s, None)` is the unconditional one unless `unconditional_model`).
    - `x`, `y`: paired data samples.
    - `times`: the time integrator.
    - `unconditional_model`: a separate unconditional model, or `None`.
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key.

    **Returns:**

    An `Estimate` in nats, flagged if significantly negative or, with integer labels, significantly above $H(Y)$ (as
    `mutual_information_minde`).
    """
    if y is None:
        raise ValueError("mutual_information_difference needs y, paired with the rows of x.")
    est = _integrate(_difference_integrand, (model, unconditional_model), x, y, times, 2, chunk_size, key,
                     calls=_both_calls(model, unconditional_model))
    return _check_information(est, y, "I_diff")


class _Shared(NamedTuple):
    """The four estimates of `_shared_estimates`, each an `Estimate` in nats."""

    neural_entropy: Estimate
    """$S_{NN}^X$ (Eq. 11, the unconditional model)."""
    conditional_neural_entropy: Estimate
    """$S_{NN}^{X|Y}$ (Eq. 11, the conditional model)."""
    minde: Estimate
    """$I_{MINDE}$ (Eq. 13)."""
    difference: Estimate
    """$I_{diff} = S_{NN}^{X|Y} - S_{NN}^X$ (Eq. 46), the paired difference of the two above."""


def _shared_estimates(model, x: Float[Array, "batch *shape"], y: Float[Array, "batch dim_y"], *,
                     times: AbstractTimeIntegrator, chunk_size: int, key: PRNGKeyArray) -> _Shared:
    r"""$S_{NN}^X$, $S_{NN}^{X|Y}$, $I_{MINDE}$ and $I_{diff}$ of one conditional model, all on the same noisy inputs.

    At each data row and time the unconditional $e(\tilde x_s, s)$ and the conditional $e(\tilde x_s, s; y)$ are
    evaluated once, and the four integrands are read off them: two network calls per point where `neural_entropy`
    twice, `mutual_information_minde` and `mutual_information_difference` make six. Each estimate has the
    distribution of the one its own estimator makes (the same rows and per-row stderr), and $I_{diff}$ is exactly
    the difference of the two neural entropies; the four share their noise, so they are correlated. Each is checked
    as its own estimator checks it (flagged if significantly negative; the two MI estimates also if significantly
    above H(Y), with integer labels).

    **Arguments:**

    - `model`: a conditional protocol model; `model(x, s, None)` is its unconditional $e$.
    - `x`, `y`: paired data samples.
    - `times`: the time integrator (a grid: each estimate carries its curves).
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key.

    **Returns:**

    A named tuple (`neural_entropy`, `conditional_neural_entropy`, `minde`, `difference`); each estimate's `n_evals`
    is the two calls per point they share. (`verify.information_estimates` and `image_information` are its public
    faces.)
    """
    if y is None:
        raise ValueError("the shared estimates need y, paired with the rows of x.")
    rows = _checked_rows(_information_integrand, (model,), x, y, times, chunk_size, key,
                         calls=_both_calls(model, None))
    s_x, s_xy, minde = (times.estimate(rows[..., i], sde=model.sde, evals_per_call=2) for i in range(3))
    diff = times.estimate(rows[..., 1] - rows[..., 0], sde=model.sde, evals_per_call=2)
    return _Shared(s_x.check_bounds(lower=0.0, name="S_NN"), s_xy.check_bounds(lower=0.0, name="S_NN"),
                   _check_information(minde, y, "I_MINDE"), _check_information(diff, y, "I_diff"))
