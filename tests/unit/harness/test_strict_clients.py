"""The strict clients (tests/harness/strict.py) against tiny TLS servers started here on
127.0.0.1 (a self-signed certificate made with openssl): an HTTP/1.1 keep-alive server that
can drop a request, close after a response, or store a POSTed note zero, one or two times,
and an HTTP/2 server (the h2 library) that can hold streams, send GOAWAY, reset a stream or
drop the connection. Nothing here depends on how fast the machine is: servers count what
they saw, and the assertions compare counts."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from hyperframe.frame import GoAwayFrame

from tests.harness.load import Load, Summary
from tests.harness.strict import StrictGets, StrictH2, StrictPosts, check_writes

DOMAIN = "strict.localhost"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
         "-days", "1", "-subj", f"/CN={DOMAIN}"], check=True, capture_output=True)
    return str(directory / "cert.pem"), str(directory / "key.pem")


class TinyServer:
    """Accepts TLS connections on 127.0.0.1 and serves each in a thread."""

    def __init__(self, context: ssl.SSLContext):
        self.context = context
        self.lock = threading.Lock()
        self.connections = 0
        self.sni: list[str] = []
        self.context.sni_callback = lambda sock, name, _context: self.sni.append(name)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = False
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
            # Like nginx (tcp_nodelay on): small frames are not held back for an ACK.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._handshake, args=(raw,), daemon=True).start()

    def _handshake(self, raw: socket.socket) -> None:
        try:
            sock = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self.lock:
            self.connections += 1
            first = self.connections == 1
        try:
            sock.settimeout(10)
            self.serve(sock, first)
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            return
        finally:
            sock.close()

    def serve(self, sock: ssl.SSLSocket, first: bool) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------- HTTP/1.1 server


@dataclass
class Reply:
    status: int = 200
    release: str = "a"
    close_without_answer: bool = False  # read the request, then close the connection
    connection_close: bool = False  # answer with `Connection: close`, then close
    writes: int = 1  # times a POSTed note is stored (before the answer or the close)


class TinyHTTPSServer(TinyServer):
    """HTTP/1.1 keep-alive; `policy(request_number, requests_on_connection)` decides each
    reply. POSTed notes land in `written` (text → count), like rows of the notes table."""

    def __init__(self, context: ssl.SSLContext,
                 policy: Callable[[int, int], Reply] = lambda number, on_connection: Reply()):
        self.policy = policy
        self.requests = 0
        self.dropped = 0
        self.methods: Counter[str] = Counter()
        self.texts: dict[int, str] = {}  # request number → the POSTed text
        self.written: Counter[str] = Counter()
        super().__init__(context)

    def serve(self, sock: ssl.SSLSocket, first: bool) -> None:
        buffer, on_connection = b"", 0
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ")[0]
            headers = {name.strip().lower(): value.strip()
                       for name, _, value in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                buffer += sock.recv(65536)
            body, buffer = buffer[:length], buffer[length:]
            on_connection += 1
            with self.lock:
                self.requests += 1
                number = self.requests
                self.methods[method] += 1
            reply = self.policy(number, on_connection)
            text = ""
            if method == "POST":
                text = json.loads(body)["text"]
                with self.lock:
                    self.texts[number] = text
                    if reply.writes:
                        self.written[text] += reply.writes
            if reply.close_without_answer:
                with self.lock:
                    self.dropped += 1
                return
            answer = json.dumps({"id": number, "text": text}).encode()
            close = "Connection: close\r\n" if reply.connection_close else ""
            sock.sendall(
                f"HTTP/1.1 {reply.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(answer)}\r\nX-Release: {reply.release}\r\n{close}\r\n"
                .encode() + answer)
            if reply.connection_close:
                return


# ---------------------------------------------------------------------- HTTP/2 server


@dataclass
class H2Reply:
    status: int = 200
    release: str = "a"
    reset: bool = False  # RST_STREAM INTERNAL_ERROR instead of a response
    close: bool = False  # close the connection (no GOAWAY) instead of answering


class TinyH2Server(TinyServer):
    """HTTP/2 (ALPN h2). On the first connection it holds the first `hold_first` requests and
    answers them together (a client with fewer streams in flight would wait for ever); with
    `goaway_last` it then sends GOAWAY(last-stream-id = goaway_last), still answers the held
    streams up to that id, and counts in `unprocessed` every stream above it, never answered.
    `policy(request_number)` decides each reply; `requests` counts the requests it processed,
    `received` every request that reached it."""

    def __init__(self, context: ssl.SSLContext,
                 policy: Callable[[int], H2Reply] = lambda number: H2Reply(),
                 hold_first: int = 1, goaway_last: int | None = None):
        self.policy, self.hold_first, self.goaway_last = policy, hold_first, goaway_last
        self.requests = 0
        self.received = 0
        self.unprocessed = 0
        self.alpn: list[str | None] = []
        self.paths: list[str] = []
        super().__init__(context)

    def serve(self, sock: ssl.SSLSocket, first: bool) -> None:
        self.alpn.append(sock.selected_alpn_protocol())
        connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        connection.initiate_connection()
        sock.sendall(connection.data_to_send())
        hold = self.hold_first if first else 1
        held: list[int] = []
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers = dict(event.headers)
                    self.paths.append(headers[":path"])
                    assert headers[":authority"] == DOMAIN
                elif isinstance(event, h2.events.StreamEnded):
                    held.append(event.stream_id)
                    with self.lock:
                        self.received += 1
            sock.sendall(connection.data_to_send())
            if len(held) < hold:
                continue
            hold = 1
            if first and self.goaway_last is not None:
                self._go_away(sock, connection, held)
                return
            for stream_id in held:
                if not self._answer(sock, connection, stream_id):
                    self._drop(sock, connection)
                    return
            held.clear()

    def _answer(self, sock: ssl.SSLSocket, connection: h2.connection.H2Connection,
                stream_id: int) -> bool:
        with self.lock:
            self.requests += 1
            number = self.requests
        reply = self.policy(number)
        if reply.close:
            return False
        if reply.reset:
            connection.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        else:
            body = b'{"ok": true}\n'
            connection.send_headers(stream_id, [
                (":status", str(reply.status)), ("x-release", reply.release),
                ("content-type", "application/json"), ("content-length", str(len(body)))])
            connection.send_data(stream_id, body, end_stream=True)
        sock.sendall(connection.data_to_send())
        return True

    def _drop(self, sock: ssl.SSLSocket, connection: h2.connection.H2Connection) -> None:
        # A FIN after the responses already written (a close() with unread bytes would send an
        # RST, which can discard them at the client), then read until the client closes,
        # counting the requests it still sent.
        socket.socket.shutdown(sock, socket.SHUT_WR)
        while data := sock.recv(65536):
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.StreamEnded):
                    with self.lock:
                        self.received += 1

    def _go_away(self, sock: ssl.SSLSocket, connection: h2.connection.H2Connection,
                 held: list[int]) -> None:
        # Written past h2, whose own GOAWAY would close the connection for the streams it
        # still answers below (nginx answers them: RFC 9113 §6.8 graceful shutdown).
        assert self.goaway_last is not None
        sock.sendall(GoAwayFrame(0, last_stream_id=self.goaway_last, error_code=0).serialize())
        for stream_id in held:
            if stream_id <= self.goaway_last:
                self._answer(sock, connection, stream_id)
            else:
                self.unprocessed += 1
        # Streams the client opened before the GOAWAY reached it are not processed either;
        # the client closes the connection once its remaining streams are answered.
        while data := sock.recv(65536):
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.StreamEnded) and event.stream_id > self.goaway_last:
                    self.unprocessed += 1
            sock.sendall(connection.data_to_send())


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def serve(certificate) -> Iterator[Callable[..., TinyServer]]:
    servers: list[TinyServer] = []

    def start(kind: type[TinyServer] = TinyHTTPSServer, **kwargs) -> TinyServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        if kind is TinyH2Server:
            context.set_alpn_protocols(["h2"])
        servers.append(kind(context, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def run(client):
    client.start()
    assert client.wait(timeout=client.max_seconds + client.timeout + 5), "it did not stop"
    return client


# ---------------------------------------------------------------------- StrictGets


def test_strict_gets_count_a_normal_run_as_all_ok(serve):
    server = serve()
    summary = run(StrictGets(server.port, DOMAIN, rate=200, total=40, connections=2)).summary()
    assert isinstance(summary, Summary)
    assert (summary.requests, summary.failures, summary.retries) == (40, 0, 0)
    assert [(seen.release, seen.count) for seen in summary.releases] == [("a", 40)]
    assert server.requests == 40 and server.connections == 2  # kept alive
    assert set(server.sni) == {DOMAIN}
    assert summary.line().startswith("strict HTTP/1.1: requests 40")


def test_strict_gets_count_non_2xx_as_failures_by_kind(serve):
    server = serve(policy=lambda number, on_connection: Reply(
        status=503 if number % 5 == 0 else 200))
    summary = run(StrictGets(server.port, DOMAIN, rate=200, total=20, connections=2)).summary()
    assert summary.failure_kinds == {"HTTP 503": 4}
    assert summary.retries == 0 and server.requests == 20


def test_a_kept_alive_connection_closed_without_an_answer_is_a_failure_not_a_retry(serve):
    # Each connection answers two requests, then reads the third and closes without a word:
    # what a client sees when nginx closes a kept-alive connection under its request.
    def policy(number: int, on_connection: int) -> Reply:
        return Reply(close_without_answer=on_connection == 3)

    server = serve(policy=policy)
    gets = run(StrictGets(server.port, DOMAIN, rate=200, total=20, connections=2))
    summary = gets.summary()
    assert server.dropped >= 2
    assert summary.failures == server.dropped and summary.retries == 0
    assert server.requests == 20, "a dropped request was sent again"
    assert all(kind.startswith("closed before any response byte")
               and kind.endswith("on a reused connection") for kind in summary.failure_kinds)
    # The same server, through the browser-like load.py: every drop is retried, none fails.
    browser = serve(policy=policy)
    browser_summary = run(Load(browser.port, DOMAIN, rate=200, total=20,
                               connections=2)).summary()
    assert browser_summary.failures == 0 and browser_summary.retries == browser.dropped >= 2


def test_connection_close_responses_lead_to_reconnects_not_failures(serve):
    # Every second response on a connection says `Connection: close`, and the server closes.
    server = serve(policy=lambda number, on_connection: Reply(
        connection_close=on_connection == 2))
    summary = run(StrictGets(server.port, DOMAIN, rate=200, total=20, connections=2)).summary()
    assert (summary.requests, summary.failures, summary.retries) == (20, 0, 0)
    assert server.requests == 20
    assert server.connections >= 10  # two requests per connection at most


# ---------------------------------------------------------------------- StrictPosts


def test_post_bookkeeping_finds_missing_duplicated_and_failed_but_written(serve):
    replies = {
        3: Reply(writes=1, close_without_answer=True),  # written, the client sees a failure
        5: Reply(writes=0, close_without_answer=True),  # not written, a failure
        7: Reply(status=201, writes=2),  # acknowledged, written twice
        9: Reply(status=201, writes=0),  # acknowledged, never written
    }
    server = serve(policy=lambda number, on_connection: replies.get(number, Reply(status=201)))
    posts = run(StrictPosts(server.port, DOMAIN, rate=200, total=12, connections=2,
                            run_token="t1"))
    texts = server.texts
    assert server.methods == {"POST": 12}
    assert sorted(texts.values()) == sorted(f"strict-t1-{n}" for n in range(12))  # unique
    assert set(posts.failed) == {texts[3], texts[5]}
    assert set(posts.acknowledged) == set(texts.values()) - {texts[3], texts[5]}
    check = posts.check(server.written)
    assert check.missing == [texts[9]]
    assert check.duplicated == {texts[7]: 2}
    assert check.failed_but_written == [texts[3]]
    assert (check.acknowledged, check.failed) == (10, 2) and not check.consistent
    assert "failed but written 1" in check.line()
    summary = posts.summary()
    assert summary.failures == 2 and summary.retries == 0


def test_post_ids_are_unique_per_run():
    first, second = StrictPosts(1, DOMAIN), StrictPosts(1, DOMAIN)
    assert first.prefix.startswith("strict-") and first.prefix != second.prefix


def test_check_writes_ignores_other_runs_and_counts_failed_writes_apart():
    rows = {"other-run-1": 3, "a": 1, "b": 1, "f": 2}
    check = check_writes(["a", "b"], ["f", "g"], rows)
    assert check.missing == [] and check.failed_but_written == ["f"]
    assert check.duplicated == {"f": 2}
    clean = check_writes(["a", "b"], ["g"], rows)
    assert clean.consistent and clean.failed_but_written == []


# ---------------------------------------------------------------------- StrictH2


def test_h2_counts_a_normal_run_as_all_ok_with_streams_in_flight(serve):
    # The server answers nothing until three streams are open on the connection.
    server = serve(TinyH2Server, hold_first=3)
    client = run(StrictH2(server.port, DOMAIN, path="/status", rate=100, total=9, timeout=3))
    summary = client.summary()
    assert (summary.requests, summary.failures, summary.retries) == (9, 0, 0)
    assert summary.refused_by_goaway == 0 and summary.goaways == 0
    assert [(seen.release, seen.count) for seen in summary.releases] == [("a", 9)]
    assert server.connections == 1 and server.alpn == ["h2"] and set(server.sni) == {DOMAIN}
    assert server.paths == ["/status"] * 9
    assert summary.line().startswith("strict HTTP/2: requests 9")


def test_h2_goaway_refused_streams_are_sent_again_on_a_new_connection(serve):
    # Streams 1, 3, 5 are held; GOAWAY(last-stream-id 3): 1 and 3 are still answered on the
    # old connection, 5 (and any stream opened before the GOAWAY arrived) was not processed.
    server = serve(TinyH2Server, hold_first=3, goaway_last=3)
    client = run(StrictH2(server.port, DOMAIN, rate=100, total=6, timeout=3))
    summary = client.summary()
    assert summary.failures == 0, summary.failure_kinds
    assert summary.retries == 0 and summary.requests == 6
    assert summary.refused_by_goaway == server.unprocessed >= 1
    assert summary.goaways == 1
    assert server.requests == 6, "every request processed exactly once"
    assert server.connections == client.connections_opened == 2


def test_h2_rst_stream_and_non_2xx_are_failures(serve):
    server = serve(TinyH2Server, policy=lambda number: H2Reply(
        reset=number == 2, status=503 if number == 4 else 200))
    summary = run(StrictH2(server.port, DOMAIN, rate=100, total=6, timeout=3)).summary()
    assert summary.failure_kinds == {"RST_STREAM INTERNAL_ERROR": 1, "HTTP 503": 1}
    assert summary.refused_by_goaway == 0 and summary.retries == 0
    assert server.requests == 6 and server.connections == 1


def test_h2_a_connection_closed_with_a_stream_in_flight_is_a_failure_not_resent(serve):
    server = serve(TinyH2Server, policy=lambda number: H2Reply(close=number == 2))
    client = run(StrictH2(server.port, DOMAIN, rate=50, total=5, timeout=3))
    summary = client.summary()
    ok = summary.requests - summary.failures
    # Request 2's stream fails, and so does any other stream in flight on that connection.
    assert summary.requests == 5 and summary.failures >= 1
    assert summary.refused_by_goaway == 0 and summary.retries == 0
    assert server.received == 5, "a request reached the server twice (or never)"
    assert ok == server.requests - 1  # every answered request, none of the dropped ones


def test_h2_without_alpn_h2_every_request_fails(serve):
    server = serve()  # HTTP/1.1 only: no ALPN
    summary = run(StrictH2(server.port, DOMAIN, rate=100, total=3, timeout=3)).summary()
    assert summary.failure_kinds == {"bad response (ALPN chose None, not h2)": 3}
