"""The stack files (Pulumi.<stack>.yaml) as the delivery scripts read and change them.

A release is the value of `releases.<environment>.release` in a stack file, so the history
of releases is the git history of that file. Changing it rewrites only that one line (the
comments and layout stay) and checks the result by parsing it again.

    python3 -m scripts.stack_file get prod host.ssh.host    # one value, for the Makefile
    python3 -m scripts.stack_file known-hosts prod          # the pinned host key, as ssh reads it
    python3 -m scripts.stack_file org                       # the Pulumi organization
    python3 -m scripts.stack_file stack-name prod           # <org>/<project>/prod
    python3 -m scripts.stack_file url staging               # https://<staging's domain>

The stack files are the one place of the names the workflows need: the Pulumi organization
is written once, in `aiia:platform_stack` (`<org>/<project>/<stack>`) of the stacks that
read their platform from another (the only place the program needs it), and each
environment's domain once, in `platform.environments` of the stack that owns the platform.
The workflows ask this module for them instead of repeating them (`make init` sets them).
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
from components.settings.host import SshSettings
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


def value_of(config: dict[str, Any], dotted: str) -> Any:
    """A value as the program takes it: `host.docker_host`, when not given, is derived from
    host.ssh as the settings derive it (components/settings/host.py)."""
    if dotted == "host.docker_host" and not _is_set(config, dotted) \
            and _is_set(config, "host.ssh.host"):
        ssh = get_value(config, "host.ssh")
        values = {key: ssh[key] for key in ("host", "user", "port") if key in ssh}
        return SshSettings(**values).docker_host
    return get_value(config, dotted)


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
    found = _find_child(lines, start, end, key)
    if found is None:
        raise DeliveryError(f"no {key!r} in the stack file")
    return found


def _content(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _find_child(lines: list[str], start: int, end: int, key: str) -> tuple[int, int] | None:
    """_child, or None when lines[start:end] has no such child."""
    children = [i for i in range(start, end) if _content(lines[i])]
    if not children:
        return None
    depth = min(_indent(lines[i]) for i in children)
    for i in children:
        stripped = lines[i].strip()
        rest = stripped[len(key) + 1:]
        if (_indent(lines[i]) == depth and stripped.startswith(f"{key}:")
                and (rest == "" or rest[0] in " #")):
            block_end = next((j for j in range(i + 1, end) if _content(lines[j])
                              and _indent(lines[j]) <= depth), end)
            return i, block_end
    return None


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


class _BlockDumper(yaml.SafeDumper):
    """YAML as the stack files are written: block style, a list indented under its key, and
    a text of several lines (an armored GPG key) as a literal block."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text.strip() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _represent_text)


def _render(key: str, value: Any, indent: int) -> list[str]:
    text = yaml.dump({key: value}, Dumper=_BlockDumper, sort_keys=False, width=1000,
                     default_flow_style=False, allow_unicode=True)
    return [f"{' ' * indent}{line}\n" if line else "\n" for line in text.splitlines()]


def _block_end(lines: list[str], line: int, end: int) -> int:
    """Where the value of the key at `line` ends: its last line of content, or of a comment
    indented under it (a comment at its own depth or less introduces what follows)."""
    last = line
    for i in range(line + 1, end):
        if _content(lines[i]) or (lines[i].strip() and _indent(lines[i]) > _indent(lines[line])):
            last = i
    return last + 1


def _nested(keys: list[str], value: Any) -> Any:
    for key in reversed(keys):
        value = {key: value}
    return value


