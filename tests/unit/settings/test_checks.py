"""components/settings/checks.py: what every section's fields go through."""

from tests.harness.settings import problems_of


def test_a_misspelt_field_names_the_nearest_setting():
    message = problems_of(lambda raw: raw["platform"]["environments"]["prod"].update(
        app_memroy_mb=80))
    assert ("aiia:platform.environments.prod.app_memroy_mb is not a setting; did you mean "
            "'app_memory_mb'? known: app_memory_mb, domain, name, network_subnet, port") in message


def test_a_text_setting_given_an_object_or_a_list_is_refused():
    message = problems_of(lambda raw: raw["host"]["ssh"].update(host=["vps.eduaiia.com"]))
    assert "aiia:host.ssh.host=['vps.eduaiia.com'] must be text, not list" in message
    message = problems_of(lambda raw: raw["platform"]["tls"].update(email={"a": 1}))
    assert "aiia:platform.tls.email={'a': 1} must be text, not dict" in message
