"""components/settings/releases.py: each release (image tag, tuning, the app's user, its
secret key) and the registry it is pulled from."""

import pytest

from tests.harness.settings import parse, problems, problems_of, secrets_of


def test_missing_django_secret_key_of_a_release():
    values = secrets_of("staging")

    def without(key):
        return None if key == "staging_secret_key" else values(key)

    assert "aiia:staging_secret_key is missing" in problems("staging", secrets=without)


@pytest.mark.parametrize("tag", ["", "-leading-dash", ".dot", "has space", "a" * 129,
                                 "v1:2", "sha256:abc"])
def test_release_that_is_not_an_image_tag(tag):
    def bad_release(raw):
        raw["releases"]["prod"]["release"] = tag

    message = problems("prod", bad_release)
    assert f"aiia:releases.prod.release={tag!r} is not a valid image tag" in message


@pytest.mark.parametrize("tag", ["2026.11.26-1", "v1.2.3", "latest", "sha-0a1b2c3",
                                 "sha256:" + "a" * 64])
def test_valid_release_tags(tag):
    def release(raw):
        raw["releases"]["prod"]["release"] = tag

    assert parse("prod", release).releases[0].release == tag


@pytest.mark.parametrize("key,value", [("watch_seconds", 601), ("watch_max_error_percent", 101),
                                       ("keep_images", 0), ("stop_grace_seconds", 0),
                                       ("health_gate_seconds", 5),
                                       ("health_gate_seconds", 901),
                                       ("pids_limit", 31), ("pids_limit", 32769)])
def test_release_tuning_out_of_range(key, value):
    def tune(raw):
        raw["releases"]["prod"][key] = value

    assert f"aiia:releases.prod.{key}={value} must be between" in problems("prod", tune)


@pytest.mark.parametrize(("run_as", "expected"), [
    ("app", "run_as='app' must be a numeric uid:gid"),
    ("10001", "run_as='10001' must be a numeric uid:gid"),
    ("0:0", "run_as='0:0' runs the app as root"),
    ("10001:0", "run_as='10001:0' runs the app as root"),
    ("0:10001", "run_as='0:10001' runs the app as root"),
])
def test_an_app_user_that_is_not_a_non_root_uid_gid_is_refused(run_as, expected):
    def run_as_(raw):
        raw["releases"]["prod"]["run_as"] = run_as

    message = problems("prod", run_as_)
    assert f"aiia:releases.prod.{expected}" in message
    if "root" in expected:
        assert "aiia:releases.prod.allow_root=true" in message


def test_root_is_accepted_only_when_allowed_explicitly():
    def allowed(raw):
        raw["releases"]["prod"].update(run_as="0:0", allow_root="true")

    (release,) = parse("prod", allowed).releases
    assert (release.run_as, release.allow_root) == ("0:0", True)
    (default,) = parse("prod").releases
    assert (default.run_as, default.allow_root) == ("10001:10001", False)


@pytest.mark.parametrize(("registry", "expected"), [
    ({"address": "ghcr.io"}, "aiia:registry needs username"),
    ({"address": "ghcr.io", "username": "u", "password": "x"},
     "registry.password must not be in the stack file"),
    ({"address": "ghcr.io", "username": "u"}, "the secret aiia:registry_password is not"),
])
def test_a_registry_without_its_credentials_is_refused(registry, expected):
    assert expected in problems_of(lambda raw: raw.update(registry=registry))
