"""Every `make <target> VAR=…` that README.md and docs/*.md show (in code: a fenced block or a
`span`) exists, and reads every variable it is given: its dry run (`make -n`) with the
documented values runs, and changes when a variable is left out or given another value. A
variable nothing reads (the runbook's `HOST=` once) fails here; so does a target that
does not exist."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.harness.make import marked_venv, run_make

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ASSIGNMENT = r"[A-Z][A-Z0-9_]*=(?:\"[^\"]*\"|'[^']*'|[^\s`|&;)]+)"
COMMAND_RE = re.compile(rf"\bmake ([a-z][a-z-]*)((?:\s+{ASSIGNMENT})*)")


def code_of(text: str) -> list[str]:
    """The document's code: fenced blocks whole, and `spans` elsewhere."""
    code, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            code.append(line)
        else:
            code += re.findall(r"`([^`]+)`", line)
    return code


def documented_commands() -> list[tuple[str, str, dict[str, str]]]:
    """(where, target, {variable: value}) of each distinct make command in the docs."""
    found = {}
    for document in DOCUMENTS:
        for snippet in code_of(document.read_text()):
            for match in COMMAND_RE.finditer(snippet):
                variables = dict(word.split("=", 1) for word in shlex.split(match[2]))
                key = (match[1], tuple(sorted(variables.items())))
                found.setdefault(key, (document.relative_to(ROOT).as_posix(), match[1],
                                       variables))
    return list(found.values())


COMMANDS = documented_commands()


def targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):(?!=)", (ROOT / "Makefile").read_text(),
                          re.MULTILINE))


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    return marked_venv(tmp_path_factory.mktemp("venv"))


def dry_run(venv: Path, target: str, variables: dict[str, str]) -> subprocess.CompletedProcess:
    return run_make(venv, "-n", target, *(f"{key}={value}" for key, value in variables.items()),
                    timeout=60)


def test_the_docs_show_the_everyday_commands():
    shown = {target for _, target, _ in COMMANDS}
    assert shown >= {"local", "release", "rollback", "logs", "status", "ssh", "backup-now",
                     "exec", "restart", "releases", "doctor", "destroy-local"}, shown


@pytest.mark.parametrize(("where", "target", "variables"), COMMANDS,
                         ids=[f"{target} {' '.join(f'{k}={v}' for k, v in variables.items())}"
                              for _, target, variables in COMMANDS])
def test_a_documented_command_exists_and_reads_what_it_is_given(venv, where, target,
                                                                  variables):
    assert target in targets(), f"{where}: `make {target}` is not a target of the Makefile"
    documented = dry_run(venv, target, variables)
    assert documented.returncode == 0, f"{where}: {documented.stderr}"
    for key in variables:
        without = {k: v for k, v in variables.items() if k != key}
        other = {**variables, key: "documented-value-probe"}
        if dry_run(venv, target, without).stdout == documented.stdout \
                and dry_run(venv, target, other).stdout == documented.stdout:
            pytest.fail(f"{where}: `make {target}` does not read {key} (its dry run is the "
                        f"same without it and with another value)")
