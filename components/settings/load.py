"""Typed, validated settings for one stack: the sections together, and the rules that span
them.

Every component reads from a `Settings` object and none writes to it. `parse_settings`
is pure (plain dicts in, dataclasses out) so every rule is tested without Pulumi;
`load_settings` adapts `pulumi.Config` to it. All problems are collected and reported
together, each naming the key, the value and the fix, before any resource is declared.
Each section's own checks live in its module (host, platform, tls, backup, releases,
provision); only what compares two sections is here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from components.settings.backup import BACKUP_DISK_SHARE, BackupSettings
from components.settings.budget import MemoryBudget, memory_budget
from components.settings.checks import NAMESPACE, ConfigError, Problems, config_object
from components.settings.host import HostSettings, parse_host
from components.settings.platform import PlatformSettings, parse_platform
from components.settings.releases import (
    RELEASE_DRAIN_SECONDS,
    RegistrySettings,
    ReleaseSettings,
    parse_registry,
    parse_releases,
)

PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
STACK_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}$")


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
        return memory_budget(self.host, self.platform) if self.platform else None


def parse_settings(stack: str, raw: Mapping[str, Any], secrets: Callable[[str], Any]) -> Settings:
    """Build and validate the settings of `stack` from plain config values and secrets.

    `raw` holds the non-secret keys of the `aiia` namespace (objects already decoded);
    `secrets(key)` returns a secret key's value (a Pulumi Output in a real run) or None.
    Raises ConfigError listing every problem found.
    """
    problems = Problems()
    prefix = _parse_prefix(raw, problems)
    owner = config_object(raw, "platform", problems).get("owner", True)
    owns_platform = str(owner).lower() == "true"
    host = parse_host(raw, problems, owns_platform=owns_platform)
    platform = None
    platform_stack = None
    if owns_platform:
        platform = parse_platform(raw, secrets, problems)
    else:
        platform_stack = _parse_platform_stack(raw, problems)
    releases = parse_releases(raw, secrets, problems)
    if platform:
        _check_environments_served(releases, platform, problems)
    settings = Settings(stack=stack, prefix=prefix, host=host, platform=platform,
                        platform_stack=platform_stack, releases=releases,
                        registry=parse_registry(raw, secrets, problems))
    if platform:
        _check_release_drain(releases, platform, problems)
        _check_backup_on_host(platform.backup, host, problems)
        _check_memory_budget(host, platform, problems)
    if problems.items:
        raise ConfigError(problems.items)
    return settings


def _parse_prefix(raw: Mapping[str, Any], problems: Problems) -> str:
    prefix = str(raw.get("prefix", "aiia"))
    if not PREFIX_RE.match(prefix):
        problems.add(f"{NAMESPACE}:prefix={prefix!r} must be lower-case letters, digits and "
                     "hyphens, starting with a letter, at most 20 characters")
    return prefix


def _parse_platform_stack(raw: Mapping[str, Any], problems: Problems) -> Any:
    """The stack that owns the platform, for a stack that reads it from there."""
    platform_stack = raw.get("platform_stack")
    if not platform_stack or not STACK_NAME_RE.match(str(platform_stack)):
        problems.add(
            f"{NAMESPACE}:platform_stack={platform_stack!r} must name the stack that owns "
            "the platform (platform.owner is false), e.g. acme/aiia/prod"
        )
    return platform_stack


def _check_environments_served(releases: tuple[ReleaseSettings, ...],
                               platform: PlatformSettings, problems: Problems) -> None:
    """Every release is of an environment the platform serves."""
    known = {env.name for env in platform.environments}
    for release in releases:
        if release.environment not in known:
            problems.add(f"{NAMESPACE}:releases.{release.environment} names an environment the "
                         f"platform does not serve; add it to platform.environments "
                         f"(known: {', '.join(sorted(known)) or 'none'})")


def _check_release_drain(releases: tuple[ReleaseSettings, ...], platform: PlatformSettings,
                         problems: Problems) -> None:
    """A release's watch and drain end before nginx cuts the old workers' connections."""
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


def _check_memory_budget(host: HostSettings, platform: PlatformSettings,
                         problems: Problems) -> None:
    """The memory budget, once every other value is known to be good."""
    if not problems.items:
        problems.items.extend(memory_budget(host, platform).problems())


def _check_backup_on_host(backup: BackupSettings, host: HostSettings, problems: Problems) -> None:
    """What the backups need of the host: an operator's key on a VPS, a share of its disk."""
    key = f"{NAMESPACE}:platform.backup"
    if not backup.recipients and host.kind == "ssh":
        problems.add(f"{key}.recipients is empty: the backups of a VPS would be encrypted to "
                     "its own drill key alone and lost with the VPS (the off-host copy too); "
                     "add your GPG public key, armored or a file path "
                     "(gpg --armor --export <fingerprint>)")
    limit = int(host.disk_gb * 1024 * BACKUP_DISK_SHARE)
    if backup.disk_budget_mb > limit:
        problems.add(f"{key}.disk_budget_mb={backup.disk_budget_mb} is more than "
                     f"{int(BACKUP_DISK_SHARE * 100)} % of {NAMESPACE}:host.disk_gb="
                     f"{host.disk_gb} ({limit} MB): the system, the images, PostgreSQL's data "
                     "and the logs need the rest; lower it (and keep_daily/keep_monthly) or "
                     "raise host.disk_gb")


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
