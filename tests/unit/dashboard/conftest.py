"""Fixtures for the dashboard's unit tests: a realistic host's state and the real server."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness import dashboard_status as fixtures


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


GOOD_AUTH = basic(fixtures.USER, fixtures.PASSWORD)


def request(
    port: int,
    path: str,
    method: str = "GET",
    authorization: str | None = GOOD_AUTH,
    headers: dict[str, str] | None = None,
) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        all_headers = dict(headers or {})
        if authorization is not None:
            all_headers["Authorization"] = authorization
        connection.request(method, path, headers=all_headers)
        response = connection.getresponse()
        return Response(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


@pytest.fixture(scope="module")
def realistic_host() -> Iterator[fixtures.RealisticHost]:
    root = fixtures.readable_tempdir("aiia-dashboard-test-")
    try:
        with fixtures.realistic_host(root) as host:
            host.collect()
            yield host
    finally:
        fixtures.remove_tree(root)


@pytest.fixture(scope="module")
def server(realistic_host) -> Iterator[tuple[int, int]]:
    """(port, pid) of `python3 -m dashboard serve` running on the realistic state."""
    with fixtures.running_server(realistic_host.state.config_path) as (process, port):
        yield port, process.pid
