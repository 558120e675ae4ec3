"""A VPS's SSH host key, fetched to be pinned (host.ssh.host_key) only once a person has
compared its fingerprint with the one the provider's console shows (make init).

`ssh-keyscan` asks the host for its key over the network, which a man in the middle can
answer: the fetched key is trusted only after that comparison (or when it is the key the
stack files pin already). The fingerprint is OpenSSH's own (`ssh-keygen -lf -`: the key's
SHA-256, base64 without padding), as consoles and `ssh` show it.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from components.settings.provision import host_key_line, ssh_key_problem
from scripts.init import Refused
from scripts.init.stacks import Stacks, value_or_none
from scripts.stack_file import DeliveryError

KEY_TYPE = "ed25519"  # what the program pins (and what a fresh Debian host offers first)


@dataclass(frozen=True)
class HostKey:
    line: str  # `ssh-ed25519 AAAA…`, as host.ssh.host_key holds it
    fingerprint: str  # `SHA256:…`


def _run(command: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, input=stdin, capture_output=True, text=True,
                              timeout=60, check=False)
    except FileNotFoundError:
        raise DeliveryError(f"{command[0]} is not installed on this machine (OpenSSH's "
                            "client: apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise DeliveryError(f"{command[0]} did not finish in 60 s") from None


def scan(host: str, port: int = 22) -> str:
    """The host's ed25519 key as `type base64`, from ssh-keyscan."""
    result = _run(["ssh-keyscan", "-T", "10", "-t", KEY_TYPE, "-p", str(port), host])
    lines = [line for line in result.stdout.splitlines()
             if line.strip() and not line.startswith("#")]
    if not lines:
        detail = result.stderr.strip().splitlines()[-1:] or ["no answer"]
        raise DeliveryError(f"ssh-keyscan got no {KEY_TYPE} host key from {host} port {port} "
                            f"({detail[0]}): is the VPS up, and its SSH port open to you?")
    key = host_key_line(lines[0])
    problem = ssh_key_problem(key, f"the host key {host} offered")
    if problem:
        raise DeliveryError(problem)
    key_type, key_data = key.split()[:2]
    return f"{key_type} {key_data}"


def fingerprint(key: str) -> str:
    """`SHA256:…` of a public key line, as `ssh-keygen -lf -` prints it."""
    result = _run(["ssh-keygen", "-l", "-E", "sha256", "-f", "-"], stdin=f"{key}\n")
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) < 2 or not fields[1].startswith("SHA256:"):
        raise DeliveryError(f"ssh-keygen could not read the host key: {result.stderr.strip()}")
    return fields[1]


def fetch(host: str, port: int = 22) -> HostKey:
    key = scan(host, port)
    return HostKey(key, fingerprint(key))


def same_key(first: str | None, second: str | None) -> bool:
    """Whether two key lines hold the same key (host names and comments aside)."""
    if not first or not second:
        return False
    return host_key_line(first).split()[:2] == host_key_line(second).split()[:2]


def same_fingerprint(given: str, actual: str) -> bool:
    """A fingerprint as given (with or without `SHA256:`, `=` padding as some consoles show
    it) against ssh-keygen's."""
    def plain(value: str) -> str:
        return value.strip().removeprefix("SHA256:").rstrip("=")
    return plain(given) == plain(actual)


@dataclass(frozen=True)
class Target:
    """How the VPS is reached: host.ssh as it will be."""

    host: str
    port: int
    user: str | None = None  # given with --ssh-user; else as the stack files say (deploy)
    port_given: bool = False  # --ssh-port: written; else the stack files' (22 by default)


def pinned_keys(stacks: Stacks, target: Target) -> tuple[set[str], bool]:
    """The keys the stack files pin for this host and port, and whether a stack file lacks
    one (or pins another host's)."""
    pinned, lacking = set(), False
    for stack in stacks.names:
        ssh = value_or_none(stacks.config(stack), "host.ssh") or {}
        same = ssh.get("host") == target.host and int(ssh.get("port", 22)) == target.port
        if same and ssh.get("host_key"):
            pinned.add(" ".join(host_key_line(ssh["host_key"]).split()[:2]))
        else:
            lacking = True
    return pinned, lacking


Confirm = Callable[[str], bool]


def trusted_host_key(target: Target, pinned: set[str], args: argparse.Namespace,
                     confirm: Confirm | None) -> str:
    """The host key to pin: the one pinned already, or the fetched one once its fingerprint
    is confirmed. A key other than the pinned one is refused: the VPS was rebuilt, or
    someone answers in its place."""
    if len(pinned) > 1:
        raise Refused(f"the stack files pin {len(pinned)} different host keys for "
                      f"{target.host}: keep the one its console shows, in each file")
    fetched = fetch(target.host, target.port)
    print(f"init: {target.host} port {target.port} offers the host key {fetched.fingerprint} "
          f"({KEY_TYPE})")
    if pinned:
        if not same_key(fetched.line, next(iter(pinned))):
            raise Refused(f"{target.host} offers a host key other than the one the stack files "
                          "pin: if the VPS was reinstalled, check the new fingerprint on its "
                          "console and remove host.ssh.host_key from the stack files first; "
                          "else someone may be answering in its place")
        return fetched.line
    _confirm_fingerprint(fetched, args, confirm)
    return fetched.line


def _confirm_fingerprint(fetched: HostKey, args: argparse.Namespace,
                         confirm: Confirm | None) -> None:
    if args.host_key_fingerprint:
        if not same_fingerprint(args.host_key_fingerprint, fetched.fingerprint):
            raise Refused(f"the host key's fingerprint is {fetched.fingerprint}, not "
                          f"{args.host_key_fingerprint} (--host-key-fingerprint): nothing "
                          "written. Check the address, and the fingerprint on the provider's "
                          "console")
    elif args.yes:
        print("init: host key accepted (--yes)")
    elif confirm is None or not confirm(fetched.fingerprint):
        raise Refused("host key not confirmed: nothing written. Compare it with the "
                      "fingerprint the provider's console shows (or its `ssh-keygen -lf "
                      "/etc/ssh/ssh_host_ed25519_key.pub` on the VPS)")


def confirm_on_terminal(fingerprint: str) -> bool:
    try:
        answer = input(f"Is {fingerprint} the ED25519 fingerprint your provider's console "
                       "shows for the VPS? [y/N]: ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")

