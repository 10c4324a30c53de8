"""The information budget: TC(X_s) by Eq. 7 for any protocol model, its split at tau, and `separability budget`.

Tier 2 (estimator(oracle) = closed form within 4 stderr) on the joint Gaussian with the exact e*; tier 3 (a learned
MLP within the Gaussian goal) on a determinism and a flattening instance; the quick digits run checks that what it
reports is consistent with independent recomputations (marginals, sums, ratios, flags).
"""

import json
import re

import jax
import numpy as np
import pytest

import learned
from gaussian_oracle import VPSDE, EmpiricalMixture, GaussianMixture, JointGaussian, marginal_kl_curves
from verify import (
    FromEnd,
    GeometricGrid,
    NeuralEntropy,
    UniformGrid,
    geometric_grid_through,
    information_budget,
    neural_entropy,
    total_correlation,
)

from _reference import Amplified


def _joint():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4))
    return JointGaussian(a @ a.T / 4 + 0.05 * np.eye(4), rng.normal(size=(2, 4)), 1.0)


def _closed_marginals(joint):
    diag = np.diag(joint.sigma_x)

    def kl(s):
        v = 1 + np.asarray(joint.sde.alpha(np.asarray(s)))[:, None] * (diag - 1)
        return 0.5 * (v - 1 - np.log(v))

    return kl


_GRID_FLAG = re.compile(r"limited by the time grid, not by the samples, at (\d+) of (\d+) nodes "
                        r"\(s from (\S+) to (\S+)\)")


def _grid_flags(est):
    """The grid-limit flags of `est`, each as (nodes, of, s from, s to)."""
    found = [_GRID_FLAG.search(f) for f in est.flags]
    return [(int(m[1]), int(m[2]), float(m[3]), float(m[4])) for m in found if m]


def _quadrature_errors(joint, grid):
    """|FromEnd quadrature of the exact rate - closed form| at the grid's nodes, for S^X, S^{X|Y} and I(X_s;Y): the
    deterministic error of the tail curves that their stderr does not cover."""
    sde = joint.sde
    nodes, _ = grid.nodes_weights(sde)
    weights = FromEnd(grid).cumulative_weights(sde)
    pairs = {"neural_entropy": (joint.entropy_rate, joint.total_entropy_curve),
             "conditional_neural_entropy": (joint.conditional_entropy_rate, joint.conditional_total_entropy_curve),
             "mutual_information": (joint.mutual_information_rate, joint.mutual_information_curve)}
    return {name: np.abs(weights @ np.asarray(rate(nodes)) - np.asarray(curve(sde.T) - curve(nodes)))
            for name, (rate, curve) in pairs.items()}


def test_tc_curve_of_the_exact_model_reproduces_the_oracle(key):
    """With e* and the closed-form marginals the curve is TC(X_s) - TC(X_T) = tc_curve(T) - tc_curve(s): at every node
    within 4 stderr of the grid's quadrature of the exact rate (the estimator's expectation), and at the smallest
    node within 4 stderr of the closed form itself (where the grid's discretisation is below one stderr). Near T,
    where it is not, the curve carries the one flag that says so, over the nodes where the grid's error is
    comparable to the stderr."""
    joint = _joint()
    sde = joint.sde
    x, _ = joint.sample(2000, key=jax.random.key(1))
    grid = GeometricGrid(n_times=128, s_min=1e-3)
    est = total_correlation(joint.model(), x, marginal_kl=_closed_marginals(joint), times=grid, key=key)
    nodes, _ = grid.nodes_weights(sde)
    np.testing.assert_array_equal(est.times, nodes)
    marg = _closed_marginals(joint)(np.append(nodes, sde.T)).sum(1)
    expected = FromEnd(grid).cumulative_weights(sde) @ joint.entropy_rate(nodes) - (marg[:-1] - marg[-1])
    z = (est.cumulative - expected) / est.cumulative_stderr
    assert np.all(np.abs(z) < 4), np.abs(z).max()
    exact = joint.total_correlation_curve(sde.T) - joint.total_correlation_curve(nodes)
    assert abs(expected[0] - exact[0]) < est.stderr  # the grid resolves the curve at its smallest node
    assert est.within(exact[0], 4.0) and est.value == est.cumulative[0]
    assert exact[0] > 0.9 * joint.total_correlation()  # little TC is erased below s = 1e-3
    # near T the log-spaced cells are wide and the grid's error exceeds the stderr: total_correlation's one report of
    # it is a flag, whose nodes are those where the quadrature error of the exact rate is comparable to the stderr
    [(limited, of, s_from, s_to)] = _grid_flags(est)
    assert len(est.flags) == 1 and of == nodes.size and s_to == pytest.approx(nodes[-1], rel=1e-2)
    ratio = _quadrature_errors(joint, grid)["neural_entropy"] / est.cumulative_stderr
    assert np.sum(ratio > 2) <= limited <= np.sum(ratio > 0.5), (limited, np.sum(ratio > 2), np.sum(ratio > 0.5))
    assert nodes[ratio > 0.5].min() <= s_from * (1 + 1e-2) and s_from <= nodes[ratio > 2].min() * (1 + 1e-2)


