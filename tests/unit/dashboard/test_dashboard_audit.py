"""Per-operator sign-in and its audit trail (review L3): who signed in, from where, and who
tried and failed; the client's address from nginx's X-Real-IP, believed from nginx alone."""

from __future__ import annotations

import json

from dashboard.audit import LoginAudit, audit_line, client_address
from dashboard.auth import BasicAuthenticator, hash_password
from tests.harness import dashboard_status as fixtures
from tests.unit.dashboard.conftest import basic, request

NGINX = "172.30.1.2"
USERS = {"alice": hash_password("alice-password-16", iterations=1000),
         "bob": hash_password("bob-password-long", iterations=1000)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_operator_signs_in_with_their_own_password_and_no_other():
    auth = BasicAuthenticator(USERS)
    assert auth.check(basic("alice", "alice-password-16")) == "alice"
    assert auth.check(basic("bob", "bob-password-long")) == "bob"
    assert auth.check(basic("alice", "bob-password-long")) is None
    assert auth.check(basic("admin", "alice-password-16")) is None


def test_a_refusal_says_why_and_costs_a_hash_for_an_unknown_name_too():
    auth = BasicAuthenticator(USERS)
    unknown = auth.authenticate(basic("mallory", "guess"))
    assert (unknown.user, unknown.tried, unknown.reason) == (None, "mallory", "unknown user")
    wrong = auth.authenticate(basic("bob", "guess"))
    assert (wrong.user, wrong.tried, wrong.reason) == (None, "bob", "wrong password")
    assert auth.verifications == 2  # the same PBKDF2 for both: no timing oracle on names
    assert auth.authenticate("Basic !!!").reason == "malformed"
    assert auth.authenticate(None).reason == "no credentials"


def test_a_login_is_written_once_per_operator_and_address_per_session_not_per_poll():
    lines: list[str] = []
    clock = Clock()
    auth = BasicAuthenticator(USERS, clock=clock)
    audit = LoginAudit(lines.append, session_gap_s=1800, clock=clock)
    for _ in range(720):  # an hour of polls every 5 s
        audit.record(auth.authenticate(basic("alice", "alice-password-16")), "203.0.113.7")
        clock.now += 5
    assert lines == ['audit: event=login user="alice" client=203.0.113.7']
    audit.record(auth.authenticate(basic("alice", "alice-password-16")), "198.51.100.9")
    audit.record(auth.authenticate(basic("bob", "bob-password-long")), "203.0.113.7")
    assert lines[1:] == ['audit: event=login user="alice" client=198.51.100.9',
                         'audit: event=login user="bob" client=203.0.113.7']
    clock.now += 1801  # away longer than a session's gap: the next request is a new login
    audit.record(auth.authenticate(basic("bob", "bob-password-long")), "203.0.113.7")
    assert lines[-1] == 'audit: event=login user="bob" client=203.0.113.7'
    assert len(lines) == 4


def test_every_refused_attempt_is_written_with_the_name_tried_but_a_bare_challenge_is_not():
    lines: list[str] = []
    auth, audit = BasicAuthenticator(USERS), LoginAudit(lines.append)
    audit.record(auth.authenticate(None), "203.0.113.7")  # the browser's first request
    for _ in range(2):  # the second from the cache: still written
        audit.record(auth.authenticate(basic("bob", "guess")), "198.51.100.4")
    audit.record(auth.authenticate(basic("mallory", "guess")), "198.51.100.4")
    assert lines == [
        'audit: event=login-failed user="bob" client=198.51.100.4 reason="wrong password"',
        'audit: event=login-failed user="bob" client=198.51.100.4 reason="wrong password"',
        'audit: event=login-failed user="mallory" client=198.51.100.4 reason="unknown user"',
    ]


def test_a_made_up_user_name_cannot_forge_a_line_or_a_field():
    line = audit_line("login-failed", 'x" client=10.0.0.1\naudit: event=login user="alice',
                      "198.51.100.4", "unknown user")
    assert "\n" not in line
    shown = line.split("user=", 1)[1].rsplit(" client=", 1)[0]
    assert json.loads(shown).startswith('x" client=10.0.0.1\naudit')
    assert line.endswith(' client=198.51.100.4 reason="unknown user"')
    assert len(audit_line("login-failed", "a" * 5000, "198.51.100.4")) < 150


def test_the_client_is_nginx_s_x_real_ip_only_when_nginx_is_the_peer():
    assert client_address(NGINX, "203.0.113.7", [NGINX]) == "203.0.113.7"
    assert client_address(NGINX, "2001:DB8::1", [NGINX]) == "2001:db8::1"
    # Anyone else's header is their own claim: the peer is what is known.
    assert client_address("172.30.1.20", "203.0.113.7", [NGINX]) == "172.30.1.20"
    assert client_address(NGINX, None, [NGINX]) == NGINX
    assert client_address(NGINX, "not-an-address", [NGINX]) == NGINX
    assert client_address("::ffff:172.30.1.2", "203.0.113.7", [NGINX]) == "203.0.113.7"


def test_the_server_writes_logins_and_failures_to_its_log_with_the_operator_and_address(
        realistic_host, tmp_path):
    """The real server: stderr is the journal on a VPS, the container's log locally."""
    config = json.loads(realistic_host.state.config_path.read_text())
    del config["auth_user"], config["auth_password_hash"]
    config |= {"auth_users": USERS, "trusted_proxies": ["127.0.0.1"]}
    config_path = realistic_host.state.config_path.with_name("operators-config.json")
    config_path.write_text(json.dumps(config))
    forwarded = {"X-Real-IP": "203.0.113.7"}
    with fixtures.running_server(config_path) as (process, port):
        assert request(port, "/api/status", authorization=None).status == 401
        for _ in range(3):
            assert request(port, "/api/status", authorization=basic(
                "alice", "alice-password-16"), headers=forwarded).status == 200
        assert request(port, "/api/status", authorization=basic("bob", "nope"),
                       headers=forwarded).status == 401
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    audit = [line for line in stderr.splitlines() if line.startswith("audit: ")]
    assert audit == ['audit: event=login user="alice" client=203.0.113.7',
                     'audit: event=login-failed user="bob" client=203.0.113.7 '
                     'reason="wrong password"']
