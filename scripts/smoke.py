"""Post-deploy smoke test through an environment's public URL.

    python3 -m scripts.smoke --url https://api.eduaiia.com --release 2026.11.27-1

Three checks, all through nginx as a user reaches it: the health endpoint answers 200 with
status ok (database and cache), the app's front page answers 2xx from the expected release
(its X-Release header), and a WebSocket on /ws/echo/ upgrades and echoes a message. The
whole set is tried `--attempts` times; it fails (exit 1) if the last attempt fails.
`--resolve HOST:PORT:ADDRESS` (as curl's) reaches a stack whose name does not resolve to
it, and `--cafile` trusts a CA of its own (a local stack's self-signed certificate).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from components.settings.releases import is_release
from scripts.stack_file import DeliveryError

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


@dataclass
class Target:
    host: str
    port: int
    address: str  # where to connect; the host is still what TLS and HTTP name
    context: ssl.SSLContext
    timeout: float

    def connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        return self.context.wrap_socket(raw, server_hostname=self.host)


def target_of(url: str, resolve: str | None, cafile: str | None, timeout: float) -> Target:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise DeliveryError(f"--url {url!r} must be https://HOST[:PORT] (the public URL)")
    port = parts.port or 443
    address = parts.hostname
    if resolve:
        try:
            name, resolve_port, address = resolve.rsplit(":", 2)
        except ValueError:
            raise DeliveryError(f"--resolve {resolve!r} must be HOST:PORT:ADDRESS") from None
        if (name, resolve_port) != (parts.hostname, str(port)):
            raise DeliveryError(f"--resolve {resolve!r} does not name {parts.hostname}:{port}")
    context = ssl.create_default_context(cafile=cafile)
    return Target(parts.hostname, port, address, context, timeout)


class _Connection(http.client.HTTPSConnection):
    def __init__(self, target: Target):
        super().__init__(target.host, target.port, timeout=target.timeout)
        self.target = target

    def connect(self) -> None:
        self.sock = self.target.connect()


def get(target: Target, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = _Connection(target)
    try:
        connection.request("GET", path, headers={"Cache-Control": "no-cache"})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def check_health(target: Target, release: str) -> str:
    status, headers, body = get(target, "/healthz/")
    if status != 200:
        raise AssertionError(f"/healthz/ answered {status}: {body[:200]!r}")
    document = json.loads(body)
    if document.get("status") != "ok":
        raise AssertionError(f"/healthz/ says {document}")
    return f"/healthz/ 200, checks {document.get('checks')}"


def check_release(target: Target, release: str) -> str:
    status, headers, body = get(target, "/")
    served = headers.get("x-release")
    if not 200 <= status < 300:
        raise AssertionError(f"/ answered {status} (X-Release {served}): {body[:200]!r}")
    if served != release:
        raise AssertionError(f"/ was served by release {served!r}, expected {release!r}")
    return f"/ {status} from release {served}"


def _frame(opcode: int, payload: bytes) -> bytes:
    """A client frame: FIN, masked (RFC 6455 §5.3), payload under 64 KiB."""
    mask = os.urandom(4)
    size = bytes([0x80 | len(payload)]) if len(payload) < 126 else \
        bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return bytes([0x80 | opcode]) + size + mask + bytes(
        byte ^ mask[index % 4] for index, byte in enumerate(payload))


def _read(sock: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError("the WebSocket was closed mid-frame")
        data += chunk
    return data


def check_websocket(target: Target, release: str) -> str:
    sock = target.connect()
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws/echo/ HTTP/1.1\r\nHost: {target.host}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += _read(sock, 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        if status_line.split()[1:2] != ["101"]:
            raise AssertionError(f"/ws/echo/ did not upgrade: {status_line}")
        headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
                   for line in header_lines if ":" in line}
        expected = base64.b64encode(hashlib.sha1(  # noqa: S324 - RFC 6455's accept key
            (key + WEBSOCKET_GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise AssertionError("/ws/echo/ answered a wrong Sec-WebSocket-Accept")
        message = f"smoke {release} {time.time():.0f}".encode()
        sock.sendall(_frame(0x1, message))
        first, second = _read(sock, 2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(_read(sock, 2), "big")
        payload = _read(sock, length)
        if (first & 0x0F, payload) != (0x1, message):
            raise AssertionError(f"/ws/echo/ sent back {payload!r} (opcode {first & 0x0F})")
        sock.sendall(_frame(0x8, (1000).to_bytes(2, "big")))
        return "/ws/echo/ upgraded and echoed"
    finally:
        sock.close()


CHECKS = (("health", check_health), ("release", check_release), ("websocket", check_websocket))


def smoke(target: Target, release: str) -> list[str]:
    """The checks that failed (empty: all passed); each result is printed."""
    failures = []
    for name, check in CHECKS:
        try:
            print(f"ok   {name}: {check(target, release)}")
        except (AssertionError, OSError, ValueError, http.client.HTTPException) as error:
            print(f"FAIL {name}: {error}")
            failures.append(f"{name}: {error}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the public URL, https://HOST[:PORT]")
    parser.add_argument("--release", required=True, help="the release that must serve")
    parser.add_argument("--resolve", help="HOST:PORT:ADDRESS, connect there instead")
    parser.add_argument("--cafile", help="a CA bundle to trust instead of the system's")
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between attempts")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        if not is_release(args.release):
            raise DeliveryError(f"--release {args.release!r} is not an image tag or digest")
        if args.attempts < 1:
            raise DeliveryError("--attempts must be at least 1")
        target = target_of(args.url, args.resolve, args.cafile, args.timeout)
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for attempt in range(1, args.attempts + 1):
        print(f"smoke test of {args.url} for release {args.release}, "
              f"attempt {attempt}/{args.attempts}")
        failures = smoke(target, args.release)
        if not failures:
            print("smoke test passed")
            return 0
        if attempt < args.attempts:
            time.sleep(args.interval)
    print(f"smoke test failed: {'; '.join(failures)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
