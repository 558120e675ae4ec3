"""Read the app's settings from environment variables, and only from there.

Every problem is collected first and reported in one message that names each variable,
so a container with a bad environment fails at startup and says what to fix.
"""

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class ConfigurationError(ImproperlyConfigured):
    """The environment is missing a required variable or holds an invalid value."""


class Environment:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self.missing: list[str] = []
        self.invalid: list[str] = []

    def required(self, name: str) -> str:
        value = self._environ.get(name, "").strip()
        if not value:
            self.missing.append(name)
        return value

    def optional(self, name: str, default: str = "") -> str:
        return self._environ.get(name, "").strip() or default

    def required_list(self, name: str) -> list[str]:
        return [item.strip() for item in self.required(name).split(",") if item.strip()]

    def integer(self, name: str, default: int | None = None) -> int:
        raw = self.optional(name) if default is not None else self.required(name)
        if not raw:
            return default if default is not None else 0
        try:
            return int(raw)
        except ValueError:
            self.invalid.append(f"{name}={raw!r} is not an integer")
            return 0

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self._environ.get(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word not in FALSE_WORDS:
            self.invalid.append(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")
        return False

    def reject(self, problem: str) -> None:
        self.invalid.append(problem)

    def raise_if_incomplete(self) -> None:
        problems = []
        if self.missing:
            problems.append("missing required environment variable(s): " + ", ".join(self.missing))
        problems.extend(self.invalid)
        if problems:
            raise ConfigurationError(
                "; ".join(problems) + " (see app/README.md for what each one means)"
            )
