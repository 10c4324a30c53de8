r"""When the label is decided: $H(Y | X_s)$ of a conditional model from the I-MMSE identity (seed paper 2506.10433).

Along the forward process the label is forgotten at the rate of the MINDE integrand,

$$\frac{d}{ds}H(Y|X_s) = \frac{\beta(s)}{2}\,\mathbb E\|e(\tilde x_s, s; y) - e(\tilde x_s, s)\|^2,$$

so $H(Y|X_s) = H(Y|X_T) - \int_s^T(\text{rate})$, with $H(Y|X_T) \approx H(Y)$ once the process has forgotten the label
(for the paper's schedule $I(X_T;Y)$ is of order $\alpha(T)$). No trajectories are sampled: each data pair is
diffused to the grid's times, as for MINDE, and the tail integrals $\int_{s_k}^T$ come with per-sample standard errors.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from gaussian_oracle import VPSDE, Estimate

from ._information import (_check_data, _checked_rows, _crossfit_integrand, _minde_integrand,
                           plugin_label_entropy)
from ._integrators import AbstractGrid

__all__ = ["FromEnd", "HalfTime", "LogSNRGrid", "Peak", "check_label_model", "half_time", "label_entropy",
           "label_entropy_per_class", "peak_time", "tail_quadrature_error"]


def check_label_model(model, example: Float[ArrayLike, "*shape"], labels, *, unconditional: bool = True,
                      what: str = "this estimator") -> None:
    """Call `model` once, eagerly, on `example` at $s = T/2$ with the largest and smallest of `labels` (and with
    `y=None` when `unconditional`), so that a label outside the model's classes or a model without a null label is
    refused at once with one clear `ValueError` (inside the compiled estimators it would surface as a runtime error
    of the traced computation). A refused label is named only when the model takes `example` with another label
    (one of those two, or label 0, a class of every model); when it refuses every one, the error says that the
    input does not fit the model (e.g. data of the wrong width).

    **Arguments:**

    - `model`: a label-conditional protocol model.
    - `example`: one input of the model's shape.
    - `labels`: the integer labels the estimator will pass (any shape).
    - `unconditional`: whether the estimator needs the unconditional $e(x, s)$ = `model(x, s, None)`.
    - `what`: the caller's name, for the messages.
    """
    labels = np.asarray(labels)
    if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} needs integer class labels; got dtype {labels.dtype}, shape {labels.shape}.")
    x = jnp.asarray(example)
    s = jnp.asarray(0.5 * model.sde.T, x.dtype)
    tried = sorted({int(labels.min()), int(labels.max())})
    errors = {label: _refusal(model, x, s, label) for label in tried}
    refused = [label for label in tried if errors[label] is not None]
    if refused:
        label, err = refused[0], errors[refused[0]]
        if len(refused) < len(tried) or (0 not in errors and _refusal(model, x, s, 0) is None):
            raise ValueError(f"{what}: the model does not accept label {label} (the labels must be classes of the "
                             f"model, 0..num_classes-1): {err}") from err
        shown = ", ".join(str(k) for k in sorted({*tried, 0}))
        raise ValueError(f"{what}: the model refuses the input (one sample of shape {tuple(x.shape)}, dtype "
                         f"{x.dtype}) with every label tried ({shown}), so the input, not a label, does not fit the "
                         f"model (check the data's shape against the model's): {err}") from err
    err = _refusal(model, x, s, None) if unconditional else None
    if err is not None:
        raise ValueError(f"{what} needs the unconditional e(x, s) = model(x, s, None), i.e. a model trained with "
                         f"a null label (label dropout), and this model refuses y=None: {err}") from err


def _refusal(model, x, s, label) -> Exception | None:
    """The error `model(x, s, label)` raises, whatever its type (the model's own refusal, which the callers restate
    once), or None when the model takes it; the output is waited for, so that a check inside a compiled model is
    caught here too."""
    try:
        jax.block_until_ready(model(x, s, label))
    except Exception as err:
        return err
    return None


def _check_prior_covers_model(model, example: Float[ArrayLike, "*shape"], num_labels: int, *,
                              what: str = "this estimator") -> None:
    """Refuse a prior over fewer labels than the model has: a model that refuses unknown labels (as the package's
    networks and oracles do) but accepts label `num_labels` has more classes, and a posterior over the first
    `num_labels` of them would be a posterior over a subset, without a word. (A model that accepts any label cannot
    be told apart, and is let through.) One eager call per label tried, at $s = T/2$."""
    x = jnp.asarray(example)
    s = jnp.asarray(0.5 * model.sde.T, x.dtype)
    accepts = lambda label: _refusal(model, x, s, jnp.asarray(label, jnp.int32)) is None  # noqa: E731
    if accepts(num_labels) and not accepts(np.iinfo(np.int32).max):
        raise ValueError(f"{what}: the prior gives {num_labels} label probabilities, but the model also accepts label "
                         f"{num_labels} (and refuses unknown labels): it has more classes; pass the prior of all its "
                         "classes.")


def _check_grid(times, sde: VPSDE) -> np.ndarray:
    if not isinstance(times, AbstractGrid):
        raise ValueError(f"times must be a grid (UniformGrid, GeometricGrid): the curve needs fixed nodes; got {times!r}.")
    nodes, _ = times.nodes_weights(sde)
    nodes = np.asarray(nodes, np.float64)
    if nodes.ndim != 1 or nodes.size < 2 or not np.all(np.diff(nodes) > 0):
        raise ValueError(f"the time grid must have at least two strictly increasing nodes; got {nodes!r}.")
    if nodes[0] < 0 or nodes[-1] > sde.T:
        raise ValueError(f"the time grid's nodes must lie in [0, T] = [0, {sde.T}]; got {nodes[0]} to {nodes[-1]}.")
    return nodes


def _time_of_log_snr(sde: VPSDE, rho: np.ndarray) -> np.ndarray:
    r"""Invert $\rho(s) = \log(\alpha/(1-\alpha))$: $\int_0^s\beta = \log(1 + e^{-\rho})$, a quadratic in s."""
    big_b = np.logaddexp(0.0, -rho)
    slope = (sde.beta_max - sde.beta_min) / sde.T
    return 2.0 * big_b / (sde.beta_min + np.sqrt(sde.beta_min**2 + 2.0 * slope * big_b))


class LogSNRGrid(AbstractGrid):
    r"""Midpoint rule on $n$ cells uniform in the log signal-to-noise ratio $\rho(s) = \log(\alpha/(1-\alpha))$
    between $s_{\min}$ and T (nodes at the cells' centres in $\rho$).

    Near $s = 0$ the cells are nearly geometric in s (like `GeometricGrid`); near T, where $\rho$ changes by
    $\beta/(1-\alpha)$ per unit s, they are about $\beta_{\max}$ times finer than geometric cells, which is where
    $H(Y|X_s)$ approaches $H(Y)$ along a fast-decaying rate and a coarse grid's deterministic error would exceed the
    (vanishing) stderr.

    **Arguments:**

    - `n_times`: number of cells.
    - `s_min`: lower end, as an absolute time in $(0, T)$.
    """

    n_times: int = 64
    s_min: float = 1e-3

    def __check_init__(self):
        if isinstance(self.n_times, bool) or not isinstance(self.n_times, int) or self.n_times < 2:
            raise ValueError(f"LogSNRGrid.n_times must be an integer >= 2; got {self.n_times!r}.")
        if not (isinstance(self.s_min, (int, float)) and self.s_min > 0):
            raise ValueError(f"LogSNRGrid.s_min must be a float > 0; got {self.s_min!r}.")

    def nodes_weights(self, sde: VPSDE) -> tuple[np.ndarray, np.ndarray]:
        if not self.s_min < sde.T:
            raise ValueError(f"LogSNRGrid.s_min = {self.s_min} must be below T = {sde.T}.")
        hi, lo = (float(sde.log_snr(np.float64(t))) for t in (self.s_min, sde.T))
        edges_rho = np.linspace(hi, lo, self.n_times + 1)
        edges = _time_of_log_snr(sde, edges_rho)
        edges[0], edges[-1] = self.s_min, sde.T
        nodes = _time_of_log_snr(sde, 0.5 * (edges_rho[:-1] + edges_rho[1:]))
        return nodes, np.diff(edges)

    def cumulative_weights(self, sde: VPSDE) -> np.ndarray:
        weights = self.nodes_weights(sde)[1]
        n = len(weights)
        return np.tril(np.ones((n, n)), k=-1) * weights[None, :] + np.diag(0.5 * weights)


class FromEnd(AbstractGrid):
    r"""A grid whose running integrals run from each node up to T, by the trapezoid rule on the nodes:
    $\int_{s_k}^T f \approx \sum_{j \ge k}\tfrac{s_{j+1} - s_j}{2}(f(s_j) + f(s_{j+1})) + (T - s_{n-1})f(s_{n-1})$.

    The trapezoid between nodes is second order at every node (the midpoint cells' half cell at the node itself
    would be first order, an error of order $h^2 f'$ per curve point that the stderr does not cover); the last
    piece, above the last node, is a rectangle where the label rate has long vanished.

    **Arguments:**

    - `grid`: the grid whose nodes are used (the total, `nodes_weights`, keeps its own weights).
    """

    grid: AbstractGrid

    def nodes_weights(self, sde: VPSDE) -> tuple[np.ndarray, np.ndarray]:
        return self.grid.nodes_weights(sde)

    def cumulative_weights(self, sde: VPSDE) -> np.ndarray:
        nodes, _ = self.grid.nodes_weights(sde)
        n = nodes.size
        half = 0.5 * np.diff(nodes)
        above = (np.arange(n - 1)[None, :] >= np.arange(n)[:, None]) * half[None, :]  # segment j counts for rows k <= j
        out = np.zeros((n, n))
        out[:, :-1] += above
        out[:, 1:] += above
        out[:, -1] += sde.T - nodes[-1]
        return out


def tail_quadrature_error(times: AbstractGrid, sde: VPSDE, rate: Float[ArrayLike, " n_times"]) -> np.ndarray:
    r"""An estimate, node by node, of the deterministic error of the tail integrals $\int_{s_k}^T$ of `FromEnd`
    (trapezoid between nodes, which the stderr does not cover): $\sum_{j \ge k} h_j^3|f''_j|/12$ with $f''$ from second
    differences of `rate`, plus $(T - s_{n-1})^2|f'|/2$ for the last piece. In nats.

    **Arguments:**

    - `times`: the grid the rate was estimated on.
    - `sde`: the forward process (its T).
    - `rate`: the mean rate at the grid's nodes (e.g. `label_entropy(...).rate`).

    **Returns:**

    The error estimate at each node (float64).
    """
    t = _check_grid(times, sde)
    f = np.asarray(rate, np.float64)
    if f.shape != t.shape or t.size < 3:
        raise ValueError(f"rate must hold one value per node of a grid of >= 3 nodes ({t.size}); got shape {f.shape}.")
    h = np.diff(t)
    slope = np.diff(f) / h
    curv = np.zeros_like(f)
    curv[1:-1] = 2.0 * np.diff(slope) / (h[1:] + h[:-1])
    curv[0], curv[-1] = curv[1], curv[-2]
    seg = h**3 * 0.5 * (np.abs(curv[:-1]) + np.abs(curv[1:])) / 12.0
    last = 0.5 * (sde.T - t[-1]) ** 2 * abs(slope[-1])
    return np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]]) + last


def _grid_error(rows: np.ndarray, times: AbstractGrid, sde: VPSDE) -> tuple[np.ndarray, np.ndarray]:
    r"""The quadrature error of the `FromEnd` tail curve of `rows` (n, n_times) at each node, and its noise floor.

    **Arguments:**

    - `rows`: the per-sample rates at the grid's nodes.
    - `times`: the grid.
    - `sde`: the forward process (its T).

    **Returns:**

    `(grid_error, noise)`: `tail_quadrature_error` of the mean rate, and of a rate with no signal and the mean's
    sampling noise (the difference of the mean rates of the even and odd rows, scaled to the variance of the mean):
    what the estimate gives for noise alone. Both NaN (not estimated) on a grid of fewer than 3 nodes.
    """
    n_nodes = rows.shape[1]
    if n_nodes < 3:  # no second differences
        return np.full(n_nodes, np.nan), np.full(n_nodes, np.nan)
    even, odd = rows[0::2], rows[1::2]
    noise = (even.mean(axis=0) - odd.mean(axis=0)) * math.sqrt(len(even) * len(odd)) / len(rows)
    return tail_quadrature_error(times, sde, rows.mean(axis=0)), tail_quadrature_error(times, sde, noise)


def _grid_limited(est: Estimate, grid_error: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The nodes where the grid error less its noise floor exceeds the curve's stderr (False where not estimated)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(grid_error - noise > est.cumulative_stderr)


def _flag_grid(est: Estimate, grid_error: np.ndarray, noise: np.ndarray, name: str) -> Estimate:
    """`est` with one flag if some node of its curve is limited by the time grid (`_grid_limited`)."""
    limited = np.flatnonzero(_grid_limited(est, grid_error, noise))
    if limited.size == 0:
        return est
    times = est.times[limited]
    ratio = grid_error[limited] / est.cumulative_stderr[limited]
    worst = limited[np.argmax(ratio)]
    flag = (f"{name} is limited by the time grid, not by the samples, at {limited.size} of {est.times.size} nodes "
            f"(s from {times.min():.3g} to {times.max():.3g}): there the estimated quadrature error of the tail "
            f"integral (grid_error), which the stderr does not cover, exceeds the stderr beyond what the rate's "
            f"sampling noise alone gives, up to {ratio.max():.3g} times ({grid_error[worst]:.2g} nats against "
            f"{est.cumulative_stderr[worst]:.2g} at s = {est.times[worst]:.3g}); a grid with more cells (n_times) "
            f"resolves it (the error falls as the square of the cell width)")
    return dataclasses.replace(est, flags=(*est.flags, flag))


def label_entropy(model, x: Float[Array, "batch *shape"], y, *, prior_entropy: float,
                  entropy_at_T: float | None = None, times: AbstractGrid = LogSNRGrid(n_times=64, s_min=1e-4),
                  model_b=None, chunk_size: int = 1024, key: PRNGKeyArray) -> Estimate:
    r"""$H(Y|X_s)$ on a time grid, in nats, from a label-conditional model by the I-MMSE identity.

    The curve is only as good as the model's label part $e(x, s; y) - e(x, s)$ where the label is decided. Train it
    with the likelihood weighting and times uniform in log-SNR (`DEMLoss(Likelihood(sde), LogSNRTime(), ...)`, as
    the images do). On the three-dimensional two-class mixture of the tests, a small MLP trained so for 3,000 steps
    lands within 0.03 nats of the exact curve, by this estimator and by `label_entropy_online`, for three seeds; with
    `DEMLoss`'s defaults (constant weighting, uniform times) the same network's curve is off by 0.09-0.30 nats here
    (too low) and 0.16-0.35 nats online (too high).

    **Arguments:**

    - `model`: a conditional protocol model; `model(x, s, None)` is the unconditional one.
    - `x`, `y`: data pairs (integer labels or vectors), one per row.
    - `prior_entropy`: $H(Y)$ of the label distribution (e.g. `learned.ImageData.label_entropy()`), the upper bound.
    - `entropy_at_T`: $H(Y|X_T)$ where the curve starts, if known (an oracle's): a finite number between 0 and
      `prior_entropy`. `None` uses $H(Y)$, which is high by $I(X_T;Y)$ (about $\alpha(T)|\Delta m|^2$: 4e-5 nats
      for two unit-scale classes at $\beta_{max} = 20$).
    - `times`: a grid (`LogSNRGrid` resolves both the small times and the approach to $H(Y)$ near T).
    - `model_b`: `None`, or a second model of the same data fitted on other samples (the other half of the training
      set, as `separability images` trains its pair): the rate is then cross-fitted, $\tfrac\beta2\,(e_a(y) -
      e_a)\cdot(e_b(y) - e_b)$ on the same noisy input. The plug-in rate $\tfrac\beta2\|e(y) - e\|^2$ exceeds the
      true one by the squared error of the fitted label part, so where that error is large the curve runs below 0;
      with independent fits the cross term has no such excess (as `mutual_information_minde_crossfit`).
    - `chunk_size`: data rows per compiled call.
    - `key`: a PRNG key.

    **Returns:**

    An `Estimate` with `times` the grid's nodes, $H(Y|X_s)$ in `cumulative`/`cumulative_stderr`, its derivative (the
    MINDE integrand) in `rate`/`rate_stderr`, and `value`/`stderr` at the first node: the label entropy left at the
    smallest time, $\approx H(Y) - I(X;Y)$. Values below 0 or above $H(Y)$ by more than 2 stderr are flagged, and
    so is a `prior_entropy` that integer labels `y` are unlikely to have been drawn with (by their frequencies), and
    a curve that the grid limits: where the estimated quadrature error of its tail integral, which the stderr does
    not cover, less that estimate's noise floor, exceeds the stderr (as `information_budget`'s curves; module note of
    `verify.estimators._budget`).
    """
    _check_grid(times, model.sde)
    h_y = float(prior_entropy)
    if not (np.isfinite(h_y) and h_y >= 0):
        raise ValueError(f"prior_entropy must be a finite number >= 0 (nats); got {prior_entropy!r}.")
    if y is None:
        raise ValueError("label_entropy needs the labels y, paired with the rows of x.")
    start = h_y if entropy_at_T is None else float(entropy_at_T)
    if not (np.isfinite(start) and 0 <= start <= h_y):  # H(Y|X_T) lies in [0, H(Y)]
        raise ValueError(f"entropy_at_T must be None or a finite number in [0, prior_entropy] = [0, {h_y:.6g}] (nats; "
                         f"H(Y|X_T) is at most H(Y)); got {entropy_at_T!r}.")
    x, y = _check_data(x, y)  # before the model is called on a row
    integrand, models, evals, calls = _label_models(model, model_b, x[0], y, "label_entropy")
    grid = FromEnd(times)
    rows = _checked_rows(integrand, models, x, y, grid, chunk_size, key, calls=calls)
    tail = grid.estimate(rows, sde=model.sde, evals_per_call=evals)
    curve = start - tail.cumulative
    est = Estimate(value=curve[0], stderr=tail.cumulative_stderr[0], times=tail.times, rate=tail.rate,
                   rate_stderr=tail.rate_stderr, cumulative=curve, cumulative_stderr=tail.cumulative_stderr,
                   n_evals=tail.n_evals)
    name = "H(Y|X_s)" + ("" if model_b is None else " (cross-fit)")
    est = est.check_bounds(lower=0.0, upper=h_y, name=f"{name} at the first time")
    est = _flag_grid(est, *_grid_error(rows, times, model.sde), name)
    mismatch = _prior_entropy_mismatch(h_y, y)
    return est if mismatch is None else dataclasses.replace(est, flags=(*est.flags, mismatch))


def _prior_entropy_mismatch(prior_entropy: float, y) -> str | None:
    r"""A flag when integer labels `y` are unlikely to have been drawn from a distribution of entropy
    `prior_entropy` (where the curve starts, and its upper bound): their plug-in entropy differs from it by more than
    4 standard errors plus the plug-in's downward bias at its 4-sigma quantile ($\chi^2_{K-1}/2n$, which is all there
    is when the labels are uniform). A value in bits, or of another label set, is caught so; None otherwise, and
    for vector labels (`PluginEntropy.slack`)."""
    plugin = plugin_label_entropy(y)
    if plugin is None:
        return None
    slack = plugin.slack(4.0)
    if abs(prior_entropy - plugin.value) <= slack:
        return None
    return (f"prior_entropy {prior_entropy:.4g} is not the entropy of the labels y were drawn from: their frequencies "
            f"give {plugin.value:.4g} +- {plugin.stderr:.2g} nats ({plugin.n} labels, {plugin.classes} classes), "
            f"farther than sampling allows ({slack:.2g}); the curve starts at prior_entropy (in nats, of these labels' "
            "distribution?)")


def _label_models(model, model_b, example, y, what: str) -> tuple:
    """The integrand of the I-MMSE curves, its models, its network calls per point and the calls whose outputs
    `_checked_rows` checks: plug-in on `model`, or cross-fitted with `model_b` (which must run on the same process);
    each model is checked against the labels once, eagerly."""
    if model_b is not None and model_b.sde != model.sde:
        raise ValueError(f"{what}: model_b must diffuse by the same process as model; got {model_b.sde!r} and "
                         f"{model.sde!r}.")
    if np.issubdtype(np.asarray(y).dtype, np.integer):
        for m in (model,) if model_b is None else (model, model_b):
            check_label_model(m, example, y, what=what)
    calls = tuple((m, labelled, name) for m, name in ((model, "model"), (model_b, "model_b")) if m is not None
                  for labelled in (True, False))
    if model_b is None:
        return _minde_integrand, (model, None), 2, calls
    return _crossfit_integrand, (model, model_b), 4, calls


def label_entropy_per_class(model, x: Float[Array, "batch *shape"], y: Int[ArrayLike, " batch"], *,
                            prior: Float[ArrayLike, " num_classes"],
                            times: AbstractGrid = LogSNRGrid(n_times=64, s_min=1e-4), model_b=None,
                            chunk_size: int = 1024, key: PRNGKeyArray) -> dict[int, Estimate]:
    r"""Per class c, the label's surprisal $H_c(s) = \mathbb E[-\log p(c|X_s) \mid Y = c]$ by the I-MMSE identity, in nats.

    $I(X_s;Y) = \sum_c p(c)\,D_{KL}(p_s(\cdot|c)\,\|\,p_s)$, and under the forward process each term falls at the
    rate $\tfrac{\beta}{2}\mathbb E[\|e(\tilde x_s, s; c) - e(\tilde x_s, s)\|^2 \mid Y = c]$ (two densities under the
    same diffusion lose KL at the rate of their Fisher divergence). With
    $D_{KL}(p_s(\cdot|c)\|p_s) = \mathbb E[\log p(c|X_s) - \log p(c) \mid Y = c]$ this gives

    $$H_c(s) = -\log p(c) - \int_s^T\frac{\beta}{2}\mathbb E\big[\|e(\tilde x_u, u; c) - e(\tilde x_u, u)\|^2 \,\big|\, Y = c\big]\,du,$$

    the MINDE integrand over the images of class c alone, accumulated from T down to s (starting at
    $-\log p(c)$, i.e. neglecting $I(X_T;Y)$). $\sum_c p(c)H_c(s) = H(Y|X_s)$, and $dH_c/ds \ge 0$ is the rate at which
    generation decides class c. (The average posterior *entropy* along class-c trajectories, which
    `class_profiles_online` also reports, is a different per-class quantity with the same class average.)

    **Arguments:**

    - `model`: a label-conditional protocol model with integer labels `0..K-1`; `model(x, s, None)` unconditional.
    - `x`, `y`: data pairs, one per row (every class needs at least two rows).
    - `prior`: the label probabilities $p(c)$, shape (K,).
    - `times`: a grid; `chunk_size`: data rows per compiled call; `key`: a PRNG key.
    - `model_b`: `None`, or a second model fitted on other samples, for cross-fitted rates (see `label_entropy`).

    **Returns:**

    `{c: Estimate}` with $H_c$ on the grid in `cumulative`/`cumulative_stderr`, its derivative in
    `rate`/`rate_stderr`, and `value`/`stderr` at the first node (flagged when below 0 by more than 2 stderr, and
    where the grid limits the curve, as `label_entropy`).
    """
    _check_grid(times, model.sde)
    prior = _check_prior(prior)
    x, _ = _check_data(x, y)  # before the model is called on a row
    labels = np.asarray(y)
    if labels.shape != (x.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"y must hold one integer label per row of x ({x.shape[0]}); got dtype {labels.dtype}, "
                         f"shape {labels.shape}.")
    if labels.min() < 0 or labels.max() >= prior.size:
        raise ValueError(f"labels must be classes 0..{prior.size - 1} of the prior; got values from {labels.min()} "
                         f"to {labels.max()}.")
    counts = np.bincount(labels, minlength=prior.size)
    if counts.min() < 2:
        c = int(counts.argmin())
        raise ValueError(f"class {c} has {counts[c]} rows; a per-class curve needs at least two.")
    integrand, models, evals, calls = _label_models(model, model_b, x[0], np.arange(prior.size),
                                                    "label_entropy_per_class")
    _check_prior_covers_model(model, x[0], prior.size, what="label_entropy_per_class")
    # every row once, in chunks of `chunk_size` whatever the classes' sizes (one compiled program, the one
    # `label_entropy` uses at the same chunk size); then each class's rows are summarised on their own
    grid = FromEnd(times)
    rows = _checked_rows(integrand, models, x, jnp.asarray(labels), grid, chunk_size, key, calls=calls)
    out = {}
    for c in range(prior.size):
        own = rows[labels == c]
        tail = grid.estimate(own, sde=model.sde, evals_per_call=evals)
        curve = -math.log(prior[c]) - tail.cumulative
        est = Estimate(value=curve[0], stderr=tail.cumulative_stderr[0], times=tail.times, rate=tail.rate,
                       rate_stderr=tail.rate_stderr, cumulative=curve, cumulative_stderr=tail.cumulative_stderr,
                       n_evals=tail.n_evals)
        name = f"H_{c}(s)" + ("" if model_b is None else " (cross-fit)")
        out[c] = _flag_grid(est.check_bounds(lower=0.0, name=f"{name} at the first time"),
                            *_grid_error(own, times, model.sde), name)
    return out


def _check_prior(prior) -> np.ndarray:
    prior = np.asarray(prior, np.float64)
    if (prior.ndim != 1 or prior.size < 2 or not np.all(np.isfinite(prior)) or np.any(prior <= 0)
            or abs(prior.sum() - 1) > 1e-9):
        raise ValueError(f"prior must hold K >= 2 finite, positive label probabilities summing to one; got {prior!r}.")
    return prior


# ---------------------------------------------------------------------------------------------- peaks
@dataclasses.dataclass(frozen=True)
class Peak:
    """Where a rate curve is largest: the time of maximal information transfer, with what the grid can resolve.

    - `time`, `rate`, `rate_stderr`: the grid node of the largest rate and the rate there.
    - `resolution`: the neighbouring grid nodes; on this grid the peak is located no better than between them.
    - `plausible`: the smallest and largest nodes whose rate is within 2 combined standard errors of the largest
      (the peak's statistical uncertainty; equal to `(time, time)` without standard errors).
    """

    time: float
    rate: float
    rate_stderr: float
    resolution: tuple[float, float]
    plausible: tuple[float, float]

    def to_dict(self) -> dict:
        return {"time": self.time, "rate": self.rate, "rate_stderr": self.rate_stderr,
                "resolution": list(self.resolution), "plausible": list(self.plausible),
                "definition": "argmax over the grid of the rate dH/ds; resolution = the neighbouring grid nodes; "
                              "plausible = nodes whose rate is within 2 combined stderr of the maximum"}


def _curve_on_grid(times, values, stderr, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`times` (a strictly increasing 1-D grid), `values` (finite, one per time) and `stderr` (>= 0, one per time;
    zeros for `None`) as float64 arrays, or one clear error naming `name` (and `name`_stderr)."""
    t = np.asarray(times, np.float64)
    v = np.asarray(values, np.float64)
    if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)) or not np.all(np.diff(t) > 0):
        raise ValueError(f"times must be a 1-D grid of at least two strictly increasing times; got {t!r}.")
    if v.shape != t.shape or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must hold one finite value per time, shape {t.shape}; got shape {v.shape}.")
    se = np.zeros_like(v) if stderr is None else np.asarray(stderr, np.float64)
    if se.shape != t.shape or not np.all(se >= 0):
        raise ValueError(f"{name}_stderr must hold one value >= 0 per time, shape {t.shape}; got {se!r}.")
    return t, v, se


