"""The one typed settings module: every setting of the stack, validated before a host is touched.

Values come from layers, later ones winning, exactly as pyinfra merges them (see
hosts_from_inventory): the inventory's data for `all` < group_data/all.py < each of the host's
groups in the order the inventory declares them (the inventory's data for that group <
group_data/<group>.py) < the host's data in the inventory file. Each group's settings are a
pydantic model below; group_data/ holds the documented default of every knob.

Validation runs twice with the same models:
- when pyinfra loads the inventory (`check_inventory`, called at the end of each inventory file),
  before pyinfra connects anywhere, so bad input never reaches a host;
- in deploy.py (`from_pyinfra`), on the data pyinfra actually merged (covers `--data` overrides).
Tasks read settings only through `Stack`/`Host` objects built here.
"""

import difflib
import ipaddress
import sys
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from webstack import ROOT
from webstack import secret_loader as secrets

GROUP_DATA_DIR = ROOT / "group_data"
# The role groups, in the order their data is merged. Every inventory has the first six; `etcd`
# may be empty until the database agent uses it (issue #15).
ROLE_GROUPS = ("loadbalancers", "webservers", "databases", "db_primary", "db_replicas",
               "monitoring", "etcd")

Port = Annotated[int, Field(ge=1, le=65535)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommonSettings(_Settings):
    """group_data/all.py: every managed host."""

    stack_env: str = Field(description="environment name; secrets come from secrets/<env>.env")
    stack_network: IPv4Network = Field(
        description="the network the stack's hosts share, in CIDR notation (e.g. 10.213.0.0/24)")
    admin_networks: list[IPv4Network] = Field(
        min_length=1,
        description="networks allowed to reach SSH and management UIs, in CIDR notation; "
                    "at least one, e.g. ['192.0.2.0/24']")
    sshd_port: Port = Field(description="port sshd listens on (1-65535)")
    sshd_rate_limit: bool = Field(description="rate-limit new SSH connections with ufw (bool)")
    common_packages: list[str] = Field(description="Debian packages every host gets")
    apt_cache_valid_seconds: int = Field(ge=0, description="apt cache age before an update")
    unattended_upgrades: bool = Field(description="install security updates daily (bool)")
    ufw_logging: Literal["off", "low", "medium", "high", "full"] = Field(
        description="ufw log level: off, low, medium, high or full")
    debian_upgrade_host: str = Field(
        description="ops/upgrade_debian.py only: the one host to upgrade, e.g. "
                    "--data debian_upgrade_host=web-01")
    debian_upgrade_to: Literal["trixie"] = Field(
        description="ops/upgrade_debian.py: the Debian release to upgrade to (the next one: "
                    "Debian upgrades one release at a time)")
    debian_reboot_timeout_s: int = Field(
        ge=30, description="ops/upgrade_debian.py: seconds a host has to come back after the "
                           "reboot that ends its upgrade")


class HAProxySettings(_Settings):
    """group_data/loadbalancers.py: HAProxy on the load balancers."""

    haproxy_balance: Literal["roundrobin", "leastconn", "source", "first"] = Field(
        description="load-balancing algorithm: roundrobin, leastconn, source or first")
    haproxy_server_weights: dict[str, Annotated[int, Field(ge=0, le=256)]] = Field(
        description="per web server weight (0-256), e.g. {'web-01': 200}; others get 100")
    haproxy_sticky_sessions: bool = Field(
        description="pin each client to one server with a cookie (hides round-robin)")
    haproxy_tls_names: list[str] = Field(
        description="DNS names on the certificate the stack CA issues (the floating IP always is)")
    haproxy_hsts_max_age: int = Field(ge=0, description="Strict-Transport-Security max-age (s)")
    haproxy_stats_port: Port = Field(description="management port: stats page and /metrics")
    haproxy_stats_user: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="stats login")
    haproxy_check_interval_ms: int = Field(ge=100, description="health check interval (ms)")
    haproxy_check_fall: int = Field(ge=1, description="failed checks before a server is down")
    haproxy_check_rise: int = Field(ge=1, description="passed checks before a server is up")
    haproxy_check_host: str = Field(description="Host header of the health checks")
    haproxy_retries: int = Field(ge=0, le=10, description="retries of a failed request")
    haproxy_timeout_connect_ms: int = Field(ge=100, description="connect timeout to a server")
    haproxy_timeout_client_s: int = Field(ge=1, description="client inactivity timeout (s)")
    haproxy_timeout_server_s: int = Field(ge=1, description="server inactivity timeout (s)")
    haproxy_hard_stop_after: str = Field(
        pattern=r"^[0-9]+(ms|s|m|h)$", description="how long old workers live after a reload")
    haproxy_maxconn: int = Field(ge=1, description="global connection limit")
    haproxy_extra_global: str = Field(description="raw lines for the global section ('')")
    haproxy_drain_timeout_s: int = Field(
        ge=0, description="ops/rolling_app_deploy.py: seconds to wait for a drained server's "
                          "sessions to end before deploying to it anyway")


