"""keepalived pieces shared by the deploy (tasks/keepalived.py) and ops/upgrade_debian.py: the
hold file that keeps a balancer out of the election, and a handover of the floating IP that
cuts no request in flight.

Why stopping keepalived is not enough for a planned move: once the IP moves, a client's packets
for a connection the old holder still serves reach the new holder, which knows no such
connection, and its firewall drops them as INVALID: that request hangs until the client gives
up. So before it lets go, the holder is quiesced: SYNs to the floating IP are dropped (TCP sends
a SYN again after 1 s, by then to the new holder, so a new request waits, none fails) and HAProxy's
public frontends finish the connections they have.

The iptables rule is transient on purpose (not a ufw rule: nothing saves it, a reboot drops it),
and a systemd timer removes it after a failsafe even if the run that set it dies.
"""

HOLD_FILE = "/etc/keepalived/hold"
HOLD = f"touch {HOLD_FILE}"
RELEASE = f"rm -f {HOLD_FILE}"
# The holder gives the floating IP up at once: a stopping keepalived announces priority 0, so
# its peer takes over within a fraction of a second (not after the master-down interval).
HAND_OVER = "systemctl restart keepalived"
# templates/haproxy/haproxy.cfg.j2: the frontends bound to the floating IP, and their ports.
FRONTENDS = {"http_in": 80, "https_in": 443}
_FAILSAFE_UNIT = "ha-webstack-unquiesce"
_FAILSAFE_S = 60


def _syn_drop(vip: str) -> str:
    ports = ",".join(str(p) for p in FRONTENDS.values())
    return (f"-d {vip}/32 -p tcp --syn -m multiport --dports {ports} "
            "-m comment --comment ha-webstack-quiesce -j DROP")


def _frontend_connections(socket: str) -> str:
    match = " || ".join(f'$1 == "{name}"' for name in FRONTENDS)
    return (f"echo 'show stat' | socat stdio {socket} | awk -F, "
            f"'$2 == \"FRONTEND\" && ({match}) {{n += $5}} END {{print n + 0}}'")


def quiesce(vip: str, socket: str, timeout_s: int) -> str:
    """No new connection to the floating IP on this balancer; succeed once HAProxy's public
    frontends have none open, or after timeout_s (idle keep-alive connections may stay)."""
    rule = _syn_drop(vip)
    return (f"iptables -w -C INPUT {rule} 2>/dev/null || iptables -w -I INPUT 1 {rule}; "
            f"systemctl stop {_FAILSAFE_UNIT}.timer 2>/dev/null; "
            f"systemd-run --quiet --collect --unit {_FAILSAFE_UNIT} "
            f"--on-active={_FAILSAFE_S} iptables -w -D INPUT {rule}; "
            f"for i in $(seq {timeout_s * 10}); do "
            f'[ "$({_frontend_connections(socket)})" = 0 ] && exit 0; sleep 0.1; done; '
            f"echo 'ha-webstack: connections still open after {timeout_s} s "
            "(keepalived_handover_drain_s); going on' >&2")


def unquiesce(vip: str) -> str:
    """New connections are accepted again (undoes quiesce; harmless when not quiesced)."""
    rule = _syn_drop(vip)
    return (f"systemctl stop {_FAILSAFE_UNIT}.timer 2>/dev/null; "
            f"while iptables -w -C INPUT {rule} 2>/dev/null; do "
            f"iptables -w -D INPUT {rule} || exit 1; done")


def holds_ip(vip: str, timeout_s: int, present: bool = True) -> str:
    """Succeed once this host carries the floating IP (or no longer does: present=False)."""
    test = f"ip -o addr | grep -q ' {vip}/'"
    if not present:
        test = f"! {test}"
    return (f"for i in $(seq {timeout_s * 5}); do {test} && exit 0; sleep 0.2; done; "
            f"echo 'ha-webstack: the floating IP {vip} did not "
            f"{'arrive' if present else 'leave'} within {timeout_s} s' >&2; exit 1")


def release_into_election(timeout_s: int) -> str:
    """Release the hold; succeed once keepalived has joined the election (its journal says
    BACKUP: ready to take the floating IP from a holder that hands it over). Not held: done."""
    journal = "journalctl -u keepalived -q --no-pager"
    return (f"[ -e {HOLD_FILE} ] || exit 0; "
            f"cursor=$({journal} -n 0 --show-cursor | sed -n 's/^-- cursor: //p'); {RELEASE}; "
            f"for i in $(seq {timeout_s * 5}); do "
            f"{journal} ${{cursor:+--after-cursor=\"$cursor\"}} | grep -q 'Entering BACKUP STATE' "
            "&& exit 0; sleep 0.2; done; "
            f"echo 'ha-webstack: keepalived did not join the election within {timeout_s} s' >&2; "
            "exit 1")
