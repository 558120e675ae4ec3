"""Fixtures for the dashboard's unit tests: a realistic host's state and the real server,
and the PITR files as pitr.sh writes them."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from dashboard.timestamps import format_utc
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


def pitr_snapshot(now: float) -> dict:
    """pitr.json as `pitr.sh tick` writes it (the contract of issue #30), all well: archived
    20 s ago, nothing waiting, shipped off the host, a base backup 3 h ago, one old gap."""
    return {
        "format": 1,
        "updated_at": format_utc(now - 20),
        "enabled": True,
        "window_days": 7,
        "rpo_seconds": 60,
        "archive": {
            "last_archived_at": format_utc(now - 20),
            "last_archived_wal": "000000010000000000000012",
            "last_failed_at": None,
            "last_failed_wal": "",
            "waiting_segments": 0,
            "oldest_waiting_since": None,
        },
        "off_host": {"configured": True, "last_shipped_at": format_utc(now - 40), "pending": 0},
        "base": {
            "last_id": "20261207T033000Z",
            "last_at": format_utc(now - 3 * 3600),
            "count": 8,
            "bytes": 123456,
        },
        "window": {"from": format_utc(now - 7 * 86400), "to": format_utc(now - 20)},
        "archive_bytes": 3456789,
        "gaps": [
            {
                "at": format_utc(now - 2 * 86400),
                "wal": "0000000100000000000000A3",
                "reason": "disk reserve reached: 812 MB free",
            }
        ],
    }


def pitr_drill(now: float, days_ago: float, outcome: str = "succeeded", **fields) -> dict:
    """A line of pitr-drills.jsonl."""
    started = now - days_ago * 86400
    return {
        "id": f"pitr-drill-{int(started)}",
        "started_at": format_utc(started),
        "finished_at": format_utc(started + 70),
        "outcome": outcome,
        "target_time": format_utc(started - 3 * 86400),
        "marker_at": format_utc(started - 3 * 86400 - 42),
        "rpo_seconds": 42.0,
        "restore_seconds": 61.3,
        "reason": "",
        **fields,
    }
