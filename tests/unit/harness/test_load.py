"""The load generator's accounting, against a tiny HTTPS server started here (127.0.0.1,
a self-signed certificate made with openssl): pacing, failures, retries on keep-alive
connections the server closed, latency percentiles and the releases seen."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.harness.load import Load, Record, percentile, summarize

DOMAIN = "load.localhost"


@dataclass
class Reply:
    status: int = 200
    release: str = "a"
    delay: float = 0.0
    close_without_answer: bool = False  # read the request, then close the connection
    never_answer: bool = False


@dataclass
class TinyHTTPSServer:
    """HTTP/1.1 keep-alive over TLS; `policy(request_number, requests_on_connection)` decides
    each reply; `idle_close` closes a connection idle that long after a response, like an
    nginx worker shutting down after a reload closes its idle keep-alive connections."""

    context: ssl.SSLContext
    policy: Callable[[int, int], Reply] = lambda number, on_connection: Reply()
    idle_close: float | None = None
    requests: int = 0
    connections: int = 0
    sni: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.closing = False
        self.context.sni_callback = lambda sock, name, _context: self.sni.append(name)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.closing = True
        self.listener.close()

    def _accept(self) -> None:
        while not self.closing:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self.lock:
            self.connections += 1
        buffer, on_connection = b"", 0
        try:
            while True:
                sock.settimeout(self.idle_close if on_connection and self.idle_close else 30)
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                _head, buffer = buffer.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.requests += 1
                    number = self.requests
                on_connection += 1
                reply = self.policy(number, on_connection)
                if reply.close_without_answer:
                    return
                if reply.never_answer:
                    time.sleep(5)
                    return
                time.sleep(reply.delay)
                body = b'{"ok": true}\n'
                sock.sendall(
                    f"HTTP/1.1 {reply.status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nX-Release: {reply.release}\r\n\r\n"
                    .encode() + body)
        except (OSError, ssl.SSLError):
            return  # includes the idle timeout: the server closes the connection
        finally:
            sock.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
         "-days", "1", "-subj", f"/CN={DOMAIN}"], check=True, capture_output=True)
    return str(directory / "cert.pem"), str(directory / "key.pem")


@pytest.fixture
def serve(certificate) -> Iterator[Callable[..., TinyHTTPSServer]]:
    servers = []

    def start(**kwargs) -> TinyHTTPSServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        servers.append(TinyHTTPSServer(context, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def run(load: Load) -> Load:
    load.start()
    assert load.wait(timeout=load.max_seconds + load.timeout + 5), "the load did not stop"
    return load


# ---------------------------------------------------------------------- pacing


def test_requests_are_paced_at_the_target_rate(serve):
    server = serve()
    load = run(Load(server.port, DOMAIN, rate=100, total=200, connections=4))
    starts = sorted(record.started for record in load.results)
    assert len(starts) == 200
    span = starts[-1] - starts[0]
    assert 1.9 <= span <= 2.15, f"200 requests at 100/s should span ~1.99 s, not {span:.2f}"
    # Evenly spread, not bursts: every quarter second holds about 25 requests.
    first = starts[0]
    buckets = [0] * 8
    for started in starts:
        buckets[min(7, int((started - first) / 0.25))] += 1
    assert all(18 <= count <= 32 for count in buckets), buckets
    summary = load.summary()
    assert summary.failures == 0 and summary.retries == 0 and summary.late == 0
    assert summary.requests == 200
    assert server.sni and set(server.sni) == {DOMAIN}
    # Keep-alive: the four connections carried every request.
    assert server.connections == 4


def test_a_client_that_fell_behind_does_not_catch_up_in_a_burst(serve):
    """Every connection held 1 s (a stalled server, or a machine too loaded to run the
    generator): the requests whose slots passed meanwhile go out at the target rate after
    it, not at once — a burst would cross nginx's per-address limit, which no user at this
    rate would."""
    def stall(number: int, _on_connection: int) -> Reply:
        return Reply(delay=1.0 if 20 <= number < 24 else 0)

    server = serve(policy=stall)
    load = run(Load(server.port, DOMAIN, rate=100, total=300, connections=4))
    starts = sorted(record.started for record in load.results)
    assert len(starts) == 300 and load.summary().failures == 0
    assert load.late >= 1
    stalled = max(range(len(starts) - 1), key=lambda i: starts[i + 1] - starts[i])
    after = starts[stalled + 1:]
    # About 25 in every quarter second after the stall (100/s); a catch-up would send the
    # ~100 missed ones in the first.
    windows = [sum(1 for t in after if after[0] + k * 0.25 <= t < after[0] + (k + 1) * 0.25)
               for k in range(4)]
    assert all(count <= 34 for count in windows), windows


def test_the_load_is_bounded_in_time(serve):
    server = serve()
    started = time.monotonic()
    load = run(Load(server.port, DOMAIN, rate=50, total=100_000, connections=2,
                    max_seconds=1.0))
    assert time.monotonic() - started < 3
    assert 45 <= len(load.results) <= 52
    assert load.unsent == 100_000 - len(load.results)


def test_stop_ends_the_load_early(serve):
    server = serve()
    load = Load(server.port, DOMAIN, rate=100, total=10_000, connections=2).start()
    time.sleep(0.5)
    load.stop()
    assert not load.running
    assert 40 <= len(load.results) <= 60


# ---------------------------------------------------------------------- failures


def test_non_2xx_and_connection_errors_are_failures_by_kind(serve):
    def policy(number: int, on_connection: int) -> Reply:
        if number % 10 == 0:
            return Reply(status=502)
        if number % 25 == 1:
            return Reply(status=404)
        return Reply()

    server = serve(policy=policy)
    load = run(Load(server.port, DOMAIN, rate=200, total=100, connections=2))
    summary = load.summary()
    assert summary.requests == 100
    assert summary.failure_kinds == {"HTTP 502": 10, "HTTP 404": 4}
    assert summary.failures == 14 and summary.retries == 0
    # A closed port: every request is a connection error, never a retry.
    probe = socket.create_server(("127.0.0.1", 0))
    refused_port = probe.getsockname()[1]
    probe.close()
    refused = run(Load(refused_port, DOMAIN, rate=100, total=20, connections=2)).summary()
    assert refused.failure_kinds == {"connection refused": 20}
    assert refused.retries == 0


def test_a_fresh_connection_closed_without_an_answer_is_a_failure_not_a_retry(serve):
    server = serve(policy=lambda number, on_connection: Reply(close_without_answer=True))
    summary = run(Load(server.port, DOMAIN, rate=100, total=10, connections=2)).summary()
    assert summary.failures == 10 and summary.retries == 0
    assert all(kind.startswith("closed before any response byte")
               for kind in summary.failure_kinds), summary.failure_kinds


def test_a_request_without_an_answer_times_out(serve):
    server = serve(policy=lambda number, on_connection: Reply(never_answer=number == 3))
    load = run(Load(server.port, DOMAIN, rate=50, total=6, connections=2, timeout=0.5))
    summary = load.summary()
    assert summary.failure_kinds == {"timeout": 1}
    (timed_out,) = [record for record in load.results if record.outcome == "timeout"]
    assert 0.45 <= timed_out.latency <= 1.0


# ---------------------------------------------------------------------- retries


def test_idle_keepalive_connections_closed_by_the_server_are_retried_not_failed(serve):
    # Every connection is closed 20 ms after each response; with 4 connections at 50/s each
    # is idle ~80 ms between requests, so every reuse finds it closed.
    server = serve(idle_close=0.02)
    load = run(Load(server.port, DOMAIN, rate=50, total=60, connections=4))
    summary = load.summary()
    assert summary.failures == 0, summary.failure_kinds
    assert summary.requests == 60
    # 56 reuses at most (4 requests open the connections); a request the generator starts
    # late on a loaded machine may follow its predecessor within the 20 ms and find the
    # connection still open, so not every reuse is a retry.
    assert 40 <= summary.retries == sum(record.retried for record in load.results) <= 56
    assert all(record.ok for record in load.results)


def test_a_reused_connection_closed_on_the_next_request_is_retried_once(serve):
    # The server answers two requests per connection, then reads the third and closes.
    server = serve(policy=lambda number, on_connection: Reply(
        close_without_answer=on_connection == 3))
    load = run(Load(server.port, DOMAIN, rate=100, total=40, connections=2))
    summary = load.summary()
    assert summary.failures == 0, summary.failure_kinds
    assert summary.retries == sum(record.retried for record in load.results) > 5


def test_a_retry_that_fails_again_is_a_failure(serve):
    # The first request on each connection is answered; everything after that is dropped:
    # the retry (on a new connection) is answered, so only a closed retry would fail.
    server = serve(policy=lambda number, on_connection: Reply(
        close_without_answer=on_connection == 2 or number > 6))
    summary = run(Load(server.port, DOMAIN, rate=100, total=12, connections=2)).summary()
    assert summary.retries >= 1
    assert summary.failures >= 1
    assert summary.requests == 12


# ---------------------------------------------------------------------- summary


def test_percentiles_of_a_slow_tail(serve):
    # One request in ten takes 100 ms; the rest are immediate.
    server = serve(policy=lambda number, on_connection: Reply(
        delay=0.1 if number % 10 == 0 else 0.0))
    summary = run(Load(server.port, DOMAIN, rate=100, total=100, connections=4)).summary()
    assert summary.p50_ms < 30
    assert 100 <= summary.p99_ms < 200
    assert summary.max_ms >= summary.p99_ms


def test_releases_seen_in_order_with_first_and_last_times(serve):
    server = serve(policy=lambda number, on_connection: Reply(
        release="a" if number <= 30 else "b"))
    load = run(Load(server.port, DOMAIN, rate=100, total=60, connections=1))
    releases = load.summary().releases
    assert [(seen.release, seen.count) for seen in releases] == [("a", 30), ("b", 30)]
    assert releases[0].first < releases[0].last < releases[1].first < releases[1].last


def test_summary_windows_and_nearest_rank_percentiles():
    records = [Record(float(index), index + (0.001 * (index + 1)), 200,
                      "a" if index < 50 else "b", index % 20 == 0)
               for index in range(100)]
    records.append(Record(100.0, 100.5, "timeout", "", False))
    records.append(Record(101.0, 101.01, 503, "b", False))
    everything = summarize(records)
    assert everything.requests == 102
    assert everything.failure_kinds == {"timeout": 1, "HTTP 503": 1}
    assert everything.retries == 5
    # Latencies 1..100 ms and the 503's 10 ms (the timeout is not timed): 101 values.
    assert everything.p50_ms == pytest.approx(50.0, abs=1e-6)
    assert everything.p99_ms == pytest.approx(99.0, abs=1e-6)
    window = summarize(records, start=40, end=60)
    assert window.requests == 20 and window.failures == 0 and window.retries == 1
    assert [(s.release, s.count) for s in window.releases] == [("a", 10), ("b", 10)]
    assert window.rate == pytest.approx(1.0)
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
