"""components/platform/dashboard.py: the status dashboard's package and config on the host (the
dashboard itself: tests/unit/dashboard/)."""

import copy
import re

import pulumi
import pytest

from tests.harness.program import run_program, stack_config


def test_the_dashboard_package_archive_is_reproducible():
    # Its digest triggers a reinstall and restart on the VPS: it must change only with the
    # package's content, not with the time it was built.
    import time

    from components.platform.dashboard import package_archive

    first = package_archive()
    time.sleep(1.1)
    assert package_archive() == first


def test_the_dashboard_watches_the_renewal_job_only_where_an_acme_ca_issues():
    import json

    from dashboard.config import parse_config
    from tests.harness.program import host_files

    def dashboard_config(run):
        content = next(content for path, content in host_files(run).items()
                       if path.endswith("/dashboard/config.json"))
        return parse_config(json.loads(content))

    assert dashboard_config(run_program("prod")).certbot_state_file.as_posix() == \
        "/srv/aiia/state/certbot.json"
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["tls"] = {"mode": "self_signed"}
    assert dashboard_config(run_program("prod", config=config)).certbot_state_file is None


def test_the_servers_sandbox_hides_every_private_directory_of_the_host(prod):
    from components.platform.dashboard import PRIVATE_DIRS
    from tests.harness.program import host_files

    unit = host_files(prod)["/etc/systemd/system/aiia-dashboard.service"]
    (line,) = [line for line in unit.splitlines() if line.startswith("InaccessiblePaths=")]
    hidden = {path.lstrip("-") for path in line.split("=", 1)[1].split()}
    assert {f"/srv/aiia/{directory}" for directory in PRIVATE_DIRS} <= hidden
    for directory in ("postgres", "secrets", "pgbouncer", "redis", "backup"):
        assert directory in PRIVATE_DIRS  # the review's list (M2)


def test_the_dashboards_account_gets_a_fixed_uid_apart_from_the_data_owners(prod):
    script = prod.named("platform-dashboard-prerequisites").plain["create"]
    assert "useradd --system --uid \"$uid\"" in script and "uid=10002" in script
    for uid in (999, 70, 500):  # the data owners', and any in the system range
        config = copy.deepcopy(stack_config("prod"))
        config["aiia:platform"].setdefault("dashboard", {})["uid"] = uid
        with pytest.raises(pulumi.RunError, match=f"platform.dashboard.uid={uid} must be a "
                                                  "fixed uid between 1000 and 59999"):
            run_program("prod", config=config)
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"]["run_as"] = "10002:10002"
    with pytest.raises(pulumi.RunError, match="releases.prod.run_as='10002:10002' shares "
                                              "10002 with the dashboard's account"):
        run_program("prod", config=config)


def alerts_run(stack: str = "prod"):
    """`stack` with a Slack channel, an e-mail channel and a heartbeat (platform.alerts)."""
    config = copy.deepcopy(stack_config(stack))
    config["aiia:platform"]["alerts"] = {
        "channels": [{"name": "ops", "kind": "slack"},
                     {"name": "oncall", "kind": "email", "smtp_host": "smtp.example.com",
                      "username": "alerts", "from": "alerts@example.com",
                      "to": ["oncall@example.com"], "min_severity": "critical"}],
        "heartbeat": {"every_minutes": 5}}
    from tests.harness.program import made_up_secrets

    secrets = {**made_up_secrets(config),
               "aiia:alerts_ops_url": "https://hooks.slack.com/services/T/B/secret-ops",
               "aiia:alerts_oncall_password": "secret-smtp",
               "aiia:alerts_heartbeat_url": "https://hc-ping.com/secret-uuid"}
    return run_program(stack, config=config, secrets=secrets)


