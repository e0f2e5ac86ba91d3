"""The agent's configuration: one JSON file, /etc/ha-webstack/agent.json, written by the deploy
and read once at start. Every setting is checked before the agent touches anything, and a bad
one stops it with a message naming the file and the setting (`ConfigError`). Unknown settings
are refused too: a typo must not silently fall back to a default.

    {
      "name": "db-01",                          this host: one of "members"
      "cluster": "lab",                         etcd prefix /ha-webstack/<cluster>/
      "members": {"db-01": "10.0.0.31:3306",    every database host: MariaDB address:port
                  "db-02": "10.0.0.32:3306"},
      "initial_primary": "db-01",               the inventory's db_primary (bootstrap only)
      "etcd": {"endpoints": ["https://10.0.0.11:2379", ...],
               "ca": "/etc/ha-webstack/etcd/ca.crt",
               "cert": "/etc/ha-webstack/etcd/client.crt",
               "key": "/etc/ha-webstack/etcd/client.key",
               "timeout": 0.5},                 seconds per member and request (optional)
      "mariadb": {"socket": "/run/mysqld/mysqld.sock",
                  "replication_user": "replicator",
                  "replication_password_file": "/etc/ha-webstack/agent/replication.password",
                  "recovery_file": "/etc/mysql/mariadb.conf.d/62-ha-webstack-agent.cnf"},
                                                the agent's own option file (optional)
      "policy": {"lease_ttl": 5, "fence_margin": 2, "replication_silence": 2,
                 "anti_flap_window": 3600,      agent/decision.py's Policy (all optional)
                 "degrade_after": 3,            semi-sync stuck this long: record, then relax
                 "tick": 0.5},                  seconds between ticks, well under the margin
      "http": {"listen": "10.0.0.31:8008", "replica_max_lag": 5},
      "lease_file": "/var/lib/ha-webstack-agent/lease"
                                                the held lease's id, for a restarted agent to
                                                resume it (optional)
    }

The replication password file must be a regular file readable by its owner only (the agent
runs as root); its content, stripped, is the password. It is read when needed, so a rotated
secret is picked up without a restart, and never copied into logs or command lines.
"""

