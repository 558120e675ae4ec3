"""Middleware of the reference app (all async: the app runs under ASGI)."""

import logging
import time
from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from aiia.health import healthz

GetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

request_logger = logging.getLogger("aiia.request")

HEALTH_PATH = "/healthz/"


class AsyncMiddleware:
    async_capable = True
    sync_capable = False

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)


class ReleaseHeaderMiddleware(AsyncMiddleware):
    """Every response names the release that produced it (nginx logs it, tests check it)."""

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.get_response(request)
        response["X-Release"] = settings.RELEASE
        return response


class RequestLogMiddleware(AsyncMiddleware):
    """One log line per request: method, path, status, duration.

    The path without its query string: a query carries tokens, e-mail addresses and search
    terms, which a log kept for weeks (and copied with the backups) should not hold.

    Passing health checks are left out: the container health check alone would otherwise
    write most of the log, and the dashboard shows a service's last 50 lines.
    """

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = await self.get_response(request)
        if request.path == HEALTH_PATH and response.status_code == 200:
            return response
        request_logger.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response


class HealthCheckMiddleware(AsyncMiddleware):
    """Answers /healthz/ before ALLOWED_HOSTS is enforced.

    The container health check (and any probe on the Docker network) reaches the app by
    IP address, and the body holds nothing secret, so any Host header is accepted here.
    """

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path == HEALTH_PATH:
            return await healthz(request)
        return await self.get_response(request)
