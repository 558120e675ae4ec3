"""A GET-only, allowlisting proxy in front of the Docker socket, the collector's only way to
Docker (review L2).

The collector parses what others write (access logs, container logs, probe bodies); with the
Docker socket itself, a parsing bug there would be host root. It talks to this instead,
which passes on exactly the reads ``docker_api.DockerClient`` makes:

    GET [/v1.NN]/containers/json              all, filters
    GET [/v1.NN]/containers/{id}/json
    GET [/v1.NN]/containers/{id}/stats        stream=false, one-shot
    GET [/v1.NN]/containers/{id}/logs         stdout, stderr, tail, timestamps (no follow)

Anything else is refused before Docker sees it (403 for a request that is well formed but
not allowed, 400 for one that is not well formed), with one log line naming the refusal:
other methods, other paths (archive, export, attach, exec, images, secrets, …), other query
parameters, percent-encoding or dot segments in the path, heads over 8 KiB, bytes after the
head, and the headers a second request or a protocol switch would hide behind
(Transfer-Encoding, Content-Length, Upgrade, Connection: upgrade, Expect, folded lines).

The collector's head is never forwarded: each request to Docker is written afresh from the
validated path and parameters (``Connection: close``), and the answer is streamed back
as it comes, within a deadline. No dependency outside the standard library.

On a VPS systemd owns the listening socket (aiia-dashboard-docker-proxy.socket, 0660, the
collector's group) and starts this on the first connection; it exits after a few idle
seconds, so it holds no memory between collections.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable

MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_S = 5.0
# The collector's own timeout per call is 10 s (docker_api.DockerClient); a one-shot stats
# read or a 200-line log tail takes well under a second.
RESPONSE_DEADLINE_S = 20.0
MAX_CONNECTIONS = 8  # the collector reads at most four stats at once
CHUNK_BYTES = 65536
SYSTEMD_FIRST_FD = 3

API_VERSION = r"(?:/v1\.[0-9]{1,3})?"
CONTAINER = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
BOOLEAN = re.compile(r"0|1|true|false")
FALSE = re.compile(r"0|false")
TAIL = re.compile(r"all|[0-9]{1,5}")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers that carry a body, a second request or a protocol switch: a GET needs none.
FORBIDDEN_HEADERS = ("transfer-encoding", "content-length", "upgrade", "expect")


class Refusal(Exception):
    """A request that is not passed on: HTTP status and the reason logged and answered."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def response(self) -> bytes:
        body = f"aiia-docker-proxy: refused: {self.reason}\n".encode()
        phrase = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large",
                  502: "Bad Gateway"}[self.status]
        return (f"HTTP/1.1 {self.status} {phrase}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class ClosedEarly(Exception):
    """A connection closed before sending a byte: a health check's, nothing to refuse."""


def _label_filters(value: str) -> bool:
    """The collector's `filters`: {"label": ["key", "key=value", …]} and nothing else."""
    try:
        filters = json.loads(value)
    except ValueError:
        return False
    return (isinstance(filters, dict) and set(filters) == {"label"}
            and isinstance(filters["label"], list) and len(filters["label"]) <= 8
            and all(isinstance(label, str) and len(label) <= 256 for label in filters["label"]))


class Route:
    """A read the collector makes: its path and, per query parameter, its allowed values.
    (Plain classes here, not dataclasses: importing those costs the proxy ~1.3 MB.)"""

    def __init__(self, name: str, path: re.Pattern[str],
                 parameters: dict[str, re.Pattern[str] | Callable[[str], bool]]) -> None:
        self.name, self.path, self.parameters = name, path, parameters

    def allows(self, key: str, value: str) -> bool:
        check = self.parameters.get(key)
        if check is None:
            return False
        return bool(check.fullmatch(value)) if isinstance(check, re.Pattern) else check(value)


ROUTES = (
    Route("list containers", re.compile(rf"{API_VERSION}/containers/json"),
          {"all": BOOLEAN, "filters": _label_filters}),
    Route("inspect a container", re.compile(rf"{API_VERSION}/containers/{CONTAINER}/json"), {}),
    # stream=false: a streaming stats read never ends.
    Route("a container's stats", re.compile(rf"{API_VERSION}/containers/{CONTAINER}/stats"),
          {"stream": FALSE, "one-shot": BOOLEAN}),
    # No follow: a followed log never ends.
    Route("a container's log tail", re.compile(rf"{API_VERSION}/containers/{CONTAINER}/logs"),
          {"stdout": BOOLEAN, "stderr": BOOLEAN, "timestamps": BOOLEAN, "tail": TAIL}),
)


class Allowed:
    """A request that passed: what Docker will be asked, and nothing else of the client's."""

    def __init__(self, route: str, path: str, parameters: tuple[tuple[str, str], ...]) -> None:
        self.route, self.path, self.parameters = route, path, parameters

    def upstream_head(self) -> bytes:
        """The request Docker gets: written here, nothing of the client's head but the
        validated path and parameters."""
        query = f"?{urllib.parse.urlencode(self.parameters)}" if self.parameters else ""
        return (f"GET {self.path}{query} HTTP/1.1\r\nHost: docker\r\n"
                "User-Agent: aiia-docker-proxy\r\nConnection: close\r\n\r\n").encode()


def _lines(head: bytes) -> list[str]:
    if len(head) > MAX_HEAD_BYTES:
        raise Refusal(431, f"head over {MAX_HEAD_BYTES} bytes")
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise Refusal(400, "bytes outside ASCII in the head") from None
    if not text.endswith("\r\n\r\n"):
        raise Refusal(400, "head not ended by an empty line")
    lines = text[:-4].split("\r\n")
    if any("\r" in line or "\n" in line or "\0" in line for line in lines):
        raise Refusal(400, "a bare CR, LF or NUL in the head")
    return lines


def _check_headers(lines: list[str]) -> None:
    for line in lines:
        if line[:1] in (" ", "\t"):
            raise Refusal(400, "a folded header line")
        name, colon, value = line.partition(":")
        if not colon or not HEADER_NAME.fullmatch(name):
            raise Refusal(400, f"a malformed header line {line[:80]!r}")
        name = name.lower()
        if name in FORBIDDEN_HEADERS:
            raise Refusal(400, f"header {name} (a GET has no body and switches no protocol)")
        if name == "connection" and "upgrade" in value.lower():
            raise Refusal(400, "Connection: upgrade")


def _parameters(route: Route, query: str) -> tuple[tuple[str, str], ...]:
    if not query:
        return ()
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True,
                                       max_num_fields=8, errors="strict")
    except ValueError as error:
        raise Refusal(400, f"a malformed query ({error})") from None
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Refusal(400, "a query parameter given twice")
    for key, value in pairs:
        if not route.allows(key, value):
            raise Refusal(403, f"query parameter {key[:40]!r}={value[:80]!r} not allowed "
                               f"on {route.name}")
    return tuple(pairs)


