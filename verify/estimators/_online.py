r"""$H(Y|X_s)$ along stochastic reverse trajectories: the online Bayes classifier of the seed paper (2506.10433).

Trajectories run the reverse SDE (Eq. 4) from $x_T \sim \mathcal N(0, I)$ with the unconditional drift (or the
drift of one label, for per-class profiles, or its classifier-free-guided drift) by Euler–Maruyama steps of size $h$.
At each step every label's transition $\mathcal N(m_y, \beta h I)$, $m_y = x + h(-\tfrac\beta2x + \beta e(x, s; y))$,
scores the step actually taken, and Bayes' rule updates the posterior over labels:

$$\log p(y | x_{T:s-h}) = \log p(y | x_{T:s}) - \frac{\|x_{s-h} - m_y\|^2}{2\beta h} + \text{(common to all } y).$$

Because the forward process is Markov ($Y \to X_0 \to X_s \to X_{s'}$ for $s' > s$), the posterior given the whole
path from $T$ down to $s$ equals $p(y | x_s)$; the trajectories are draws of $p_s$ (up to the start at
$\mathcal N(0, I)$ instead of $p_T$, and the step error), so the average posterior entropy is $H(Y|X_s)$.

The identity $p(y | x_{T:s}) = p(y | x_s)$ holds path by path (as $h \to 0$ the log-likelihood ratio of the path is,
by Itô's formula, $\log p_s(x_s|y)/p_s(x_s)$ minus its value at $T$, for any continuous path of quadratic variation
$\beta\,ds$), whatever drift generated the path. Along guided trajectories (classifier-free guidance, drift
$e(x,s) + (1+w)[e(x,s;c) - e(x,s)]$) the recursion therefore still reads the model's posterior $p(y|x_s)$ at the
guided states: the curve says how decided the label is at each time of guided generation, and a peak of its rate
at larger s means the label is decided earlier.

**On learned models** the identity needs the exact scores. What the recursion computes in any case is the posterior
of the label in the model "draw y from the prior, then take Euler-Maruyama steps with the drift of label y", given
the path: exact for that model (up to its start) whatever the networks' errors. Along trajectories of each label's
own drift (`class_profiles_online` at w = 0, averaged over classes) the paths are draws of that very model. Along the
unconditional drift they are draws of another model, the same one only where the unconditional output is the
posterior average of the conditional ones, which a network trained with condition dropout fits on its own and only
approximately. On the digits U-Net (`benchmarks/bench_online_label_reference.py`) the class-trajectory curve agrees
with a data classifier on the same states at the end of generation, while the unconditional-trajectory curve reads
0.2-0.3 nats above it there: report both, as `separability labels` does.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, PRNGKeyArray

from gaussian_oracle import Estimate, check_key, mean_stderr

from .._sampling import check_guidance_weight
from ._information import _check_probabilities
from ._label_entropy import _check_prior, _check_prior_covers_model, check_label_model

__all__ = ["OnlineLabelCurves", "class_profiles_online", "label_entropy_online", "label_profile_online"]


def _surprisal_and_entropy(log_post, labels):
    entropy = -jnp.sum(jnp.exp(log_post) * log_post, axis=-1)
    surprisal = -jnp.take_along_axis(log_post, jnp.maximum(labels, 0)[:, None], axis=-1)[:, 0]
    return entropy, surprisal


@eqx.filter_jit
def _step(model, reference, carry, labels, w, s, s_next, h, key):
    """One Euler-Maruyama step from s to `s_next` (= s - h up to rounding, never below the simulation's end) for every
    trajectory, with the posterior update; returns the new carry and (posterior entropy, surprisal of the own label,
    the same from `reference` at `s_next`, or zeros)."""
    sde = model.sde
    x, log_post = carry
    num_classes = log_post.shape[1]
    n = x.shape[0]
    beta = sde.beta(s)
    e_u = jax.vmap(lambda xi: model(xi, s, None))(x)
    e_y = jax.vmap(lambda y: jax.vmap(lambda xi: model(xi, s, y))(x))(jnp.arange(num_classes))
    means = sde.reverse_step_mean(x[None], e_y, s, h)  # (K, n, ...): each label's transition mean
    e_c = e_y[jnp.maximum(labels, 0), jnp.arange(n)]  # (n, ...): each trajectory's own label
    guided = e_u + (1.0 + w) * (e_c - e_u)
    drift_e = jnp.where((labels < 0).reshape((n,) + (1,) * (x.ndim - 1)), e_u, guided)
    x_next = sde.reverse_step_mean(x, drift_e, s, h) + jnp.sqrt(beta * h) * jax.random.normal(key, x.shape, x.dtype)
    sq = jnp.sum(((x_next[None] - means) ** 2).reshape(num_classes, n, -1), axis=-1)  # (K, n)
    log_post = jax.nn.log_softmax(log_post - sq.T / (2.0 * beta * h), axis=-1)
    out = _surprisal_and_entropy(log_post, labels)
    if reference is None:
        ref = (jnp.zeros_like(out[0]), jnp.zeros_like(out[1]))
    else:
        p = jax.vmap(lambda xi: reference(xi, s_next))(x_next)
        ref = _surprisal_and_entropy(jnp.log(jnp.maximum(p, jnp.finfo(p.dtype).tiny)), labels)
    return (x_next, log_post), jnp.stack([*out, *ref])


def _trajectories(model, reference, x_T, log_prior, labels, w, n_steps: int, s_end: float, key):
    """The times reached (float64, decreasing) and, per step and trajectory: posterior entropy, surprisal of the
    trajectory's label, and the same two quantities from `reference(x, s)` (exact posterior probabilities at the
    state), or zeros without a reference.

    The step times $T - kh$ are computed once in float64, the last one set to `s_end`, and cast to the data's dtype;
    the cast values are the times used (the steps' starts, the reference's times) and returned. (Accumulated in
    float32, $T - (n-1)h - h$ fell below 0 for many `n_steps` with `s_end = 0`, a time the reference refused.)

    A Python loop over one compiled step, not a `lax.scan`: XLA on a CPU runs convolutions whose weights are carried
    through a loop many times slower, and a U-Net's weights would be."""
    sde = model.sde
    grid = sde.T - (sde.T - s_end) / n_steps * np.arange(n_steps + 1)
    grid[-1] = s_end
    at = jnp.asarray(grid, x_T.dtype)
    h = jnp.asarray((sde.T - s_end) / n_steps, x_T.dtype)
    carry = (x_T, jnp.broadcast_to(log_prior, (x_T.shape[0], log_prior.shape[0])))
    stats = []
    for k, step_key in enumerate(jax.random.split(key, n_steps)):
        carry, out = _step(model, reference, carry, labels, w, at[k], at[k + 1], h, step_key)
        stats.append(out)
    return np.asarray(at[1:], np.float64), jnp.stack(stats)  # stats (n_steps, 4, n): after each step, at s = at[k + 1]


