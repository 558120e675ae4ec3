"""`releases.<env>.{health, port, release_header, variables, env, secrets, smoke}`: the image
contract of app/README.md, by config. Unset, each is today's contract, so a stack that sets
none of them declares what it declared before.

Standard library only, like releases.py, which calls `parse_contract` for each release;
scripts/smoke.py reads the same settings from a stack file."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.settings.checks import NAMESPACE, Problems, typed_fields

# A variable name a shell, `docker run --env` and Django's os.environ all take.
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The name of a secret config key (aiia:<name>), as `pulumi config set --secret` is given it.
SECRET_KEY_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
HTTP_HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# A path nginx and a shell line carry as they are: no space, quote, `$` or `..`.
URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%+=&?:@!,;*-]*$")
DEFAULT_HEALTH_PATH = "/healthz/"
# What nginx's health location may name (templates/nginx/health.conf.j2, in quotes), and the
# names the site's maintenance locations hold already (templates/nginx/site.conf.j2).
HEALTH_URI_RE = re.compile(r"^/[A-Za-z0-9._~/+=&:@!,;*-]*$")
NGINX_OWN_PATHS = ("/aiia-maintenance", "/aiia-maintenance.html")
DEFAULT_RELEASE_HEADER = "X-Release"

# What the program hands the app, by role, under today's names. A role set to null (or "")
# is not handed over; the roles without a name here are handed over only when named.
DEFAULT_VARIABLES: dict[str, str | None] = {
    "environment": "ENVIRONMENT", "release": "RELEASE", "port": "PORT",
    "allowed_hosts": "ALLOWED_HOSTS", "secret_key": "SECRET_KEY",
    "database_host": "DATABASE_HOST", "database_port": "DATABASE_PORT",
    "database_name": "DATABASE_NAME", "database_user": "DATABASE_USER",
    "database_password": "DATABASE_PASSWORD", "database_url": None,
    "redis_url": "REDIS_URL", "redis_password": "REDIS_PASSWORD", "celery_broker_url": None,
    "cache_key_prefix": "CACHE_KEY_PREFIX", "static_root": "STATIC_ROOT",
    "media_root": "MEDIA_ROOT", "log_file": "LOG_FILE",
}
# The roles whose value is a secret (a password, or a URL with one in it): with secrets as
# files the app gets <NAME>_FILE, the path of a file holding it.
SECRET_ROLES = ("secret_key", "database_password", "redis_password", "database_url",
                "celery_broker_url")
# Set by the program for the migrations whatever the variables say (libpq reads it).
PROGRAM_VARIABLES = ("PGOPTIONS",)


@dataclass(frozen=True)
class HealthSettings:
    """`releases.<env>.health`: what the container's health check, the release's watch and
    the smoke test ask of the app. Set, the check is the image's own python3 with the
    standard library (nothing of the program's in the image); unset, today's
    `python3 /app/healthcheck.py` (app/README.md)."""

    path: str = DEFAULT_HEALTH_PATH
    status: int = 200
    timeout_seconds: int = 3


@dataclass(frozen=True)
class SmokePath:
    path: str
    status: int = 200


@dataclass(frozen=True)
class AppContract:
    """The parsed contract of one release (ReleaseSettings.contract)."""

    health: HealthSettings | None = None  # None: today's health check command
    port: int | None = None  # None: the environment's port (platform.environments.<env>.port)
    release_header: str | None = DEFAULT_RELEASE_HEADER  # None: the app sends none
    variables: Mapping[str, str | None] = field(default_factory=lambda: dict(DEFAULT_VARIABLES))
    env: tuple[tuple[str, str], ...] = ()  # extra plain variables
    # Extra secrets: (variable name, the secret config key aiia:<key>, its value).
    secrets: tuple[tuple[str, str, Any], ...] = ()
    smoke_paths: tuple[SmokePath, ...] = ()
    smoke_websockets: tuple[str, ...] = ()  # paths that must upgrade and echo a message

    @property
    def health_path(self) -> str:
        return (self.health or HealthSettings()).path

    @property
    def health_status(self) -> int:
        return (self.health or HealthSettings()).status

    def name(self, role: str) -> str | None:
        return self.variables.get(role)


@dataclass(frozen=True)
class ContractKeys:
    """The contract's keys in `releases.<env>`, typed like the settings they are."""

    health: Any = None
    port: int | None = None
    release_header: str | None = DEFAULT_RELEASE_HEADER
    variables: Any = None
    env: Any = None
    secrets: Any = None
    smoke: Any = None


def parse_contract(raw: Mapping[str, Any], key: str, secret: Callable[[str], Any],
                   problems: Problems) -> AppContract:
    """`raw`: the contract keys of `releases.<env>` (ContractKeys); `key` the release's."""
    values = typed_fields(ContractKeys, raw, key.split(":", 1)[1], problems)
    health = _parse_health(values.pop("health", None), key, problems)
    port = values.pop("port", None)
    if port is not None and not 1 <= port <= 65535:
        problems.add(f"{key}.port={port} must be between 1 and 65535 (the port the app "
                     "listens on in its container)")
    header = values.pop("release_header", DEFAULT_RELEASE_HEADER) or None
    if header is not None and not HTTP_HEADER_RE.match(str(header)):
        problems.add(f"{key}.release_header={header!r} must be an HTTP header name (letters, "
                     "digits, '-'), e.g. X-Release, or null when the app sends none")
    variables = _parse_variables(values.pop("variables", None), key, problems)
    owned = {name for name in variables.values() if name} | set(PROGRAM_VARIABLES)
    owned |= {f"{variables[role]}_FILE" for role in SECRET_ROLES if variables.get(role)}
    env = _parse_env(values.pop("env", None), key, owned, problems)
    secrets = _parse_secrets(values.pop("secrets", None), key, owned | {n for n, _ in env},
                             secret, problems)
    smoke, websockets = _parse_smoke(values.pop("smoke", None), key, problems)
    return AppContract(health=health, port=port, release_header=header, variables=variables,
                       env=env, secrets=secrets, smoke_paths=smoke,
                       smoke_websockets=websockets)


def _mapping(value: Any, key: str, example: str, problems: Problems) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.add(f"{key}={value!r} must be an object, e.g. {example}")
        return {}
    return value


def _check_path(path: Any, key: str, problems: Problems) -> bool:
    if not isinstance(path, str) or not path.startswith("/"):
        problems.add(f"{key}={path!r} must be a path starting with '/', e.g. /health/")
        return False
    if not URL_PATH_RE.match(path) or "/../" in f"{path}/":
        problems.add(f"{key}={path!r} must be a plain URL path (letters, digits and "
                     "/._~%+=&?:@!,;*-; no spaces, quotes or ..), e.g. /health/")
        return False
    return True


def health_uri(path: str) -> str:
    """The health path as nginx matches it ($uri, locations): without its query, decoded."""
    return urllib.parse.unquote(path.split("?", 1)[0])


def _check_status(status: int, key: str, problems: Problems) -> None:
    if not 200 <= status <= 299:
        problems.add(f"{key}={status} must be a 2xx status (200 to 299): a health check or a "
                     "smoke path answers what it is asked, not a redirect or an error")


def _parse_health(raw: Any, key: str, problems: Problems) -> HealthSettings | None:
    if raw is None:
        return None
    values = typed_fields(HealthSettings, _mapping(raw, f"{key}.health", "{path: /health/}",
                                            problems), f"{key.split(':', 1)[1]}.health",
                          problems)
    health = HealthSettings(**values)
    if (_check_path(health.path, f"{key}.health.path", problems)
            and not HEALTH_URI_RE.match(health_uri(health.path))):
        problems.add(f"{key}.health.path={health.path!r} decodes to "
                     f"{health_uri(health.path)!r}, which nginx cannot name safely in its "
                     "health location; write the path without percent-encoding, e.g. /health/")
    elif health_uri(health.path) in NGINX_OWN_PATHS:
        problems.add(f"{key}.health.path={health.path!r} is a path nginx answers itself (the "
                     "maintenance page); choose another, e.g. /health/")
    _check_status(health.status, f"{key}.health.status", problems)
    if not 1 <= health.timeout_seconds <= 30:
        problems.add(f"{key}.health.timeout_seconds={health.timeout_seconds} must be between "
                     "1 and 30")
    return health


def _parse_variables(raw: Any, key: str, problems: Problems) -> dict[str, str | None]:
    variables = dict(DEFAULT_VARIABLES)
    for role, name in _mapping(raw, f"{key}.variables", "{database_url: DATABASE_URL}",
                               problems).items():
        full = f"{key}.variables.{role}"
        if role not in DEFAULT_VARIABLES:
            problems.add(f"{full} is not a variable the program hands over; known: "
                         f"{', '.join(sorted(DEFAULT_VARIABLES))} (put your own in "
                         f"{key}.env or {key}.secrets)")
        elif name in (None, ""):
            variables[role] = None
        elif not isinstance(name, str) or not VARIABLE_NAME_RE.match(name):
            problems.add(f"{full}={name!r} is not a valid variable name (letters, digits and "
                         "'_', not starting with a digit), e.g. DATABASE_URL")
        else:
            variables[role] = name
    names: dict[str, str] = {}
    for role, name in variables.items():
        if name and name in names:
            problems.add(f"{key}.variables: {names[name]} and {role} are both named {name!r}; "
                         "give each its own name")
        elif name:
            names[name] = role
    return variables


def _check_own_name(name: Any, full: str, owned: set[str], section: str,
                    problems: Problems) -> bool:
    if not isinstance(name, str) or not VARIABLE_NAME_RE.match(name):
        problems.add(f"{full}: {name!r} is not a valid variable name (letters, digits and "
                     "'_', not starting with a digit), e.g. SENTRY_DSN")
        return False
    if name in owned:
        problems.add(f"{full}: {name} is a variable the program sets (the image contract); "
                     f"remove it from {section}, or rename the program's with "
                     f"{full.rsplit('.', 2)[0]}.variables")
        return False
    return True


def _parse_env(raw: Any, key: str, owned: set[str],
               problems: Problems) -> tuple[tuple[str, str], ...]:
    env = []
    for name, value in _mapping(raw, f"{key}.env", "{SENTRY_ENVIRONMENT: production}",
                                problems).items():
        full = f"{key}.env.{name}"
        if not _check_own_name(name, full, owned, f"{key}.env", problems):
            continue
        if isinstance(value, Mapping | list) or value is None:
            problems.add(f"{full}={value!r} must be text or a number")
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "\n" in text or "\r" in text:
            problems.add(f"{full} holds a line break, which an environment file cannot carry; "
                         "give it on one line")
            continue
        env.append((name, text))
    return tuple(env)


def _parse_secrets(raw: Any, key: str, owned: set[str], secret: Callable[[str], Any],
                   problems: Problems) -> tuple[tuple[str, str, Any], ...]:
    environment = key.rsplit(".", 1)[-1]
    secrets = []
    for name, config_key in _mapping(raw, f"{key}.secrets",
                                     f"{{SENTRY_DSN: {environment}_sentry_dsn}}",
                                     problems).items():
        full = f"{key}.secrets.{name}"
        if not _check_own_name(name, full, owned, f"{key}.secrets", problems):
            continue
        example = f"{environment}_{str(name).lower()}"
        if not isinstance(config_key, str) or not SECRET_KEY_NAME_RE.match(config_key):
            problems.add(
                f"{full} must name a secret config key, e.g. {example}, not hold the value: "
                "a value here is plain text in the repository; set it with `pulumi config set "
                f"-s {problems.stack} --secret {NAMESPACE}:{example} <value>`, name that key "
                "here, and treat the value written here as leaked")
            continue
        value = secret(config_key)
        if value is None:
            problems.missing_secret(config_key, value="<value>",
                                    note=f" (named by {full})")
        secrets.append((name, config_key, value))
    return tuple(secrets)


def _parse_smoke(raw: Any, key: str,
                 problems: Problems) -> tuple[tuple[SmokePath, ...], tuple[str, ...]]:
    """`smoke.paths` (GET, a 2xx status each) and `smoke.websockets` (an echo each)."""
    smoke = _mapping(raw, f"{key}.smoke", "{paths: [/, /api/]}", problems)
    for name in smoke:
        if name not in ("paths", "websockets"):
            problems.add(f"{key}.smoke.{name} is not a setting; known: paths, websockets")
    websockets = smoke.get("websockets") or []
    if not isinstance(websockets, list):
        problems.add(f"{key}.smoke.websockets={websockets!r} must be a list of paths, e.g. "
                     "[/ws/echo/]")
        websockets = []
    websockets = tuple(path for index, path in enumerate(websockets)
                       if _check_path(path, f"{key}.smoke.websockets[{index}]", problems))
    paths = smoke.get("paths") or []
    if not isinstance(paths, list):
        problems.add(f"{key}.smoke.paths={paths!r} must be a list of paths, e.g. [/, /api/]")
        return (), websockets
    result = []
    for index, entry in enumerate(paths):
        full = f"{key}.smoke.paths[{index}]"
        if isinstance(entry, Mapping):
            status = entry.get("status", 200)
            if isinstance(status, bool) or not str(status).isdigit():
                problems.add(f"{full}.status={status!r} must be a whole number")
                continue
            _check_status(int(status), f"{full}.status", problems)
            if _check_path(entry.get("path"), f"{full}.path", problems):
                result.append(SmokePath(entry["path"], int(status)))
        elif _check_path(entry, full, problems):
            result.append(SmokePath(entry))
    return tuple(result), websockets
