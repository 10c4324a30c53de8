"""The validation harness discriminates: the Gaussian plug-in passes Gaussian tasks and is flagged on transformed ones."""

import json
import math
import time

import jax
import numpy as np
import pytest

from gaussian_oracle import Estimate, JointGaussian
from verify import Task, default_tasks, gaussian_plugin_mi, validate


@pytest.fixture(scope="module")
def tasks():
    return default_tasks()


@pytest.fixture(scope="module")
def robust():
    from verify import robustness_tasks

    return robustness_tasks()


@pytest.fixture(scope="module")
def report(tasks):
    return validate(gaussian_plugin_mi, tasks, n_samples=4000, key=jax.random.key(0))


def test_default_tasks_span_the_range(tasks):
    exact = np.array([t.mutual_information for t in tasks])
    assert exact.min() < 0.2 and exact.max() > 50
    assert len({t.name for t in tasks}) == len(tasks)
    x, y = tasks[-1].sample(7, key=jax.random.key(1))
    assert x.shape == (7, 10) and y.shape == (7, 5)


def test_plugin_is_right_on_gaussian_tasks(report):
    gaussian = [r for r in report.rows if r.task.startswith(("gauss", "flattening"))]
    assert len(gaussian) == 6
    for row in gaussian:
        assert abs(row.z) < 4.0, row
        assert not row.flagged


def test_plugin_is_flagged_on_transformed_tasks(report):
    transformed = [r for r in report.rows if not r.task.startswith(("gauss", "flattening"))]
    assert len(transformed) == 3
    for row in transformed:
        assert row.flagged and abs(row.z) > 20, row
    assert set(report.flagged) == {r.task for r in transformed}


def test_transformed_task_keeps_its_mutual_information(tasks):
    """The maps are invertible per component: the truth is the Gaussian's, and the data really are non-Gaussian."""
    by_name = {t.name: t for t in tasks}
    assert by_name["cube-y-5x3"].mutual_information == by_name["gauss-5x3"].mutual_information
    x_g, y_g = by_name["gauss-5x3"].sample(2000, key=jax.random.key(2))
    x_t, y_t = by_name["cube-y-5x3"].sample(2000, key=jax.random.key(2))
    np.testing.assert_allclose(np.asarray(y_t), np.asarray(y_g) ** 3, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(x_t), np.asarray(x_g))


def test_plugin_matches_closed_form_and_has_honest_stderr():
    """Over independent data sets the plug-in's spread matches its reported stderr, and its mean the truth."""
    joint = JointGaussian.determinism(3, 2, 0.7, key=jax.random.key(3))
    keys = jax.random.split(jax.random.key(4), 40)
    ests = [gaussian_plugin_mi(*joint.sample(500, key=k)) for k in keys]
    values = np.array([e.value for e in ests])
    stderr = np.mean([e.stderr for e in ests])
    assert abs(values.mean() - joint.mutual_information()) < 4 * values.std(ddof=1) / math.sqrt(len(values))
    # The sample std of 40 values has relative standard error 1/sqrt(2 * 39) = 0.11; allow 4 of them.
    band = 4 / math.sqrt(2 * (len(values) - 1))
    assert abs(values.std(ddof=1) / stderr - 1) < band


def test_table_json_and_figure(report, tmp_path):
    text = report.table()
    assert "cube-y-5x3" in text and "<-- off" in text
    payload = json.loads(report.to_json(tmp_path / "report.json"))
    assert json.loads((tmp_path / "report.json").read_text()) == payload
    assert [r["task"] for r in payload["rows"]] == [r.task for r in report.rows]
    assert payload["flagged"] == list(report.flagged)
    report.plot(tmp_path / "report.png")
    head = (tmp_path / "report.png").read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n"


