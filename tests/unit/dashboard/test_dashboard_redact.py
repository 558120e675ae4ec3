"""The log tails the page shows carry no client address, query string or SQL value (review
L3): real lines in the formats this platform writes, masked before the collector stores
them."""

from __future__ import annotations

import json

import pytest

from dashboard.config import load_config
from dashboard.redact import mask_addresses, redact_lines
from tests.harness import dashboard_status as fixtures

# nginx's aiia_json (templates/nginx/nginx.conf.j2 log_format), as nginx writes it.
NGINX_ACCESS = (
    '{"time":"2026-12-07T08:15:23+00:00","addr":"203.0.113.7","env":"prod",'
    '"host":"api.example.com","method":"GET","uri":"/notes/42/","status":200,"bytes":512,'
    '"request_time":0.012,"upstream":"172.30.0.5:8000","upstream_status":"200",'
    '"release":"2026-12-07-1"}')
NGINX_ACCESS_IPV6 = NGINX_ACCESS.replace("203.0.113.7", "2001:db8:85a3:1234:5678::7")
# nginx's error log (its default format): the request line carries the query.
NGINX_ERROR = (
    '2026/12/07 08:15:23 [error] 29#29: *1234 upstream timed out (110: Connection timed out) '
    'while reading response header from upstream, client: 203.0.113.7, server: '
    'api.example.com, request: "GET /search/?q=alice%40example.com&page=2 HTTP/1.1", '
    'upstream: "http://172.30.0.5:8000/search/?q=alice%40example.com&page=2", '
    'host: "api.example.com"')
# The app's LOGGING (app/aiia/settings.py: UTCFormatter, "%(asctime)s %(levelname)s %(name)s
# %(message)s"); the request log (app/aiia/middleware.py) and Django's DisallowedHost, each
# after Docker's timestamp as the collector asks for it.
DJANGO_REQUEST = "2026-12-07T08:15:23.123456789Z 2026-12-07T08:15:23.123Z INFO aiia.request " \
                 "GET /notes/ 200 12.3ms"
DJANGO_DISALLOWED = (
    "2026-12-07T08:15:24.000000000Z 2026-12-07T08:15:24.000Z ERROR django.security."
    "DisallowedHost Invalid HTTP_HOST header: '198.51.100.23:443'. You may need to add "
    "'198.51.100.23' to ALLOWED_HOSTS.")
# PostgreSQL's default log_line_prefix '%m [%p] ' (templates/postgres/postgresql.conf.j2
# sets none; log_min_duration_statement logs slow statements), after Docker's timestamp.
# (S608: these are lines of a log, no query is built from them.)
PG = "2026-12-07T08:15:25.000000001Z 2026-12-07 08:15:25.000 UTC"
PG_SLOW = (
    f'{PG} [57] LOG:  duration: 612.345 ms  statement: SELECT "notes_note"."id", '  # noqa: S608
    '"notes_note"."title" FROM "notes_note" WHERE ("notes_note"."owner_email" = '
    "'alice@example.com' AND \"notes_note\".\"id\" > 1042 AND \"notes_note\".\"body\" "
    "LIKE E'%it''s%') ORDER BY \"notes_note\".\"id\" ASC LIMIT 21")
PG_EXECUTE = (f"{PG} [58] LOG:  duration: 700.100 ms  execute <unnamed>: "  # noqa: S608
              "SELECT * FROM accounts_user WHERE id = $1 AND email = $2")
PG_PARAMETERS = f"{PG} [58] DETAIL:  parameters: $1 = '42', $2 = 'bob@example.com', $3 = NULL"
PG_DUPLICATE = [
    f'{PG} [59] ERROR:  duplicate key value violates unique constraint '
    '"accounts_user_email_key"',
    f"{PG} [59] DETAIL:  Key (email)=(alice@example.com) already exists.",
    f'{PG} [59] STATEMENT:  INSERT INTO "accounts_user" ("email", "age") VALUES '  # noqa: S608
    "('alice@example.com', 31) RETURNING \"accounts_user\".\"id\"",
]
PG_MULTILINE = [
    f"{PG} [60] LOG:  duration: 1500.000 ms  statement: SELECT *",
    "2026-12-07T08:15:25.000000002Z \tFROM accounts_user",
    "2026-12-07T08:15:25.000000003Z \tWHERE email = 'bob@example.com' AND age > 40 "
    "AND body = $q$secret text$q$",
]
PG_CHECKPOINT = (f"{PG} [27] LOG:  checkpoint complete: wrote 44 buffers (0.3%); 0 WAL "
                 "file(s) added, 0 removed, 0 recycled; write=4.312 s, sync=0.004 s, "
                 "total=4.330 s")


def test_nginx_s_access_log_keeps_the_client_s_slash_24_and_slash_48():
    line = json.loads(redact_lines([NGINX_ACCESS])[0])
    assert line["addr"] == "203.0.113.x"
    assert line["upstream"] == "172.30.0.x:8000"
    assert {key: value for key, value in line.items() if key not in ("addr", "upstream")} == \
        {key: value for key, value in json.loads(NGINX_ACCESS).items()
         if key not in ("addr", "upstream")}
    assert json.loads(redact_lines([NGINX_ACCESS_IPV6])[0])["addr"] == "2001:db8:85a3::x"