import json
import math
import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from agent.decision import Policy
from agent.keys import Keys


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the setting."""


@dataclass(frozen=True)
class Etcd:
    endpoints: tuple[str, ...]
    ca: str
    cert: str
    key: str
    timeout: float


@dataclass(frozen=True)
class Config:
    path: str
    name: str
    cluster: str
    members: dict[str, tuple[str, int]]  # name -> (MariaDB address, port)
    initial_primary: str
    etcd: Etcd
    socket: str
    replication_user: str
    replication_password_file: str
    recovery_file: str
    policy: Policy
    degrade_after: float
    tick: float
    listen: tuple[str, int]
    replica_max_lag: float
    lease_file: str

    @property
    def keys(self) -> Keys:
        return Keys(self.cluster)

    @property
    def lease_ttl(self) -> int:
        """What to ask etcd for: whole seconds."""
        return math.ceil(self.policy.lease_ttl)

    @property
    def heartbeat(self) -> float:
        """MASTER_HEARTBEAT_PERIOD: four heartbeats per silence threshold, so a live source is
        never mistaken for a dead one."""
        return round(self.policy.replication_silence / 4, 3)

    @property
    def net_timeout(self) -> int:
        """slave_net_timeout (whole seconds, at least 1): four heartbeats, so the IO thread
        gives up on a source lost without a word in about the silence threshold."""
        return max(1, math.ceil(self.heartbeat * 4))

    def member_at(self, host: str, port: int) -> str | None:
        """The member whose MariaDB listens at host:port (a replica's Master_Host/Port)."""
        return next((name for name, addr in self.members.items() if addr == (host, port)), None)

    def replication_password(self) -> str:
        """The replication password, from its root-only file (checked again on every read)."""
        return _password(self.path, self.replication_password_file)


_TOP = {"name", "cluster", "members", "initial_primary", "etcd", "mariadb", "policy", "http",
        "lease_file"}
_OPTIONAL = {"policy", "lease_file"}
_ETCD = {"endpoints", "ca", "cert", "key", "timeout"}
_MARIADB = {"socket", "replication_user", "replication_password_file", "recovery_file"}
RECOVERY_FILE = "/etc/mysql/mariadb.conf.d/62-ha-webstack-agent.cnf"
LEASE_FILE = "/var/lib/ha-webstack-agent/lease"  # the unit's StateDirectory
_POLICY = {f.name for f in fields(Policy)} | {"degrade_after", "tick"}
_HTTP = {"listen", "replica_max_lag"}


def load(path: str) -> Config:
    """The configuration in `path`, checked; ConfigError says what is wrong and where."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    return parse(path, data)


def parse(path: str, data) -> Config:
    """`data` (the decoded JSON of `path`) as a Config."""
    top = _section(path, "", data, _TOP, required=_TOP - _OPTIONAL)
    where = _Where(path)
    name = where.name("name", top["name"])
    members = where.members(top["members"])
    if name not in members:
        raise where.error("name", f"{name!r} is not one of members ({', '.join(members)})")
    initial = where.name("initial_primary", top["initial_primary"])
    if initial not in members:
        raise where.error("initial_primary", f"{initial!r} is not one of members")
    etcd = _section(path, "etcd.", top["etcd"], _ETCD, required=_ETCD - {"timeout"})
    mariadb = _section(path, "mariadb.", top["mariadb"], _MARIADB,
                       required=_MARIADB - {"recovery_file"})
    policy_data = _section(path, "policy.", top.get("policy", {}), _POLICY, required=set())
    http = _section(path, "http.", top["http"], _HTTP, required={"listen"})
    policy, tick, degrade_after = where.policy(policy_data)
    config = Config(
        path=path, name=name, cluster=where.cluster(top["cluster"]), members=members,
        initial_primary=initial,
        etcd=Etcd(endpoints=where.endpoints(etcd["endpoints"]),
                  ca=where.file("etcd.ca", etcd["ca"]),
                  cert=where.file("etcd.cert", etcd["cert"]),
                  key=where.file("etcd.key", etcd["key"]),
                  timeout=where.positive("etcd.timeout", etcd.get("timeout", 0.5))),
        socket=where.text("mariadb.socket", mariadb["socket"]),
        replication_user=where.text("mariadb.replication_user", mariadb["replication_user"]),
        replication_password_file=where.text("mariadb.replication_password_file",
                                             mariadb["replication_password_file"]),
        recovery_file=where.in_directory("mariadb.recovery_file",
                                         mariadb.get("recovery_file", RECOVERY_FILE)),
        policy=policy, degrade_after=degrade_after, tick=tick,
        listen=where.address("http.listen", http["listen"]),
        replica_max_lag=where.positive("http.replica_max_lag", http.get("replica_max_lag", 5)),
        lease_file=where.in_directory("lease_file", top.get("lease_file", LEASE_FILE)))
    config.replication_password()  # exists, root-only, not empty: now, not at the first rejoin
    return config


def _section(path: str, prefix: str, data, allowed: set[str], required: set[str]) -> dict:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {where}: expected an object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{path}: {where}: unknown setting(s) "
                          f"{', '.join(prefix + k for k in unknown)}")
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{path}: missing setting(s) {', '.join(prefix + k for k in missing)}")
    return data


class _Where:
    """Checks of single values, each raising ConfigError naming the setting."""

    def __init__(self, path: str):
        self.path = path

    def error(self, setting: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {setting}: {message}")

    def text(self, setting: str, value) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(setting, "expected a non-empty string")
        return value

    def name(self, setting: str, value) -> str:
        value = self.text(setting, value)
        try:
            Keys("x").gtid(value)  # the key layout's own rule for member names
        except ValueError as e:
            raise self.error(setting, str(e)) from None
        return value

    def cluster(self, value) -> str:
        try:
            return Keys(self.text("cluster", value)).cluster
        except ValueError as e:
            raise self.error("cluster", str(e)) from None

    def address(self, setting: str, value) -> tuple[str, int]:
        host, _, port = self.text(setting, value).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise self.error(setting, f"{value!r} is not address:port")
        return host.strip("[]"), int(port)

    def members(self, value) -> dict[str, tuple[str, int]]:
        if not isinstance(value, dict) or len(value) < 2:
            raise self.error("members", "expected an object of at least two "
                                        "name: \"address:port\"")
        members = {self.name(f"members.{n}", n): self.address(f"members.{n}", a)
                   for n, a in value.items()}
        if len(set(members.values())) != len(members):
            raise self.error("members", "two members at the same address:port")
        return members

    def endpoints(self, value) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.error("etcd.endpoints", "expected a non-empty list of https://address:port")
        for url in value:
            if not isinstance(url, str) or urlsplit(url).scheme != "https" or not urlsplit(
                    url).port:
                raise self.error("etcd.endpoints", f"{url!r} is not https://address:port")
        return tuple(value)

    def file(self, setting: str, value) -> str:
        if not os.path.isfile(self.text(setting, value)):
            raise self.error(setting, f"{value}: no such file")
        return value

    def in_directory(self, setting: str, value) -> str:
        directory = os.path.dirname(os.path.abspath(self.text(setting, value)))
        if not os.path.isdir(directory):
            raise self.error(setting, f"{value}: no directory {directory}")
        return value

    def positive(self, setting: str, value) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.error(setting, f"expected a positive number of seconds, not {value!r}")
        return float(value)

    def policy(self, data: dict) -> tuple[Policy, float, float]:
        values = {k: self.positive(f"policy.{k}", v) if k != "anti_flap_window" else v
                  for k, v in data.items()}
        if "anti_flap_window" in values:
            window = values["anti_flap_window"]
            if isinstance(window, bool) or not isinstance(window, int | float) or window < 0:
                raise self.error("policy.anti_flap_window", "expected seconds, 0 or more")
        tick = values.pop("tick", 0.5)
        degrade_after = values.pop("degrade_after", 3.0)
        try:
            policy = Policy(**values)
        except ValueError as e:
            raise ConfigError(f"{self.path}: policy: {e}") from None
        # Several ticks must fit in the margin: the holder sees its lease run down in time.
        if tick * 2 > policy.fence_margin:
            raise self.error("policy.tick", f"{tick}s: at most half the fence margin "
                                            f"({policy.fence_margin}s)")
        return policy, tick, degrade_after


def _password(path: str, file: str) -> str:
    try:
        info = os.stat(file)
    except OSError as e:
        raise ConfigError(f"{path}: mariadb.replication_password_file: {file}: "
                          f"{e.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: mariadb.replication_password_file: {file}: not a file")
    if info.st_mode & 0o077 or info.st_uid != os.geteuid():
        raise ConfigError(f"{path}: mariadb.replication_password_file: {file}: must be owned "
                          f"by the agent's user and readable by it only (chmod 600), is "
                          f"{stat.filemode(info.st_mode)}")
    password = Path(file).read_text().strip()
    if not password:
        raise ConfigError(f"{path}: mariadb.replication_password_file: {file}: empty")
    return password
