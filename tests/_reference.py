"""Independent float64 reference computations for the oracle tests (explicit matrices, no eigen-shortcuts), the
toy labelled images the classifier tests share, and a model that overstates the label's effect."""

import equinox as eqx
import jax
import numpy as np


class Amplified(eqx.Module):
    r"""$e(x, s) + c\,(e(x, s; y) - e(x, s))$ of a protocol model: every MI integrand times $c^2$ (in expectation,
    for an exact model), the unconditional output unchanged."""

    model: eqx.Module
    c: float

    @property
    def sde(self):
        return self.model.sde

    def __call__(self, x, s, y=None):
        e_u = self.model(x, s, None)
        return e_u if y is None else e_u + self.c * (self.model(x, s, y) - e_u)


def quadrant_images(key, n, num_classes=3):
    """`n` noisy 8 x 8 images whose class sets the brightness of one quadrant (easy to classify), and their labels."""
    k_y, k_x = jax.random.split(key)
    y = np.asarray(jax.random.randint(k_y, (n,), 0, num_classes))
    x = 0.3 * np.asarray(jax.random.normal(k_x, (n, 1, 8, 8)), np.float32)
    for c in range(num_classes):
        x[y == c, 0, (c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4] += 1.0
    return x, y


def gaussian_kl_to_standard(mean, cov):
    """KL(N(mean, cov) || N(0, I)) by the textbook formula with slogdet."""
    d = cov.shape[0]
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    return 0.5 * (np.trace(cov) + mean @ mean - d - logdet)


def gaussian_kl(cov_p, cov_q):
    """KL(N(0, cov_p) || N(0, cov_q))."""
    d = cov_p.shape[0]
    _, ldp = np.linalg.slogdet(cov_p)
    _, ldq = np.linalg.slogdet(cov_q)
    return 0.5 * (np.trace(np.linalg.solve(cov_q, cov_p)) - d + ldq - ldp)


def alpha(s, beta_min=0.1, beta_max=20.0, T=1.0):
    return np.exp(-(beta_min * s + 0.5 * (beta_max - beta_min) * s**2 / T))


def beta(s, beta_min=0.1, beta_max=20.0, T=1.0):
    return beta_min + (beta_max - beta_min) * s / T


def blocks(g):
    """Sigma_X, Sigma_XY, Sigma_Y, gain M and Sigma_{X|Y} (Eq. 48, 53) from the definitions."""
    sx, a, se = g.sigma_x, g.A, g.sigma_eps
    sxy = sx @ a.T
    sy = a @ sx @ a.T + se**2 * np.eye(a.shape[0])
    gain = sxy @ np.linalg.inv(sy)
    sc = sx - gain @ sxy.T
    return sx, sxy, sy, gain, 0.5 * (sc + sc.T)


def diffused(g, s):
    """P_s = alpha Sigma_X + (1 - alpha) I and C_s = alpha Sigma_{X|Y} + (1 - alpha) I (Eqs. 55, 56)."""
    sx, _, _, _, sc = blocks(g)
    a = alpha(s)
    eye = np.eye(sx.shape[0])
    return a * sx + (1 - a) * eye, a * sc + (1 - a) * eye


def minde_integrand(g, s):
    """beta/2 E||C^{-1}(x_s - m) - P^{-1} x_s||^2 over the joint law of (x_s, y), by explicit covariances."""
    sx, sxy, sy, gain, _ = blocks(g)
    p, c = diffused(g, s)
    a = alpha(s)
    ci, pi = np.linalg.inv(c), np.linalg.inv(p)
    k = np.hstack([ci - pi, -np.sqrt(a) * ci @ gain])
    cov = np.block([[p, np.sqrt(a) * sxy], [np.sqrt(a) * sxy.T, sy]])
    return 0.5 * beta(s) * np.trace(k @ cov @ k.T)


def entropy_integrand(g, s, conditional=False):
    """beta/2 E||grad log p_s + x||^2 (Eq. 3 integrand), by explicit covariances."""
    sx, sxy, sy, gain, sc = blocks(g)
    p, c = diffused(g, s)
    a = alpha(s)
    eye = np.eye(sx.shape[0])
    if not conditional:
        b = eye - np.linalg.inv(p)
        return 0.5 * beta(s) * np.trace(b @ p @ b.T)
    # e = (I - C^{-1}) x_s + C^{-1} m with m = sqrt(a) M y; joint moments of (x_s, y)
    ci = np.linalg.inv(c)
    k = np.hstack([eye - ci, np.sqrt(a) * ci @ gain])
    cov = np.block([[p, np.sqrt(a) * sxy], [np.sqrt(a) * sxy.T, sy]])
    return 0.5 * beta(s) * np.trace(k @ cov @ k.T)
