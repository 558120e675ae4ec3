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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from components.settings.alerts import alert_secret_keys
from components.settings.backup import BACKUP_DISK_SHARE, TIME_RE, BackupSettings
from components.settings.budget import MemoryBudget, memory_budget
from components.settings.checks import (
    NAMESPACE,
    ConfigError,
    Problems,
    config_object,
    unknown_key_problem,
)
from components.settings.dashboard import dashboard_secret_keys
from components.settings.host import HostSettings, parse_host
from components.settings.pitr import check_pitr_disk
from components.settings.platform import (
    PlatformSettings,
    check_secret_values,
    parse_platform,
)
from components.settings.processes import processes_over_reservation
from components.settings.releases import (
    RELEASE_DRAIN_SECONDS,
    RegistrySettings,
    ReleaseSettings,
    extra_secret_keys,
    parse_registry,
    parse_releases,
    release_secrets,
)

PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
STACK_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}$")
# The platform's own secrets: set on the stack that owns it alone.
PLATFORM_SECRET_RE = re.compile(
    r"^(postgres_password|dashboard_password(_[a-z][a-z0-9]*)?|[a-z0-9]+_(db|redis)_password"
    r"|alerts_[a-z0-9]+_(url|token|password))$")
# Secrets a stack may have whatever its sections say: the key pulumi-command logs in with
# (else the ssh-agent's) and the private registry's token (checked with aiia:registry).
OPTIONAL_SECRETS = ("ssh_private_key", "registry_password")


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


def parse_settings(stack: str, raw: Mapping[str, Any], secrets: Callable[[str], Any], *,
                   given_keys: Collection[str] | None = None,
                   secret_keys: Collection[str] = (),
                   secret_text: Callable[[str], str | None] | None = None) -> Settings:
    """Build and validate the settings of `stack` from plain config values and secrets.

    `raw` holds the non-secret keys of the `aiia` namespace (objects already decoded);
    `secrets(key)` returns a secret key's value (a Pulumi Output in a real run) or None.
    `given_keys`, when known, are every key of the namespace the stack sets, and
    `secret_keys` those of them set as secrets: a key that is no setting (a typo such as
    `releses` would make the stack declare no release at all) and a secret in plain text
    are refused. `secret_text(key)`, when given, is a secret's plain value, read by the
    checks of its shape alone (a length, its characters) and kept nowhere (the program's
    run gives it; scripts that only know which secrets are set do not). Raises ConfigError
    listing every problem found.
    """
    problems = Problems(stack)
    prefix = _parse_prefix(raw, problems)
    owns_platform = _parse_owner(raw, problems)
    host = parse_host(raw, problems, owns_platform=owns_platform)
    platform = None
    platform_stack = None
    if owns_platform:
        platform = parse_platform(raw, secrets, problems)
        if secret_text is not None:
            check_secret_values(platform.environments, secret_text, problems,
                                platform.dashboard)
    else:
        platform_stack = _parse_platform_stack(raw, problems)
    releases = parse_releases(raw, secrets, problems)
    if platform:
        _check_environments_served(releases, platform, problems)
    settings = Settings(stack=stack, prefix=prefix, host=host, platform=platform,
                        platform_stack=platform_stack, releases=releases,
                        registry=parse_registry(raw, secrets, problems))
    if given_keys is not None:
        _check_keys(set(given_keys), set(secret_keys), platform, releases, problems)
    if platform:
        _check_release_drain(releases, platform, problems)
        _check_dashboard_uid_apart(releases, platform, problems)
        _check_processes_reserved(releases, platform, problems)
        _check_backup_on_host(platform.backup, host, problems)
        _check_reboot_apart_from_backups(platform.backup, host, problems)
        _check_integrity_apart_from_backups(platform.backup, host, problems)
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


def _parse_owner(raw: Mapping[str, Any], problems: Problems) -> bool:
    """platform.owner: true (this stack owns the platform, the default) or false."""
    owner = config_object(raw, "platform", problems).get("owner", True)
    if str(owner).lower() not in ("true", "false"):
        problems.add(f"{NAMESPACE}:platform.owner={owner!r} must be true (this stack owns the "
                     "platform) or false (it reads it from platform_stack)")
    return str(owner).lower() != "false"


