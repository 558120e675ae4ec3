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
SECRET_FILES = {"SECRET_KEY": "secret_key", "DATABASE_PASSWORD": "database_password",
                "REDIS_PASSWORD": "redis_password"}


def app_secrets(database_password: str, redis_password: str, secret_key: str) -> dict[str, str]:
    return {"SECRET_KEY": secret_key, "DATABASE_PASSWORD": database_password,
            "REDIS_PASSWORD": redis_password}


def app_environment_variables(release: ReleaseSettings, environment: dict, platform: dict,
                              database_password: str, redis_password: str,
                              secret_key: str) -> list[tuple[str, str]]:
    """The app image's contract (app/README.md): its whole configuration, as variables.

    With secrets as files (the default) a secret's variable is <NAME>_FILE, the path of the
    file that holds it, and the Redis URL carries the user alone; with secrets as variables
    they are the values themselves. Numbers read through a StackReference arrive as floats
    (JSON), hence the int()s.
    """
    name = release.environment
    as_files = release.secrets_as == "files"
    password = "" if as_files else f":{quote(redis_password, safe='')}"
    redis_url = (f"redis://{quote(environment['redis_user'], safe='')}{password}@"
                 f"{platform['redis_host']}:{int(platform['redis_port'])}/0")

    def secret(key: str, value: str) -> tuple[str, str]:
        if as_files:
            return f"{key}_FILE", f"{SECRETS_IN_CONTAINER}/{SECRET_FILES[key]}"
        return key, value

    return [
        ("ENVIRONMENT", name),
        ("RELEASE", release.release),
        ("PORT", str(int(environment["port"]))),
        ("ALLOWED_HOSTS", environment["domain"]),
        secret("SECRET_KEY", secret_key),
        ("DATABASE_HOST", platform["pgbouncer_host"]),
        ("DATABASE_PORT", str(int(platform["pgbouncer_port"]))),
        ("DATABASE_NAME", environment["database_name"]),
        ("DATABASE_USER", environment["database_user"]),
        secret("DATABASE_PASSWORD", database_password),
        ("REDIS_URL", redis_url),
        # Apart from the URL only as a file; as a variable it stays in the URL.
        *([secret("REDIS_PASSWORD", redis_password)] if as_files else []),
        ("CACHE_KEY_PREFIX", environment["redis_user"]),
        ("STATIC_ROOT", STATIC_ROOT),
        ("MEDIA_ROOT", MEDIA_ROOT),
        ("LOG_FILE", f"/var/log/aiia/{name}/django.log"),
    ]


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
    return [*app_environment_variables(release, environment, direct, *secrets),
            ("PGOPTIONS", options)]
