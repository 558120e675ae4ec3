"""`aiia:platform`: the shared services of the host and the environments they serve; only
the stack that owns the platform has it.

Standard library only: the delivery scripts (scripts/stack_file.py) check names with
ENVIRONMENT_NAME_RE too."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.settings.accounts import check_dashboard_uids
from components.settings.alerts import AlertSettings, parse_alerts
from components.settings.backup import BackupSettings, parse_backup
from components.settings.checks import (
    NAMESPACE,
    Problems,
    check_domain,
    check_image,
    check_positive,
    config_object,
    typed_fields,
)
from components.settings.dashboard import (
    DashboardSettings,
    check_allow_from_apart,
    check_dashboard_password,
    dashboard_secret_keys,
    parse_dashboard,
)
from components.settings.networks import check_separate_networks, subnet_host, upper_half
from components.settings.nginx import NginxSettings, check_keepalive, check_nginx_limits
from components.settings.postgres import check_data_major
from components.settings.tls import TlsSettings, check_tls

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
RESERVED_PORTS = {80: "nginx http", 443: "nginx https", 5432: "postgres", 6379: "redis",
                  6432: "pgbouncer", 8080: "nginx health listener"}
ENVIRONMENT_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")


@dataclass(frozen=True)
class EnvironmentSettings:
    """One environment served by the platform (its domain, port and app memory)."""

    name: str
    domain: str
    port: int
    app_memory_mb: int = 80
    # What the environment's processes (releases.<env>.processes: workers, beat) may use
    # together: the platform's budget counts it, and a release whose processes' limits add
    # up to more is refused. 0: the environment runs no process beside its web container.
    processes_memory_mb: int = 0
    # Lua in Redis (EVAL, FUNCTION, SCRIPT) for this environment's user. Off: scripting is
    # the path of CVE-2025-49844 and its kind, and the reference app (Django's Redis cache)
    # sends no script. Turn it on for an app whose libraries do (e.g. channels_redis).
    redis_scripting: bool = False
    # The subnet of the environment's own network (its releases, nginx, PgBouncer, Redis);
    # unset: Docker picks a free one.
    network_subnet: str | None = None


@dataclass(frozen=True)
class ImageSettings:
    postgres: str = "postgres:17.12-trixie"
    pgbouncer: str = "edoburu/pgbouncer:v1.23.1-p3"
    # The cache's role keeps the key `redis` (the protocol and the app's REDIS_URL); the
    # product is Valkey 8.1 (BSD-3-Clause, Debian 13 ships 8.1; docs/architecture.md, "The
    # cache"). A stack that names redis:7.2.x keeps running Redis (components/platform/redis.py).
    redis: str = "valkey/valkey:8.1.11-trixie"
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
    # The PostgreSQL major of the cluster in the data volume (components/settings/postgres.py):
    # a new stack's is its image's; unset means 15, the one major of stacks made before it.
    data_major: int | None = None


@dataclass(frozen=True)
class PgBouncerSettings:
    memory_mb: int = 16
    default_pool_size: int = 10
    max_client_conn: int = 200


@dataclass(frozen=True)
class RedisSettings:
    # 48 MB of a 512 MB host (64 before Debian 13's host services took 16 more): 32 MB of
    # keys for both environments, and headroom for Redis itself (~4 MB) and the allocator's
    # fragmentation (up to ~1.3× the keys' size).
    memory_mb: int = 48
    maxmemory_mb: int = 32
    eviction_policy: str = "allkeys-lru"


@dataclass(frozen=True)
class CertbotSettings:
    memory_mb: int = 64  # a transient renewal container: counted in the peak, not steady


@dataclass(frozen=True)
class PlatformSettings:
    """The shared services of the host; present only in the stack that owns them."""

    environments: tuple[EnvironmentSettings, ...]
    status_domain: str
    tls: TlsSettings
    # The data network: PostgreSQL, PgBouncer and the backup jobs (pg_hba.conf admits it).
    network_subnet: str = "172.30.0.0/24"
    # The status network: nginx (at its second address), the dashboard (a VPS's server
    # listens on its gateway, the host's address there; a local server container at its
    # third address) and certbot's runs. Its upper half is for the containers Docker
    # addresses itself, so the fixed addresses are never taken.
    status_subnet: str = "172.30.1.0/27"
    images: ImageSettings = field(default_factory=ImageSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    pgbouncer: PgBouncerSettings = field(default_factory=PgBouncerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    nginx: NginxSettings = field(default_factory=NginxSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    certbot: CertbotSettings = field(default_factory=CertbotSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    alerts: AlertSettings | None = None  # where the dashboard's alerts are sent
    # Secrets (pulumi Outputs in a real run; any opaque value in pure tests).
    postgres_password: Any = None
    database_passwords: Mapping[str, Any] = field(default_factory=dict)
    redis_passwords: Mapping[str, Any] = field(default_factory=dict)
    dashboard_password: Any = None  # the shared account's (no platform.dashboard.operators)
    dashboard_passwords: Mapping[str, Any] = field(default_factory=dict)  # by operator

    def environment(self, name: str) -> EnvironmentSettings:
        return next(env for env in self.environments if env.name == name)

    @property
    def status_gateway(self) -> str:
        """The host's address on the status network: where a VPS's dashboard listens."""
        return subnet_host(self.status_subnet, 0)

    @property
    def nginx_status_address(self) -> str:
        """nginx's fixed address on the status network: the dashboard's only client."""
        return subnet_host(self.status_subnet, 1)

    @property
    def dashboard_status_address(self) -> str:
        """A local stack's dashboard server container, at a fixed address nginx names."""
        return subnet_host(self.status_subnet, 2)

    @property
    def status_ip_range(self) -> str:
        """Where Docker addresses the status network's other containers."""
        return upper_half(self.status_subnet)


