"""components/settings/budget.py: the memory budget of the host, steady and during a release,
checked when the settings are parsed."""

import pytest

from tests.harness.settings import parse, problems


@pytest.mark.parametrize("stack", ["prod", "local"])
def test_shipped_defaults_fit_a_512_mb_host_with_swap(stack):
    budget = parse(stack).budget
    assert budget.host_memory_mb == 512
    assert budget.steady_mb <= 512
    assert budget.peak_mb <= 512 + budget.host_swap_mb
    # Two app containers per environment during a release, plus the largest transient job:
    # the restore drill's migrate check, one app container of 80 MB (certbot and the backup
    # take 64).
    apps = sum(share.memory_mb for share in budget.steady if share.service.startswith("app "))
    assert {share.service for share in budget.transient} >= {
        "certbot renewal", "backup / restore drill", "restore drill check of prod"}
    assert budget.peak_mb == budget.steady_mb + apps + 80


def test_memory_over_budget_lists_every_share():
    def grow_app(raw):
        raw["platform"]["environments"]["prod"]["app_memory_mb"] = 300

    message = problems("prod", grow_app)
    assert "steady use 732 MB exceeds aiia:host.memory_mb=512" in message
    for service in ("postgres", "pgbouncer", "redis", "nginx", "dashboard", "app prod",
                    "app staging", "OS and Docker reserve"):
        assert service in message
    assert "aiia:platform.environments.prod.app_memory_mb" in message


def test_peak_over_ram_plus_swap_is_refused_even_when_steady_fits():
    def no_swap(raw):
        raw["host"]["swap_mb"] = 0

    message = problems("prod", no_swap)
    assert "peak during a release" in message
    assert "raise host.swap_mb" in message
    assert "steady use" not in message
