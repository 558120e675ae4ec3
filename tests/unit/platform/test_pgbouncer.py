"""components/platform/pgbouncer.py: what PgBouncer's userlist holds (the real PgBouncer logs
in with it: tests/rendered/test_pgbouncer.py; on the VPS: tests/e2e/test_vps.py)."""

import re

import pytest

from tests.harness.program import host_files, made_up_secrets, stack_config


def test_the_userlist_holds_the_verifier_postgres_stores_never_the_password(prod):
    """Review L8: PgBouncer logs in to PostgreSQL with the keys of the client's SCRAM proof,
    which PostgreSQL accepts only when its verifier has the same salt and iterations: each
    line is the very verifier the roles' script sets."""
    userlist = host_files(prod)["/srv/aiia/pgbouncer/userlist.txt"]
    init_sql = prod.named("platform-postgres-init-databases").plain["stdin"]
    secrets = made_up_secrets(stack_config("prod"))
    lines = dict(re.fullmatch(r'"([a-z_]+)" "([^"]+)"', line).groups()
                 for line in userlist.splitlines())
    assert set(lines) == {"aiia_prod", "aiia_staging"}
    for role, verifier in lines.items():
        assert re.fullmatch(r"SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:"
                            r"[A-Za-z0-9+/=]{44}", verifier), verifier
        assert f"ALTER ROLE \"{role}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE\n" \
               f"  PASSWORD '{verifier}';" in init_sql
        password = secrets[f"aiia:{role.removeprefix('aiia_')}_db_password"]
        assert password not in userlist


def test_a_password_with_no_verifier_never_reaches_the_userlist_in_plain_text():
    from components.platform.pgbouncer import userlist_secret

    salt = "00112233445566778899aabbccddeeff"
    assert userlist_secret("aiia_prod", "s3cret-password", salt).startswith("SCRAM-SHA-256$")
    with pytest.raises(ValueError, match="printable ASCII"):
        userlist_secret("aiia_prod", "pässwörd", salt)