def test_float_estimators_are_reported_without_z():
    task = Task("toy", lambda n, *, key: (np.zeros((n, 1)), np.zeros((n, 1))), 1.0)
    rep = validate(lambda x, y, *, key: 1.5, [task], n_samples=10, key=jax.random.key(5))
    (row,) = rep.rows
    assert row.estimate == 1.5 and math.isnan(row.z) and not row.flagged
    assert json.loads(rep.to_json())["rows"][0]["z"] is None
    rep2 = validate(lambda x, y, *, key: Estimate(1.5, 0.1), [task], n_samples=10, key=jax.random.key(5))
    assert rep2.flagged == ("toy",) and rep2.rows[0].z == pytest.approx(5.0)


def test_rows_carry_wall_time_and_the_benchmark_mi_score():
    """wall_s is the estimator call's time (the sleep, not the sampling); `within` is max(10 %, 0.05 nats)."""
    import time
    tasks = [Task("small", lambda n, *, key: (np.zeros((n, 1)), np.zeros((n, 1))), 0.2),
             Task("large", lambda n, *, key: (np.zeros((n, 1)), np.zeros((n, 1))), 2.0)]

    def slow(x, y, *, key):
        time.sleep(0.2)
        return 0.249 if x.shape[0] == 10 else 0.0

    rep = validate(slow, tasks, n_samples=10, key=jax.random.key(5))
    assert all(0.2 <= r.wall_s < 5.0 for r in rep.rows)
    # |0.249 - 0.2| = 0.049 <= 0.05 nats; |0.249 - 2| > 0.2
    assert rep.within_tolerance() == ("small",) and rep.within_tolerance(rel=0.9) == ("small", "large")
    payload = json.loads(rep.to_json())
    assert payload["within_10pct_or_0.05_nats"] == ["small"] and payload["rows"][0]["wall_s"] >= 0.2
    assert "miss" in rep.table().splitlines()[-1] and "miss" not in rep.table().splitlines()[-2]


def test_validate_passes_each_estimator_call_its_own_key():
    """`validate` calls `estimator(x, y, *, key)`: a key per task, different across tasks and from the data's."""
    seen = []

    def spy(x, y, *, key):
        seen.append((np.asarray(x), jax.random.key_data(key)))
        return 0.0

    task = Task("toy", lambda n, *, key: (jax.random.normal(key, (n, 1)), jax.random.normal(key, (n, 1))), 1.0)
    validate(spy, [task, task], n_samples=8, key=jax.random.key(6))
    (x0, k0), (x1, k1) = seen
    assert not np.array_equal(k0, k1) and not np.array_equal(x0, x1)
    # The estimator's key is not the one the data were drawn with.
    assert not np.allclose(np.asarray(jax.random.normal(jax.random.wrap_key_data(k0), (8, 1))), x0)


def test_student_t_mutual_information_closed_form_matches_monte_carlo():
    """The closed form (entropies of multivariate t) against the mean of log p(x,y) - log p(x) - log p(y) from
    the t densities over samples, within 4 standard errors; and nu -> infinity gives back the Gaussian's I."""
    from scipy import stats

    from verify import StudentT, robustness_tasks

    tasks = robustness_tasks()
    assert {t.name for t in tasks} >= {"student-t-dof1-1x1", "student-t-dof2-5x3"}
    for i, task in enumerate(tasks):
        x, y = task.sample(100_000, key=jax.random.key(100 + i))
        ratio = task.sample.log_density_ratio(x, y)
        stderr = ratio.std(ddof=1) / math.sqrt(len(ratio))
        assert abs(ratio.mean() - task.mutual_information) < 4 * stderr, (task.name, ratio.mean(), stderr)
        assert task.mutual_information > 0
    cauchy = {t.name: t for t in tasks}["student-t-dof1-1x1"]
    x, _ = cauchy.sample(20_000, key=jax.random.key(7))
    assert stats.kstest(np.asarray(x[:, 0]), "cauchy").pvalue > 1e-3  # nu = 1, Sigma = I: standard Cauchy marginals
    joint = JointGaussian.determinism(3, 2, 0.5, key=jax.random.key(8))
    assert StudentT(joint, 1e7).mutual_information() == pytest.approx(joint.mutual_information(), abs=1e-5)
    with pytest.raises(ValueError, match="dof must be a finite number > 0"):
        StudentT(joint, 0.0)


