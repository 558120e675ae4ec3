"""Password hashes and HTTP Basic authentication with a short-lived verification cache."""

from __future__ import annotations

import base64

import pytest

from dashboard.auth import BasicAuthenticator, hash_password, parse_basic_header, verify_password


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_hash_format_and_verification():
    encoded = hash_password("s3cret pass", salt=bytes(16), iterations=1000)
    algorithm, iterations, salt, digest = encoded.split("$")
    assert (algorithm, iterations, salt) == ("pbkdf2_sha256", "1000", "00" * 16)
    assert len(bytes.fromhex(digest)) == 32
    assert verify_password("s3cret pass", encoded)
    assert not verify_password("s3cret pasS", encoded)
    assert not verify_password("", encoded)


def test_each_hash_gets_a_fresh_salt():
    assert hash_password("same", iterations=10) != hash_password("same", iterations=10)


def test_default_iterations_are_strong():
    assert int(hash_password("x").split("$")[1]) >= 300_000


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "md5$1$00$00",
        "pbkdf2_sha256$x$00$00",
        "pbkdf2_sha256$10$zz$00",
        "pbkdf2_sha256$0$00$00",
        "pbkdf2_sha256$10$00$",
    ],
)
def test_malformed_hashes_never_verify(encoded):
    assert verify_password("anything", encoded) is False


def test_empty_password_cannot_be_hashed():
    with pytest.raises(ValueError):
        hash_password("")


def test_basic_header_parsing():
    assert parse_basic_header(header("op", "pa:ss")) == ("op", "pa:ss")
    assert parse_basic_header("basic " + base64.b64encode(b"a:b").decode()) == ("a", "b")
    for bad in (
        None,
        "",
        "Bearer x",
        "Basic",
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
    ):
        assert parse_basic_header(bad) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_polling_browser_costs_one_pbkdf2_per_cache_lifetime():
    clock = Clock()
    auth = BasicAuthenticator(
        {"op": hash_password("pw", iterations=1000)}, success_ttl=300, clock=clock
    )
    for _ in range(120):  # ten minutes of polls every 5 s
        assert auth.check(header("op", "pw"))
        clock.now += 5
    assert auth.verifications == 2


def test_wrong_user_or_password_is_refused_and_failures_are_cached_briefly():
    clock = Clock()
    auth = BasicAuthenticator(
        {"op": hash_password("pw", iterations=1000)}, failure_ttl=30, clock=clock
    )
    assert not auth.check(header("op", "wrong"))
    assert not auth.check(header("intruder", "pw"))
    assert auth.verifications == 2  # the hash runs for a wrong user too (no timing oracle)
    for _ in range(50):
        assert not auth.check(header("op", "wrong"))
    assert auth.verifications == 2
    clock.now += 31
    assert not auth.check(header("op", "wrong"))
    assert auth.verifications == 3
    assert not auth.check(None) and not auth.check("")


def test_the_cache_is_bounded():
    auth = BasicAuthenticator({"op": hash_password("pw", iterations=10)}, max_entries=8)
    for i in range(50):
        auth.check(header("op", f"guess-{i}"))
    assert len(auth._cache) == 8
