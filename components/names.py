"""Names of containers, databases and users, derived in one place from the prefix."""

from __future__ import annotations

import hashlib
import json
import re

from components.settings.releases import DIGEST_RE


def container_name(prefix: str, service: str) -> str:
    return f"{prefix}-{service}"


def release_slug(release: str) -> str:
    """A release tag or digest as a name part: lower case, [a-z0-9-], at most 40 characters."""
    if DIGEST_RE.match(release):
        return "sha256-" + release.split(":", 1)[1][:12]
    slug = re.sub(r"[^a-z0-9]+", "-", release.lower()).strip("-")
    return slug[:40].rstrip("-") or "release"


def release_container_prefix(prefix: str, environment: str, release: str) -> str:
    """What every container of one release is named from (its generations follow)."""
    return f"{prefix}-app-{environment}-{release_slug(release)}-"


def release_container_name(prefix: str, environment: str, release: str,
                           generation: str) -> str:
    """Each release, and each generation of its inputs, gets a container of its own, so old
    and new run side by side."""
    return f"{release_container_prefix(prefix, environment, release)}{generation}"


def generation(values: object) -> str:
    """A short digest of a container's replacing inputs: its name changes when they do.

    Eight hex digits of SHA-256 over values that may include secrets: it tells two
    generations apart and says nothing usable about a secret of any real strength."""
    encoded = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(b"aiia-generation:" + encoded).hexdigest()[:8]


def database_name(prefix: str, environment: str) -> str:
    return f"{prefix}_{environment}".replace("-", "_")


def database_role(prefix: str, environment: str) -> str:
    return database_name(prefix, environment)


def redis_user(environment: str) -> str:
    """The Redis ACL user of an environment; its keys are `<environment>:*`."""
    return environment


def status_network(prefix: str) -> str:
    """nginx's network with the dashboard and certbot (the data network is `<prefix>`)."""
    return f"{prefix}-status"


def environment_network(prefix: str, environment: str) -> str:
    """An environment's own network: its releases, nginx, PgBouncer and Redis."""
    return f"{prefix}-{environment}"
