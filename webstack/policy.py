"""The firewall policy as data: which hosts accept which port from whom.

One row per (role, service). Each host's ufw rules are computed from these rows and the
inventory (tasks/firewall.py applies them), so adding web-03 to the inventory opens exactly what
web-03 needs elsewhere. Sources are inventory groups, or:
  admin_networks  the networks in the setting of that name
  public          anywhere
A group source never includes the target host itself (a host reaches itself over loopback).
Ports are numbers or the name of the setting that holds the number.
"""

import shlex
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
    when: tuple[str, object] = ()  # (setting, value): only on target hosts where it holds


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
    # etcd (docs/etcd.md): clients are the database agents; monitoring scrapes the metrics
    # port; the peer port is for the other members only.
    Row("etcd", "etcd-client", ("etcd_client_port",), "tcp", ("databases",)),
    Row("etcd", "etcd-metrics", ("etcd_metrics_port",), "tcp", ("monitoring",)),
    Row("etcd", "etcd-peer", ("etcd_peer_port",), "tcp", ("etcd",)),
    # The database agents' HTTP (agent/http.py): health for the routing, metrics for
    # monitoring. Only where they run (mysql_failover = "automatic").
    Row("databases", "db-agent", ("db_agent_port",), "tcp", ("webservers", "monitoring"),
        when=("mysql_failover", "automatic")),
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
    # An application-profile rule (`ufw allow OpenSSH`, `... from X app NAME`): the profile's
    # name on the destination (app) or source (source_app) side. proto and port are then what
    # the profile expanded to when the rule was added. The deploy's own rules never use one.
    app: str = ""
    source_app: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        return (self.action, self.proto, self.port, self.source, self.app, self.source_app)

    def ufw_spec(self) -> str:
        """The rule as ufw's command line takes it: `allow from X to any port P proto tcp`, or
        for an application rule `allow from X to any app NAME` (ufw takes no proto with an app:
        the profile decides it; a name with spaces is shell-quoted)."""
        if self.app or self.source_app:
            source = f"from {self.source}"
            if self.source_app:
                source += f" app {shlex.quote(self.source_app)}"
            target = "to any"
            if self.app:
                target += f" app {shlex.quote(self.app)}"
            elif self.port != "any":
                target += f" port {self.port}"
            return f"{self.action} {source} {target}"
        port = f" port {self.port}" if self.port != "any" else ""
        return f"{self.action} from {self.source} to any{port} proto {self.proto}"

    def describe(self) -> str:
        """What the rule opens, for operation names: `tcp/22 from any`, `app OpenSSH from any`."""
        what = f"app {self.app}" if self.app else f"{self.proto}/{self.port}"
        source = f"{self.source} app {self.source_app}" if self.source_app else self.source
        return f"{what} from {source}"


def stale_rule_removals(held: list[Rule], wanted: list[Rule]) -> list[tuple[str, str]]:
    """(operation name, ufw command) deleting each rule held but not wanted (tasks/firewall.py).

    One command per ufw rule: an application rule whose profile spans several protocols or
    address families is several entries in ufw's rules files, and one `ufw delete` removes all.
    """
    wanted_keys = {r.key for r in wanted}
    removals: dict[str, str] = {}
    for rule in sorted({r.key: r for r in held}.values(), key=lambda r: r.key):
        if rule.key not in wanted_keys:
            command = f"ufw delete {rule.ufw_spec()}"
            removals.setdefault(
                command, f"ufw: remove stale rule {rule.comment or ''} ({rule.describe()})")
    return [(name, command) for command, name in removals.items()]


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
        if row.when and getattr(target, row.when[0]) != row.when[1]:
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
        when = f" (where `{row.when[0]}` is {row.when[1]!r})" if row.when else ""
        lines.append(f"| `{row.role}`{when} | {row.service} | {ports} | {row.proto}{limit} | "
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
