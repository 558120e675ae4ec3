"""The engine client: its error messages (a health wait that times out explains itself) and
the API version it speaks, negotiated as the Docker provider's Go client does."""

import sys

import pytest

from tests.harness.engine import (
    DialStdioEngine,
    DockerEngine,
    EngineError,
    health_log,
    negotiated_api_version,
)


def test_the_health_log_shows_each_check_exit_code_and_output():
    state = {"Health": {"Status": "unhealthy", "Log": [
        {"Start": "2026-12-03T05:49:42.614765771Z", "ExitCode": 137, "Output": ""},
        {"Start": "2026-12-03T05:49:52.995425148Z", "ExitCode": 1,
         "Output": "last collection 80 s ago (one every 30 s; stale after 75 s)\n"},
    ]}}
    text = health_log(state)
    assert "2026-12-03T05:49:42.614 exit 137: (no output)" in text
    assert "exit 1: last collection 80 s ago" in text


def test_no_health_check_run_yet_is_said_so():
    assert health_log({"Health": {"Status": "starting", "Log": []}}) == "no health check has run"
    assert health_log({}) == "no health check has run"


def test_the_api_version_is_the_lower_of_the_engines_and_the_providers_client():
    # docker/docker client/client.go negotiateAPIVersionPing; the client: docker/docker
    # v28.5.2 (pulumi-docker v5), api.DefaultVersion 1.51.
    assert negotiated_api_version("1.45") == "1.45"  # Debian 13's docker.io 26.1
    assert negotiated_api_version("1.41") == "1.41"  # Debian 12's docker.io 20.10
    assert negotiated_api_version("1.52") == "1.51"  # an engine newer than the client
    assert negotiated_api_version("1.9") == "1.9"  # numbers, not strings, are compared
    assert negotiated_api_version(None) == "1.24"  # no API-Version header


# One HTTP exchange on stdin/stdout, as `docker system dial-stdio` carries it: the answer
# names the engine's API version and echoes the path it was asked for.
ECHO_ENGINE = ("import sys; path = sys.stdin.buffer.readline().split()[1]; "
               "sys.stdout.buffer.write(b'HTTP/1.1 200 OK\\r\\nAPI-Version: 1.45\\r\\n"
               "Content-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s' % (len(path), path)); "
               "sys.stdout.flush()")


def test_after_the_ping_every_request_names_the_negotiated_version():
    engine = DialStdioEngine([sys.executable, "-c", ECHO_ENGINE])
    assert engine.request("GET", "/version") == b"/version"  # not negotiated yet
    assert engine.negotiate() == "1.45"
    assert engine.request("GET", "/containers/json") == b"/v1.45/containers/json"


def test_one_failed_inspect_fails_the_health_gate_at_once():
    """Issue #28 item 8: terraform-provider-docker's `waitForHealthyState` sends the first
    ContainerInspect error as the result ("error inspecting container state"); the replay
    kept polling through it. Over ssh:// one dropped connection does it, and the gate of a
    release failed that way leaves the old release serving (its switch never runs)."""
    class Dropping(DockerEngine):
        def __init__(self):
            super().__init__()
            self.inspections = 0

        def request(self, method, url, body=None, **_):
            self.inspections += 1
            if self.inspections == 2:
                raise EngineError("dial stdio: connection reset by peer")
            return {"State": {"Running": True, "Health": {"Status": "starting", "Log": []}}}

    engine = Dropping()
    with pytest.raises(EngineError, match="error inspecting container state: dial stdio"):
        engine.wait_healthy("aiia-app-prod-r2", timeout=60)
    assert engine.inspections == 2  # not polled on through it
