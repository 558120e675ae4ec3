"""Test scaffolding: strict clients that never retry, to show whether an nginx reload or a
release switch is invisible even to them. Traffic goes to 127.0.0.1 only.

    gets = StrictGets(stack.https_port, stack.domain("prod"), rate=100, total=6000).start()
    posts = StrictPosts(stack.https_port, stack.domain("prod"), rate=20, total=1200).start()
    h2 = StrictH2(stack.https_port, stack.domain("prod"), rate=100, total=6000).start()
    ...                       # release, rollback, reload
    for client in (gets, posts, h2):
        client.wait()
        print(client.summary().line())
    rows = ...                # {text: count} of the notes whose text starts with posts.prefix
    print(posts.check(rows).line())

`tests/harness/load.py` behaves like a browser: a GET that finds a reused keep-alive
connection closed before any response byte is sent again. These clients do not:

- StrictGets: paced HTTP/1.1 keep-alive GETs over `connections` connections (TLS, SNI = the
  domain), the scheduling, connections and accounting of load.py without its retry. Any
  connection error, reset, empty reply or non-2xx is a failure, recorded by kind. A response
  with `Connection: close` makes the client close and reconnect for the next request
  (RFC 9112 §9.6), which is neither a failure nor a retry.
- StrictPosts: the same for `POST /api/notes/` with `{"text": "strict-<run token>-<n>"}`, every
  text unique in the run. `check(rows)` compares what the client was told with what the
  database holds: a 2xx text missing or written twice is lost or duplicated; a failed text that
  was written anyway is counted apart ("failed but written"), the ambiguity a client that
  never retries cannot resolve.
- StrictH2: HTTP/2 over TLS with ALPN h2 (the `h2` library), paced GETs on one connection,
  with as many streams in flight as the pacing and the server's latency make. It honours
  GOAWAY (RFC 9113 §6.8): no new stream on a connection after its GOAWAY; the streams at or
  below its last-stream-id still complete on it; a stream above it was not processed by the
  server and is sent again on a new connection, counted as `refused_by_goaway` (not as a
  retry of a request that may have been processed, not as a failure). Any other stream
  error, RST_STREAM (whatever its code, REFUSED_STREAM included), connection error or non-2xx
  is a failure.

Every summary has `retries == 0` by construction. Not imitated: a connection pool that probes
an idle connection before reusing it (urllib3 does), HTTP/2 server push, request bodies over
HTTP/2, `Retry-After`. Bounded in requests (`total`) and in time (`max_seconds`, a hard deadline
after which no request starts; in-flight ones are bounded by `timeout`); they stop by
themselves. Threads, not processes.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from hyperframe.frame import Frame, GoAwayFrame

from tests.harness.load import (
    LATE_SECONDS,
    BadResponse,
    Connection,
    Load,
    NothingReceived,
    Record,
    Summary,
    error_kind,
    summarize,
)


@dataclass
class StrictSummary(Summary):
    """load.Summary of a strict client: `retries` is always 0; for HTTP/2, the streams a GOAWAY
    refused (sent again on a new connection) and the GOAWAY frames received, in the window."""

    protocol: str = "HTTP/1.1"
    refused_by_goaway: int = 0
    goaways: int = 0

    @classmethod
    def of(cls, summary: Summary, **extra) -> StrictSummary:
        return cls(**{f.name: getattr(summary, f.name) for f in fields(Summary)}, **extra)

    def line(self) -> str:
        http2 = (f", refused by GOAWAY {self.refused_by_goaway}, GOAWAYs {self.goaways}"
                 if self.protocol == "HTTP/2" else "")
        return f"strict {self.protocol}: {super().line()}{http2}"


def _strict_error_kind(error: BaseException, reused: bool) -> str:
    kind = error_kind(error)
    # A reused connection closed under the request is the keep-alive race a browser retries.
    return f"{kind} on a reused connection" if isinstance(error, NothingReceived) and reused \
        else kind


# ---------------------------------------------------------------------- HTTP/1.1 GETs


class StrictGets(Load):
    """load.Load without its retry: same arguments, pacing and Records (`retried` always
    False); summary() is a StrictSummary, a load.Summary with `retries == 0`."""

    def summary(self, start: float | None = None, end: float | None = None) -> StrictSummary:
        return StrictSummary.of(super().summary(start, end))

    def _request(self, connection: Connection, started: float) -> Record:
        return self._attempt(connection, started,
                             lambda deadline: connection.get(self.path, deadline))

    def _attempt(self, connection: Connection, started: float,
                 send: Callable[[float], tuple[int, dict[str, str]]]) -> Record:
        """One request, once: `send(deadline)` on the connection, opened if need be."""
        reused = connection.reused
        try:
            if connection.sock is None:
                connection.open()
            status, headers = send(started + self.timeout)
            return Record(started, time.monotonic(), status, headers.get("x-release", ""),
                          False)
        except Exception as error:  # every error is an outcome of the request
            connection.close()
            return Record(started, time.monotonic(), _strict_error_kind(error, reused), "",
                          False)


# ---------------------------------------------------------------------- HTTP/1.1 POSTs


def post_json(connection: Connection, path: str, payload: object,
              deadline: float) -> tuple[int, dict[str, str]]:
    """Connection.get as a POST with a JSON body: (status, lower-cased headers)."""
    return connection.request("POST", path, deadline, body=json.dumps(payload).encode(),
                              headers=(("Content-Type", "application/json"),))


@dataclass(frozen=True)
class WriteCheck:
    """What the database holds of a StrictPosts run, against what the client was told."""

    acknowledged: int  # texts that got a 2xx
    failed: int  # texts that got an error or a non-2xx
    missing: list[str]  # got a 2xx, not in the database: a lost write
    duplicated: dict[str, int]  # in the database more than once (text → count)
    failed_but_written: list[str]  # the client saw a failure, the database has the note

    @property
    def consistent(self) -> bool:
        """No acknowledged write lost, none written twice. A failed-but-written note is no
        inconsistency of the server; it is counted apart in `failed_but_written`."""
        return not self.missing and not self.duplicated

    def line(self) -> str:
        return (f"writes: acknowledged {self.acknowledged}, failed {self.failed}, "
                f"missing {len(self.missing)}, duplicated {len(self.duplicated)}, "
                f"failed but written {len(self.failed_but_written)}")


def check_writes(acknowledged: Iterable[str], failed: Iterable[str],
                 rows: Mapping[str, int]) -> WriteCheck:
    """`rows` maps a note's text to how many notes carry it; texts of other runs are ignored."""
    acknowledged, failed = list(acknowledged), list(failed)
    return WriteCheck(
        acknowledged=len(acknowledged), failed=len(failed),
        missing=[text for text in acknowledged if rows.get(text, 0) == 0],
        duplicated={text: rows[text] for text in acknowledged + failed
                    if rows.get(text, 0) > 1},
        failed_but_written=[text for text in failed if rows.get(text, 0) > 0])


