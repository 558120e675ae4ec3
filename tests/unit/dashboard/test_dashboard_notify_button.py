"""The page's "send a test message" button: the one POST the server takes, refused unless it
is the page's own (cross-site request forgery), answered by the notifier's next run."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from dashboard import notify
from dashboard.notify_config import parse_notify
from dashboard.server import cross_site_problem
from tests.harness import dashboard_status as fixtures
from tests.unit.dashboard.conftest import request
from tests.unit.dashboard.test_dashboard_notify import RAW, SECRETS, Recorder

PAGE = {"X-Aiia-Request": "notify-test", "Host": "status.example.com",
        "Origin": "https://status.example.com", "Sec-Fetch-Site": "same-origin"}


@pytest.mark.parametrize(("change", "problem"), [
    ({"X-Aiia-Request": None}, "missing the X-Aiia-Request header"),
    ({"Sec-Fetch-Site": "cross-site"}, "a cross-site request"),
    ({"Sec-Fetch-Site": "same-site"}, "a same-site request"),
    ({"Origin": "https://evil.example"}, "from another origin"),
    ({"Origin": "null"}, "from another origin"),
])
def test_a_request_that_is_not_the_pages_own_is_refused(change, problem):
    headers = {k: v for k, v in {**PAGE, **change}.items() if v is not None}
    assert problem in cross_site_problem(headers)


def test_the_pages_own_request_passes_with_or_without_the_browsers_headers():
    assert cross_site_problem(PAGE) is None
    assert cross_site_problem({"X-Aiia-Request": "notify-test"}) is None  # curl, old browsers


@pytest.fixture
def button_host(realistic_host, tmp_path_factory):
    """The realistic host's config with alerts and a requests directory the server (nobody
    here, aiia-dashboard on a VPS) may write."""
    directory = fixtures.readable_tempdir("aiia-notify-button-")
    requests_dir = directory / "requests"
    requests_dir.mkdir()
    os.chmod(requests_dir, 0o777)  # noqa: S103 - the server runs as nobody here
    config = json.loads(realistic_host.state.config_path.read_text())
    config["notify"] = {**RAW, "state_file": str(directory / "state.json"),
                        "summary_file": str(directory / "summary.json"),
                        "requests_dir": str(requests_dir)}
    path = realistic_host.state.config_path.with_name("config-button.json")
    path.write_text(json.dumps(config))
    yield path, config["notify"]
    path.unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)


def test_the_button_leaves_a_request_that_the_next_run_answers_once(button_host, monkeypatch):
    path, raw = button_host
    with fixtures.running_server(path) as (_, port):
        refused = request(port, "/api/notify-test", method="POST")  # no page header
        assert refused.status == 403 and "X-Aiia-Request" in refused.json()["error"]
        forged = request(port, "/api/notify-test", method="POST",
                         headers={"X-Aiia-Request": "notify-test", "Origin": "https://evil.example"})
        assert forged.status == 403
        assert request(port, "/api/notify-test", method="POST", authorization=None,
                       headers={"X-Aiia-Request": "notify-test"}).status == 401
        asked = request(port, "/api/notify-test", method="POST",
                        headers={"X-Aiia-Request": "notify-test"})
        assert asked.status == 202 and "within a minute" in asked.json()["message"]
        assert request(port, "/api/status", method="POST").status == 405  # still read-only
    settings = parse_notify(raw, SECRETS, "test")
    sender = Recorder()
    monkeypatch.setattr(notify.alerts, "evaluate", lambda document, at: [])
    shown = notify.run(settings, {}, 1_800_000_000, sender)
    assert {name: [e[0]["kind"] for e in sent] for name, sent in sender.sent.items()} == {
        "ops": ["test"], "pager": ["test"]}  # every channel, whatever its min_severity
    assert shown["test"] == {"at": "2027-01-15T08:00:00Z", "results": {"ops": None, "pager": None}}
    notify.run(settings, {}, 1_800_000_060, sender)
    assert len(sender.sent["ops"]) == 1  # answered once


def test_without_a_requests_directory_the_button_says_what_to_run(realistic_host):
    config = json.loads(realistic_host.state.config_path.read_text())
    config["notify"] = {**RAW}
    path = realistic_host.state.config_path.with_name("config-no-button.json")
    path.write_text(json.dumps(config))
    try:
        with fixtures.running_server(path) as (_, port):
            answer = request(port, "/api/notify-test", method="POST",
                             headers={"X-Aiia-Request": "notify-test"})
        assert answer.status == 409 and "make alerts-test" in answer.json()["error"]
    finally:
        path.unlink(missing_ok=True)
