"""The Pulumi CLI as make init runs it: never asking anything, a secret on stdin only."""

from __future__ import annotations

import shutil
import subprocess

from scripts.init import Refused
from scripts.stack_file import DeliveryError


def pulumi(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The CLI, never asking anything (stdin is a pipe: `config set` reads its value there,
    pkg/cmd/pulumi/config/config.go, newConfigSetCmd)."""
    return subprocess.run(["pulumi", *args, "--non-interactive"], input=stdin,
                          capture_output=True, text=True, timeout=300, check=False)


def _error(result: subprocess.CompletedProcess) -> str:
    return (result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}")


def check_login() -> str:
    if shutil.which("pulumi") is None:
        raise Refused("no Pulumi CLI: `make pulumi-cli` installs the pinned one")
    result = pulumi("whoami")
    if result.returncode != 0:
        raise Refused(f"pulumi is not logged in ({_error(result)}): `pulumi login` first")
    return result.stdout.strip()


def ensure_stack(name: str) -> str:
    if pulumi("stack", "select", name).returncode == 0:
        return f"  stack {name}: exists (kept)"
    result = pulumi("stack", "init", name)
    if result.returncode != 0:
        raise DeliveryError(f"pulumi stack init {name} failed: {_error(result)}")
    return f"  stack {name}: created"


def set_secret(stack_name: str, key: str, value: str) -> None:
    result = pulumi("config", "set", "-s", stack_name, "--secret", f"aiia:{key}", stdin=value)
    if result.returncode != 0:
        raise DeliveryError(f"pulumi config set --secret aiia:{key} of {stack_name} failed: "
                            f"{_error(result)}")



def get_secret(stack_name: str, key: str) -> str:
    """A secret's value as the stack holds it (`pulumi config get` prints it decrypted)."""
    result = pulumi("config", "get", "-s", stack_name, f"aiia:{key}")
    if result.returncode != 0:
        raise DeliveryError(f"pulumi config get aiia:{key} of {stack_name} failed: "
                            f"{_error(result)}")
    return result.stdout.removesuffix("\n")
