"""scripts/stack_file.py beyond releases: a value set in a stack file with every other line
kept (make init), and the names the workflows read from the stack files instead of repeating
them (the Pulumi organization, a stack's full name, an environment's URL)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.stack_file import (
    DeliveryError,
    organization,
    public_url,
    qualified_stack_name,
    value_of,
    with_value,
)
from tests.harness.program import TEST_ADMIN_KEY, TEST_BACKUP_KEY

ROOT = Path(__file__).resolve().parents[2]
PROD = (ROOT / "Pulumi.prod.yaml").read_text()


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines only `before` has, and those only `after` has, in order."""
    old, new = before.splitlines(), after.splitlines()
    return [line for line in old if line not in new], [line for line in new if line not in old]


def config(text: str) -> dict:
    return yaml.safe_load(text)["config"]


def test_a_set_value_replaces_its_line_and_keeps_every_comment():
    changed = with_value(PROD, "platform.environments.staging.domain", "staging.acme.example")
    assert changed_lines(PROD, changed) == (["        domain: staging-api.eduaiia.com"],
                                            ["        domain: staging.acme.example"])
    assert config(changed)["aiia:platform"]["environments"]["staging"]["domain"] == \
        "staging.acme.example"


def test_a_missing_key_and_a_missing_parent_are_written_under_the_closest_parent():
    changed = with_value(PROD, "host.ssh.host_key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5")
    changed = with_value(changed, "host.provision.admin_ssh_keys", [TEST_ADMIN_KEY])
    removed, added = changed_lines(PROD, changed)
    assert removed == []
    assert added == ["      host_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "    provision:",
                     "      admin_ssh_keys:", f"        - {TEST_ADMIN_KEY}"]
    host = config(changed)["aiia:host"]
    assert host["provision"] == {"admin_ssh_keys": [TEST_ADMIN_KEY]}
    assert host["ssh"]["port"] == 22  # the block it was written into is whole


def test_an_armored_key_is_written_as_a_literal_block_and_reads_back_the_same():
    changed = with_value(PROD, "platform.backup.recipients", [TEST_BACKUP_KEY])
    assert config(changed)["aiia:platform"]["backup"]["recipients"] == [TEST_BACKUP_KEY]
    assert "        - |\n          -----BEGIN PGP PUBLIC KEY BLOCK-----\n" in changed
    assert not [line for line in changed.splitlines() if line != line.rstrip()]
    # The comment above the list stays, and so does the next key's.
    assert "      # Your GPG public key(s), armored text or a file path" in changed
    assert config(changed)["aiia:platform"]["images"] == config(PROD)["aiia:platform"]["images"]


def test_a_new_section_and_a_value_under_an_inline_object():
    changed = with_value(PROD, "registry", {"address": "ghcr.io", "username": "acme-deploy"})
    assert changed.endswith("  aiia:registry:\n    address: ghcr.io\n    username: acme-deploy\n")
    inline = PROD.replace("  aiia:platform:\n", "  aiia:extra: {}\n  aiia:platform:\n")
    changed = with_value(inline, "extra.deep.key", "value")
    assert config(changed)["aiia:extra"] == {"deep": {"key": "value"}}


def test_setting_the_value_a_file_holds_changes_nothing():
    once = with_value(PROD, "platform.backup.recipients", [TEST_BACKUP_KEY])
    assert with_value(once, "platform.backup.recipients", [TEST_BACKUP_KEY]) == once
    assert with_value(PROD, "host.ssh.host", "vps.eduaiia.com") == PROD


def test_the_workflows_names_come_from_the_stack_files():
    assert organization(ROOT) == "eduaiia"
    assert qualified_stack_name("prod", ROOT) == "eduaiia/aiia/prod"
    assert qualified_stack_name("staging", ROOT) == "eduaiia/aiia/staging"
    # staging's domain is in the file of the platform that serves it (prod's).
    assert public_url("prod", ROOT) == "https://api.eduaiia.com"
    assert public_url("staging", ROOT) == "https://staging-api.eduaiia.com"


def test_without_an_organization_the_error_says_how_to_set_one(tmp_path):
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml"):
        shutil.copy(ROOT / name, tmp_path)
    with pytest.raises(DeliveryError, match="make init STACK=prod ARGS='--org <org>'"):
        qualified_stack_name("prod", tmp_path)


def test_the_docker_host_is_derived_from_host_ssh_as_the_settings_derive_it():
    assert value_of(config(PROD), "host.docker_host") == "ssh://deploy@vps.eduaiia.com"
    on_2222 = with_value(PROD, "host.ssh.port", 2222)
    assert value_of(config(on_2222), "host.docker_host") == "ssh://deploy@vps.eduaiia.com:2222"


@pytest.mark.parametrize(("args", "printed"), [
    (["org"], "eduaiia"), (["stack-name", "staging"], "eduaiia/aiia/staging"),
    (["url", "staging"], "https://staging-api.eduaiia.com"),
    (["get", "staging", "host.docker_host"], "ssh://deploy@vps.eduaiia.com")])
def test_the_commands_the_workflows_run(args, printed):
    result = subprocess.run([sys.executable, "-m", "scripts.stack_file", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"{printed}\n"), result.stderr