def test_bounded_tasks_lie_in_the_unit_interval_and_keep_the_gaussian_mi(robust):
    """GaussianCopula: every component strictly inside (0, 1) and uniform there, the values the normal CDF of the
    Gaussian's standardised sample, and the truth the Gaussian's log-determinant formula computed here."""
    from scipy import stats
    from scipy.special import ndtr

    from verify import GaussianCopula

    bounded = [t for t in robust if t.name.startswith("bounded")]
    assert len(bounded) == 2
    for task in bounded:
        joint = task.sample.joint
        u, v = task.sample(20_000, key=jax.random.key(11))
        for a in (u, v):
            assert a.dtype == np.float64 and np.all((a > 0) & (a < 1))
        assert stats.kstest(u[:, 0], "uniform").pvalue > 1e-3 and stats.kstest(v[:, -1], "uniform").pvalue > 1e-3
        x, y = joint.sample(20_000, key=jax.random.key(11))
        np.testing.assert_allclose(v, ndtr(np.asarray(y, np.float64) / np.sqrt(np.diag(joint.sigma_y))), rtol=1e-12)
        sx, sy = np.asarray(joint.sigma_x), np.asarray(joint.sigma_y)
        a = np.asarray(joint.A)
        cov = np.block([[sx, sx @ a.T], [a @ sx, sy]])
        logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
        closed = 0.5 * (logdet(sx) + logdet(sy) - logdet(cov))
        assert task.mutual_information == pytest.approx(closed, rel=1e-9)
        assert task.mutual_information == GaussianCopula(joint).mutual_information()


def test_mixture_quadrature_is_exact_and_matches_monte_carlo(robust):
    """MixturePair: the quadrature reproduces the Gaussian closed form -1/2 log(1 - rho^2) for one component to
    1e-9, does not move when the grid is refined, and agrees with the Monte Carlo mean of the exact log density
    ratio within 4 standard errors; c rotated copies carry c times the information."""
    from verify import MixturePair

    one = MixturePair((1.0,), ((0.3, -0.2),), (((1.0, 0.7), (0.7, 2.0)),))
    assert one.mutual_information() == pytest.approx(-0.5 * math.log(1 - 0.7**2 / 2.0), abs=1e-9)
    tasks = {t.name: t for t in robust}
    single, triple = tasks["mixture-1x1"], tasks["mixture-3x3"]
    assert single.sample.mutual_information(points_per_sd=12.0) == pytest.approx(single.mutual_information, abs=1e-9)
    assert triple.mutual_information == pytest.approx(3 * single.mutual_information, rel=1e-12)
    for i, task in enumerate((single, triple)):
        x, y = task.sample(200_000, key=jax.random.key(20 + i))
        ratio = task.sample.log_density_ratio(x, y)
        stderr = ratio.std(ddof=1) / math.sqrt(len(ratio))
        assert stderr < 0.004 and abs(ratio.mean() - task.mutual_information) < 4 * stderr, (task.name, ratio.mean())
    x, y = triple.sample(10, key=jax.random.key(3))
    assert x.shape == (10, 3) and y.shape == (10, 3)
    with pytest.raises(ValueError, match="weights must be positive and sum to one"):
        MixturePair((0.5, 0.6), ((0, 0), (1, 1)), (((1, 0), (0, 1)),) * 2)
    with pytest.raises(ValueError, match="symmetric positive-definite"):
        MixturePair((1.0,), ((0, 0),), (((1, 2), (2, 1)),))


