"""`aiia:platform.tls`: where the certificates of every domain come from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from components.settings.checks import EMAIL_RE, NAMESPACE, Problems

TLS_MODES = ("self_signed", "letsencrypt", "letsencrypt_staging", "acme")
# The ACME directory of each mode that names its CA; `acme` takes tls.acme_directory_url.
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt_staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
# The certificates' key types (tls.key_type): ECDSA P-256, or RSA 2048 for old clients.
TLS_KEY_TYPES = ("ecdsa", "rsa")
TLS_KEY = f"{NAMESPACE}:platform.tls"


@dataclass(frozen=True)
class TlsSettings:
    # letsencrypt / letsencrypt_staging: Let's Encrypt's CA; acme: another ACME CA at
    # acme_directory_url (ca_bundle: the CA of that server's own HTTPS certificate, when it
    # is not a public one); self_signed: no CA, the bootstrap certificate stays.
    mode: str = "letsencrypt"
    email: str | None = None  # the ACME account's; required by Let's Encrypt's modes
    acme_directory_url: str | None = None
    ca_bundle: str | None = None  # a PEM file on the machine that runs `pulumi up`
    key_type: str = "ecdsa"  # ecdsa: P-256; rsa: 2048 bits, for clients that lack ECDSA
    # Only for a CA that still serves OCSP: Let's Encrypt ended OCSP in 2025, so stapling is
    # refused in its modes (nginx would warn on every reload and staple nothing).
    ocsp_stapling: bool = False

    @property
    def acme_directory(self) -> str | None:
        return ACME_DIRECTORIES.get(self.mode, self.acme_directory_url)


def check_tls(tls: TlsSettings, problems: Problems) -> None:
    if tls.mode not in TLS_MODES:
        problems.add(f"{TLS_KEY}.mode={tls.mode!r} is not a TLS mode; use one of "
                     f"{', '.join(TLS_MODES)} (acme: another ACME CA, at acme_directory_url)")
        return
    _check_email(tls, problems)
    _check_acme_directory(tls, problems)
    if tls.ca_bundle is not None:
        _check_ca_bundle(tls.ca_bundle, problems)
    if tls.key_type not in TLS_KEY_TYPES:
        problems.add(f"{TLS_KEY}.key_type={tls.key_type!r} must be ecdsa (P-256) or rsa (2048)")
    if tls.ocsp_stapling is True and tls.mode != "acme":
        problems.add(f"{TLS_KEY}.ocsp_stapling=true with tls.mode={tls.mode}: "
                     + ("Let's Encrypt ended OCSP in 2025, there is nothing to staple"
                        if tls.mode in ACME_DIRECTORIES else "a self-signed certificate has "
                        "no OCSP responder") + "; remove it")


def _check_email(tls: TlsSettings, problems: Problems) -> None:
    """The ACME account's address: required by Let's Encrypt, well-formed when given."""
    if tls.mode in ACME_DIRECTORIES and not (tls.email and EMAIL_RE.match(str(tls.email))):
        problems.add(f"{TLS_KEY}.email={tls.email!r} must be an e-mail address for Let's "
                     f"Encrypt (tls.mode={tls.mode}): it is told of expiring certificates and "
                     "policy changes; set platform.tls.email")
    elif tls.email is not None and not EMAIL_RE.match(str(tls.email)):
        problems.add(f"{TLS_KEY}.email={tls.email!r} is not an e-mail address")


def _check_acme_directory(tls: TlsSettings, problems: Problems) -> None:
    """tls.mode=acme names its CA's directory (https); the other modes name none."""
    if tls.mode == "acme":
        url = str(tls.acme_directory_url or "")
        if not url:
            problems.add(f"{TLS_KEY}.acme_directory_url is missing: tls.mode=acme needs the "
                         "CA's ACME directory, e.g. https://acme.example.com/directory")
        elif not re.match(r"^https://[^\s/]+(/\S*)?$", url):
            problems.add(f"{TLS_KEY}.acme_directory_url={url!r} must be an https:// URL (an "
                         "ACME account key and orders must not travel in the clear)")
    elif tls.acme_directory_url is not None or tls.ca_bundle is not None:
        problems.add(f"{TLS_KEY}.acme_directory_url and ca_bundle are for tls.mode=acme only "
                     f"(tls.mode={tls.mode} names its CA's directory itself); remove them or "
                     "set tls.mode: acme")


def _check_ca_bundle(ca_bundle: str, problems: Problems) -> None:
    """The CA bundle is a readable PEM file on this machine."""
    path = Path(str(ca_bundle)).expanduser()
    try:
        pem = path.read_text(errors="replace")
    except OSError as error:
        problems.add(f"{TLS_KEY}.ca_bundle={ca_bundle!r} cannot be read ({error.strerror}); "
                     "give the path of a PEM file on this machine (it is copied to the host)")
    else:
        if "-----BEGIN CERTIFICATE-----" not in pem:
            problems.add(f"{TLS_KEY}.ca_bundle={ca_bundle!r} holds no PEM certificate")