def _set_in(document: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = document.get(key)
        if not isinstance(child, dict):
            child = document[key] = {}
        document = child
    document[keys[-1]] = value


def _inline(line: str, key: str) -> bool:
    """Whether `key:` on this line carries its value on the same line (`key: {}`, `key: x`)."""
    rest = line.strip()[len(key) + 1:].strip()
    return rest != "" and not rest.startswith("#")


def with_value(text: str, dotted: str, value: Any) -> str:
    """The stack file's text with aiia:<dotted> set to `value` (text, a number, a list or an
    object), every other line as it was: the key's own lines are replaced, or, where it or a
    parent is missing, written at the end of the closest parent that exists. The result is
    parsed again and must differ from the old text in that value alone."""
    keys = [f"aiia:{dotted.split('.')[0]}", *dotted.split(".")[1:]]
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    parent, end = _child(lines, 0, len(lines), "config")
    for depth, key in enumerate(keys):
        found = _find_child(lines, parent + 1, end, key)
        if found is None:
            at = _block_end(lines, parent, end)
            indent = _children_indent(lines, parent, end)
            lines[at:at] = _render(key, _nested(keys[depth + 1:], value), indent)
            break
        line, block_end = found
        if depth == len(keys) - 1 or _inline(lines[line], key):
            current = yaml.safe_load("".join(lines[line:block_end]).strip() + "\n") or {}
            new = current.get(key) if isinstance(current.get(key), dict) else {}
            new = value if depth == len(keys) - 1 else _with_path(new, keys[depth + 1:], value)
            lines[line:_block_end(lines, line, block_end)] = _render(key, new,
                                                                     _indent(lines[line]))
            break
        parent, end = line, block_end
    return _checked(text, "".join(lines), keys, value)


def _with_path(document: dict[str, Any], keys: list[str], value: Any) -> dict[str, Any]:
    _set_in(document, keys, value)
    return document


def _children_indent(lines: list[str], parent: int, end: int) -> int:
    children = [i for i in range(parent + 1, end) if _content(lines[i])]
    if children:
        return min(_indent(lines[i]) for i in children)
    return _indent(lines[parent]) + 2


def _checked(old: str, new: str, keys: list[str], value: Any) -> str:
    expected = yaml.safe_load(old) or {}
    _set_in(expected.setdefault("config", {}), keys, value)
    try:
        parsed = yaml.safe_load(new)
    except yaml.YAMLError:
        parsed = None
    if parsed != expected:
        raise DeliveryError(f"setting {keys[0]}.{'.'.join(keys[1:])} would change more than "
                            "that value in the stack file; set it by hand with pulumi config "
                            "set --path")
    return new


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise DeliveryError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def refuse_uncommitted(path: Path) -> None:
    """A stack file with changes of its own would ride along in the commit unreviewed."""
    if git("status", "--porcelain", "--", path.name).strip():
        raise DeliveryError(f"{path.name} has uncommitted changes: commit or drop them first")


def commit_stack_file(path: Path, text: str, message: str) -> str:
    """Write the stack file and commit it alone; returns the commit."""
    path.write_text(text)
    git("add", "--", path.name)
    git("commit", "-q", "-m", message, "--", path.name)
    return git("rev-parse", "HEAD").strip()


def project_name(directory: Path | None = None) -> str:
    """The project's name (Pulumi.yaml `name:`), the middle part of a stack's full name."""
    path = (directory or Path.cwd()) / "Pulumi.yaml"
    try:
        return str(yaml.safe_load(path.read_text())["name"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise DeliveryError(f"{path} names no project: {error}") from None


def stack_configs(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every stack file of the project, by stack name."""
    paths = sorted((directory or Path.cwd()).glob("Pulumi.*.yaml"))
    return {path.name[len("Pulumi."):-len(".yaml")]: config_of(path.read_text(), str(path))
            for path in paths}


def organization(directory: Path | None = None) -> str:
    """The Pulumi organization of the project's stacks: the one `aiia:platform_stack` names
    (`<org>/<project>/<stack>`) in the stack files that read their platform from another."""
    named = {stack: str(config["aiia:platform_stack"]).split("/")
             for stack, config in stack_configs(directory).items()
             if config.get("aiia:platform_stack")}
    orgs = {parts[0] for parts in named.values() if len(parts) == 3}
    if len(orgs) != 1:
        found = ", ".join(f"{stack}: {'/'.join(parts)}" for stack, parts in named.items())
        raise DeliveryError("the stack files name no single Pulumi organization (aiia:"
                            f"platform_stack as <org>/<project>/<stack>; found: {found or 'none'})"
                            "; `make init STACK=prod ARGS='--org <org>'` sets it")
    return orgs.pop()


def qualified_stack_name(stack: str, directory: Path | None = None) -> str:
    stack_path(stack, directory)
    return f"{organization(directory)}/{project_name(directory)}/{stack}"


def platform_config(stack: str, directory: Path | None = None) -> dict[str, Any]:
    """The config of the stack file that holds `stack`'s platform: its own, or that of the
    stack its aiia:platform_stack names."""
    config = config_of(stack_path(stack, directory).read_text(), f"Pulumi.{stack}.yaml")
    platform_stack = config.get("aiia:platform_stack")
    if str((config.get("aiia:platform") or {}).get("owner", True)).lower() != "false":
        return config
    if not platform_stack:
        raise DeliveryError(f"Pulumi.{stack}.yaml reads its platform from no stack "
                            "(aiia:platform_stack)")
    owner = str(platform_stack).split("/")[-1]
    return config_of(stack_path(owner, directory).read_text(), f"Pulumi.{owner}.yaml")


def public_url(environment: str, directory: Path | None = None) -> str:
    """https://<domain> of an environment (a stack releases the environment of its name), as
    the platform that serves it says, with nginx's https port when it is not 443."""
    platform = platform_config(environment, directory)
    domain = get_value(platform, f"platform.environments.{environment}.domain")
    port = ((platform.get("aiia:platform") or {}).get("nginx") or {}).get("https_port", 443)
    return f"https://{domain}" + ("" if int(port) == 443 else f":{port}")


USAGE = """usage: python3 -m scripts.stack_file get STACK KEY  (e.g. get prod host.ssh.host)
       python3 -m scripts.stack_file known-hosts STACK
       python3 -m scripts.stack_file org
       python3 -m scripts.stack_file stack-name STACK
       python3 -m scripts.stack_file url STACK"""


def _answer(argv: list[str]) -> Any:
    """What a command prints; None for a command line that is no command."""
    match argv:
        case ["get", stack, key]:
            path = stack_path(stack)
            return value_of(config_of(path.read_text(), str(path)), key)
        case ["known-hosts", stack]:
            path = stack_path(stack)
            return known_hosts_line(config_of(path.read_text(), str(path)))
        case ["org"]:
            return organization()
        case ["stack-name", stack]:
            return qualified_stack_name(stack)
        case ["url", stack]:
            return public_url(stack)
    return None


def main(argv: list[str]) -> int:
    try:
        answer = _answer(argv)
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if answer is None:
        print(USAGE, file=sys.stderr)
        return 2
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
