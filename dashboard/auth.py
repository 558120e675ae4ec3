"""Password hashes and HTTP Basic authentication.

Hash format (the stack config holds only this, never the password):
``pbkdf2_sha256$<iterations>$<salt_hex>$<hash_hex>``.

The page polls every few seconds and the browser resends the same ``Authorization``
header each time; running PBKDF2 (hundreds of milliseconds by design) per poll would cost
far more than the 1 % CPU budget. So the outcome of a verification is cached in memory for
a short time, keyed by a SHA-256 of the header (the header itself is never kept).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 310_000  # OWASP's recommendation for PBKDF2-HMAC-SHA256
SALT_BYTES = 16


def hash_password(
    password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> str:
    if not password:
        raise ValueError("refusing to hash an empty password")
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{ALGORITHM}${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against an encoded hash; False for a malformed hash."""
    try:
        algorithm, iterations_text, salt_hex, hash_hex = encoded.split("$")
        iterations = int(iterations_text)
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(hash_hex)
    except ValueError:
        return False
    if algorithm != ALGORITHM or iterations < 1 or not expected:
        return False
    actual = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(actual, expected)


def parse_basic_header(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else None


@dataclass(frozen=True)
class Attempt:
    """What one ``Authorization`` header amounted to."""

    user: str | None  # the operator it signs in, None when refused
    tried: str | None  # the user name it carries (None: no header, or not Basic)
    reason: str = ""  # why it was refused: "unknown user", "wrong password", "malformed"


class BasicAuthenticator:
    """Checks ``Authorization`` headers against the operators' hashes (user → hash),
    caching outcomes briefly.

    Failures are cached too (shorter), so a client hammering a wrong password costs one
    PBKDF2 per distinct header per ``failure_ttl`` rather than one per request. A user name
    no operator has is checked against a hash of the same cost all the same, so that the
    time a refusal takes does not tell which names exist.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        success_ttl: float = 300.0,
        failure_ttl: float = 30.0,
        max_entries: int = 256,
        clock=time.monotonic,
    ) -> None:
        if not users:
            raise ValueError("no operator: the dashboard would let no one in")
        self._users = dict(users)
        self._decoy = _decoy_hash(next(iter(self._users.values())))
        self._success_ttl = success_ttl
        self._failure_ttl = failure_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[Attempt, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.verifications = 0  # PBKDF2 runs, for tests and the benchmark

    def check(self, header: str | None) -> str | None:
        """The operator the header signs in, or None."""
        return self.authenticate(header).user

    def authenticate(self, header: str | None) -> Attempt:
        if not header:
            return Attempt(user=None, tried=None, reason="no credentials")
        key = hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] > now:
                self._cache.move_to_end(key)
                return cached[0]
        attempt = self._verify(header)
        with self._lock:
            ttl = self._success_ttl if attempt.user else self._failure_ttl
            self._cache[key] = (attempt, now + ttl)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return attempt

    def _verify(self, header: str) -> Attempt:
        credentials = parse_basic_header(header)
        if credentials is None:
            return Attempt(user=None, tried=None, reason="malformed")
        user, password = credentials
        self.verifications += 1
        known = self._known_user(user)
        # Always run the hash, even for a wrong user name, so timing does not reveal it.
        password_ok = verify_password(password, self._users.get(known, self._decoy))
        if known is None:
            return Attempt(user=None, tried=user, reason="unknown user")
        if not password_ok:
            return Attempt(user=None, tried=user, reason="wrong password")
        return Attempt(user=known, tried=user)

    def _known_user(self, user: str) -> str | None:
        """The operator named `user`, compared in constant time with every name."""
        found = None
        for name in self._users:
            if hmac.compare_digest(user.encode("utf-8", "surrogateescape"), name.encode("utf-8")):
                found = name
        return found


def _decoy_hash(like: str) -> str:
    """A hash no password matches, of the same cost as `like` (the operators' iterations)."""
    try:
        iterations = int(like.split("$")[1])
    except (IndexError, ValueError):
        iterations = DEFAULT_ITERATIONS
    return f"{ALGORITHM}${iterations}${os.urandom(SALT_BYTES).hex()}${os.urandom(32).hex()}"
