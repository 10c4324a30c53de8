r"""The empirical-data oracle: a finite labelled data set diffused exactly.

The forward process maps the empirical distribution $\frac1n\sum_i\delta_{x_i}$ of a labelled data set to a mixture of
isotropic Gaussians, $p_s(x) = \frac1n\sum_i\mathcal N(x; \mu(s)x_i, (1-\mu(s)^2)I)$, and each class to the mixture
over its own points. Its scores, label posteriors $p_s(y|x)$, $H(Y|X_s)$ and $I(X_s;Y)$ are therefore exact for every
$s > 0$: this is what a network that memorised its training set would give, the ceiling against which a learned
image model's numbers can be read (and, for $s$ large enough that the training points overlap, what a generalising
one approaches).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from ._checks import as_data_array, check_label, positive_int
from ._estimate import Estimate, check_curve_bounds, mean_stderr
from ._keys import check_key
from ._sde import VPSDE

__all__ = ["EmpiricalMixture", "EmpiricalMixtureModel"]


class EmpiricalMixtureModel(eqx.Module):
    r"""The exact $e^*(x, s; y) = \nabla\log p_s(x|y) + x$ of a diffused empirical data set, a protocol model.

    For one sample `x` (any shape, flattened inside) and time `s`: with $w_{ik} \propto \mathcal N(x; \mu x_i, v)$
    over the points of class k, the class score is $(\mu\sum_i w_{ik}x_i - x)/v$ ($v = 1 - \mu^2$), and the
    unconditional one is their average under the posterior $p_s(k|x)$. Arrays are held in the caller's default float
    dtype. Times outside $[0, T]$ and unknown labels are refused; $s = 0$ (a point mass) is refused too, because the
    score of the empirical distribution does not exist there.
    """

    sde: VPSDE
    points: Float[Array, "n dim"]
    onehot: Float[Array, "n num_classes"]
    log_class_size: Float[Array, " num_classes"]
    shape: tuple[int, ...] = eqx.field(static=True)

    @property
    def num_classes(self) -> int:
        return self.onehot.shape[1]

    def _class_terms(self, x, s):
        r"""Per-class scores $(K, D)$ and the log posterior $\log p_s(k|x)$ $(K,)$ at one flattened point."""
        s = self.sde.check_time(s)
        s = eqx.error_if(s, s <= 0, "the empirical distribution has no score at s = 0; use s > 0")
        mu, var = self.sde.mu(s), self.sde.var(s)
        logits = -jnp.sum((x - mu * self.points) ** 2, axis=1) / (2.0 * var)  # (n,)
        masked = jnp.where(self.onehot > 0, logits[:, None], -jnp.inf)  # (n, K)
        log_mass = jax.scipy.special.logsumexp(masked, axis=0)  # (K,): log sum over class k of N(x; mu x_i, v) + c
        weights = jnp.exp(masked - log_mass)  # (n, K), each column sums to one
        means = weights.T @ self.points  # (K, D)
        scores = (mu * means - x) / var
        return scores, jax.nn.log_softmax(log_mass)  # p(k) p_s(x|k) = (n_k/n)(1/n_k) sum_i ...: softmax of log_mass

    def posterior(self, x: Float[Array, "..."], s: Float[ArrayLike, ""]) -> Float[Array, " num_classes"]:
        """$p_s(y|x)$ over the labels, for one sample."""
        _, log_post = self._class_terms(jnp.reshape(x, -1), s)
        return jnp.exp(log_post)

    def __call__(self, x: Float[Array, "..."], s: Float[ArrayLike, ""], y: Int[ArrayLike, ""] | None = None
                 ) -> Float[Array, "..."]:
        """$e^*(x, s; y)$ for one sample (`y=None`: the unconditional $e^*(x, s)$), in the shape of `x`."""
        if jnp.shape(x) != self.shape:
            raise ValueError(f"x must have shape {self.shape} for one sample (vmap for batches); got {jnp.shape(x)}.")
        flat = jnp.reshape(jnp.asarray(x, self.points.dtype), -1)
        scores, log_post = self._class_terms(flat, s)
        if y is None:
            score = jnp.exp(log_post) @ scores
        else:
            score = scores[check_label(y, self.num_classes)]
        return jnp.reshape(score + flat, self.shape)

    def _label_terms(self, x, s):
        r"""$-\sum_k p_k\log p_k$ and $\tfrac\beta2\sum_k p_k\|e_k - \bar e\|^2$ at one flattened point."""
        scores, log_post = self._class_terms(x, s)
        post = jnp.exp(log_post)
        mean = post @ scores
        rate = 0.5 * self.sde.beta(s) * jnp.sum(post * jnp.sum((scores - mean) ** 2, axis=1))
        return -jnp.sum(jnp.where(post > 0, post * log_post, 0.0)), rate


@eqx.filter_jit
def _label_entropy_kernel(model: EmpiricalMixtureModel, key, n: int, times, chunk: int):
    k_idx, k_noise = jax.random.split(key)
    idx = jax.random.randint(k_idx, (n,), 0, model.points.shape[0])
    noise = jax.random.normal(k_noise, (n, model.points.shape[1]), model.points.dtype)

    def one_time(s):
        def block(args):
            i, z = args
            x_s = model.sde.mu(s) * model.points[i] + jnp.sqrt(model.sde.var(s)) * z
            return jax.vmap(model._label_terms, (0, None))(x_s, s)

        h, rate = jax.lax.map(block, (idx.reshape(-1, chunk), noise.reshape(-1, chunk, noise.shape[1])))
        h, rate = h.reshape(-1), rate.reshape(-1)
        return jnp.stack([*mean_stderr(h), *mean_stderr(rate)])

    return jax.lax.map(one_time, times)


@eqx.filter_jit
def _kl_kernel(points, sq_norms, sde: VPSDE, key, n: int, times, chunk: int):
    r"""Per-time mean and stderr of $\log p_s(x) - \log\mathcal N(x; 0, I)$ over $x \sim p_s$, shape (n_times, 2).

    The same data indices and noise serve every time (common random numbers: a smooth curve)."""
    num, dim = points.shape
    k_idx, k_noise = jax.random.split(key)
    idx = jax.random.randint(k_idx, (n,), 0, num)
    noise = jax.random.normal(k_noise, (n, dim), points.dtype)

    def one_time(s):
        mu, var = sde.mu(s), sde.var(s)

        def block(args):
            i, z = args
            x = mu * points[i] + jnp.sqrt(var) * z  # (chunk, dim)
            x_sq = jnp.sum(x**2, axis=1)
            # ||x - mu x_j||^2 by one matmul; float64, so the cancellation costs ~1e-16 ||x||^2 against var
            dist = x_sq[:, None] - 2.0 * mu * (x @ points.T) + mu**2 * sq_norms[None, :]
            log_mix = jax.scipy.special.logsumexp(-jnp.maximum(dist, 0.0) / (2.0 * var), axis=1)
            return log_mix - jnp.log(num) - 0.5 * dim * jnp.log(var) + 0.5 * x_sq

        values = jax.lax.map(block, (idx.reshape(-1, chunk), noise.reshape(-1, chunk, dim))).reshape(-1)
        return jnp.stack(mean_stderr(values))

    return jax.lax.map(one_time, times)


class EmpiricalMixture(eqx.Module):
    r"""A labelled data set diffused exactly by `sde`: a mixture of $\mathcal N(\mu(s)x_i, (1-\mu(s)^2)I)$, one per point.

    **Arguments:**

    - `points`: the data, shape (n, ...) (images or vectors; flattened inside), finite.
    - `labels`: integer labels in `0..num_classes-1`, shape (n,).
    - `sde`: the forward process.
    - `num_classes`: the number of classes (default: `max(labels) + 1`); a class without points is refused.
    """

    points: np.ndarray
    labels: np.ndarray
    sde: VPSDE
    num_classes: int = eqx.field(static=True)

    def __init__(self, points: ArrayLike, labels: ArrayLike, sde: VPSDE = VPSDE(), num_classes: int | None = None):
        points = as_data_array(points, "points")
        if points.ndim < 2 or points.shape[0] < 1:
            raise ValueError(f"points must have shape (n >= 1, ...); got {points.shape}.")
        labels = np.asarray(labels)
        if labels.shape != (points.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {points.shape[0]} integers, one per point; got dtype {labels.dtype}, "
                             f"shape {labels.shape}.")
        k = int(labels.max()) + 1 if num_classes is None else positive_int(num_classes, "num_classes")
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"labels must lie in 0..{k - 1}; got values from {labels.min()} to {labels.max()}.")
        counts = np.bincount(labels, minlength=k)
        if np.any(counts == 0):
            raise ValueError(f"every class needs at least one point; classes {np.flatnonzero(counts == 0).tolist()} "
                             "have none.")
        if not isinstance(sde, VPSDE):
            raise ValueError(f"sde must be a VPSDE; got {type(sde).__name__}.")
        self.points, self.labels, self.sde, self.num_classes = points, labels.astype(np.int64), sde, k

    def prior_entropy(self) -> float:
        """$H(Y)$ of the data set's label frequencies, in nats."""
        p = np.bincount(self.labels, minlength=self.num_classes) / len(self.labels)
        return float(-(p * np.log(p)).sum())

    def mutual_information(self) -> float:
        r"""$I(X;Y) = H(Y) - H(Y|X)$ of the data set itself (s = 0), in nats, exact.

        $H(Y|X)$ is the entropy of the labels within each group of identical points, weighted by the group's size:
        0 when the points are distinct (each point knows its label), so then $I(X;Y) = H(Y)$.
        """
        flat = self.points.reshape(self.points.shape[0], -1) + 0.0  # + 0.0: -0.0 and 0.0 are one point
        _, group = np.unique(flat, axis=0, return_inverse=True)
        counts = np.zeros((int(group.max()) + 1, self.num_classes))
        np.add.at(counts, (group.reshape(-1), self.labels), 1.0)
        p = counts / counts.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            within = -np.sum(np.where(counts > 0, p * np.log(p), 0.0), axis=1)
        conditional = float(counts.sum(axis=1) @ within) / len(self.labels)
        return max(self.prior_entropy() - conditional, 0.0)

    def _build_model(self, dtype) -> EmpiricalMixtureModel:
        onehot = np.eye(self.num_classes)[self.labels]
        flat = self.points.reshape(self.points.shape[0], -1)
        return EmpiricalMixtureModel(self.sde, jnp.asarray(flat, dtype), jnp.asarray(onehot, dtype),
                                     jnp.asarray(np.log(onehot.sum(0)), dtype), tuple(self.points.shape[1:]))

    def model(self) -> EmpiricalMixtureModel:
        """The exact $e^*$ as a protocol model, in the caller's default float dtype."""
        return self._build_model(float)

    def label_entropy(self, s: float | Float[ArrayLike, " n_times"], *, n: int = 2_000, key: PRNGKeyArray,
                      chunk: int = 250) -> Estimate:
        r"""$H(Y|X_s) = \mathbb E_{x_s\sim p_s}[-\sum_k p_s(k|x_s)\log p_s(k|x_s)]$, in nats, with exact posteriors.

        Monte Carlo over $x_s$: a data point drawn uniformly, diffused with fresh noise; float64. Falls from
        $H(Y)$ (as $s \to T$, up to the $p_T$ left of the data) to 0 as $s \to 0$ for distinct points: a memorising
        model always knows the label at small s. Same signature and result as `GaussianMixture.label_entropy`:
        for an array of times the curve is in `cumulative`/`cumulative_stderr` and its derivative (the exact MINDE
        integrand, Rao-Blackwellised over the label) in `rate`/`rate_stderr`.

        **Arguments:**

        - `s`: a time in (0, T], or a 1-D array of them.
        - `n`: Monte Carlo samples (a multiple of `chunk`, at least 2).
        - `key`: a JAX PRNG key.
        - `chunk`: samples evaluated together (bounds memory: `chunk` x n_points distances at once).

        **Returns:**

        An `Estimate` (with the curve for an array of times), flagged (`Estimate.flags`) where the value, or any point
        of the curve, leaves $[0, H(Y)]$ by more than 2 stderr.
        """
        times, n, chunk = self._check_monte_carlo(s, n, chunk, "posterior")
        key = check_key(key)
        with jax.enable_x64(True):
            stats = np.asarray(_label_entropy_kernel(self._build_model(jnp.float64), key, n,
                                                     jnp.atleast_1d(jnp.asarray(times)), chunk))
        if times.ndim == 0:
            est = Estimate(stats[0, 0], stats[0, 1])
        else:
            est = Estimate(stats[-1, 0], stats[-1, 1], times=times, cumulative=stats[:, 0],
                           cumulative_stderr=stats[:, 1], rate=stats[:, 2], rate_stderr=stats[:, 3])
        return check_curve_bounds(est, 0.0, self.prior_entropy(), name="H(Y|X_s)")

    def _check_monte_carlo(self, s, n, chunk, what: str):
        """The times (in (0, T], at most 1-D), `n` and `chunk` of a Monte Carlo method, or one clear error."""
        times = self.sde.check_times(s, "s")
        if times.ndim > 1 or np.any(times <= 0):
            raise ValueError("s must be a time in (0, T] or a 1-D array of them: the empirical distribution has no "
                             f"{what} at s = 0; got {s!r}.")
        n, chunk = positive_int(n, "n"), positive_int(chunk, "chunk")
        if n < 2 or n % chunk:
            raise ValueError(f"n must be >= 2 and a multiple of chunk = {chunk}; got {n}.")
        return times, n, chunk

    def kl_divergence(self, s: float | Float[ArrayLike, " n_times"], *, n: int = 2_000, key: PRNGKeyArray,
                      chunk: int = 250) -> Estimate:
        r"""$D_{KL}(p_s\|\mathcal N(0, I)) = \mathbb E_{x\sim p_s}[\log p_s(x) - \log\mathcal N(x; 0, I)]$, in nats, by
        Monte Carlo over exact densities.

        With $v = 1-\mu^2$ and $D$ the flattened dimension, each sample contributes
        $\log\tfrac1n\sum_j e^{-\|x - \mu x_j\|^2/2v} - \tfrac D2\log v + \tfrac12\|x\|^2$ (a logsumexp over all
        points, float64). This is $S_{tot}(s \to \infty)$ of the empirical distribution, the neural entropy a model
        that memorised the points exactly would hold from s on (the memorisation ceiling of Eq. 7's left side); it
        grows like $-\tfrac D2\log v(s) - \log n$ as $s \to 0$ and is infinite at $s = 0$.

        **Arguments:**

        - `s`: a time in (0, T], or a 1-D array of them.
        - `n`: Monte Carlo samples (a multiple of `chunk`, at least 2): a data point drawn uniformly, diffused with
          fresh noise; the same draws serve every time.
        - `key`: a JAX PRNG key.
        - `chunk`: samples evaluated together (bounds memory: `chunk` x n_points distances at once).

        **Returns:**

        An `Estimate`; for an array of times the curve is in `cumulative`/`cumulative_stderr` (and `value`/`stderr`
        are its last entry). Flagged (`Estimate.flags`) where the value, or any point of the curve, is below 0 by more
        than 2 stderr.
        """
        times, n, chunk = self._check_monte_carlo(s, n, chunk, "density")
        key = check_key(key)
        flat = self.points.reshape(self.points.shape[0], -1)
        with jax.enable_x64(True):
            points = jnp.asarray(flat, jnp.float64)
            stats = np.asarray(_kl_kernel(points, jnp.sum(points**2, axis=1), self.sde, key, n,
                                          jnp.atleast_1d(jnp.asarray(times, jnp.float64)), chunk))
        if times.ndim == 0:
            est = Estimate(stats[0, 0], stats[0, 1])
        else:
            est = Estimate(stats[-1, 0], stats[-1, 1], times=times, cumulative=stats[:, 0],
                           cumulative_stderr=stats[:, 1])
        return check_curve_bounds(est, 0.0, name="D_KL(p_s||N(0, I))")

    def mutual_information_curve(self, s: float | Float[ArrayLike, " n_times"], *, n: int = 2_000,
                                 key: PRNGKeyArray, chunk: int = 250) -> Estimate:
        r"""$I(X;Y) - I(X_s;Y) = H(Y|X_s) - H(Y|X)$, in nats: the label information erased between 0 and s.

        The package's curve convention (as `JointGaussian.mutual_information_curve`): 0 at s = 0, rising to
        $I(X;Y) - I(X_T;Y)$ at T, the target of MINDE over $[0, T]$. The information still held at s is
        $I(X_s;Y) = $ `mutual_information()` minus this curve. $H(Y|X_s)$ is `label_entropy` (Monte Carlo over exact
        posteriors, with the same `n`, `key` and `chunk`); $H(Y|X)$ is exact (`mutual_information`: 0 for distinct
        points), so the stderr is that of $H(Y|X_s)$.

        **Arguments:**

        - `s`: a time in (0, T], or a 1-D array of them.
        - `n`: Monte Carlo samples (a multiple of `chunk`, at least 2).
        - `key`: a JAX PRNG key.
        - `chunk`: samples evaluated together (bounds memory: `chunk` x n_points distances at once).

        **Returns:**

        An `Estimate`; for an array of times the curve is in `cumulative`/`cumulative_stderr`, its derivative
        $\tfrac{d}{ds}H(Y|X_s)$ (the exact MINDE integrand) in `rate`/`rate_stderr`, and `value`/`stderr` are its
        last entry. Flagged (`Estimate.flags`) where the value, or any point of the curve, leaves $[0, I(X;Y)]$ by
        more than 2 stderr.
        """
        h = self.label_entropy(s, n=n, key=key, chunk=chunk)
        information = self.mutual_information()
        at_data = self.prior_entropy() - information  # H(Y|X), exact
        if h.times is None:
            est = Estimate(h.value - at_data, h.stderr)
        else:
            est = Estimate(h.value - at_data, h.stderr, times=h.times, cumulative=h.cumulative - at_data,
                           cumulative_stderr=h.cumulative_stderr, rate=h.rate, rate_stderr=h.rate_stderr)
        return check_curve_bounds(est, 0.0, information, name="I(X;Y) - I(X_s;Y)")
