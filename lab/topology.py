"""The lab's hosts and addresses: one definition shared by the lab script and inventories/lab.py.

The subnet, the number of web servers and the Debian release are the lab's knobs (environment
variables LAB_SUBNET, LAB_WEB_SERVERS and LAB_DEBIAN, read by `make lab`). LAB_DEBIAN is trixie
(Debian 13, the default) or bookworm (Debian 12); LAB_DEBIAN_HOSTS="web-02=bookworm,db-02=bookworm"
gives single hosts another release, for a mixed lab (a rolling upgrade half done). `lab/lab.py up`
records the values it built the lab with in lab/.state/topology.json, so later runs of the
inventory see the lab that exists.
LAB_DB_PRIMARY (db-01 or db-02) is the inventory's choice of database primary, read on every run:
after a failover (ops/promote_replica.py) it is the lab's "update the inventory" step.
"""

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

NETWORK_NAME = "ha-webstack-lab"
DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_WEB_SERVERS = 2
MAX_WEB_SERVERS = 9  # web-01..web-09 live at .21-.29
DATABASES = ("db-01", "db-02")
# The Debian releases a lab host can run; the deploy tells them apart by facts, not by this list.
DEBIAN_RELEASES = ("trixie", "bookworm")
DEFAULT_DEBIAN = "trixie"
# A topology.json written before the lab knew releases describes a bookworm lab.
RECORDED_DEBIAN_BEFORE_RELEASES = "bookworm"
STATE_DIR = Path(__file__).resolve().parent / ".state"
TOPOLOGY_FILE = STATE_DIR / "topology.json"


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    groups: tuple[str, ...]  # inventory groups; empty for the unmanaged client
    debian: str = DEFAULT_DEBIAN  # the Debian release (codename) the host's image is built from


@dataclass(frozen=True)
class Topology:
    subnet: str
    web_servers: int
    db_primary: str = DATABASES[0]
    debian: str = DEFAULT_DEBIAN
    # Hosts on another release than `debian`: ((name, release), ...), sorted by name.
    debian_hosts: tuple[tuple[str, str], ...] = ()

    def _addr(self, offset: int) -> str:
        return str(ipaddress.ip_network(self.subnet)[offset])

    @property
    def gateway(self) -> str:
        return self._addr(1)

    @property
    def floating_ip(self) -> str:
        return self._addr(10)

    def release_of(self, name: str) -> str:
        return dict(self.debian_hosts).get(name, self.debian)

    @property
    def releases(self) -> list[str]:
        """The Debian releases this lab's hosts run (an image is needed for each)."""
        return sorted({h.debian for h in self.hosts})

    @property
    def hosts(self) -> list[LabHost]:
        hosts = [
            LabHost("lb-01", self._addr(11), ("loadbalancers", "etcd")),
            LabHost("lb-02", self._addr(12), ("loadbalancers", "etcd")),
        ]
        hosts += [
            LabHost(f"web-{i:02d}", self._addr(20 + i), ("webservers",))
            for i in range(1, self.web_servers + 1)
        ]
        hosts += [
            LabHost(name, self._addr(31 + i), ("databases", "db_primary" if name == self.db_primary
                                               else "db_replicas"))
            for i, name in enumerate(DATABASES)
        ]
        hosts += [
            # etcd: three members outside the database tier (docs/etcd.md).
            LabHost("monitor-01", self._addr(41), ("monitoring", "etcd")),
            LabHost("client", self._addr(100), ()),
        ]
        return [LabHost(h.name, h.address, h.groups, self.release_of(h.name)) for h in hosts]

    @property
    def managed_hosts(self) -> list[LabHost]:
        return [h for h in self.hosts if h.groups]

    def host(self, name: str) -> LabHost:
        return next(h for h in self.hosts if h.name == name)


def from_env() -> Topology:
    """The topology asked for by LAB_SUBNET / LAB_WEB_SERVERS / LAB_DEBIAN / LAB_DEBIAN_HOSTS
    (used by `make lab`)."""
    subnet = os.environ.get("LAB_SUBNET", DEFAULT_SUBNET)
    net = ipaddress.ip_network(subnet)  # raises ValueError naming the bad value
    if net.prefixlen > 24:
        raise ValueError(f"LAB_SUBNET={subnet}: the lab needs at least a /24")
    count = int(os.environ.get("LAB_WEB_SERVERS", DEFAULT_WEB_SERVERS))
    if not 1 <= count <= MAX_WEB_SERVERS:
        raise ValueError(f"LAB_WEB_SERVERS={count}: choose 1..{MAX_WEB_SERVERS}")
    debian = _release("LAB_DEBIAN", os.environ.get("LAB_DEBIAN", DEFAULT_DEBIAN))
    base = Topology(str(net), count, db_primary(), debian)
    return Topology(str(net), count, db_primary(), debian,
                    debian_hosts(os.environ.get("LAB_DEBIAN_HOSTS", ""), base))


def _release(knob: str, value: str) -> str:
    if value not in DEBIAN_RELEASES:
        raise ValueError(f"{knob}={value}: choose one of {', '.join(DEBIAN_RELEASES)}")
    return value


def debian_hosts(spec: str, topology: Topology) -> tuple[tuple[str, str], ...]:
    """LAB_DEBIAN_HOSTS="web-02=bookworm,db-02=bookworm" -> (("db-02", "bookworm"), ...).

    Only hosts whose release differs from the lab's are kept, so the value is canonical."""
    names = {h.name for h in topology.hosts}
    chosen = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, release = (x.strip() for x in item.partition("="))
        if not sep or name not in names:
            raise ValueError(f"LAB_DEBIAN_HOSTS={spec}: write host=release, comma-separated, "
                             f"hosts among {', '.join(sorted(names))}")
        chosen[name] = _release(f"LAB_DEBIAN_HOSTS ({name})", release)
    return tuple(sorted((n, r) for n, r in chosen.items() if r != topology.debian))


def db_primary() -> str:
    name = os.environ.get("LAB_DB_PRIMARY", DATABASES[0])
    if name not in DATABASES:
        raise ValueError(f"LAB_DB_PRIMARY={name}: choose one of {', '.join(DATABASES)}")
    return name


def current() -> Topology:
    """The lab as last built by `lab/lab.py up`, else the one the environment asks for."""
    if TOPOLOGY_FILE.exists():
        data = json.loads(TOPOLOGY_FILE.read_text())
        return Topology(data["subnet"], data["web_servers"], db_primary(),
                        data.get("debian", RECORDED_DEBIAN_BEFORE_RELEASES),
                        tuple(sorted(data.get("debian_hosts", {}).items())))
    return from_env()


def save(topology: Topology) -> None:
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    TOPOLOGY_FILE.write_text(json.dumps({
        "subnet": topology.subnet, "web_servers": topology.web_servers,
        "debian": topology.debian, "debian_hosts": dict(topology.debian_hosts),
    }) + "\n")