def parse_request(head: bytes) -> Allowed:
    """The allowed request a head asks for, or the Refusal that says why not."""
    request_line, *header_lines = _lines(head)
    match = re.fullmatch(r"([!-~]+) ([!-~]+) HTTP/1\.[01]", request_line)
    if match is None:
        raise Refusal(400, f"a malformed request line {request_line[:120]!r}")
    method, target = match.groups()
    if method != "GET":
        raise Refusal(403, f"method {method[:20]} (only GET is passed on)")
    _check_headers(header_lines)
    path, _, query = target.partition("?")
    if "%" in path or "\\" in path:
        raise Refusal(400, f"an encoded or escaped path {path[:120]!r}")
    if not path.startswith("/") or any(
            segment in ("", ".", "..") for segment in path[1:].split("/")):
        raise Refusal(400, f"an empty or dot segment in the path {path[:120]!r}")
    for route in ROUTES:
        if route.path.fullmatch(path):
            return Allowed(route.name, path, _parameters(route, query))
    raise Refusal(403, f"path {path[:120]!r} is not on the allowlist")


def read_head(client: socket.socket) -> tuple[bytes, bytes]:
    """The request head, up to its empty line, and what came after it in the same reads."""
    head = b""
    deadline = time.monotonic() + HEAD_TIMEOUT_S  # for the whole head, not each read
    while b"\r\n\r\n" not in head:
        if len(head) > MAX_HEAD_BYTES:
            raise Refusal(431, f"head over {MAX_HEAD_BYTES} bytes")
        client.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = client.recv(4096)
        except TimeoutError:
            raise TimeoutError(f"no complete head within {HEAD_TIMEOUT_S:g} s") from None
        if not chunk and not head:
            raise ClosedEarly
        if not chunk:
            raise Refusal(400, "connection closed before the end of the head")
        head += chunk
    end = head.index(b"\r\n\r\n") + 4
    return head[:end], head[end:]


