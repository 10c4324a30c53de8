"""The test processes' XLA setting, and `separability` run in a child process as users run it.

Tests compile many small programs and run each briefly, so the test processes compile for speed of compiling
(tests/conftest.py): most XLA optimisations off, and XLA:CPU's older loop emitter for fusions (`LIGHT_XLA_FLAGS`),
which compiles small programs faster. The quick image runs train U-Nets for thousands of steps, where compiled code
must be fast, so their tests run the command line in a child process with the users' setting (`separability`); the
runs that resume the same networks all do, so their checkpoints' fingerprints (which cover the initial parameters,
and so their float rounding) agree.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

LIGHT_XLA_FLAGS = ("--xla_cpu_use_fusion_emitters=false",)
"""XLA flags of the test processes only. Measured on a 2-core machine (session 26, `pytest -n 2` of the 675 tests
that compiled with most optimisations off): 1,581 s -> 991 s of test time, backend compilation 959 s -> 426 s. Not
for long training runs: the quick U-Net's training step compiled in 161 s instead of 57 s and ran 20 % slower."""


def use_light_xla_flags() -> None:
    """Add `LIGHT_XLA_FLAGS` to this process's XLA_FLAGS, which its children (pytest-xdist's workers) inherit, unless
    they are there or this jaxlib's XLA does not know them: XLA aborts a process whose XLA_FLAGS names a flag it does
    not know (jax is not pinned), so a child process tries them first. Call it before anything compiles: XLA reads its
    flags once per process."""
    current = os.environ.get("XLA_FLAGS", "").split()
    if set(LIGHT_XLA_FLAGS) <= set(current):
        return
    flags = " ".join([*current, *LIGHT_XLA_FLAGS])
    probe = "import jax, jax.numpy as jnp; jax.jit(lambda x: x + 1)(jnp.ones(3)).block_until_ready()"
    if subprocess.run([sys.executable, "-c", probe], env=dict(os.environ, XLA_FLAGS=flags),
                      capture_output=True).returncode == 0:
        os.environ["XLA_FLAGS"] = flags


def users_environment() -> dict[str, str]:
    """This process's environment without the test processes' own XLA flags."""
    env = dict(os.environ)
    flags = [f for f in env.pop("XLA_FLAGS", "").split() if f not in LIGHT_XLA_FLAGS]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    return env


def separability(argv: list[str]) -> subprocess.CompletedProcess:
    """`separability ARGV` in a child process with the users' XLA setting (and without the tests' `jax_enable_x64`);
    its output goes to this process's, which pytest captures."""
    main = "import sys; from verify.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", main, *argv], env=users_environment())
