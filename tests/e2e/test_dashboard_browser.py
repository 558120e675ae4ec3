"""The status page in a real browser: Debian's Chromium, headless, driven by Playwright.

The dashboard server runs for real (unprivileged) on the realistic state of
tests/harness/dashboard_status.py; the test checks what an operator sees, that a
poll brings new data, that nothing leaves 127.0.0.1, that the CSP holds, and saves the
screenshots kept under docs/ (docs/dashboard.png, docs/dashboard-phone.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import dashboard_status as fixtures
from tests.unit.dashboard.conftest import pitr_drill, pitr_snapshot

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = shutil.which("chromium") and "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(os.environ.get("AIIA_DASHBOARD_SCREENSHOTS", fixtures.REPO_ROOT / "docs"))
SECTIONS = (
    "alerts",
    "environments",
    "services",
    "host",
    "certificates",
    "backups",
    "pitr",
    "releases",
    "logs",
)
XSS_LINE = '<img src="/xss-probe" onerror="window.__pwned = 1"> <script>window.__pwned=2</script>'
# Every CSP violation the page causes is recorded (the init script runs outside the CSP).
RECORD_CSP = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
)


@pytest.fixture(scope="module")
def dashboard() -> Iterator[tuple[fixtures.RealisticHost, int]]:
    if not CHROMIUM or not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    root = fixtures.readable_tempdir("aiia-dashboard-browser-")
    try:
        # Realistic iteration count: the browser pays PBKDF2 once, then the cache answers.
        with fixtures.realistic_host(root, iterations=310_000, poll_seconds=2) as host:
            app_prod = next(c for c in host.docker.containers if c.environment == "prod")
            app_prod.log_lines.append(XSS_LINE)
            # PITR on, all well (issue #30): what pitr.sh tick and last month's drill left.
            state = host.state.root / "state"
            (state / "pitr.json").write_text(json.dumps(pitr_snapshot(host.state.now)))
            drill = pitr_drill(host.state.now, 6)
            (state / "pitr-drills.jsonl").write_text(json.dumps(drill) + "\n")
            host.collect()
            with fixtures.running_server(host.state.config_path) as (_, port):
                yield host, port
    finally:
        fixtures.remove_tree(root)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, port: int, **context_options):
    context = browser.new_context(
        http_credentials={"username": fixtures.USER, "password": fixtures.PASSWORD},
        **context_options,
    )
    requests: list[str] = []
    problems: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
    )
    page.add_init_script(RECORD_CSP)
    response = page.goto(f"http://127.0.0.1:{port}/")
    assert response is not None and response.status == 200
    page.wait_for_selector("#service-rows tr td", timeout=15_000)
    return context, page, requests, problems


def test_the_page_shows_every_section_updates_and_stays_on_this_host(dashboard, browser):
    host, port = dashboard
    context, page, requests, problems = open_page(
        browser, port, viewport={"width": 1366, "height": 900}, color_scheme="dark"
    )
    try:
        for section in SECTIONS:
            assert page.locator(f"#{section}").is_visible(), section
        assert page.locator("#environment-cards article").count() == 2
        # Every service of the realistic host: since #27, prod's worker process among them.
        assert page.locator("#service-rows tr").count() == 8
        # CPU, memory, swap, disk, a pending reboot (review M9), load.
        assert page.locator("#host-tiles .tile").count() == 6
        assert page.locator("#certificate-rows tr").count() == 3
        assert page.locator("#release-rows tr").count() == 9
        assert page.locator("#environment-cards .strip rect").count() == 2 * 96
        assert page.locator("#host-tiles svg polyline").count() >= 5
        assert page.locator("#pitr-cards article").count() == 3
        archive = page.locator('#pitr-cards article[data-card="WAL archive"]')
        assert archive.locator(".badge").inner_text() == "archiving"
        assert "000000010000000000000012" in archive.inner_text()
        assert "42.0 s (target 60 s)" in page.locator("#pitr").inner_text()
        alerts = page.locator("#alert-list").inner_text()
        assert "staging.example.com" in alerts and "Expires in 9 days" in alerts
        assert "failed_health_check" in alerts
        # Warnings only (the host's own load may add one): the pill says how many.
        assert page.locator("#overall").get_attribute("class") == "pill warning"
        assert page.locator("#overall").inner_text().endswith("warnings")

        # The logs of a chosen service: 50 lines, and markup in a log line stays text.
        page.select_option("#log-service", "app-prod")
        expect(page.locator("#log-lines")).to_contain_text("xss-probe")
        assert page.locator("#log-lines span").count() == 50
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#log-lines img").count() == 0

        # A value changes after a poll: tonight's backup fails, the collector runs again.
        assert (
            page.locator("#backup-cards article").first.locator(".badge").first.inner_text()
            == "succeeded"
        )
        with open(host.state.root / "state" / "backups.jsonl", "a") as backups:
            backups.write(
                '{"id":"backup-tonight","started_at":"'
                + fixtures.format_utc(host.state.now)
                + '","finished_at":"'
                + fixtures.format_utc(host.state.now + 40)
                + '","outcome":"failed","archive":"","size_bytes":0,"verified":false,'
                '"databases":["aiia_prod","aiia_staging"],'
                '"reason":"pg_dump: error: connection to server failed: FATAL: too many '
                'connections for role \\"aiia_backup\\""}\n'
            )
        host.collect()
        expect(page.locator("#overall")).to_have_text(re.compile(r"^1 critical"), timeout=10_000)
        first_alert = page.locator("#alert-list li").first
        assert "Last backup failed" in first_alert.inner_text()
        assert "critical" in first_alert.get_attribute("class")
        assert (
            page.locator("#backup-cards article").first.locator(".badge").first.inner_text()
            == "failed"
        )

        # For the picture in docs/: the log of the service the alerts point at.
        page.select_option("#log-service", "app-staging")
        expect(page.locator("#log-meta")).to_contain_text("(staging)")
        DOCS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(300)
        page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)

        assert page.evaluate("window.__csp") == []
        assert problems == []
        foreign = [url for url in requests if not url.startswith(f"http://127.0.0.1:{port}/")]
        assert foreign == []
        assert not [url for url in requests if "xss-probe" in url]
    finally:
        context.close()


def test_readable_on_a_phone(dashboard, browser):
    _, port = dashboard
    context, page, requests, problems = open_page(
        browser,
        port,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
        color_scheme="dark",
    )
    try:
        # Nothing wider than the screen: tables scroll inside their own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.locator("#alert-list li").first.is_visible()
        font = page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
        assert font >= 14
        page.screenshot(path=str(DOCS / "dashboard-phone.png"))
        assert problems == []
        assert all(url.startswith(f"http://127.0.0.1:{port}/") for url in requests)
    finally:
        context.close()


def test_without_credentials_the_browser_gets_401_and_nothing_else(dashboard, browser):
    _, port = dashboard
    context = browser.new_context()
    try:
        page = context.new_page()
        responses = []
        page.on(
            "response",
            lambda response: responses.append(
                (response.url, response.status, response.headers.get("www-authenticate", ""))
            ),
        )
        # Headless Chromium cannot prompt for a password: the navigation ends in an error.
        with pytest.raises(sync_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
            page.goto(f"http://127.0.0.1:{port}/")
        assert responses and all(
            status == 401 and challenge.startswith("Basic") for _, status, challenge in responses
        )
        assert page.locator("#services").count() == 0
    finally:
        context.close()