@dataclasses.dataclass(frozen=True)
class OnlineLabelCurves:
    r"""The online classifier's curves along one set of trajectories (forward times increasing), in nats.

    - `entropy`: the average posterior entropy $\mathbb E[H(p(\cdot|X_s))]$ ($H(Y|X_s)$ for unconditional
      trajectories).
    - `surprisal`: $\mathbb E[-\log p(c|X_s)]$ of each trajectory's own label c (`None` for unconditional ones).
    - `reference_entropy`, `reference_surprisal`: the same from the reference posterior at the same states
      (`None` without a reference).
    - `gap`: `entropy` minus `reference_entropy`, trajectory by trajectory (a paired stderr), or `None`.

    Each is an `Estimate` with the curve in `cumulative`/`cumulative_stderr` and its derivative $d/ds$ (central
    differences over `rate_window` steps of each trajectory's own curve; stderr over trajectories) in
    `rate`/`rate_stderr`; `value`/`stderr` at the smallest time.
    """

    entropy: Estimate
    surprisal: Estimate | None = None
    reference_entropy: Estimate | None = None
    reference_surprisal: Estimate | None = None
    gap: Estimate | None = None

    def to_dict(self) -> dict:
        return {f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to_dict(curves=True)
                for f in dataclasses.fields(self)}


def _curve(times: np.ndarray, per_path: np.ndarray, window: int, n_evals: int) -> Estimate:
    """Mean curve over trajectories (columns) on `times` (increasing), with central-difference rates per trajectory."""
    mean, se = mean_stderr(per_path.T)
    idx = np.arange(times.size)
    hi, lo = np.minimum(idx + window, times.size - 1), np.maximum(idx - window, 0)
    slopes = (per_path[hi] - per_path[lo]) / (times[hi] - times[lo])[:, None]
    rate, rate_se = mean_stderr(slopes.T)
    return Estimate(value=mean[0], stderr=se[0], times=times, cumulative=mean, cumulative_stderr=se, rate=rate,
                    rate_stderr=rate_se, n_evals=n_evals)