class StrictPosts(StrictGets):
    """Paced POSTs of unique notes, never retried; `acknowledged` and `failed` list the texts
    (in the order they were sent), `check(rows)` compares them with the database."""

    def __init__(self, port: int, domain: str, path: str = "/api/notes/", rate: float = 20,
                 total: int = 1200, connections: int = 4, timeout: float = 10,
                 max_seconds: float | None = None, run_token: str | None = None):
        super().__init__(port, domain, path, rate, total, connections, timeout, max_seconds)
        self.prefix = f"strict-{run_token or secrets.token_hex(4)}-"
        self.outcomes: dict[str, Record] = {}  # text → what the client saw
        self._posted = 0

    @property
    def acknowledged(self) -> list[str]:
        return [text for text, record in self._sent() if record.ok]

    @property
    def failed(self) -> list[str]:
        return [text for text, record in self._sent() if not record.ok]

    def check(self, rows: Mapping[str, int]) -> WriteCheck:
        return check_writes(self.acknowledged, self.failed, rows)

    def _sent(self) -> list[tuple[str, Record]]:
        with self._lock:
            return sorted(self.outcomes.items(), key=lambda item: int(item[0].rpartition("-")[2]))

    def _request(self, connection: Connection, started: float) -> Record:
        with self._lock:
            text = f"{self.prefix}{self._posted}"
            self._posted += 1
        record = self._attempt(connection, started, lambda deadline: post_json(
            connection, self.path, {"text": text}, deadline))
        with self._lock:
            self.outcomes[text] = record
        return record


