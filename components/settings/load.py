"""Typed, validated settings for one stack.

Every component reads from a `Settings` object and none writes to it. `parse_settings`
is pure (plain dicts in, dataclasses out) so every rule is tested without Pulumi;
`load_settings` adapts `pulumi.Config` to it. All problems are collected and reported
together, each naming the key, the value and the fix, before any resource is declared.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.settings.budget import MemoryBudget, memory_budget
from components.settings.gpg_keys import KeyProblem, PublicKey, inspect_public_key
from components.settings.provision import (
    USER_RE,
    ProvisionSettings,
    parse_provision,
    ssh_key_problem,
)

NAMESPACE = "aiia"
TLS_MODES = ("self_signed", "letsencrypt", "letsencrypt_staging", "acme")
# The ACME directory of each mode that names its CA; `acme` takes tls.acme_directory_url.
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt_staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
KEY_TYPES = ("ecdsa", "rsa")
EVICTION_POLICIES = (
    "allkeys-lru",
    "allkeys-lfu",
    "volatile-lru",
    "volatile-lfu",
    "allkeys-random",
    "volatile-random",
    "volatile-ttl",
    "noeviction",
)
# Ports the platform's containers use inside the network; an app port may not take them.
# After a release's watch, how long to wait for nginx's old workers to finish their HTTP
# requests before Pulumi may stop the previous release.
RELEASE_DRAIN_SECONDS = 5
RESERVED_PORTS = {80: "nginx http", 443: "nginx https", 5432: "postgres", 6379: "redis",
                  6432: "pgbouncer", 8080: "nginx health listener"}

_DOMAIN_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN_RE = re.compile(rf"^(?=.{{1,253}}$){_DOMAIN_LABEL}(\.{_DOMAIN_LABEL})+$")
# Docker's reference grammar: a tag is [\w][\w.-]{0,127}; a digest is algorithm:hex.
RELEASE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
RUN_AS_RE = re.compile(r"^(?P<uid>0|[1-9][0-9]{0,9}):(?P<gid>0|[1-9][0-9]{0,9})$")
IMAGE_REPOSITORY_RE = re.compile(
    r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
)
EXACT_TAG_RE = re.compile(r"^v?\d+\.\d+\.\d+(?:[-_.+][A-Za-z0-9_.-]+)?$")
EXACT_POSTGRES_TAG_RE = re.compile(r"^\d+\.\d+(?:[-_][A-Za-z0-9_.-]+)?$")
IMAGE_REFERENCE_RE = re.compile(
    r"^(?P<repository>[^:@]+(?::[0-9]+/[^:@]+)?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
ENVIRONMENT_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
STACK_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}$")


class ConfigError(Exception):
    """A stack config that cannot be deployed; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid stack config ({len(problems)} problem(s)):\n{listing}")


@dataclass(frozen=True)
class SshSettings:
    host: str
    user: str = "root"
    port: int = 22
    # The VPS's own public host key (`ssh-keyscan -t ed25519 <host>`, checked against the
    # provider's console): pulumi-command's remote.Command ignores host keys unless
    # ConnectionArgs.host_key is set (pulumi_command 1.2.1, remote/_inputs.py), so without
    # it a man in the middle would be handed every secret the program writes.
    host_key: str | None = None


@dataclass(frozen=True)
class HostSettings:
    """The machine everything runs on."""

    kind: str  # "local": the developer's Docker, commands run here; "ssh": a VPS
    memory_mb: int = 512
    swap_mb: int = 1024
    os_reserve_mb: int = 80
    root_dir: str = "/srv/aiia"
    docker_host: str | None = None  # e.g. ssh://root@203.0.113.10; None: local socket
    ssh: SshSettings | None = None
    disk_gb: int = 20  # the host's disk (backups get platform.backup.disk_budget_mb of it)
    provision: ProvisionSettings | None = None  # an ssh host only (components/host/provision.py)


@dataclass(frozen=True)
class EnvironmentSettings:
    """One environment served by the platform (its domain, port and app memory)."""

    name: str
    domain: str
    port: int
    app_memory_mb: int = 80
    # Lua in Redis (EVAL, FUNCTION, SCRIPT) for this environment's user. Off: scripting is
    # the path of CVE-2025-49844 and its kind, and the reference app (Django's Redis cache)
    # sends no script. Turn it on for an app whose libraries do (e.g. channels_redis).
    redis_scripting: bool = False


@dataclass(frozen=True)
class ImageSettings:
    postgres: str = "postgres:15.20-bookworm"
    pgbouncer: str = "edoburu/pgbouncer:v1.23.1-p3"
    redis: str = "redis:7.2.12-bookworm"
    nginx: str = "nginx:1.30.6"
    certbot: str = "certbot/certbot:v5.5.0"


@dataclass(frozen=True)
class PostgresSettings:
    memory_mb: int = 120
    shared_buffers_mb: int = 32
    effective_cache_size_mb: int = 96
    work_mem_mb: int = 2
    maintenance_work_mem_mb: int = 16
    max_connections: int = 50


@dataclass(frozen=True)
class PgBouncerSettings:
    memory_mb: int = 16
    default_pool_size: int = 10
    max_client_conn: int = 200


@dataclass(frozen=True)
class RedisSettings:
    memory_mb: int = 64
    maxmemory_mb: int = 50
    eviction_policy: str = "allkeys-lru"


