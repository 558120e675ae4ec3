"""Test scaffolding: a small client for the Docker Engine API, over the engine's unix socket
or, as the Docker provider reaches an `ssh://` host, over `ssh … docker system dial-stdio`
(`DialStdioEngine`)."""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
from datetime import datetime
from typing import Any

SOCKET = "/var/run/docker.sock"


class EngineError(Exception):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class _CommandConnection(http.client.HTTPConnection):
    """HTTP over a command's standard input and output, as docker/cli's commandconn
    (`cli/connhelper/commandconn`) dials `ssh … docker system dial-stdio`; what the command
    printed on stderr (ssh's own errors) is kept for the error message."""

    def __init__(self, command: list[str], timeout: float):
        super().__init__("docker.example.com", timeout=timeout)
        self._command = command
        self._process: subprocess.Popen | None = None
        self._said = ""

    def connect(self) -> None:
        ours, theirs = socket.socketpair()
        # A file, not a pipe: a ControlPersist master forked by ssh may outlive the command.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._process = subprocess.Popen(self._command, stdin=theirs, stdout=theirs,
                                         stderr=self._stderr)
        theirs.close()
        ours.settimeout(self.timeout)
        self.sock = ours

    def stderr(self) -> str:
        """What the command said on stderr (http.client closes the connection on an error,
        which ends the command)."""
        self.close()
        return self._said

    def close(self) -> None:
        super().close()
        if self._process is None:
            return
        try:
            # Our end closed: ssh sees EOF and ends, or has ended already (a failed dial).
            self._process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stderr.seek(0)
        self._said = self._stderr.read().decode(errors="replace").strip()
        self._stderr.close()
        self._process = None


# The newest Engine API version the Docker provider's client speaks: pulumi-docker v5 links
# github.com/docker/docker v28.5.2 (provider/go.mod), whose api.DefaultVersion is 1.51.
PROVIDER_CLIENT_API_VERSION = "1.51"