def test_alert_channels_reach_the_notifier_and_their_secrets_only_its_root_file():
    import json

    from dashboard.config import parse_config
    from dashboard.notify_config import parse_notify
    from tests.harness.program import host_files, host_scripts

    run = alerts_run()
    files = host_files(run)
    config_text = files["/srv/aiia/dashboard/config.json"]
    for secret in ("secret-ops", "secret-smtp", "secret-uuid"):
        assert secret not in config_text  # the server (internet-facing) reads this file
    config = parse_config(json.loads(config_text))
    assert [c.name for c in config.notify.channels] == ["ops", "oncall"]
    assert config.notify.dashboard_url == "https://devstatus.eduaiia.com/"
    assert config.notify.summary_file.as_posix() == "/srv/aiia/state/notify/summary.json"
    secrets = json.loads(files["/srv/aiia/dashboard/notify-secrets.json"])
    joined = parse_notify(config.notify_raw, secrets, "host")  # what the notifier will read
    assert joined.channels[0].secrets == {"url": "https://hooks.slack.com/services/T/B/secret-ops"}
    assert joined.heartbeat.url == "https://hc-ping.com/secret-uuid"
    install = host_scripts(run)["platform-dashboard-notify-secrets-install"]
    assert "chmod 0600 " in install and "chown root:root " in install
    unit = files["/etc/systemd/system/aiia-dashboard-notify.service"]
    assert "DynamicUser=yes" in unit and "CapabilityBoundingSet=\n" in unit
    assert "install -m 0400 -o \"$owner\" /srv/aiia/dashboard/notify-secrets.json" in unit
    assert "ExecStart=/usr/bin/python3 -m dashboard notify --config" in unit
    assert "systemctl enable --now aiia-dashboard-notify.timer" in \
        host_scripts(run)["platform-dashboard-enable"]


def test_without_alerts_no_notifier_is_installed_and_one_set_before_is_stopped(prod):
    from tests.harness.program import host_files, host_scripts

    assert not any("notify" in path for path in host_files(prod))
    assert "systemctl disable --now aiia-dashboard-notify.timer" in \
        host_scripts(prod)["platform-dashboard-enable"]


def test_the_notifier_is_counted_in_the_memory_budget():
    from tests.harness.settings import parse

    def with_alerts(raw):
        raw["platform"]["alerts"] = {"channels": [{"name": "ops", "kind": "slack"}]}

    def secrets(key):
        from tests.harness.settings import secrets_of
        return "https://hooks.example/x" if key == "alerts_ops_url" else secrets_of("prod")(key)

    budget = parse("prod", with_alerts, secrets).budget
    assert "dashboard alert notifier" in [share.service for share in budget.transient]
    assert "dashboard alert notifier" not in [s.service for s in parse("prod").budget.transient]


def test_the_password_hash_takes_the_stacks_random_salt_not_one_from_its_name(prod):
    """Review L8: the salt is drawn once by a command whose output the state keeps (the
    mocks give a fixed one, as a stack's state would), not derived from the stack name."""
    import hashlib
    import json
    import subprocess

    from components.platform.context import RANDOM_SALT_COMMAND
    from tests.harness.program import host_files

    salt = prod.named("platform-dashboard-password-salt")
    assert salt.plain["create"] == RANDOM_SALT_COMMAND
    config = json.loads(host_files(prod)["/srv/aiia/dashboard/config.json"])
    _, _, salt_hex, _ = config["auth_password_hash"].split("$")
    mocked = hashlib.sha256(b"mock-salt:platform-dashboard-password-salt").hexdigest()[:32]
    assert salt_hex == mocked
    assert salt_hex != hashlib.sha256(b"aiia-dashboard:prod").digest()[:16].hex()
    # What the command prints where `pulumi up` runs: 16 bytes, new on every draw.
    drawn = {subprocess.run(["/bin/sh", "-c", RANDOM_SALT_COMMAND], capture_output=True,
                            text=True, check=True).stdout for _ in range(2)}
    assert len(drawn) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", salt) for salt in drawn)


def test_a_short_dashboard_password_stops_the_preview():
    """The check reads the secret's plain text as the engine hands it to the program."""
    from tests.harness.program import made_up_secrets

    config = stack_config("prod")
    secrets = {**made_up_secrets(config), "aiia:dashboard_password": "short"}
    with pytest.raises(pulumi.RunError, match="aiia:dashboard_password has 5 characters"):
        run_program("prod", config=config, secrets=secrets)