def test_validate_runs_the_robustness_tasks_and_flags_the_plugin(robust):
    """validate draws every non-Gaussian task; the Gaussian plug-in misses the bounded and mixture truths."""
    tasks = [t for t in robust if t.name.startswith(("bounded", "mixture"))]
    report = validate(gaussian_plugin_mi, tasks, n_samples=3000, key=jax.random.key(4))
    assert [r.task for r in report.rows] == [t.name for t in tasks]
    assert set(report.flagged) == {t.name for t in tasks}
    for row in report.rows:
        assert row.estimate < row.exact


def test_validate_reports_a_task_with_zero_information():
    """Independent X and Y (I = 0, the standard null check) raised ZeroDivisionError; the relative error is now
    infinite with the estimate's sign (NaN for an estimate of exactly 0), written as null, and the absolute floor of
    `within_tolerance` still applies."""
    joint = JointGaussian(np.eye(2), np.zeros((1, 2)), 1.0)
    assert joint.mutual_information() == 0.0
    task = Task("independent", lambda n, *, key: joint.sample(n, key=key), 0.0)
    rep = validate(gaussian_plugin_mi, [task], n_samples=2000, key=jax.random.key(0))
    (row,) = rep.rows
    assert row.estimate != 0 and row.relative_error == math.copysign(math.inf, row.estimate)
    assert abs(row.z) < 4 and not row.flagged and rep.within_tolerance() == ("independent",)
    assert json.loads(rep.to_json())["rows"][0]["relative_error"] is None
    assert "independent" in rep.table()
    zero = validate(lambda x, y, *, key: 0.0, [task], n_samples=10, key=jax.random.key(0))
    assert math.isnan(zero.rows[0].relative_error)


def test_validate_keeps_the_estimators_flags():
    """A row within n_sigma of the truth whose estimate violates a bound: its flags are in the row, the table and
    the JSON (they were dropped)."""
    task = Task("toy", lambda n, *, key: (np.zeros((n, 1)), np.zeros((n, 1))), 0.05)
    below = Estimate(-0.3, 0.1).check_bounds(lower=0.0, name="I")
    rep = validate(lambda x, y, *, key: below, [task], n_samples=10, key=jax.random.key(0))
    (row,) = rep.rows
    assert not row.flagged and row.flags == below.flags and len(row.flags) == 1
    assert f"flag: {below.flags[0]}" in rep.table() and "flags: 1" in rep.table()
    assert json.loads(rep.to_json())["rows"][0]["flags"] == list(below.flags)
    assert validate(lambda x, y, *, key: 0.05, [task], n_samples=10, key=jax.random.key(0)).rows[0].flags == ()


def test_plugin_flags_a_negative_value():
    """With an exactly zero sample cross-covariance the plug-in is minus its Wishart correction, written out here:
    -(B(5) + B(5) - B(10))/2 with B(p) = p log(2/(n-1)) + sum_i psi((n-1-i)/2), = -0.0646 at n = 200, which is 3.7
    of its (rho = 0 floor) stderr sqrt(25/2)/n below 0: flagged as below the bound I >= 0 (it was not)."""
    from scipy.special import digamma

    rng = np.random.default_rng(0)
    n = 200
    x = rng.normal(size=(n, 5))
    y = rng.normal(size=(n, 5))
    xc, yc = x - x.mean(0), y - y.mean(0)
    y = yc - xc @ np.linalg.lstsq(xc, yc, rcond=None)[0]  # orthogonal to x: no sample cross-covariance
    est = gaussian_plugin_mi(x, y)
    bias = lambda p: p * math.log(2 / (n - 1)) + sum(digamma((n - 1 - i) / 2) for i in range(p))  # noqa: E731
    assert est.value == pytest.approx(-0.5 * (2 * bias(5) - bias(10)), rel=1e-9)
    assert est.stderr == pytest.approx(math.sqrt(12.5) / n, rel=1e-6)
    assert est.value < -2 * est.stderr
    (flag,) = est.flags
    assert "below its lower bound" in flag


