"""GET /healthz/: is this release able to serve (database and cache reachable)?

Each check runs in a worker thread of its own under a deadline, so a hung PgBouncer or Redis
turns into a 503 within CHECK_DEADLINE_SECONDS (the container health check gives up after 3 s)
instead of blocking the thread that Django's synchronous views share.

What failed and why (an error names PgBouncer's host and address) goes to the app's log and to
a caller inside the container (its health check, an operator's `make exec`); a request that
came through nginx, which sets X-Forwarded-For on every request it proxies and overwrites a
client's own (templates/nginx/nginx.conf.j2), reads only "ok" or "fail" per check (review L4).
"""

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse

CHECK_DEADLINE_SECONDS = 2.5
ERROR_SUMMARY_LENGTH = 160

logger = logging.getLogger(__name__)


def check_database() -> None:
    # A worker thread has a connection object of its own: close it here, because no
    # request_finished signal will.
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            row = cursor.fetchone()
        if row != (1,):
            raise RuntimeError(f"SELECT 1 returned {row!r}")
    finally:
        with contextlib.suppress(DatabaseError):
            connection.close()


def check_cache() -> None:
    # A key per check: checks run at once — from several threads of one process (Docker's
    # health check, the dashboard's probe and a monitor's request arriving together), and
    # from the old and the new container of a release — and none may read another's token.
    token = secrets.token_hex(8)
    key = f"healthz:{socket.gethostname()}:{os.getpid()}:{token}"
    cache.set(key, token, timeout=30)
    try:
        if cache.get(key) != token:
            raise RuntimeError("the value read back differs from the value written")
    finally:
        cache.delete(key)


def summarize(error: BaseException) -> str:
    message = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
    return text[:ERROR_SUMMARY_LENGTH]


async def run_check(name: str, check: Callable[[], None]) -> str:
    try:
        await asyncio.wait_for(
            sync_to_async(check, thread_sensitive=False)(), CHECK_DEADLINE_SECONDS
        )
    except TimeoutError:
        logger.warning("health check %s timed out after %ss", name, CHECK_DEADLINE_SECONDS)
        return f"timeout after {CHECK_DEADLINE_SECONDS}s"
    except Exception as error:
        logger.warning("health check %s failed: %r", name, error)
        return summarize(error)
    return "ok"


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "cache": check_cache}


async def healthz(request: HttpRequest) -> JsonResponse | HttpResponseNotAllowed:
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    outcomes = await asyncio.gather(*(run_check(name, check) for name, check in CHECKS.items()))
    healthy = all(outcome == "ok" for outcome in outcomes)
    if "HTTP_X_FORWARDED_FOR" in request.META:
        outcomes = ["ok" if outcome == "ok" else "fail" for outcome in outcomes]
    checks = dict(zip(CHECKS, outcomes, strict=True))
    response = JsonResponse(
        {
            "status": "ok" if healthy else "fail",
            "checks": checks,
            "release": settings.RELEASE,
            "environment": settings.ENVIRONMENT,
        },
        status=200 if healthy else 503,
    )
    response["Cache-Control"] = "no-store"
    return response
