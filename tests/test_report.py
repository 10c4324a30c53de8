"""Results files: NumPy and JAX values serialise, and writing is atomic."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from verify import provenance, write_json


def test_numpy_and_jax_values_serialise(tmp_path):
    payload = {"flag": np.bool_(True), "f": np.float32(1.5), "i": np.int32(3), "a": np.arange(3), "j": jnp.ones(2),
               **provenance(0.0)}
    data = json.loads(write_json(tmp_path / "r.json", payload).read_text())
    assert data["flag"] is True and data["f"] == 1.5 and data["i"] == 3 and data["a"] == [0, 1, 2] and data["j"] == [1, 1]
    assert {"versions", "device", "wall_time_s"} <= set(data)


def test_failed_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"old": 1}')
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"old": 1}
    assert list(tmp_path.iterdir()) == [path]


def test_results_are_strict_json_and_readable_by_all(tmp_path):
    """NaN and infinity become null (json.loads with strict parsing accepts the file); the mode is not 0600."""
    path = write_json(tmp_path / "r.json", {"nan": float("nan"), "inf": np.float64(np.inf), "arr": np.array([1.0, np.nan])})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert data == {"nan": None, "inf": None, "arr": [1.0, None]}
    assert path.stat().st_mode & 0o044  # group/other may read
