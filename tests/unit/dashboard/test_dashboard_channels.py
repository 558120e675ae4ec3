"""Each alert channel against a real server on 127.0.0.1: a webhook receiver, an HTTPS ntfy
and heartbeat stand-in (a test CA), and a real SMTP server (aiosmtpd) that requires
STARTTLS and authentication, as a mail provider does."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from dashboard import alerts, channels, notify
from dashboard.notify_config import parse_notify
from tests.harness import dashboard_status as fixtures

NOW = int(time.time())
DOWN = {"severity": "critical", "area": "environment", "subject": "prod",
        "message": "prod is down: 502 from nginx"}


class Receiver:
    """An HTTP(S) server that records requests; `status` is what it answers, `delay` hangs."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict] = []
        self.status, self.delay = 200, 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.requests.append({"method": self.command, "path": self.path,
                                          "headers": dict(self.headers),
                                          "body": self.rfile.read(length)})
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_GET = _record  # noqa: N815 - http.server's naming

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        scheme, host = ("https", "localhost") if tls else ("http", "127.0.0.1")
        self.url = f"{scheme}://{host}:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        self.messages.append({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                              "data": envelope.content.decode(), "login": session.authenticated,
                              "tls": session.ssl is not None})
        return "250 OK"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    authority = fixtures.make_ca(directory / "ca")
    cert = fixtures.make_certificate(directory / "server", "localhost", 30, ca=authority)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, cert.parent / "privkey.pem")
    return authority[0], context


@pytest.fixture
def trust(ca, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(ca[0]))  # the sender's default context reads it
    monkeypatch.setattr(channels, "_TLS", [])  # made afresh, with the test CA


@pytest.fixture
def servers(ca):
    plain, tls = Receiver(), Receiver(ca[1])
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port(), tls_context=ca[1],
                      require_starttls=True, auth_require_tls=True, authenticator=authenticate,
                      server_hostname="localhost")
    smtp.start()
    yield plain, tls, mailbox, smtp
    smtp.stop()
    plain.close()
    tls.close()


def authenticate(server, session, envelope, mechanism, auth_data):
    """The test SMTP servers' one account: alerts / s3cret."""
    return AuthResult(success=(auth_data.login, auth_data.password) == (b"alerts", b"s3cret"))


