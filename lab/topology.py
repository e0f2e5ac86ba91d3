"""The lab's hosts and addresses: one definition shared by the lab script and inventories/lab.py.

The subnet and the number of web servers are the lab's two knobs (environment variables
LAB_SUBNET and LAB_WEB_SERVERS, read by `make lab`). `lab/lab.py up` records the values it built
the lab with in lab/.state/topology.json, so later runs of the inventory see the lab that exists.
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
STATE_DIR = Path(__file__).resolve().parent / ".state"
TOPOLOGY_FILE = STATE_DIR / "topology.json"


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    groups: tuple[str, ...]  # inventory groups; empty for the unmanaged client


@dataclass(frozen=True)
class Topology:
    subnet: str
    web_servers: int
    db_primary: str = DATABASES[0]

    def _addr(self, offset: int) -> str:
        return str(ipaddress.ip_network(self.subnet)[offset])

    @property
    def gateway(self) -> str:
        return self._addr(1)

    @property
    def floating_ip(self) -> str:
        return self._addr(10)

    @property
    def hosts(self) -> list[LabHost]:
        hosts = [
            LabHost("lb-01", self._addr(11), ("loadbalancers",)),
            LabHost("lb-02", self._addr(12), ("loadbalancers",)),
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
            LabHost("monitor-01", self._addr(41), ("monitoring",)),
            LabHost("client", self._addr(100), ()),
        ]
        return hosts

    @property
    def managed_hosts(self) -> list[LabHost]:
        return [h for h in self.hosts if h.groups]

    def host(self, name: str) -> LabHost:
        return next(h for h in self.hosts if h.name == name)


def from_env() -> Topology:
    """The topology asked for by LAB_SUBNET / LAB_WEB_SERVERS (used by `make lab`)."""
    subnet = os.environ.get("LAB_SUBNET", DEFAULT_SUBNET)
    net = ipaddress.ip_network(subnet)  # raises ValueError naming the bad value
    if net.prefixlen > 24:
        raise ValueError(f"LAB_SUBNET={subnet}: the lab needs at least a /24")
    count = int(os.environ.get("LAB_WEB_SERVERS", DEFAULT_WEB_SERVERS))
    if not 1 <= count <= MAX_WEB_SERVERS:
        raise ValueError(f"LAB_WEB_SERVERS={count}: choose 1..{MAX_WEB_SERVERS}")
    return Topology(str(net), count, db_primary())


def db_primary() -> str:
    name = os.environ.get("LAB_DB_PRIMARY", DATABASES[0])
    if name not in DATABASES:
        raise ValueError(f"LAB_DB_PRIMARY={name}: choose one of {', '.join(DATABASES)}")
    return name


def current() -> Topology:
    """The lab as last built by `lab/lab.py up`, else the one the environment asks for."""
    if TOPOLOGY_FILE.exists():
        data = json.loads(TOPOLOGY_FILE.read_text())
        return Topology(data["subnet"], data["web_servers"], db_primary())
    return from_env()


def save(topology: Topology) -> None:
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    TOPOLOGY_FILE.write_text(
        json.dumps({"subnet": topology.subnet, "web_servers": topology.web_servers}) + "\n"
    )
