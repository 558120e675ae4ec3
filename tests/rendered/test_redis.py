"""A real redis-server 7 runs the rendered redis.conf: the 50 MB cap, its eviction, the ACLs.

The rendered file is used as it is, except for the data directory, the port and the bind
address (the container listens on its network; the test only on 127.0.0.1). The ACL users
are exactly the rendered ones: the default user may only PING and each environment's user
only touches its own keys, so no user may run CONFIG or INFO (both @admin/@dangerous).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from components.names import redis_user
from tests.rendered.conftest import (
    SERVICE_USER,
    as_service_user,
    chown_tree,
    free_port,
    replace_exactly,
    running,
    scratch_dir,
)

pytestmark = pytest.mark.rendered
MIB = 1024 * 1024


class RedisError(Exception):
    """An error reply (`-NOPERM …`, `-WRONGPASS …`)."""


class RedisClient:
    """Just enough of RESP2 to send commands and read the replies."""

    def __init__(self, port: int):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.socket.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.socket.close()

    def send(self, *args: str | bytes | int) -> None:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts += [f"${len(data)}\r\n".encode(), data, b"\r\n"]
        self.socket.sendall(b"".join(parts))

    def reply(self):
        line = self.reader.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if int(rest) < 0:
                return None
            data = self.reader.read(int(rest) + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))] if int(rest) >= 0 else None
        raise AssertionError(f"unexpected reply {line!r}")

    def __call__(self, *args: str | bytes | int):
        self.send(*args)
        return self.reply()


@pytest.fixture(scope="module")
def redis_port(rendered) -> Iterator[int]:
    """redis-server with the prod stack's rendered redis.conf."""
    prod = rendered["prod"]
    with scratch_dir("redis", owner=SERVICE_USER, mode=0o700) as directory:
        port = free_port()
        config = prod.file("redis", "redis.conf")
        config = replace_exactly(config, "\ndir /data\n", f"\ndir {directory}\n")
        config = replace_exactly(config, "\nport 6379\n", f"\nport {port}\n")
        config = replace_exactly(config, "\nbind 0.0.0.0\n", "\nbind 127.0.0.1\n")
        (directory / "redis.conf").write_text(config)
        (directory / "redis.conf").chmod(0o600)
        chown_tree(directory, SERVICE_USER)
        with running("redis-server",
                     as_service_user(["redis-server", str(directory / "redis.conf")]),
                     port=port, log=directory / "redis.log"):
            yield port


@pytest.fixture
def connect(redis_port) -> Iterator:
    """connect(user=None) → a client, logged in as the environment's ACL user if given."""
    opened: list[RedisClient] = []

    def open_client(user: str | None = None, password: str | None = None) -> RedisClient:
        client = RedisClient(redis_port)
        opened.append(client)
        if user:
            assert client("AUTH", user, password) == "OK"
        return client

    yield open_client
    for client in opened:
        client.close()


def environment_user(rendered, env: str) -> tuple[str, str]:
    return redis_user(env), rendered["prod"].secrets[f"{env}_redis_password"]


def refused(client: RedisClient, *command: str) -> str:
    with pytest.raises(RedisError) as error:
        client(*command)
    return str(error.value)


def test_the_default_user_may_only_ping(connect):
    anonymous = connect()
    assert anonymous("PING") == "PONG"
    for command in (("GET", "prod:x"), ("SET", "x", "1"), ("CONFIG", "GET", "maxmemory"),
                    ("INFO", "memory"), ("KEYS", "*")):
        assert refused(anonymous, *command).startswith("NOPERM"), command


