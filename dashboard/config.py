"""The dashboard's config file (JSON, rendered from templates/dashboard/config.json.j2).

Loaded once at start by both processes and validated up front: a wrong value stops the
process with a message naming the key, instead of a page that silently shows nothing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .notify_config import (
    NotifyConfig,
    NotifyConfigError,
    parse_notify,
    read_secrets,
    secrets_path,
)

DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


@dataclass(frozen=True)
class Environment:
    name: str
    domain: str
    health_url: str
    host_header: str


@dataclass(frozen=True)
class Service:
    """A service the operator expects to run; matched to containers by label or name."""

    name: str
    memory_limit_mb: int
    container_label: str | None = None  # value of the `aiia.service` label
    container_name: str | None = None
    environment: str | None = None  # value of `aiia.environment`, narrows a label match

    def matches(self, container_name: str, labels: dict[str, str]) -> bool:
        if self.container_name is not None:
            return container_name == self.container_name
        if labels.get("aiia.service") != self.container_label:
            return False
        return self.environment is None or labels.get("aiia.environment") == self.environment


@dataclass(frozen=True)
class Certificate:
    domain: str
    path: Path


@dataclass(frozen=True)
class LogSource:
    """Where a service's last lines come from: one of a file, a container, a labelled service."""

    service: str
    file: Path | None = None
    container: str | None = None
    container_label: str | None = None
    environment: str | None = None

    def describe(self) -> str:
        if self.file is not None:
            return f"file {self.file}"
        if self.container is not None:
            return f"container {self.container}"
        suffix = f" ({self.environment})" if self.environment else ""
        return f"containers labelled aiia.service={self.container_label}{suffix}"


@dataclass(frozen=True)
class HostAccess:
    """SSH logins and sudo read from the journal (dashboard/host_access.py); a VPS's only."""

    deploy_user: str
    # SHA256 fingerprint (as sshd logs it) → the key's name (its comment).
    known_keys: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Retention:
    probe_days: int = 35
    host_hours: int = 25
    request_hours: int = 25


