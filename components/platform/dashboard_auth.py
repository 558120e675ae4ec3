"""The status dashboard's accounts: each password's PBKDF2 hash with a salt of its own, drawn
once and kept in the stack's state (components/platform/dashboard.py renders them into the
server's config)."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_command

from components.platform.context import RANDOM_SALT_COMMAND
from components.settings.platform import PlatformSettings

PASSWORD_ITERATIONS = 200_000


def hash_password(password: str, salt_hex: str) -> str:
    """pbkdf2_sha256$<iterations>$<salt>$<hash>, with the stack's random salt (a Pulumi
    resource: drawn once, kept in its state), so that the rendered config, and so the
    preview, only changes when the password does, and no two stacks share a salt that an
    attacker could have worked on in advance, as one derived from the stack's name was
    (review L8)."""
    salt = bytes.fromhex(salt_hex.strip())
    if len(salt) < 16:
        raise ValueError(f"the dashboard's password salt is {len(salt)} bytes, not 16")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PASSWORD_ITERATIONS)
    return f"pbkdf2_sha256${PASSWORD_ITERATIONS}${salt.hex()}${digest.hex()}"


def auth_settings(operators: tuple[str, ...], user: str, hashes: dict[str, str]) -> dict:
    """The config's accounts: `auth_users` (operator → hash) for a stack that lists
    operators, else the one shared account as every config before them had it."""
    if operators:
        return {"auth_users": {name: hashes[name] for name in operators}}
    return {"auth_user": user, "auth_password_hash": hashes[user]}


def dashboard_password_hashes(name: str, platform: PlatformSettings,
                              parent: pulumi.Resource) -> pulumi.Output:
    """user → PBKDF2 hash, a secret: each operator's (platform.dashboard.operators) with
    a salt of their own, or the shared account's. A salt is a command's output, kept in
    the state: the same salt on every later run (nothing but a change of the command
    draws a new one; the password keeps working then too), a new one for a name that
    is listed again after it was removed."""
    settings = platform.dashboard
    passwords = (dict(platform.dashboard_passwords) if settings.operators
                 else {settings.user: platform.dashboard_password})
    hashes = {}
    for user, password in passwords.items():
        # The shared account's salt keeps its name (the resource in every stack's state).
        salt = pulumi_command.local.Command(
            f"{name}-password-salt" + (f"-{user}" if settings.operators else ""),
            create=RANDOM_SALT_COMMAND, opts=pulumi.ResourceOptions(parent=parent))
        hashes[user] = pulumi.Output.all(pulumi.Output.secret(password), salt.stdout).apply(
            lambda values: hash_password(*values))
    return pulumi.Output.secret(pulumi.Output.all(**hashes))
