"""Fixtures of the fast tier (tests/unit, `make check`): no hosts, no lab, no Docker, and no
secrets file: tests that validate a whole inventory take the secrets from the environment."""

import pytest

from tests.unit.stacks import secrets_in_environment


@pytest.fixture
def all_secrets(monkeypatch):
    """Every required secret in the environment, for one test (stacks.secrets_in_environment)."""
    secrets_in_environment(monkeypatch)
