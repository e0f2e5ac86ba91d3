"""Upgrade one host of a running stack to the next Debian release, in place, without dropping
a request: out of service, upgraded, rebooted, converged by the deploy, back in service.

When to use it
  Moving the fleet from Debian 12 (bookworm) to Debian 13 (trixie), one host per run, in the
  order docs/upgrades.md gives (standby balancer, active balancer, web servers, monitoring,
  replicas, then a switchover and the old primary).

    pyinfra -y inventories/<env>.py ops/upgrade_debian.py --data debian_upgrade_host=web-01

What it does
  1. Refuses, before touching anything, a host that is not on the release before
     debian_upgrade_to, the writable database primary (switch over first:
     ops/promote_replica.py), or a balancer whose peer is unreachable.
  2. Out of service: a web server is drained on both balancers (haproxy_drain_timeout_s); a
     balancer is quiesced (new connections wait, open ones finish: webstack/keepalived.py),
     held out of the election and its keepalived stopped, so the floating IP is on its peer
     before anything changes; a replica needs nothing (the app reads from the primary).
  3. apt sources to the new release, `apt-get upgrade` (no new packages), then `full-upgrade`
     (Debian's two-step upgrade; configuration files the deploy manages are kept and
     converged in step 5), then a reboot, waiting at most debian_reboot_timeout_s.
  4. The deploy (deploy.py) on this host, planned after the reboot, so every choice it makes
     from facts (package names, config syntax) sees the new release.
  5. Back in service: a web server answers its health path and is put back in rotation (HAProxy
     must see it UP); an etcd member reports itself healthy; a balancer's hold is released
     (the first of the pair takes the floating IP back, its peer quiesced meanwhile); a
     replica replicates again and has caught up.
  If a step fails the run stops there: the host stays out of service and the others serve.
  Running it again finishes the job: on a host already on debian_upgrade_to the upgrade and
  the reboot are skipped, the rest runs (the deploy changes nothing on a converged host).

How to undo
  Debian has no downgrade. A host that fails mid-upgrade stays out of service; fix it (the
  apt log: /var/log/apt/term.log) and run this again, or rebuild it on the new release and
  deploy. Runbook: docs/upgrades.md.
"""

import time

import gevent
from pyinfra import host, inventory, local
from pyinfra.facts.files import File, FindFiles
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, python, server

from webstack.context import stack
from webstack.facts import MariaDBState
from webstack.haproxy import SOCKET, drain, ready
from webstack.keepalived import (
    HAND_OVER,
    HOLD,
    holds_ip,
    quiesce,
    release_into_election,
    unquiesce,
)
from webstack.mariadb import sql
from webstack.run_state import once, step_done
from webstack.webserver import health_check

# The release before each one this can upgrade to: Debian supports one release at a time.
PREVIOUS = {"trixie": "bookworm"}

st = stack()
settings = st.host(host.name)
if not settings.debian_upgrade_host:
    raise SystemExit("ha-webstack: say which host to upgrade: --data debian_upgrade_host="
                     + "|".join(h.name for h in st.hosts))
target = st.host(settings.debian_upgrade_host)
to, before = settings.debian_upgrade_to, PREVIOUS[settings.debian_upgrade_to]
target_host = inventory.get_host(target.name)
peers = [lb for lb in st.group("loadbalancers") if lb.name != target.name]
vip = target.keepalived_floating_ip if "loadbalancers" in target.groups else None


def release_of(h) -> str:
    return h.get_fact(LinuxDistribution)["release_meta"].get("VERSION_CODENAME", "")


def preflight() -> str:
    """The target's release; refuses (exits) before any host is touched when this cannot work."""
    if not target_host.connected:
        raise SystemExit(f"ha-webstack: {target.name} is unreachable: nothing to upgrade")
    release = release_of(target_host)
    if release not in (before, to):
        raise SystemExit(f"ha-webstack: {target.name} runs Debian {release or '?'}; this upgrades "
                         f"{before} to {to} (Debian upgrades one release at a time)")
    db = target_host.get_fact(MariaDBState) if "databases" in target.groups else {}
    if release == before and db.get("running") and db.get("read_only") == "0":
        raise SystemExit(f"ha-webstack: {target.name} is the writable database primary: switch "
                         "over to an upgraded replica first (ops/promote_replica.py, "
                         "docs/upgrades.md)")
    down = [lb.name for lb in peers if not inventory.get_host(lb.name).connected]
    if release == before and "loadbalancers" in target.groups and down:
        raise SystemExit(f"ha-webstack: {target.name}'s peer {', '.join(down)} is unreachable: "
                         "the floating IP would have nowhere to go")
    return release


def reboot_and_wait() -> None:
    """Reboot the host and wait until it is back with systemd running.

    Written by hand because pyinfra's server.reboot decides that a host rebooted from
    /proc/uptime, which in a container is the machine's (the lab): the age of PID 1 is right
    on both a server and a container."""
    started = time.monotonic()
    host.run_shell_command("( sleep 1 && systemctl reboot ) </dev/null >/dev/null 2>&1 &",
                           _sudo=True)
    gevent.sleep(5)
    host.disconnect()
    while time.monotonic() - started < target.debian_reboot_timeout_s:
        gevent.sleep(2)
        host.connect(show_errors=False)
        if not host.connected:
            continue
        _, out = host.run_shell_command(
            "ps -o etimes= -p 1; systemctl is-system-running --wait", _sudo=True)
        pid1_age, status = (out.stdout.split() + ["", ""])[:2]
        if pid1_age.isdigit() and int(pid1_age) < time.monotonic() - started:  # a new boot
            if status in ("running", "degraded"):
                return
        host.disconnect()
    raise RuntimeError(f"{target.name} did not come back within debian_reboot_timeout_s "
                       f"({target.debian_reboot_timeout_s} s) of its reboot")


