"""Rendering of the files that land on the host: every one is a template under templates/."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


def _sql_literal(value: Any) -> str:
    """A PostgreSQL string literal (standard_conforming_strings is on since 9.1)."""
    return "'" + str(value).replace("'", "''") + "'"


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - config files and shell, not HTML
    )
    environment.filters["shell_quote"] = lambda value: shlex.quote(str(value))
    environment.filters["sql_literal"] = _sql_literal
    return environment


_ENVIRONMENT = _environment()


def render(template: str, **context: Any) -> str:
    """Render `templates/<template>` with `context`; a missing variable is an error."""
    return _ENVIRONMENT.get_template(template).render(**context)
