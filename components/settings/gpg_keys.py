"""The operators' GPG public keys that backups are encrypted to, read and checked at preview.

A key is given in config as an armored block or as the path of a file holding one. It is
read by GnuPG itself (`gpg --show-keys --with-colons` in a throwaway home directory, so the
operator's own keyring is never touched), and refused when it cannot encrypt: malformed, no
encryption-capable key or subkey, or every such key expired or revoked. GnuPG's machine-
readable listing is documented in doc/DETAILS ("Format of the colon listings"): field 1 the
record type (pub, sub, fpr), field 2 the validity (e expired, r revoked), field 7 the
expiry as seconds since the epoch (empty: never), field 12 the capabilities (e: may encrypt;
an upper-case E on the primary key: the key as a whole has a usable encryption subkey).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ARMOR_HEADER = "-----BEGIN PGP PUBLIC KEY BLOCK-----"


@dataclass(frozen=True)
class PublicKey:
    fingerprint: str
    user_id: str
    expires_at: int | None  # seconds since the epoch of the encryption key's expiry
    armored: str


class KeyProblem(Exception):
    """Why a configured key cannot be used, in words an operator can act on."""


def key_text(value: str) -> str:
    """The armored key itself: `value` when it is one, else the file it names."""
    if ARMOR_HEADER in value:
        return value
    path = Path(value).expanduser()
    try:
        return path.read_text(errors="replace")
    except OSError as error:
        raise KeyProblem(f"cannot be read ({error.strerror}); give an armored public key "
                         "(gpg --armor --export <id>) or the path of a file holding one") from None


def _colon_records(armored: str) -> list[list[str]]:
    if shutil.which("gpg") is None:
        raise KeyProblem("cannot be checked: gpg is not installed on this machine "
                         "(apt-get install gnupg)")
    with tempfile.TemporaryDirectory(prefix="aiia-gpg-") as home:
        result = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--no-tty", "--with-colons",
             "--fixed-list-mode", "--show-keys"],
            input=armored, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        detail = (result.stderr.strip().splitlines() or ["no key found"])[-1]
        raise KeyProblem(f"is not a readable OpenPGP public key ({detail}); export it with "
                         "gpg --armor --export <fingerprint>")
    return [line.split(":") for line in result.stdout.splitlines()]


def inspect_public_key(value: str, now: float | None = None) -> PublicKey:
    """The key `value` holds (armored text or a file path), or KeyProblem saying why not."""
    armored = key_text(value)
    if ARMOR_HEADER not in armored:
        raise KeyProblem("holds no armored public key (-----BEGIN PGP PUBLIC KEY BLOCK-----); "
                         "export it with gpg --armor --export <fingerprint>")
    now = time.time() if now is None else now
    records = _colon_records(armored)
    primaries = [index for index, record in enumerate(records) if record[0] == "pub"]
    if len(primaries) != 1:
        raise KeyProblem(f"holds {len(primaries)} keys; give one key per entry")
    fingerprint, user_id = _identity(records)
    usable, expired = _encryption_expiries(records, now)
    if not usable:
        if expired:
            day = time.strftime("%Y-%m-%d", time.gmtime(max(expired)))
            raise KeyProblem(f"{fingerprint} expired on {day}; extend it (gpg --quick-set-expire "
                             f"{fingerprint} 2y '*') and export it again")
        raise KeyProblem(f"{fingerprint} has no key that may encrypt (or it is revoked); give "
                         "a key with an encryption subkey")
    finite = [expires for expires in usable if expires is not None]
    return PublicKey(fingerprint=fingerprint, user_id=user_id,
                     expires_at=None if len(finite) < len(usable) else max(finite),
                     armored=armored)


def _identity(records: list[list[str]]) -> tuple[str, str]:
    """The primary key's fingerprint and the first user ID."""
    fingerprint, user_id = "", ""
    current = None  # the key (pub or sub) the records that follow belong to
    for record in records:
        kind = record[0]
        if kind in ("pub", "sub"):
            current = record
        elif kind == "fpr" and current is not None and current[0] == "pub" and not fingerprint:
            fingerprint = record[9]
        elif kind == "uid" and not user_id:
            user_id = record[9]
    return fingerprint, user_id


def _expiry(record: list[str]) -> int | None:
    return int(record[6]) if record[6] else None


def _encryption_expiries(
    records: list[list[str]], now: float
) -> tuple[list[int | None], list[int]]:
    """When each key that may encrypt expires: (the usable ones' expiries, None for never;
    the expired ones'). Revoked keys are in neither."""
    usable: list[int | None] = []
    expired: list[int] = []
    primary_expires: int | None = None
    primary_state = ""
    for record in records:
        if record[0] == "pub":
            primary_expires = _expiry(record)
            primary_state = record[1]
        if record[0] not in ("pub", "sub") or "e" not in record[11]:
            continue
        # A subkey is usable only while its primary key is: the earlier expiry counts.
        candidates = [value for value in (_expiry(record), primary_expires) if value is not None]
        expires = min(candidates) if candidates else None
        if "r" in (record[1], primary_state):
            continue
        if "e" in (record[1], primary_state) or (expires is not None and expires <= now):
            expired.append(expires or 0)
        else:
            usable.append(expires)
    return usable, expired