# ---------------------------------------------------------------------- HTTP/2


@dataclass(eq=False)
class _H2Request:
    started: float  # monotonic time it first started; a re-sent request keeps it
    deadline: float
    status: int | None = None
    release: str = ""


class _H2Link:
    """One HTTP/2 connection. GOAWAY frames are read here and never given to h2: h2 closes its
    connection state on a GOAWAY and then rejects the frames of the streams the server still
    completes (python-hyper/h2#1181), which RFC 9113 §6.8 allows and nginx does."""

    def __init__(self, sock: ssl.SSLSocket):
        self.sock = sock
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.buffer = b""
        self.streams: dict[int, _H2Request] = {}  # in flight on this connection
        self.last_stream_id: int | None = None  # the GOAWAY's, once one arrived
        self.h2.initiate_connection()
        self.flush()

    @property
    def has_room(self) -> bool:
        return len(self.streams) < self.h2.remote_settings.max_concurrent_streams

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def frames(self, data: bytes) -> Iterator[bytes]:
        """Whole frames: a 9-byte header, the first 3 bytes the payload length (RFC 9113 §4.1).
        The server sends nothing but frames (its preface is a SETTINGS frame, §3.4)."""
        self.buffer += data
        while len(self.buffer) >= 9:
            end = 9 + int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < end:
                return
            frame, self.buffer = self.buffer[:end], self.buffer[end:]
            yield frame

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.h2.close_connection()
            self.flush()
        with contextlib.suppress(OSError):
            self.sock.close()


def _h2_error_kind(error: BaseException) -> str:
    if isinstance(error, h2.exceptions.ProtocolError):
        return f"HTTP/2 protocol error ({error})"
    return error_kind(error)


