"""Where the database agents keep their shared state in etcd: the one description of the layout.

Every key of a database cluster lives under one prefix, so one linearizable range read of that
prefix (`Client.get_prefix(keys.prefix)`) is a consistent picture of the whole cluster for a tick:

    /ha-webstack/<cluster>/
        leader                  the primary's name. Attached to its lease, so it disappears when the
                                lease expires or is revoked; taken only by create-if-absent
                                (`Client.create`), released only by compare-and-delete with the
                                holder's own name (`Client.compare_and_delete`).
        sync_standby            the name of the replica the primary recorded as its synchronous
                                standby: the only node that may promote itself when the key is gone.
        degraded                present while semi-sync is relaxed (writes acknowledged by the
                                primary alone); written before relaxing it. Value: a `Stamp`.
        last_failover           the last automatic failover. Value: a `Stamp` (who was promoted,
                                when): the anti-flap window is counted from it.
        switchover              a planned switchover asked for: the name of the member to hand
                                over to (`python3 -m agent.switchover` writes it and deletes it
                                when done; the new primary deletes it too).
        initialized             written once, when the first primary took the key: from then on the
                                inventory's initial primary means nothing. Value: a `Stamp`.
        members/<name>/gtid     that member's gtid_current_pos as it last published it (the
                                cold-start verdict and the bootstrap check compare them). Not
                                attached to a lease: a dead member's last position is what they
                                need.

Values are UTF-8 text: names and GTID positions as they are, stamps as compact JSON (readable with
`etcdctl get --prefix /ha-webstack/`). Stdlib only, like the rest of agent/.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass

ROOT = "/ha-webstack/"


def _check_name(kind: str, name: str) -> str:
    # A "/" would put a key under another one's prefix; whitespace is a typo waiting to happen.
    if not name or "/" in name or name != name.strip() or any(c.isspace() for c in name):
        raise ValueError(f"{kind} name {name!r}: non-empty, no '/', no whitespace")
    return name


@dataclass(frozen=True)
class Keys:
    """The keys of one database cluster (`cluster`: its name, the same on every agent)."""

    cluster: str

    def __post_init__(self):
        _check_name("cluster", self.cluster)

    @property
    def prefix(self) -> str:
        return f"{ROOT}{self.cluster}/"

    @property
    def leader(self) -> str:
        return self.prefix + "leader"

    @property
    def sync_standby(self) -> str:
        return self.prefix + "sync_standby"

    @property
    def degraded(self) -> str:
        return self.prefix + "degraded"

    @property
    def last_failover(self) -> str:
        return self.prefix + "last_failover"

    @property
    def switchover(self) -> str:
        return self.prefix + "switchover"

    @property
    def initialized(self) -> str:
        return self.prefix + "initialized"

    def gtid(self, member: str) -> str:
        return f"{self.prefix}members/{_check_name('member', member)}/gtid"

    def published_gtids(self, kvs: Mapping[str, str]) -> dict[str, str]:
        """{member: GTID position} from a read of the prefix (other keys are ignored)."""
        head, tail = self.prefix + "members/", "/gtid"
        return {key[len(head):-len(tail)]: value for key, value in kvs.items()
                if key.startswith(head) and key.endswith(tail)
                and "/" not in key[len(head):-len(tail)]}


@dataclass(frozen=True)
class Stamp:
    """Who did something and when: the value of `degraded`, `last_failover` and `initialized`.

    `at` is wall-clock epoch seconds, because other hosts compare it with their own clocks (the
    anti-flap window of minutes tolerates their skew; the lease never uses wall time)."""

    by: str
    at: float

    def encode(self) -> str:
        # Sorted and compact: the same stamp is the same bytes, so create-if-absent can recognise
        # its own earlier write when it retries.
        return json.dumps({"at": self.at, "by": self.by}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> "Stamp":
        """The stamp in `text`; ValueError if it is not one (a hand-edited key, say)."""
        try:
            data = json.loads(text)
            return cls(by=str(data["by"]), at=float(data["at"]))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"not a stamp ({{'at': epoch seconds, 'by': name}}): {text!r}") from e
