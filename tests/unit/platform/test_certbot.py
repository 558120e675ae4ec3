"""components/platform/certbot.py: what `pulumi up` says of the renewal job's outcome."""


def test_a_domain_not_issued_is_a_warning_of_pulumi_up_not_a_failure(monkeypatch):
    import pulumi

    from components.platform.certbot import warn_about_failures

    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", warnings.append)
    warn_about_failures(
        "2026-12-03T06:00:00Z certbot: prod.example.com: renewing if due\n"
        "2026-12-03T06:00:09Z certbot: status.example.com: NOT ISSUED; nginx keeps serving "
        "the certificate it has\n"
        "2026-12-03T06:00:10Z certbot: staging.example.com: RENEWAL FAILED; its current "
        "certificate keeps serving\n"
        "2026-12-03T06:00:11Z certbot: failed: status.example.com staging.example.com\n")
    assert warnings == ["status.example.com: NOT ISSUED; nginx keeps serving the certificate "
                        "it has",
                        "staging.example.com: RENEWAL FAILED; its current certificate keeps "
                        "serving"]