class StrictH2:
    """Paced HTTP/2 GETs over one connection at a time; see the module docstring."""

    def __init__(self, port: int, domain: str, path: str = "/", rate: float = 150,
                 total: int = 12000, timeout: float = 10, max_seconds: float | None = None):
        if rate <= 0 or total <= 0:
            raise ValueError("rate and total must be positive")
        self.port, self.domain, self.path = port, domain, path
        self.rate, self.total, self.timeout = rate, total, timeout
        # The hard deadline, as load.Load's: the schedule's length, half again, one timeout.
        self.max_seconds = max_seconds if max_seconds is not None else (
            total / rate * 1.5 + timeout)
        self.results: list[Record] = []
        self.refused: list[float] = []  # when each request a GOAWAY refused had started
        self.goaways: list[float] = []  # when each GOAWAY frame arrived
        self.connections_opened = 0
        self.started_at: float | None = None
        self.deadline: float | None = None
        self.late = 0
        self.cpu_seconds = 0.0
        self._issued = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._links: list[_H2Link] = []
        self._waiting: deque[_H2Request] = deque()  # started, not yet on a stream
        self._context = ssl.create_default_context()
        self._context.check_hostname = False
        self._context.verify_mode = ssl.CERT_NONE  # self-signed test certificates
        self._context.set_alpn_protocols(["h2"])

    # ------------------------------------------------------------------ control

    def start(self) -> StrictH2:
        if self._thread is not None:
            raise RuntimeError("a StrictH2 runs once")
        self.started_at = time.monotonic()
        self.deadline = self.started_at + self.max_seconds
        self._thread = threading.Thread(target=self._work, name="strict-h2", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the load to end by itself; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def stop(self) -> None:
        """Start no further request; in-flight ones finish (bounded by `timeout`)."""
        self._stop.set()
        self.wait()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def unsent(self) -> int:
        return self.total - len(self.results)

    def __enter__(self) -> StrictH2:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def summary(self, start: float | None = None, end: float | None = None) -> StrictSummary:
        """Requests started in [start, end) (monotonic seconds), the refused streams of those
        requests, and the GOAWAYs that arrived in the window; all of them by default."""
        summary = summarize(list(self.results), start, end)
        if start is None and end is None:
            summary.late = self.late

        def inside(moment: float) -> bool:
            return (start is None or moment >= start) and (end is None or moment < end)

        return StrictSummary.of(
            summary, protocol="HTTP/2",
            refused_by_goaway=sum(inside(moment) for moment in self.refused),
            goaways=sum(inside(moment) for moment in self.goaways))

    # ------------------------------------------------------------------ the worker

    def _work(self) -> None:
        try:
            while True:
                issuing = self._issue_due(time.monotonic())
                self._send_waiting()
                self._expire(time.monotonic())
                self._close_drained()
                in_flight = self._waiting or any(link.streams for link in self._links)
                if not issuing and not in_flight:
                    return
                self._receive_until(self._next_wakeup(issuing))
        finally:
            for link in self._links:
                link.close()
            self._links.clear()
            self.cpu_seconds = time.thread_time()

    def _issue_due(self, now: float) -> bool:
        """Start the requests whose slot has come; False once no further one will start."""
        assert self.started_at is not None and self.deadline is not None
        while True:
            if self._stop.is_set() or self._issued >= self.total:
                return False
            slot = self.started_at + self._issued / self.rate
            if slot >= self.deadline:
                return False
            if slot > now:
                return True
            self._issued += 1
            if now - slot > LATE_SECONDS:
                self.late += 1
            self._waiting.append(_H2Request(now, now + self.timeout))

    def _next_wakeup(self, issuing: bool) -> float:
        assert self.started_at is not None
        moments = [time.monotonic() + 0.1]  # notice stop() soon enough
        if issuing:
            moments.append(self.started_at + self._issued / self.rate)
        moments += [request.deadline for request in self._waiting]
        moments += [request.deadline for link in self._links for request in link.streams.values()]
        return min(moments)

    def _finish(self, request: _H2Request, outcome: int | str) -> None:
        self.results.append(Record(request.started, time.monotonic(), outcome,
                                   request.release, False))

    def _open(self) -> _H2Link:
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        # Frames are small and written one by one: Nagle would hold them for a delayed ACK.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock = self._context.wrap_socket(raw, server_hostname=self.domain)
        except BaseException:
            raw.close()
            raise
        try:
            if sock.selected_alpn_protocol() != "h2":
                raise BadResponse(f"ALPN chose {sock.selected_alpn_protocol()!r}, not h2")
            link = _H2Link(sock)
        except BaseException:
            sock.close()
            raise
        self._links.append(link)
        self.connections_opened += 1
        return link

    def _send_waiting(self) -> None:
        while self._waiting:
            # After its GOAWAY a connection takes no new stream (RFC 9113 §6.8).
            link = next((link for link in self._links if link.last_stream_id is None), None)
            if link is None:
                try:
                    link = self._open()
                except Exception as error:
                    self._finish(self._waiting.popleft(), _h2_error_kind(error))
                    continue
            if not link.has_room:
                return  # SETTINGS_MAX_CONCURRENT_STREAMS: wait for a stream to end
            request = self._waiting.popleft()
            request.status, request.release = None, ""
            stream_id = link.h2.get_next_available_stream_id()
            link.streams[stream_id] = request
            try:
                link.h2.send_headers(stream_id, [
                    (":method", "GET"), (":scheme", "https"), (":authority", self.domain),
                    (":path", self.path), ("user-agent", "aiia-strict-h2"), ("accept", "*/*"),
                ], end_stream=True)
                link.flush()
            except Exception as error:
                self._fail_link(link, error)

    def _expire(self, now: float) -> None:
        for request in [request for request in self._waiting if request.deadline <= now]:
            self._waiting.remove(request)
            self._finish(request, "timeout")
        for link in list(self._links):
            expired = [stream_id for stream_id, request in link.streams.items()
                       if request.deadline <= now]
            for stream_id in expired:
                self._finish(link.streams.pop(stream_id), "timeout")
                with contextlib.suppress(Exception):
                    link.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            if expired:
                try:
                    link.flush()
                except OSError as error:
                    self._fail_link(link, error)

    def _close_drained(self) -> None:
        for link in [link for link in self._links
                     if link.last_stream_id is not None and not link.streams]:
            self._links.remove(link)
            link.close()

    def _fail_link(self, link: _H2Link, error: BaseException | None) -> None:
        """The connection is gone: every stream still in flight on it failed."""
        if error is None:
            kind = "connection closed with the stream in flight"
            if link.last_stream_id is not None:
                kind += " after GOAWAY"
        else:
            kind = _h2_error_kind(error)
        for request in link.streams.values():
            self._finish(request, kind)
        link.streams.clear()
        if link in self._links:
            self._links.remove(link)
        link.close()

    def _receive_until(self, wakeup: float) -> None:
        # TLS may hold decrypted bytes that select() cannot see.
        ready = [link for link in self._links if link.sock.pending()]
        if not ready:
            timeout = max(0.0, wakeup - time.monotonic())
            if not self._links:
                self._stop.wait(timeout)
                return
            readable, _, _ = select.select([link.sock for link in self._links], [], [], timeout)
            ready = [link for link in self._links if link.sock in readable]
        for link in ready:
            self._receive(link)

    def _receive(self, link: _H2Link) -> None:
        # Readable may mean a TLS record without application data (a session ticket): read
        # without blocking, so that the other streams' deadlines and the pacing go on.
        link.sock.setblocking(False)
        try:
            data = link.sock.recv(65536)
        except ssl.SSLWantReadError:
            link.sock.settimeout(self.timeout)
            return
        except OSError as error:
            self._fail_link(link, error)
            return
        link.sock.settimeout(self.timeout)
        if not data:
            self._fail_link(link, None)
            return
        try:
            for frame in link.frames(data):
                if frame[3] == GoAwayFrame.type:
                    self._goaway(link, frame)
                    continue
                for event in link.h2.receive_data(frame):
                    self._event(link, event)
            link.flush()
        except Exception as error:  # a protocol error or a broken connection
            self._fail_link(link, error)

    def _goaway(self, link: _H2Link, frame: bytes) -> None:
        goaway, _length = Frame.parse_frame_header(memoryview(frame[:9]))
        goaway.parse_body(memoryview(frame[9:]))
        self.goaways.append(time.monotonic())
        # A server may send several GOAWAYs; the last-stream-id only goes down (§6.8).
        last = goaway.last_stream_id
        if link.last_stream_id is not None:
            last = min(last, link.last_stream_id)
        link.last_stream_id = last
        # Streams above it were not processed: they go first on the next connection.
        for stream_id in sorted((sid for sid in link.streams if sid > last), reverse=True):
            request = link.streams.pop(stream_id)
            self.refused.append(request.started)
            self._waiting.appendleft(request)

    def _event(self, link: _H2Link, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            link.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        request = link.streams.get(getattr(event, "stream_id", None) or 0)
        if request is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            headers = dict(event.headers)
            status = headers.get(":status", "")
            if not status.isdigit():
                del link.streams[event.stream_id]
                link.h2.reset_stream(event.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                self._finish(request, f"bad response (:status {status!r})")
                return
            request.status, request.release = int(status), headers.get("x-release", "")
        elif isinstance(event, h2.events.StreamEnded):
            del link.streams[event.stream_id]
            self._finish(request, request.status if request.status is not None
                         else "bad response (the stream ended before its headers)")
        elif isinstance(event, h2.events.StreamReset):
            del link.streams[event.stream_id]
            code = event.error_code
            self._finish(request, f"RST_STREAM {getattr(code, 'name', code)}")
