"""What the etcd tests share: the members' /etc/default/etcd rendered by pyinfra's own template
engine from the real settings, read back as the environment etcd gets from systemd."""

from pyinfra.api.util import get_template

from tests.unit import stacks
from webstack import ROOT, etcd
from webstack.settings import Stack

TEMPLATE = "templates/etcd/etcd.default.j2"


def stack_with_etcd(**member_data) -> Stack:
    """The unit stack (etcd on lb-01, lb-02, monitor-01); `member_data` maps a member's name to
    settings given to it as host data, as an inventory would."""
    ns = stacks.namespace()
    ns["etcd"] = [(name, {**data, **member_data.get(name, {})}) for name, data in ns["etcd"]]
    return stacks.build(ns)


def render(stack: Stack, me: etcd.Member, cluster: list[etcd.Member], state: str,
           pki_dir: str = etcd.MEMBER_PKI) -> str:
    context = etcd.environment(stack.host(me.name), me, cluster, state, pki_dir)
    return get_template(str(ROOT / TEMPLATE)).render(**context)


def parse(text: str) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (no quoting is used)."""
    pairs = (line.split("=", 1) for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}
