"""Test scaffolding: the Makefile run in this checkout, with this test run's interpreter as its
virtualenv and a Pulumi CLI directory of the test's choosing, and stand-in commands written
for PATH (a `pulumi` that tells its version, an `ssh`, …)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def stand_in(path: Path, script: str) -> Path:
    """An executable script at `path` (its directory made); `script` starts with its #!."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    path.chmod(0o755)
    return path


def marked_venv(directory: Path) -> Path:
    """This run's interpreter as the Makefile's VENV, marked installed, so make builds none."""
    if not (directory / ".installed").exists():
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "bin").symlink_to(Path(sys.executable).parent)
        (directory / ".installed").touch()
    return directory


def pulumi_cli_dir(directory: Path, version: str) -> Path:
    """A PULUMI_CLI_DIR whose bin/pulumi only tells `version`: enough for the CLI checks."""
    stand_in(directory / "bin/pulumi", f"#!/bin/sh\n# test stand-in for the Pulumi CLI\n"
                                       f"echo v{version}\n")
    return directory


def run_make(venv: Path, *args: str, cli: Path | None = None, env: dict | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """`make ARGS` in the checkout; with `cli`, that directory is the project's Pulumi CLI,
    else one that does not exist (no CLI, unless one is installed system-wide)."""
    cli_dir = cli or Path(f"/nonexistent-pulumi-cli-{os.getpid()}")
    return subprocess.run(["make", "--no-print-directory", f"VENV={venv}",
                           f"PULUMI_CLI_DIR={cli_dir}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
