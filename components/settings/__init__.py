"""The settings wing: the stack's config, typed and checked, one module per section.

`load` puts the sections together and holds the rules that span them; each section's own
dataclasses and checks are in its module (host, provision, platform, tls, backup, releases),
their shared helpers in `checks`, the memory budget in `budget`. Import a section's types
from its module; this face is what the program itself needs."""

from components.settings.checks import ConfigError
from components.settings.load import Settings, load_settings, parse_settings

__all__ = ["ConfigError", "Settings", "load_settings", "parse_settings"]
