"""scripts/smoke.py: the delivery's smoke test asks what the image contract asks, as the
stack file configures it (releases.<env>.health, release_header, smoke), and nothing else."""

import textwrap

import pytest

from scripts import smoke as smoke_module
from scripts.smoke import Expectations, expectations_of_stack, main, smoke
from scripts.stack_file import DeliveryError


def serve(monkeypatch, responses: dict[str, tuple[int, dict[str, str]]]) -> list[str]:
    """`get` answers `responses` by path (404 elsewhere); returns the paths asked."""
    asked = []

    def get(target, path):
        asked.append(path)
        status, headers = responses.get(path, (404, {}))
        return status, {name.lower(): value for name, value in headers.items()}, b"{}"

    monkeypatch.setattr(smoke_module, "get", get)
    return asked


def test_the_default_contract_asks_the_health_path_with_the_release_header(monkeypatch):
    asked = serve(monkeypatch, {"/healthz/": (200, {"X-Release": "r1"})})
    assert smoke(None, "r1") == []
    assert asked == ["/healthz/"]  # no front page, no WebSocket


def test_a_release_header_naming_another_release_fails(monkeypatch):
    serve(monkeypatch, {"/healthz/": (200, {"X-Release": "r0"})})
    (failure,) = smoke(None, "r1")
    assert "served by release 'r0' (X-Release), expected 'r1'" in failure


def test_an_app_without_a_release_header_passes_when_none_is_configured(monkeypatch):
    asked = serve(monkeypatch, {"/health/": (204, {}), "/": (200, {})})
    expected = Expectations(health_path="/health/", health_status=204, release_header=None,
                            paths=[("/", 200)])
    assert smoke(None, "r1", expected) == []
    assert asked == ["/health/", "/"]
    # The default contract would have refused that app: no /healthz/, no X-Release.
    assert smoke(None, "r1") != []


def test_a_smoke_path_that_answers_another_status_fails(monkeypatch):
    serve(monkeypatch, {"/healthz/": (200, {"X-Release": "r1"}),
                        "/api/": (500, {"X-Release": "r1"})})
    (failure,) = smoke(None, "r1", Expectations(paths=[("/api/", 200)]))
    assert failure.startswith("path /api/: /api/ answered 500 (X-Release r1), expected 200")


def write_stack(tmp_path, releases: str):
    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  aiia:releases:\n" +
                                               textwrap.indent(releases, "    "))


def test_the_expectations_come_from_the_stack_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_stack(tmp_path, textwrap.dedent("""\
        prod:
          image: ghcr.io/acme/app
          release: r1
          health: {path: /ht/, status: 204}
          release_header: null
          smoke:
            paths: [/, {path: /api/ping/, status: 202}]
            websockets: [/ws/chat/]
        """))
    assert expectations_of_stack("prod", "prod") == Expectations(
        "/ht/", 204, None, [("/", 200), ("/api/ping/", 202)], ["/ws/chat/"])


def test_a_stack_file_with_a_bad_contract_is_refused_like_the_program_refuses_it(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_stack(tmp_path, "prod: {image: a, release: r1, health: {path: health}}\n")
    with pytest.raises(DeliveryError, match="health.path='health' must be a path starting"):
        expectations_of_stack("prod", "prod")
    assert main(["--stack", "prod", "--url", "https://a.localhost", "--release", "r1"]) == 2


def test_the_command_line_adds_to_the_stack_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_stack(tmp_path, "prod: {image: a, release: r1}\n")
    asked = serve(monkeypatch, {"/healthz/": (200, {}), "/x/": (200, {})})
    assert main(["--stack", "prod", "--url", "https://a.localhost", "--release", "r1",
                 "--release-header", "", "--path", "/x/", "--attempts", "1"]) == 0
    assert asked == ["/healthz/", "/x/"]


def test_websockets_are_checked_only_when_configured(monkeypatch):
    from scripts.smoke import checks_of

    assert [name for name, _ in checks_of(Expectations())] == ["health"]
    asked = []
    monkeypatch.setattr(smoke_module, "check_websocket",
                        lambda target, release, path: asked.append(path) or "echoed")
    serve(monkeypatch, {"/healthz/": (200, {"X-Release": "r1"})})
    assert smoke(None, "r1", Expectations(websockets=["/ws/chat/"])) == []
    assert asked == ["/ws/chat/"]