def tls_mail(directory, host: str, port: int, timeout: float = 2.0):
    """One e-mail channel with `security: tls` (SMTPS) to host:port."""
    raw = {"dashboard_url": "", "state_file": str(directory / "s.json"),
           "summary_file": str(directory / "m.json"), "channels": [
               {"name": "mail", "kind": "email", "smtp_host": host, "smtp_port": port,
                "security": "tls", "username": "alerts", "from": "aiia@host.example",
                "to": ["oncall@example.com"]}]}
    settings = parse_notify(raw, {"channels": {"mail": {"password": "s3cret"}}}, "test")
    return dataclasses.replace(settings, timeout_seconds=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def configure(directory, plain, tls, smtp, password="s3cret", heartbeat=None):  # noqa: S107 - a test server's
    raw = {"dashboard_url": "https://status.example/", "hold_collections": 2,
           "state_file": str(directory / "notify.json"),
           "summary_file": str(directory / "summary.json"), "channels": [
        {"name": "slack", "kind": "slack"},
        {"name": "hook", "kind": "webhook"},
        {"name": "phone", "kind": "ntfy", "min_severity": "critical"},
        {"name": "mail", "kind": "email", "smtp_host": "localhost", "smtp_port": smtp.port,
         "security": "starttls", "username": "alerts", "from": "aiia@host.example",
         "to": ["oncall@example.com"]},
    ]}
    secrets = {"channels": {
        "slack": {"url": f"{plain.url}/services/T0/B0/xyz"},
        "hook": {"url": f"{plain.url}/hook", "token": "hook-token"},
        "phone": {"url": f"{tls.url}/aiia-alerts", "token": "tk_ntfy"},
        "mail": {"password": password}}}
    if heartbeat is not None:
        raw["heartbeat"] = {"every_minutes": 5}
        secrets["heartbeat"] = {"url": heartbeat}
    settings = parse_notify(raw, secrets, "test")
    return dataclasses.replace(settings, timeout_seconds=2.0)


def collect(settings, current, now, monkeypatch):
    monkeypatch.setattr(alerts, "evaluate", lambda document, at: list(current))
    return notify.run(settings, {}, now)


def test_every_channel_receives_the_start_and_the_end(servers, trust, tmp_path, monkeypatch):
    plain, tls, mailbox, smtp = servers
    settings = configure(tmp_path, plain, tls, smtp)
    for minute, current in enumerate([[DOWN], [DOWN], [], []]):
        collect(settings, current, NOW + 60 * minute, monkeypatch)
    slack = [json.loads(r["body"]) for r in plain.requests if r["path"].startswith("/services")]
    assert [m["text"].split("\n")[0] for m in slack] == [
        f"*[CRITICAL] {socket.gethostname()}: environment prod*",
        f"*[RESOLVED] {socket.gethostname()}: environment prod*"]
    assert "prod is down: 502 from nginx" in slack[0]["text"]
    assert "Dashboard: https://status.example/" in slack[0]["text"]
    hooks = [r for r in plain.requests if r["path"] == "/hook"]
    assert [json.loads(r["body"])["events"][0]["kind"] for r in hooks] == ["firing", "resolved"]
    assert hooks[0]["headers"]["Authorization"] == "Bearer hook-token"
    assert [r["headers"]["Priority"] for r in tls.requests] == ["5", "3"]
    assert tls.requests[0]["headers"]["Authorization"] == "Bearer tk_ntfy"
    assert tls.requests[0]["headers"]["Click"] == "https://status.example/"
    assert [m["tls"] and m["login"] for m in mailbox.messages] == [True, True]
    assert mailbox.messages[0]["to"] == ["oncall@example.com"]
    assert "Subject: [CRITICAL]" in mailbox.messages[0]["data"]


def test_a_channel_down_or_hanging_holds_up_no_other(servers, trust, tmp_path, monkeypatch):
    plain, tls, mailbox, smtp = servers
    settings = configure(tmp_path, plain, tls, smtp, password="wrong")  # mail refuses the login
    tls.delay = 5  # ntfy hangs past the 2 s timeout
    for minute in range(2):
        shown = collect(settings, [DOWN], NOW + 60 * minute, monkeypatch)
    by_name = {c["name"]: c for c in shown["channels"]}
    assert by_name["slack"]["last_error"] is None and by_name["hook"]["last_error"] is None
    assert "timed out" in by_name["phone"]["last_error"].lower()
    assert by_name["mail"]["last_error"].startswith("mail: SMTP")
    assert "s3cret" not in json.dumps(shown) and "wrong" not in json.dumps(shown)
    assert len([r for r in plain.requests if r["path"] == "/hook"]) == 1
    assert mailbox.messages == []


def test_the_heartbeat_pings_and_reports_failure_while_critical(servers, trust, tmp_path,
                                                                monkeypatch):
    plain, tls, mailbox, smtp = servers
    settings = configure(tmp_path, plain, tls, smtp, heartbeat=f"{tls.url}/ping/uuid")
    collect(settings, [], NOW, monkeypatch)
    collect(settings, [], NOW + 60, monkeypatch)  # within the 5 minutes: no second ping
    collect(settings, [DOWN], NOW + 300, monkeypatch)
    pings = [(r["method"], r["path"]) for r in tls.requests if r["path"].startswith("/ping")]
    assert pings == [("GET", "/ping/uuid"), ("POST", "/ping/uuid/fail")]
    fail = next(r for r in tls.requests if r["path"] == "/ping/uuid/fail")
    assert b"prod is down" in fail["body"]


def test_a_test_message_goes_through_every_channel_now(servers, trust, tmp_path):
    plain, tls, mailbox, smtp = servers
    results = notify.send_test(configure(tmp_path, plain, tls, smtp), "vps1", NOW)
    assert results == {"slack": None, "hook": None, "phone": None, "mail": None}
    message = email.message_from_string(mailbox.messages[0]["data"], policy=email.policy.default)
    assert message["Subject"] == "[WARNING] vps1: notify test"
    assert "this channel works" in message.get_content()


def test_email_over_implicit_tls_on_its_own_port(ca, trust, tmp_path):
    """`security: tls` (SMTPS, port 465 by default): TLS from the first byte, then login."""
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port(), ssl_context=ca[1],
                      authenticator=authenticate, auth_require_tls=False,
                      server_hostname="localhost")
    smtp.start()
    try:
        settings = tls_mail(tmp_path, "localhost", smtp.port)
        assert notify.send_test(settings, "vps1", NOW) == {"mail": None}
    finally:
        smtp.stop()
    # aiosmtpd marks a session TLS only after STARTTLS; the socket here is TLS throughout
    # (the client could not have spoken plain SMTP to it), and the login went over it.
    assert [m["login"] for m in mailbox.messages] == [True]


def test_email_over_tls_refuses_a_server_that_speaks_clear_text(trust, tmp_path):
    plain_server = Controller(Mailbox(), hostname="127.0.0.1", port=free_port())
    plain_server.start()
    try:
        settings = tls_mail(tmp_path, "127.0.0.1", plain_server.port, timeout=3.0)
        error = notify.send_test(settings, "vps1", NOW)["mail"]
    finally:
        plain_server.stop()
    assert error.startswith("mail: SMTP") and "SSL" in error
