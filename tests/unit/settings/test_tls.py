"""components/settings/tls.py: platform.tls, each bad value refused naming the key and the
fix."""

import pytest

from tests.harness.settings import parse, problems


@pytest.mark.parametrize(("tls", "expected"), [
    ({"mode": "acme"}, "aiia:platform.tls.acme_directory_url is missing"),
    ({"mode": "acme", "acme_directory_url": "http://ca.example/dir"},
     "acme_directory_url='http://ca.example/dir' must be an https:// URL"),
    ({"mode": "acme", "acme_directory_url": "https://ca.example/dir",
      "ca_bundle": "/nonexistent/ca.pem"},
     "ca_bundle='/nonexistent/ca.pem' cannot be read (No such file or directory)"),
    ({"mode": "letsencrypt", "email": "ops@example.com",
      "acme_directory_url": "https://ca.example/dir"},
     "acme_directory_url and ca_bundle are for tls.mode=acme only"),
    ({"mode": "letsencrypt", "email": "ops@example.com", "ocsp_stapling": True},
     "Let's Encrypt ended OCSP in 2025"),
    ({"mode": "letsencrypt", "email": "ops@example.com", "key_type": "dsa"},
     "key_type='dsa' must be ecdsa (P-256) or rsa (2048)"),
])
def test_bad_tls_settings_are_refused_naming_the_key_and_the_fix(tls, expected):
    def set_tls(raw):
        raw["platform"]["tls"] = tls

    assert expected in problems("prod", set_tls)


def test_a_custom_acme_ca_with_its_bundle_is_accepted(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")

    def acme(raw):
        raw["platform"]["tls"] = {"mode": "acme", "acme_directory_url": "https://ca.test/dir",
                                  "ca_bundle": str(bundle)}

    tls = parse("prod", acme).platform.tls
    assert tls.acme_directory == "https://ca.test/dir" and tls.email is None
    assert parse("prod").platform.tls.acme_directory == \
        "https://acme-v02.api.letsencrypt.org/directory"


def test_unknown_tls_mode():
    def bad_tls(raw):
        raw["platform"]["tls"]["mode"] = "acme-magic"

    message = problems("prod", bad_tls)
    assert "aiia:platform.tls.mode='acme-magic' is not a TLS mode" in message
    assert "self_signed, letsencrypt, letsencrypt_staging" in message


def test_letsencrypt_needs_an_email():
    def no_email(raw):
        del raw["platform"]["tls"]["email"]

    assert "aiia:platform.tls.email=None must be an e-mail address" in problems("prod", no_email)
