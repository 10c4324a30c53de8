"""The validation harness discriminates: the Gaussian plug-in passes Gaussian tasks and is flagged on transformed ones."""

import json
import math

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
