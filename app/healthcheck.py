#!/usr/bin/env python3
"""Container health check: exit 0 when GET /healthz/ answers 200 within 3 s, 1 otherwise.

Standard library only; used as ["CMD", "python3", "/app/healthcheck.py"].
"""

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT') or '8000'}/healthz/"
    # No proxy: an HTTP_PROXY in the container's environment must not capture 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        print(f"healthcheck: {url}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
