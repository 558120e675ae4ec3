"""What the stack files become: the values make init writes into each, and a line for each
saying whether it was written or held already."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scripts.init import Refused
from scripts.init.host_key import Target, same_key
from scripts.init.operator_keys import OperatorKeys, with_gpg_key, with_ssh_key
from scripts.init.stacks import Stacks, environments, value_or_none
from scripts.stack_file import config_of, project_name, with_value

ORG_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"


@dataclass(frozen=True)
class Plan:
    """The values init writes, by stack file: (key, value) in the order written."""

    org: str
    edits: dict[str, list[tuple[str, Any]]]


def _host_edits(target: Target, key: str) -> list[tuple[str, Any]]:
    edits: list[tuple[str, Any]] = [("host.ssh.host", target.host)]
    if target.user is not None:
        edits.append(("host.ssh.user", target.user))
    if target.port_given:
        edits.append(("host.ssh.port", target.port))
    return [*edits, ("host.ssh.host_key", key)]


def _release_edits(config: dict[str, Any], answers: dict[str, Any]) -> list[tuple[str, Any]]:
    edits: list[tuple[str, Any]] = [(f"releases.{env}.image", answers["image"])
                                    for env in (config.get("aiia:releases") or {})]
    if answers.get("registry"):
        edits.append(("registry", {"address": answers["registry"],
                                   "username": answers["registry_user"]}))
    return edits


def _platform_edits(stacks: Stacks, answers: dict[str, Any],
                    keys: OperatorKeys) -> list[tuple[str, Any]]:
    config = stacks.config(stacks.platform)
    edits: list[tuple[str, Any]] = [(f"platform.environments.{env}.domain",
                                     answers[f"domain:{env}"]) for env in environments(stacks)]
    edits += [("platform.status_domain", answers["status_domain"]),
              ("platform.tls.email", answers["email"])]
    if keys.ssh:
        held = list(value_or_none(config, "host.provision.admin_ssh_keys") or [])
        edits.append(("host.provision.admin_ssh_keys", with_ssh_key(held, keys.ssh)))
    if keys.gpg:
        recipients = list(value_or_none(config, "platform.backup.recipients") or [])
        edits.append(("platform.backup.recipients", with_gpg_key(recipients, keys.gpg)))
    return edits


def check_org(org: str) -> str:
    if not org or set(org) - set(ORG_CHARACTERS):
        raise Refused(f"--org {org!r} is not a Pulumi organization name (letters, digits, "
                      "- _ .)")
    return org


def plan(stacks: Stacks, answers: dict[str, Any], keys: OperatorKeys, target: Target,
         key: str) -> Plan:
    org = check_org(str(answers["org"]))
    edits = {stack: _host_edits(target, key) + _release_edits(stacks.config(stack), answers)
             for stack in stacks.names}
    edits[stacks.platform] += _platform_edits(stacks, answers, keys)
    project = project_name(stacks.directory)
    for reader in stacks.readers:
        edits[reader].insert(0, ("platform_stack", f"{org}/{project}/{stacks.platform}"))
    return Plan(org, edits)


def edited(stacks: Stacks, planned: Plan) -> tuple[dict[str, str], list[str]]:
    """The stack files' new texts, and a line for each value: written, or held already."""
    texts, report = dict(stacks.texts), []
    for stack, edits in planned.edits.items():
        for key, value in edits:
            current = value_or_none(config_of(texts[stack]), key)
            shown = _shown(value)
            if current == value or (key == "host.ssh.host_key"
                                    and same_key(current, value)):
                report.append(f"  Pulumi.{stack}.yaml {key}: {shown}, already set (kept)")
            else:
                texts[stack] = with_value(texts[stack], key, value)
                was = "" if current is None else f" (was {_shown(current)})"
                report.append(f"  Pulumi.{stack}.yaml {key}: {shown}{was} (written)")
    return texts, report


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return f"{len(value)} key(s)"
    text = str(value)
    return text if len(text) <= 60 else f"{text[:40]}…"