class KeepalivedSettings(_Settings):
    """group_data/loadbalancers.py: keepalived moving the floating IP between the pair."""

    keepalived_floating_ip: IPv4Address = Field(
        description="the stack's public address, inside stack_network and no host's address")
    keepalived_interface: str = Field(description="network interface carrying the floating IP")
    keepalived_router_id: int = Field(ge=1, le=255, description="VRRP router id, unique per LAN")
    keepalived_unicast: bool = Field(
        description="send VRRP to the peer's address instead of multicast (cloud networks)")
    keepalived_handover_drain_s: int = Field(
        ge=1, le=30, description="a planned move of the floating IP (ops/upgrade_debian.py): "
                                 "seconds the holder waits for its open connections to finish")


class NginxSettings(_Settings):
    """group_data/webservers.py: nginx in front of the app."""

    nginx_port: Port = Field(description="port the site listens on (the load balancers' target)")
    nginx_status_port: Port = Field(description="localhost-only port of stub_status")
    nginx_client_max_body_size: str = Field(
        pattern=r"^[0-9]+[kKmMgG]?$", description="largest request body, e.g. 1m or 512k")
    nginx_proxy_connect_timeout: int = Field(ge=1, description="seconds to connect to the app")
    nginx_proxy_read_timeout: int = Field(ge=1, description="seconds to wait for the app")
    nginx_keepalive_timeout: int = Field(ge=0, description="seconds an idle keep-alive lives")
    nginx_extra_config: str = Field(
        description="raw nginx directives added to the site's server block ('' for none)")


class AppSettings(_Settings):
    """group_data/webservers.py: the app nginx proxies to. Ours by default; yours plugs in here."""

    app_source: str = Field(
        description="a directory (relative to the repository or absolute) or a git URL")
    app_git_ref: str = Field(description="branch or tag to check out when app_source is git")
    app_packages: list[str] = Field(description="Debian packages the app needs to run")
    app_command: str = Field(
        description="the command serving the app, run in its directory; {port} is app_port")
    app_port: Port = Field(description="localhost port the app listens on")
    app_environment: dict[str, str] = Field(description="extra environment for the app")
    app_health_path: str = Field(pattern=r"^/", description="liveness path, e.g. /healthz")
    app_static_dir: str = Field(
        description="directory of static files inside the app, served by nginx ('' for none)")
    app_db_name: str = Field(pattern=r"^[A-Za-z0-9_]+$", description="the app's database name")
    app_schema_file: str = Field(
        description="SQL file in a directory app_source, applied on the primary when a table it "
                    "creates is missing ('' for none: the app migrates itself)")
    app_db_user: str = Field(pattern=r"^[A-Za-z0-9_]+$", description="the app's database user")
    app_replica_max_lag: float = Field(
        ge=0, description="seconds of replica lag beyond which reads go to the primary")
    app_write_retry_s: float = Field(
        ge=0, description="seconds the app retries a write the database refused unapplied (a "
                          "switchover's read-only moment, a refused connection); 0: never")
    app_health_timeout_s: int = Field(
        ge=1, description="ops/rolling_app_deploy.py: seconds a server has to answer its "
                          "health path after a deploy before the rollout stops")


