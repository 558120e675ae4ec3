"""components/platform/redis.py: Redis's config, one ACL user per environment."""

import copy

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
