"""Fixtures of the fast tier (tests/unit, `make check`): no hosts, no lab, no Docker, and no
secrets file: tests that validate a whole inventory take the secrets from the environment."""

import pytest

from webstack.secret_loader import SECRETS


@pytest.fixture
def all_secrets(monkeypatch):
    """Every required secret set in the environment (which wins over secrets/<env>.env), so a
    test gives the same answer with or without the lab's generated secrets file."""
    for name in SECRETS:
        monkeypatch.setenv(name.upper(), "s3cret-for-tests")
