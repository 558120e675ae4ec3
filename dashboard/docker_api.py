"""A minimal Docker Engine API client over a unix socket (http.client, no docker CLI).

Used by the collector only, on the socket of its GET-only proxy (docker_proxy.py, whose
allowlist is exactly the reads below: change them together). The server never imports
this module and refuses to start when it could reach the socket (see
``server.preflight``).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DockerError(RuntimeError):
    pass


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    labels: dict[str, str]
    state: str  # created, running, restarting, exited, paused, dead
    health: str | None  # healthy, unhealthy, starting, or None without a health check
    restarts: int
    started_at: str | None
    image: str
    memory_limit_bytes: int | None  # None when the container has no limit
    exit_code: int | None
    oom_killed: bool


class DockerClient:
    def __init__(self, socket_path: Path | str, timeout: float = 10.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        connection = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            connection.request("GET", path + query, headers={"Host": "docker"})
            response = connection.getresponse()
            body = response.read()
        except OSError as error:
            raise DockerError(f"Docker API at {self.socket_path}: {error}") from error
        finally:
            connection.close()
        if response.status != 200:
            message = body[:200].decode("utf-8", "replace").strip()
            raise DockerError(f"Docker API {path}: HTTP {response.status} {message}")
        return body

    def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        return json.loads(self._get(path, params))

    def labelled_containers(
        self, label: str = "aiia.service", stack: str | None = None
    ) -> list[ContainerState]:
        """Every container (running or not) that carries ``label`` (and, when given, the
        label ``aiia.stack=<stack>``: one engine can hold more than one stack's containers)."""
        labels = [label] + ([f"aiia.stack={stack}"] if stack else [])
        listed = self._get_json(
            "/containers/json",
            {
                "all": "1",
                "filters": json.dumps({"label": labels}),
            },
        )
        return [self.inspect(item["Id"]) for item in listed]

    def inspect(self, container_id: str) -> ContainerState:
        raw = self._get_json(f"/containers/{urllib.parse.quote(container_id)}/json")
        state = raw.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        limit = (raw.get("HostConfig") or {}).get("Memory") or None
        return ContainerState(
            id=raw["Id"],
            name=raw.get("Name", "").lstrip("/"),
            labels=(raw.get("Config") or {}).get("Labels") or {},
            state=state.get("Status", "unknown"),
            health=health or None,
            restarts=int(raw.get("RestartCount") or 0),
            started_at=state.get("StartedAt"),
            image=(raw.get("Config") or {}).get("Image", ""),
            memory_limit_bytes=int(limit) if limit else None,
            exit_code=state.get("ExitCode") if state.get("Status") != "running" else None,
            oom_killed=bool(state.get("OOMKilled")),
        )

    def memory_usage(self, container_id: str) -> int | None:
        """Memory in use as `docker stats` shows it: usage minus reclaimable page cache."""
        path = f"/containers/{urllib.parse.quote(container_id)}/stats"
        used = memory_from_stats(self._get_json(path, {"stream": "false", "one-shot": "true"}))
        if used is None:
            # A one-shot read can come back before the engine sampled the container (seen on
            # a loaded host, with memory_stats empty): a second read waits for a sample.
            used = memory_from_stats(self._get_json(path, {"stream": "false"}))
        return used

    def log_tail(self, container_id: str, lines: int) -> list[str]:
        body = self._get(
            f"/containers/{urllib.parse.quote(container_id)}/logs",
            {
                "stdout": "1",
                "stderr": "1",
                "tail": str(lines),
                "timestamps": "1",
            },
        )
        return demultiplex_logs(body)


def memory_from_stats(stats: dict[str, Any]) -> int | None:
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None  # a stopped container has no memory stats
    detail = memory.get("stats") or {}
    # cgroup v2 reports inactive_file, cgroup v1 total_inactive_file (as the docker CLI does).
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return max(int(usage) - int(cache), 0)


def demultiplex_logs(body: bytes) -> list[str]:
    """Log lines from /logs: 8-byte framed stdout/stderr stream, or raw text for a TTY."""
    if len(body) >= 8 and body[0] in (0, 1, 2) and body[1:4] == b"\x00\x00\x00":
        text, position = bytearray(), 0
        while position + 8 <= len(body):
            size = int.from_bytes(body[position + 4 : position + 8], "big")
            text += body[position + 8 : position + 8 + size]
            position += 8 + size
        body = bytes(text)
    return body.decode("utf-8", "replace").splitlines()
