import gc
import os
import pathlib
from typing import NamedTuple

import jax
import pytest
from hypothesis import settings

from _processes import Ran, Step, separability, use_light_xla_flags

jax.config.update("jax_enable_x64", True)

# XLA optimisation. Most tests compile many small programs and run each for a few steps, so compiling is most of their
# time: measured on a 2-core CI-like machine (session 24), tests/test_guided.py took 194 s, 89 s of it running (with
# every program read back from a warm persistent cache), and 146 s with `jax_disable_most_optimizations` (LLVM at -O0,
# cheaper passes); XLA:CPU's older loop emitter for fusions (`_processes.LIGHT_XLA_FLAGS`) compiles faster again. So
# the test processes compile with both. A program that runs long pays for it instead: `separability images --quick`
# (two U-Nets of 1,500 steps) took 404 s optimised and 824 s not, so the tests of the quick image runs and of the quick
# autoencoder run run their command lines in a child process with the users' setting (`_processes.separability`). This
# changes how fast the compiled code runs, not what it computes beyond float rounding; the results of users' runs are
# what the benchmarks record.
_LIGHT_COMPILE = "jax_disable_most_optimizations"
jax.config.update(_LIGHT_COMPILE, True)
use_light_xla_flags()  # before anything compiles

# Hypothesis profiles. Tests keep their own `@settings(deadline=None, max_examples=...)`; a profile only sets the
# defaults they leave alone. "ci" (selected when the CI environment variable is set, e.g. CI=true; CI=false or 0
# does not count) draws from a fixed seed (`derandomize=True`), so a CI run is reproducible and a red build is not a
# lucky draw; "dev" explores fresh random examples on every run. Both print the `@reproduce_failure` blob of a
# failing example. Both are built on Hypothesis's own profiles explicitly, because Hypothesis itself switches its
# default to its "ci" profile whenever a CI variable exists, whatever its value.
settings.register_profile("ci", settings.get_profile("ci"), derandomize=True, print_blob=True)
settings.register_profile("dev", settings.get_profile("default"), print_blob=True)
settings.load_profile("ci" if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no") else "dev")


def _group(item) -> str:
    return "quick_images" if "quick_images" in getattr(item, "fixturenames", ()) else item.module.__name__


def pytest_itemcollected(item):
    """One `xdist_group` per test, for `pytest -n 2` (README's test command; `--dist loadgroup` is in pyproject.toml's
    addopts): the tests of a module run in one worker (its module fixtures and compiled programs are made once, not
    once per worker), except that the tests using the session's `quick_images` run form one group, so that network
    is trained once. Marked as each test is collected, before pytest-xdist reads the marks."""
    item.add_marker(pytest.mark.xdist_group(_group(item)))


_LONGEST_GROUPS = ("quick_images", "test_autoencoder")
"""The groups that take longest (a 2-core machine, session 27: the quick image runs' fixture alone 843 s, the quick
autoencoder test 291 s, of a suite that kept both workers busy for 1,163 s)."""


def pytest_collection_modifyitems(items):
    """The longest groups first: pytest-xdist hands out groups in collection order (`--no-loadscope-reorder` in
    pyproject.toml), and a worker that takes a long group last finishes alone while the other waits."""
    rank = {group: i for i, group in enumerate(_LONGEST_GROUPS)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))  # stable: the rest keep their order


def _optimised(item) -> bool:
    return item.get_closest_marker("optimised") is not None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test marked `optimised` trains in-process for thousands of steps, so it compiles with most XLA optimisations
    on: the learned-MLP TC test (its two instances, one process) took 83 s against 137 s light (session 27; XLA's
    flags, `LIGHT_XLA_FLAGS` among them, are the process's and stay). The setting is not part of JAX's in-memory
    compilation cache key, so the switch drops what was compiled without it; consecutive optimised tests keep each
    other's programs."""
    if _optimised(item) and jax.config.read(_LIGHT_COMPILE):
        jax.clear_caches()
        jax.config.update(_LIGHT_COMPILE, False)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Back to the light setting after an optimised test, unless the next test is optimised too; what it compiled is
    dropped, as above."""
    if not jax.config.read(_LIGHT_COMPILE) and (nextitem is None or not _optimised(nextitem)):
        jax.clear_caches()
        jax.config.update(_LIGHT_COMPILE, True)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module. The grown default suite crashed (SIGSEGV / SIGABRT
    inside XLA's CPU compiler, at test_unet.py's test_latent_conditioning, about 550 tests into one process; it
    passes when run alone). The cause is not pinned down; thousands of compiled programs kept alive in one process
    are the suspect, and clearing them between modules made the suite pass. Later modules recompile what they need."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture
def key():
    return jax.random.key(20250928)


class QuickImages(NamedTuple):
    checkpoints: pathlib.Path
    """The two quick U-Nets' checkpoints (subfolders a and b), and their classifiers'."""
    out: dict[str, pathlib.Path]
    """Each command's --out folder, by name."""
    ran: dict[str, Ran]
    """What each command did, by name: exit status, output, and its checkpoints' modification times afterwards."""


@pytest.fixture(scope="session")
def quick_images(tmp_path_factory) -> QuickImages:
    """`separability images --quick`, and the quick commands that resume its networks, run once per session in one
    child process (`_processes.separability`), with the users' XLA setting.

    - "images": `images --quick` (checked by test_images.py's quick end-to-end test); it trains the quick U-Net.
    - "budget": `budget --quick` (test_budget.py), "labels": `labels --dataset digits --quick` (test_labels_cli.py).
    - "posterior" and "posterior_draws": `images --quick` with a toy noise-conditional classifier (10 steps) on 32
      held-out images, without and with posterior draws (test_images.py's posterior test).

    They pass the same `--checkpoint-dir`, so each resumes the fingerprinted checkpoints of the first (the same run:
    same configuration, data and key) instead of training again, and CI trains the quick U-Net once. In one process,
    a later command reuses what an earlier one compiled (measured on this 2-core machine: the posterior run with draws
    took 15 s after the one without, 107 s in a process of its own).
    """
    root = tmp_path_factory.mktemp("quick_images")
    checkpoints = root / "checkpoints"
    common = ["--checkpoint-dir", str(checkpoints), "--no-progress"]
    # toy classifiers; otherwise the shapes of `images --quick`, whose programs the first command compiled: one chunk
    # of its 32 images on its 32-cell grid (measured on an idle 2-core machine: the two posterior commands took 62-75 s
    # after `images --quick`, against 95 s with 8 images on 4 cells, which compiled their own estimation programs)
    posterior = ["images", "--quick", "--n-eval", "32", "--classifier-steps", "10", "--posterior-steps", "10"]
    argv = {"images": ["images", "--quick"], "budget": ["budget", "--quick"],
            "labels": ["labels", "--dataset", "digits", "--quick"],
            "posterior": posterior, "posterior_draws": [*posterior, "--posterior-draws", "2"]}
    out = {name: root / name for name in argv}
    steps = [Step([*args, "--out", str(out[name]), *common], checkpoints=str(checkpoints))
             for name, args in argv.items()]
    return QuickImages(checkpoints, out, dict(zip(argv, separability(*steps))))