class DbProxySettings(_Settings):
    """group_data/webservers.py: the local HAProxy that routes the app to the databases, where
    mysql_failover is automatic (tasks/db_proxy.py)."""

    db_proxy_write_port: Port = Field(
        description="port on 127.0.0.1 where the app's writes reach the primary")
    db_proxy_read_port: Port = Field(
        description="port on 127.0.0.1 where the app's reads reach a replica (or the primary)")
    db_proxy_check_interval_ms: int = Field(
        ge=100, le=10000, description="milliseconds between health checks against the "
                                      "database agents; two failed take a server out")


class MySQLSettings(_Settings):
    """group_data/databases.py: MariaDB primary and replicas."""

    mysql_port: Port = Field(description="port MariaDB listens on, on the host's own address")
    mysql_server_id: Annotated[int, Field(ge=1, le=4294967295)] | None = Field(
        description="replication server_id; None derives it from the host's IPv4 address")
    mysql_binlog_retention_days: int = Field(ge=1, description="days binary logs are kept")
    mysql_max_connections: int = Field(ge=10, description="max client connections")
    mysql_innodb_buffer_pool_size: str = Field(
        pattern=r"^[0-9]+[KMG]$", description="InnoDB buffer pool, e.g. 256M")
    mysql_replica_parallel_threads: int = Field(
        ge=0, le=64, description="threads a replica applies transactions with (0: one, the SQL "
                                 "thread; more keep up with a busy primary)")
    mysql_semi_sync: bool = Field(
        description="semi-synchronous replication (AFTER_SYNC): a commit waits for a replica")
    mysql_semi_sync_timeout_ms: int = Field(
        ge=1, description="how long a commit waits for a replica before going async")
    mysql_reseed_replicas: bool = Field(
        description="re-seed a replica whose replication is broken (destroys its copy); "
                    "meant for one explicit run: --data mysql_reseed_replicas=True")
    mysql_app_databases: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]] = Field(
        description="databases copied when a replica is seeded (the apps' data)")
    mysql_promote_target: str = Field(
        description="ops/promote_replica.py only: the replica to promote, e.g. "
                    "--data mysql_promote_target=db-02")
    mysql_failover_mode: Literal["planned", "unplanned"] = Field(
        description="ops/promote_replica.py only: planned (switchover, the primary is healthy) "
                    "or unplanned (the primary is dead: fence it, promote, repoint)")
    mysql_failover_wait_s: int = Field(
        ge=1, description="ops/promote_replica.py: seconds to wait for a replica to catch up")
    mysql_failover: Literal["manual", "automatic"] = Field(
        description="who moves the primary role: manual (a person runs ops/promote_replica.py "
                    "and updates the inventory) or automatic (the database agents, agent/, "
                    "hold a lease in etcd and fail over by themselves; needs the etcd group)")


class DbAgentSettings(_Settings):
    """group_data/databases.py: the database agent (agent/) where mysql_failover is automatic."""

    db_agent_port: Port = Field(
        description="port of the agent's HTTP health (/primary, /replica) and /metrics, on the "
                    "host's own address")
    db_agent_lease_ttl_s: int = Field(
        ge=3, le=60, description="seconds the primary's leader lease in etcd lives unrenewed: "
                                 "about how long an automatic failover takes to begin")
    db_agent_fence_margin_s: int = Field(
        ge=1, description="seconds of lease left at which a primary that cannot renew it "
                          "fences itself; less than db_agent_lease_ttl_s")
    db_agent_anti_flap_window_s: int = Field(
        ge=0, description="seconds after an automatic failover during which another one waits "
                          "for a human (alert DatabaseNeedsHuman); 0: no such wait")

    @field_validator("db_agent_fence_margin_s")
    @classmethod
    def _margin_within_ttl(cls, margin: int, info):
        ttl = info.data.get("db_agent_lease_ttl_s")
        if ttl is not None and margin >= ttl:
            raise ValueError(f"it must be less than db_agent_lease_ttl_s ({ttl}): the primary "
                             "must fence before its lease can expire anywhere else")
        return margin


Duration = Annotated[str, Field(pattern=r"^[0-9]+(ms|s|m|h|d)$")]


class ExporterSettings(_Settings):
    """group_data/all.py: the node exporter every host runs for the monitoring host."""

    node_exporter_port: Port = Field(description="node exporter port, on the host's own address")