def _run(model, shape, prior, labels: np.ndarray, *, w, n_steps, s_end, reference, rate_window, key):
    """Validate, simulate, and return `(times, stats)` with stats (n_times, 4, n) in increasing time order."""
    prior = _check_prior(prior)
    if not (isinstance(shape, tuple) and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                                             for d in shape)):
        raise ValueError(f"shape must be the shape of one sample, a tuple of positive ints such as (dim_x,) or "
                         f"(1, 8, 8); got {shape!r}.")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise ValueError(f"n_steps must be an integer >= 2; got {n_steps!r}.")
    if not 0 <= s_end < model.sde.T:
        raise ValueError(f"s_end must lie in [0, T) = [0, {model.sde.T}); got {s_end!r}.")
    check_guidance_weight(w)
    if w != 0 and np.any(labels < 0):
        raise ValueError("guidance (w != 0) needs a label for every trajectory: it steers towards that label.")
    if isinstance(rate_window, bool) or not isinstance(rate_window, int) or rate_window < 1:
        raise ValueError(f"rate_window must be a positive integer (steps); got {rate_window!r}.")
    key = check_key(key)
    k_start, k_path = jax.random.split(key)
    x_T = jax.random.normal(k_start, (labels.size, *shape))
    dtype = x_T.dtype
    check_label_model(model, x_T[0], np.arange(prior.size), what="the online Bayes classifier")
    _check_prior_covers_model(model, x_T[0], prior.size, what="the online Bayes classifier")
    if reference is not None:
        _check_probabilities(reference, x_T, model.sde, float(s_end), prior.size)
    times, stats = _trajectories(model, reference, x_T, jnp.asarray(np.log(prior), dtype), jnp.asarray(labels),
                                 jnp.asarray(w, dtype), n_steps, float(s_end), k_path)
    order = np.argsort(times)
    return times[order], np.asarray(stats, np.float64)[order], prior


def _curves(times, stats, columns, labelled: bool, referenced: bool, window: int, n_evals: int) -> OnlineLabelCurves:
    pick = lambda j: _curve(times, stats[:, j][:, columns], window, n_evals)  # noqa: E731
    gap = _curve(times, (stats[:, 0] - stats[:, 2])[:, columns], window, n_evals) if referenced else None
    return OnlineLabelCurves(entropy=pick(0), surprisal=pick(1) if labelled else None,
                             reference_entropy=pick(2) if referenced else None,
                             reference_surprisal=pick(3) if labelled and referenced else None, gap=gap)


