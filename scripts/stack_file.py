"""The stack files (Pulumi.<stack>.yaml) as the delivery scripts read and change them.

A release is the value of `releases.<environment>.release` in a stack file, so the history
of releases is the git history of that file. Changing it rewrites only that one line (the
comments and layout stay) and checks the result by parsing it again.

    python3 -m scripts.stack_file get prod host.ssh.host    # one value, for the Makefile
    python3 -m scripts.stack_file known-hosts prod          # the pinned host key, as ssh reads it
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

# The settings' own rules, checked here too so that a bad value never reaches a commit: what
# a release may be, and an environment's name, which is a stack's name here too (prod,
# staging, local; `--environment` defaults to the stack's); a host key and a host address.
# Those modules use the standard library only, so the scripts run with PyYAML alone.
from components.settings.checks import Problems, check_host_address
from components.settings.platform import ENVIRONMENT_NAME_RE
from components.settings.provision import host_key_line, ssh_key_problem
from components.settings.releases import is_release


class DeliveryError(Exception):
    """A bad input or state, said so that the operator can act on it."""


def stack_path(stack: str, directory: Path | None = None) -> Path:
    if not ENVIRONMENT_NAME_RE.match(stack):
        raise DeliveryError(f"stack {stack!r} is not a stack name: like the environment it "
                            "releases, lower-case letters and digits, starting with a letter, "
                            "at most 16 characters")
    path = (directory or Path.cwd()) / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise DeliveryError(f"{path} does not exist: is {stack!r} a stack of this project?")
    return path


def config_of(text: str, source: str = "stack file") -> dict[str, Any]:
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise DeliveryError(f"{source} is not valid YAML: {error}") from error
    return document.get("config") or {}


def get_value(config: dict[str, Any], dotted: str) -> Any:
    """`host.ssh.host` → config['aiia:host']['ssh']['host']."""
    head, *rest = dotted.split(".")
    value: Any = config.get(f"aiia:{head}")
    for part in rest:
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        raise DeliveryError(f"aiia:{dotted} is not set in the stack file")
    return value


def known_hosts_line(config: dict[str, Any]) -> str:
    """The known_hosts line of the host key pinned in the stack file (host.ssh.host_key), for
    the ssh and docker CLIs that CI runs beside Pulumi (scripts/ci-ssh.sh): the pin is
    reviewed with the code, and no secret has to repeat it. The key may be written as the
    program takes it (`ssh-ed25519 AAAA…`) or as ssh-keyscan prints it (`host ssh-ed25519
    AAAA…`); the line names the host as ssh looks it up (`[host]:port` off port 22)."""
    host = str(get_value(config, "host.ssh.host"))
    port = int(get_value(config, "host.ssh.port")) if _is_set(config, "host.ssh.port") else 22
    host_key = host_key_line(str(get_value(config, "host.ssh.host_key")))
    problem = ssh_key_problem(host_key, "aiia:host.ssh.host_key",
                              fix="paste the line `ssh-keyscan -t ed25519 HOST` prints")
    if problem:
        raise DeliveryError(problem)
    problems = Problems()
    check_host_address(host, "aiia:host.ssh.host", problems)
    if problems.items:
        raise DeliveryError(problems.items[0])
    key_type, key_data = host_key.split()[:2]
    address = host if port == 22 else f"[{host}]:{port}"
    return f"{address} {key_type} {key_data}"


def _is_set(config: dict[str, Any], dotted: str) -> bool:
    try:
        get_value(config, dotted)
    except DeliveryError:
        return False
    return True


def release_of(text: str, environment: str, source: str = "stack file") -> str:
    releases = config_of(text, source).get("aiia:releases") or {}
    if environment not in releases:
        have = ", ".join(sorted(releases)) or "none"
        raise DeliveryError(f"{source} has no releases.{environment} (it has: {have}); "
                            "release an environment in the stack that owns it")
    return str(releases[environment]["release"])


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _child(lines: list[str], start: int, end: int, key: str) -> tuple[int, int]:
    """The line of `key:` among the direct children of lines[start:end], and where its block
    ends (the next line indented as little as it)."""
    children = [i for i in range(start, end) if lines[i].strip()
                and not lines[i].lstrip().startswith("#")]
    if not children:
        raise DeliveryError(f"no {key!r} in the stack file")
    depth = min(_indent(lines[i]) for i in children)
    for i in children:
        stripped = lines[i].strip()
        rest = stripped[len(key) + 1:]
        if (_indent(lines[i]) == depth and stripped.startswith(f"{key}:")
                and (rest == "" or rest[0] in " #")):
            block_end = next((j for j in range(i + 1, end) if lines[j].strip()
                              and not lines[j].lstrip().startswith("#")
                              and _indent(lines[j]) <= depth), end)
            return i, block_end
    raise DeliveryError(f"no {key!r} in the stack file")


def with_release(text: str, environment: str, release: str) -> str:
    """The stack file's text with releases.<environment>.release set to `release`."""
    if not is_release(release):
        raise DeliveryError(f"release {release!r} is not an image tag (letters, digits, _ . -, "
                            "at most 128, not starting with . or -) nor a sha256: digest")
    release_of(text, environment)  # says which environments there are, if not this one
    lines = text.splitlines(keepends=True)
    config, config_end = _child(lines, 0, len(lines), "config")
    releases, releases_end = _child(lines, config + 1, config_end, "aiia:releases")
    env, env_end = _child(lines, releases + 1, releases_end, environment)
    line, _ = _child(lines, env + 1, env_end, "release")
    ending = "\n" if lines[line].endswith("\n") else ""
    lines[line] = f"{' ' * _indent(lines[line])}release: {release}{ending}"
    changed = "".join(lines)
    if release_of(changed, environment) != release:
        raise DeliveryError("the stack file did not parse back to the new release; "
                            "set it by hand with pulumi config set --path")
    return changed


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise DeliveryError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


USAGE = """usage: python3 -m scripts.stack_file get STACK KEY  (e.g. get prod host.ssh.host)
       python3 -m scripts.stack_file known-hosts STACK"""


def main(argv: list[str]) -> int:
    if not ((len(argv) == 3 and argv[0] == "get") or (len(argv) == 2
                                                       and argv[0] == "known-hosts")):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        path = stack_path(argv[1])
        config = config_of(path.read_text(), str(path))
        print(get_value(config, argv[2]) if argv[0] == "get" else known_hosts_line(config))
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