class NginxExporterSettings(_Settings):
    """group_data/webservers.py: the nginx exporter reading stub_status."""

    nginx_exporter_port: Port = Field(description="nginx exporter port, own address")


class MonitoringSettings(_Settings):
    """group_data/monitoring.py: Prometheus, Alertmanager, blackbox and mysqld exporters."""

    prometheus_port: Port = Field(description="Prometheus UI/API port (admin_networks only)")
    prometheus_scrape_interval: Duration = Field(description="how often targets are scraped")
    prometheus_retention: Duration = Field(description="how long samples are kept, e.g. 15d")
    alertmanager_port: Port = Field(description="Alertmanager UI/API port (admin_networks only)")
    alertmanager_webhook_url: str = Field(
        description="where alerts are POSTed (Alertmanager webhook format); '' for none")
    alertmanager_email_to: str = Field(description="address alerts are mailed to; '' for none")
    alertmanager_email_from: str = Field(description="sender address of alert mails")
    alertmanager_smarthost: str = Field(description="SMTP server host:port for alert mails")
    alert_receiver_lab: bool = Field(
        description="install the lab's recording webhook receiver on the monitoring host")
    mysqld_exporter_base_port: Port = Field(
        description="first localhost port of the per-database mysqld exporters")
    blackbox_exporter_port: Port = Field(description="localhost port of the blackbox exporter")
    alert_for_instance_down: Duration = Field(description="'for' of InstanceDown")
    alert_for_web_server_down: Duration = Field(description="'for' of WebServerDownInHAProxy")
    alert_for_replication: Duration = Field(description="'for' of the replication alerts")
    alert_for_default: Duration = Field(description="'for' of the other alerts")
    alert_replication_lag_seconds: float = Field(gt=0, description="lag that alerts (s)")
    alert_5xx_ratio: float = Field(gt=0, lt=1, description="share of 5xx answers that alerts")
    alert_disk_free_ratio: float = Field(gt=0, lt=1, description="free disk share that alerts")
    alert_certificate_days: int = Field(ge=1, description="days before expiry that alert")


class EtcdSettings(_Settings):
    """group_data/etcd.py: the etcd cluster the database agents will use (tasks/etcd.py)."""

    etcd_client_port: Port = Field(description="port clients (the database agents) reach etcd on")
    etcd_peer_port: Port = Field(description="port etcd members talk to each other on")
    etcd_metrics_port: Port = Field(
        description="port of /metrics and /health over plain HTTP (no client certificate), "
                    "for Prometheus and health waits")
    etcd_cluster_token: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the same on every member; read only when the cluster is created")
    etcd_data_dir: str = Field(
        pattern=r"^/[A-Za-z0-9_./-]+$",
        description="absolute path of the member's data, not Debian's /var/lib/etcd/default")
    etcd_heartbeat_interval_ms: int = Field(
        ge=10, le=5000, description="how often the raft leader heartbeats (ms)")
    etcd_election_timeout_ms: int = Field(
        ge=50, le=50000,
        description="how long a follower waits for the leader before an election (ms); at "
                    "least 5 times etcd_heartbeat_interval_ms")

    @field_validator("etcd_data_dir")
    @classmethod
    def _not_the_package_default(cls, value: str) -> str:
        if value.rstrip("/") == "/var/lib/etcd/default":
            raise ValueError("Debian's package starts etcd on install and bootstraps a "
                             "one-member cluster there; keep the default "
                             "/var/lib/etcd/ha-webstack")
        return value

    @field_validator("etcd_election_timeout_ms")
    @classmethod
    def _five_heartbeats(cls, value: int, info: ValidationInfo) -> int:
        beat = info.data.get("etcd_heartbeat_interval_ms")
        if beat and value < 5 * beat:
            raise ValueError(f"it must be at least 5 times etcd_heartbeat_interval_ms ({beat}): "
                             "etcd refuses to start otherwise")
        return value


