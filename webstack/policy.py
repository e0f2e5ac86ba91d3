"""The firewall policy as data: which hosts accept which port from whom.

One row per (role, service). Each host's ufw rules are computed from these rows and the
inventory (tasks/firewall.py applies them), so adding web-03 to the inventory opens exactly what
web-03 needs elsewhere. Sources are inventory groups, or:
  admin_networks  the networks in the setting of that name
  public          anywhere
A group source never includes the target host itself (a host reaches itself over loopback).
Ports are numbers or the name of the setting that holds the number.
"""

from dataclasses import dataclass
from ipaddress import ip_network

from webstack.settings import Host, Stack


@dataclass(frozen=True)
class Row:
    role: str                  # the group whose hosts get the rule; "all" for every host
    service: str               # what the port is for; becomes the rule's comment
    ports: tuple[int | str, ...]  # numbers or setting names; () for a portless protocol
    proto: str                 # tcp, udp, or an IP protocol such as vrrp
    sources: tuple[str, ...]
    limit: bool = False        # ufw "limit": rate-limit new connections (SSH)


POLICY: tuple[Row, ...] = (
    Row("all", "ssh", ("sshd_port",), "tcp", ("admin_networks",), limit=True),
    Row("loadbalancers", "https", (80, 443), "tcp", ("public",)),
    Row("loadbalancers", "haproxy-management", ("haproxy_stats_port",), "tcp",
        ("admin_networks", "monitoring")),
    Row("loadbalancers", "vrrp", (), "vrrp", ("loadbalancers",)),
    # monitoring: its mysqld exporters log in from there (tasks/monitoring.py).
    Row("databases", "mysql", ("mysql_port",), "tcp", ("webservers", "databases", "monitoring")),
    Row("all", "node-exporter", ("node_exporter_port",), "tcp", ("monitoring",)),
    Row("webservers", "nginx-exporter", ("nginx_exporter_port",), "tcp", ("monitoring",)),
    Row("monitoring", "prometheus", ("prometheus_port",), "tcp", ("admin_networks",)),
    Row("monitoring", "alertmanager", ("alertmanager_port",), "tcp", ("admin_networks",)),
    # Admins too, so an operator can check one web server directly, bypassing the balancers.
    Row("webservers", "http", ("nginx_port",), "tcp", ("loadbalancers", "admin_networks")),
)


@dataclass(frozen=True, order=True)
class Rule:
    """One ufw rule in the canonical form that also parses back out of /etc/ufw/user*.rules."""

    action: str   # allow | limit
    proto: str
    port: str     # "any" for portless protocols
    source: str   # an address, a CIDR, or "any"
    comment: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.action, self.proto, self.port, self.source)

    def ufw_spec(self) -> str:
        """The rule as ufw's command line takes it: `allow from X to any port P proto tcp`."""
        port = f" port {self.port}" if self.port != "any" else ""
        return f"{self.action} from {self.source} to any{port} proto {self.proto}"


def normalize_source(source: str) -> str:
    if source in ("any", "0.0.0.0/0", "::/0"):
        return "any"
    net = ip_network(source, strict=False)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _sources(stack: Stack, target: Host, source: str) -> list[str]:
    if source == "public":
        return ["any"]
    if source == "admin_networks":
        return [str(n) for n in target.admin_networks]
    return [h.address for h in stack.group(source) if h.name != target.name]


def _ports(target: Host, row: Row) -> list[str]:
    if not row.ports:
        return ["any"]
    return [str(getattr(target, p) if isinstance(p, str) else p) for p in row.ports]


def rules_for(stack: Stack, target: Host) -> list[Rule]:
    """Every rule the target host must have, in policy order (SSH first: never lock out)."""
    rules: dict[tuple, Rule] = {}
    for row in POLICY:
        if row.role != "all" and row.role not in target.groups:
            continue
        for source in row.sources:
            for address in _sources(stack, target, source):
                for port in _ports(target, row):
                    comment = f"{row.role}/{row.service} from {source}"
                    rule = Rule("limit" if row.limit else "allow", row.proto, port,
                                normalize_source(address), comment)
                    rules.setdefault(rule.key, rule)
    return list(rules.values())


def markdown_table() -> str:
    """The policy as the Markdown table in docs/firewall.md (regenerate: make docs)."""
    lines = ["| on hosts in | service | port | protocol | allowed from |",
             "|---|---|---|---|---|"]
    for row in POLICY:
        ports = ", ".join(f"`{p}`" if isinstance(p, str) else str(p) for p in row.ports) or "-"
        sources = ", ".join(f"`{s}`" for s in row.sources)
        limit = " (rate-limited)" if row.limit else ""
        lines.append(f"| `{row.role}` | {row.service} | {ports} | {row.proto}{limit} | "
                     f"{sources} |")
    return "\n".join(lines) + "\n"


DOC_HEADER = """# Firewall policy

Generated from `webstack/policy.py` by `make docs`; do not edit by hand (a test checks it).

Every managed host runs ufw: default deny incoming, allow outgoing, deny routed, logging low.
Its rules are computed from the rows below and the inventory; rules not computed are removed.
A port in backticks is the setting that holds it. Sources are inventory groups (the target
itself excluded), `admin_networks` (setting), or `public` (anywhere).

"""


if __name__ == "__main__":
    print(DOC_HEADER + markdown_table(), end="")