def peak_time(times: Float[ArrayLike, " n_times"], rate: Float[ArrayLike, " n_times"],
              rate_stderr: Float[ArrayLike, " n_times"] | None = None) -> Peak:
    r"""The time of the largest rate on a grid (e.g. of $dH(Y|X_s)/ds$: when generation decides the label).

    **Arguments:**

    - `times`: the grid, strictly increasing.
    - `rate`: the rate at each node (finite).
    - `rate_stderr`: its standard errors (non-negative), or `None`.

    **Returns:**

    A `Peak` (the node, its neighbours as the grid's resolution, and the nodes statistically tied with it).
    """
    t, r, se = _curve_on_grid(times, rate, rate_stderr, "rate")
    k = int(np.argmax(r))
    tied = np.flatnonzero(r >= r[k] - 2.0 * np.hypot(se[k], se))
    return Peak(time=float(t[k]), rate=float(r[k]), rate_stderr=float(se[k]),
                resolution=(float(t[max(k - 1, 0)]), float(t[min(k + 1, t.size - 1)])),
                plausible=(float(t[tied.min()]), float(t[tied.max()])))


@dataclasses.dataclass(frozen=True)
class HalfTime:
    """When half of a curve's change has happened: the time at which a curve (e.g. $H(Y|X_s)$, increasing, or
    $I(X_s;Y)$, decreasing) is halfway between its values at the first and last grid times, by linear interpolation.

    - `time`: the crossing; `level`: the halfway value, in nats.
    - `interval`: the crossings of the curve plus and minus 2 stderr (the statistical uncertainty of `time`).
    """

    time: float
    level: float
    interval: tuple[float, float]

    def to_dict(self) -> dict:
        return {"time": self.time, "level": self.level, "interval": list(self.interval),
                "definition": "first time at which the curve (increasing or decreasing) is halfway between its values "
                              "at the first and last grid times (linear interpolation); interval = crossings of the "
                              "curve -+ 2 stderr"}