# Which settings model applies to the hosts of which group.
GROUP_MODELS: dict[str, tuple[type[_Settings], ...]] = {
    "all": (CommonSettings, ExporterSettings),
    "loadbalancers": (HAProxySettings, KeepalivedSettings),
    "webservers": (NginxSettings, AppSettings, NginxExporterSettings, DbProxySettings),
    "databases": (MySQLSettings, DbAgentSettings),
    "monitoring": (MonitoringSettings,),
    "etcd": (EtcdSettings,),
}


def _is_connector_key(key: str) -> bool:
    """pyinfra's own data: connection (ssh_*; fake_* for its @fake connector, which tests use)
    and global operation arguments (_sudo, ...)."""
    return key.startswith(("ssh_", "fake_", "_"))


class SettingsError(Exception):
    """Bad input; the message names each setting, where it came from, and how to fix it."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "ha-webstack: the settings are invalid, no host was touched:\n"
            + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    groups: tuple[str, ...]
    settings: dict[type, _Settings] = field(repr=False)

    @property
    def mysql_server_id_effective(self) -> int:
        """The set mysql_server_id, else the host's IPv4 address as a number (unique per host)."""
        return self.mysql_server_id or int(ipaddress.IPv4Address(self.address))

    def __getattr__(self, name: str) -> Any:
        # host.haproxy_balance: the setting of that name from whichever model holds it.
        for model in self.settings.values():
            if name in type(model).model_fields:
                return getattr(model, name)
        raise AttributeError(f"{self.name} has no setting {name!r}")


@dataclass(frozen=True)
class Stack:
    hosts: tuple[Host, ...]
    secrets: dict[str, str] = field(repr=False)

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def group(self, name: str) -> list[Host]:
        return [h for h in self.hosts if name in h.groups]

    def addresses(self, group: str) -> list[str]:
        return [h.address for h in self.group(group)]


@dataclass
class _Layer:
    """One source of values: a group_data file, or a group's/host's data in the inventory."""

    source: str
    data: dict[str, Any]


@dataclass
class _HostInput:
    name: str
    address: str
    groups: list[str]
    layers: list[_Layer]


def _allowed_keys(groups: list[str]) -> dict[str, type[_Settings]]:
    allowed = {}
    for group in ["all", *groups]:
        for model in GROUP_MODELS.get(group, ()):
            allowed.update(dict.fromkeys(model.model_fields, model))
    return allowed


def _unknown_key_problem(key: str, source: str, allowed: dict) -> str:
    hint = difflib.get_close_matches(key, list(allowed), n=1)
    fix = f"did you mean '{hint[0]}'?" if hint else "remove it or check its spelling"
    return f"unknown setting '{key}' in {source}: {fix}"


def _validate_host(h: _HostInput) -> tuple[Host | None, list[str]]:
    problems = []
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    allowed = _allowed_keys(h.groups)
    for layer in h.layers:
        for key, value in layer.data.items():
            if _is_connector_key(key):
                continue
            if key not in allowed:
                problems.append(_unknown_key_problem(key, layer.source, allowed))
                continue
            merged[key], origin[key] = value, layer.source
    settings = {}
    for model in dict.fromkeys(allowed.values()):
        values = {k: v for k, v in merged.items() if k in model.model_fields}
        try:
            settings[model] = model.model_validate(values)
        except ValidationError as e:
            problems += [_field_problem(model, err, values, origin, h.name) for err in e.errors()]
    return (Host(h.name, h.address, tuple(h.groups), settings) if not problems else None,
            problems)


def _field_problem(model, err, values, origin, host) -> str:
    key = str(err["loc"][0]) if err["loc"] else "?"
    described = model.model_fields[key].description if key in model.model_fields else ""
    if err["type"] == "missing":
        return (f"setting '{key}' is missing for host {host}: set it in "
                f"group_data/ or the inventory ({described})")
    return (f"setting '{key}' = {values.get(key)!r} (from {origin.get(key)}, host {host}) "
            f"is invalid: {err['msg']}. Expected: {described}")