def negotiated_api_version(server: str | None,
                           client: str = PROVIDER_CLIENT_API_VERSION) -> str:
    """The API version a client made with `client.WithAPIVersionNegotiation()` (as
    terraform-provider-docker's `Config.NewClient` makes every one) speaks to an engine whose
    `/_ping` says `server` in its `API-Version` header (docker/docker `client/client.go`
    `negotiateAPIVersionPing`): the lower of the two; an engine that says none is taken
    for 1.24, the last version before the header existed. E.g. 1.45 with Debian 13's
    docker.io 26.1, 1.41 with Debian 12's 20.10."""
    server = server or "1.24"

    def number(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    return server if number(server) < number(client) else client


class DockerEngine:
    def __init__(self, path: str = SOCKET, timeout: float = 120.0):
        self.path = path
        self.timeout = timeout
        # Once negotiated (`negotiate`), every request names it (`/v1.45/containers/…`), as
        # the Go client does; until then paths are unversioned, which an engine serves at
        # its own newest version.
        self.api_version: str | None = None
        # What `docker inspect` said of each container when its health gate passed
        # (`wait_healthy`): its State.Health.Log then holds the checks that led to it.
        self.gates: dict[str, dict] = {}

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        return _UnixConnection(self.path, timeout)

    def _exchange(self, method: str, url: str, payload: bytes | None, content_type: str,
                  timeout: float | None) -> tuple[http.client.HTTPResponse, bytes]:
        connection = self._connection(timeout or self.timeout)
        if self.api_version is not None:
            url = f"/v{self.api_version}{url}"
        try:
            headers = {"Content-Type": content_type} if payload is not None else {}
            connection.request(method, url, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            said = connection.stderr() if isinstance(connection, _CommandConnection) else ""
            raise EngineError(f"{method} {url}: {error}{': ' + said if said else ''}") \
                from error
        finally:
            connection.close()
        return response, data

    def request(self, method: str, url: str, body: Any = None, *, raw: bytes | None = None,
                content_type: str = "application/json", ok: tuple[int, ...] = (200, 201, 204),
                timeout: float | None = None) -> Any:
        payload = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        response, data = self._exchange(method, url, payload, content_type, timeout)
        if response.status not in ok:
            raise EngineError(f"{method} {url}: {response.status} {data.decode(errors='replace')}")
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data

    def negotiate(self) -> str:
        """`GET /_ping`, then the API version the provider's client would speak from then on
        (`negotiated_api_version`), which every later request names."""
        response, data = self._exchange("GET", "/_ping", None, "application/json", None)
        if response.status != 200:
            raise EngineError(f"GET /_ping: {response.status} {data.decode(errors='replace')}")
        self.api_version = negotiated_api_version(response.getheader("API-Version"))
        return self.api_version

    # ---------------------------------------------------------------- objects

    def image(self, reference: str) -> dict | None:
        quoted = urllib.parse.quote(reference, safe="")
        try:
            return self.request("GET", f"/images/{quoted}/json")
        except EngineError:
            return None

    def container(self, name: str) -> dict | None:
        try:
            return self.request("GET", f"/containers/{urllib.parse.quote(name)}/json")
        except EngineError:
            return None

    def containers(self, label: str) -> list[dict]:
        filters = urllib.parse.quote(json.dumps({"label": [label]}))
        return self.request("GET", f"/containers/json?all=1&filters={filters}")

    def create_container(self, name: str, config: dict) -> str:
        result = self.request("POST", f"/containers/create?name={urllib.parse.quote(name)}",
                              config)
        return result["Id"]

    def put_file(self, container: str, path: str, content: bytes, mode: int) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(content)
            info.mode = mode
            archive.addfile(info, io.BytesIO(content))
        self.request("PUT", f"/containers/{container}/archive?path=/", raw=buffer.getvalue(),
                     content_type="application/x-tar")

    def start(self, name: str) -> None:
        self.request("POST", f"/containers/{urllib.parse.quote(name)}/start", ok=(204, 304))

    def stop(self, name: str, grace_seconds: int) -> None:
        self.request("POST", f"/containers/{urllib.parse.quote(name)}/stop?t={grace_seconds}",
                     ok=(204, 304, 404), timeout=grace_seconds + 30)

    def remove_container(self, name: str) -> None:
        self.request("DELETE", f"/containers/{urllib.parse.quote(name)}?force=1&v=0",
                     ok=(204, 404))

    def wait_healthy(self, name: str, timeout: float) -> None:
        """terraform-provider-docker's health wait (resourceDockerContainerCreate,
        `waitForHealthyState`): inspect every second until healthy; one failed
        ContainerInspect fails the gate at once ("error inspecting container state"), which
        over ssh:// a dropped connection does. Unlike upstream, an exited container fails it
        early rather than at wait_timeout: the same init error, sooner."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                details = self.request("GET", f"/containers/{urllib.parse.quote(name)}/json")
            except EngineError as error:
                raise EngineError(f"error inspecting container state: {error}") from error
            state = details.get("State", {})
            health = state.get("Health", {}).get("Status")
            if state.get("Running") and health in (None, "healthy"):
                self.gates[name] = details
                return
            if not state.get("Running") and state.get("Status") in ("exited", "dead"):
                raise EngineError(f"container {name} exited ({state.get('ExitCode')}): "
                                  f"{self.logs(name)[-2000:]}")
            if time.monotonic() > deadline:
                raise EngineError(f"container {name} not healthy after {timeout:.0f}s "
                                  f"(health: {health}); {health_log(state)}; "
                                  f"last logs: {self.logs(name)[-2000:]}")
            time.sleep(1.0)  # upstream: time.Sleep(time.Second)

    def logs(self, name: str, tail: int = 100) -> str:
        try:
            data = self.request("GET", f"/containers/{urllib.parse.quote(name)}/logs"
                                f"?stdout=1&stderr=1&tail={tail}")
        except EngineError as error:
            return str(error)
        if isinstance(data, bytes | bytearray):
            return _demultiplex(bytes(data))
        return json.dumps(data)

    def create_network(self, name: str, driver: str, subnets: list[str],
                       ip_ranges: list[str | None] | None = None,
                       gateways: list[str | None] | None = None) -> str:
        config: dict[str, Any] = {"Name": name, "Driver": driver, "CheckDuplicate": True}
        if subnets:
            ranges = ip_ranges or [None] * len(subnets)
            gateways = gateways or [None] * len(subnets)
            config["IPAM"] = {"Config": [
                {"Subnet": subnet, **({"IPRange": ip_range} if ip_range else {}),
                 **({"Gateway": gateway} if gateway else {})}
                for subnet, ip_range, gateway in zip(subnets, ranges, gateways, strict=True)]}
        return self.request("POST", "/networks/create", config)["Id"]

    def remove_network(self, name: str) -> None:
        self.request("DELETE", f"/networks/{urllib.parse.quote(name)}", ok=(204, 404))

    def create_volume(self, name: str) -> str:
        return self.request("POST", "/volumes/create", {"Name": name})["Name"]

    def remove_volume(self, name: str) -> None:
        self.request("DELETE", f"/volumes/{urllib.parse.quote(name)}?force=1", ok=(204, 404))


class DialStdioEngine(DockerEngine):
    """The engine of an `ssh://` Docker host, reached as docker/cli's connection helper does
    (`cli/connhelper/connhelper.go`, which terraform-provider-docker's `Config.NewClient`
    uses for an ssh:// host with the provider's `ssh_opts`): each connection runs
    `ssh <ssh_opts> -o ConnectTimeout=30 -T -l <user> -p <port> -- <host> docker system
    dial-stdio` (see `dial_stdio_command`) and speaks HTTP over its stdin and stdout."""

    def __init__(self, command: list[str], timeout: float = 120.0):
        super().__init__(path="", timeout=timeout)
        self.command = command

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        return _CommandConnection(self.command, timeout)


def dial_stdio_command(docker_host: str, ssh_opts: list[str]) -> list[str]:
    """The argv docker/cli's `getConnectionHelper` builds for an ssh:// daemon URL: the
    caller's ssh flags, `-o ConnectTimeout=30` unless they name a ConnectTimeout
    (`addSSHTimeout`), `-T` unless present (`disablePseudoTerminalAllocation`), then
    `ssh.Spec`'s `-l user`, `-p port`, `--`, host, and the remote `docker system dial-stdio`
    (`docker --host=unix://<path>` first when the URL has a path)."""
    url = urllib.parse.urlsplit(docker_host)
    if url.scheme != "ssh" or not url.hostname:
        raise ValueError(f"{docker_host!r} is not an ssh://[user@]host[:port] URL")
    if url.password is not None or url.query or url.fragment:
        raise ValueError(f"{docker_host!r}: no password, query or fragment in an ssh:// URL")
    flags = list(ssh_opts)
    if "ConnectTimeout" not in "".join(flags):
        flags.append("-o ConnectTimeout=30")
    if "-T" not in flags:
        flags.append("-T")
    spec = [*(["-l", url.username] if url.username else []),
            *(["-p", str(url.port)] if url.port else []), "--", url.hostname]
    remote = ["docker", "system", "dial-stdio"]
    if url.path.strip("/"):
        remote = ["docker", f"--host=unix://{url.path}", "system", "dial-stdio"]
    return ["ssh", *flags, *spec, *remote]


def health_log(state: dict) -> str:
    """The last health checks Docker ran (State.Health.Log): when, exit code, output."""
    checks = (state.get("Health") or {}).get("Log") or []
    if not checks:
        return "no health check has run"
    lines = [f"{check.get('Start', '?')[:23]} exit {check.get('ExitCode')}: "
             f"{(check.get('Output') or '').strip()[-300:] or '(no output)'}"
             for check in checks]
    return "health checks:\n  " + "\n  ".join(lines)


def engine_time(text: str) -> float:
    """An engine timestamp (RFC 3339 with nanoseconds, `2026-12-06T18:20:01.123456789Z`) in
    seconds since the epoch, to the microsecond."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    fraction = (fraction.split("+")[0].split("-")[0] + "000000")[:6]
    return datetime.fromisoformat(f"{whole}.{fraction}+00:00").timestamp()


def gate_checks(details: dict) -> tuple[float, list[tuple[float, float, int]]]:
    """A container's start and the health checks that led to its gate: (StartedAt,
    [(check start, check end, exit code)]), all in the engine's own clock. Docker keeps the
    last five checks (moby `daemon/health.go` maxLogEntries)."""
    state = details.get("State") or {}
    checks = [(engine_time(check["Start"]), engine_time(check["End"]), check.get("ExitCode"))
              for check in (state.get("Health") or {}).get("Log") or []]
    return engine_time(state["StartedAt"]), checks


def _demultiplex(data: bytes) -> str:
    """Docker's log stream: 8-byte frame headers before each chunk (non-TTY containers)."""
    output = []
    while len(data) >= 8:
        size = int.from_bytes(data[4:8], "big")
        output.append(data[8:8 + size])
        data = data[8 + size:]
    return b"".join(output).decode(errors="replace")