def half_time(times: Float[ArrayLike, " n_times"], curve: Float[ArrayLike, " n_times"],
              curve_stderr: Float[ArrayLike, " n_times"] | None = None) -> HalfTime:
    r"""The first time at which a curve crosses halfway between its end values, in the direction from its first to its
    last value: a robust "decision time" for an increasing curve such as $H(Y|X_s)$ (the rate's peak is the steepest
    point; this is the median of the rate as a distribution), and the time by which half of the information is lost
    for a decreasing one such as $I(X_s;Y)$.

    **Arguments:**

    - `times`: the grid, strictly increasing.
    - `curve`, `curve_stderr`: the curve and its standard errors (or `None`); its values at the first and last times
      must differ (the direction of the change).

    **Returns:**

    A `HalfTime`.
    """
    t, y, se = _curve_on_grid(times, curve, curve_stderr, "curve")
    if y[-1] == y[0]:
        raise ValueError(f"curve has the same value at its first and last times ({y[0]!r}): there is no change to "
                         f"halve.")
    sign = 1.0 if y[-1] > y[0] else -1.0  # a decreasing curve is read as its increasing mirror image
    up = sign * y
    level = 0.5 * (up[0] + up[-1])

    def crossing(values):
        above = np.flatnonzero(values >= level)
        if above.size == 0:
            return float(t[-1])
        k = int(above[0])
        if k == 0:
            return float(t[0])
        frac = (level - values[k - 1]) / (values[k] - values[k - 1])
        return float(t[k - 1] + frac * (t[k] - t[k - 1]))

    return HalfTime(time=crossing(up), level=float(sign * level),
                    interval=(crossing(up + 2 * se), crossing(up - 2 * se)))
