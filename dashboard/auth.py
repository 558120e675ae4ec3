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


class BasicAuthenticator:
    """Checks ``Authorization`` headers against one user, caching outcomes briefly.

    Failures are cached too (shorter), so a client hammering a wrong password costs one
    PBKDF2 per distinct header per ``failure_ttl`` rather than one per request.
    """

    def __init__(
        self,
        user: str,
        password_hash: str,
        success_ttl: float = 300.0,
        failure_ttl: float = 30.0,
        max_entries: int = 256,
        clock=time.monotonic,
    ) -> None:
        self._user = user.encode("utf-8")
        self._password_hash = password_hash
        self._success_ttl = success_ttl
        self._failure_ttl = failure_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[bool, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.verifications = 0  # PBKDF2 runs, for tests and the benchmark

    def check(self, header: str | None) -> bool:
        if not header:
            return False
        key = hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] > now:
                self._cache.move_to_end(key)
                return cached[0]
        allowed = self._verify(header)
        with self._lock:
            ttl = self._success_ttl if allowed else self._failure_ttl
            self._cache[key] = (allowed, now + ttl)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return allowed

    def _verify(self, header: str) -> bool:
        credentials = parse_basic_header(header)
        if credentials is None:
            return False
        user, password = credentials
        self.verifications += 1
        # Always run the hash, even for a wrong user name, so timing does not reveal it.
        password_ok = verify_password(password, self._password_hash)
        user_ok = hmac.compare_digest(user.encode("utf-8"), self._user)
        return password_ok and user_ok
