"""Days to certificate expiry from real certificate files made with the openssl CLI."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime

import pytest

from dashboard.certificates import (
    CertificateError,
    certificate_status,
    read_certificate,
    renewal_state,
)
from tests.harness.dashboard_status import make_ca, make_certificate


def openssl_not_after(path) -> float:
    """What `openssl x509 -enddate` says, as epoch seconds: the reference we must match."""
    output = subprocess.run(
        ["openssl", "x509", "-enddate", "-noout", "-in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    text = output.strip().removeprefix("notAfter=")
    return datetime.strptime(text.replace("GMT", "+0000"), "%b %d %H:%M:%S %Y %z").timestamp()


def test_days_left_matches_openssl_for_a_certificate_nine_days_from_expiry(tmp_path):
    path = make_certificate(tmp_path / "staging", "staging.example.com", days=9)
    now = time.time()
    status = certificate_status("staging.example.com", path, now)
    assert status["error"] is None
    assert status["days_left"] == pytest.approx((openssl_not_after(path) - now) / 86400, abs=0.01)
    assert 8.9 < status["days_left"] <= 9.0
    assert status["self_signed"] is True
    assert status["covers_domain"] is True


def test_a_ca_signed_leaf_names_its_issuer_and_is_not_self_signed(tmp_path):
    ca = make_ca(tmp_path / "ca")
    path = make_certificate(tmp_path / "prod", "prod.example.com", days=90, ca=ca)
    info = read_certificate(path)
    assert info.not_after == openssl_not_after(path)
    assert info.self_signed is False
    assert info.issuer_organization == "Test CA (fixture)"
    assert info.dns_names == ("prod.example.com",)
    assert certificate_status("other.example.com", path, time.time())["covers_domain"] is False


def test_the_leaf_of_a_fullchain_bundle_is_read(tmp_path):
    ca = make_ca(tmp_path / "ca")
    leaf = make_certificate(tmp_path / "leaf", "prod.example.com", days=30, ca=ca)
    bundle = tmp_path / "fullchain.pem"
    bundle.write_bytes(leaf.read_bytes() + ca[0].read_bytes())  # leaf first, then the CA
    assert read_certificate(bundle).not_after == openssl_not_after(leaf)


def test_der_encoded_certificate(tmp_path):
    pem = make_certificate(tmp_path / "der", "der.example.com", days=40)
    der = tmp_path / "cert.der"
    subprocess.run(
        ["openssl", "x509", "-in", str(pem), "-outform", "DER", "-out", str(der)], check=True
    )
    assert read_certificate(der).not_after == openssl_not_after(pem)


def test_an_expired_certificate_has_negative_days(tmp_path):
    path = make_certificate(tmp_path / "old", "old.example.com", days=1)
    after_expiry = openssl_not_after(path) + 3 * 86400
    assert certificate_status("old.example.com", path, after_expiry)["days_left"] == -3.0


def test_missing_and_garbage_files_are_reported_not_raised(tmp_path):
    missing = certificate_status("a.example.com", tmp_path / "nope.pem", time.time())
    assert missing["error"] == "certificate file missing" and missing["days_left"] is None
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert "not an X.509" in certificate_status("a.example.com", garbage, time.time())["error"]
    with pytest.raises(CertificateError):
        (tmp_path / "text.pem").write_text("hello")
        read_certificate(tmp_path / "text.pem")


def certbot_record(path, **fields):
    """A record as templates/certbot/certbot.sh.j2 writes it."""
    record = {"finished_at": "2026-12-01T06:00:00Z", "directory": "https://acme.test/dir",
              "domains": {"prod.example.com": "renewal-failed", "staging.example.com":
                          "not-issued"}, "failed": ["prod.example.com", "staging.example.com"],
              "issued": []}
    record.update(fields)
    path.write_text(json.dumps(record))
    return path


def test_with_an_acme_ca_a_bootstrap_certificate_is_not_issued_and_the_last_run_is_named(
        tmp_path):
    renewal = renewal_state(certbot_record(tmp_path / "certbot.json"))
    assert renewal["error"] is None and renewal["last_run_at"] == "2026-12-01T06:00:00Z"
    bootstrap = make_certificate(tmp_path / "staging", "staging.example.com", days=30)
    staging = certificate_status("staging.example.com", bootstrap, time.time(), renewal)
    assert staging["acme"] is True and staging["issued"] is False
    assert staging["renewal_outcome"] == "not-issued"
    ca = make_ca(tmp_path / "ca")
    issued = make_certificate(tmp_path / "prod", "prod.example.com", days=20, ca=ca)
    prod = certificate_status("prod.example.com", issued, time.time(), renewal)
    assert prod["issued"] is True and prod["renewal_outcome"] == "renewal-failed"
    assert prod["last_renewal_run"] == "2026-12-01T06:00:00Z"


def test_without_an_acme_ca_nothing_is_expected_to_be_issued(tmp_path):
    assert renewal_state(None) is None
    path = make_certificate(tmp_path / "prod", "prod.example.com", days=30)
    status = certificate_status("prod.example.com", path, time.time(), None)
    assert status["acme"] is False and status["issued"] is None


def test_a_renewal_job_that_never_ran_or_left_a_broken_record(tmp_path):
    never = renewal_state(tmp_path / "missing.json")
    assert never["last_run_at"] is None and never["error"] is None
    (tmp_path / "broken.json").write_text("{not json")
    assert "unreadable" in renewal_state(tmp_path / "broken.json")["error"]
    other = certbot_record(tmp_path / "other.json", domains=["not", "a", "map"])
    assert "not a certbot run record" in renewal_state(other)["error"]