@dataclass(frozen=True)
class Config:
    listen_host: str
    listen_port: int
    state_dir: Path
    root_dir: Path
    environments: tuple[Environment, ...]
    services: tuple[Service, ...]
    certificates: tuple[Certificate, ...]
    access_log: Path
    releases_file: Path
    backups_file: Path
    restore_tests_file: Path
    log_sources: tuple[LogSource, ...]
    # Who may sign in: user name → pbkdf2_sha256 hash (one per operator, or the one shared
    # account of a stack without platform.dashboard.operators).
    auth_users: dict[str, str]
    docker_socket: Path = Path(DEFAULT_DOCKER_SOCKET)
    poll_seconds: int = 5
    probe_timeout_seconds: float = 5.0
    collect_every_seconds: int = 60
    retention: Retention = field(default_factory=Retention)
    stack: str | None = None  # only containers labelled aiia.stack=<stack> are this host's
    # What the last certbot run did ({root}/state/certbot.json); None when no ACME CA issues
    # (tls.mode self_signed), so that no certificate is expected to be issued.
    certbot_state_file: Path | None = None
    host_access: HostAccess | None = None  # None: no journal to read (the local stack)
    # The Pulumi stack that owns the platform, as `make … STACK=<it>` in the commands an
    # alert suggests; None: the message says STACK=<stack>.
    pulumi_stack: str | None = None
    # Where alerts are sent (dashboard/notify_config.py); without secrets: only the
    # collector reads them, from `notify.secrets_file`.
    notify: NotifyConfig | None = None
    notify_raw: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # Peers whose X-Real-IP names the client (nginx's address): the audit log's address.
    trusted_proxies: tuple[str, ...] = ()

    def notify_with_secrets(self) -> NotifyConfig | None:
        """The notify config with its secrets joined in (the collector's, root's view)."""
        if self.notify_raw is None:
            return None
        secrets = read_secrets(secrets_path(self.notify_raw, dict(os.environ)))
        return parse_notify(self.notify_raw, secrets, "dashboard config")

    @property
    def database_path(self) -> Path:
        return self.state_dir / "dashboard.sqlite3"

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pitr_file(self) -> Path:
        """`pitr.sh tick`'s snapshot of the WAL archive (dashboard/pitr.py), by backups.jsonl."""
        return self.backups_file.with_name("pitr.json")

    @property
    def pitr_drills_file(self) -> Path:
        return self.backups_file.with_name("pitr-drills.jsonl")

    @property
    def log_shipping_file(self) -> Path:
        """`ship-logs.sh tick`'s snapshot (dashboard/log_shipping.py), by backups.jsonl."""
        return self.backups_file.with_name("log-shipping.json")

    def log_source(self, service: str) -> LogSource | None:
        return next((s for s in self.log_sources if s.service == service), None)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read the dashboard config {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON ({error}); re-render it") from error
    return parse_config(raw, source=str(path))


def parse_config(raw: Any, source: str = "config") -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a JSON object")
    reader = _Reader(raw, source)
    environments = tuple(
        _environment(reader, i, e) for i, e in enumerate(reader.list("environments"))
    )
    services = tuple(_service(reader, i, s) for i, s in enumerate(reader.list("services")))
    certificates = tuple(
        Certificate(
            domain=reader.text(f"certificates[{i}].domain", c.get("domain")),
            path=Path(reader.text(f"certificates[{i}].path", c.get("path"))),
        )
        for i, c in enumerate(reader.list("certificates"))
    )
    log_sources_raw = raw.get("log_sources", {})
    if isinstance(log_sources_raw, list):
        # Also accepted: a list of {"service": name, <source keys>}.
        if not all(isinstance(item, dict) and "service" in item for item in log_sources_raw):
            raise ConfigError(f"{source}: every log_sources item needs a service name")
        log_sources_raw = {
            item["service"]: {k: v for k, v in item.items() if k != "service" and v is not None}
            for item in log_sources_raw
        }
    if not isinstance(log_sources_raw, dict):
        raise ConfigError(f"{source}: log_sources must be a map service → source")
    log_sources = tuple(_log_source(reader, name, spec) for name, spec in log_sources_raw.items())
    auth_users = _auth_users(reader, raw)
    retention_raw = raw.get("retention", {})
    retention = Retention(
        probe_days=reader.positive_int("retention.probe_days", retention_raw.get("probe_days", 35)),
        host_hours=reader.positive_int("retention.host_hours", retention_raw.get("host_hours", 25)),
        request_hours=reader.positive_int(
            "retention.request_hours", retention_raw.get("request_hours", 25)
        ),
    )
    if retention.probe_days < 30:
        raise ConfigError(f"{source}: retention.probe_days must be ≥ 30 to show 30-day uptime")
    names = [e.name for e in environments]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: environments has duplicate names {names}")
    return Config(
        listen_host=reader.text("listen_host", raw.get("listen_host")),
        listen_port=reader.port("listen_port", raw.get("listen_port")),
        state_dir=Path(reader.text("state_dir", raw.get("state_dir"))),
        root_dir=Path(reader.text("root_dir", raw.get("root_dir"))),
        environments=environments,
        services=services,
        certificates=certificates,
        access_log=Path(reader.text("access_log", raw.get("access_log"))),
        releases_file=Path(reader.text("releases_file", raw.get("releases_file"))),
        backups_file=Path(reader.text("backups_file", raw.get("backups_file"))),
        restore_tests_file=Path(reader.text("restore_tests_file", raw.get("restore_tests_file"))),
        certbot_state_file=(
            None if raw.get("certbot_state_file") is None
            else Path(reader.text("certbot_state_file", raw["certbot_state_file"]))
        ),
        log_sources=log_sources,
        auth_users=auth_users,
        docker_socket=Path(
            # The collector's way to Docker: the proxy's socket (review L2), null: Docker's.
            reader.text("docker_socket", raw.get("docker_socket") or DEFAULT_DOCKER_SOCKET)
        ),
        poll_seconds=reader.positive_int("poll_seconds", raw.get("poll_seconds", 5)),
        probe_timeout_seconds=float(
            reader.positive_int("probe_timeout_seconds", raw.get("probe_timeout_seconds", 5))
        ),
        collect_every_seconds=reader.positive_int(
            "collect_every_seconds", raw.get("collect_every_seconds", 60)
        ),
        retention=retention,
        stack=reader.name("stack", raw["stack"]) if raw.get("stack") is not None else None,
        host_access=_host_access(reader, raw.get("host_access")),
        pulumi_stack=(
            None if raw.get("pulumi_stack") is None
            else reader.name("pulumi_stack", raw["pulumi_stack"])
        ),
        notify=_notify(raw.get("notify"), source),
        notify_raw=raw.get("notify"),
        trusted_proxies=_addresses(reader, "trusted_proxies", raw.get("trusted_proxies", [])),
    )


# An operator's name (platform.dashboard.operators, components/settings/dashboard.py).
_OPERATOR = re.compile(r"^[a-z][a-z0-9]{0,31}$")


def _auth_users(reader: _Reader, raw: dict[str, Any]) -> dict[str, str]:
    """`auth_users` (operator → hash), or the one shared account of `auth_user` and
    `auth_password_hash`, as every config before operators had."""
    if "auth_users" in raw:
        users = raw["auth_users"]
        if "auth_user" in raw or "auth_password_hash" in raw:
            raise reader.fail("auth_users", "and auth_user/auth_password_hash: keep one of them")
        if not isinstance(users, dict) or not users:
            raise reader.fail("auth_users", "must map each operator's name to its hash")
        for name in users:
            if not isinstance(name, str) or not _OPERATOR.match(name):
                raise reader.fail(f"auth_users.{name}", "is not an operator's name "
                                  "(lower-case letters and digits, starting with a letter)")
    else:
        users = {reader.text("auth_user", raw.get("auth_user")): raw.get("auth_password_hash")}
    for name, password_hash in users.items():
        key = "auth_password_hash" if "auth_users" not in raw else f"auth_users.{name}"
        password_hash = reader.text(key, password_hash)
        if not password_hash.startswith("pbkdf2_sha256$") or password_hash.count("$") != 3:
            raise reader.fail(
                key, "must look like pbkdf2_sha256$<iterations>$<salt>$<hash>; make one "
                "with `python3 -m dashboard hash-password`")
    return dict(users)


def _addresses(reader: _Reader, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise reader.fail(key, "must be a list of IP addresses")
    addresses = []
    for index, address in enumerate(value):
        try:
            addresses.append(str(ipaddress.ip_address(str(address))))
        except ValueError:
            problem = f"is not an IP address (got {address!r})"
            raise reader.fail(f"{key}[{index}]", problem) from None
    return tuple(addresses)


def _notify(raw: Any, source: str) -> NotifyConfig | None:
    try:
        return parse_notify(raw, None, source)
    except NotifyConfigError as error:
        raise ConfigError(str(error)) from None


def _host_access(reader: _Reader, raw: Any) -> HostAccess | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise reader.fail("host_access", "must be an object {deploy_user, known_keys}")
    keys = raw.get("known_keys", {})
    if not isinstance(keys, dict) or not all(
        isinstance(k, str) and k.startswith("SHA256:") and isinstance(v, str)
        for k, v in keys.items()
    ):
        raise reader.fail("host_access.known_keys", "must map SHA256:… fingerprints to names")
    return HostAccess(deploy_user=reader.name("host_access.deploy_user", raw.get("deploy_user")),
                      known_keys=dict(keys))


class _Reader:
    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key} {problem}")

    def text(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string (got {value!r})")
        return value

    def name(self, key: str, value: Any) -> str:
        value = self.text(key, value)
        if not _NAME.match(value):
            raise self.fail(
                key, f"must be lower-case letters, digits, '.', '_' or '-' (got {value!r})"
            )
        return value

    def positive_int(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(key, f"must be a positive integer (got {value!r})")
        return value

    def port(self, key: str, value: Any) -> int:
        port = self.positive_int(key, value)
        if port > 65535:
            raise self.fail(key, f"must be a TCP port 1-65535 (got {port})")
        return port

    def list(self, key: str) -> list[dict[str, Any]]:
        value = self.raw.get(key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(key, "must be a list of objects")
        return value


def _environment(reader: _Reader, index: int, raw: dict[str, Any]) -> Environment:
    key = f"environments[{index}]"
    health_url = reader.text(f"{key}.health_url", raw.get("health_url"))
    if not health_url.startswith(("http://", "https://")):
        raise reader.fail(f"{key}.health_url", f"must be an http(s) URL (got {health_url!r})")
    return Environment(
        name=reader.name(f"{key}.name", raw.get("name")),
        domain=reader.text(f"{key}.domain", raw.get("domain")),
        health_url=health_url,
        host_header=reader.text(f"{key}.host_header", raw.get("host_header", raw.get("domain"))),
    )


def _service(reader: _Reader, index: int, raw: dict[str, Any]) -> Service:
    key = f"services[{index}]"
    label, name = raw.get("container_label"), raw.get("container_name")
    if (label is None) == (name is None):
        raise reader.fail(key, "needs exactly one of container_label or container_name")
    environment = raw.get("environment")
    return Service(
        name=reader.name(f"{key}.name", raw.get("name")),
        memory_limit_mb=reader.positive_int(f"{key}.memory_limit_mb", raw.get("memory_limit_mb")),
        container_label=None if label is None else reader.text(f"{key}.container_label", label),
        container_name=None if name is None else reader.text(f"{key}.container_name", name),
        environment=None if environment is None else reader.name(f"{key}.environment", environment),
    )


def _log_source(reader: _Reader, service: str, spec: Any) -> LogSource:
    key = f"log_sources.{service}"
    reader.name(f"{key} (the service name)", service)
    if isinstance(spec, str):
        # A bare string: an absolute path is a file, anything else a container name.
        spec = {"file": spec} if spec.startswith("/") else {"container": spec}
    if (
        not isinstance(spec, dict)
        or len({"file", "container", "container_label"} & spec.keys()) != 1
    ):
        raise reader.fail(
            key,
            "must be a path, a container name, or one of "
            "{file}, {container}, {container_label[, environment]}",
        )
    return LogSource(
        service=service,
        file=Path(reader.text(f"{key}.file", spec["file"])) if "file" in spec else None,
        container=reader.text(f"{key}.container", spec["container"])
        if "container" in spec
        else None,
        container_label=(
            reader.text(f"{key}.container_label", spec["container_label"])
            if "container_label" in spec
            else None
        ),
        environment=spec.get("environment"),
    )