def relay(allowed: Allowed, client: socket.socket, upstream_path: str,
          deadline_s: float = RESPONSE_DEADLINE_S) -> int:
    """Send Docker the fresh request and stream its answer back; the bytes relayed."""
    deadline = time.monotonic() + deadline_s
    relayed = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
        upstream.settimeout(deadline_s)
        try:
            upstream.connect(upstream_path)
        except OSError as error:
            raise Refusal(502, f"Docker at {upstream_path}: {error.strerror or error}") from None
        upstream.sendall(allowed.upstream_head())
        client.settimeout(deadline_s)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"answer still streaming after {deadline_s:g} s")
            upstream.settimeout(remaining)
            chunk = upstream.recv(CHUNK_BYTES)
            if not chunk:
                return relayed
            client.sendall(chunk)
            relayed += len(chunk)


def _log(message: str) -> None:
    print(f"aiia-docker-proxy: {message}", file=sys.stderr, flush=True)


def handle(client: socket.socket, upstream_path: str, log: Callable[[str], None] = _log,
           deadline_s: float = RESPONSE_DEADLINE_S) -> None:
    """One connection, one request."""
    with client:
        client.settimeout(HEAD_TIMEOUT_S)
        try:
            head, after = read_head(client)
            allowed = parse_request(head)  # a POST is refused as one, body or not
            if after:
                # A GET has no body; a second request in the same write is how smuggling
                # starts.
                raise Refusal(400, "bytes after the head")
            relay(allowed, client, upstream_path, deadline_s)
        except Refusal as refusal:
            log(f"refused ({refusal.status}): {refusal.reason}")
            with contextlib.suppress(OSError):  # the client may be gone already
                client.sendall(refusal.response())
        except ClosedEarly:
            pass
        except OSError as error:  # a timeout included: the client gets a cut answer
            log(f"connection dropped: {error}")


def serve(listener: socket.socket, upstream_path: str, idle_exit_s: float | None,
          log: Callable[[str], None] = _log) -> None:
    """Answer connections, each in a thread of its own (at most MAX_CONNECTIONS at once);
    with idle_exit_s, return once that long has passed with none open or arriving."""
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    open_connections = [0]
    lock = threading.Lock()
    listener.settimeout(idle_exit_s)

    def run(client: socket.socket) -> None:
        try:
            handle(client, upstream_path, log)
        finally:
            with lock:
                open_connections[0] -= 1
            slots.release()

    while True:
        try:
            client, _ = listener.accept()
        except TimeoutError:
            with lock:
                if open_connections[0] == 0:
                    return
            continue
        slots.acquire()
        with lock:
            open_connections[0] += 1
        threading.Thread(target=run, args=(client,), daemon=True).start()


def listening_socket(path: str | None) -> socket.socket:
    """systemd's socket (socket activation: fd 3) if it passed one, else one bound at path
    (0660: the owner and its group; the local stack's container)."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        return socket.socket(fileno=SYSTEMD_FIRST_FD)
    if path is None:
        raise SystemExit("aiia-docker-proxy: no socket from systemd and no --listen path")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(16)
    return listener


USAGE = ("usage: python3 -m dashboard.docker_proxy --upstream DOCKER_SOCKET "
         "[--listen PATH] [--idle-exit SECONDS]")


def main(argv: list[str]) -> int:
    """Its own entry point, not `python3 -m dashboard`'s: that one's imports (argparse, the
    config, the password hashing) would double what this process holds (~11 MB here)."""
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    if len(argv) % 2 or "--upstream" not in options or set(options) - {
            "--upstream", "--listen", "--idle-exit"}:
        print(USAGE, file=sys.stderr)
        return 2
    idle_exit = options.get("--idle-exit")
    serve(listening_socket(options.get("--listen")), options["--upstream"],
          float(idle_exit) if idle_exit else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