def converge() -> None:
    """The deploy for this host, planned now (after the reboot) so its facts are the new
    release's: pyinfra runs operations declared while it executes at once (nested)."""
    local.include("deploy.py")


def sources_to_new_release() -> None:
    """Every apt source naming the old release (the main archive, -updates, -security)."""
    paths = [*(["/etc/apt/sources.list"] if host.get_fact(File, "/etc/apt/sources.list") else []),
             *host.get_fact(FindFiles, path="/etc/apt/sources.list.d", maxdepth=1,
                            regex=r".*\.\(list\|sources\)")]
    for path in paths:
        files.replace(name=f"{path}: {before} -> {to}", path=path,
                      text=rf"\b{before}\b", replace=to, flags=["g"])


def back_in_election() -> None:
    """The balancer's hold is released. The first of the pair has the higher priority and takes
    the floating IP back: its peer, the holder, is quiesced, then hands the IP over at once."""
    takes_ip = st.group("loadbalancers")[0].name == target.name
    holder = takes_ip and host.name in [lb.name for lb in peers]
    if holder:
        server.shell(name="Quiesce the holder: new connections wait, open ones finish",
                     commands=[quiesce(vip, SOCKET, target.keepalived_handover_drain_s)])
    python.call(name=f"{target.name}: holder quiet", function=step_done)
    if host.name == target.name:
        server.shell(name="Back in the election", commands=[
            "systemctl is-active keepalived", release_into_election(10)])
    python.call(name=f"{target.name}: in the election", function=step_done)
    if holder:
        server.shell(name=f"Hand the floating IP over to {target.name}", commands=[HAND_OVER])
    if takes_ip and host.name == target.name:
        server.shell(name="The floating IP is back", commands=[holds_ip(vip, 15)])
    python.call(name=f"{target.name}: floating IP back", function=step_done)
    if holder:
        server.shell(name="New connections accepted again", commands=[unquiesce(vip)])


# Every host's run of this file asks the target for its facts: once, not seven times at once.
release = once("upgrade_preflight", preflight)

# 1. Out of service.
if "webservers" in target.groups and "loadbalancers" in host.groups:
    server.shell(name=f"Drain {target.name} in HAProxy",
                 commands=[drain(target.name, settings.haproxy_drain_timeout_s)])
if "loadbalancers" in target.groups and host.name == target.name:
    # Held, so keepalived stays out of the election until step 3 whatever starts it (a
    # package's postinst, the reboot, the deploy); quiesced first, so no request is cut.
    server.shell(name="Quiesce: new connections wait, open ones finish",
                 commands=[quiesce(vip, SOCKET, target.keepalived_handover_drain_s)])
    server.shell(name="Hold out of the election, stop keepalived: the floating IP moves",
                 commands=[f"{HOLD} && systemctl stop keepalived",
                           holds_ip(vip, 5, present=False)])
    server.shell(name="New connections accepted again", commands=[unquiesce(vip)])
# pyinfra orders the operations of different hosts only through the ones they share.
python.call(name=f"{target.name}: let go of the floating IP", function=step_done)
if "loadbalancers" in target.groups and host.name in [lb.name for lb in peers]:
    server.shell(name=f"The floating IP is on {host.name}", commands=[holds_ip(vip, 10)])
python.call(name=f"{target.name}: out of service", function=step_done)

# 2. The upgrade and the reboot (unless a run before this one did them), then the deploy.
if host.name == target.name and release == before:
    sources_to_new_release()
    apt.update(name=f"apt sources of {to}")
    apt.upgrade(name="Upgrade, step 1: no new packages")
    apt.dist_upgrade(name="Upgrade, step 2: full-upgrade", auto_remove=True)
    python.call(name=f"Reboot {target.name} and wait for it", function=reboot_and_wait)
if host.name == target.name:
    python.call(name=f"Deploy {target.name} on Debian {to}", function=converge)
python.call(name=f"{target.name}: upgraded", function=step_done)

# 3. Back in service.
if "webservers" in target.groups and host.name == target.name:
    server.shell(name=f"{target.name} answers its health path",
                 commands=[health_check(target, "its upgrade")])
if "etcd" in target.groups and host.name == target.name:
    # A member back in the cluster before the next host goes down: etcd keeps its majority.
    server.shell(name=f"{target.name}'s etcd member is healthy", commands=[
        f"for i in $(seq 150); do curl -sf http://{target.address}:{target.etcd_metrics_port}"
        "/health | grep -q '\"health\":\"true\"' && exit 0; sleep 0.2; done; "
        "systemctl status --no-pager etcd; exit 1"])
python.call(name=f"{target.name}: healthy", function=step_done)
if "webservers" in target.groups and "loadbalancers" in host.groups:
    server.shell(name=f"Put {target.name} back in rotation",
                 commands=[ready(target.name, target.app_health_timeout_s)])
if "loadbalancers" in target.groups:
    back_in_election()
if "db_replicas" in target.groups and host.name == target.name:
    server.shell(name=f"{target.name} replicates and has caught up", commands=[
        "for i in $(seq 300); do " + sql("SHOW SLAVE STATUS\\G") + " | grep -q "
        "'Seconds_Behind_Master: 0' && exit 0; sleep 0.2; done; "
        + sql("SHOW SLAVE STATUS\\G") + "; exit 1"])
