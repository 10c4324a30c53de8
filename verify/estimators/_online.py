r"""$H(Y|X_s)$ along stochastic reverse trajectories: the online Bayes classifier of the seed paper (2506.10433).

Trajectories run the reverse SDE (Eq. 4) from $x_T \sim \mathcal N(0, I)$ with the unconditional drift (or the
drift of one label, for per-class profiles) by Euler–Maruyama steps of size $h$. At each step every label's
transition $\mathcal N(m_y, \beta h I)$, $m_y = x + h(-\tfrac\beta2x + \beta e(x, s; y))$, scores the step actually
taken, and Bayes' rule updates the posterior over labels:

$$\log p(y | x_{T:s-h}) = \log p(y | x_{T:s}) - \frac{\|x_{s-h} - m_y\|^2}{2\beta h} + \text{(common to all } y).$$

Because the forward process is Markov ($Y \to X_0 \to X_s \to X_{s'}$ for $s' > s$), the posterior given the whole
path from $T$ down to $s$ equals $p(y | x_s)$; the trajectories are draws of $p_s$ (up to the start at
$\mathcal N(0, I)$ instead of $p_T$, and the step error), so the average posterior entropy is $H(Y|X_s)$.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, PRNGKeyArray

from gaussian_oracle import Estimate, check_key, mean_stderr

__all__ = ["label_entropy_online"]


@eqx.filter_jit
def _trajectories(model, x_T, log_prior, drift_label, n_steps: int, s_end, key):
    sde = model.sde
    h = (sde.T - s_end) / n_steps
    num_classes = log_prior.shape[0]
    n = x_T.shape[0]

    def e_all(x, s):
        e_u = jax.vmap(lambda xi: model(xi, s, None))(x)
        e_y = jax.vmap(lambda y: jax.vmap(lambda xi: model(xi, s, y))(x))(jnp.arange(num_classes))
        return e_u, e_y

    def step(carry, inputs):
        x, log_post = carry
        k, noise_key = inputs
        s = sde.T - k * h
        beta = sde.beta(s)
        e_u, e_y = e_all(x, s)
        means = sde.reverse_step_mean(x[None], e_y, s, h)  # (K, n, ...): each label's transition mean
        drift_mean = jnp.where(drift_label < 0, sde.reverse_step_mean(x, e_u, s, h), means[jnp.maximum(drift_label, 0)])
        x_next = drift_mean + jnp.sqrt(beta * h) * jax.random.normal(noise_key, x.shape, x.dtype)
        sq = jnp.sum(((x_next[None] - means) ** 2).reshape(num_classes, n, -1), axis=-1)  # (K, n)
        log_post = jax.nn.log_softmax(log_post - sq.T / (2.0 * beta * h), axis=-1)
        entropy = -jnp.sum(jnp.exp(log_post) * log_post, axis=-1)
        return (x_next, log_post), entropy

    ks = jnp.arange(n_steps, dtype=x_T.dtype)
    start = (x_T, jnp.broadcast_to(log_prior, (n, num_classes)))
    _, entropies = jax.lax.scan(step, start, (ks, jax.random.split(key, n_steps)))
    return entropies  # (n_steps, n): H after each step, at s = T - (k + 1) h


def label_entropy_online(model, shape: tuple[int, ...], prior: Float[ArrayLike, " num_classes"], *, n: int = 1000,
                         n_steps: int = 500, s_end: float = 1e-3, label: int | None = None,
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
    - `key`: a PRNG key.

    **Returns:**

    An `Estimate` with `times` increasing from `s_end`, $H(Y|X_s)$ in `cumulative`/`cumulative_stderr`, and
    `value`/`stderr` at `s_end`.
    """
    prior = np.asarray(prior, np.float64)
    if prior.ndim != 1 or prior.size < 2 or np.any(prior <= 0) or abs(prior.sum() - 1) > 1e-9:
        raise ValueError(f"prior must hold K >= 2 positive label probabilities summing to one; got {prior!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (trajectories; the stderr is over them); got {n!r}.")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer; got {n_steps!r}.")
    if not 0 <= s_end < model.sde.T:
        raise ValueError(f"s_end must lie in [0, T) = [0, {model.sde.T}); got {s_end!r}.")
    if label is not None and not (isinstance(label, (int, np.integer)) and 0 <= label < prior.size):
        raise ValueError(f"label must be None or an integer label in 0..{prior.size - 1}; got {label!r}.")
    key = check_key(key)
    k_start, k_path = jax.random.split(key)
    x_T = jax.random.normal(k_start, (n, *shape))
    dtype = x_T.dtype
    entropies = np.asarray(_trajectories(model, x_T, jnp.asarray(np.log(prior), dtype),
                                         jnp.asarray(-1 if label is None else int(label)), n_steps,
                                         jnp.asarray(s_end, dtype), k_path), np.float64)
    mean, se = mean_stderr(entropies.T)
    h = (model.sde.T - s_end) / n_steps
    times = model.sde.T - h * np.arange(1, n_steps + 1)
    order = np.argsort(times)
    return Estimate(value=mean[-1], stderr=se[-1], times=times[order], cumulative=mean[order],
                    cumulative_stderr=se[order], n_evals=int(n * n_steps * (prior.size + 1)))
