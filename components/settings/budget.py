"""The host's memory budget: what every service may use, steady and during a release.

steady = OS reserve + every long-running container's limit (+ the dashboard service)
peak   = steady + one extra app container per environment (old and new side by side
         during a release) and its processes' reservation a second time + the largest
         transient job (a certbot renewal, the backup, the restore drill's migrate check,
         the nightly integrity check); cron and systemd timers start them at different times

steady must fit the host's RAM; peak must fit RAM + swap. Both are computed from the
same limits the containers are given, so the check cannot drift from what runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.settings.host import HostSettings
from components.settings.platform import PlatformSettings


@dataclass(frozen=True)
class MemoryShare:
    service: str
    memory_mb: int
    config_key: str


@dataclass(frozen=True)
class MemoryBudget:
    host_memory_mb: int
    host_swap_mb: int
    steady: tuple[MemoryShare, ...]
    release_extra: tuple[MemoryShare, ...]
    transient: tuple[MemoryShare, ...]

    @property
    def steady_mb(self) -> int:
        return sum(share.memory_mb for share in self.steady)

    @property
    def peak_mb(self) -> int:
        largest_transient = max((share.memory_mb for share in self.transient), default=0)
        return self.steady_mb + sum(s.memory_mb for s in self.release_extra) + largest_transient

    def table(self) -> str:
        lines = [f"{share.service:<28} {share.memory_mb:>5} MB  ({share.config_key})"
                 for share in self.steady]
        lines.append(f"{'steady total':<28} {self.steady_mb:>5} MB  "
                     f"(host.memory_mb={self.host_memory_mb})")
        lines += [f"{'+ ' + share.service:<28} {share.memory_mb:>5} MB  ({share.config_key})"
                  for share in self.release_extra]
        if self.transient:
            largest = max(self.transient, key=lambda share: share.memory_mb)
            lines.append(f"{'+ ' + largest.service:<28} {largest.memory_mb:>5} MB  "
                         f"({largest.config_key})")
        lines.append(f"{'peak during a release':<28} {self.peak_mb:>5} MB  "
                     f"(host.memory_mb + host.swap_mb = {self.host_memory_mb + self.host_swap_mb})")
        return "\n".join(lines)

    def problems(self) -> list[str]:
        problems = []
        if self.steady_mb > self.host_memory_mb:
            problems.append(
                f"memory budget: steady use {self.steady_mb} MB exceeds aiia:host.memory_mb="
                f"{self.host_memory_mb}; lower a service's memory_mb or raise host.memory_mb. "
                f"Shares:\n{self.table()}"
            )
        if self.peak_mb > self.host_memory_mb + self.host_swap_mb:
            problems.append(
                f"memory budget: peak during a release {self.peak_mb} MB exceeds "
                f"aiia:host.memory_mb + aiia:host.swap_mb = "
                f"{self.host_memory_mb + self.host_swap_mb}; raise host.swap_mb or lower an "
                f"app_memory_mb. Shares:\n{self.table()}"
            )
        return problems


def memory_budget(host: HostSettings, platform: PlatformSettings) -> MemoryBudget:
    """The budget of a host and the platform on it (only the stack that owns the platform
    has one)."""
    key = "aiia:platform"
    steady = [
        MemoryShare("OS and Docker reserve", host.os_reserve_mb,
                    "aiia:host.os_reserve_mb"),
        MemoryShare("postgres", platform.postgres.memory_mb, f"{key}.postgres.memory_mb"),
        MemoryShare("pgbouncer", platform.pgbouncer.memory_mb, f"{key}.pgbouncer.memory_mb"),
        MemoryShare("redis", platform.redis.memory_mb, f"{key}.redis.memory_mb"),
        MemoryShare("nginx", platform.nginx.memory_mb, f"{key}.nginx.memory_mb"),
        MemoryShare("dashboard", platform.dashboard.memory_mb, f"{key}.dashboard.memory_mb"),
    ]
    apps = [MemoryShare(f"app {env.name}", env.app_memory_mb,
                        f"{key}.environments.{env.name}.app_memory_mb")
            for env in platform.environments]
    # An environment's processes (workers, beat) run beside its web container, and a
    # release starts its new ones beside the old ones too.
    apps += [MemoryShare(f"processes {env.name}", env.processes_memory_mb,
                         f"{key}.environments.{env.name}.processes_memory_mb")
             for env in platform.environments if env.processes_memory_mb]
    release_extra = [MemoryShare(f"new release of {share.service}", share.memory_mb,
                                 share.config_key) for share in apps]
    transient = [MemoryShare("certbot renewal", platform.certbot.memory_mb,
                             f"{key}.certbot.memory_mb"),
                 # pg_dump | gpg in a container of its own (components/platform/backup.py); the
                 # server side of the dump is a backend inside postgres' own limit.
                 MemoryShare("backup / restore drill", platform.backup.memory_mb,
                             f"{key}.backup.memory_mb")]
    # The drill's `manage.py migrate --check` runs the environment's app image with its
    # app memory limit, after the restore container has exited.
    transient += [MemoryShare(f"restore drill check of {env.name}", env.app_memory_mb,
                              f"{key}.environments.{env.name}.app_memory_mb")
                  for env in platform.environments]
    if host.provision is not None:
        # AIDE's nightly run in its unit's memory cap (components/host/integrity.py).
        transient.append(MemoryShare("integrity check (AIDE)",
                                     host.provision.integrity_check_memory_mb,
                                     "aiia:host.provision.integrity_check_memory_mb"))
    collector = MemoryShare("dashboard collector", platform.dashboard.collector_memory_mb,
                            f"{key}.dashboard.collector_memory_mb")
    proxy = MemoryShare("dashboard Docker proxy", platform.dashboard.docker_proxy_memory_mb,
                        f"{key}.dashboard.docker_proxy_memory_mb")
    if host.kind == "local":
        # Resident containers on a developer's machine: the collector and its proxy.
        steady += [collector, proxy]
    else:
        # A systemd timer run for a second a minute, and the proxy it starts through its
        # socket, which exits a few seconds after the run: one transient job of the two.
        transient.append(MemoryShare(
            "dashboard collector + proxy", collector.memory_mb + proxy.memory_mb,
            f"{collector.config_key} + docker_proxy_memory_mb"))
    if platform.alerts is not None and host.kind != "local":
        # Its own one-shot half a minute after the collector's (locally: inside its loop).
        transient.append(MemoryShare("dashboard alert notifier",
                                     platform.dashboard.notifier_memory_mb,
                                     f"{key}.dashboard.notifier_memory_mb"))
    return MemoryBudget(
        host_memory_mb=host.memory_mb,
        host_swap_mb=host.swap_mb,
        steady=tuple(steady + apps),
        release_extra=tuple(release_extra),
        transient=tuple(transient),
    )
