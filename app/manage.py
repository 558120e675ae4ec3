#!/usr/bin/env python3
"""Django's command-line utility (migrate, collectstatic, …) for the reference app."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiia.settings")
    from aiia.env import ConfigurationError
    from django.conf import settings
    from django.core.management import execute_from_command_line

    try:
        # Load the settings now: a bad environment is reported in one line, not as a
        # traceback from inside whichever command touched the settings first.
        settings.INSTALLED_APPS  # noqa: B018
    except ConfigurationError as error:
        sys.exit(f"aiia: configuration error: {error}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
