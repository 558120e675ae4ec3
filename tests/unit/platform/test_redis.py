"""components/platform/redis.py: the cache's config, one ACL user per environment, and the
programs its image runs."""

import copy

import pytest

from tests.harness.program import run_program, stack_config


def test_redis_scripting_is_granted_per_environment_only_when_set():
    from tests.harness.program import host_files

    def acl_lines(run):
        config = next(content for path, content in host_files(run).items()
                      if path.endswith("/redis/redis.conf"))
        return {line.split()[1]: line for line in config.splitlines()
                if line.startswith("user ") and not line.startswith("user default")}

    default = acl_lines(run_program("prod"))
    assert all(line.endswith(" -@scripting") for line in default.values()), default
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["environments"]["staging"]["redis_scripting"] = True
    granted = acl_lines(run_program("prod", config=config))
    assert granted["prod"].endswith(" -@scripting")
    assert not granted["staging"].endswith(" -@scripting")


def cache_container(run):
    (container,) = [r for r in run.of_type("docker:index/container:Container")
                    if r.name == "platform-redis-container"]
    return container.plain


def test_the_default_cache_is_valkey_run_by_its_own_programs_names(prod):
    """valkey/valkey (the default, ImageSettings) runs valkey-server and is checked with
    valkey-cli: the redis-* links in Valkey's image are a build default, not relied on."""
    from components.settings.platform import ImageSettings

    assert ImageSettings().redis.startswith("valkey/valkey:")
    container = cache_container(prod)
    assert container["command"] == ["valkey-server", "/usr/local/etc/redis/redis.conf"]
    assert container["healthcheck"]["tests"] == ["CMD", "valkey-cli", "ping"]
    assert container["user"] == "999:999"


def test_a_stack_that_keeps_redis_7_2_runs_it_as_before(prod):
    """An operator who leaves images.redis at redis:7.2.x keeps Redis: the same command and
    health check as before Valkey became the default, so the container is not replaced; the
    config, its ACL users and key prefixes are the same file for both."""
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["images"]["redis"] = "redis:7.2.12-bookworm"
    kept = run_program("prod", config=config)
    container = cache_container(kept)
    assert container["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert container["healthcheck"]["tests"] == ["CMD", "redis-cli", "ping"]
    from tests.harness.program import host_files

    def cache_config(run):
        return next(content for path, content in host_files(run).items()
                    if path.endswith("/redis/redis.conf"))

    assert cache_config(kept) == cache_config(prod)


@pytest.mark.parametrize(("image", "programs"), [
    ("valkey/valkey:8.1.11-trixie", ("valkey-server", "valkey-cli")),
    ("valkey/valkey@sha256:" + "a" * 64, ("valkey-server", "valkey-cli")),
    ("registry.example.com:5000/mirror/valkey:8.1.11-trixie", ("valkey-server", "valkey-cli")),
    ("redis:7.2.12-bookworm", ("redis-server", "redis-cli")),
    ("redis:8.2.1-trixie", ("redis-server", "redis-cli")),
    ("registry.example.com:5000/redis:7.2.12", ("redis-server", "redis-cli")),
])
def test_the_programs_follow_the_image_s_repository(image, programs):
    from components.platform.redis import cache_programs

    assert cache_programs(image) == programs
