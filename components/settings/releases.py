"""`aiia:releases` and `aiia:registry`: each environment's app release (a release is one
config value, the image tag) and where a private image is pulled from.

Standard library only: the delivery scripts (scripts/stack_file.py) check a release with
`is_release` too, before it is committed."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.settings.checks import (
    IMAGE_REPOSITORY_RE,
    NAMESPACE,
    Problems,
    config_object,
    typed_fields,
)
from components.settings.contract import AppContract, ContractKeys, parse_contract
from components.settings.maintenance import check_maintenance
from components.settings.processes import ProcessSettings, parse_processes

# After a release's watch, how long to wait for nginx's old workers to finish their HTTP
# requests before Pulumi may stop the previous release.
RELEASE_DRAIN_SECONDS = 5
# Docker's reference grammar: a tag is [\w][\w.-]{0,127}; a digest is algorithm:hex.
RELEASE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
RUN_AS_RE = re.compile(r"^(?P<uid>0|[1-9][0-9]{0,9}):(?P<gid>0|[1-9][0-9]{0,9})$")


def is_release(value: str) -> bool:
    """Whether `value` can be a release: an image tag, or a digest sha256:<64 hex>."""
    return bool(RELEASE_TAG_RE.match(value) or DIGEST_RE.match(value))


@dataclass(frozen=True)
class ReleaseSettings:
    """One environment's app release: a release is this one config value (`release`)."""

    environment: str
    image: str  # repository, e.g. ghcr.io/acme/aiia-backend
    release: str  # the image tag, or a digest sha256:…
    secret_key: Any = None
    # The environment's database and Redis passwords, from this stack's own config
    # (aiia:<env>_db_password, aiia:<env>_redis_password): a stack that reads the platform
    # from another gets nothing secret from it. The platform's stack holds the same values,
    # to make the role and the ACL user (docs/runbooks.md, "Rotating a secret").
    database_password: Any = None
    redis_password: Any = None
    stop_grace_seconds: int = 30  # the old container's SIGTERM→SIGKILL (uvicorn drains 20 s)
    watch_seconds: int = 30  # how long the new release is watched after the switch
    # How long the new container has to become healthy before the release fails and the
    # previous one serves on (the gate, Pulumi's wait_timeout): raise it for an app that
    # starts slowly (its checks fail meanwhile; the first success makes it healthy).
    health_gate_seconds: int = 60
    # Tasks (processes and threads) the web container and each process may hold (review
    # L7): a fork bomb or a thread leak fails there, not in PostgreSQL or sshd. Set on the
    # running container before traffic reaches it (templates/app/switch-precondition.sh.j2).
    pids_limit: int = 256
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
    # Migrations reach PostgreSQL directly, not through transaction-mode PgBouncer, with
    # these limits (libpq's PGOPTIONS): a statement that waits longer than the lock timeout
    # for a lock gives up — so the requests queued behind the lock it asked for wait no
    # longer than that — and `migrate` is run again, up to migrate_attempts times; no
    # statement runs longer than the statement timeout (docs/runbooks.md, "Migrations").
    migrate_lock_timeout_seconds: int = 5
    migrate_statement_timeout_seconds: int = 600
    migrate_attempts: int = 3
    # Maintenance: nginx answers 503 with Retry-After and a page (the program's, or the HTML
    # file maintenance_page names, relative to the checkout) to every request but the health
    # path and the addresses in maintenance_allow (CIDRs: the operators'); the release keeps
    # running behind it (docs/runbooks.md, "Maintenance").
    maintenance: bool = False
    maintenance_allow: tuple[str, ...] = ()
    maintenance_retry_after_seconds: int = 600
    maintenance_page: str = ""
    # The image contract (health, port, release header, variables, extra env and secrets,
    # smoke paths): components/settings/contract.py; unset, today's (app/README.md).
    contract: AppContract = field(default_factory=AppContract)
    # The release's other processes (workers, beat), run from its image beside the web
    # container and switched with it: components/settings/processes.py.
    processes: tuple[ProcessSettings, ...] = ()

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


def parse_releases(raw: Mapping[str, Any], secrets: Callable[[str], Any],
                   problems: Problems) -> tuple[ReleaseSettings, ...]:
    raw_releases = raw.get("releases") or {}
    if not isinstance(raw_releases, Mapping):
        problems.add(f"{NAMESPACE}:releases must map environment names to "
                     "{image, release}")
        return ()
    releases = []
    for environment, values in raw_releases.items():
        release = _parse_release(environment, values, secrets, problems)
        if release is not None:
            releases.append(release)
    return tuple(releases)


