"""Test scaffolding: a bounded HTTPS load from 127.0.0.1, paced like steady user traffic.

    load = Load(stack.https_port, stack.domain("prod"), rate=150, total=12000)
    load.start()
    ...                       # release, rollback, …
    load.wait()
    print(load.summary().line())
    print(load.summary(start=switch_started, end=switch_finished).line())

Requests are scheduled at a fixed rate (request i at start + i / rate) and handed to
`connections` worker threads, each holding one keep-alive connection (TLS with SNI = the
domain, HTTP/1.1), so a slow response delays nothing but its own connection. A request that
starts late (every connection busy, or the machine too loaded to run the generator) moves the
rest of the schedule back by its lateness, so the client never catches up in a burst above
`rate`: on a loaded machine it once fell 6,685 requests behind at 120/s and then sent them at
once, over nginx's per-address limit (429s no user at that rate would see). Late requests are
counted (`late`); the schedule then ends later, still within the hard deadline.

HTTP semantics are a browser's: when a *reused* keep-alive connection turns out to be closed
by the server before any byte of the response arrived (nginx closes idle keep-alive
connections when an old worker shuts down after a reload), the idempotent GET is retried
once on a new connection (RFC 9112 §9.3.1) and counted as a retry, not a failure. Every
other error, a non-2xx status, or a retry that fails too, is a failure.

Bounded in requests (`total`) and in time (`max_seconds`, a hard deadline after which no
request starts); it stops by itself. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

# A request that starts this much later than its slot in the schedule counts as late: the
# generator (or every connection) was busy, so the offered rate fell behind.
LATE_SECONDS = 0.1


class Record(NamedTuple):
    """One request as the client saw it. Times are time.monotonic() seconds."""

    started: float
    finished: float
    outcome: int | str  # the HTTP status, or the kind of connection error
    release: str  # the response's X-Release ("" when none)
    retried: bool  # sent a second time after a reused connection was found closed

    @property
    def ok(self) -> bool:
        return isinstance(self.outcome, int) and 200 <= self.outcome < 300

    @property
    def latency(self) -> float:
        return self.finished - self.started


@dataclass(frozen=True)
class ReleaseSeen:
    release: str
    first: float  # monotonic time the first response carrying it finished
    last: float
    count: int


@dataclass
class Summary:
    """Counts and latencies of the requests started in [start, end)."""

    start: float | None
    end: float | None
    requests: int
    failures: int
    failure_kinds: dict[str, int]
    retries: int
    late: int  # started more than LATE_SECONDS after their slot
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    releases: list[ReleaseSeen] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return (self.end - self.start) if self.start is not None and self.end is not None else 0

    @property
    def rate(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    def line(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        kinds = ", ".join(f"{kind}: {count}" for kind, count in
                          sorted(self.failure_kinds.items())) or "none"
        releases = " → ".join(f"{seen.release}×{seen.count}" for seen in self.releases) or "-"
        return (f"requests {self.requests} ({self.rate:.0f}/s over {self.duration:.1f} s), "
                f"failures {self.failures} ({kinds}), retries {self.retries}, "
                f"late {self.late}, p50 {ms(self.p50_ms)}, p99 {ms(self.p99_ms)}, "
                f"max {ms(self.max_ms)}, releases {releases}")


def percentile(values: list[float], percent: float) -> float | None:
    """Nearest-rank percentile (the smallest value with `percent` % of values ≤ it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def failure_kind(outcome: int | str) -> str:
    return f"HTTP {outcome}" if isinstance(outcome, int) else outcome


def summarize(records: list[Record], start: float | None = None, end: float | None = None,
              late: int = 0) -> Summary:
    chosen = [record for record in records
              if (start is None or record.started >= start)
              and (end is None or record.started < end)]
    failures = Counter(failure_kind(r.outcome) for r in chosen if not r.ok)
    # Latency of every request that got a response (a 5xx is slow or fast too); connection
    # errors are counted as failures, not timed.
    latencies = [r.latency * 1000 for r in chosen if isinstance(r.outcome, int)]
    seen: dict[str, ReleaseSeen] = {}
    for record in sorted(chosen, key=lambda r: r.finished):
        if not record.release:
            continue
        previous = seen.get(record.release)
        seen[record.release] = ReleaseSeen(
            record.release, previous.first if previous else record.finished, record.finished,
            (previous.count if previous else 0) + 1)
    if chosen:
        start = min(r.started for r in chosen) if start is None else start
        end = max(r.started for r in chosen) if end is None else end
    return Summary(
        start=start, end=end, requests=len(chosen), failures=sum(failures.values()),
        failure_kinds=dict(failures), retries=sum(r.retried for r in chosen), late=late,
        p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
        max_ms=max(latencies) if latencies else None,
        releases=sorted(seen.values(), key=lambda s: s.first))


class NothingReceived(Exception):
    """The server closed (or reset) the connection before any byte of the response."""


class BadResponse(Exception):
    pass


class Connection:
    """One keep-alive HTTPS connection to 127.0.0.1 presenting `domain` by SNI."""

    def __init__(self, port: int, domain: str, timeout: float, context: ssl.SSLContext):
        self.port, self.domain, self.timeout, self.context = port, domain, timeout, context
        self.sock: ssl.SSLSocket | None = None
        self.buffer = b""
        self.served = 0  # responses read on the current connection

    @property
    def reused(self) -> bool:
        return self.sock is not None and self.served > 0

    def open(self) -> None:
        self.close()
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=self.domain)
        except BaseException:
            raw.close()
            raise
        self.buffer = b""
        self.served = 0

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None

    def get(self, path: str, deadline: float) -> tuple[int, dict[str, str]]:
        """One GET; (status, lower-cased headers). Raises NothingReceived when the server
        closed the connection before sending a single byte of the response."""
        return self.request("GET", path, deadline)

    def request(self, method: str, path: str, deadline: float, body: bytes = b"",
                headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, dict[str, str]]:
        """One request, as `get`; a body goes with its Content-Length."""
        assert self.sock is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.domain}", "User-Agent: aiia-load",
                 "Accept: */*", *(f"{name}: {value}" for name, value in headers)]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        try:
            self.sock.sendall(request)
        except (ConnectionError, ssl.SSLError) as error:
            raise NothingReceived(type(error).__name__) from error
        head = self._read_head(deadline)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise BadResponse(f"bad status line {status_line[:60]!r}")
        status = int(parts[1])
        response_headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()
        self._read_body(status, response_headers, deadline)
        self.served += 1
        if response_headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            self.close()
        return status, response_headers

    def _receive(self, deadline: float) -> bytes:
        assert self.sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(remaining)
        return self.sock.recv(65536)

    def _read_head(self, deadline: float) -> bytes:
        received_any = bool(self.buffer)
        while b"\r\n\r\n" not in self.buffer:
            try:
                chunk = self._receive(deadline)
            except (ConnectionError, ssl.SSLError) as error:
                if not received_any:
                    raise NothingReceived(type(error).__name__) from error
                raise
            if not chunk:
                if not received_any:
                    raise NothingReceived("EOF")
                raise BadResponse("connection closed in the response head")
            received_any = True
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            chunk = self._receive(deadline)
            if not chunk:
                raise BadResponse("connection closed in the response body")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _read_line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self._receive(deadline)
            if not chunk:
                raise BadResponse("connection closed in a chunk header")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _read_body(self, status: int, headers: dict[str, str], deadline: float) -> None:
        if status in (204, 304) or 100 <= status < 200:
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self._read_line(deadline).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._read_line(deadline):  # trailers, then the empty line
                        pass
                    return
                self._read_exact(size + 2, deadline)
        if "content-length" in headers:
            self._read_exact(int(headers["content-length"]), deadline)
            return
        # Neither: the body runs to the end of the connection.
        while True:
            chunk = self._receive(deadline)
            if not chunk:
                self.close()
                return
            self.buffer = b""