def test_tc_reuses_the_neural_entropy_rows_and_defaults_to_the_data_marginals(key):
    joint = _joint()
    x, _ = joint.sample(300, key=jax.random.key(2))
    grid = GeometricGrid(n_times=16, s_min=1e-2)
    est = total_correlation(joint.model(), x, times=grid, key=key)
    tail = neural_entropy(joint.model(), x, times=FromEnd(grid), key=key)
    nodes, _ = grid.nodes_weights(joint.sde)
    marg = marginal_kl_curves(np.asarray(x), np.append(nodes, joint.sde.T), joint.sde).sum(1)
    np.testing.assert_allclose(est.cumulative, tail.cumulative - (marg[:-1] - marg[-1]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(est.cumulative_stderr, tail.cumulative_stderr, rtol=1e-12)
    np.testing.assert_allclose(est.rate, tail.rate, rtol=1e-12)


def test_tc_curve_flags_a_model_below_the_marginals(key):
    """A model with e = 0 holds no information, so S_NN - sum_k KL_k < 0 at every node: flagged."""
    joint = _joint()
    x, _ = joint.sample(100, key=jax.random.key(3))
    zero = lambda x, s, y=None: 0.0 * x  # noqa: E731
    zero.sde = joint.sde
    est = total_correlation(zero, x, marginal_kl=_closed_marginals(joint), times=GeometricGrid(8, 1e-2), key=key)
    assert np.all(est.cumulative[:-1] < 0) and len(est.flags) == 1 and "below 0" in est.flags[0]


LEARNED_INSTANCES = {
    "determinism": lambda: JointGaussian.determinism(6, 2, 1.0, key=jax.random.key(0)),
    "flattening": lambda: JointGaussian.flattening(6, 2, 2, 1e-3, 1.0, key=jax.random.key(1)),
}


@pytest.mark.optimised  # 4,000 training steps each: 83 s with XLA's optimisations, 137 s without (tests/conftest.py)
@pytest.mark.parametrize("family", sorted(LEARNED_INSTANCES))
def test_tc_curve_of_a_learned_mlp_meets_the_gaussian_goal(family):
    r"""Tier 3: the TC curve of a *learned* MLP (the public `NeuralEntropy` fit: covariance preconditioning, log-SNR
    training times) against the closed form $TC(X_s) - TC(X_T)$, on a determinism instance and on a flattening one
    ($\lambda_\delta = 10^{-3}$: most of S and TC live below s = 0.02, which the log-spaced grid resolves).

    Tolerance, derived from the project's Gaussian goal (neural entropy within 2 %, tests/test_learned_accuracy.py
    and DESIGN.md): with exact marginals, TC_learned(s) - TC_exact(s) is exactly the error of the learned
    $S_{NN}(s \to T)$ (the marginal terms cancel), so the goal bounds it by $0.02\,S_{exact}(s_{\min} \to T)$, plus 4
    stderr for the Monte Carlo error of the estimate:
    - the total (the curve at the smallest node) within $0.02\,S_{exact}(s_{\min}\to T) + 4\,\mathrm{se}$: the goal;
    - every node of the curve within $0.02\,S_{exact}(s_{\min}\to T) + 4\,\mathrm{se}(s)$: the goal's error budget,
      uniformly along the curve. A per-node relative bound $0.02\,S(s\to T)$ is not what the goal states (it bounds an
      integral over the whole span), and it was computed alongside in the first trial run: it fails near T, where
      $S(s\to T) < 10^{-3}$ nats and the learned tail carries about $10^{-3}$ nats absolute error (6.6 times that
      bound at s = 0.6), while the two criteria above held with room.
    The grid's own discretisation is checked to be below a tenth of the goal, so the test measures the network.
    Small (D_X = 6, width 64, 4,000 steps) to fit the default suite, on the demo's 200,000 training samples. With
    20,000 samples, width 128 and 2,000 steps the determinism instance read -0.9 % to -6.7 % of S over four draws (this
    seed -6.4 %, failing the goal); 200,000 samples and 4,000 steps read -1.3 % to -1.4 % (width 128 and 64). The
    training budget was raised, not the tolerance. benchmarks/bench_budget_learned.py runs the demo's size (D_X = 25,
    width 256, 16,000 steps; -0.9 % and -0.1 % of S) and commits
    benchmarks/results/budget_gaussian_learned.json.
    """
    joint = LEARNED_INSTANCES[family]()
    sde = joint.sde
    k_train, k_eval, k_fit, k_est = jax.random.split(jax.random.key(7), 4)
    x, _ = joint.sample(200_000, key=k_train)  # the demo's sample size: 20,000 overfit (see below)
    x_eval, _ = joint.sample(2_000, key=k_eval)
    fitted = NeuralEntropy(steps=4_000, width=64, transform=None, progress=False).fit(np.asarray(x), None, key=k_fit)
    grid = GeometricGrid(n_times=128, s_min=1e-4)
    est = total_correlation(fitted.model, np.asarray(x_eval, np.float32), marginal_kl=_closed_marginals(joint),
                            times=grid, key=k_est)
    nodes, _ = grid.nodes_weights(sde)
    exact = np.asarray(joint.total_correlation_curve(sde.T) - joint.total_correlation_curve(nodes))
    s_tail = np.asarray(joint.total_entropy_curve(sde.T) - joint.total_entropy_curve(nodes))
    quad = FromEnd(grid).cumulative_weights(sde) @ np.asarray(joint.entropy_rate(nodes))
    assert np.max(np.abs(quad - s_tail)) < 0.1 * 0.02 * s_tail[0]  # the grid resolves the exact curve
    assert exact[0] > 0.3 * s_tail[0]  # TC is a sizeable part of S here: the check is not of a near-zero TC
    budget = 0.02 * s_tail[0]
    assert abs(est.value - exact[0]) <= budget + 4 * est.stderr, (est.value, est.stderr, exact[0], s_tail[0])
    excess = np.abs(est.cumulative - exact) / (budget + 4 * est.cumulative_stderr)
    assert np.all(excess <= 1), (nodes[np.argmax(excess)], excess.max())


def test_grid_through_tau_puts_tau_on_a_cell_edge():
    for tau, n, s_min in [(0.1, 64, 1e-3), (0.05, 40, 1e-4), (0.5, 7, 1e-2)]:
        grid = geometric_grid_through(tau, n, s_min, 1.0)
        edges = np.geomspace(grid.s_min, 1.0, n + 1)
        assert np.min(np.abs(edges - tau)) < 1e-12 * tau
        assert 0.3 * s_min < grid.s_min < 3 * s_min
    with pytest.raises(ValueError, match="tau"):
        geometric_grid_through(2.0, 10, 1e-3, 1.0)


@pytest.fixture(scope="module")
def exact_budget():
    """The exact joint Gaussian's budget on 2,000 pairs, 128 log-spaced cells from 1e-3 with tau = 0.1 on an edge,
    closed-form marginals: `(joint, grid, budget)`."""
    joint = _joint()
    x, y = joint.sample(2000, key=jax.random.key(4))
    grid = geometric_grid_through(0.1, 128, 1e-3, joint.sde.T)
    budget = information_budget(joint.model(), x, y, tau=0.1, times=grid, marginal_kl=_closed_marginals(joint),
                                key=jax.random.key(20250928))
    return joint, grid, budget


def test_budget_of_the_exact_joint_gaussian_matches_the_closed_forms(exact_budget):
    """Every part (total, semantic s >= tau, perceptual s < tau) of S^X, S^{X|Y}, TC and I within 4 stderr of the
    closed form over the same interval; parts sum to totals; the fractions are the ratios of the totals."""
    joint, grid, budget = exact_budget
    sde = joint.sde
    assert budget.tau == pytest.approx(0.1, rel=1e-10) and budget.s_min == pytest.approx(grid.s_min, rel=1e-10)
    curves = {"neural_entropy": joint.total_entropy_curve,
              "conditional_neural_entropy": joint.conditional_total_entropy_curve,
              "total_correlation": joint.total_correlation_curve, "mutual_information": joint.mutual_information_curve}
    span = {"total": (budget.s_min, sde.T), "semantic": (budget.tau, sde.T), "perceptual": (budget.s_min, budget.tau)}
    for name, curve in curves.items():
        for piece, (a, b) in span.items():
            est = budget.parts[name][piece]
            assert est.within(float(curve(b) - curve(a)), 4.0), (name, piece, est.z_score(float(curve(b) - curve(a))))
    for name, parts in budget.parts.items():
        assert parts["semantic"].value + parts["perceptual"].value == pytest.approx(parts["total"].value, rel=1e-12)
    for piece in span:
        ratio = budget.fractions["total_correlation"][piece].value
        assert ratio == pytest.approx(budget.parts["total_correlation"][piece].value
                                      / budget.parts["neural_entropy"][piece].value, rel=1e-12)
        assert budget.fractions["total_correlation"][piece].stderr > 0
    marg = _closed_marginals(joint)(np.array([budget.s_min, budget.tau, sde.T])).sum(1)
    assert budget.parts["marginal_sum"]["total"].value == pytest.approx(marg[0] - marg[2], rel=1e-12)
    assert budget.parts["marginal_sum"]["semantic"].value == pytest.approx(marg[1] - marg[2], rel=1e-12)
    for piece in span:  # I/S_NN^X: the unconditional neural entropy is the denominator, not S_NN^{X|Y}
        share = budget.parts["mutual_information"][piece].value / budget.parts["neural_entropy"][piece].value
        assert budget.fractions["mutual_information"][piece].value == pytest.approx(share, rel=1e-12)
    # the TC curve, TC(X_s) - TC(X_T) = S_NN^X(s -> T) - M(s): at every node within 4 stderr of its expectation (the
    # grid's sum of the exact rate, minus the exact marginals); and every curve within 4 stderr plus its reported
    # grid error of the closed form (near T the grid's own error is up to 18 stderr, which the grid error covers)
    tc = budget.curves["total_correlation"]
    nodes = tc.times
    exact = np.asarray(joint.total_correlation_curve(sde.T) - joint.total_correlation_curve(nodes))
    m = _closed_marginals(joint)(np.append(nodes, sde.T)).sum(1)
    expected = FromEnd(grid).cumulative_weights(sde) @ np.asarray(joint.entropy_rate(nodes)) - (m[:-1] - m[-1])
    z = (tc.cumulative - expected) / tc.cumulative_stderr
    assert np.all(np.abs(z) < 4), (nodes[np.argmax(np.abs(z))], np.abs(z).max())
    for name, curve in curves.items():
        est, closed = budget.curves[name], np.asarray(curve(sde.T) - curve(nodes))
        excess = np.abs(est.cumulative - closed) / (4 * est.cumulative_stderr + budget.grid_error[name])
        assert np.all(excess <= 1), (name, nodes[np.argmax(excess)], excess.max())
    assert tc.value == tc.cumulative[0] and exact[0] > 0.5 * joint.total_correlation()


def test_budget_grid_error_covers_the_quadrature_error_and_flags_the_grid_limited_curves(exact_budget):
    """On a log-spaced grid the cells near T are wide and the rates decay fast there: the deterministic error of the
    tail curves, which their stderr does not cover, exceeds it. Each curve's reported `grid_error`
    (`tail_quadrature_error` of its mean rate) bounds the real error, |FromEnd quadrature of the exact rate - closed
    form|, at every node, up to a quarter stderr (it is read from a Monte Carlo rate: over 12 draws the real error
    exceeded it by at most 0.14 stderr), and overstates it no more than 5 times where the curve is grid-limited. A
    curve carries one grid flag exactly when `grid_limited` holds at some node, counting those nodes; they include
    every node whose real error exceeds 2 stderr and none below half a stderr. The TC curve's grid error is
    S_NN^X's, and the budget's JSON holds each curve's grid error."""
    joint, grid, budget = exact_budget
    nodes = budget.curves["neural_entropy"].times
    for name, real in _quadrature_errors(joint, grid).items():
        est, error = budget.curves[name], budget.grid_error[name]
        se = est.cumulative_stderr
        assert np.all(real <= error + 0.25 * se), (name, nodes[np.argmax(real - error - 0.25 * se)])
        limited = budget.grid_limited(name)
        assert np.all(real[limited] >= 0.2 * error[limited]), (name, np.min(real[limited] / error[limited]))
        assert np.all(limited[real > 2 * se]) and np.all(real[limited] > 0.5 * se[limited]), name
        assert limited.sum() >= 5 and nodes[limited].min() > 0.3  # grid-limited near T only
        assert _grid_flags(est) == [(limited.sum(), nodes.size, float(f"{nodes[limited].min():.3g}"),
                                     float(f"{nodes[limited].max():.3g}"))], (name, est.flags)
    assert budget.grid_limited("neural_entropy").sum() >= 15  # 21 nodes from s = 0.33 on have a real error > 1 stderr
    tc = budget.curves["total_correlation"]
    np.testing.assert_array_equal(budget.grid_error["total_correlation"], budget.grid_error["neural_entropy"])
    np.testing.assert_array_equal(budget.grid_limited("total_correlation"), budget.grid_limited("neural_entropy"))
    assert [f.replace("TC(X_s) - TC(X_T)", "S") for f in tc.flags] == \
        [f.replace("S_NN^X(s -> T)", "S") for f in budget.curves["neural_entropy"].flags]
    curves = json.loads(json.dumps(budget.to_dict()))["curves"]
    for name, error in budget.grid_error.items():
        assert curves[name]["grid_error"] == error.tolist()
        assert curves[name]["grid_error_noise"] == budget.grid_error_noise[name].tolist()
        assert curves[name]["flags"] == list(budget.curves[name].flags)
    assert "grid_error" not in curves["marginal_sum"]  # exact


def test_budget_grid_flag_is_absent_where_the_grid_resolves_the_curves(key):
    """On a fine uniform grid (2,048 cells) the quadrature error of every curve is below its stderr at every node,
    and no curve, nor `total_correlation`, carries a grid flag. The raw `grid_error` of S_NN^X exceeds the stderr
    at most nodes here: it is then the rate's sampling noise (second differences of a Monte Carlo rate, summed over
    ever more cells), which `grid_error_noise` measures and `grid_limited` takes off; without it every finer grid
    would be flagged, more so the finer it is."""
    joint = _joint()
    x, y = joint.sample(500, key=jax.random.key(8))
    grid = UniformGrid(n_times=2048, s_min=1e-3)
    budget = information_budget(joint.model(), x, y, tau=0.1, times=grid, marginal_kl=_closed_marginals(joint),
                                key=key)
    for name, real in _quadrature_errors(joint, grid).items():
        assert np.all(real < budget.curves[name].cumulative_stderr), name  # the grid resolves every curve
    for name, est in budget.curves.items():
        assert not budget.grid_limited(name).any() and not _grid_flags(est) and not est.flags, (name, est.flags)
    s_x = budget.curves["neural_entropy"]
    assert np.sum(budget.grid_error["neural_entropy"] > s_x.cumulative_stderr) > 1000  # noise, not the grid
    tc = total_correlation(joint.model(), x, marginal_kl=_closed_marginals(joint), times=grid, key=key)
    assert not tc.flags, tc.flags


def test_budget_splits_at_the_grid_edge_it_reports_when_tau_is_inside_a_cell(key):
    """With tau inside a grid cell the split happens at the cell edge the budget reports as `tau` (not at the
    requested tau): the exact marginal-sum parts are M(edge) and M(s_min) - M(edge), and every part of S^X and TC is
    the closed form over [edge, T] and [s_min, edge] within 4 stderr."""
    joint = _joint()
    sde = joint.sde
    x, y = joint.sample(2000, key=jax.random.key(6))
    grid = GeometricGrid(n_times=128, s_min=1e-3)
    edges = np.geomspace(grid.s_min, sde.T, grid.n_times + 1)
    i = np.searchsorted(edges, 0.1)
    tau = float(edges[i - 1] * (edges[i] / edges[i - 1]) ** 0.3)  # 30 % into a cell (in log s), off every edge
    budget = information_budget(joint.model(), x, y, tau=tau, times=grid, marginal_kl=_closed_marginals(joint),
                                key=key)
    edge = budget.tau
    assert np.min(np.abs(edges - edge)) < 1e-12 and abs(edge - tau) > 0.01 * tau  # a grid edge, not tau
    assert budget.s_min == pytest.approx(grid.s_min, rel=1e-12)
    kl = _closed_marginals(joint)
    m = lambda s: float(kl(np.array([s])).sum() - kl(np.array([sde.T])).sum())  # noqa: E731
    marg = budget.parts["marginal_sum"]
    assert marg["semantic"].value == pytest.approx(m(edge), rel=1e-12)
    assert marg["perceptual"].value == pytest.approx(m(grid.s_min) - m(edge), rel=1e-12)
    assert marg["total"].value == pytest.approx(m(grid.s_min), rel=1e-12)
    assert abs(m(tau) - m(edge)) > 1e-3 * m(edge)  # splitting at tau instead would be seen
    span = {"total": (grid.s_min, sde.T), "semantic": (edge, sde.T), "perceptual": (grid.s_min, edge)}
    curves = {"neural_entropy": joint.total_entropy_curve, "total_correlation": joint.total_correlation_curve}
    for name, curve in curves.items():
        for piece, (a, b) in span.items():
            est, exact = budget.parts[name][piece], float(curve(b) - curve(a))
            assert est.within(exact, 4.0), (name, piece, est.z_score(exact))


def test_budget_share_stderr_is_the_spread_of_the_shares(key):
    """The delta-method stderr of the shares, sd(a - R b) / (sqrt(n) |mean b|), is the spread of the share over
    independent data and noise draws. A joint with TC = 79 % of S^X: the stderr sd(a)/(sqrt(n) |mean b|) (the
    ratio's correlation ignored) would be 1 / (1 - 0.79) = 4.8 times too large. 30 draws: the sample std's relative
    error is 13 %, so [0.5, 2] of the mean reported stderr holds by 3.8 sigma and more."""
    d = 4
    corr = 0.9 * np.ones((d, d)) + 0.1 * np.eye(d)
    scale = np.sqrt([2.0, 3.0, 0.5, 1.5])
    joint = JointGaussian(corr * scale[:, None] * scale[None, :], np.random.default_rng(0).normal(size=(2, d)), 1.0)
    grid = GeometricGrid(n_times=16, s_min=1e-2)
    shares = {"total_correlation": [], "mutual_information": []}
    stderrs = {name: [] for name in shares}
    for i in range(30):
        k_data, k_est = jax.random.split(jax.random.fold_in(key, i))
        x, y = joint.sample(200, key=k_data)
        budget = information_budget(joint.model(), x, y, tau=0.1, times=grid, marginal_kl=_closed_marginals(joint),
                                    key=k_est)
        for name in shares:
            shares[name].append(budget.fractions[name]["total"].value)
            stderrs[name].append(budget.fractions[name]["total"].stderr)
    assert 0.7 < np.mean(shares["total_correlation"]) < 0.9
    for name in shares:
        ratio = np.std(shares[name], ddof=1) / np.mean(stderrs[name])
        assert 0.5 < ratio < 2.0, (name, ratio)


def test_budget_gaussian_mode_reports_the_closed_forms(tmp_path):
    """`separability budget --gaussian` (`BudgetConfig(gaussian=True)`), small: each reported `exact` is the
    oracle's closed form over [s_min, T], [tau, T] and [s_min, tau] (the marginal sum by Eq. 7 from the S and TC
    curves), the exact parts add up, and each estimate (exact e*) is within 4 stderr of it."""
    from verify.experiments import EXPERIMENTS, BudgetConfig

    dims, seed = (6, 3), 3
    config = BudgetConfig(tau=0.1, n_times=64, s_min=1e-3, gaussian=True, gaussian_samples=1000, gaussian_dims=dims)
    payload = EXPERIMENTS["budget"].run(config, tmp_path, key=jax.random.key(seed))
    k_det, k_flat = jax.random.split(jax.random.split(jax.random.key(seed))[0])
    joints = {"determinism": JointGaussian.determinism(*dims, 1.0, key=k_det),
              "flattening": JointGaussian.flattening(*dims, dims[0] // 3, 1e-3, 1.0, key=k_flat)}
    inst = payload["instance"]
    lo, tau, T = inst["s_min"], inst["tau"], 1.0
    grid = geometric_grid_through(0.1, 64, 1e-3, T)
    assert lo == pytest.approx(grid.s_min, rel=1e-12) and tau == 0.1
    assert set(payload["instances"]) == set(joints)
    for name, joint in joints.items():
        row = payload["instances"][name]
        assert row["closed_form"]["S_tot"] == pytest.approx(joint.total_entropy(), rel=1e-12)  # the same instance
        assert row["closed_form"]["TC"] == pytest.approx(joint.total_correlation(), rel=1e-12)
        s, tc = joint.total_entropy_curve, joint.total_correlation_curve
        curves = {"neural_entropy": s, "conditional_neural_entropy": joint.conditional_total_entropy_curve,
                  "total_correlation": tc, "mutual_information": joint.mutual_information_curve,
                  # sum_k KL_k(s) = KL(p_s || N) - TC(X_s), so M(a) - M(b) = [S(b) - S(a)] - [TC(b) - TC(a)]
                  "marginal_sum": lambda t: s(t) - tc(t)}
        span = {"total": (lo, T), "semantic": (tau, T), "perceptual": (lo, tau)}
        for q, curve in curves.items():
            parts = row["quantities"][q]
            for piece, (a, b) in span.items():
                exact = float(curve(b) - curve(a))
                assert parts[piece]["exact"] == pytest.approx(exact, rel=1e-9, abs=1e-12), (name, q, piece)
                if q != "marginal_sum":
                    z = (parts[piece]["value"] - exact) / parts[piece]["stderr"]
                    assert abs(z) < 4 and parts[piece]["z"] == pytest.approx(z, rel=1e-9), (name, q, piece, z)
            assert parts["semantic"]["exact"] + parts["perceptual"]["exact"] == pytest.approx(parts["total"]["exact"],
                                                                                              rel=1e-12)
            assert parts["perceptual"]["exact"] >= 0 and parts["semantic"]["exact"] >= 0
        _check_grid_summary(row["summary"], row["curves"])
    assert {"grid_error", "S_NN_X_grid_limited_from_s", "S_NN_X_grid_error_max"} <= set(payload["definitions"])
    assert (tmp_path / "results.json").exists()


def _check_grid_summary(summary, curves):
    """The summary's grid keys are those of the S_NN^X curve's grid error in the same results."""
    s_x = curves["neural_entropy"]
    error, noise, se = (np.array(s_x[k], dtype=float) for k in ("grid_error", "grid_error_noise", "cumulative_stderr"))
    limited = error - noise > se
    assert summary["S_NN_X_grid_error_max"] == pytest.approx(error.max(), rel=1e-12)
    if limited.any():
        assert summary["S_NN_X_grid_limited_from_s"] == pytest.approx(np.array(s_x["times"])[limited].min(), rel=1e-12)
        assert any("limited by the time grid" in f for f in s_x["flags"])
    else:
        assert summary["S_NN_X_grid_limited_from_s"] is None


def test_budget_flags_an_information_above_the_label_entropy(key):
    """I(X;Y) <= H(Y): a model that overstates the label's effect twofold reads 4 I in every part (2.8 nats of a
    two-class label's log 2 in the total), and the budget's I_MINDE total is flagged against H(Y) of the labels, as
    MINDE is; e* is not."""
    mixture = GaussianMixture.symmetric_two_class(np.array([2.0, 0.0]), 0.5)
    x, y = mixture.sample(400, key=jax.random.key(6))
    grid = geometric_grid_through(0.1, 24, 1e-3, mixture.sde.T)
    for model, overstated in [(mixture.model(), False), (Amplified(mixture.model(), 2.0), True)]:
        total = information_budget(model, x, y, tau=0.1, times=grid, key=key).parts["mutual_information"]["total"]
        assert (total.value > 3 * np.log(2)) == overstated, total
        assert any("H(Y) of the 400 labels" in f for f in total.flags) == overstated, total.flags


@pytest.mark.parametrize("bad, match", [
    (dict(times=UniformGrid(n_times=10)), "above s = 0"), (dict(tau=5.0), "tau"), (dict(y=None), "labels"),
])
def test_budget_refuses_bad_input(key, bad, match):
    joint = _joint()
    x, y = joint.sample(10, key=jax.random.key(5))
    args = dict(y=y, tau=0.1, times=GeometricGrid(8, 1e-3)) | bad
    with pytest.raises(ValueError, match=match):
        information_budget(joint.model(), x, args["y"], tau=args["tau"], times=args["times"], key=key)


def test_budget_quick_on_digits(quick_images):
    """The CI run: `separability budget --quick` on digits. Asserts what it reports, not only that it ran: the
    marginal sum is `marginal_kl_curves` recomputed on all 1,797 digits, parts sum to totals, TC is S_NN^X minus the
    marginals part by part and along the curve, the shares are ratios of the totals, and the TC curve's smallest
    time is flagged exactly when it is below 0 by more than 2 stderr. The memorisation ceiling is
    `EmpiricalMixture.kl_divergence` of the training images applied directly (same key), and it is at least the exact
    marginal sum of the same images, within 4 stderr, at every node: KL(p_s || N) = sum_k KL_k(s) + TC(X_s) and
    TC >= 0 (the ceiling's KL_T is ~1e-3 nats, inside the stderr). The command is the session fixture's "budget", run
    after `images --quick`, whose networks it resumes (not trains again)."""
    ran = quick_images.ran
    assert ran["budget"].returncode == 0
    assert ran["budget"].checkpoints["a"] == ran["images"].checkpoints["a"]
    _check_digits_budget(quick_images.out["budget"])


def _check_digits_budget(out):
    payload = json.loads((out / "results.json").read_text())
    assert payload["experiment"] == "budget" and payload["instance"]["dataset"] == "digits"
    inst, q = payload["instance"], payload["quantities"]
    digits = learned.load_digits()
    assert inst["n_eval"] == min(inst["n_eval_requested"], len(digits.test_y))  # the count asked for and the one used
    x_all = np.concatenate([digits.train_x, digits.test_x])
    process = VPSDE(inst["sde"]["beta_min"], inst["sde"]["beta_max"], inst["sde"]["T"])
    kl = marginal_kl_curves(x_all, np.array([inst["s_min"], inst["tau"], process.T]), process).sum(1)
    assert q["marginal_sum"]["total"]["value"] == pytest.approx(kl[0] - kl[2], rel=1e-9)
    assert q["marginal_sum"]["semantic"]["value"] == pytest.approx(kl[1] - kl[2], rel=1e-9)
    for name in ("neural_entropy", "conditional_neural_entropy", "marginal_sum", "total_correlation",
                 "mutual_information"):
        parts = q[name]
        assert parts["semantic"]["value"] + parts["perceptual"]["value"] == pytest.approx(parts["total"]["value"],
                                                                                           rel=1e-9, abs=1e-9)
    for piece in ("total", "semantic", "perceptual"):
        s_x = q["neural_entropy"][piece]
        assert s_x["value"] > 0 and s_x["stderr"] > 0
        tc = q["total_correlation"][piece]
        assert tc["value"] == pytest.approx(s_x["value"] - q["marginal_sum"][piece]["value"], rel=1e-9, abs=1e-9)
        assert tc["stderr"] == pytest.approx(s_x["stderr"])
        for name in ("total_correlation", "mutual_information"):
            share = q["fractions"][name][piece]["value"]
            assert share == pytest.approx(q[name][piece]["value"] / s_x["value"], rel=1e-9)
    curves = payload["curves"]
    tc_curve = np.array(curves["total_correlation"]["cumulative"])
    np.testing.assert_allclose(tc_curve, np.array(curves["neural_entropy"]["cumulative"])
                               - np.array(curves["marginal_sum"]["cumulative"]), rtol=1e-9, atol=1e-9)
    nodes = np.array(curves["neural_entropy"]["times"])
    kl_nodes = marginal_kl_curves(x_all, np.append(nodes[:3], process.T), process).sum(1)
    np.testing.assert_allclose(curves["marginal_sum"]["cumulative"][:3], kl_nodes[:3] - kl_nodes[3], rtol=1e-9)
    se0 = curves["total_correlation"]["cumulative_stderr"][0]
    negative = tc_curve[0] < -2 * se0
    tc_flags = [f for f in q["flags"] if f.startswith("TC(X_s) - TC(X_T) is below 0")]
    assert bool(tc_flags) == negative
    if negative:
        assert f"at s = {nodes[0]:.3g}" in tc_flags[0]
    _check_grid_summary(payload["summary"], curves)
    assert {"grid_error", "S_NN_X_grid_limited_from_s", "S_NN_X_grid_error_max"} <= set(payload["definitions"])
    c = payload["memorisation_ceiling"]
    image = json.loads((out / "images" / "results.json").read_text())["instance"]
    assert image["guidance_training"] is None
    n_net = image["n_train_per_network"]  # the budgeted (first) network's images: with the cross-fit its half
    train_x, train_y = np.asarray(digits.train_x[:n_net]), np.asarray(digits.train_y[:n_net])
    assert c["points"] == f"the {n_net} training images of the budgeted network's S_NN^X"
    assert c["times"] == nodes.tolist()
    kl = EmpiricalMixture(train_x, train_y, process).kl_divergence(
        np.append(nodes, process.T), n=c["samples"], key=jax.random.fold_in(jax.random.key(inst["seed"]), 2))
    np.testing.assert_allclose(c["cumulative"], kl.cumulative[:-1] - kl.cumulative[-1], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(c["cumulative_stderr"], np.hypot(kl.cumulative_stderr[:-1], kl.cumulative_stderr[-1]),
                               rtol=1e-9)
    marg = marginal_kl_curves(train_x, np.append(nodes, process.T), process).sum(1)
    assert np.all(np.array(c["cumulative"]) >= marg[:-1] - marg[-1] - 4 * np.array(c["cumulative_stderr"]))
    assert (out / payload["figures"]["budget"]).stat().st_size > 1000
    assert (out / "images" / "results.json").exists()


@pytest.mark.slow  # trains a tiny separately guided pair (a few steps) and runs the whole budget: about a minute
def test_budget_of_a_separately_guided_run(tmp_path):
    """Regression: with separately trained guidance (the `--cpu` preset's, one unconditional U-Net on all training
    images and a noisy classifier per half) the budget read its network back from `checkpoints/a`, which that mode
    does not write, and failed after the whole images run. It now resumes the images run's networks, and its
    memorisation ceiling is of the images the unconditional U-Net saw: all of them."""
    from verify.experiments import EXPERIMENTS, BudgetConfig, ImageExperiment

    digits = learned.load_digits()
    data = digits.subset(200)
    tiny = learned.ClassifierConfig((1, 8, 8), 10, channels=(8, 8), hidden=8)
    image = ImageExperiment(
        unet=learned.UNetConfig.digits_tiny(num_classes=10, channels=16, embed_dim=64, num_groups=4),
        train=learned.TrainConfig(steps=4, batch_size=8, steps_per_call=2, checkpoint_every=2, progress=False),
        classifier=tiny, guidance=tiny, guidance_training="separate", times=UniformGrid(n_times=4),
        n_eval=20, chunk_size=10, per_class=1, sample_steps=2, compare_train=False)
    config = BudgetConfig(image=image, n_times=4, chunk_size=10, ceiling_samples=250)
    payload = EXPERIMENTS["budget"].run(config, tmp_path, key=jax.random.key(0), data=data)
    assert payload["memorisation_ceiling"]["points"] == "the 200 training images of the budgeted network's S_NN^X"
    for piece in ("total", "semantic", "perceptual"):
        assert np.isfinite(payload["quantities"]["neural_entropy"][piece]["value"])
