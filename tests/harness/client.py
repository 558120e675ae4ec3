"""Test scaffolding: HTTPS and WebSocket requests to nginx on 127.0.0.1 with the right SNI."""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import socket
import ssl
import struct
from dataclasses import dataclass


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # self-signed test certificates
    return context


class SniHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 that presents `server_name` (nginx picks the server by SNI)."""

    def __init__(self, port: int, server_name: str, timeout: float = 10.0):
        super().__init__("127.0.0.1", port, timeout=timeout, context=_context())
        self.server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.server_name)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def https_request(port: int, domain: str, path: str, method: str = "GET",
                  body: bytes | None = None, headers: dict[str, str] | None = None,
                  timeout: float = 10.0) -> Response:
    connection = SniHTTPSConnection(port, domain, timeout)
    try:
        connection.request(method, path, body=body, headers={"Host": domain, **(headers or {})})
        response = connection.getresponse()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()},
                        response.read())
    finally:
        connection.close()


class WebSocket:
    """A minimal RFC 6455 client (text frames), enough to test upgrades through nginx."""

    def __init__(self, port: int, domain: str, path: str, timeout: float = 10.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout)
        self.sock = _context().wrap_socket(raw, server_hostname=domain)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {domain}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            head += chunk
        status_line = head.split(b"\r\n", 1)[0].decode()
        self.status = int(status_line.split()[1]) if status_line else 0

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionResetError("connection closed mid-frame")
            data += chunk
        return data

    def receive(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next data or close frame: 1 text, 2 binary, 8 close.
        Pings from the server are answered with a pong, as any client must."""
        while True:
            first, second = self._read_exact(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read_exact(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read_exact(8))[0]
            opcode, payload = first & 0x0F, self._read_exact(length)
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            return opcode, payload

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def assert_websocket_echoes(port: int, domain: str, text: str, path: str = "/ws/echo/") -> None:
    """A WebSocket through nginx upgrades (101) and echoes `text` back."""
    socket = WebSocket(port, domain, path)
    try:
        assert socket.status == 101, socket.status
        socket.send_text(text)
        assert socket.receive() == (1, text.encode())
    finally:
        socket.close()