def test_plugin_refuses_non_finite_and_degenerate_columns():
    """NaN gave 'SVD did not converge' and a constant column 'Matrix is not positive definite': one clear error
    naming the input, the constant column, or the collinearity."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    y = x[:, :1] + 0.1 * rng.normal(size=(50, 1))
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"x must be finite; 1 of its 50 rows"):
        gaussian_plugin_mi(bad, y)
    with pytest.raises(ValueError, match="y must be finite"):
        gaussian_plugin_mi(x, np.full((50, 1), np.inf))
    constant = x.copy()
    constant[:, 1] = 3.0
    with pytest.raises(ValueError, match=r"x\[:, 1\] is constant"):
        gaussian_plugin_mi(constant, y)
    with pytest.raises(ValueError, match="collinear"):
        gaussian_plugin_mi(x, np.stack([x[:, 0] - 2 * x[:, 1], x[:, 1]], axis=1))


def test_validate_rows_table_and_json_hold_the_hand_computed_numbers():
    """Rows of known estimates against known truths, every number computed here by hand: z = (estimate - exact) /
    stderr, relative error (estimate - exact) / exact with its sign (-inf for a negative estimate of I = 0), flagged
    exactly when |z| > the n_sigma passed (2.5 here: z = 3 and -3 are, z = 2.2 is not; at the default 4 none is),
    `within` max(10 %, 0.05 nats) (15 % is outside, inside at 20 %), the stderr the estimate's own, and each in its
    own column of the table and key of the JSON."""
    cases = {"over": (1.0, 1.3, 0.1), "under": (2.0, 1.9, 0.2), "null": (0.0, -0.3, 0.1), "near": (1.0, 1.15, 1.0),
             "edge": (1.0, 1.22, 0.1)}  # name: (exact I, estimate, stderr)
    names = list(cases)
    tasks = [Task(name, lambda n, *, key, i=i: (np.full((n, 1), float(i)), np.zeros((n, 1))), cases[name][0])
             for i, name in enumerate(names)]

    def estimator(x, y, *, key):
        _, value, stderr = cases[names[int(x[0, 0])]]
        return Estimate(value, stderr)

    rep = validate(estimator, tasks, n_samples=10, n_sigma=2.5, key=jax.random.key(0))
    z = {"over": 3.0, "under": -0.5, "null": -3.0, "near": 0.15, "edge": 2.2}
    relative = {"over": 0.3, "under": -0.05, "null": -math.inf, "near": 0.15, "edge": 0.22}
    assert rep.n_sigma == 2.5 and [r.task for r in rep.rows] == names
    for row in rep.rows:
        exact, value, stderr = cases[row.task]
        assert (row.exact, row.estimate, row.stderr) == (exact, value, stderr)
        assert row.z == pytest.approx(z[row.task], rel=1e-12)
        assert row.relative_error == pytest.approx(relative[row.task])
        assert row.flagged == (row.task in ("over", "null"))
    assert rep.flagged == ("over", "null") and rep.within_tolerance() == ("under",)
    assert rep.within_tolerance(rel=0.2) == ("under", "near")
    assert validate(estimator, tasks, n_samples=10, key=jax.random.key(0)).flagged == ()
    payload = json.loads(rep.to_json())
    assert payload["n_sigma"] == 2.5 and payload["flagged"] == ["over", "null"]
    assert payload["within_10pct_or_0.05_nats"] == ["under"]
    for row in payload["rows"]:
        exact, value, stderr = cases[row["task"]]
        assert (row["exact"], row["estimate"], row["stderr"]) == (exact, value, stderr)
        assert row["z"] == pytest.approx(z[row["task"]], rel=1e-12)
        assert row["relative_error"] == (None if row["task"] == "null" else pytest.approx(relative[row["task"]]))
        assert row["flagged"] == (row["task"] in ("over", "null"))
    head, _, *lines = rep.table().splitlines()
    assert head.split() == ["task", "exact", "estimate", "stderr", "rel.err", "z", "wall", "s"]
    for line in lines:
        task, exact, value, stderr, rel, zed = line.split()[:6]
        assert (float(exact), float(value), float(stderr)) == cases[task]
        assert rel == f"{100 * relative[task]:.2f}%" and float(zed) == pytest.approx(z[task], abs=0.005)
        assert ("<-- off" in line) == (task in ("over", "null")) and ("miss" in line) == (task != "under")


def test_validate_wall_time_is_the_estimators_alone():
    """`wall_s` times the estimator's call, not the drawing of the pairs: a sampler that sleeps 1 s and an estimator
    that returns at once give a wall time far below 1 s (half of it, with room for a loaded machine)."""

    def slow_sampler(n, *, key):
        time.sleep(1.0)
        return np.zeros((n, 1)), np.zeros((n, 1))

    rep = validate(lambda x, y, *, key: 0.0, [Task("slow-data", slow_sampler, 1.0)], n_samples=4, key=jax.random.key(0))
    assert 0 <= rep.rows[0].wall_s < 0.5


def test_plugin_stderr_is_the_delta_method_value_and_honest():
    """Two pairs of unit Gaussians with correlations 0.6 and 0.3 (canonical correlations rho = (0.6, 0.3)): the
    plug-in's stderr is the delta-method sd sqrt(sum rho^2 / n) of -1/2 sum log(1 - r_i^2) (Var r = (1 - rho^2)^2 / n,
    derivative r / (1 - r^2)) computed from the true rho, on average over the data sets within 3 % (the sample r^2
    exceeds rho^2 by about (1 - rho^2)^2 / n, and the rho = 0 floor adds D_X D_Y / (2 n^2): about 1 % together), and
    over 300 independent data sets the values' spread matches the mean reported stderr within 4 standard errors of a
    sample standard deviation (1/sqrt(2 * 299) each), their mean the exact I = -1/2 sum log(1 - rho^2) within 4
    stderr."""
    rho, n, repeats = np.array([0.6, 0.3]), 400, 300
    rng = np.random.default_rng(7)
    exact = -0.5 * np.sum(np.log1p(-(rho**2)))
    delta = math.sqrt(np.sum(rho**2) / n)
    values, stderrs = [], []
    for _ in range(repeats):
        x = rng.normal(size=(n, 2))
        y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=(n, 2))
        est = gaussian_plugin_mi(x, y)
        values.append(est.value)
        stderrs.append(est.stderr)
    values, stderrs = np.array(values), np.array(stderrs)
    assert abs(stderrs.mean() / delta - 1) < 0.03, (stderrs.mean(), delta)
    assert abs(values.std(ddof=1) / stderrs.mean() - 1) < 4 / math.sqrt(2 * (repeats - 1))
    assert abs(values.mean() - exact) < 4 * values.std(ddof=1) / math.sqrt(repeats)


def test_transformed_tasks_carry_the_mutual_information_of_their_gaussian(tasks):
    """Each non-Gaussian default task's truth against an independent estimate: its pairs with the maps of its name
    undone (log for exp-x, cube root for cube-y) are Gaussian again, where the plug-in is unbiased; within 4 stderr."""
    transformed = [t for t in tasks if not t.name.startswith(("gauss", "flattening"))]
    assert {t.name for t in transformed} == {"cube-y-5x3", "exp-x-cube-y-5x3", "exp-x-10x5"}
    for i, task in enumerate(transformed):
        x, y = (np.asarray(a, np.float64) for a in task.sample(20_000, key=jax.random.key(30 + i)))
        if "exp-x" in task.name:
            x = np.log(x)
        if "cube-y" in task.name:
            y = np.cbrt(y)
        est = gaussian_plugin_mi(x, y)
        assert abs(est.z_score(task.mutual_information)) < 4, (task.name, est, task.mutual_information)