def error_kind(error: BaseException) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(error, NothingReceived):
        return f"closed before any response byte ({error})"
    if isinstance(error, BadResponse):
        return f"bad response ({error})"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLError):
        return f"TLS error ({error.reason or type(error).__name__})"
    return type(error).__name__


class Load:
    """A bounded, paced GET load through nginx; see the module docstring."""

    def __init__(self, port: int, domain: str, path: str = "/", rate: float = 150,
                 total: int = 12000, connections: int = 8, timeout: float = 10,
                 max_seconds: float | None = None):
        if rate <= 0 or total <= 0 or connections <= 0:
            raise ValueError("rate, total and connections must be positive")
        self.port, self.domain, self.path = port, domain, path
        self.rate, self.total, self.connections, self.timeout = rate, total, connections, timeout
        # The hard deadline: the schedule's own length, half again, plus one timeout.
        self.max_seconds = max_seconds if max_seconds is not None else (
            total / rate * 1.5 + timeout)
        self.results: list[Record] = []
        self.started_at: float | None = None
        self.deadline: float | None = None
        self.late = 0
        self.cpu_seconds = 0.0  # CPU time the worker threads used (the generator's own cost)
        self._issued = 0
        self._behind = 0.0  # seconds the schedule was moved back by late requests
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._context = ssl.create_default_context()
        self._context.check_hostname = False
        self._context.verify_mode = ssl.CERT_NONE  # self-signed test certificates

    # ------------------------------------------------------------------ control

    def start(self) -> Load:
        if self._threads:
            raise RuntimeError("a Load runs once")
        self.started_at = time.monotonic()
        self.deadline = self.started_at + self.max_seconds
        self._threads = [threading.Thread(target=self._work, name=f"load-{index}", daemon=True)
                         for index in range(self.connections)]
        for thread in self._threads:
            thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the load to end by itself; True when every worker has finished."""
        limit = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if limit is None else max(0.0, limit - time.monotonic()))
        return not self.running

    def stop(self) -> None:
        """Start no further request; in-flight ones finish (bounded by `timeout`)."""
        self._stop.set()
        self.wait()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    @property
    def unsent(self) -> int:
        """Requests of the schedule that never started (stopped or past the deadline)."""
        return self.total - len(self.results)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def summary(self, start: float | None = None, end: float | None = None) -> Summary:
        """Requests started in [start, end) (monotonic seconds); all of them by default."""
        records = list(self.results)
        summary = summarize(records, start, end)
        if start is None and end is None:
            summary.late = self.late
        return summary

    # ------------------------------------------------------------------ workers

    def _next_slot(self) -> float | None:
        """The next request's start time: its slot, or now when the slot has passed by more
        than LATE_SECONDS (then the slots after it move back as much: no catching up)."""
        assert self.started_at is not None
        with self._lock:
            if self._issued >= self.total:
                return None
            slot = self.started_at + self._behind + self._issued / self.rate
            self._issued += 1
            now = time.monotonic()
            if now - slot > LATE_SECONDS:
                self.late += 1
                self._behind += now - slot
                slot = now
            return slot

    def _work(self) -> None:
        assert self.deadline is not None
        connection = Connection(self.port, self.domain, self.timeout, self._context)
        try:
            while not self._stop.is_set():
                slot = self._next_slot()
                if slot is None or slot >= self.deadline:
                    return
                delay = slot - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                self.results.append(self._request(connection, time.monotonic()))
        finally:
            connection.close()
            with self._lock:
                self.cpu_seconds += time.thread_time()

    def _request(self, connection: Connection, started: float) -> Record:
        deadline = started + self.timeout
        retried = False
        while True:
            reused = connection.reused
            try:
                if connection.sock is None:
                    connection.open()
                status, headers = connection.get(self.path, deadline)
                return Record(started, time.monotonic(), status, headers.get("x-release", ""),
                              retried)
            except Exception as error:  # every error is an outcome of the request
                connection.close()
                if isinstance(error, NothingReceived) and reused and not retried:
                    retried = True  # RFC 9112 §9.3.1: retry an idempotent request once
                    continue
                return Record(started, time.monotonic(), error_kind(error), "", retried)