def test_nginx_s_error_log_loses_its_queries_and_addresses_and_keeps_its_paths():
    line = redact_lines([NGINX_ERROR])[0]
    assert "alice" not in line and "page=2" not in line and "203.0.113.7" not in line
    assert 'request: "GET /search/?… HTTP/1.1"' in line
    assert 'upstream: "http://172.30.0.x:8000/search/?…"' in line
    assert line.startswith("2026/12/07 08:15:23 [error] 29#29: *1234 upstream timed out (110:")
    assert "client: 203.0.113.x, server: api.example.com" in line


def test_the_app_s_request_log_stays_and_an_address_in_a_message_is_masked():
    assert redact_lines([DJANGO_REQUEST]) == [DJANGO_REQUEST]
    line = redact_lines([DJANGO_DISALLOWED])[0]
    assert "198.51.100.23" not in line
    assert "Invalid HTTP_HOST header: '198.51.100.x:443'" in line
    assert line.startswith("2026-12-07T08:15:24.000000000Z 2026-12-07T08:15:24.000Z ERROR")


def test_a_slow_statement_keeps_its_shape_and_duration_and_loses_its_values():
    line = redact_lines([PG_SLOW])[0]
    assert line == (
        f'{PG} [57] LOG:  duration: 612.345 ms  statement: SELECT "notes_note"."id", '  # noqa: S608
        '"notes_note"."title" FROM "notes_note" WHERE ("notes_note"."owner_email" = ? AND '
        '"notes_note"."id" > ? AND "notes_note"."body" LIKE ?) ORDER BY "notes_note"."id" '
        "ASC LIMIT ?")


def test_a_prepared_statement_keeps_its_placeholders_and_loses_its_parameters():
    execute, parameters = redact_lines([PG_EXECUTE, PG_PARAMETERS])
    assert execute == PG_EXECUTE  # $1, $2 are no values
    assert parameters == f"{PG} [58] DETAIL:  parameters: $1 = ?, $2 = ?, $3 = ?"


def test_an_error_s_key_and_statement_lose_their_values():
    error, detail, statement = redact_lines(PG_DUPLICATE)
    assert error == PG_DUPLICATE[0]
    assert detail == f"{PG} [59] DETAIL:  Key (email)=(?) already exists."
    assert statement == (f'{PG} [59] STATEMENT:  INSERT INTO "accounts_user" ("email", '  # noqa: S608
                         '"age") VALUES (?, ?) RETURNING "accounts_user"."id"')


def test_the_lines_that_continue_a_statement_lose_their_values_too():
    lines = redact_lines(PG_MULTILINE)
    assert lines[1] == PG_MULTILINE[1]
    assert lines[2] == ("2026-12-07T08:15:25.000000003Z \tWHERE email = ? AND age > ? "
                        "AND body = ?")
    # The next line of PostgreSQL's own ends the statement: its numbers are no values.
    assert redact_lines([*PG_MULTILINE, PG_CHECKPOINT])[-1] == PG_CHECKPOINT


def test_what_only_looks_like_an_address_stays():
    for text in ("nginx/1.30.6", "version 1.2.3.4.5", "08:15:23.123", "at 2026-12-07T08:15:23Z",
                 "mac 02:42:ac:11:00:02", "999.1.1.1", "127.0.0.1:8080", "[::1]:443"):
        assert mask_addresses(text) == text, text
    assert mask_addresses("from ::ffff:203.0.113.7 port 5") == "from 203.0.113.x port 5"
    assert mask_addresses("[2001:db8::1]:443") == "[2001:db8::x]:443"


@pytest.fixture
def fresh_host(tmp_path):
    """A realistic host of its own: the test adds lines to its logs."""
    with fixtures.realistic_host(tmp_path) as host:
        yield host


def test_the_collector_stores_only_redacted_tails(fresh_host):
    """Redacted before the state dir: the server never had the values to reveal."""
    root = fresh_host.state.root
    with (root / "logs" / "prod" / "django.log").open("a") as log:
        log.write(DJANGO_DISALLOWED.split("Z ", 1)[1] + "\n")
    with (root / "logs" / "nginx" / "access.log").open("a") as log:
        log.write(NGINX_ACCESS + "\n")
    fresh_host.collect()
    logs_dir = load_config(fresh_host.state.config_path).logs_dir
    stored = "".join(path.read_text() for path in logs_dir.glob("*.json"))
    assert "198.51.100.23" not in stored and "203.0.113.7" not in stored
    django = json.loads((logs_dir / "django-prod.json").read_text())["lines"]
    assert "Invalid HTTP_HOST header: '198.51.100.x:443'" in django[-1]
    access = json.loads((logs_dir / "nginx-access.json").read_text())["lines"]
    assert json.loads(access[-1])["addr"] == "203.0.113.x"
