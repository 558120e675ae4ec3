"""Test variant (tests/e2e/images/ordinary): settings as an ordinary project reads them.

DATABASE_URL (postgres://user:password@host:port/name, as dj-database-url parses it),
DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS and REDIS_URL with its password; the reference
app's own names are filled from them, then its settings are taken without the middleware
that sends X-Release and answers /healthz/ before host validation."""

import os
from urllib.parse import unquote, urlsplit

_database = urlsplit(os.environ["DATABASE_URL"])
os.environ.update(
    DATABASE_HOST=_database.hostname or "", DATABASE_PORT=str(_database.port or 5432),
    DATABASE_NAME=_database.path.lstrip("/"), DATABASE_USER=unquote(_database.username or ""),
    DATABASE_PASSWORD=unquote(_database.password or ""),
    SECRET_KEY=os.environ["DJANGO_SECRET_KEY"],
    ALLOWED_HOSTS=os.environ["DJANGO_ALLOWED_HOSTS"],
)
os.environ.setdefault("RELEASE", "ordinary")
os.environ.setdefault("ENVIRONMENT", "unknown")
os.environ.setdefault("CACHE_KEY_PREFIX", os.environ.get("ENVIRONMENT", "unknown"))

from aiia.settings import *  # noqa: E402,F403

MIDDLEWARE = [name for name in MIDDLEWARE  # noqa: F405
              if name not in ("aiia.middleware.ReleaseHeaderMiddleware",
                              "aiia.middleware.HealthCheckMiddleware")]
ROOT_URLCONF = "aiia.ordinary_urls"
