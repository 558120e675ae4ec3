"""The cache (Redis's protocol, Valkey by default): 50 MB shared by the environments, one ACL
user and key prefix each."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.host.connection import HostFile, HostFileArgs
from components.host.containers import healthcheck, service_container
from components.host.templates import render
from components.names import redis_user
from components.platform.context import PlatformContext
from components.settings.accounts import data_owner

REDIS_UID = data_owner("redis")
PORT = 6379


def cache_programs(image: str) -> tuple[str, str]:
    """The server and the client the cache image (`platform.images.redis`) runs: Valkey's
    image (`valkey/valkey`, whose entrypoint and CMD say valkey-server) has valkey-server and
    valkey-cli; Redis's (`redis`, a stack that keeps 7.2) has redis-server and redis-cli.
    Valkey's `make install` also links the redis-* names today (valkey src/Makefile,
    `USE_REDIS_SYMLINKS?=yes`), but that is a default a later release may drop, so the
    program never relies on it (tests/images/CONTRACT.md#the-cache-valkey-or-redis)."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    product = "valkey" if name == "valkey" else "redis"
    return f"{product}-server", f"{product}-cli"


@dataclass
class RedisArgs:
    context: PlatformContext
    image_id: pulumi.Input[str]
    data_volume: docker.Volume


class Redis(pulumi.ComponentResource):
    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:Redis", name, None, opts)
        context = args.context
        settings = context.platform.redis
        self.container_name = context.container_name("redis")
        self.port = PORT
        user = context.container_user(REDIS_UID)
        server, cli = cache_programs(context.platform.images.redis)
        environments = [env.name for env in context.platform.environments]
        scripting = {env.name: env.redis_scripting for env in context.platform.environments}
        passwords = context.platform.redis_passwords
        # The config holds only SHA-256 digests of the passwords (Redis ACL `#<hex>` rules).
        content = pulumi.Output.all(*[passwords[env] for env in environments]).apply(
            lambda values: render(
                "redis/redis.conf.j2",
                maxmemory_mb=settings.maxmemory_mb,
                eviction_policy=settings.eviction_policy,
                memory_mb=settings.memory_mb,
                users=[{"name": redis_user(env), "scripting": scripting[env],
                        "password_sha256": hashlib.sha256(value.encode()).hexdigest()}
                       for env, value in zip(environments, values, strict=True)],
            )
        )
        config = HostFile(
            f"{name}-config",
            HostFileArgs(
                connection=context.connection,
                path=context.host_path("redis", "redis.conf"),
                content=pulumi.Output.secret(content),
                mode="0600", owner=user,
                # No admin user exists to CONFIG SET / ACL LOAD with, on purpose; a change
                # (new environment, rotated password) restarts the cache, which only costs
                # a cold cache. The first install finds no container yet.
                on_change=(f"if docker inspect {self.container_name} >/dev/null 2>&1; then "
                           f"docker restart {self.container_name}; fi"),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.container = service_container(
            f"{name}-container",
            context.service_args(
                image=args.image_id,
                service="redis",
                memory_mb=settings.memory_mb,
                user=user,
                command=[server, "/usr/local/etc/redis/redis.conf"],
                healthcheck=healthcheck(["CMD", cli, "ping"]),
                volumes=[
                    docker.ContainerVolumeArgs(host_path=context.host_path("redis"),
                                               container_path="/usr/local/etc/redis",
                                               read_only=True),
                    docker.ContainerVolumeArgs(volume_name=args.data_volume.name,
                                               container_path="/data"),
                ],
                stop_grace_seconds=10,
                read_only=True,  # it writes /data (its volume) and nothing else
            ),
            context.child(self, depends_on=[config]),
        )
        self.register_outputs({"container_name": self.container_name})
