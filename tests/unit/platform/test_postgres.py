"""components/platform/postgres.py: PostgreSQL's container and its roles."""

import pytest

from tests.harness.program import release_container


def test_postgres_runs_as_its_own_user_from_the_start(prod):
    # Its entrypoint then needs no capability to chown PGDATA and switch users.
    assert release_container(prod, "aiia-postgres").plain["user"] == "999:999"


SALT = "00112233445566778899aabbccddeeff"


def test_role_passwords_go_to_postgres_as_scram_verifiers():
    from components.platform.postgres import scram_verifier

    verifier = scram_verifier("aiia_prod", "s3cret-password", SALT)
    assert verifier.startswith("SCRAM-SHA-256$4096:") and "s3cret" not in verifier
    assert scram_verifier("aiia_prod", "s3cret-password", SALT) == verifier  # a stable preview
    assert scram_verifier("aiia_staging", "s3cret-password", SALT) != verifier  # salt per role
    # Outside printable ASCII PostgreSQL's SASLprep may change it: it hashes it itself.
    assert scram_verifier("aiia_prod", "pässwörd", SALT) == "pässwörd"


def test_the_roles_salt_is_the_stacks_random_one_not_one_from_the_role_name(prod):
    """Two installations with the same role name never share a salt (one derived from the
    name alone let guesses be computed before a verifier leaked). The stack's salt is drawn
    once by a command the state keeps; the mocks answer it as a state would."""
    import base64
    import hashlib

    from components.platform.context import RANDOM_SALT_COMMAND
    from components.platform.postgres import role_salt, scram_verifier
    from tests.harness.program import host_files

    command = prod.named("platform-postgres-password-salt")
    assert command.plain["create"] == RANDOM_SALT_COMMAND
    stack_salt = hashlib.sha256(b"mock-salt:platform-postgres-password-salt").hexdigest()[:32]
    userlist = host_files(prod)["/srv/aiia/pgbouncer/userlist.txt"]
    verifier = scram_verifier("aiia_prod", "s3cret-password", stack_salt)
    salt = base64.b64decode(verifier.split("$")[1].split(":")[1])
    assert salt == role_salt(stack_salt, "aiia_prod")
    assert salt != hashlib.sha256(b"aiia-scram:aiia_prod").digest()[:16]  # the old one
    assert scram_verifier("aiia_prod", "s3cret-password", SALT) != verifier
    # What PgBouncer stores is salted with the same stack salt as what PostgreSQL gets.
    prod_line = next(line for line in userlist.splitlines() if '"aiia_prod"' in line)
    role_salt_b64 = base64.b64encode(role_salt(stack_salt, "aiia_prod")).decode()
    assert f"SCRAM-SHA-256$4096:{role_salt_b64}$" in prod_line
    with pytest.raises(ValueError, match="not 16"):
        role_salt("", "aiia_prod")