def _check_keys(given: set[str], secret: set[str], platform: PlatformSettings | None,
                releases: tuple[ReleaseSettings, ...], problems: Problems) -> None:
    """Every key the stack sets is a setting, and every secret is set as one."""
    expected_secrets = {key for release in releases for key in release_secrets(release)}
    expected_secrets |= {key for release in releases for key in extra_secret_keys(release)}
    expected_secrets |= set(OPTIONAL_SECRETS)
    if platform:
        expected_secrets |= {"postgres_password", *dashboard_secret_keys(platform.dashboard)}
        if platform.dashboard.operators and "dashboard_password" in given:
            problems.add(f"{NAMESPACE}:dashboard_password is the shared account's, which "
                         "platform.dashboard.operators replace (it no longer signs in): remove "
                         f"it with `pulumi config rm -s {problems.stack} "
                         f"{NAMESPACE}:dashboard_password`")
            given = given - {"dashboard_password"}
        expected_secrets |= {f"{env.name}_{kind}_password" for env in platform.environments
                             for kind in ("db", "redis")}
        if platform.alerts is not None:
            expected_secrets |= set(sum(alert_secret_keys(platform.alerts.block), []))
    settings = set(TEXT_KEYS) | set(OBJECT_KEYS)
    for key in sorted(given - settings - expected_secrets):
        if not platform and PLATFORM_SECRET_RE.match(key):
            problems.add(f"{NAMESPACE}:{key} belongs to the stack that owns the platform "
                         "(platform_stack), or to the stack of the environment it names; "
                         "remove it here")
        elif platform and key.startswith("dashboard_password_"):
            problems.add(f"{NAMESPACE}:{key} is the password of no operator in "
                         f"{NAMESPACE}:platform.dashboard.operators (one removed?): remove it "
                         f"with `pulumi config rm -s {problems.stack} {NAMESPACE}:{key}`")
        else:
            problems.add(unknown_key_problem(f"{NAMESPACE}:{key}", key,
                                             settings | expected_secrets))
    for key in sorted((given & expected_secrets) - secret):
        problems.add(f"{NAMESPACE}:{key} is in the stack file in plain text, so whoever reads "
                     "the repository has it: set it as a secret (`pulumi config set -s "
                     f"{problems.stack} --secret {NAMESPACE}:{key} <new value>`) and treat the "
                     "old value as leaked")


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


def _check_dashboard_uid_apart(releases: tuple[ReleaseSettings, ...],
                               platform: PlatformSettings, problems: Problems) -> None:
    """The dashboard's account owns nothing of an app's: the internet-facing server would
    read that environment's secret files. (An environment released from another stack is
    checked on the host: templates/dashboard/prepare-host.sh.j2.)"""
    for key, account in (("uid", "the dashboard's account"),
                         ("collector_uid", "the dashboard collector's account")):
        uid = getattr(platform.dashboard, key)
        for release in releases:
            ids = str(release.run_as).split(":")
            if str(uid) in ids:
                problems.add(f"{NAMESPACE}:releases.{release.environment}.run_as="
                             f"{release.run_as!r} shares {uid} with {account} "
                             f"({NAMESPACE}:platform.dashboard.{key}): the dashboard could "
                             "read the app's secret files; give one of them another uid")


def _check_processes_reserved(releases: tuple[ReleaseSettings, ...],
                              platform: PlatformSettings, problems: Problems) -> None:
    """A release's processes fit what the platform reserved for them (its budget counts
    the reservation). An environment released from another stack is checked by its
    release against the platform's outputs (components/release/processes.py)."""
    reserved = {env.name: env.processes_memory_mb for env in platform.environments}
    for release in releases:
        problem = processes_over_reservation(release, reserved.get(release.environment))
        if problem:
            problems.add(problem)


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
    check_pitr_disk(backup.pitr, host.disk_gb, problems)


TEXT_KEYS = ("prefix", "platform_stack")


OBJECT_KEYS = ("host", "platform", "releases", "registry")


