"""Post-deploy smoke test through an environment's public URL.

    python3 -m scripts.smoke --stack prod --url https://api.eduaiia.com --release 2026.11.27-1

It checks what the image contract asks (app/README.md), as the stack file configures it
(`--stack`, `releases.<env>`): the health path answers its status
(`releases.<env>.health`, default GET /healthz/ → 200) and, when the app sends a release
header (`release_header`, default X-Release), that header names the expected release on
every response checked; then the extra checks of `releases.<env>.smoke`: each of `paths`
answers its status (200 unless given), each of `websockets` upgrades and echoes a message.
Nothing else: an app without a front page or WebSockets passes. Without `--stack` the
defaults apply; `--health-path`, `--health-status`, `--release-header`, `--path` and
`--websocket` override or add to what the stack file says. The whole set is tried
`--attempts` times; it fails (exit 1) if the last attempt fails.
`--resolve HOST:PORT:ADDRESS` (as curl's) reaches a stack whose name does not resolve to
it, and `--cafile` trusts a CA of its own (a local stack's self-signed certificate).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

from components.settings.checks import Problems
from components.settings.contract import (
    DEFAULT_HEALTH_PATH,
    DEFAULT_RELEASE_HEADER,
    ContractKeys,
    parse_contract,
)
from components.settings.releases import is_release
from scripts.stack_file import DeliveryError, config_of, stack_path

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


@dataclass
class Expectations:
    """What the smoke test asks of the release: the contract's part of it."""

    health_path: str = DEFAULT_HEALTH_PATH
    health_status: int = 200
    release_header: str | None = DEFAULT_RELEASE_HEADER
    paths: list[tuple[str, int]] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)


def expectations_of_stack(stack: str, environment: str) -> Expectations:
    """The contract of `releases.<environment>` in Pulumi.<stack>.yaml, checked as the
    program checks it (components/settings/contract.py)."""
    path = stack_path(stack)
    releases = config_of(path.read_text(), path.name).get("aiia:releases") or {}
    values = releases.get(environment) if isinstance(releases, dict) else None
    if not isinstance(values, dict):
        raise DeliveryError(f"{path.name} has no aiia:releases.{environment}")
    problems = Problems(stack)
    contract = parse_contract(
        {key: value for key, value in values.items() if key in ContractKeys.__dataclass_fields__},
        f"aiia:releases.{environment}", lambda key: "", problems)
    if problems.items:
        raise DeliveryError("; ".join(problems.items))
    return Expectations(contract.health_path, contract.health_status, contract.release_header,
                        [(smoke.path, smoke.status) for smoke in contract.smoke_paths],
                        list(contract.smoke_websockets))


def check_path(target: Target, release: str, path: str, status: int,
               header: str | None) -> str:
    """GET `path` answers `status`, from `release` when the app names it in `header`."""
    answered, headers, body = get(target, path)
    served = headers.get(header.lower()) if header else None
    if answered != status:
        named = f" ({header} {served})" if header else ""
        raise AssertionError(f"{path} answered {answered}{named}, expected {status}: "
                             f"{body[:200]!r}")
    if header and served != release:
        raise AssertionError(f"{path} was served by release {served!r} ({header}), expected "
                             f"{release!r}")
    return f"{path} {answered}" + (f" from release {served}" if header else "")


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


def check_websocket(target: Target, release: str, path: str = "/ws/echo/") -> str:
    sock = target.connect()
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {target.host}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += _read(sock, 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        if status_line.split()[1:2] != ["101"]:
            raise AssertionError(f"{path} did not upgrade: {status_line}")
        headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
                   for line in header_lines if ":" in line}
        expected = base64.b64encode(hashlib.sha1(  # noqa: S324 - RFC 6455's accept key
            (key + WEBSOCKET_GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise AssertionError(f"{path} answered a wrong Sec-WebSocket-Accept")
        message = f"smoke {release} {time.time():.0f}".encode()
        sock.sendall(_frame(0x1, message))
        first, second = _read(sock, 2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(_read(sock, 2), "big")
        payload = _read(sock, length)
        if (first & 0x0F, payload) != (0x1, message):
            raise AssertionError(f"{path} sent back {payload!r} (opcode {first & 0x0F})")
        sock.sendall(_frame(0x8, (1000).to_bytes(2, "big")))
        return f"{path} upgraded and echoed"
    finally:
        sock.close()


Check = Callable[[Target, str], str]


def checks_of(expected: Expectations) -> list[tuple[str, Check]]:
    """The checks, by name: the health path, then the smoke paths and WebSockets."""
    header = expected.release_header
    checks: list[tuple[str, Check]] = [("health", partial(
        check_path, path=expected.health_path, status=expected.health_status, header=header))]
    checks += [(f"path {path}", partial(check_path, path=path, status=status, header=header))
               for path, status in expected.paths]
    checks += [(f"websocket {path}", partial(check_websocket, path=path))
               for path in expected.websockets]
    return checks


def smoke(target: Target, release: str, expected: Expectations | None = None) -> list[str]:
    """The checks that failed (empty: all passed); each result is printed."""
    failures = []
    for name, check in checks_of(expected or Expectations()):
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
    parser.add_argument("--stack", help="read the contract from Pulumi.<STACK>.yaml")
    parser.add_argument("--environment", help="releases.<ENVIRONMENT> (default: the stack's)")
    parser.add_argument("--health-path", help="instead of the stack file's health path")
    parser.add_argument("--health-status", type=int, help="the status the health path answers")
    parser.add_argument("--release-header",
                        help="the app's release header; '' when it sends none")
    parser.add_argument("--path", action="append", default=[], help="also GET PATH (200)")
    parser.add_argument("--websocket", action="append", default=[],
                        help="also upgrade PATH to a WebSocket and echo a message")
    args = parser.parse_args(argv)
    try:
        if not is_release(args.release):
            raise DeliveryError(f"--release {args.release!r} is not an image tag or digest")
        if args.attempts < 1:
            raise DeliveryError("--attempts must be at least 1")
        target = target_of(args.url, args.resolve, args.cafile, args.timeout)
        expected = _expectations(args)
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for attempt in range(1, args.attempts + 1):
        print(f"smoke test of {args.url} for release {args.release}, "
              f"attempt {attempt}/{args.attempts}")
        failures = smoke(target, args.release, expected)
        if not failures:
            print("smoke test passed")
            return 0
        if attempt < args.attempts:
            time.sleep(args.interval)
    print(f"smoke test failed: {'; '.join(failures)}", file=sys.stderr)
    return 1


def _expectations(args: argparse.Namespace) -> Expectations:
    """The stack file's contract (or the defaults), with the command line's changes."""
    expected = (expectations_of_stack(args.stack, args.environment or args.stack)
                if args.stack else Expectations())
    if args.environment and not args.stack:
        raise DeliveryError("--environment needs --stack (the stack file that releases it)")
    if args.health_path is not None:
        expected.health_path = args.health_path
    if args.health_status is not None:
        expected.health_status = args.health_status
    if args.release_header is not None:
        expected.release_header = args.release_header or None
    expected.paths += [(path, 200) for path in args.path]
    expected.websockets += args.websocket
    for path in [expected.health_path, *args.path, *args.websocket]:
        if not path.startswith("/"):
            raise DeliveryError(f"{path!r} must be a path starting with '/'")
    return expected


if __name__ == "__main__":
    sys.exit(main())
