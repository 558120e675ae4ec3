"""Fixtures shared by the unit tests of every wing (settings/, host/, platform/, release/ and
the whole program's at the top).

The committed stacks run once each under the mocks for the whole session (a few seconds a
run): tests read what they declare and never change it; a test that needs another config
runs the program itself. The operators' GPG keys are real ones, made here once.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness.program import ProgramRun, prod_outputs_for_staging, run_program


@pytest.fixture(scope="session")
def prod() -> ProgramRun:
    return run_program("prod")


@pytest.fixture(scope="session")
def local() -> ProgramRun:
    return run_program("local")


@pytest.fixture(scope="session")
def staging() -> ProgramRun:
    return run_program("staging",
                       stack_outputs={"eduaiia/aiia/prod": prod_outputs_for_staging()})


def make_key(home: Path, user_id: str, expiry: str, *faked_time: str) -> str:
    home.mkdir(mode=0o700)
    options = ["gpg", "--homedir", str(home), "--batch", "--no-tty", *faked_time]
    subprocess.run([*options, "--passphrase", "", "--quick-generate-key", user_id,
                    "future-default", "default", expiry], check=True, capture_output=True,
                   timeout=60)
    exported = subprocess.run([*options, "--armor", "--export"], check=True,
                              capture_output=True, text=True, timeout=60).stdout
    # Key generation started an agent for this home: stop it, it would outlive the test.
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    return exported


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, str]:
    """Operators' public keys for platform.backup.recipients: a good one (as text and as a
    file) and an expired one."""
    base = tmp_path_factory.mktemp("gpg")
    good = make_key(base / "good", "Ops <ops@example.test>", "2y")
    # Made "in 2020" with a one-day life: expired long before today.
    expired = make_key(base / "expired", "Old <old@example.test>", "1d",
                       "--faked-system-time", "20200101T000000")
    path = base / "ops.asc"
    path.write_text(good)
    return {"good": good, "expired": expired, "path": str(path)}