def _stack_problems(stack: Stack) -> list[str]:
    problems = []
    dupes = [a for a, n in Counter(h.address for h in stack.hosts).items() if n > 1]
    for address in dupes:
        names = ", ".join(h.name for h in stack.hosts if h.address == address)
        problems.append(f"duplicate address {address} for hosts {names}: "
                        "give each host its own ssh_hostname in the inventory")
    problems += _group_shape_problems(stack)
    problems += _etcd_problems(stack)
    problems += _failover_problems(stack)
    ids = Counter(h.mysql_server_id_effective for h in stack.group("databases"))
    for server_id, n in ids.items():
        if n > 1:
            problems.append(f"setting 'mysql_server_id' = {server_id} is used by {n} database "
                            "hosts: give each a unique id, or None to derive it from its address")
    for db in stack.group("databases")[:1]:
        # Automatic failover: the agents know the replicas, not the inventory (the
        # switchover itself refuses a target that is not the synchronous standby).
        automatic = db.mysql_failover == "automatic"
        group = "databases" if automatic else "db_replicas"
        candidates = [h.name for h in stack.group(group)]
        if db.mysql_promote_target and db.mysql_promote_target not in candidates:
            problems.append(f"setting 'mysql_promote_target' = {db.mysql_promote_target!r} is "
                            f"not {'a database host' if automatic else 'a replica'}: choose one "
                            f"of the {group} group ({', '.join(candidates)})")
    names = [h.name for h in stack.hosts]
    for h in stack.hosts[:1]:
        if h.debian_upgrade_host and h.debian_upgrade_host not in names:
            problems.append(f"setting 'debian_upgrade_host' = {h.debian_upgrade_host!r} is not in "
                            f"the inventory: choose one of {', '.join(names)}")
    for m in stack.group("monitoring"):
        if not (m.alertmanager_webhook_url or m.alertmanager_email_to):
            problems.append(f"host {m.name}: alerts go nowhere: set alertmanager_webhook_url or "
                            "alertmanager_email_to (group_data/monitoring.py or the inventory)")
    for lb in stack.group("loadbalancers"):
        vip = lb.keepalived_floating_ip
        if vip not in lb.stack_network:
            problems.append(f"setting 'keepalived_floating_ip' = {vip} (host {lb.name}) is outside "
                            f"stack_network {lb.stack_network}: choose a free address inside it")
        elif str(vip) in {h.address for h in stack.hosts}:
            problems.append(f"setting 'keepalived_floating_ip' = {vip} is also a host's address: "
                            "choose an address no host uses")
    return problems


def _group_shape_problems(stack: Stack) -> list[str]:
    problems = []
    primaries, replicas = stack.group("db_primary"), stack.group("db_replicas")
    if stack.group("databases") and len(primaries) != 1:
        problems.append(f"group db_primary has {len(primaries)} hosts: put exactly one database "
                        "host in db_primary in the inventory")
    for h in primaries + replicas:
        if "databases" not in h.groups:
            problems.append(f"host {h.name} is in db_primary/db_replicas but not in databases: "
                            "add it to the databases group")
    for name in {h.name for h in primaries} & {h.name for h in replicas}:
        problems.append(f"host {name} is both db_primary and db_replicas: choose one")
    return problems


def _failover_problems(stack: Stack) -> list[str]:
    """Automatic failover needs its etcd cluster and one mode across the database tier."""
    databases = stack.group("databases")
    modes = sorted({h.mysql_failover for h in databases})
    if len(modes) > 1:
        return [f"setting 'mysql_failover' differs between the database hosts ({', '.join(modes)})"
                ": set it once for the databases group (group_data/databases.py)"]
    if modes == ["automatic"] and not stack.group("etcd"):
        return ["setting 'mysql_failover' = 'automatic' needs an etcd group in the inventory (3 "
                "hosts outside the database tier, docs/etcd.md): add one, or set it to 'manual'"]
    if modes == ["automatic"] and len(databases) < 2:
        return ["setting 'mysql_failover' = 'automatic' needs at least 2 database hosts: add a "
                "replica to the databases group, or set it to 'manual'"]
    problems = []
    for web in stack.group("webservers") if modes == ["automatic"] else []:
        taken = {"app_port": web.app_port, "nginx_port": web.nginx_port,
                 "nginx_status_port": web.nginx_status_port,
                 "nginx_exporter_port": web.nginx_exporter_port,
                 "node_exporter_port": web.node_exporter_port}
        for route in ("db_proxy_write_port", "db_proxy_read_port"):
            clash = [k for k, port in taken.items() if port == getattr(web, route)]
            if clash:
                problems.append(f"setting '{route}' = {getattr(web, route)} (host {web.name}) "
                                f"is also {clash[0]}: give the database route a free port")
            taken[route] = getattr(web, route)
    return problems


