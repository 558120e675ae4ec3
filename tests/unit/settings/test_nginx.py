"""components/settings/nginx.py: nginx's connections sized to its memory, limits that nest,
upload paths it can route; each bad value refused naming the key and the fix."""

import pytest

from tests.harness.settings import parse, problems


def test_worker_connections_that_do_not_fit_nginx_s_memory_are_refused():
    def more(raw):
        raw["platform"]["nginx"] = {"worker_connections": 400}

    assert ("aiia:platform.nginx.worker_connections=400 needs 39 MB at worst (12 MB + two "
            "workers' connections at 34 KB each, during a reload) over memory_mb=32; lower "
            "worker_connections or raise memory_mb") in problems("prod", more)


def test_worker_connections_by_default_fit_and_more_memory_takes_more():
    assert parse("prod").platform.nginx.worker_connections == 300

    def more_memory(raw):
        raw["platform"]["nginx"] = {"memory_mb": 48, "worker_connections": 500}
        raw["platform"]["redis"] = {"memory_mb": 32, "maxmemory_mb": 24}  # the budget's

    assert parse("prod", more_memory).platform.nginx.worker_connections == 500


def test_the_app_s_own_upload_paths_are_taken():
    def uploads(raw):
        raw["platform"]["nginx"] = {"upload_paths": ["/api/", "/media/uploads/"]}

    assert list(parse("prod", uploads).platform.nginx.upload_paths) == [
        "/api/", "/media/uploads/"]


@pytest.mark.parametrize(("nginx", "expected"), [
    ({"connections_per_environment": 80},
     "connections_per_environment=80 lets one environment hold more than half of "
     "worker_connections=300"),
    ({"websockets_per_address": 50}, "websockets_per_address=50 must not exceed "
                                     "connections_per_address=48"),
    ({"websockets_per_environment": 0}, "websockets_per_environment=0 must be greater than 0"),
    ({"connections_per_address": 73}, "connections_per_address=73 must not exceed "
                                      "connections_per_environment=72"),
    ({"max_body_mb": 0}, "max_body_mb=0 must be greater than 0"),
    ({"max_body_mb": 30}, "max_body_mb=30 must not exceed upload_max_body_mb=20"),
    ({"upload_paths": ["api/"]}, "upload_paths=['api/'] must be a list of distinct path"),
    ({"upload_paths": ["/"]}, "upload_paths=['/'] must be a list of distinct path prefixes"),
    ({"upload_paths": ["/static/uploads/"]}, "upload_paths=['/static/uploads/'] must be"),
    ({"upload_paths": ["/api/", "/api/"]}, "upload_paths=['/api/', '/api/'] must be"),
    ({"upload_paths": ["/up loads/"]}, "upload_paths=['/up loads/'] must be"),
    ({"upload_paths": "/api/"}, "upload_paths='/api/' must be a list"),
])
def test_limits_that_do_not_nest_or_route_are_refused(nginx, expected):
    def tune(raw):
        raw["platform"]["nginx"] = nginx

    assert f"aiia:platform.nginx.{expected}" in problems("prod", tune)
