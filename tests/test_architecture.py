"""The layering of DESIGN.md, checked on the source: imports flow one way, and scripts use public names only."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("package, forbidden", [
    ("gaussian_oracle", ("learned", "verify")),
    ("learned", ("verify",)),
    ("verify/estimators", ("learned", "verify.experiments", "verify.cli", "matplotlib")),
    ("verify/experiments", ("verify.cli",)),
])
def test_imports_flow_one_way(package, forbidden):
    offenders = []
    for path in _files(package):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


@pytest.mark.parametrize("folder", ["benchmarks", "tests"])
def test_scripts_use_public_names_only(folder):
    """What a benchmark or test needs, a user needs too: no `_private` module of a package (a test of a private
    module may import it, which this file does not need)."""
    offenders = []
    for path in _files(folder):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] in ("gaussian_oracle", "learned", "verify") and any(p.startswith("_") for p in parts[1:]):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_importing_the_estimators_loads_no_training_stack_or_matplotlib():
    code = ("import sys, verify; from verify import neural_entropy; "
            "print(sorted(m for m in ('learned', 'optax', 'matplotlib', 'verify.experiments', 'verify.cli') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"JAX_PLATFORMS": "cpu", "PATH": ""}, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("package", ["gaussian_oracle", "learned", "verify", "benchmarks", "tests"])
def test_no_invalid_escapes_in_source(package):
    """A docstring with `\\alpha` in a plain string holds a control character, not the formula: use r\"\"\"...\"\"\"."""
    import warnings

    offenders = []
    for path in _files(package):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                compile(path.read_text(), str(path), "exec")
            except SyntaxError as error:  # invalid escapes are SyntaxWarnings, raised as errors here
                offenders.append(f"{path.relative_to(ROOT)}: {error}")
            except (SyntaxWarning, DeprecationWarning) as warning:
                offenders.append(f"{path.relative_to(ROOT)}: {warning}")
    assert not offenders, offenders
