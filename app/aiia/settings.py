"""Django settings, read from environment variables only (see app/README.md)."""

from pathlib import Path

from redis.backoff import NoBackoff
from redis.retry import Retry

from aiia.env import Environment
from aiia.log import usable_log_file

BASE_DIR = Path(__file__).resolve().parent.parent

env = Environment()

SECRET_KEY = env.secret("SECRET_KEY")
ALLOWED_HOSTS = env.required_list("ALLOWED_HOSTS")
RELEASE = env.required("RELEASE")
ENVIRONMENT = env.required("ENVIRONMENT")
DEBUG = env.boolean("DEBUG", default=False)
PORT = env.integer("PORT", default=8000)
STATIC_ROOT = env.optional("STATIC_ROOT", "/app/staticfiles")
# Uploads: a host directory per environment that outlives every release (and is backed up).
MEDIA_ROOT = env.optional("MEDIA_ROOT", "/app/media")
LOG_FILE = env.optional("LOG_FILE")

DATABASE_HOST = env.required("DATABASE_HOST")
DATABASE_PORT = env.integer("DATABASE_PORT")
DATABASE_NAME = env.required("DATABASE_NAME")
DATABASE_USER = env.required("DATABASE_USER")
DATABASE_PASSWORD = env.secret("DATABASE_PASSWORD")

REDIS_URL = env.required("REDIS_URL")
# The password may be in the URL or apart (REDIS_PASSWORD or REDIS_PASSWORD_FILE); apart,
# redis-py takes it from the connection options (a password in the URL wins).
REDIS_PASSWORD = env.secret("REDIS_PASSWORD", required=False)
# Django's key is "<prefix>:<version>:<key>" and the environment's Redis ACL user may only
# touch "<prefix>:*", so the prefix is used exactly as given.
CACHE_KEY_PREFIX = env.required("CACHE_KEY_PREFIX")
if ":" in CACHE_KEY_PREFIX:
    env.reject(f"CACHE_KEY_PREFIX={CACHE_KEY_PREFIX!r} must not contain ':' (use e.g. 'prod')")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    env.reject("REDIS_URL must start with redis://, rediss:// or unix://")

env.raise_if_incomplete()

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "notes",
]

MIDDLEWARE = [
    # Outermost, so that every response (errors and /healthz/ included) carries X-Release.
    "aiia.middleware.ReleaseHeaderMiddleware",
    "aiia.middleware.RequestLogMiddleware",
    # Before host validation: the container health check calls 127.0.0.1, which is not
    # (and should not be) in ALLOWED_HOSTS.
    "aiia.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "aiia.urls"
ASGI_APPLICATION = "aiia.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": DATABASE_HOST,
        "PORT": DATABASE_PORT,
        "NAME": DATABASE_NAME,
        "USER": DATABASE_USER,
        "PASSWORD": DATABASE_PASSWORD,
        # PgBouncer (transaction mode) is the pool: a connection per request, closed at its
        # end, so a restarted PgBouncer/PostgreSQL never leaves a stale connection behind.
        # Django also advises against persistent connections under ASGI.
        "CONN_MAX_AGE": 0,
        # Named cursors do not survive transaction pooling.
        "DISABLE_SERVER_SIDE_CURSORS": True,
        # A dead or hung PgBouncer fails in 2 s instead of hanging the request.
        "OPTIONS": {"connect_timeout": 2},
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        "OPTIONS": {
            "socket_connect_timeout": 1,
            "socket_timeout": 1,
            # One immediate retry reconnects a pooled connection that a Redis restart
            # closed; redis-py's default (3 retries, exponential backoff) would take seconds.
            "retry": Retry(NoBackoff(), 1),
            **({"password": REDIS_PASSWORD} if REDIS_PASSWORD else {}),
        },
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

STATIC_URL = "/static/"
MEDIA_URL = "/media/"

TEMPLATES: list[dict] = []

# nginx terminates TLS and sets X-Forwarded-Proto; the app is reachable only behind it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# nginx redirects to HTTPS and sends HSTS for every environment's domain; doing it here too
# would also redirect the plain-HTTP health checks on the Docker network.
SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]

LOG_FILE = usable_log_file(LOG_FILE)
LOG_HANDLERS = ["stdout", "file"] if LOG_FILE else ["stdout"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {
            "()": "aiia.log.UTCFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "line",
        },
        **(
            {
                # Reopens the file when logrotate moves it away.
                "file": {
                    "class": "logging.handlers.WatchedFileHandler",
                    "filename": LOG_FILE,
                    "formatter": "line",
                }
            }
            if LOG_FILE
            else {}
        ),
    },
    "root": {"handlers": LOG_HANDLERS, "level": "INFO"},
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # uvicorn's own messages (startup, shutdown, errors) end up in the same places.
        "uvicorn": {"handlers": LOG_HANDLERS, "level": "INFO", "propagate": False},
        # aiia.request logs every request already (RequestLogMiddleware).
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}
