"""README's Python examples run as written, and give what the README says they give.

Each example is read from README.md (the one ```python block under its heading) and executed as it stands, so an
example that no longer imports, names an argument that has gone or uses a variable it never defines fails here. The
namespace it leaves is then checked against the exact values (the oracle's closed forms).
"""

import math
import pathlib
import re

import jax
import numpy as np
import pytest
from hypothesis import seed

from gaussian_oracle import JointGaussian
from verify import gaussian_plugin_mi

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _example(heading: str) -> str:
    """The one python code block of README's section `## heading`."""
    sections = re.split(r"^## ", README.read_text(encoding="utf-8"), flags=re.M)
    section = [s for s in sections if s.startswith(heading + "\n")]
    assert len(section) == 1, f"README has {len(section)} sections named {heading!r}"
    blocks = re.findall(r"^```python\n(.*?)^```", section[0], flags=re.M | re.S)
    assert len(blocks) == 1, f"README's {heading!r} has {len(blocks)} python blocks"
    return blocks[0]


def _run(heading: str) -> dict:
    namespace = {"__name__": f"readme_{heading.lower().replace(' ', '_')}"}
    exec(compile(_example(heading), f"README.md ({heading})", "exec"), namespace)  # noqa: S102 (our own README)
    return namespace


def test_quickstart_reads_the_closed_forms(capsys):
    ns = _run("Quickstart")
    joint, mi = ns["joint"], ns["mi"]
    # the exact e* through the estimators: MINDE within 4 stderr of the closed form I(X;Y) (Eq. 49), S_NN of S_tot
    assert mi.within(float(joint.mutual_information()), 4.0), (mi, joint.mutual_information())
    assert not mi.flags
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"I(X;Y) exact {float(joint.mutual_information()):.3f}  MINDE ")
    s_nn = re.fullmatch(r"S_tot  exact (\S+)  S_NN  (\S+) ± (\S+)", printed[1])
    assert s_nn is not None, printed[1]
    exact, value, stderr = map(float, s_nn.groups())
    assert exact == pytest.approx(float(joint.total_entropy()), abs=5e-4)
    assert abs(value - exact) <= 4 * stderr + 1e-3, (value, stderr, exact)  # + the printed rounding


def test_testing_your_own_estimator_example_passes_for_a_consistent_estimator():
    ns = _run("Testing your own estimator against exact truth")

    def my_mi(x, y):
        """The package's Gaussian plug-in (unbiased for joint Gaussians; sd at most sqrt(min(D_X, D_Y)/n) = 0.032
        nats at n = 5000, well inside the example's 0.1)."""
        return gaussian_plugin_mi(x, y).value

    ns["my_mi"] = my_mi
    seed(0)(ns["test_my_estimator"])()  # the example's 20 drawn joints, from a fixed seed

    ns["my_mi"] = lambda x, y: my_mi(x, y) + 0.2  # the example can fail: an estimator 0.2 nats high does
    with pytest.raises(AssertionError):
        seed(0)(ns["test_my_estimator"])()


@pytest.mark.slow
def test_your_own_data_example_reads_the_information_of_saved_arrays(tmp_path, monkeypatch, capsys):
    """The example as a user runs it, on arrays saved from a joint Gaussian of known I(X;Y) = 2.109 nats (2,000
    pairs to fit, 1,000 unseen): 2 networks, then 3 fits of 2, then 2 more, of 4,000 steps each (28 minutes on 2
    cores shared with other work)."""
    joint = JointGaussian.determinism(5, 3, sigma_eps=1.0, key=jax.random.key(0))
    x, y = map(np.asarray, joint.sample(3000, key=jax.random.key(1)))
    for name, array in (("x", x[:2000]), ("y", y[:2000]), ("x_new", x[2000:]), ("y_new", y[2000:])):
        np.save(tmp_path / f"{name}.npy", array)
    monkeypatch.chdir(tmp_path)
    ns = _run("Your own data")
    assert capsys.readouterr().out.count(" ± ") == 6  # the example printed its six numbers (2 + 4)
    exact = float(joint.mutual_information())
    mi, three, fitted = ns["mi"], ns["three"], ns["fitted"]
    direct = fitted.estimate_all(ns["x_new"], ns["y_new"], key=jax.random.key(3))
    print(f"exact {exact:.4f}; one fit {mi}; three fits {three}; fitted, on unseen pairs "
          f"{ {k: str(v) for k, v in direct.items()} }")
    assert math.isfinite(mi.value) and mi.stderr > 0 and not mi.flags
    # over fits the stderr covers the training variance, so the truth is within its 4 stderr (one fit's Monte Carlo
    # stderr alone does not: see the README's paragraph below the example)
    assert three.within(exact, 4.0) and not three.flags, (three, exact)
    # the saved model is the fitted one: the same numbers on the same pairs and key
    again = ns["verify"].FittedEstimator.load(tmp_path / "mi_model").estimate_all(
        ns["x_new"], ns["y_new"], key=jax.random.key(3))
    assert {k: (v.value, v.stderr) for k, v in again.items()} == {k: (v.value, v.stderr) for k, v in direct.items()}