def test_each_environment_reaches_only_its_own_keys(rendered, connect):
    prod = connect(*environment_user(rendered, "prod"))
    staging = connect(*environment_user(rendered, "staging"))
    assert prod("SET", "prod:x", "from-prod") == "OK"
    assert prod("GET", "prod:x") == "from-prod"
    assert staging("SET", "staging:x", "from-staging") == "OK"

    assert refused(prod, "GET", "staging:x").startswith("NOPERM")
    assert refused(prod, "SET", "staging:x", "overwritten").startswith("NOPERM")
    assert refused(staging, "GET", "prod:x").startswith("NOPERM")
    assert refused(prod, "GET", "unprefixed").startswith("NOPERM")
    # No environment can wipe, list or reconfigure the shared cache.
    for command in (("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "GET", "maxmemory"),
                    ("CONFIG", "SET", "maxmemory", "0"), ("ACL", "LIST"), ("SHUTDOWN",)):
        assert refused(prod, *command).startswith("NOPERM"), command
    assert staging("GET", "staging:x") == "from-staging"
    # No Lua either (platform.environments.<env>.redis_scripting is off by default).
    for command in (("EVAL", "return 1", "0"), ("EVAL_RO", "return 1", "0"),
                    ("FUNCTION", "LIST"), ("SCRIPT", "LOAD", "return 1")):
        assert refused(prod, *command).startswith("NOPERM"), command

    user, _ = environment_user(rendered, "prod")
    assert refused(connect(), "AUTH", user, "not-the-password").startswith("WRONGPASS")


def test_memory_is_capped_at_maxmemory_by_evicting_keys(rendered, connect):
    """maxmemory read from its effect: no user may read the configuration itself.

    80 MiB written as the prod user into keys without a TTL: every write succeeds (an
    allkeys-* policy evicts them; noeviction or volatile-* would refuse with OOM), fewer than
    32 of the 1 MiB values are left, and the memory Redis holds stays at the cap of
    32 MiB = 33554432 bytes.
    """
    redis = rendered["prod"].settings.platform.redis
    maxmemory = redis.maxmemory_mb * MIB
    assert maxmemory == 33554432
    assert redis.eviction_policy.startswith("allkeys-")
    prod = connect(*environment_user(rendered, "prod"))
    value = b"x" * MIB
    keys = 80
    for index in range(keys):
        prod.send("SET", f"prod:fill:{index}", value)
    replies = [prod.reply() for _ in range(keys)]
    assert replies == ["OK"] * keys
    prod("SET", "prod:after", "1")  # a write first evicts what exceeds the cap

    stats = prod("MEMORY", "STATS")
    allocated = dict(zip(stats[::2], stats[1::2], strict=True))["total.allocated"]
    assert maxmemory * 0.85 < allocated <= maxmemory + MIB, allocated
    # Fewer than 32 of the 80 values are left (allocator overhead takes a share; which ones
    # is up to the sampled LRU).
    kept = prod("EXISTS", *[f"prod:fill:{index}" for index in range(keys)])
    assert 18 <= kept < maxmemory // MIB, kept
    # Not a least-frequently-used policy (OBJECT FREQ answers only under an LFU policy).
    assert "LFU" in refused(prod, "OBJECT", "FREQ", "prod:after")


def test_redis_reads_maxmemory_and_the_policy_from_the_rendered_file(rendered):
    """The exact values Redis parsed, from a second instance started from the same file.

    No rendered user may run CONFIG GET, so this inspection instance gets one extra user on
    its command line (test-only, read-only use). The instance whose ACLs the tests above
    check is started from the rendered file alone.
    """
    prod = rendered["prod"]
    redis = prod.settings.platform.redis
    with scratch_dir("redis-inspect", owner=SERVICE_USER, mode=0o700) as directory:
        port = free_port()
        config = prod.file("redis", "redis.conf")
        config = replace_exactly(config, "\ndir /data\n", f"\ndir {directory}\n")
        config = replace_exactly(config, "\nport 6379\n", f"\nport {port}\n")
        config = replace_exactly(config, "\nbind 0.0.0.0\n", "\nbind 127.0.0.1\n")
        (directory / "redis.conf").write_text(config)
        chown_tree(directory, SERVICE_USER)
        command = as_service_user(["redis-server", str(directory / "redis.conf"),
                                   "--user", "aiia-test-inspector", "on", ">inspect", "~*",
                                   "+@all"])
        with running("redis-server (inspection)", command, port=port,
                     log=directory / "redis.log"):
            inspector = RedisClient(port)
            try:
                assert inspector("AUTH", "aiia-test-inspector", "inspect") == "OK"
                shown = {}
                for name in ("maxmemory", "maxmemory-policy", "save", "appendonly"):
                    key, value = inspector("CONFIG", "GET", name)
                    shown[key] = value
            finally:
                inspector.close()
    assert shown == {"maxmemory": "33554432", "maxmemory-policy": redis.eviction_policy,
                     "save": "", "appendonly": "no"}
    assert int(shown["maxmemory"]) == redis.maxmemory_mb * MIB
