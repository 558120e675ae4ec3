"""Test scaffolding: a committed stack file's settings, one value changed, parsed without
Pulumi.

The settings tests (tests/unit/settings/) and the program tests that need a parsed value
change the stack file as a plain dict (`change(raw)`, keys without the `aiia:` namespace)
and read what `parse_settings` makes of it: the settings, or every problem it reports.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from components.settings import ConfigError, Settings, parse_settings
from tests.harness.program import made_up_secrets, stack_config

Change = Callable[[dict], object]


def raw_config(stack: str, pin_test_identity: bool = True) -> dict:
    """The committed stack file as the program's loader sees it (namespace stripped)."""
    return {key.split(":", 1)[1]: value
            for key, value in stack_config(stack, pin_test_identity).items()}


def secrets_of(stack: str):
    values = {key.split(":", 1)[1]: value
              for key, value in made_up_secrets(stack_config(stack)).items()}
    return values.get


def parse(stack: str, change: Change | None = None, secrets=None,
          pin_test_identity: bool = True) -> Settings:
    raw = copy.deepcopy(raw_config(stack, pin_test_identity))
    if change:
        change(raw)
    return parse_settings(stack, raw, secrets or secrets_of(stack))


def problems(stack: str, change: Change | None = None, secrets=None,
             pin_test_identity: bool = True) -> str:
    with pytest.raises(ConfigError) as error:
        parse(stack, change, secrets, pin_test_identity)
    return str(error.value)


def problems_of(change: Change, stack: str = "prod", pin: bool = True) -> str:
    """`problems`, the change first; `pin=False`: without the made-up VPS identity."""
    return problems(stack, change, pin_test_identity=pin)


def with_backup(**values) -> Change:
    """The stack file's backup settings with `values` changed (the test operator key that
    tests/harness/program.py pins stays unless `recipients` is given)."""
    def change(raw):
        raw["platform"]["backup"] = {**raw["platform"].get("backup", {}), **values}
    return change
