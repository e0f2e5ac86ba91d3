"""The etcd cluster the database agents use (issue #15): its members, their URLs, where
their certificates live, and the environment Debian's etcd unit reads.

Shared by tasks/etcd.py, the database hosts' client side and the tests, so the paths and URLs
are written down once. See docs/etcd.md.
"""

from dataclasses import dataclass

from webstack.settings import Host, Stack

ENV_FILE = "/etc/default/etcd"  # Debian's etcd.service: EnvironmentFile=-/etc/default/%p
# Debian's package starts etcd with its defaults on install, and that first start bootstraps a
# one-member cluster in this directory; ours must live elsewhere (settings refuse this path).
PACKAGE_DATA_DIR = "/var/lib/etcd/default"
# A member's certificate, key and the CA; readable by the etcd user (the unit's User=etcd).
MEMBER_PKI = "/etc/etcd/pki"
# The database agent's client certificate on each database host: root only.
CLIENT_PKI = "/etc/ha-webstack/etcd"


@dataclass(frozen=True)
class Member:
    name: str
    address: str
    client_port: int
    peer_port: int

    @property
    def client_url(self) -> str:
        return f"https://{self.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.address}:{self.peer_port}"


def members(stack: Stack) -> list[Member]:
    """The etcd group's hosts, in inventory order, with the ports their settings give."""
    return [Member(h.name, h.address, h.etcd_client_port, h.etcd_peer_port)
            for h in stack.group("etcd")]


def pki_paths(pki_dir: str) -> dict[str, str]:
    """Where the CA, the certificate and the key go in a PKI directory."""
    return {"ca": f"{pki_dir}/ca.crt", "cert": f"{pki_dir}/host.crt",
            "key": f"{pki_dir}/host.key"}


def environment(s: Host, me: Member, cluster: list[Member], state: str,
                pki_dir: str = MEMBER_PKI) -> dict:
    """The template context of templates/etcd/etcd.default.j2 for member `me`.

    `state` is ETCD_INITIAL_CLUSTER_STATE: "new" only while the cluster is being created;
    etcd reads it (and the other INITIAL_ values) only when its data directory is empty."""
    if state not in ("new", "existing"):
        raise ValueError(f"initial cluster state {state!r}: 'new' or 'existing'")
    return {"s": s, "me": me, "state": state, "pki": pki_paths(pki_dir),
            "initial_cluster": ",".join(f"{m.name}={m.peer_url}" for m in cluster)}


def endpoints(stack: Stack) -> str:
    """The members' client URLs, comma-separated, as etcdctl's --endpoints takes them."""
    return ",".join(m.client_url for m in members(stack))


def initial_state(has_data: dict[str, bool | None]) -> str:
    """ETCD_INITIAL_CLUSTER_STATE for every member, from whether each member has a data
    directory (None: its host did not answer).

    "new" only when every member answered and none has data: the cluster is being created, by
    all members at once. "existing" once any member has data: a restarted member ignores it, an
    added one (etcdctl member add) joins. Undecidable otherwise: a member could create a
    second cluster or fail to join, so the deploy stops (ValueError)."""
    if any(has_data.values()):
        return "existing"
    if all(v is False for v in has_data.values()):
        return "new"
    missing = ", ".join(name for name, v in has_data.items() if v is None)
    raise ValueError(
        f"etcd: cannot tell whether the cluster exists: {missing} did not answer and no member "
        "that did has data. Create the cluster with every member of the etcd group reachable "
        "(no --limit), see docs/etcd.md")
