"""The test processes' XLA setting, and `separability` run in a child process as users run it.

Tests compile many small programs and run each briefly, so the test processes compile for speed of compiling
(tests/conftest.py): most XLA optimisations off, and XLA:CPU's older loop emitter for fusions (`LIGHT_XLA_FLAGS`),
which compiles small programs faster. The image and autoencoder end-to-end tests train networks for hundreds or
thousands of steps, where compiled code must be fast, so they run their command lines in one child process with the
users' setting (`separability`): one process, so that a later command reuses what an earlier one compiled (the same
programs at the same shapes), and the same setting for every run that resumes the same networks, so that their
checkpoints' fingerprints (which cover the initial parameters, and so their float rounding) agree.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import NamedTuple

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


class Step(NamedTuple):
    """One command line of `separability`, and what the child process does around it."""

    argv: list[str]
    """`separability ARGV`, as on the command line (paths as strings)."""
    expect: int = 0
    """The exit status it should end with; a step that ends with another stops the steps after it."""
    interrupt: str | None = None
    """Ctrl-C (KeyboardInterrupt) where the command calls `learned.train` with a checkpoint folder whose name starts
    with this."""
    checkpoints: str | None = None
    """A checkpoint folder: after the step, the modification time (st_mtime_ns) of each of its checkpoints is
    recorded, by the name of the subfolder that holds it, so that a test can tell resumed networks from retrained."""
    snapshot: str | None = None
    """A folder into which the step's --out folder (its checkpoints aside) is copied after it, for what a later step
    in the same folder replaces."""


class Ran(NamedTuple):
    """What a `Step` did."""

    returncode: int | None
    """Its exit status; None when it did not run, because an earlier step ended with another status than expected."""
    stdout: str
    checkpoints: dict[str, int]
    """`Step.checkpoints`: checkpoint subfolder name -> st_mtime_ns after the step (empty if not asked for)."""


def separability(*steps: Step) -> list[Ran]:
    """`separability` with each step's command line, in order, in one child process with the users' XLA setting (and
    without the tests' `jax_enable_x64`); its output also goes to this process's, which pytest captures. A step that
    ends with another exit status than it expects stops the rest (`Ran.returncode` None): a failed training run would
    otherwise be repeated by every command that resumes it."""
    with tempfile.TemporaryDirectory() as folder:
        plan, record = pathlib.Path(folder, "plan.json"), pathlib.Path(folder, "ran.json")
        plan.write_text(json.dumps([step._asdict() for step in steps]))
        subprocess.run([sys.executable, __file__, str(plan), str(record)], env=users_environment(), check=True)
        return [Ran(**ran) for ran in json.loads(record.read_text())]


def _out_folder(argv: list[str]) -> pathlib.Path:
    return pathlib.Path(argv[argv.index("--out") + 1])


class _Both(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def _run(plan: pathlib.Path, record: pathlib.Path) -> None:
    """The child process of `separability`: runs the plan's steps and writes what each did to `record`."""
    import learned
    from verify.cli import main

    train = learned.train
    ran, stopped = [], False
    for step in (Step(**step) for step in json.loads(plan.read_text())):
        if stopped:
            ran.append(dict(returncode=None, stdout="", checkpoints={}))
            continue

        def interrupted(*args, checkpoint_dir=None, **kwargs):
            if checkpoint_dir is not None and pathlib.Path(checkpoint_dir).name.startswith(step.interrupt):
                raise KeyboardInterrupt
            return train(*args, checkpoint_dir=checkpoint_dir, **kwargs)

        learned.train = train if step.interrupt is None else interrupted
        stdout = io.StringIO()
        try:
            with contextlib.redirect_stdout(_Both(sys.stdout, stdout)):
                code = main(step.argv)
        finally:
            learned.train = train
        stamps = {}
        if step.checkpoints is not None:
            stamps = {str(path.parent.relative_to(step.checkpoints)): path.stat().st_mtime_ns
                      for path in sorted(pathlib.Path(step.checkpoints).rglob("checkpoint.eqx"))}
        if step.snapshot is not None:
            shutil.copytree(_out_folder(step.argv), step.snapshot, ignore=shutil.ignore_patterns("checkpoints"))
        ran.append(dict(returncode=code, stdout=stdout.getvalue(), checkpoints=stamps))
        stopped = code != step.expect
    record.write_text(json.dumps(ran))


if __name__ == "__main__":
    _run(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
