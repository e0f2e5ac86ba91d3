"""The validated Stack for the inventory pyinfra is running, built once per run."""

from functools import cache

from pyinfra import host, inventory

from webstack.settings import SettingsError, Stack, from_pyinfra


@cache
def _stack_for(inventory_id: int) -> Stack:
    try:
        return from_pyinfra(inventory)
    except SettingsError as e:
        raise SystemExit(str(e)) from None


def stack() -> Stack:
    return _stack_for(id(inventory))


def me():
    """The Host (name, address, groups, settings) that pyinfra is currently deploying."""
    return stack().host(host.name)