def _etcd_problems(stack: Stack) -> list[str]:
    """The etcd group: none yet (nothing uses it before the database agent), or a cluster that
    survives the loss of a member and shares no fate with the databases it decides about."""
    members = stack.group("etcd")
    if not members:
        return []
    problems = []
    n = len(members)
    if n < 3:
        problems.append(
            f"group etcd has {n} host{'s' if n > 1 else ''}: put at least 3 in the inventory's "
            "etcd group. etcd writes only with a majority of its members, so with 1 or 2 the "
            "loss of any one stops it, and the database agents with it")
    elif n % 2 == 0:
        problems.append(
            f"group etcd has {n} hosts: use an odd number (3 or 5). {n} members survive no "
            f"more losses than {n - 1} (a majority of {n} is {n // 2 + 1}) and a network split "
            "in halves leaves neither side a majority")
    for h in members:
        if "databases" in h.groups:
            problems.append(
                f"host {h.name} is in both etcd and databases: etcd decides which database is "
                "the primary, so it must run outside the database tier; take it out of the "
                "etcd group and use another host (the lab: lb-01, lb-02, monitor-01)")
    tokens = sorted({h.etcd_cluster_token for h in members})
    if len(tokens) > 1:
        problems.append(
            f"setting 'etcd_cluster_token' differs between the etcd members ({', '.join(tokens)}):"
            " set one value for the whole group (group_data/etcd.py or the inventory's etcd "
            "group)")
    return problems


def _build(hosts: list[_HostInput], env: str | None) -> Stack:
    problems, built = [], []
    for h in hosts:
        host, host_problems = _validate_host(h)
        problems += host_problems
        if host:
            built.append(host)
    if problems:
        raise SettingsError(list(dict.fromkeys(problems)))
    stack = Stack(tuple(built), {})
    problems = _stack_problems(stack)
    env = env or (built[0].stack_env if built else "")
    groups = {g for h in built for g in h.groups}
    for name in secrets.missing(env, groups):
        problems.append(f"secret '{name}' is missing: export {name.upper()}=... or add the line "
                        f"{name.upper()}=... to {secrets.secrets_file(env).relative_to(ROOT)}")
    if problems:
        raise SettingsError(problems)
    return Stack(tuple(built), secrets.load(env))


# --- entry point 1: the inventory file, before pyinfra connects -----------------------------

def _read_group_data() -> dict[str, dict[str, Any]]:
    data = {}
    for path in sorted(GROUP_DATA_DIR.glob("*.py")):
        scope: dict[str, Any] = {"__file__": str(path)}
        exec(compile(path.read_text(), str(path), "exec"), scope)
        data[path.stem] = {k: v for k, v in scope.items()
                           if not k.startswith("_") and not callable(v)
                           and type(v).__name__ != "module"}
    return data


def _inventory_groups(namespace: dict[str, Any]) -> dict[str, tuple[list, dict]]:
    """The groups pyinfra reads from an inventory module, in the order the module declares them
    (pyinfra_cli/inventory.py _is_inventory_group: a list of hosts or a (hosts, data) tuple,
    each host a name or a (name, data) tuple; names starting with _ are not groups)."""
    groups = {}
    for key, value in namespace.items():
        if key.startswith("_") or not isinstance(value, (list, tuple)):
            continue
        hosts, data = value if isinstance(value, tuple) else (value, {})
        if not all(isinstance(entry, (str, tuple)) for entry in hosts):
            continue
        groups[key] = (list(hosts), dict(data))
    return groups


def _entry(entry: str | tuple[str, dict]) -> tuple[str, dict]:
    return entry if isinstance(entry, tuple) else (entry, {})


