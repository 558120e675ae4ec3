"""The collector's way to Docker (dashboard/docker_proxy.py, review L2): the reads
docker_api.DockerClient makes pass, byte for byte; everything else is refused before Docker
sees it, and says why.

The Docker side is a fake on a unix socket in tmp_path that records each head it gets and
answers with canned bytes; it imitates nothing of Docker's but speaking HTTP/1.1 and
closing after its answer (Connection: close, as Go's net/http does).
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard import docker_proxy
from dashboard.docker_api import DockerClient, DockerError

CONTAINER_ID = "4f2a9c0d1e3b"
INSPECT = {"Id": CONTAINER_ID, "Name": "/aiia-prod-app", "State": {"Status": "running"},
           "Config": {"Labels": {"aiia.service": "app"}, "Image": "app:1"},
           "HostConfig": {"Memory": 64 * 1024 * 1024}, "RestartCount": 0}
STATS = {"memory_stats": {"usage": 5000, "stats": {"inactive_file": 1000}}}
# Docker's multiplexed log stream: 8-byte frame headers, then the line (stdout, stderr).
LOG_FRAMES = (b"\x01\x00\x00\x00\x00\x00\x00\x0bline one \xff\n"
              b"\x02\x00\x00\x00\x00\x00\x00\x09line two\n")


def answer(body: bytes, chunked: bool = False) -> bytes:
    if chunked:
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


ANSWERS = {
    "/containers/json": answer(json.dumps([{"Id": CONTAINER_ID}]).encode()),
    f"/containers/{CONTAINER_ID}/json": answer(json.dumps(INSPECT).encode()),
    f"/containers/{CONTAINER_ID}/stats": answer(json.dumps(STATS).encode()),
    f"/containers/{CONTAINER_ID}/logs": answer(LOG_FRAMES, chunked=True),
}


class FakeDocker(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path) -> None:
        self.heads: list[bytes] = []
        self.answer_forever = False
        super().__init__(str(path), FakeDocker.Handler)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.server.heads.append(head)
            target = head.split(b" ")[1].decode()
            path = target.split("?")[0].removeprefix("/v1.45")
            if self.server.answer_forever:
                self.request.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                while True:
                    self.request.sendall(b"{}\n")
            self.request.sendall(ANSWERS.get(path, b"HTTP/1.1 404 Not Found\r\n"
                                                   b"Content-Length: 0\r\n\r\n"))


@pytest.fixture
def docker(tmp_path) -> Iterator[FakeDocker]:
    server = FakeDocker(tmp_path / "docker.sock")
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def refusals() -> list[str]:
    return []


@pytest.fixture
def proxy(tmp_path, docker, refusals) -> Iterator[Path]:
    path = tmp_path / "proxy.sock"
    listener = docker_proxy.listening_socket(str(path))
    thread = threading.Thread(target=docker_proxy.serve,
                              args=(listener, docker.server_address, 0.2, refusals.append),
                              daemon=True)
    thread.start()
    yield path
    thread.join(timeout=5)
    listener.close()


def exchange(path: Path, raw: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(str(path))
        client.sendall(raw)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    return received


def get(target: str, *headers: str) -> bytes:
    return ("\r\n".join([f"GET {target} HTTP/1.1", "Host: docker", *headers]) + "\r\n\r\n"
            ).encode()


def test_the_collectors_reads_pass_through_the_proxy(proxy, docker, refusals):
    client = DockerClient(proxy, timeout=5)
    (container,) = client.labelled_containers(stack="aiia-prod")
    assert container.name == "aiia-prod-app" and container.memory_limit_bytes == 64 * 1024 * 1024
    assert client.memory_usage(CONTAINER_ID) == 4000
    # Its second read when a one-shot comes back before the engine sampled (docker_api.py).
    assert client._get_json(f"/containers/{CONTAINER_ID}/stats", {"stream": "false"}) == STATS
    assert client.log_tail(CONTAINER_ID, 200) == ["line one \ufffd", "line two"]
    assert refusals == []
    assert [head.split(b"\r\n")[0].decode() for head in docker.heads] == [
        "GET /containers/json?all=1&filters=%7B%22label%22%3A+%5B%22aiia.service%22%2C+"
        "%22aiia.stack%3Daiia-prod%22%5D%7D HTTP/1.1",
        f"GET /containers/{CONTAINER_ID}/json HTTP/1.1",
        f"GET /containers/{CONTAINER_ID}/stats?stream=false&one-shot=true HTTP/1.1",
        f"GET /containers/{CONTAINER_ID}/stats?stream=false HTTP/1.1",
        f"GET /containers/{CONTAINER_ID}/logs?stdout=1&stderr=1&tail=200&timestamps=1 HTTP/1.1",
    ]


@pytest.mark.parametrize("path", [f"/containers/{CONTAINER_ID}/logs",
                                  f"/v1.45/containers/{CONTAINER_ID}/logs"])
def test_an_answer_is_streamed_back_byte_for_byte(proxy, path):
    received = exchange(proxy, get(f"{path}?stdout=1&stderr=1&tail=all"))
    assert received == ANSWERS[f"/containers/{CONTAINER_ID}/logs"]


def test_docker_gets_a_fresh_head_not_the_clients(proxy, docker):
    exchange(proxy, get(f"/containers/{CONTAINER_ID}/json", "X-Registry-Auth: c2VjcmV0",
                        "Cookie: a=b", "Host: evil"))
    assert docker.heads == [f"GET /containers/{CONTAINER_ID}/json HTTP/1.1\r\nHost: docker\r\n"
                            "User-Agent: aiia-docker-proxy\r\nConnection: close\r\n\r\n".encode()]


REFUSED = {
    # name: (raw request, status, what the log line says)
    "POST create": (b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n"
                    b"\r\n{}", 403, "method POST"),
    "POST stop": (f"POST /containers/{CONTAINER_ID}/stop HTTP/1.1\r\n\r\n".encode(), 403,
                  "method POST"),
    "DELETE": (f"DELETE /containers/{CONTAINER_ID} HTTP/1.1\r\n\r\n".encode(), 403,
               "method DELETE"),
    "HEAD": (b"HEAD /containers/json HTTP/1.1\r\n\r\n", 403, "method HEAD"),
    "archive": (get(f"/containers/{CONTAINER_ID}/archive?path=/etc"), 403, "not on the allowlist"),
    "export": (get(f"/containers/{CONTAINER_ID}/export"), 403, "not on the allowlist"),
    "attach": (get(f"/containers/{CONTAINER_ID}/attach/ws"), 403, "not on the allowlist"),
    "exec": (get(f"/v1.45/exec/{CONTAINER_ID}/json"), 403, "not on the allowlist"),
    "images/get": (get("/images/get?names=postgres"), 403, "not on the allowlist"),
    "secrets": (get("/secrets"), 403, "not on the allowlist"),
    "version prefix not an API version": (get("/v2/containers/json"), 403,
                                          "not on the allowlist"),
    "traversal": (get(f"/containers/{CONTAINER_ID}/../../secrets/json"), 400, "dot segment"),
    "encoded traversal": (get("/containers/%2e%2e/secrets/json"), 400, "encoded"),
    "encoded slash": (get(f"/containers/{CONTAINER_ID}%2Farchive/json"), 400, "encoded"),
    "backslash": (get("/containers\\json"), 400, "encoded or escaped"),
    "double slash": (get("//containers/json"), 400, "empty or dot segment"),
    "absolute-form target": (get("http://docker/containers/json"), 400, "empty or dot segment"),
    "follow a log": (get(f"/containers/{CONTAINER_ID}/logs?stdout=1&follow=1"), 403,
                     "'follow'='1' not allowed"),
    "streaming stats": (get(f"/containers/{CONTAINER_ID}/stats?stream=true"), 403,
                        "'stream'='true' not allowed"),
    "a newline in a parameter's name": (get("/containers/json?a%0Ab=1"), 403, "'a\\nb'='1'"),
    "size on inspect": (get(f"/containers/{CONTAINER_ID}/json?size=1"), 403, "'size'='1'"),
    "filters other than labels": (
        get("/containers/json?" + urllib.parse.urlencode(
            {"filters": json.dumps({"status": ["running"]})})), 403, "'filters'="),
    "a parameter twice": (get("/containers/json?all=1&all=0"), 400, "given twice"),
    "Transfer-Encoding": (get("/containers/json", "Transfer-Encoding: chunked"), 400,
                          "header transfer-encoding"),
    "Content-Length": (get("/containers/json", "Content-Length: 0"), 400,
                       "header content-length"),
    "Upgrade": (get("/containers/json", "Upgrade: tcp"), 400, "header upgrade"),
    "Connection: upgrade": (get("/containers/json", "Connection: keep-alive, Upgrade"), 400,
                            "Connection: upgrade"),
    "Expect": (get("/containers/json", "Expect: 100-continue"), 400, "header expect"),
    "a folded header": (get("/containers/json", "X-A: 1", " Transfer-Encoding: chunked"), 400,
                        "folded"),
    "a space before the colon": (get("/containers/json", "Transfer-Encoding : chunked"), 400,
                                 "malformed header"),
    "a bare LF": (b"GET /containers/json HTTP/1.1\nTransfer-Encoding: chunked\r\n\r\n", 400,
                  "bare CR, LF or NUL"),
    "a second request after the head": (
        get("/containers/json") + b"POST /containers/create HTTP/1.1\r\n\r\n", 400,
        "bytes after the head"),
    "an oversize head": (get("/containers/json", "X-Pad: " + "a" * 9000), 431, "head over"),
    "non-ASCII": (get("/containers/json", "X-A: \u00e9").replace(b"\xc3\xa9", b"\xe9"), 400,
                  "outside ASCII"),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\n", 400, "malformed request line"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_everything_else_is_refused_before_docker_sees_it(proxy, docker, refusals, name):
    raw, status, reason = REFUSED[name]
    received = exchange(proxy, raw)
    assert received.startswith(f"HTTP/1.1 {status} ".encode()), received[:200]
    assert docker.heads == []
    (logged,) = refusals
    assert logged.startswith(f"refused ({status}): ") and reason in logged, logged


def test_a_refusal_is_what_the_collector_reports(proxy):
    with pytest.raises(DockerError, match="HTTP 403 aiia-docker-proxy: refused: query "
                                          "parameter 'follow'"):
        DockerClient(proxy)._get(f"/containers/{CONTAINER_ID}/logs", {"follow": "1"})


def test_an_answer_that_never_ends_is_cut_at_the_deadline(tmp_path, docker):
    docker.answer_forever = True
    client, server_side = socket.socketpair()
    logged: list[str] = []
    with client:
        client.sendall(get(f"/containers/{CONTAINER_ID}/stats?stream=false"))
        thread = threading.Thread(target=docker_proxy.handle,
                                  args=(server_side, docker.server_address, logged.append, 0.5))
        thread.start()
        client.settimeout(5)
        while client.recv(65536):
            pass
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert logged == ["connection dropped: answer still streaming after 0.5 s"]


def test_a_head_dribbled_byte_by_byte_is_cut_at_the_head_deadline(monkeypatch, docker):
    monkeypatch.setattr(docker_proxy, "HEAD_TIMEOUT_S", 0.5)
    client, server_side = socket.socketpair()
    logged: list[str] = []
    thread = threading.Thread(target=docker_proxy.handle,
                              args=(server_side, docker.server_address, logged.append))
    head = get("/containers/json")
    sent = 0
    with client:
        thread.start()
        for byte in head[:-1]:  # never the last byte
            if not thread.is_alive():
                break
            with contextlib.suppress(OSError):
                client.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.05)
        thread.join(timeout=5)
    # Cut while the client still had bytes to send, each of them in time for a read's own
    # timeout: the deadline is the whole head's.
    assert sent < len(head) // 2
    assert logged == ["connection dropped: no complete head within 0.5 s"]
    assert docker.heads == []


def test_docker_down_is_a_502_not_a_hang(tmp_path):
    client, server_side = socket.socketpair()
    logged: list[str] = []
    with client:
        client.sendall(get("/containers/json"))
        docker_proxy.handle(server_side, str(tmp_path / "absent.sock"), logged.append)
        assert client.recv(4096).startswith(b"HTTP/1.1 502 ")
    assert "Docker at" in logged[0]


def test_it_exits_when_idle_and_not_before_its_last_answer(tmp_path, docker):
    listener = docker_proxy.listening_socket(str(tmp_path / "proxy.sock"))
    with listener:
        thread = threading.Thread(target=docker_proxy.serve,
                                  args=(listener, docker.server_address, 0.3, print))
        thread.start()
        assert exchange(tmp_path / "proxy.sock", get("/containers/json")).startswith(
            b"HTTP/1.1 200 ")
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_the_socket_it_binds_is_for_its_owner_and_group_only(tmp_path):
    with docker_proxy.listening_socket(str(tmp_path / "proxy.sock")):
        assert (tmp_path / "proxy.sock").stat().st_mode & 0o777 == 0o660


@pytest.mark.parametrize("argv", [[], ["--listen", "/x"], ["--upstream"],
                                  ["--upstream", "/x", "--follow", "1"]])
def test_its_command_line_takes_only_its_three_options(argv, capsys):
    assert docker_proxy.main(argv) == 2
    assert "usage: python3 -m dashboard.docker_proxy --upstream" in capsys.readouterr().err
