"""The stacks' secrets: the ones the program's settings read (their own list) that a stack
file does not hold are generated and set with `pulumi config set --secret`; one that is set
is never replaced; the registry's token is the operator's, never generated. And the settings
themselves, run over a stack file with its secrets taken as set."""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from typing import Any

from components.settings import ConfigError, parse_settings
from scripts.init import Refused
from scripts.init.operator_keys import read_file
from scripts.stack_file import config_of

SECRET_BYTES = 32  # 64 hex digits: unguessable, and safe in any URL, file or shell word
STDIN = "-"  # --registry-password-file - : the token is read from stdin


PLACEHOLDER = "<set>"  # what the settings are handed for a secret that is (or will be) set


def _raw(config: dict[str, Any]) -> dict[str, Any]:
    return {key.removeprefix("aiia:"): value for key, value in config.items()
            if key.startswith("aiia:") and not _is_secure(value)}


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def held_secrets(text: str) -> set[str]:
    """The secrets a stack file holds (set with `pulumi config set --secret`: `secure:`)."""
    return {key.removeprefix("aiia:") for key, value in config_of(text).items()
            if key.startswith("aiia:") and _is_secure(value)}


def secrets_read(stack: str, text: str) -> set[str]:
    """The secrets the program's settings read for this stack file: its own list, not one
    kept here (the platform's passwords per environment, each release's key, the registry's
    token)."""
    read: set[str] = set()

    def record(key: str) -> str:
        read.add(key)
        return PLACEHOLDER

    # Its problems are check_settings' to report; the secrets it read are recorded anyway.
    with contextlib.suppress(ConfigError):
        parse_settings(stack, _raw(config_of(text)), record)
    return read


def check_settings(stack: str, text: str, secrets_set: set[str]) -> list[str]:
    """The settings' problems with this stack file, its secrets taken as `secrets_set`."""
    config = config_of(text)
    given = {key.removeprefix("aiia:") for key in config if key.startswith("aiia:")}
    try:
        parse_settings(stack, _raw(config), lambda key: PLACEHOLDER if key in secrets_set
                       else None, given_keys=given | secrets_set,
                       secret_keys=held_secrets(text) | secrets_set)
    except ConfigError as error:
        return error.problems
    return []


def secrets_to_generate(stack: str, text: str) -> list[str]:
    """What the settings read and the stack file holds neither as a secret nor in plain text
    (which the settings refuse, and which is never overwritten here): generated. The
    registry's token is the registry's, never generated."""
    present = held_secrets(text) | set(_raw(config_of(text)))
    return sorted(secrets_read(stack, text) - present - {"registry_password"})


def token_needed(stack: str, text: str) -> bool:
    return "registry_password" in secrets_read(stack, text) - held_secrets(text)


def registry_token(args: argparse.Namespace, needed: bool, interactive: bool) -> str | None:
    if not needed:
        return None
    if args.registry_password_file == STDIN:
        token = sys.stdin.read()
    elif args.registry_password_file:
        token = read_file(args.registry_password_file, "--registry-password-file")
    elif interactive:
        import getpass

        token = getpass.getpass("The registry's token (read access to the image; not shown): ")
    else:
        token = ""
    if not token.strip():
        raise Refused("the registry's token is empty")
    return token.strip()


@dataclass(frozen=True)
class Secrets:
    generate: dict[str, list[str]]  # by stack
    token: str | None  # the registry's, for each stack that lacks it

    def set_in(self, stack: str, text: str) -> set[str]:
        """The secrets the stack will hold once they are set."""
        token = {"registry_password"} if self.token and token_needed(stack, text) else set()
        return held_secrets(text) | set(self.generate[stack]) | token

