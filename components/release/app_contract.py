"""The image contract of app/README.md: where the app's files go inside its container, how it
gets its secrets, and the variables that are its whole configuration.

A release (app_release.py) runs any image that follows it; the contract is written here
once, apart from how a release is rolled out.
"""

from __future__ import annotations

from urllib.parse import quote

from components.settings.releases import ReleaseSettings

STATIC_ROOT = "/app/staticfiles"
# Uploads: {root}/media/<env> on the host, mounted into every release of the environment,
# so they outlive releases; the backup job takes the directory (components/platform/backup.py).
MEDIA_ROOT = "/app/media"

# Where the app finds its secrets when they are files (releases.<env>.secrets_as: files):
# {root}/secrets/<env>/ on the host, mounted read-only.
SECRETS_IN_CONTAINER = "/run/secrets/aiia"
# Between the app's environment file and the migrations' on the release script's stdin
# (templates/app/release-begin.sh.j2): a comment line in the env-file syntax.
MIGRATE_ENV_MARK = "# --- migrate ---"
# The secret files of the defaults, by their key in `app_secrets`: always written, so a
# stack that names no other keeps the files (and resources) it had.
SECRET_FILES = {"SECRET_KEY": "secret_key", "DATABASE_PASSWORD": "database_password",
                "REDIS_PASSWORD": "redis_password"}


def secret_file_names(release: ReleaseSettings) -> dict[str, str]:
    """Every secret file of a release (secrets as files): its key in `app_secrets` → the
    file's name in {root}/secrets/<env>/. The database URL has two: the app's (PgBouncer)
    and the migrations' (PostgreSQL directly)."""
    contract = release.contract
    files = dict(SECRET_FILES)
    if contract.name("database_url"):
        files |= {"DATABASE_URL": "database_url", "DATABASE_URL_DIRECT": "database_url_direct"}
    if contract.name("celery_broker_url"):
        files["CELERY_BROKER_URL"] = "celery_broker_url"
    files |= {f"extra:{config_key}": f"extra-{config_key}"
              for _, config_key, _ in contract.secrets}
    return files


# The container's health check when releases.<env>.health is set: the image's own python3
# and its standard library, nothing of the program's in the image. It asks as nginx does:
# the environment's domain as Host (an app whose ALLOWED_HOSTS lists only its domains
# answers it) and https as the forwarded scheme (SECURE_SSL_REDIRECT does not redirect it).
HEALTH_PROBE = """import sys, urllib.error, urllib.request as r
q = r.Request({url!r}, headers={{"Host": {host!r}, "X-Forwarded-Proto": "https"}})
try:
    s = r.build_opener(r.ProxyHandler({{}})).open(q, timeout={timeout}).status
except urllib.error.HTTPError as e:
    s = e.code
except OSError as e:
    sys.exit(f"health check: {url}: {{e}}")
sys.exit(0 if s == {status} else f"health check: {url} answered {{s}}, not {status}")
"""
# Today's check (app/README.md), kept while releases.<env>.health is unset: a stack that
# sets nothing keeps its containers' names.
LEGACY_HEALTH_CHECK = ["CMD", "python3", "/app/healthcheck.py"]


def app_port(release: ReleaseSettings, environment: dict) -> int:
    """The port the app listens on in its container."""
    return release.contract.port or int(environment["port"])


def health_check_command(release: ReleaseSettings, domain: str, port: int) -> list[str]:
    """The container's health check (Docker's CMD form)."""
    health = release.contract.health
    if health is None:
        return list(LEGACY_HEALTH_CHECK)
    url = f"http://127.0.0.1:{port}{health.path}"
    return ["CMD", "python3", "-c", HEALTH_PROBE.format(
        url=url, host=domain, timeout=health.timeout_seconds, status=health.status)]


def database_url(environment: dict, platform: dict, password: str, *, direct: bool) -> str:
    """postgres://user:password@host:port/name (dj-database-url, django-environ)."""
    host, port = (("postgres_host", "postgres_port") if direct
                  else ("pgbouncer_host", "pgbouncer_port"))
    return (f"postgres://{quote(environment['database_user'], safe='')}:"
            f"{quote(password, safe='')}@{platform[host]}:{int(platform[port])}/"
            f"{quote(environment['database_name'], safe='')}")


def redis_url(environment: dict, platform: dict, password: str | None) -> str:
    """The environment's Redis ACL user, with its password when one is given."""
    secret = "" if password is None else f":{quote(password, safe='')}"
    return (f"redis://{quote(environment['redis_user'], safe='')}{secret}@"
            f"{platform['redis_host']}:{int(platform['redis_port'])}/0")