def _parse_release(environment: Any, values: Any, secrets: Callable[[str], Any],
                   problems: Problems) -> ReleaseSettings | None:
    """`releases.<environment>`; None when its image or release is missing."""
    key = f"{NAMESPACE}:releases.{environment}"
    values = values if isinstance(values, Mapping) else {}
    contract_keys = ContractKeys.__dataclass_fields__
    contract = parse_contract({name: value for name, value in values.items()
                               if name in contract_keys}, key, secrets, problems)
    processes = parse_processes(values.get("processes"), key, problems)
    values = typed_fields(ReleaseSettings, values, f"releases.{environment}", problems,
                          also_known=[*contract_keys, "processes"])
    for internal in ("environment", "contract"):
        if values.pop(internal, None) is not None:
            problems.add(f"{key}.{internal} is not a setting")
    for secret in ("secret_key", "database_password", "redis_password"):
        values.pop(secret, None)
    missing = [name for name in ("image", "release") if name not in values]
    for name in missing:
        problems.add(f"{key}.{name} is missing")
    if missing:
        return None
    release = ReleaseSettings(
        environment=str(environment), secret_key=secrets(f"{environment}_secret_key"),
        database_password=secrets(f"{environment}_db_password"),
        redis_password=secrets(f"{environment}_redis_password"), contract=contract,
        processes=processes, **values)
    _check_release(release, key, problems)
    return release


def _check_release(release: ReleaseSettings, key: str, problems: Problems) -> None:
    tag = str(release.release)
    if not is_release(tag):
        problems.add(
            f"{key}.release={tag!r} is not a valid image tag; a tag is letters, digits, "
            "'_', '.' and '-' (max 128, not starting with '.' or '-'), or use a digest "
            "sha256:<64 hex>"
        )
    if not IMAGE_REPOSITORY_RE.match(str(release.image)):
        problems.add(f"{key}.image={release.image!r} is not an image repository; "
                     "give it without a tag, e.g. ghcr.io/acme/aiia-backend")
    for secret, value in release_secrets(release).items():
        if value is None:
            problems.missing_secret(secret, note="" if secret.endswith("_secret_key") else (
                " — the same value as the platform's stack holds, which made the role and "
                "the ACL user with it (`make init` sets both)"))
    _check_run_as(release, key, problems)
    check_maintenance(release.maintenance_allow, release.maintenance_page, key, problems)
    if release.secrets_as not in ("files", "variables"):
        problems.add(f"{key}.secrets_as={release.secrets_as!r} must be files (the app reads "
                     "<NAME>_FILE, app/README.md) or variables (the values themselves)")
    for name, low, high in (("stop_grace_seconds", 1, 300), ("watch_seconds", 0, 600),
                            ("health_gate_seconds", 10, 900), ("pids_limit", 32, 32768),
                            ("watch_max_error_percent", 0, 100),
                            ("watch_min_requests", 1, 100000), ("keep_images", 1, 50),
                            ("migrate_lock_timeout_seconds", 1, 60),
                            ("migrate_statement_timeout_seconds", 10, 86400),
                            ("migrate_attempts", 1, 10),
                            ("maintenance_retry_after_seconds", 1, 86400)):
        value = getattr(release, name)
        if not low <= value <= high:
            problems.add(f"{key}.{name}={value} must be between {low} and {high}")


def release_secrets(release: ReleaseSettings) -> dict[str, Any]:
    """The secrets an environment's release reads from its own stack, by config key (its
    extra secrets, releases.<env>.secrets, are checked where they are parsed)."""
    return {f"{release.environment}_secret_key": release.secret_key,
            f"{release.environment}_db_password": release.database_password,
            f"{release.environment}_redis_password": release.redis_password}


def extra_secret_keys(release: ReleaseSettings) -> set[str]:
    """The secret config keys releases.<env>.secrets names."""
    return {config_key for _, config_key, _ in release.contract.secrets}


def _check_run_as(release: ReleaseSettings, key: str, problems: Problems) -> None:
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


def parse_registry(raw: Mapping[str, Any], secrets: Callable[[str], Any],
                   problems: Problems) -> RegistrySettings | None:
    if raw.get("registry") is None:
        return None
    values = typed_fields(RegistrySettings, config_object(raw, "registry", problems), "registry",
                          problems)
    missing = [name for name in ("address", "username") if not values.get(name)]
    if missing:
        problems.add(f"{NAMESPACE}:registry needs {' and '.join(missing)} (e.g. address: "
                     "ghcr.io, username: the account the token belongs to)")
        return None
    if "password" in values:
        problems.add(f"{NAMESPACE}:registry.password must not be in the stack file; set it "
                     f"as a secret: pulumi config set -s {problems.stack} --secret "
                     "aiia:registry_password <token>")
        return None
    password = secrets("registry_password")
    if password is None:
        problems.add(f"{NAMESPACE}:registry is set but the secret aiia:registry_password is "
                     f"not; set it: pulumi config set -s {problems.stack} --secret "
                     "aiia:registry_password <token>")
    return RegistrySettings(address=values["address"], username=values["username"],
                            password=password)