@dataclass(frozen=True)
class NginxSettings:
    memory_mb: int = 32
    general_rate_per_second: int = 200
    api_rate_per_second: int = 500
    http_port: int = 80
    https_port: int = 443
    bind_address: str = "0.0.0.0"  # noqa: S104 - the public entry point; local uses 127.0.0.1
    # How long an old worker keeps in-flight requests and WebSockets after a reload. It must
    # outlast a release's watch and drain, so that a WebSocket held by an old worker is
    # closed by the previous release (a normal close) when Pulumi stops it, not cut by nginx,
    # and outlast keepalive_min_timeout, so that no kept-alive connection is cut either.
    worker_shutdown_timeout_seconds: int = 60
    # How long a client's idle keep-alive connection stays open. Clients that keep theirs
    # longer meet the race every keep-alive server has (a request crossing the close).
    keepalive_timeout_seconds: int = 30
    # For how long after its last response a kept-alive connection survives a reload (nginx
    # keepalive_min_timeout, 1.27.4+). The default, keepalive_timeout_seconds, means a reload
    # closes no idle connection: its next request is answered by the old worker (and the
    # release that served before) with "Connection: close", and the client reconnects to
    # the new one. 0 is nginx's own default: every reload closes idle connections at once,
    # and a client that sends on one at that moment gets a reset or an empty reply.
    keepalive_min_timeout_seconds: int | None = None

    @property
    def reload_keeps_idle_seconds(self) -> int:
        """keepalive_min_timeout in effect: how long an old worker may still take a request."""
        if self.keepalive_min_timeout_seconds is None:
            return self.keepalive_timeout_seconds
        return self.keepalive_min_timeout_seconds


@dataclass(frozen=True)
class TlsSettings:
    # letsencrypt / letsencrypt_staging: Let's Encrypt's CA; acme: another ACME CA at
    # acme_directory_url (ca_bundle: the CA of that server's own HTTPS certificate, when it
    # is not a public one); self_signed: no CA, the bootstrap certificate stays.
    mode: str = "letsencrypt"
    email: str | None = None  # the ACME account's; required by Let's Encrypt's modes
    acme_directory_url: str | None = None
    ca_bundle: str | None = None  # a PEM file on the machine that runs `pulumi up`
    key_type: str = "ecdsa"  # ecdsa: P-256; rsa: 2048 bits, for clients that lack ECDSA
    # Only for a CA that still serves OCSP: Let's Encrypt ended OCSP in 2025, so stapling is
    # refused in its modes (nginx would warn on every reload and staple nothing).
    ocsp_stapling: bool = False

    @property
    def acme_directory(self) -> str | None:
        return ACME_DIRECTORIES.get(self.mode, self.acme_directory_url)


@dataclass(frozen=True)
class DashboardSettings:
    memory_mb: int = 32  # the HTTP server (systemd MemoryMax on a VPS)
    # The collector: a timer run on a VPS, resident locally. Measured (bench/setup.py): 16–19
    # MB anonymous at a collection's peak, plus the page cache it reads through and ~2.5 MB
    # for anything run beside it (a `docker exec`'s runc init and command: its health
    # check, an operator's look inside). 24 left a second Python started beside a
    # collection OOM-killed (issue #15).
    collector_memory_mb: int = 32
    port: int = 9100
    user: str = "admin"
    image: str = "aiia-dashboard:local"  # local stack only: the image both containers run


@dataclass(frozen=True)
class CertbotSettings:
    memory_mb: int = 64  # a transient renewal container: counted in the peak, not steady


@dataclass(frozen=True)
class OffHostSettings:
    """Where each verified backup is copied over SSH (rsync), its host key pinned."""

    host: str
    path: str
    host_key: str  # the target's public host key, e.g. "ssh-ed25519 AAAA…" (ssh-keyscan)
    user: str = "aiia-backup"
    port: int = 22


@dataclass(frozen=True)
class BackupSettings:
    """The daily encrypted backup and the monthly restore drill (components/platform/backup.py)."""

    time: str = "03:30"  # UTC, daily, by the host's cron
    # The operators' GPG public keys (armored text, or the path of a file holding one on the
    # machine that runs `pulumi up`); every backup is encrypted to each of them and to the
    # host's drill key. Checked at preview: malformed or expired keys are refused.
    recipients: tuple = ()
    keep_daily: int = 7  # the newest verified backup of each of the last N days
    keep_monthly: int = 3  # and the first verified backup of each of the last M months
    # What backups may take of host.disk_gb; a run that would exceed it prunes old backups
    # (never the newest verified one) or refuses to start.
    disk_budget_mb: int = 6144
    drill_day: int = 1  # the restore drill's day of the month
    drill_time: str = "05:10"  # UTC, after that day's backup
    # The transient container that dumps, encrypts and verifies (and restores in the drill):
    # pg_dump/pg_restore and gpg stream, so their memory does not grow with the database.
    memory_mb: int = 64
    off_host: OffHostSettings | None = None
    keys: tuple[PublicKey, ...] = ()  # the recipients, read and checked

    @property
    def hour_minute(self) -> tuple[int, int]:
        hour, minute = self.time.split(":")
        return int(hour), int(minute)


