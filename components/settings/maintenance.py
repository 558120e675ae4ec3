"""`releases.<env>.maintenance*`: an environment taken off the air on purpose, its release
kept running behind nginx's 503 (components/release/maintenance.py renders it).

Standard library only, like releases.py, which calls `check_maintenance` for each release."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from components.settings.checks import Problems
from components.settings.host import CHECKOUT

# The page is all a visitor gets (/static/ is in maintenance too): its images and styles
# inline, a few hundred kilobytes at most.
MAX_PAGE_BYTES = 256 * 1024


def page_path(page: str) -> Path | None:
    """The operator's maintenance page (releases.<env>.maintenance_page), or None for the
    program's own."""
    return CHECKOUT / page if page else None


def check_maintenance(allow: Any, page: str, key: str, problems: Problems) -> None:
    """`releases.<env>.maintenance_allow` and `.maintenance_page`."""
    if isinstance(allow, str) or not isinstance(allow, list | tuple):
        problems.add(f"{key}.maintenance_allow={allow!r} must be a list of addresses or "
                     "networks (CIDR), e.g. [203.0.113.7, 198.51.100.0/24]")
    else:
        for entry in allow:
            try:
                ipaddress.ip_network(str(entry), strict=False)
            except ValueError:
                problems.add(f"{key}.maintenance_allow: {entry!r} is not an address or a "
                             "network (CIDR), e.g. 203.0.113.7 or 198.51.100.0/24")
    _check_page(page, key, problems)


def _check_page(page: str, key: str, problems: Problems) -> None:
    path = page_path(page)
    if path is None:
        return
    if Path(page).is_absolute() or ".." in Path(page).parts or path.suffix != ".html":
        problems.add(f"{key}.maintenance_page={page!r} must be an .html "
                     "file inside the repository, given relative to it (e.g. "
                     "pages/maintenance.html)")
    elif not path.is_file():
        problems.add(f"{key}.maintenance_page={page!r}: no such file in "
                     f"the repository ({path}); add it, or remove the setting for the "
                     "program's own page")
    elif path.stat().st_size > MAX_PAGE_BYTES:
        problems.add(f"{key}.maintenance_page={page!r} is "
                     f"{path.stat().st_size} bytes; at most {MAX_PAGE_BYTES} (inline its "
                     "images and styles: /static/ is in maintenance too)")
