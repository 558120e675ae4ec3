"""The stack files make init reads and writes: the platform's and those of the stacks that
read it, as text (each change is made to the text, scripts/stack_file.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.stack_file import DeliveryError, config_of, get_value, stack_configs


@dataclass
class Stacks:
    """The platform's stack file and those of the stacks that read it, as text."""

    directory: Path
    platform: str
    readers: list[str]
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [self.platform, *self.readers]

    def config(self, stack: str) -> dict[str, Any]:
        return config_of(self.texts[stack], f"Pulumi.{stack}.yaml")

    def path(self, stack: str) -> Path:
        return self.directory / f"Pulumi.{stack}.yaml"


def _owns_platform(config: dict[str, Any]) -> bool:
    return str((config.get("aiia:platform") or {}).get("owner", True)).lower() != "false"


def load_stacks(directory: Path, stack: str) -> Stacks:
    configs = stack_configs(directory)
    if stack not in configs:
        raise DeliveryError(f"there is no Pulumi.{stack}.yaml here ({directory})")
    config = configs[stack]
    if (config.get("aiia:host") or {}).get("kind", "ssh") == "local":
        raise DeliveryError(f"{stack} runs on this machine: `make local` sets it up")
    if not _owns_platform(config):
        owner = str(config.get("aiia:platform_stack", "")).split("/")[-1] or "prod"
        raise DeliveryError(f"{stack} reads its platform from another stack: `make init "
                            f"STACK={owner}` sets up that stack and {stack} together")
    readers = [name for name, other in configs.items() if not _owns_platform(other)
               and str(other.get("aiia:platform_stack", "")).split("/")[-1] == stack]
    return Stacks(directory, stack, readers,
                  {name: (directory / f"Pulumi.{name}.yaml").read_text()
                   for name in [stack, *readers]})


def value_or_none(config: dict[str, Any], dotted: str) -> Any:
    try:
        return get_value(config, dotted)
    except DeliveryError:
        return None


def environments(stacks: Stacks) -> list[str]:
    """The environments the platform serves (platform.environments)."""
    return list((stacks.config(stacks.platform).get("aiia:platform") or {})
                .get("environments") or {})