def hosts_from_inventory(namespace: dict[str, Any], group_data=None) -> list[_HostInput]:
    """The hosts an inventory module describes, each with its data in layers, lowest first,
    exactly as pyinfra 3 layers host.data (pyinfra/api/host.py: override data > host data >
    group data > the inventory's `all` data; pyinfra_cli/inventory.py builds each layer):

    1. `all`: the inventory's data for the group `all`, updated by group_data/all.py
       (`all` is no group of the host's in pyinfra: it is beneath every group);
    2. each group of the host in the order the inventory declares them, a later group winning
       (Inventory.get_groups_data), then the group pyinfra names after the inventory file
       (inventories/lab.py: `lab`) when the inventory declares none of that name; for each
       group its inventory data, then group_data/<group>.py, which updates it (wins);
    3. the host's own data: its entries in the groups, in declaration order, then its entry in
       `all` (Inventory.make_hosts_and_groups).

    The hosts are pyinfra's too: those of `all` when the inventory declares it (a host only in
    other groups is ignored by pyinfra), else every host of every group, in order of appearance.
    Host.groups stays as webstack uses it: the role groups in ROLE_GROUPS order, then the others.
    """
    group_data = _read_group_data() if group_data is None else group_data
    groups = _inventory_groups(namespace)
    inventory_path = Path(namespace.get("__file__", "inventory"))
    inventory_file = inventory_path.name
    file_group = inventory_path.name.rsplit(".", 1)[0]

    declared: dict[str, list[str]] = {}    # host -> its groups, in declaration order
    host_data: dict[str, dict] = {}
    for group, (entries, _) in groups.items():
        for name, data in map(_entry, entries):
            declared.setdefault(name, [])
            if group not in declared[name]:
                declared[name].append(group)
            if group != "all":
                host_data.setdefault(name, {}).update(data)
    if "all" in groups:
        # Applied after every other group's entries: an entry in `all` wins.
        for name, data in map(_entry, groups["all"][0]):
            host_data.setdefault(name, {}).update(data)
        names = [name for name, _ in map(_entry, groups["all"][0])]
    else:
        names = list(declared)

    hosts = []
    for name in dict.fromkeys(names):
        layers = []
        if groups.get("all", ([], {}))[1]:
            layers.append(_Layer(f"{inventory_file} (group all)", groups["all"][1]))
        if "all" in group_data:
            layers.append(_Layer("group_data/all.py", group_data["all"]))
        layered = [g for g in declared.get(name, []) if g != "all"]
        if file_group not in groups and file_group != "all":
            layered.append(file_group)
        for g in layered:
            if g in groups and groups[g][1]:
                layers.append(_Layer(f"{inventory_file} (group {g})", groups[g][1]))
            if g in group_data:
                layers.append(_Layer(f"group_data/{g}.py", group_data[g]))
        layers.append(_Layer(f"{inventory_file} (host {name})", host_data.get(name, {})))
        address = name
        for layer in layers:
            address = layer.data.get("ssh_hostname", address)
        member = declared.get(name, [])
        ordered = [g for g in ROLE_GROUPS if g in member]
        ordered += [g for g in member if g not in ordered]
        hosts.append(_HostInput(name, address, ordered, layers))
    return hosts


def check_inventory(namespace: dict[str, Any]) -> Stack:
    """Validate everything an inventory file describes; exit with the problems if any."""
    try:
        return _build(hosts_from_inventory(namespace), env=None)
    except SettingsError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None


# --- entry point 2: deploy.py, on the data pyinfra merged ---------------------------------

def from_pyinfra(inventory) -> Stack:
    # `pyinfra --data key=value` sets a key on every host: it applies to the hosts whose groups
    # have that setting, and must be a setting of some group.
    overrides = dict(inventory.override_data)
    every_key = _allowed_keys(list(ROLE_GROUPS))
    unknown = [_unknown_key_problem(k, "--data", every_key) for k in overrides
               if not _is_connector_key(k) and k not in every_key]
    if unknown:
        raise SettingsError(unknown)
    hosts = []
    for h in inventory:
        groups = [g for g in ROLE_GROUPS if g in h.groups]
        allowed = _allowed_keys(groups)
        data = {k: v for k, v in h.data.dict().items() if k not in overrides or k in allowed}
        hosts.append(_HostInput(h.name, data.get("ssh_hostname", h.name), groups,
                                [_Layer("pyinfra host data and --data", data)]))
    return _build(hosts, env=None)
