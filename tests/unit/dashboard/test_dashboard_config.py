"""The dashboard config: rendered from templates/dashboard/config.json.j2, validated on load."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jinja2
import pytest

from components.host.templates import render as program_render
from dashboard.auth import hash_password, verify_password
from dashboard.config import ConfigError, load_config, parse_config

PASSWORD_HASH = hash_password("pw", iterations=10)


def template_variables() -> dict:
    """The variables components/platform/dashboard.py passes, in the shapes it uses."""
    root = "/srv/aiia"
    return {
        "listen_host": "172.30.0.1",
        "listen_port": 9100,
        "state_dir": f"{root}/state/dashboard",
        "root_dir": root,
        "environments": [
            {
                "name": "prod",
                "domain": "prod.example.com",
                "health_url": "https://127.0.0.1:443/healthz/",
                "host_header": "prod.example.com",
            },
            {
                "name": "staging",
                "domain": "staging.example.com",
                "health_url": "https://127.0.0.1:443/healthz/",
                "host_header": "staging.example.com",
            },
        ],
        "services": [
            {
                "name": "postgres",
                "container_label": "postgres",
                "environment": None,
                "memory_limit_mb": 128,
            },
            {
                "name": "app-prod",
                "container_label": "app",
                "environment": "prod",
                "memory_limit_mb": 96,
            },
            {"name": "certbot", "container_name": "aiia-certbot", "memory_limit_mb": 32},
        ],
        "certificates": [
            {
                "domain": "prod.example.com",
                "path": f"{root}/nginx/tls/prod.example.com/fullchain.pem",
            }
        ],
        "access_log": f"{root}/logs/nginx/access.log",
        "releases_file": f"{root}/state/releases.jsonl",
        "backups_file": f"{root}/state/backups.jsonl",
        "restore_tests_file": f"{root}/state/restore-tests.jsonl",
        "certbot_state_file": f"{root}/state/certbot.json",
        "log_sources": [
            {"service": "app-prod", "container_label": "app", "environment": "prod"},
            {"service": "postgres", "container_label": "postgres", "environment": None},
            {"service": "nginx-access", "file": f"{root}/logs/nginx/access.log"},
        ],
        "collect_every_s": 30,
        "auth_user": "operator",
        "auth_password_hash": PASSWORD_HASH,
    }


def render(**variables) -> str:
    """Rendered exactly as `pulumi up` renders it (the program's own environment)."""
    return program_render("dashboard/config.json.j2", **variables)


def test_the_rendered_template_loads_into_a_valid_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(render(**template_variables()))
    config = load_config(path)
    assert config.listen_host == "172.30.0.1" and config.listen_port == 9100
    assert [e.name for e in config.environments] == ["prod", "staging"]
    app = config.services[1]
    assert app.matches("aiia-app-prod-r1", {"aiia.service": "app", "aiia.environment": "prod"})
    assert not app.matches(
        "aiia-app-staging-r1", {"aiia.service": "app", "aiia.environment": "staging"}
    )
    assert config.services[2].matches("aiia-certbot", {})
    assert config.log_source("nginx-access").file == Path("/srv/aiia/logs/nginx/access.log")
    assert config.log_source("postgres").container_label == "postgres"
    assert verify_password("pw", config.auth_users["operator"])
    assert config.status_path == Path("/srv/aiia/state/dashboard/status.json")
    assert config.certbot_state_file == Path("/srv/aiia/state/certbot.json")
    assert config.collect_every_seconds == 30  # the page's staleness alert measures by it


def test_strings_that_need_escaping_stay_valid_json():
    variables = template_variables()
    variables["auth_user"] = 'op"er\\ator</script>'
    assert json.loads(render(**variables))["auth_user"] == 'op"er\\ator</script>'


def test_a_missing_template_variable_stops_rendering():
    variables = template_variables()
    del variables["backups_file"]
    with pytest.raises(jinja2.UndefinedError):
        render(**variables)


def test_log_sources_also_as_a_map_of_strings():
    raw = json.loads(render(**template_variables()))
    raw["log_sources"] = {"nginx": "aiia-nginx", "django-prod": "/srv/aiia/logs/prod/django.log"}
    config = parse_config(raw)
    assert config.log_source("nginx").container == "aiia-nginx"
    assert config.log_source("django-prod").file == Path("/srv/aiia/logs/prod/django.log")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda c: c.update(listen_port=70000), "listen_port"),
        (lambda c: c.pop("auth_password_hash"), "auth_password_hash"),
        (lambda c: c.update(auth_password_hash="plaintext"), "auth_password_hash"),
        (lambda c: c["environments"][0].update(health_url="ftp://x"), "environments[0].health_url"),
        (lambda c: c["environments"][1].update(name="prod"), "duplicate"),
        (lambda c: c["services"][0].update(container_name="aiia-postgres"), "services[0]"),
        (lambda c: c["services"][1].update(memory_limit_mb=0), "services[1].memory_limit_mb"),
        (lambda c: c["log_sources"][0].update(file="/x"), "log_sources.app-prod"),
        (lambda c: c.update(retention={"probe_days": 7}), "retention.probe_days"),
    ],
)
def test_a_wrong_value_is_refused_with_the_key_named(change, key):
    raw = copy.deepcopy(json.loads(render(**template_variables())))
    change(raw)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_config(raw)


def test_an_unreadable_config_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "bad.json")
