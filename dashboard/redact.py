"""What the page's log tails must not carry (review L3): clients' addresses, query strings,
and the values in PostgreSQL's logged statements.

The collector runs every line through ``redact_lines`` before it writes a tail to the state
dir, so that what the internet-facing server could ever reveal was never stored. The logs
themselves (the containers', nginx's files) are untouched: an operator on the host reads
them whole.

- An IPv4 address keeps its /24: ``203.0.113.x``, as a network's operators and abuse
  contacts name it, no longer one subscriber's line. An IPv6 address keeps its /48 (the
  prefix RIRs assign to one end site): ``2001:db8:85a3::x``. Both still tell "the same
  network as yesterday"; neither is one person's device. Loopback stays as it is.
- A query string goes, its path stays: ``/search?…``. nginx's access log has none already
  ($uri), nor has the app's request log (request.path); nginx's error log, uvicorn's and a
  library's messages may.
- In PostgreSQL's lines that carry SQL (``statement:``, ``duration: … statement:``,
  ``execute …:``, ``STATEMENT:``, and the lines that continue a multi-line statement) every
  string, dollar-quoted and numeric literal becomes ``?``; the values of ``parameters:``,
  ``Key (…)=(…)`` and ``Failing row contains (…)`` become ``?`` too. The query's shape, its
  duration and the tables it reads stay: what the slow-query tail is for.

Not covered: values inside other messages (``ERROR:  invalid input syntax for type
integer: "…"``), an e-mail address or a name an app writes into its own log line, and a
string literal that spans lines (its first line is redacted, later ones only as a
statement's continuation).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

_IPV4 = re.compile(r"(?<![\w.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\w]|\.\d)")
# Anything that could be an IPv6 address (hex groups and colons, maybe a dotted tail);
# ipaddress decides. A time of day (08:15:23) is not one.
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
                   r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})(?![\w:])")
# A path with a query: /path?query (up to a space, a quote or the end of a JSON string).
_QUERY = re.compile(r"((?:^|(?<=[\s\"'=(]))(?:https?://[^\s/\"']+)?/[^\s?\"'#]*)\?[^\s\"'#]*")

# Docker's timestamp before each line of a container's log (the collector asks for it).
_DOCKER_TIME = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ")
# PostgreSQL's log_line_prefix ('%m [%p] ', its default), after Docker's timestamp.
_POSTGRES_LINE = re.compile(
    r"^(?:\d{4}-\d\d-\d\dT[\d:.]+Z )?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \w+ \[\d+\] ")
_SQL_START = re.compile(
    r"(?:\bstatement: |\bSTATEMENT:  |\b(?:execute|parse|bind) [^:]*: )")
_DOLLAR_QUOTED = re.compile(r"\$(\w*)\$.*?\$\1\$", re.DOTALL)
_STRING = re.compile(r"(?<![\w$])[EeBbXxNnUu]?&?'(?:[^']|'')*(?:'|$)")
_NUMBER = re.compile(r"(?<![\w$.])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])")
_VALUE_LISTS = (
    re.compile(r"(\bparameters: )(.*)$"),
    re.compile(r"(\bKey \([^)]*\)=\()(.*?)(\)(?: already exists| is not present|$))"),
    re.compile(r"(\bFailing row contains \()(.*)(\)\.?)$"),
)
_PARAMETER = re.compile(r"(\$\d+ = )(?:'(?:[^']|'')*'|NULL)")


def redact_lines(lines: Iterable[str]) -> list[str]:
    """`lines` with addresses, query strings and SQL values masked (the module's doc)."""
    redacted, in_statement = [], False
    for line in lines:
        if _POSTGRES_LINE.match(line):
            line, in_statement = _redact_postgres(line)
        elif in_statement:  # the next line of a multi-line statement
            time = _DOCKER_TIME.match(line)
            cut = time.end() if time else 0
            line = line[:cut] + redact_sql(line[cut:])
        redacted.append(mask_queries(mask_addresses(line)))
    return redacted


def _redact_postgres(line: str) -> tuple[str, bool]:
    """A line of PostgreSQL's log, and whether a statement starts (and may go on) in it."""
    start = _SQL_START.search(line)
    if start is not None:
        return line[:start.end()] + redact_sql(line[start.end():]), True
    for pattern in _VALUE_LISTS:
        match = pattern.search(line)
        if match:
            values = match.group(2)
            masked = (_PARAMETER.sub(r"\1?", values) if pattern is _VALUE_LISTS[0] else "?")
            line = line[:match.start(2)] + masked + line[match.end(2):]
    return line, False


def redact_sql(sql: str) -> str:
    """SQL with its literals as `?`: strings, dollar-quoted bodies, numbers ($1 stays)."""
    sql = _DOLLAR_QUOTED.sub("?", sql)
    sql = _STRING.sub("?", sql)
    return _NUMBER.sub("?", sql)


def mask_addresses(line: str) -> str:
    # IPv6 first: an IPv4 client of a dual-stack socket is written ::ffff:203.0.113.7.
    line = _IPV6.sub(_mask_ipv6, line)
    return _IPV4.sub(_mask_ipv4, line)


def _mask_ipv4(match: re.Match) -> str:
    if any(int(part) > 255 for part in match.groups()):
        return match.group(0)  # a version number or a counter, not an address
    if match.group(1) == "127":
        return match.group(0)
    return ".".join(match.groups()[:3]) + ".x"


def _mask_ipv6(match: re.Match) -> str:
    text = match.group(0)
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return text
    if address.ipv4_mapped is not None:
        return _IPV4.sub(_mask_ipv4, str(address.ipv4_mapped))
    if address.is_loopback or address.is_unspecified:
        return text
    network = ipaddress.IPv6Network(f"{address}/48", strict=False)
    return str(network.network_address).removesuffix("::") + "::x"


def mask_queries(line: str) -> str:
    return _QUERY.sub(r"\1?…", line)
