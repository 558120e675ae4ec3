"""The operator's public keys: an SSH key for the deploy user (host.provision.admin_ssh_keys)
and a GPG key for the backups (platform.backup.recipients), read and checked before anything
is done, and added to those the stack file holds unless they are there already."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.settings.gpg_keys import KeyProblem, inspect_public_key
from components.settings.provision import PRIVATE_KEY_RE, ssh_key_problem
from scripts.init import Refused


@dataclass(frozen=True)
class OperatorKeys:
    ssh: str | None  # one public key line, or None: the stack file's stay as they are
    gpg: str | None  # an armored public key, or None


def read_file(path: str, flag: str) -> str:
    try:
        return Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise Refused(f"{flag} {path}: cannot be read ({reason})") from None


def _public(text: str, path: str, flag: str, public_half: str) -> str:
    if PRIVATE_KEY_RE.search(text):
        raise Refused(f"{flag} {path} is a PRIVATE key: give its public half ({public_half}); "
                      "the private one never leaves your machine")
    return text


def ssh_public_key(path: str) -> str:
    text = _public(read_file(path, "--ssh-key-file"), path, "--ssh-key-file",
                   f"{path}.pub").strip()
    problem = ssh_key_problem(text, f"--ssh-key-file {path}")
    if problem:
        raise Refused(problem)
    return text


def gpg_public_key(path: str) -> str:
    text = _public(read_file(path, "--gpg-key-file"), path, "--gpg-key-file",
                   "gpg --armor --export <fingerprint>")
    try:
        inspect_public_key(text)
    except KeyProblem as problem:
        raise Refused(f"--gpg-key-file {path} {problem}") from None
    return f"{text.strip()}\n"


def read(answers: dict[str, Any]) -> OperatorKeys:
    """The key files answered (KEEP, an empty answer: none new)."""
    ssh, gpg = answers.get("ssh_key_file"), answers.get("gpg_key_file")
    return OperatorKeys(ssh_public_key(ssh) if ssh else None,
                        gpg_public_key(gpg) if gpg else None)


def _same_ssh_key(first: str, second: str) -> bool:
    return str(first).split()[:2] == str(second).split()[:2]


def with_ssh_key(keys: list[str], new: str) -> list[str]:
    """The admin keys with `new` added unless it is there (its comment aside)."""
    return keys if any(_same_ssh_key(key, new) for key in keys) else [*keys, new]


def _gpg_fingerprint(value: str) -> str | None:
    try:
        return inspect_public_key(str(value)).fingerprint
    except KeyProblem:
        return None


def with_gpg_key(recipients: list[str], new: str) -> list[str]:
    """The backup recipients with `new` (armored) added unless its key is there already
    (given as a file path or armored, exported again or not)."""
    held = {_gpg_fingerprint(value) for value in recipients} - {None}
    if _gpg_fingerprint(new) in held or new.strip() in (str(v).strip() for v in recipients):
        return recipients
    return [*recipients, new]
