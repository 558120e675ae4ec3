"""Logging helpers used by the settings' LOGGING."""

import logging
import sys
import time


class UTCFormatter(logging.Formatter):
    """Timestamps in UTC with a Z suffix, as every file the project shares uses."""

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


def usable_log_file(path: str) -> str:
    """`path` if the app can append to it, else "" after a warning on stderr.

    Jobs such as `manage.py migrate` get the release's whole environment but not its log
    volume: they must still run, logging to stdout only.
    """
    if not path:
        return ""
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        print(f"aiia: LOG_FILE={path} is not writable ({error}); logging to stdout only",
              file=sys.stderr)  # fmt: skip
        return ""
    return path
