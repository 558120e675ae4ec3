"""What every section's checks share: the list of problems one run collects, and the checks
of a value's shape (an object, typed fields, a domain, an image reference).

Every problem names the key, the value and the fix; all of them are reported together.
Standard library only: scripts/ import the rules too."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NAMESPACE = "aiia"
_DOMAIN_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN_RE = re.compile(rf"^(?=.{{1,253}}$){_DOMAIN_LABEL}(\.{_DOMAIN_LABEL})+$")
IMAGE_REPOSITORY_RE = re.compile(
    r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
)
EXACT_TAG_RE = re.compile(r"^v?\d+\.\d+\.\d+(?:[-_.+][A-Za-z0-9_.-]+)?$")
EXACT_POSTGRES_TAG_RE = re.compile(r"^\d+\.\d+(?:[-_][A-Za-z0-9_.-]+)?$")
IMAGE_REFERENCE_RE = re.compile(
    r"^(?P<repository>[^:@]+(?::[0-9]+/[^:@]+)?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(Exception):
    """A stack config that cannot be deployed; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid stack config ({len(problems)} problem(s)):\n{listing}")


class Problems:
    """Collects problems so that one run reports all of them."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)


def config_object(raw: Mapping[str, Any], key: str, problems: Problems) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        problems.add(f"{NAMESPACE}:{key} must be an object, got {value!r}; see Pulumi.prod.yaml")
        return {}
    return value


def typed_fields(cls: type, values: Mapping[str, Any], key: str, problems: Problems) -> dict:
    """Keep the known fields of `cls`, typed like its defaults; report unknown or mistyped ones."""
    known = cls.__dataclass_fields__
    result: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            problems.add(
                f"{NAMESPACE}:{key}.{name} is not a setting; known: {', '.join(sorted(known))}"
            )
            continue
        expected = known[name].type
        if expected == "int | None" and value is None:
            pass  # unset: the setting's documented default applies
        elif expected in ("int", int, "int | None"):
            if isinstance(value, bool) or not isinstance(value, int | str):
                problems.add(f"{NAMESPACE}:{key}.{name}={value!r} must be a whole number")
                continue
            try:
                value = int(value)
            except ValueError:
                problems.add(f"{NAMESPACE}:{key}.{name}={value!r} must be a whole number")
                continue
        elif expected in ("bool", bool) and isinstance(value, str):
            if value.lower() not in ("true", "false"):
                problems.add(f"{NAMESPACE}:{key}.{name}={value!r} must be true or false")
                continue
            value = value.lower() == "true"
        result[name] = value
    return result


def check_positive(value: int, key: str, problems: Problems) -> None:
    if value <= 0:
        problems.add(f"{key}={value} must be greater than 0")


def check_domain(domain: Any, key: str, problems: Problems) -> None:
    if not isinstance(domain, str) or not DOMAIN_RE.match(domain):
        problems.add(
            f"{key}={domain!r} is not a valid domain name; use lower-case labels of letters, "
            "digits and hyphens separated by dots, e.g. api.example.com or prod.localhost"
        )


def check_image(reference: Any, key: str, problems: Problems) -> None:
    match = IMAGE_REFERENCE_RE.match(reference) if isinstance(reference, str) else None
    if not match or not IMAGE_REPOSITORY_RE.match(match["repository"]):
        problems.add(
            f"{key}={reference!r} is not a valid image reference; "
            "use repository:tag or repository@sha256:<digest>, e.g. postgres:15.20-bookworm"
        )
        return
    if match["digest"]:
        return
    # PostgreSQL's releases are major.minor (15.20); every other image's major.minor.patch.
    postgres = match["repository"].rsplit("/", 1)[-1] == "postgres"
    exact = EXACT_POSTGRES_TAG_RE if postgres else EXACT_TAG_RE
    if not match["tag"] or not exact.match(match["tag"]):
        example = "postgres:15.20-bookworm" if postgres else "nginx:1.30.6"
        problems.add(
            f"{key}={reference!r} is not pinned to an exact release: a tag like "
            f"{match['tag'] or 'latest'!r} moves to whatever is published next, so a restart "
            f"or a new host may run another version than the one previewed; use the full "
            f"version (e.g. {example}) or a digest (@sha256:…)"
        )