def app_secrets(release: ReleaseSettings, environment: dict, platform: dict,
                database_password: str, redis_password: str, secret_key: str,
                *extra_values: str) -> dict[str, str]:
    """Every secret of a release, by its key in `secret_file_names`."""
    values = {"SECRET_KEY": secret_key, "DATABASE_PASSWORD": database_password,
              "REDIS_PASSWORD": redis_password}
    contract = release.contract
    if contract.name("database_url"):
        values["DATABASE_URL"] = database_url(environment, platform, database_password,
                                              direct=False)
        # A platform of an earlier program exports no postgres_host: the migrations refuse
        # it (migrate_environment_variables).
        values["DATABASE_URL_DIRECT"] = "" if platform.get("postgres_host") is None else \
            database_url(environment, platform, database_password, direct=True)
    if contract.name("celery_broker_url"):
        values["CELERY_BROKER_URL"] = redis_url(environment, platform, redis_password)
    for (_, config_key, _), value in zip(contract.secrets, extra_values, strict=True):
        values[f"extra:{config_key}"] = value
    return values


def app_environment_variables(release: ReleaseSettings, environment: dict, platform: dict,
                              database_password: str, redis_password: str,
                              secret_key: str, *extra_values: str,
                              direct: bool = False) -> list[tuple[str, str]]:
    """The app image's contract (app/README.md): its whole configuration, as variables,
    under the names releases.<env>.variables gives them (today's by default).

    With secrets as files (the default) a secret's variable is <NAME>_FILE, the path of the
    file that holds it, and the Redis URL carries the user alone; with secrets as variables
    they are the values themselves. Numbers read through a StackReference arrive as floats
    (JSON), hence the int()s. `direct`: the migrations' (PostgreSQL, not PgBouncer).
    """
    contract = release.contract
    as_files = release.secrets_as == "files"
    secrets = app_secrets(release, environment, platform, database_password, redis_password,
                          secret_key, *extra_values)
    files = secret_file_names(release)
    url_key = "DATABASE_URL_DIRECT" if direct else "DATABASE_URL"

    def secret(role: str, key: str) -> list[tuple[str, str]]:
        name = contract.name(role) if role else key
        if not name:
            return []
        if as_files:
            return [(f"{name}_FILE", f"{SECRETS_IN_CONTAINER}/{files[key]}")]
        return [(name, secrets[key])]

    def plain(role: str, value: str) -> list[tuple[str, str]]:
        name = contract.name(role)
        return [(name, value)] if name else []

    port = app_port(release, environment)
    return [
        *plain("environment", release.environment),
        *plain("release", release.release),
        *plain("port", str(port)),
        *plain("allowed_hosts", environment["domain"]),
        *secret("secret_key", "SECRET_KEY"),
        *plain("database_host", platform["pgbouncer_host"]),
        *plain("database_port", str(int(platform["pgbouncer_port"]))),
        *plain("database_name", environment["database_name"]),
        *plain("database_user", environment["database_user"]),
        *secret("database_password", "DATABASE_PASSWORD"),
        *secret("database_url", url_key),
        *plain("redis_url", redis_url(environment, platform,
                                      None if as_files else redis_password)),
        # Apart from the URL only as a file; as a variable it stays in the URL.
        *(secret("redis_password", "REDIS_PASSWORD") if as_files else []),
        *secret("celery_broker_url", "CELERY_BROKER_URL"),
        *plain("cache_key_prefix", environment["redis_user"]),
        *plain("static_root", STATIC_ROOT),
        *plain("media_root", MEDIA_ROOT),
        *plain("log_file", f"/var/log/aiia/{release.environment}/django.log"),
        *contract.env,
        *[pair for name, config_key, _ in contract.secrets
          for pair in _extra_secret(name, f"extra:{config_key}", files, secrets, as_files)],
    ]


def _extra_secret(name: str, key: str, files: dict[str, str], secrets: dict[str, str],
                  as_files: bool) -> list[tuple[str, str]]:
    if as_files:
        return [(f"{name}_FILE", f"{SECRETS_IN_CONTAINER}/{files[key]}")]
    return [(name, secrets[key])]


def migrate_environment_variables(release: ReleaseSettings, environment: dict, platform: dict,
                                  *secrets: str) -> list[tuple[str, str]]:
    """The contract's variables for `manage.py migrate`: PostgreSQL itself instead of
    PgBouncer, whose transaction mode cannot carry a session's settings, and those settings
    in PGOPTIONS, which libpq (psycopg 2 and 3 alike) sends at connect."""
    if platform.get("postgres_host") is None:
        raise ValueError(
            f"aiia:releases.{release.environment}: the platform stack exports no postgres_host "
            "(a platform made by an earlier program): `pulumi up` the platform's stack first")
    direct = {**platform, "pgbouncer_host": platform["postgres_host"],
              "pgbouncer_port": platform["postgres_port"]}
    options = (f"-c lock_timeout={release.migrate_lock_timeout_seconds}s "
               f"-c statement_timeout={release.migrate_statement_timeout_seconds}s")
    return [*app_environment_variables(release, environment, direct, *secrets, direct=True),
            ("PGOPTIONS", options)]
