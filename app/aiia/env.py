"""Read the app's settings from environment variables, and only from there; a secret may
instead be in a file that `<NAME>_FILE` names (how the platform hands them over, so that
`docker inspect` shows no secret).

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

    def secret(self, name: str, required: bool = True) -> str:
        """`name`'s value, from the variable itself or from the file `<name>_FILE` names
        (its content, without the trailing newline); never both."""
        path = self._environ.get(f"{name}_FILE", "").strip()
        if path and self._environ.get(name, "").strip():
            self.invalid.append(f"{name} and {name}_FILE are both set; set one of them")
            return ""
        if not path:
            return self.required(name) if required else self.optional(name)
        try:
            with open(path, encoding="utf-8") as file:
                value = file.read().rstrip("\r\n")
        except OSError as error:
            self.invalid.append(f"{name}_FILE={path!r} cannot be read ({error.strerror}); "
                                "mount the file and make it readable by the app's user")
            return ""
        if required and not value.strip():
            self.invalid.append(f"{name}_FILE={path!r} is empty")
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