def test_the_dashboard_expects_an_environment_s_processes_where_the_platform_reserves_them():
    import json

    from dashboard.config import parse_config
    from tests.harness.program import host_files

    def services(run) -> dict:
        content = next(content for path, content in host_files(run).items()
                       if path.endswith("/dashboard/config.json"))
        return {service.name: service for service in parse_config(json.loads(content)).services}

    assert "processes-prod" not in services(run_program("prod"))
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:host"]["memory_mb"] += 96
    config["aiia:platform"]["environments"]["prod"]["processes_memory_mb"] = 96
    worker = services(run_program("prod", config=config))["processes-prod"]
    # Matched by the label every process container carries (components/release/processes.py).
    assert worker.matches("aiia-worker-prod-2026-11-26-1-0a1b2c3d",
                          {"aiia.service": "process", "aiia.environment": "prod"})
    assert not worker.matches("aiia-app-prod-2026-11-26-1-0a1b2c3d",
                              {"aiia.service": "app", "aiia.environment": "prod"})
    assert worker.memory_limit_mb == 96


def operators_run(*names: str):
    """The prod stack with platform.dashboard.operators set (made-up secrets for each)."""
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["dashboard"] = {"operators": list(names)}
    return run_program("prod", config=config)


def rendered_config(run) -> dict:
    import json

    from tests.harness.program import host_files

    return json.loads(host_files(run)["/srv/aiia/dashboard/config.json"])


def test_each_operator_signs_in_with_their_own_password_hashed_with_a_salt_of_their_own():
    """Review L3: one account per operator, none shared."""
    from dashboard.auth import BasicAuthenticator
    from dashboard.config import parse_config
    from tests.unit.dashboard.conftest import basic

    run = operators_run("alice", "bob")
    raw = rendered_config(run)
    assert "auth_user" not in raw and "auth_password_hash" not in raw
    assert sorted(raw["auth_users"]) == ["alice", "bob"]
    salts = {name: encoded.split("$")[2] for name, encoded in raw["auth_users"].items()}
    assert len(set(salts.values())) == 2
    assert run.named("platform-dashboard-password-salt-alice")
    assert "platform-dashboard-password-salt" not in [r.name for r in run.resources]
    authenticator = BasicAuthenticator(parse_config(raw).auth_users)
    assert authenticator.check(basic("alice", "test-dashboard-password-alice")) == "alice"
    assert authenticator.check(basic("bob", "test-dashboard-password-bob")) == "bob"
    assert authenticator.check(basic("bob", "test-dashboard-password-alice")) is None
    assert authenticator.check(basic("admin", "test-dashboard-password")) is None


def test_removing_an_operator_drops_them_from_the_config_whose_change_restarts_the_server():
    """Review M4's mechanism revokes them: a changed config restarts what reads it."""
    from components.platform.dashboard import restart_on_config_change

    assert sorted(rendered_config(operators_run("alice"))["auth_users"]) == ["alice"]
    install = operators_run("alice").named("platform-dashboard-config-install")
    assert restart_on_config_change("aiia", local=False) in install.plain["create"]


def test_a_stack_without_operators_renders_the_shared_account_as_before(prod):
    raw = rendered_config(prod)
    assert raw["auth_user"] == "admin" and "auth_users" not in raw
    # nginx's fixed address on the status network: the one peer whose X-Real-IP is believed.
    assert raw["trusted_proxies"] == ["172.30.1.2"]


def test_a_short_operator_password_stops_the_preview():
    from tests.harness.program import made_up_secrets

    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["dashboard"] = {"operators": ["alice"]}
    secrets = {key: value for key, value in made_up_secrets(config).items()
               if key != "aiia:dashboard_password"}
    secrets["aiia:dashboard_password_alice"] = "short"
    with pytest.raises(pulumi.RunError, match="aiia:dashboard_password_alice has 5 characters"):
        run_program("prod", config=config, secrets=secrets)


def test_on_a_vps_the_collector_reaches_docker_only_through_its_proxy(prod):
    """Review L2: its config names the proxy's socket, which the program installs and
    starts; its unit runs it as its own account and hides the Docker socket."""
    import json

    from dashboard.config import parse_config
    from tests.harness.program import host_files, host_scripts

    files = host_files(prod)
    config = parse_config(json.loads(files["/srv/aiia/dashboard/config.json"]))
    assert config.docker_socket.as_posix() == "/run/aiia-dashboard-docker-proxy.sock"
    socket_unit = files["/etc/systemd/system/aiia-dashboard-docker-proxy.socket"]
    assert "ListenStream=/run/aiia-dashboard-docker-proxy.sock\n" in socket_unit
    assert "SocketGroup=aiia-collector\n" in socket_unit
    assert "ExecStart=/usr/bin/python3 -m dashboard.docker_proxy " in \
        files["/etc/systemd/system/aiia-dashboard-docker-proxy.service"]
    collector = files["/etc/systemd/system/aiia-dashboard-collect.service"]
    assert "User=aiia-collector\n" in collector
    enable = host_scripts(prod)["platform-dashboard-enable"]
    assert enable.index("enable --now aiia-dashboard-docker-proxy.socket") < \
        enable.index("enable --now aiia-dashboard-collect.timer")


