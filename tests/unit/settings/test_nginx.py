"""components/settings/nginx.py: nginx's connections sized to its memory, limits that nest;
each bad value refused naming the key and the fix."""

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
        raw["platform"]["redis"] = {"memory_mb": 48, "maxmemory_mb": 40}  # the budget's

    assert parse("prod", more_memory).platform.nginx.worker_connections == 500


@pytest.mark.parametrize(("nginx", "expected"), [
    ({"connections_per_environment": 80},
     "connections_per_environment=80 lets one environment hold more than half of "
     "worker_connections=300"),
    ({"websockets_per_address": 40}, "websockets_per_address=40 must not exceed "
                                     "connections_per_address=32"),
    ({"websockets_per_environment": 0}, "websockets_per_environment=0 must be greater than 0"),
    ({"connections_per_address": 65}, "connections_per_address=65 must not exceed "
                                      "connections_per_environment=64"),
])
def test_limits_that_do_not_nest_are_refused(nginx, expected):
    def tune(raw):
        raw["platform"]["nginx"] = nginx

    assert f"aiia:platform.nginx.{expected}" in problems("prod", tune)
