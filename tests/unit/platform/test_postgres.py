"""components/platform/postgres.py: PostgreSQL's container and its roles."""

from tests.harness.program import release_container


def test_postgres_runs_as_its_own_user_from_the_start(prod):
    # Its entrypoint then needs no capability to chown PGDATA and switch users.
    assert release_container(prod, "aiia-postgres").plain["user"] == "999:999"


def test_role_passwords_go_to_postgres_as_scram_verifiers():
    from components.platform.postgres import scram_verifier

    verifier = scram_verifier("aiia_prod", "s3cret-password")
    assert verifier.startswith("SCRAM-SHA-256$4096:") and "s3cret" not in verifier
    assert scram_verifier("aiia_prod", "s3cret-password") == verifier  # a stable preview
    assert scram_verifier("aiia_staging", "s3cret-password") != verifier  # salt per role
    # Outside printable ASCII PostgreSQL's SASLprep may change it: it hashes it itself.
    assert scram_verifier("aiia_prod", "pässwörd") == "pässwörd"
