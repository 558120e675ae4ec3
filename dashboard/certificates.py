"""Days to expiry of the TLS certificates nginx serves, read from the PEM/DER files.

Pure Python: only the few DER fields the page needs (validity, subject/issuer common
name, DNS names) are walked; no third-party crypto library on the host. The signature is
not checked: this answers "when does the file nginx serves expire", not "is it trusted".
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .timestamps import format_utc, parse_utc

WARNING_DAYS = 14
CRITICAL_DAYS = 7

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_OID_COMMON_NAME = bytes.fromhex("550403")
_OID_ORGANIZATION = bytes.fromhex("55040a")
_OID_SUBJECT_ALT_NAME = bytes.fromhex("551d11")


class CertificateError(ValueError):
    pass


@dataclass(frozen=True)
class CertificateInfo:
    not_before: float
    not_after: float
    subject_common_name: str | None
    issuer_common_name: str | None
    issuer_organization: str | None
    self_signed: bool
    dns_names: tuple[str, ...]

    def covers(self, domain: str) -> bool:
        names = self.dns_names or ((self.subject_common_name,) if self.subject_common_name else ())
        for name in names:
            if name.lower() == domain.lower():
                return True
            if name.startswith("*.") and domain.lower().partition(".")[2] == name[2:].lower():
                return True
        return False


def read_certificate(path: Path) -> CertificateInfo:
    """The first certificate of a PEM bundle (the leaf of a fullchain.pem) or a DER file."""
    data = path.read_bytes()
    match = _PEM.search(data)
    if match:
        try:
            der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
        except binascii.Error as error:
            raise CertificateError(f"{path}: broken base64 in the PEM block") from error
    elif data.startswith(b"\x30"):
        der = data
    else:
        raise CertificateError(f"{path}: neither a PEM certificate nor DER")
    return parse_der(der)


def parse_der(der: bytes) -> CertificateInfo:
    try:
        certificate = _children(der, *_tlv(der, 0)[1:])
        tbs_tag, tbs_start, tbs_end = certificate[0]
        fields = _children(der, tbs_start, tbs_end)
        if fields[0][0] == 0xA0:  # explicit version tag
            fields = fields[1:]
        _, issuer, validity, subject = fields[1], fields[2], fields[3], fields[4]
        not_before_tlv, not_after_tlv = _children(der, validity[1], validity[2])[:2]
        dns_names: tuple[str, ...] = ()
        for tag, start, end in fields[5:]:
            if tag == 0xA3:  # [3] extensions
                dns_names = _dns_names(der, start, end)
        return CertificateInfo(
            not_before=_time(der, not_before_tlv),
            not_after=_time(der, not_after_tlv),
            subject_common_name=_name_attribute(der, subject, _OID_COMMON_NAME),
            issuer_common_name=_name_attribute(der, issuer, _OID_COMMON_NAME),
            issuer_organization=_name_attribute(der, issuer, _OID_ORGANIZATION),
            self_signed=der[issuer[1] : issuer[2]] == der[subject[1] : subject[2]],
            dns_names=dns_names,
        )
    except (IndexError, ValueError) as error:
        raise CertificateError(f"not an X.509 certificate ({error})") from error


def renewal_state(path: Path | None) -> dict[str, Any] | None:
    """What the last certbot run did (templates/certbot/certbot.sh.j2 writes the file):
    ``{state_file, last_run_at, directory, domains: {domain: outcome}, error}``; None when no
    ACME CA is configured. A file not there yet means the job has never run."""
    if path is None:
        return None
    view: dict[str, Any] = {"state_file": str(path), "last_run_at": None, "directory": None,
                            "domains": {}, "error": None}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return view
    except (OSError, ValueError) as error:
        view["error"] = f"{path} is unreadable ({error}); the next certbot run rewrites it"
        return view
    domains = raw.get("domains") if isinstance(raw, dict) else None
    finished = raw.get("finished_at") if isinstance(raw, dict) else None
    if not isinstance(domains, dict) or parse_utc(finished) is None:
        view["error"] = f"{path} is not a certbot run record; the next certbot run rewrites it"
        return view
    view.update(last_run_at=finished, directory=raw.get("directory"),
                domains={str(k): str(v) for k, v in domains.items()})
    return view


def certificate_status(
    domain: str, path: Path, now: float, renewal: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The page's view of one certificate; ``error`` set (and no dates) when unreadable.
    With ``renewal`` (an ACME CA is configured): ``issued`` says whether the file is the CA's
    rather than the self-signed bootstrap, and ``renewal_outcome`` what the last run did."""
    view: dict[str, Any] = {
        "domain": domain,
        "path": str(path),
        "not_after": None,
        "days_left": None,
        "issuer": None,
        "self_signed": None,
        "covers_domain": None,
        "error": None,
        "acme": renewal is not None,
        "issued": None,
        "renewal_outcome": (renewal or {}).get("domains", {}).get(domain),
        "last_renewal_run": (renewal or {}).get("last_run_at"),
    }
    try:
        info = read_certificate(path)
    except FileNotFoundError:
        view["error"] = "certificate file missing"
        return view
    except (OSError, CertificateError) as error:
        view["error"] = str(error)
        return view
    view.update(
        not_after=format_utc(info.not_after),
        days_left=round((info.not_after - now) / 86400, 2),
        issuer=info.issuer_organization or info.issuer_common_name or "unknown",
        self_signed=info.self_signed,
        covers_domain=info.covers(domain),
        issued=None if renewal is None else not info.self_signed,
    )
    return view


def _tlv(data: bytes, position: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at ``position``."""
    tag = data[position]
    length = data[position + 1]
    position += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[position : position + count], "big")
        position += count
    end = position + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, position, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    children = []
    while start < end:
        tag, value_start, value_end = _tlv(data, start)
        children.append((tag, value_start, value_end))
        start = value_end
    return children


def _time(data: bytes, tlv: tuple[int, int, int]) -> float:
    tag, start, end = tlv
    text = data[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ; RFC 5280: YY < 50 is 20YY
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError(f"unexpected time tag {tag:#x}")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC).timestamp()


def _name_attribute(data: bytes, name: tuple[int, int, int], oid: bytes) -> str | None:
    for _, set_start, set_end in _children(data, name[1], name[2]):
        for _, pair_start, pair_end in _children(data, set_start, set_end):
            (oid_tag, oid_start, oid_end), value = _children(data, pair_start, pair_end)[:2]
            if oid_tag == 0x06 and data[oid_start:oid_end] == oid:
                return data[value[1] : value[2]].decode("utf-8", "replace")
    return None


def _dns_names(data: bytes, start: int, end: int) -> tuple[str, ...]:
    ((_, seq_start, seq_end),) = _children(data, start, end)
    for _, ext_start, ext_end in _children(data, seq_start, seq_end):
        parts = _children(data, ext_start, ext_end)
        oid_tag, oid_start, oid_end = parts[0]
        if oid_tag == 0x06 and data[oid_start:oid_end] == _OID_SUBJECT_ALT_NAME:
            _, value_start, value_end = parts[-1]  # OCTET STRING wrapping GeneralNames
            ((_, names_start, names_end),) = _children(data, value_start, value_end)
            return tuple(
                data[s:e].decode("ascii", "replace")
                for tag, s, e in _children(data, names_start, names_end)
                if tag == 0x82
            )
    return ()
