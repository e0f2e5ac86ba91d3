"""Secrets: from the environment, else from the ignored file secrets/<env>.env.

Each secret is needed by one inventory group; a deploy needs exactly the secrets of the groups
that have hosts. The lab generates its own (lab/lab.py); an operations team provides
secrets/prod.env or exports the variables (e.g. from their vault) before running pyinfra.
"""

import os
from pathlib import Path

from webstack import ROOT

# secret name -> the inventory group whose hosts need it
SECRETS = {
    "mysql_app_password": "databases",
    "mysql_replication_password": "databases",
    "mysql_monitor_password": "databases",
    "mysql_seed_password": "databases",
    "haproxy_stats_password": "loadbalancers",
    "keepalived_auth_pass": "loadbalancers",
}
# Used when set, never required: without it the stack's own CA issues the certificate.
OPTIONAL_SECRETS = {
    "haproxy_tls_pem_file": "loadbalancers",  # path to a PEM with certificate chain and key
}


def secrets_file(env: str) -> Path:
    return ROOT / "secrets" / f"{env}.env"


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip("'\"")
    return values


def load(env: str) -> dict[str, str]:
    """Every known secret that is set, by its lower-case name; the environment wins."""
    from_file = _read_env_file(secrets_file(env))
    found = {}
    for name in [*SECRETS, *OPTIONAL_SECRETS]:
        value = os.environ.get(name.upper()) or from_file.get(name.upper())
        if value:
            found[name] = value
    return found


def missing(env: str, groups_with_hosts: set[str]) -> list[str]:
    have = load(env)
    return [n for n, group in SECRETS.items() if group in groups_with_hosts and n not in have]
