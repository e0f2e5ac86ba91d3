"""A planned switchover through the agents: `python3 -m agent.switchover --to db-02`, as root on
a database host (it uses that host's agent configuration and etcd client certificate).

It checks that the move is one the agents will make (a primary holds the key, the target is the
recorded synchronous standby, the cluster is not degraded), writes `switchover` = the target in
etcd, and waits: the primary turns read-only, hands the key over once the target has applied
everything (agent/service.py's `_hand_over`), the target promotes, and the old primary rejoins
as its replica. The request is deleted when this ends, whatever the outcome. Exit status: 0 when
the target is the primary, 1 when it did not happen in time (the agents' journals say why), 2
when the request was refused before anything changed.

ops/promote_replica.py runs this where mysql_failover = "automatic".
"""

import argparse
import sys
import time

from agent.config import ConfigError, load
from agent.etcd_client import Client, EtcdError
from agent.keys import Keys


def refusal(kvs: dict[str, str], keys: Keys, to: str, members) -> str | None:
    """Why the agents would not hand over to `to` now; None if they would."""
    leader = kvs.get(keys.leader)
    if to not in members:
        return f"{to} is not a database member ({', '.join(sorted(members))})"
    if leader is None:
        return "no primary holds the leader key: nothing to switch over from"
    if leader == to:
        return f"{to} is the primary already"
    if keys.degraded in kvs:
        return ("the cluster is degraded (semi-sync relaxed): the standby may lack "
                "acknowledged writes; bring the replica back first")
    if kvs.get(keys.sync_standby) != to:
        return (f"{to} is not the synchronous standby "
                f"({kvs.get(keys.sync_standby) or 'none recorded'} is)")
    if keys.switchover in kvs:
        return f"a switchover to {kvs[keys.switchover]} is already under way"
    return None


def switch_over(etcd: Client, keys: Keys, to: str, members, timeout: float) -> int:
    kvs = etcd.get_prefix(keys.prefix)
    if why := refusal(kvs, keys, to, members):
        print(f"switchover refused: {why}. Nothing changed.", file=sys.stderr)
        return 2
    old, started = kvs[keys.leader], time.monotonic()
    etcd.put(keys.switchover, to)
    print(f"asked {old} to hand over to {to}", flush=True)
    try:
        while time.monotonic() - started < timeout:
            kvs = etcd.get_prefix(keys.prefix)
            if kvs.get(keys.leader) == to and keys.switchover not in kvs:
                print(f"{to} is the primary ({time.monotonic() - started:.1f}s); {old} rejoins "
                      "it as a replica by itself", flush=True)
                return 0
            if keys.switchover not in kvs:
                print(f"{old} dropped the request: {to} did not catch up in time, {old} is "
                      "writable again (journalctl -u ha-webstack-agent)", file=sys.stderr)
                return 1
            time.sleep(0.1)
        print(f"no switchover within {timeout:.0f}s (journalctl -u ha-webstack-agent on "
              f"{old} and {to})", file=sys.stderr)
        return 1
    finally:
        try:
            etcd.compare_and_delete(keys.switchover, to)
        except EtcdError as e:  # the agents ignore a stale request only once it is gone
            print(f"could not delete the request {keys.switchover}: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m agent.switchover",
                                     description="a planned switchover through the agents")
    parser.add_argument("--to", required=True, help="the member to make the primary")
    parser.add_argument("--config", default="/etc/ha-webstack/agent.json")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as e:
        print(f"switchover: {e}", file=sys.stderr)
        return 2
    etcd = Client.from_files(config.etcd.endpoints, config.etcd.ca, config.etcd.cert,
                             config.etcd.key, config.etcd.timeout)
    try:
        return switch_over(etcd, config.keys, args.to, config.members, args.timeout)
    except EtcdError as e:
        print(f"switchover: etcd: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
