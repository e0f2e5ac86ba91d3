"""The agent's configuration file (agent/config.py): a good one is read as meant, every bad
setting stops the agent with a message naming the file and the setting, and
`python3 -m agent.service --check` says so before anything is touched."""

import copy
import json
import os
import subprocess
import sys

import pytest

from agent.config import ConfigError, load, parse
from webstack import ROOT


@pytest.fixture
def good(tmp_path) -> dict:
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("x")
    secret = tmp_path / "replication.password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    return {
        "name": "db-02", "cluster": "lab", "initial_primary": "db-01",
        "members": {"db-01": "10.0.0.31:3306", "db-02": "10.0.0.32:3306"},
        "etcd": {"endpoints": ["https://10.0.0.11:2379", "https://10.0.0.12:2379"],
                 "ca": str(tmp_path / "ca.crt"), "cert": str(tmp_path / "client.crt"),
                 "key": str(tmp_path / "client.key")},
        "mariadb": {"socket": "/run/mysqld/mysqld.sock", "replication_user": "replicator",
                    "replication_password_file": str(secret),
                    "recovery_file": str(tmp_path / "62-ha-webstack-agent.cnf")},
        "http": {"listen": "10.0.0.32:8008"},
        "lease_file": str(tmp_path / "lease"),
    }


def test_a_good_configuration(good):
    config = parse("agent.json", good)
    assert config.name == "db-02" and config.keys.prefix == "/ha-webstack/lab/"
    assert config.members == {"db-01": ("10.0.0.31", 3306), "db-02": ("10.0.0.32", 3306)}
    assert config.member_at("10.0.0.31", 3306) == "db-01"
    assert config.member_at("10.0.0.31", 3307) is None
    assert config.listen == ("10.0.0.32", 8008)
    assert config.policy.lease_ttl == 5.0 and config.tick == 0.5 and config.degrade_after == 3
    assert config.lease_ttl == 5 and config.heartbeat == 0.5 and config.net_timeout == 2
    assert config.etcd.timeout == 0.5 and config.replica_max_lag == 5
    assert config.replication_password() == "s3cret"


def test_policy_values_are_read(good):
    good["policy"] = {"lease_ttl": 8, "fence_margin": 3, "replication_silence": 1,
                      "anti_flap_window": 0, "degrade_after": 2, "tick": 0.25}
    config = parse("agent.json", good)
    assert config.policy.fence_margin == 3 and config.policy.anti_flap_window == 0
    assert config.tick == 0.25 and config.heartbeat == 0.25 and config.net_timeout == 1


def _without(data: dict, path: str) -> dict:
    data = copy.deepcopy(data)
    top = data
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    del data[last]
    return top


def _with(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    top = data
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    data[last] = value
    return top


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: _without(d, "name"), "missing setting(s) name"),
    (lambda d: _without(d, "etcd.ca"), "missing setting(s) etcd.ca"),
    (lambda d: _with(d, "colour", "blue"), "unknown setting(s) colour"),
    (lambda d: _with(d, "policy", {"lease_tt": 5}), "unknown setting(s) policy.lease_tt"),
    (lambda d: _with(d, "name", "db-03"), "name: 'db-03' is not one of members"),
    (lambda d: _with(d, "initial_primary", "db-9"), "initial_primary: 'db-9' is not one of"),
    (lambda d: _with(d, "cluster", "a/b"), "cluster: cluster name 'a/b'"),
    (lambda d: _with(d, "members", {"db-01": "10.0.0.31:3306"}), "members: expected an object"),
    (lambda d: _with(d, "members.db-01", "10.0.0.31"), "members.db-01: '10.0.0.31' is not "
                                                       "address:port"),
    (lambda d: _with(d, "members.db-01", "10.0.0.32:3306"), "two members at the same"),
    (lambda d: _with(d, "etcd.endpoints", ["http://10.0.0.11:2379"]),
     "etcd.endpoints: 'http://10.0.0.11:2379' is not https://address:port"),
    (lambda d: _with(d, "etcd.cert", "/nonexistent/client.crt"), "etcd.cert: /nonexistent"),
    (lambda d: _with(d, "etcd.timeout", 0), "etcd.timeout: expected a positive number"),
    (lambda d: _with(d, "http.listen", "8008"), "http.listen: '8008' is not address:port"),
    (lambda d: _with(d, "policy", {"fence_margin": 6}), "policy: fence_margin must be in"),
    (lambda d: _with(d, "policy", {"tick": 1.5}), "policy.tick: 1.5s: at most half the fence"),
    (lambda d: _with(d, "policy", {"anti_flap_window": -1}), "policy.anti_flap_window"),
    (lambda d: _with(d, "mariadb.recovery_file", "/nonexistent/x.cnf"),
     "mariadb.recovery_file: /nonexistent/x.cnf: no directory /nonexistent"),
    (lambda d: _with(d, "lease_file", "/nonexistent/lease"),
     "lease_file: /nonexistent/lease: no directory /nonexistent"),
    (lambda d: _with(d, "mariadb.replication_password_file", "/nonexistent"),
     "mariadb.replication_password_file: /nonexistent: No such file"),
])
def test_a_bad_setting_is_named(good, change, message):
    with pytest.raises(ConfigError) as refused:
        parse("/etc/ha-webstack/agent.json", change(good))
    assert str(refused.value).startswith("/etc/ha-webstack/agent.json: ")
    assert message in str(refused.value)


def test_a_password_file_others_can_read_is_refused(good):
    os.chmod(good["mariadb"]["replication_password_file"], 0o644)
    with pytest.raises(ConfigError, match=r"readable by it only \(chmod 600\), is -rw-r--r--"):
        parse("agent.json", good)


def test_not_json(tmp_path):
    (tmp_path / "agent.json").write_text("{name: db-01}")
    with pytest.raises(ConfigError, match="agent.json: not valid JSON"):
        load(str(tmp_path / "agent.json"))


def _check(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.service", "--config", str(path),
                           "--check"], cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_the_service_checks_its_configuration(tmp_path, good):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(good))
    assert _check(path).stdout.strip() == f"{path}: ok"
    path.write_text(json.dumps(_with(good, "members.db-02", "nowhere")))
    refused = _check(path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"agent: {path}: members.db-02: 'nowhere' is not "
                                      "address:port")