def _parse_environments(
    platform_raw: Mapping[str, Any], problems: Problems
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
        values = typed_fields(EnvironmentSettings, values if isinstance(values, Mapping) else {},
                              f"platform.environments.{name}", problems)
        for required in ("domain", "port"):
            if required not in values:
                problems.add(f"{key}.{required} is missing")
        if "domain" not in values or "port" not in values:
            continue
        environment = EnvironmentSettings(name=str(name), **values)
        check_domain(environment.domain, f"{key}.domain", problems)
        if not 1024 <= environment.port <= 65535:
            problems.add(f"{key}.port={environment.port} must be between 1024 and 65535")
        check_positive(environment.app_memory_mb, f"{key}.app_memory_mb", problems)
        if environment.processes_memory_mb < 0:
            problems.add(f"{key}.processes_memory_mb={environment.processes_memory_mb} must be "
                         "0 or more")
        environments.append(environment)
    return tuple(environments)


def _check_ports(platform: PlatformSettings, problems: Problems) -> None:
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


def parse_platform(raw: Mapping[str, Any], secrets: Callable[[str], Any],
                   problems: Problems) -> PlatformSettings:
    platform_raw = config_object(raw, "platform", problems)
    environments = _parse_environments(platform_raw, problems)
    tls = _parse_section(platform_raw, TlsSettings, "tls", problems)
    dashboard = parse_dashboard(platform_raw, problems)
    platform = PlatformSettings(
        environments=environments,
        status_domain=platform_raw.get("status_domain", ""),
        network_subnet=str(platform_raw.get("network_subnet", "172.30.0.0/24")),
        status_subnet=str(platform_raw.get("status_subnet", "172.30.1.0/27")),
        tls=tls,
        images=_parse_section(platform_raw, ImageSettings, "images", problems),
        postgres=_parse_section(platform_raw, PostgresSettings, "postgres", problems),
        pgbouncer=_parse_section(platform_raw, PgBouncerSettings, "pgbouncer", problems),
        redis=_parse_section(platform_raw, RedisSettings, "redis", problems),
        nginx=_parse_section(platform_raw, NginxSettings, "nginx", problems),
        dashboard=dashboard,
        certbot=_parse_section(platform_raw, CertbotSettings, "certbot", problems),
        backup=parse_backup(platform_raw, problems),
        alerts=parse_alerts(platform_raw, secrets, problems),
        postgres_password=secrets("postgres_password"),
        database_passwords={env.name: secrets(f"{env.name}_db_password")
                            for env in environments},
        redis_passwords={env.name: secrets(f"{env.name}_redis_password")
                         for env in environments},
        dashboard_password=None if dashboard.operators else secrets("dashboard_password"),
        dashboard_passwords={name: secrets(f"dashboard_password_{name}")
                             for name in dashboard.operators},
    )
    check_domain(platform.status_domain, f"{NAMESPACE}:platform.status_domain", problems)
    _check_network(platform.network_subnet, problems)
    check_separate_networks(platform.network_subnet, platform.status_subnet,
                            platform.environments, problems)
    check_allow_from_apart(dashboard.allow_from, {
        "platform.network_subnet": platform.network_subnet,
        "platform.status_subnet": platform.status_subnet,
        **{f"platform.environments.{env.name}.network_subnet": env.network_subnet
           for env in environments if env.network_subnet}}, problems)
    check_tls(tls, problems)
    for name, reference in vars(platform.images).items():
        check_image(reference, f"{NAMESPACE}:platform.images.{name}", problems)
    check_data_major(platform.images.postgres, platform.postgres.data_major, problems)
    _check_redis(platform.redis, problems)
    check_keepalive(platform.nginx, problems)
    check_nginx_limits(platform.nginx, problems)
    _check_postgres(platform, problems)
    _check_ports(platform, problems)
    check_dashboard_uids({"uid": platform.dashboard.uid,
                          "collector_uid": platform.dashboard.collector_uid}, problems)
    _check_domains_unique(platform, problems)
    _check_secrets(environments, dashboard, secrets, problems)
    return platform


def _check_domains_unique(platform: PlatformSettings, problems: Problems) -> None:
    """One domain, one site: nginx would serve a second `server_name` of the same name with
    whichever block it read first, and one environment's traffic would go to the other."""
    owners: dict[str, str] = {}
    claims = [(env.domain, f"{NAMESPACE}:platform.environments.{env.name}.domain")
              for env in platform.environments]
    claims.append((platform.status_domain, f"{NAMESPACE}:platform.status_domain"))
    for domain, key in claims:
        if domain in owners:
            problems.add(f"{key}={domain!r} is already {owners[domain]}'s; give every "
                         "environment and the dashboard a domain of its own")
        else:
            owners[domain] = key


def _parse_section(platform_raw: Mapping[str, Any], cls: type, name: str,
                   problems: Problems) -> Any:
    """`platform.<name>` as a `cls`, its unknown or mistyped settings reported."""
    values = platform_raw.get(name) or {}
    if not isinstance(values, Mapping):
        problems.add(f"{NAMESPACE}:platform.{name} must be an object")
        values = {}
    return cls(**typed_fields(cls, values, f"platform.{name}", problems))


def _check_network(subnet: str, problems: Problems) -> None:
    try:
        network = ipaddress.ip_network(subnet)
        if not network.is_private or network.num_addresses < 16:
            raise ValueError
    except ValueError:
        problems.add(f"{NAMESPACE}:platform.network_subnet={subnet!r} must "
                     "be a private IPv4 network of at least 16 addresses, e.g. 172.30.0.0/24")


def _check_redis(redis: RedisSettings, problems: Problems) -> None:
    if redis.eviction_policy not in EVICTION_POLICIES:
        problems.add(f"{NAMESPACE}:platform.redis.eviction_policy="
                     f"{redis.eviction_policy!r} is not a Redis policy; "
                     f"use one of {', '.join(EVICTION_POLICIES)}")
    if redis.maxmemory_mb >= redis.memory_mb:
        problems.add(f"{NAMESPACE}:platform.redis.maxmemory_mb={redis.maxmemory_mb} "
                     f"must be below its container limit memory_mb={redis.memory_mb} "
                     "(Redis needs headroom beyond its data); lower maxmemory_mb or raise "
                     "memory_mb")


def _check_postgres(platform: PlatformSettings, problems: Problems) -> None:
    """PostgreSQL's memory and connections, and PgBouncer's pools that use them."""
    postgres = platform.postgres
    if postgres.shared_buffers_mb * 2 > postgres.memory_mb:
        problems.add(f"{NAMESPACE}:platform.postgres.shared_buffers_mb="
                     f"{postgres.shared_buffers_mb} is more than half of its container limit "
                     f"memory_mb={postgres.memory_mb}; the backends would be OOM-killed. "
                     "Lower shared_buffers_mb or raise memory_mb")
    if not 10 <= postgres.max_connections <= 500:
        problems.add(f"{NAMESPACE}:platform.postgres.max_connections="
                     f"{postgres.max_connections} must be between 10 and 500")
    environments = platform.environments
    pool_total = platform.pgbouncer.default_pool_size * max(len(environments), 1)
    if pool_total + 5 > postgres.max_connections:
        problems.add(f"{NAMESPACE}:platform.pgbouncer.default_pool_size="
                     f"{platform.pgbouncer.default_pool_size} × {len(environments)} environments "
                     f"+ 5 admin connections exceeds postgres.max_connections="
                     f"{postgres.max_connections}; lower the pool or raise max_connections")


def _check_secrets(environments: tuple[EnvironmentSettings, ...], dashboard: DashboardSettings,
                   secrets: Callable[[str], Any], problems: Problems) -> None:
    """Every secret the platform needs is set."""
    for secret_key in ["postgres_password", *dashboard_secret_keys(dashboard)] + [
        f"{env.name}_{kind}_password" for env in environments for kind in ("db", "redis")
    ]:
        if secrets(secret_key) is None:
            problems.missing_secret(secret_key)


def check_secret_values(environments: tuple[EnvironmentSettings, ...],
                        secret_text: Callable[[str], str | None], problems: Problems,
                        dashboard: DashboardSettings | None = None) -> None:
    """What a secret's value must be, read at preview and never kept: the dashboard's
    passwords long enough (each operator's, or the shared one); each database password
    printable ASCII, the passwords a SCRAM verifier is computed for in the program
    (PostgreSQL would SASLprep any other first), so that PgBouncer's userlist holds that
    verifier and never the password (review L8)."""
    for key in dashboard_secret_keys(dashboard or DashboardSettings()):
        check_dashboard_password(key, secret_text, problems)
    for env in environments:
        key = f"{env.name}_db_password"
        password = secret_text(key)
        if password is not None and not (password and password.isascii()
                                          and password.isprintable()):
            problems.add(f"{NAMESPACE}:{key} must be printable ASCII (PgBouncer's userlist "
                         "holds its SCRAM verifier, which the program computes for such "
                         f"passwords alone); set a new one with `openssl rand -hex 32 | "
                         f"pulumi config set -s {problems.stack} --secret {NAMESPACE}:{key}` "
                         "(and the same value in the environment's own stack)")