def test_the_collectors_sandbox_hides_secrets_but_nothing_it_reads(prod):
    import json
    from pathlib import PurePosixPath

    from dashboard.config import parse_config
    from tests.harness.program import host_files

    files = host_files(prod)
    config = parse_config(json.loads(files["/srv/aiia/dashboard/config.json"]))
    unit = files["/etc/systemd/system/aiia-dashboard-collect.service"]
    (line,) = [line for line in unit.splitlines() if line.startswith("InaccessiblePaths=")]
    hidden = [PurePosixPath(path.lstrip("-")) for path in line.split("=", 1)[1].split()]
    for secret in ("/run/docker.sock", "/srv/aiia/secrets", "/srv/aiia/postgres",
                   "/srv/aiia/backup", "/srv/aiia/logs/prod",
                   "/srv/aiia/dashboard/notify-secrets.json",
                   "/srv/aiia/nginx/tls/devstatus.eduaiia.com/privkey.pem"):
        assert PurePosixPath(secret) in hidden, secret
    read = [config.access_log, config.releases_file, config.backups_file,
            config.restore_tests_file, config.state_dir, config.pitr_file,
            *(certificate.path for certificate in config.certificates)]
    assert config.certificates
    for path in read:
        assert not any(path == h or h in PurePosixPath(path).parents for h in hidden), path


def test_locally_the_proxy_container_alone_has_the_docker_socket():
    import json

    from dashboard.config import parse_config
    from tests.harness.program import host_files, service_of

    run = run_program("local")
    mounts = {service_of(container): {(v.get("host_path") or v.get("volume_name"),
                                       v["container_path"]) for v in container.plain["volumes"]}
              for container in run.containers().values()}
    with_socket = {service for service, volumes in mounts.items()
                   if any(path == "/var/run/docker.sock" for path, _ in volumes)}
    assert with_socket == {"dashboard-docker-proxy"}
    proxy_volume = ("aiia-local-dashboard-docker-proxy", "/run/aiia-docker-proxy")
    assert proxy_volume in mounts["dashboard-collector"]
    assert proxy_volume in mounts["dashboard-docker-proxy"]
    assert proxy_volume not in mounts["dashboard"]  # the server: neither
    content = next(content for path, content in host_files(run).items()
                   if path.endswith("/dashboard/config.json"))
    assert parse_config(json.loads(content)).docker_socket.as_posix() == \
        "/run/aiia-docker-proxy/docker.sock"


def test_the_collectors_account_gets_a_fixed_uid_of_its_own(prod):
    script = prod.named("platform-dashboard-prerequisites").plain["create"]
    assert "collector_uid=10003" in script
    for uid, message in ((999, "platform.dashboard.collector_uid=999 must be a fixed uid"),
                         (10002, "platform.dashboard.collector_uid=10002 is the server's uid")):
        config = copy.deepcopy(stack_config("prod"))
        config["aiia:platform"].setdefault("dashboard", {})["collector_uid"] = uid
        with pytest.raises(pulumi.RunError, match=message):
            run_program("prod", config=config)
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"]["run_as"] = "10003:10003"
    with pytest.raises(pulumi.RunError, match="releases.prod.run_as='10003:10003' shares "
                                              "10003 with the dashboard collector's account"):
        run_program("prod", config=config)


def test_the_docker_proxy_is_counted_in_the_memory_budget_with_the_collector():
    from tests.harness.settings import parse

    prod = parse("prod")
    dashboard = prod.platform.dashboard
    (share,) = [s for s in prod.budget.transient if s.service == "dashboard collector + proxy"]
    assert share.memory_mb == dashboard.collector_memory_mb + dashboard.docker_proxy_memory_mb
    local = {s.service: s.memory_mb for s in parse("local").budget.steady}
    assert local["dashboard Docker proxy"] == dashboard.docker_proxy_memory_mb
    assert local["dashboard collector"] == dashboard.collector_memory_mb