@dataclass(frozen=True)
class PlatformSettings:
    """The shared services of the host; present only in the stack that owns them."""

    environments: tuple[EnvironmentSettings, ...]
    status_domain: str
    tls: TlsSettings
    network_subnet: str = "172.30.0.0/24"
    images: ImageSettings = field(default_factory=ImageSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    pgbouncer: PgBouncerSettings = field(default_factory=PgBouncerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    nginx: NginxSettings = field(default_factory=NginxSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    certbot: CertbotSettings = field(default_factory=CertbotSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    # Secrets (pulumi Outputs in a real run; any opaque value in pure tests).
    postgres_password: Any = None
    database_passwords: Mapping[str, Any] = field(default_factory=dict)
    redis_passwords: Mapping[str, Any] = field(default_factory=dict)
    dashboard_password: Any = None

    def environment(self, name: str) -> EnvironmentSettings:
        return next(env for env in self.environments if env.name == name)

    @property
    def network_gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.network_subnet).hosts()))


@dataclass(frozen=True)
class ReleaseSettings:
    """One environment's app release: a release is this one config value (`release`)."""

    environment: str
    image: str  # repository, e.g. ghcr.io/acme/aiia-backend
    release: str  # the image tag, or a digest sha256:…
    secret_key: Any = None
    stop_grace_seconds: int = 30  # the old container's SIGTERM→SIGKILL (uvicorn drains 20 s)
    watch_seconds: int = 30  # how long the new release is watched after the switch
    watch_max_error_percent: int = 5  # 5xx share that sends traffic back to the previous one
    watch_min_requests: int = 20  # below this many requests only the health probes count
    keep_images: int = 5  # release images kept on the host per environment, for rollbacks
    # The uid:gid the app and its jobs run as, whatever the image's USER says (an image
    # without USER would run as root); the release owns its writable host directories
    # (static files, logs) for it. The default is the reference image's user.
    run_as: str = "10001:10001"
    allow_root: bool = False  # uid or gid 0 for run_as is refused unless this is true
    # How the app gets its secrets (SECRET_KEY, DATABASE_PASSWORD, the Redis password):
    # "files" (0400 files for run_as, named by <NAME>_FILE variables; `docker inspect` shows
    # no secret) or "variables" (the values themselves, for an image that cannot read files).
    secrets_as: str = "files"

    @property
    def image_reference(self) -> str:
        separator = "@" if DIGEST_RE.match(self.release) else ":"
        return f"{self.image}{separator}{self.release}"


@dataclass(frozen=True)
class RegistrySettings:
    """`aiia:registry`: where a private app image is pulled from. The Docker provider logs
    in with this itself (its `registry_auth`); the daemon's own `docker login` is not used."""

    address: str  # e.g. ghcr.io
    username: str
    password: Any = None  # the secret aiia:registry_password


@dataclass(frozen=True)
class Settings:
    stack: str
    prefix: str
    host: HostSettings
    platform: PlatformSettings | None  # None: read from `platform_stack`
    platform_stack: str | None
    releases: tuple[ReleaseSettings, ...]
    registry: RegistrySettings | None = None

    @property
    def owns_platform(self) -> bool:
        return self.platform is not None

    @property
    def budget(self) -> MemoryBudget | None:
        return memory_budget(self) if self.platform else None


# --------------------------------------------------------------------------- parsing


class _Problems:
    """Collects problems so that one run reports all of them."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)


def _object(raw: Mapping[str, Any], key: str, problems: _Problems) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        problems.add(f"{NAMESPACE}:{key} must be an object, got {value!r}; see Pulumi.prod.yaml")
        return {}
    return value


def _fields(cls: type, values: Mapping[str, Any], key: str, problems: _Problems) -> dict:
    """Keep the known fields of `cls`, typed like its defaults; report unknown or mistyped ones."""
    known = cls.__dataclass_fields__
    result: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            problems.add(
                f"{NAMESPACE}:{key}.{name} is not a setting; known: {', '.join(sorted(known))}"
            )
            continue
        expected = known[name].type
        if expected == "int | None" and value is None:
            pass  # unset: the setting's documented default applies
        elif expected in ("int", int, "int | None"):
            if isinstance(value, bool) or not isinstance(value, int | str):
                problems.add(f"{NAMESPACE}:{key}.{name}={value!r} must be a whole number")
                continue
            try:
                value = int(value)
            except ValueError:
                problems.add(f"{NAMESPACE}:{key}.{name}={value!r} must be a whole number")
                continue
        elif expected in ("bool", bool) and isinstance(value, str):
            if value.lower() not in ("true", "false"):
                problems.add(f"{NAMESPACE}:{key}.{name}={value!r} must be true or false")
                continue
            value = value.lower() == "true"
        result[name] = value
    return result


def _positive(value: int, key: str, problems: _Problems) -> None:
    if value <= 0:
        problems.add(f"{key}={value} must be greater than 0")


def _check_domain(domain: Any, key: str, problems: _Problems) -> None:
    if not isinstance(domain, str) or not DOMAIN_RE.match(domain):
        problems.add(
            f"{key}={domain!r} is not a valid domain name; use lower-case labels of letters, "
            "digits and hyphens separated by dots, e.g. api.example.com or prod.localhost"
        )


def _check_image(reference: Any, key: str, problems: _Problems) -> None:
    match = IMAGE_REFERENCE_RE.match(reference) if isinstance(reference, str) else None
    if not match or not IMAGE_REPOSITORY_RE.match(match["repository"]):
        problems.add(
            f"{key}={reference!r} is not a valid image reference; "
            "use repository:tag or repository@sha256:<digest>, e.g. postgres:15.20-bookworm"
        )
        return
    if match["digest"]:
        return
    # PostgreSQL's releases are major.minor (15.20); every other image's major.minor.patch.
    postgres = match["repository"].rsplit("/", 1)[-1] == "postgres"
    exact = EXACT_POSTGRES_TAG_RE if postgres else EXACT_TAG_RE
    if not match["tag"] or not exact.match(match["tag"]):
        example = "postgres:15.20-bookworm" if postgres else "nginx:1.30.6"
        problems.add(
            f"{key}={reference!r} is not pinned to an exact release: a tag like "
            f"{match['tag'] or 'latest'!r} moves to whatever is published next, so a restart "
            f"or a new host may run another version than the one previewed; use the full "
            f"version (e.g. {example}) or a digest (@sha256:…)"
        )


def _parse_host(raw: Mapping[str, Any], problems: _Problems,
                owns_platform: bool = True) -> HostSettings:
    values = _fields(HostSettings, _object(raw, "host", problems), "host", problems)
    kind = values.get("kind", "ssh")
    if kind not in ("local", "ssh"):
        problems.add(f"{NAMESPACE}:host.kind={kind!r} must be 'local' or 'ssh'")
        kind = "local"
    ssh = values.pop("ssh", None)
    provision_raw = values.pop("provision", None)
    ssh_settings = None
    if ssh is not None:
        ssh_values = _fields(SshSettings, ssh if isinstance(ssh, Mapping) else {}, "host.ssh",
                             problems)
        if "host" not in ssh_values:
            problems.add(f"{NAMESPACE}:host.ssh.host is missing; set it to the VPS address")
        else:
            ssh_settings = SshSettings(**ssh_values)
    if kind == "ssh" and ssh_settings is None:
        problems.add(
            f"{NAMESPACE}:host.ssh is missing; an ssh host needs host.ssh.host "
            "(and host.ssh.user, default root) so files and commands reach it"
        )
    values["kind"] = kind
    provision = None
    if kind == "ssh" and owns_platform:
        provision = parse_provision(
            provision_raw, f"{NAMESPACE}:host.provision", problems.add,
            lambda cls, raw, key: _fields(cls, raw, key.removeprefix(f"{NAMESPACE}:"), problems))
    elif provision_raw is not None:
        problems.add(f"{NAMESPACE}:host.provision is set on a stack that does not provision the "
                     "host: only an ssh host's platform stack (platform.owner: true) does; "
                     "remove it from this stack")
    if ssh_settings is not None and kind == "ssh":
        _check_ssh(ssh_settings, problems)
    host = HostSettings(ssh=ssh_settings, provision=provision, **values)
    for name in ("memory_mb", "os_reserve_mb"):
        _positive(getattr(host, name), f"{NAMESPACE}:host.{name}", problems)
    if host.swap_mb < 0:
        problems.add(f"{NAMESPACE}:host.swap_mb={host.swap_mb} must be 0 or more")
    if not host.root_dir.startswith("/"):
        problems.add(f"{NAMESPACE}:host.root_dir={host.root_dir!r} must be an absolute path")
    _positive(host.disk_gb, f"{NAMESPACE}:host.disk_gb", problems)
    if host.disk_gb > 0 and host.swap_mb > host.disk_gb * 1024 // 4:
        problems.add(f"{NAMESPACE}:host.swap_mb={host.swap_mb} would take over a quarter of the "
                     f"{host.disk_gb} GB disk (host.disk_gb); images, volumes and backups need "
                     f"it: use at most {host.disk_gb * 1024 // 4} MB")
    return host


def _check_ssh(ssh: SshSettings, problems: _Problems) -> None:
    key = f"{NAMESPACE}:host.ssh"
    if not 1 <= ssh.port <= 65535:
        problems.add(f"{key}.port={ssh.port} is not a TCP port (1–65535)")
    elif ssh.port in (80, 443):
        problems.add(f"{key}.port={ssh.port} clashes with nginx, which publishes 80 and 443; "
                     "keep SSH on 22 or another free port")
    if not USER_RE.match(ssh.user):
        problems.add(f"{key}.user={ssh.user!r} is not a valid Linux user name")
    if ssh.host_key is None:
        problems.add(
            f"{key}.host_key is missing: without it pulumi-command accepts any host key, so a "
            f"man in the middle would receive every secret. Pin the VPS's: run `ssh-keyscan -t "
            f"ed25519 {ssh.host}`, check its fingerprint (`ssh-keygen -lf -`) against the one "
            "the provider's console shows, and set the `ssh-ed25519 AAAA…` line here")
    else:
        problem = ssh_key_problem(ssh.host_key, f"{key}.host_key")
        if problem:
            problems.add(problem)


def _parse_environments(
    platform_raw: Mapping[str, Any], problems: _Problems
) -> tuple[EnvironmentSettings, ...]:
    raw_envs = platform_raw.get("environments") or {}
    if not isinstance(raw_envs, Mapping) or not raw_envs:
        problems.add(
            f"{NAMESPACE}:platform.environments must map each environment name to its "
            "domain and port, e.g. {prod: {domain: api.example.com, port: 8000}}"
        )
        return ()
    environments = []
    for name, values in raw_envs.items():
        key = f"{NAMESPACE}:platform.environments.{name}"
        if not ENVIRONMENT_NAME_RE.match(str(name)):
            problems.add(f"{key}: environment name {name!r} must be lower-case letters and "
                         "digits, starting with a letter, at most 16 characters")
        values = _fields(EnvironmentSettings, values if isinstance(values, Mapping) else {},
                         f"platform.environments.{name}", problems)
        for required in ("domain", "port"):
            if required not in values:
                problems.add(f"{key}.{required} is missing")
        if "domain" not in values or "port" not in values:
            continue
        environment = EnvironmentSettings(name=str(name), **values)
        _check_domain(environment.domain, f"{key}.domain", problems)
        if not 1024 <= environment.port <= 65535:
            problems.add(f"{key}.port={environment.port} must be between 1024 and 65535")
        _positive(environment.app_memory_mb, f"{key}.app_memory_mb", problems)
        environments.append(environment)
    return tuple(environments)


def _check_ports(platform: PlatformSettings, problems: _Problems) -> None:
    owners: dict[int, str] = {}
    claims = [(env.port, f"{NAMESPACE}:platform.environments.{env.name}.port")
              for env in platform.environments]
    claims.append((platform.dashboard.port, f"{NAMESPACE}:platform.dashboard.port"))
    for port, key in claims:
        if port in RESERVED_PORTS:
            problems.add(f"{key}={port} clashes with {RESERVED_PORTS[port]}; pick another port")
        elif port in owners:
            problems.add(f"{key}={port} is already used by {owners[port]}; "
                         "give every environment and the dashboard a port of its own")
        else:
            owners[port] = key
    published = {"http_port": platform.nginx.http_port, "https_port": platform.nginx.https_port}
    if published["http_port"] == published["https_port"]:
        problems.add(f"{NAMESPACE}:platform.nginx.https_port={published['https_port']} is the "
                     "same as http_port; nginx needs two host ports")


def _check_keepalive(nginx: NginxSettings, problems: _Problems) -> None:
    key = f"{NAMESPACE}:platform.nginx"
    timeout = nginx.keepalive_timeout_seconds
    if not 1 <= timeout <= 300:
        problems.add(f"{key}.keepalive_timeout_seconds={timeout} must be between 1 and 300")
        return
    keep = nginx.keepalive_min_timeout_seconds
    if keep is not None and not 0 <= keep <= timeout:
        problems.add(f"{key}.keepalive_min_timeout_seconds={keep} must be between 0 and "
                     f"keepalive_timeout_seconds={timeout} (a connection is never kept longer "
                     "than its keep-alive timeout); leave it unset to keep every idle "
                     "connection across a reload")
        return
    shutdown = nginx.worker_shutdown_timeout_seconds
    if nginx.reload_keeps_idle_seconds + RELEASE_DRAIN_SECONDS >= shutdown:
        problems.add(f"{key}.worker_shutdown_timeout_seconds="
                     f"{nginx.worker_shutdown_timeout_seconds} must be longer than the "
                     f"{nginx.reload_keeps_idle_seconds} s an old worker keeps idle "
                     f"connections after a reload plus the {RELEASE_DRAIN_SECONDS} s drain, or "
                     "nginx cuts kept-alive connections a client may be using; raise it or "
                     "lower keepalive_min_timeout_seconds")


TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
HOST_KEY_RE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+=*$")
# What backups may take of the disk at most: the rest holds the system, the images (each
# release's kept for rollbacks), PostgreSQL's data and WAL, and the logs.
BACKUP_DISK_SHARE = 0.4


def _parse_off_host(value: Any, problems: _Problems) -> OffHostSettings | None:
    key = f"{NAMESPACE}:platform.backup.off_host"
    if value is None:
        return None
    values = _fields(OffHostSettings, value if isinstance(value, Mapping) else {},
                     "platform.backup.off_host", problems)
    missing = [name for name in ("host", "path") if not values.get(name)]
    for name in missing:
        problems.add(f"{key}.{name} is missing")
    if not values.get("host_key"):
        problems.add(f"{key}.host_key is missing: a copy to a host whose key is not pinned can "
                     "be taken by anyone who answers at its address; set it to the target's "
                     "public host key (ssh-keyscan -t ed25519 <host>, checked out of band), "
                     "e.g. 'ssh-ed25519 AAAA…'")
        return None
    if missing:
        return None
    off_host = OffHostSettings(**values)
    if not HOST_KEY_RE.match(str(off_host.host_key).strip()):
        problems.add(f"{key}.host_key={off_host.host_key!r} is not an SSH public host key; "
                     "give '<type> <base64>' as ssh-keyscan prints it, e.g. "
                     "'ssh-ed25519 AAAA…' (without the host name)")
    if not str(off_host.path).startswith("/"):
        problems.add(f"{key}.path={off_host.path!r} must be an absolute path on the target")
    if not 1 <= off_host.port <= 65535:
        problems.add(f"{key}.port={off_host.port} must be between 1 and 65535")
    return off_host


def _parse_backup(platform_raw: Mapping[str, Any], host: HostSettings,
                  problems: _Problems) -> BackupSettings:
    key = f"{NAMESPACE}:platform.backup"
    raw = platform_raw.get("backup") or {}
    if not isinstance(raw, Mapping):
        problems.add(f"{key} must be an object")
        raw = {}
    values = _fields(BackupSettings, raw, "platform.backup", problems)
    values.pop("keys", None)
    off_host = _parse_off_host(values.pop("off_host", None), problems)
    recipients = values.pop("recipients", None) or ()
    if isinstance(recipients, str):
        recipients = (recipients,)
    if not isinstance(recipients, list | tuple):
        problems.add(f"{key}.recipients must be a list of GPG public keys (armored text or "
                     "file paths)")
        recipients = ()
    keys = []
    for index, value in enumerate(recipients):
        try:
            keys.append(inspect_public_key(str(value)))
        except KeyProblem as problem:
            shown = "<armored key>" if "-----BEGIN" in str(value) else repr(value)
            problems.add(f"{key}.recipients[{index}]={shown} {problem}")
    backup = BackupSettings(recipients=tuple(recipients), keys=tuple(keys), off_host=off_host,
                            **values)
    if not recipients and host.kind == "ssh":
        problems.add(f"{key}.recipients is empty: the backups of a VPS would be encrypted to "
                     "its own drill key alone and lost with the VPS (the off-host copy too); "
                     "add your GPG public key, armored or a file path "
                     "(gpg --armor --export <fingerprint>)")
    for name in ("time", "drill_time"):
        if isinstance(getattr(backup, name), int):  # YAML 1.1 reads 03:30 as 210 (base 60)
            problems.add(f"{key}.{name}={getattr(backup, name)} is a number: quote the time "
                         "in the stack file, e.g. time: \"03:30\"")
        elif not TIME_RE.match(str(getattr(backup, name))):
            problems.add(f"{key}.{name}={getattr(backup, name)!r} must be a UTC time HH:MM, "
                         "e.g. 03:30")
    for name, low, high in (("keep_daily", 1, 60), ("keep_monthly", 1, 24),
                            ("drill_day", 1, 28), ("memory_mb", 32, 1024)):
        value = getattr(backup, name)
        if not low <= value <= high:
            reason = (" (0 would keep no backup at all: the newest verified one is always "
                      "kept, and retention counts it)" if value == 0 and name.startswith("keep")
                      else "")
            hint = " (28 at most: every month has that day)" if name == "drill_day" else ""
            problems.add(f"{key}.{name}={value} must be between {low} and {high}{reason}{hint}")
    limit = int(host.disk_gb * 1024 * BACKUP_DISK_SHARE)
    if backup.disk_budget_mb <= 0:
        problems.add(f"{key}.disk_budget_mb={backup.disk_budget_mb} must be greater than 0")
    elif backup.disk_budget_mb > limit:
        problems.add(f"{key}.disk_budget_mb={backup.disk_budget_mb} is more than "
                     f"{int(BACKUP_DISK_SHARE * 100)} % of {NAMESPACE}:host.disk_gb="
                     f"{host.disk_gb} ({limit} MB): the system, the images, PostgreSQL's data "
                     "and the logs need the rest; lower it (and keep_daily/keep_monthly) or "
                     "raise host.disk_gb")
    return backup


def _parse_platform(raw: Mapping[str, Any], secrets: Callable[[str], Any],
                    problems: _Problems, host: HostSettings) -> PlatformSettings:
    platform_raw = _object(raw, "platform", problems)
    environments = _parse_environments(platform_raw, problems)

    def section(cls: type, name: str) -> Any:
        values = platform_raw.get(name) or {}
        if not isinstance(values, Mapping):
            problems.add(f"{NAMESPACE}:platform.{name} must be an object")
            values = {}
        return cls(**_fields(cls, values, f"platform.{name}", problems))

    tls = section(TlsSettings, "tls")
    platform = PlatformSettings(
        environments=environments,
        status_domain=platform_raw.get("status_domain", ""),
        network_subnet=str(platform_raw.get("network_subnet", "172.30.0.0/24")),
        tls=tls,
        images=section(ImageSettings, "images"),
        postgres=section(PostgresSettings, "postgres"),
        pgbouncer=section(PgBouncerSettings, "pgbouncer"),
        redis=section(RedisSettings, "redis"),
        nginx=section(NginxSettings, "nginx"),
        dashboard=section(DashboardSettings, "dashboard"),
        certbot=section(CertbotSettings, "certbot"),
        backup=_parse_backup(platform_raw, host, problems),
        postgres_password=secrets("postgres_password"),
        database_passwords={env.name: secrets(f"{env.name}_db_password")
                            for env in environments},
        redis_passwords={env.name: secrets(f"{env.name}_redis_password")
                         for env in environments},
        dashboard_password=secrets("dashboard_password"),
    )
    _check_domain(platform.status_domain, f"{NAMESPACE}:platform.status_domain", problems)
    try:
        network = ipaddress.ip_network(platform.network_subnet)
        if not network.is_private or network.num_addresses < 16:
            raise ValueError
    except ValueError:
        problems.add(f"{NAMESPACE}:platform.network_subnet={platform.network_subnet!r} must "
                     "be a private IPv4 network of at least 16 addresses, e.g. 172.30.0.0/24")
    _check_tls(tls, problems)
    for name, reference in vars(platform.images).items():
        _check_image(reference, f"{NAMESPACE}:platform.images.{name}", problems)
    if platform.redis.eviction_policy not in EVICTION_POLICIES:
        problems.add(f"{NAMESPACE}:platform.redis.eviction_policy="
                     f"{platform.redis.eviction_policy!r} is not a Redis policy; "
                     f"use one of {', '.join(EVICTION_POLICIES)}")
    if platform.redis.maxmemory_mb >= platform.redis.memory_mb:
        problems.add(f"{NAMESPACE}:platform.redis.maxmemory_mb={platform.redis.maxmemory_mb} "
                     f"must be below its container limit memory_mb={platform.redis.memory_mb} "
                     "(Redis needs headroom beyond its data); lower maxmemory_mb or raise "
                     "memory_mb")
    _check_keepalive(platform.nginx, problems)
    postgres = platform.postgres
    if postgres.shared_buffers_mb * 2 > postgres.memory_mb:
        problems.add(f"{NAMESPACE}:platform.postgres.shared_buffers_mb="
                     f"{postgres.shared_buffers_mb} is more than half of its container limit "
                     f"memory_mb={postgres.memory_mb}; the backends would be OOM-killed. "
                     "Lower shared_buffers_mb or raise memory_mb")
    if not 10 <= postgres.max_connections <= 500:
        problems.add(f"{NAMESPACE}:platform.postgres.max_connections="
                     f"{postgres.max_connections} must be between 10 and 500")
    pool_total = platform.pgbouncer.default_pool_size * max(len(environments), 1)
    if pool_total + 5 > postgres.max_connections:
        problems.add(f"{NAMESPACE}:platform.pgbouncer.default_pool_size="
                     f"{platform.pgbouncer.default_pool_size} × {len(environments)} environments "
                     f"+ 5 admin connections exceeds postgres.max_connections="
                     f"{postgres.max_connections}; lower the pool or raise max_connections")
    _check_ports(platform, problems)
    for secret_key in ["postgres_password", "dashboard_password"] + [
        f"{env.name}_{kind}_password" for env in environments for kind in ("db", "redis")
    ]:
        if secrets(secret_key) is None:
            problems.add(f"{NAMESPACE}:{secret_key} is missing; set it with "
                         f"`pulumi config set --secret {NAMESPACE}:{secret_key} <value>`")
    return platform


def _parse_releases(raw: Mapping[str, Any], secrets: Callable[[str], Any],
                    problems: _Problems) -> tuple[ReleaseSettings, ...]:
    raw_releases = raw.get("releases") or {}
    if not isinstance(raw_releases, Mapping):
        problems.add(f"{NAMESPACE}:releases must map environment names to "
                     "{image, release}")
        return ()
    releases = []
    for environment, values in raw_releases.items():
        key = f"{NAMESPACE}:releases.{environment}"
        values = _fields(ReleaseSettings, values if isinstance(values, Mapping) else {},
                         f"releases.{environment}", problems)
        values.pop("environment", None)
        values.pop("secret_key", None)
        missing = [name for name in ("image", "release") if name not in values]
        for name in missing:
            problems.add(f"{key}.{name} is missing")
        if missing:
            continue
        release = ReleaseSettings(environment=str(environment),
                                  secret_key=secrets(f"{environment}_secret_key"), **values)
        tag = str(release.release)
        if not (RELEASE_TAG_RE.match(tag) or DIGEST_RE.match(tag)):
            problems.add(
                f"{key}.release={tag!r} is not a valid image tag; a tag is letters, digits, "
                "'_', '.' and '-' (max 128, not starting with '.' or '-'), or use a digest "
                "sha256:<64 hex>"
            )
        if not IMAGE_REPOSITORY_RE.match(str(release.image)):
            problems.add(f"{key}.image={release.image!r} is not an image repository; "
                         "give it without a tag, e.g. ghcr.io/acme/aiia-backend")
        if release.secret_key is None:
            problems.add(f"{NAMESPACE}:{environment}_secret_key is missing; set it with "
                         f"`pulumi config set --secret {NAMESPACE}:{environment}_secret_key "
                         "<value>`")
        _check_run_as(release, key, problems)
        if release.secrets_as not in ("files", "variables"):
            problems.add(f"{key}.secrets_as={release.secrets_as!r} must be files (the app reads "
                         "<NAME>_FILE, app/README.md) or variables (the values themselves)")
        for name, low, high in (("stop_grace_seconds", 1, 300), ("watch_seconds", 0, 600),
                                ("watch_max_error_percent", 0, 100),
                                ("watch_min_requests", 1, 100000), ("keep_images", 1, 50)):
            value = getattr(release, name)
            if not low <= value <= high:
                problems.add(f"{key}.{name}={value} must be between {low} and {high}")
        releases.append(release)
    return tuple(releases)


def _check_tls(tls: TlsSettings, problems: _Problems) -> None:
    key = f"{NAMESPACE}:platform.tls"
    if tls.mode not in TLS_MODES:
        problems.add(f"{key}.mode={tls.mode!r} is not a TLS mode; use one of "
                     f"{', '.join(TLS_MODES)} (acme: another ACME CA, at acme_directory_url)")
        return
    if tls.mode in ACME_DIRECTORIES and not (tls.email and EMAIL_RE.match(str(tls.email))):
        problems.add(f"{key}.email={tls.email!r} must be an e-mail address for Let's Encrypt "
                     f"(tls.mode={tls.mode}): it is told of expiring certificates and policy "
                     "changes; set platform.tls.email")
    elif tls.email is not None and not EMAIL_RE.match(str(tls.email)):
        problems.add(f"{key}.email={tls.email!r} is not an e-mail address")
    if tls.mode == "acme":
        url = str(tls.acme_directory_url or "")
        if not url:
            problems.add(f"{key}.acme_directory_url is missing: tls.mode=acme needs the CA's "
                         "ACME directory, e.g. https://acme.example.com/directory")
        elif not re.match(r"^https://[^\s/]+(/\S*)?$", url):
            problems.add(f"{key}.acme_directory_url={url!r} must be an https:// URL (an ACME "
                         "account key and orders must not travel in the clear)")
    elif tls.acme_directory_url is not None or tls.ca_bundle is not None:
        problems.add(f"{key}.acme_directory_url and ca_bundle are for tls.mode=acme only "
                     f"(tls.mode={tls.mode} names its CA's directory itself); remove them or "
                     "set tls.mode: acme")
    if tls.ca_bundle is not None:
        path = Path(str(tls.ca_bundle)).expanduser()
        try:
            pem = path.read_text(errors="replace")
        except OSError as error:
            problems.add(f"{key}.ca_bundle={tls.ca_bundle!r} cannot be read ({error.strerror}); "
                         "give the path of a PEM file on this machine (it is copied to the host)")
        else:
            if "-----BEGIN CERTIFICATE-----" not in pem:
                problems.add(f"{key}.ca_bundle={tls.ca_bundle!r} holds no PEM certificate")
    if tls.key_type not in KEY_TYPES:
        problems.add(f"{key}.key_type={tls.key_type!r} must be ecdsa (P-256) or rsa (2048)")
    if tls.ocsp_stapling is True and tls.mode != "acme":
        problems.add(f"{key}.ocsp_stapling=true with tls.mode={tls.mode}: "
                     + ("Let's Encrypt ended OCSP in 2025, there is nothing to staple"
                        if tls.mode in ACME_DIRECTORIES else "a self-signed certificate has "
                        "no OCSP responder") + "; remove it")


def _check_run_as(release: ReleaseSettings, key: str, problems: _Problems) -> None:
    match = RUN_AS_RE.match(str(release.run_as))
    if not match:
        problems.add(f"{key}.run_as={release.run_as!r} must be a numeric uid:gid, e.g. "
                     "10001:10001 (numbers: the host's chown and the image's /etc/passwd "
                     "need not agree on names)")
    elif "0" in (match["uid"], match["gid"]) and release.allow_root is not True:
        problems.add(f"{key}.run_as={release.run_as!r} runs the app as root (uid or gid 0): "
                     "a remote-code bug in the app would then be root in its container; give "
                     "the image's non-root uid:gid, or set "
                     f"{key}.allow_root=true to accept that")


def _parse_registry(raw: Mapping[str, Any], secrets: Callable[[str], Any],
                    problems: _Problems) -> RegistrySettings | None:
    if raw.get("registry") is None:
        return None
    values = _fields(RegistrySettings, _object(raw, "registry", problems), "registry", problems)
    missing = [name for name in ("address", "username") if not values.get(name)]
    if missing:
        problems.add(f"{NAMESPACE}:registry needs {' and '.join(missing)} (e.g. address: "
                     "ghcr.io, username: the account the token belongs to)")
        return None
    if "password" in values:
        problems.add(f"{NAMESPACE}:registry.password must not be in the stack file; set it "
                     "as a secret: pulumi config set --secret aiia:registry_password")
        return None
    password = secrets("registry_password")
    if password is None:
        problems.add(f"{NAMESPACE}:registry is set but the secret aiia:registry_password is "
                     "not; set it: pulumi config set --secret aiia:registry_password <token>")
    return RegistrySettings(address=values["address"], username=values["username"],
                            password=password)


def parse_settings(stack: str, raw: Mapping[str, Any], secrets: Callable[[str], Any]) -> Settings:
    """Build and validate the settings of `stack` from plain config values and secrets.

    `raw` holds the non-secret keys of the `aiia` namespace (objects already decoded);
    `secrets(key)` returns a secret key's value (a Pulumi Output in a real run) or None.
    Raises ConfigError listing every problem found.
    """
    problems = _Problems()
    prefix = str(raw.get("prefix", "aiia"))
    if not PREFIX_RE.match(prefix):
        problems.add(f"{NAMESPACE}:prefix={prefix!r} must be lower-case letters, digits and "
                     "hyphens, starting with a letter, at most 20 characters")
    owner = _object(raw, "platform", problems).get("owner", True)
    host = _parse_host(raw, problems, owns_platform=str(owner).lower() == "true")
    platform = None
    platform_stack = None
    if str(owner).lower() == "true":
        platform = _parse_platform(raw, secrets, problems, host)
    else:
        platform_stack = raw.get("platform_stack")
        if not platform_stack or not STACK_NAME_RE.match(str(platform_stack)):
            problems.add(
                f"{NAMESPACE}:platform_stack={platform_stack!r} must name the stack that owns "
                "the platform (platform.owner is false), e.g. acme/aiia/prod"
            )
    releases = _parse_releases(raw, secrets, problems)
    names = [release.environment for release in releases]
    if platform:
        known = {env.name for env in platform.environments}
        for name in names:
            if name not in known:
                problems.add(f"{NAMESPACE}:releases.{name} names an environment the platform "
                             f"does not serve; add it to platform.environments "
                             f"(known: {', '.join(sorted(known)) or 'none'})")
    settings = Settings(stack=stack, prefix=prefix, host=host, platform=platform,
                        platform_stack=platform_stack, releases=releases,
                        registry=_parse_registry(raw, secrets, problems))
    if platform:
        shutdown = platform.nginx.worker_shutdown_timeout_seconds
        for release in releases:
            if release.watch_seconds + RELEASE_DRAIN_SECONDS >= shutdown:
                problems.add(
                    f"{NAMESPACE}:releases.{release.environment}.watch_seconds="
                    f"{release.watch_seconds} plus the {RELEASE_DRAIN_SECONDS} s drain must "
                    f"end before nginx's worker_shutdown_timeout_seconds={shutdown}, or "
                    "WebSockets open across a release are cut by nginx instead of closed by "
                    "the previous release; shorten the watch or raise "
                    "platform.nginx.worker_shutdown_timeout_seconds")
    if platform and not problems.items:
        budget = memory_budget(settings)
        problems.items.extend(budget.problems())
    if problems.items:
        raise ConfigError(problems.items)
    return settings


TEXT_KEYS = ("prefix", "platform_stack")
OBJECT_KEYS = ("host", "platform", "releases", "registry")


def load_settings(stack: str, config: Any) -> Settings:
    """Read the `aiia` namespace from a `pulumi.Config` and validate it.

    Secrets are read with `get_secret`, so they stay Pulumi secrets all the way.
    """
    raw = {key: config.get(key) for key in TEXT_KEYS}
    raw |= {key: config.get_object(key) for key in OBJECT_KEYS}
    raw = {key: value for key, value in raw.items() if value is not None}
    return parse_settings(stack, raw, config.get_secret)