def label_profile_online(model, shape: tuple[int, ...], prior: Float[ArrayLike, " num_classes"], *, n: int = 1000,
                         n_steps: int = 500, s_end: float = 1e-3, label: int | None = None, w: float = 0.0,
                         reference=None, rate_window: int | None = None, key: PRNGKeyArray) -> OnlineLabelCurves:
    r"""The online Bayes classifier along `n` reverse trajectories (module docstring), in nats.

    **Arguments:**

    - `model`: a label-conditional protocol model with integer labels `0..K-1`; `model(x, s, None)` unconditional.
    - `shape`: the shape of one sample (e.g. `(dim_x,)` or `(1, 8, 8)`).
    - `prior`: the label probabilities $p(y)$, shape (K,) (the posterior at $s = T$).
    - `n`: trajectories (the stderr is over them).
    - `n_steps`: Euler–Maruyama steps from T to `s_end` (the step error is not in the stderr).
    - `s_end`: where the trajectories stop, in $[0, T)$. The step times $T - kh$ are computed in float64 and cast to
      the samples' dtype; the curves' `times` are the cast values, the ones used.
    - `label`: `None` for trajectories of the unconditional model ($H(Y|X_s)$); a label c for trajectories of
      $p(x|c)$ (per-class profiles), guided towards c when `w` is not 0.
    - `w`: classifier-free guidance weight: drift $e(x,s) + (1+w)[e(x,s;c) - e(x,s)]$, as `sample_probability_flow`
      ($w = 0$: the conditional model; $w \ne 0$ needs `label`).
    - `reference`: `reference(x, s) -> p(.|x)`, probabilities over the K labels for one sample, e.g. an exact model's
      `posterior`, evaluated at the same states (the exact answer along these very trajectories), or `None`. It is
      first called eagerly on a few states, and one that returns negative values or values not summing to 1 (logits,
      as a `learned.NoisyClassifier` gives: pass their `jax.nn.softmax`) is refused.
    - `rate_window`: steps on each side of the central differences of the rate (default `max(1, n_steps // 20)`).
    - `key`: a PRNG key.

    **Returns:**

    An `OnlineLabelCurves`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (trajectories; the stderr is over them); got {n!r}.")
    k = np.asarray(prior).size
    if label is not None and (isinstance(label, bool) or not (isinstance(label, (int, np.integer)) and 0 <= label < k)):
        raise ValueError(f"label must be None or an integer label in 0..{k - 1}; got {label!r}.")
    window = max(1, n_steps // 20) if rate_window is None and isinstance(n_steps, int) else rate_window
    labels = np.full(n, -1 if label is None else int(label), np.int32)
    times, stats, prior = _run(model, shape, prior, labels, w=w, n_steps=n_steps, s_end=s_end, reference=reference,
                               rate_window=window, key=key)
    return _curves(times, stats, slice(None), label is not None, reference is not None, window,
                   int(n * n_steps * (prior.size + 1)))


def class_profiles_online(model, shape: tuple[int, ...], prior: Float[ArrayLike, " num_classes"], *,
                          n_per_class: int = 200, n_steps: int = 500, s_end: float = 1e-3, w: float = 0.0,
                          reference=None, rate_window: int | None = None, key: PRNGKeyArray
                          ) -> tuple[dict[int, OnlineLabelCurves], OnlineLabelCurves]:
    r"""`label_profile_online` for every class at once (one simulation, `n_per_class` trajectories per class).

    Class c's trajectories are draws of $p_s(\cdot|c)$ (guided towards c when $w \ne 0$); the class average, weighted
    by `prior`, of their posterior entropy is $H(Y|X_s)$ at $w = 0$ (the same curve as unconditional trajectories,
    from other draws) and its guided counterpart otherwise.

    **Arguments:** as `label_profile_online`, with `n_per_class` trajectories per class (at least 2).

    **Returns:**

    `({c: OnlineLabelCurves}, average)`: the per-class curves and their `prior`-weighted average (the average's
    stderr combines the classes' independent stderrs).
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 2:
        raise ValueError(f"n_per_class must be an integer >= 2; got {n_per_class!r}.")
    k = _check_prior(prior).size
    window = max(1, n_steps // 20) if rate_window is None and isinstance(n_steps, int) else rate_window
    labels = np.repeat(np.arange(k, dtype=np.int32), n_per_class)
    times, stats, prior = _run(model, shape, prior, labels, w=w, n_steps=n_steps, s_end=s_end, reference=reference,
                               rate_window=window, key=key)
    n_evals = int(labels.size * n_steps * (k + 1))
    per_class = {c: _curves(times, stats, labels == c, True, reference is not None, window, n_evals)
                 for c in range(k)}
    average = OnlineLabelCurves(**{f.name: _average([getattr(per_class[c], f.name) for c in range(k)], prior)
                                   for f in dataclasses.fields(OnlineLabelCurves)})
    return per_class, average


def _average(curves: list[Estimate | None], weights: np.ndarray) -> Estimate | None:
    if curves[0] is None:
        return None
    fields = {}
    for name in ("cumulative", "rate"):
        fields[name] = sum(wk * getattr(c, name) for wk, c in zip(weights, curves))
        fields[f"{name}_stderr"] = np.sqrt(sum((wk * getattr(c, f"{name}_stderr")) ** 2 for wk, c in zip(weights, curves)))
    return Estimate(value=fields["cumulative"][0], stderr=fields["cumulative_stderr"][0], times=curves[0].times,
                    n_evals=curves[0].n_evals, **fields)


def label_entropy_online(model, shape: tuple[int, ...], prior: Float[ArrayLike, " num_classes"], *, n: int = 1000,
                         n_steps: int = 500, s_end: float = 1e-3, label: int | None = None, w: float = 0.0,
                         key: PRNGKeyArray) -> Estimate:
    r"""$H(Y|X_s)$ on the sampler's time grid by the online Bayes classifier, in nats.

    **Arguments:**

    - `model`: a label-conditional protocol model with integer labels `0..K-1`; `model(x, s, None)` unconditional.
    - `shape`: the shape of one sample (e.g. `(dim_x,)` or `(1, 8, 8)`).
    - `prior`: the label probabilities $p(y)$, shape (K,) (the posterior at $s = T$).
    - `n`: trajectories (the stderr is over them).
    - `n_steps`: Euler–Maruyama steps from T to `s_end` (the step error is not in the stderr).
    - `s_end`: where the trajectories stop.
    - `label`: `None` for trajectories of the unconditional model ($H(Y|X_s)$); a label c for trajectories of
      $p(x|c)$, giving the per-class profile $\mathbb E[H(p(\cdot|X_s)) | Y = c]$.
    - `w`: classifier-free guidance towards `label` (see `label_profile_online`).
    - `key`: a PRNG key.

    **Returns:**

    An `Estimate` with `times` increasing from `s_end`, $H(Y|X_s)$ in `cumulative`/`cumulative_stderr`, its
    derivative in `rate`/`rate_stderr`, and `value`/`stderr` at `s_end`.
    """
    return label_profile_online(model, shape, prior, n=n, n_steps=n_steps, s_end=s_end, label=label, w=w,
                                key=key).entropy
