"""What every section's checks share: the list of problems one run collects, and the checks
of a value's shape (an object, typed fields, a domain, an image reference).

Every problem names the key, the value and the fix; all of them are reported together.
Standard library only: scripts/ import the rules too."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
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
# A path that reaches a root shell, a cron line or a unit file: plain names only (no quote,
# space, $, newline or ..), so it cannot break out of any of them.
PLAIN_PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME_RE = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*$")
# What to set a secret the program only needs to be unguessable to: a fresh random value.
GENERATED_SECRET = '"$(openssl rand -hex 32)"'  # noqa: S105 - a command, not a password


class ConfigError(Exception):
    """A stack config that cannot be deployed; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid stack config ({len(problems)} problem(s)):\n{listing}")


class Problems:
    """Collects problems so that one run reports all of them; `stack` names the stack in
    the commands a message tells the user to run."""

    def __init__(self, stack: str = "<stack>") -> None:
        self.items: list[str] = []
        self.stack = stack

    def add(self, message: str) -> None:
        self.items.append(message)

    def missing_secret(self, key: str, value: str = GENERATED_SECRET, note: str = "") -> None:
        """A secret the stack needs and has not got: the command that sets it."""
        self.add(f"{NAMESPACE}:{key} is missing; set it with `pulumi config set -s {self.stack} "
                 f"--secret {NAMESPACE}:{key} {value}`{note}")


def config_object(raw: Mapping[str, Any], key: str, problems: Problems) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        problems.add(f"{NAMESPACE}:{key} must be an object, got {value!r}; see Pulumi.prod.yaml")
        return {}
    return value


def typed_fields(cls: type, values: Mapping[str, Any], key: str, problems: Problems,
                 also_known: Iterable[str] = ()) -> dict:
    """Keep the known fields of `cls`, typed like its defaults; report unknown or mistyped
    ones (`also_known`: keys of the same object that another class reads)."""
    known = cls.__dataclass_fields__
    result: dict[str, Any] = {}
    for name, value in values.items():
        if name in also_known:
            continue
        if name not in known:
            problems.add(unknown_key_problem(f"{NAMESPACE}:{key}.{name}", name,
                                             [*known, *also_known]))
            continue
        typed = _typed(value, known[name].type, f"{NAMESPACE}:{key}.{name}", problems)
        if typed is not _REFUSED:
            result[name] = typed
    return result


def unknown_key_problem(full_key: str, name: str, known: Iterable[str]) -> str:
    """A key that is not a setting, with the nearest one it may be a typo of."""
    known = sorted(known)
    nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    guess = f"did you mean {nearest[0]!r}? " if nearest else ""
    return f"{full_key} is not a setting; {guess}known: {', '.join(known)}"


_REFUSED = object()


def _typed(value: Any, expected: Any, key: str, problems: Problems) -> Any:
    """`value` as the annotation `expected` says (whole numbers from text too), or _REFUSED
    with the problem reported."""
    if value is None and str(expected).endswith("| None"):
        return None  # unset: the setting's documented default applies
    if expected in ("int", int, "int | None"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            problems.add(f"{key}={value!r} must be a whole number")
            return _REFUSED
        try:
            return int(value)
        except ValueError:
            problems.add(f"{key}={value!r} must be a whole number")
            return _REFUSED
    if expected in ("bool", bool) and isinstance(value, str):
        if value.lower() not in ("true", "false"):
            problems.add(f"{key}={value!r} must be true or false")
            return _REFUSED
        return value.lower() == "true"
    if expected in ("str", str, "str | None") and isinstance(value, Mapping | list | bool):
        problems.add(f"{key}={value!r} must be text, not {type(value).__name__}")
        return _REFUSED
    return value


def check_plain_path(value: Any, key: str, problems: Problems) -> None:
    """An absolute path of plain names (PLAIN_PATH_RE), without `..`."""
    if not PLAIN_PATH_RE.match(str(value)) or "/../" in f"{value}/":
        problems.add(f"{key}={value!r} must be an absolute path of plain names (letters, "
                     "digits, . _ -; no spaces, quotes or ..), e.g. /srv/aiia: it reaches "
                     "root's shell scripts and cron lines as it is")


def check_host_address(value: Any, key: str, problems: Problems) -> None:
    """A host name (letters, digits, hyphens, dots) or an IP address."""
    try:
        ipaddress.ip_address(str(value))
        return
    except ValueError:
        pass
    if not HOST_NAME_RE.match(str(value)):
        problems.add(f"{key}={value!r} is neither a host name nor an IP address, e.g. "
                     "vps.example.com or 203.0.113.10")


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
