"""Tier 3: learned estimates against the oracle after the demo's training (slow: ~10 min on 2 CPU cores).

Run with `pytest -m slow`. The tolerances are the issue's goals: I_MINDE within 1 %, I_diff and both neural
entropies within 2 %. The command is README's main job, `separability demo`, in a child process with the users' XLA
setting and dtypes (`_processes.separability`): what users get. Measured there (seed 0): S_NN^X -0.41 %, S_NN^{X|Y}
-0.55 %, I_MINDE -0.64 %, I_diff -0.86 %. In the test processes' own setting (float64 enabled, light compile: other
random draws and roundings, so another realisation of the same training) the same fits read I_MINDE -1.04 %, outside
the 1 % goal: the goal holds with a margin of about that realisation-to-realisation spread, not more.
"""

import json

import pytest

from _processes import Step, separability


@pytest.mark.slow
def test_demo_problem_learned_within_tolerance(tmp_path):
    ran, = separability(Step(["demo", "--out", str(tmp_path), "--no-checkpoints"]))
    assert ran.returncode == 0
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["instance"]["seed"] == 0 and payload["instance"]["dim_x"] == 25
    q = payload["quantities"]
    assert abs(q["total_entropy"]["neural"]["relative_error"]) <= 0.02
    assert abs(q["conditional_total_entropy"]["neural"]["relative_error"]) <= 0.02
    assert abs(q["mutual_information"]["minde"]["relative_error"]) <= 0.01
    assert abs(q["mutual_information"]["difference"]["relative_error"]) <= 0.02