# A backup or a restore drill takes minutes on this host; a reboot in its first hour would
# cut it off.
BACKUP_HOUR_S = 3600


def _check_reboot_apart_from_backups(backup: BackupSettings, host: HostSettings,
                                     problems: Problems) -> None:
    """host.provision.automatic_reboot not within the hour after a backup or the drill."""
    reboot = host.provision.automatic_reboot if host.provision else "off"
    for name, job in _backup_jobs_an_hour_before(reboot, backup):
        problems.add(f"{NAMESPACE}:host.provision.automatic_reboot={reboot!r} is within the "
                     f"hour after platform.backup.{name} {job}: a reboot would cut the job "
                     "off; move one of them at least an hour apart")


def _check_integrity_apart_from_backups(backup: BackupSettings, host: HostSettings,
                                        problems: Problems) -> None:
    """host.provision.integrity_check_time not within the hour after a backup or the drill:
    the budget counts one transient job's memory at a time."""
    check = host.provision.integrity_check_time if host.provision else None
    for name, job in _backup_jobs_an_hour_before(check, backup):
        problems.add(f"{NAMESPACE}:host.provision.integrity_check_time={check!r} is within "
                     f"the hour after platform.backup.{name} {job}: both would hold their "
                     "memory at once, which the budget counts one at a time; move one of "
                     "them at least an hour apart")


def _backup_jobs_an_hour_before(time_of_day: Any, backup: BackupSettings) -> list[tuple]:
    """(setting, time) of the backup and the drill when `time_of_day` is in their first hour."""
    if not _is_time(time_of_day):
        return []
    return [(name, getattr(backup, name)) for name in ("time", "drill_time")
            if _is_time(getattr(backup, name)) and 0 <= (
                _seconds(time_of_day) - _seconds(getattr(backup, name))) % 86400 < BACKUP_HOUR_S]


def _is_time(value: Any) -> bool:
    return isinstance(value, str) and bool(TIME_RE.match(value))


def _seconds(time_of_day: str) -> int:
    hour, minute = time_of_day.split(":")
    return int(hour) * 3600 + int(minute) * 60


def load_settings(stack: str, config: Any) -> Settings:
    """Read the `aiia` namespace from a `pulumi.Config` and validate it.

    Secrets are read with `get_secret`, so they stay Pulumi secrets all the way.
    """
    raw = {key: config.get(key) for key in TEXT_KEYS}
    raw |= {key: config.get_object(key) for key in OBJECT_KEYS}
    raw = {key: value for key, value in raw.items() if value is not None}
    given, secret = _stack_keys()
    try:
        return parse_settings(stack, raw, config.get_secret, given_keys=given,
                              secret_keys=secret, secret_text=_secret_text)
    except ConfigError as error:
        # RunError: Pulumi reports the message as the program's error, without the
        # traceback it prints for any other exception (pulumi/errors.py).
        from pulumi import RunError

        raise RunError(str(error)) from None


def _secret_text(key: str) -> str | None:
    """A secret's plain value, as the engine handed it to the program (what `get_secret`
    wraps), for the checks of its shape; pulumi imported here for scripts/' sake."""
    from pulumi.runtime import config as runtime_config

    return runtime_config.get_config(f"{NAMESPACE}:{key}")


def _stack_keys() -> tuple[set[str], set[str]]:
    """Every key of the namespace the stack sets, and those set as secrets.

    The Python SDK keeps the run's config in `pulumi.runtime.config` (set with
    set_all_config from what the engine sends, or read from PULUMI_CONFIG and
    PULUMI_CONFIG_SECRET_KEYS); `pulumi.Config` has no way to list it. Pulumi is imported
    here, not at the top: scripts/ import this package with the standard library alone."""
    from pulumi.runtime import config as runtime_config

    every = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret = set(runtime_config.get_config_secret_keys_env())
    secret |= {key for key in every if runtime_config.is_config_secret(key)}
    prefix = f"{NAMESPACE}:"
    return ({key.removeprefix(prefix) for key in every if key.startswith(prefix)},
            {key.removeprefix(prefix) for key in secret if key.startswith(prefix)})
