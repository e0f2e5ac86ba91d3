"""etcd on the members of the `etcd` group: the cluster the database agents will use (issue #15).

Debian's etcd-server, configured through /etc/default/etcd (its unit's EnvironmentFile), as a
static cluster of the group's hosts; peers and clients over TLS with certificates from the stack
CA, a certificate required both ways. The cluster is created once, by every member starting at
once; afterwards the file says "existing", and a changed config restarts one member at a time
so the others keep a majority. Reads EtcdSettings (group_data/etcd.py); see docs/etcd.md.
"""

from pyinfra import host, inventory
from pyinfra.facts.files import Directory
from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from webstack import etcd, tls
from webstack.context import me, stack

s = me()
cluster = etcd.members(stack())
member = next(m for m in cluster if m.name == host.name)
pki = etcd.pki_paths(etcd.MEMBER_PKI)


def has_data(name: str) -> bool | None:
    """Whether a member holds etcd data already (None: its host is not part of this run)."""
    other = inventory.get_host(name)
    if not other.connected:
        return None
    return bool(other.get_fact(Directory, f"{stack().host(name).etcd_data_dir}/member"))


try:
    state = etcd.initial_state({m.name: has_data(m.name) for m in cluster})
except ValueError as e:
    raise SystemExit(f"ha-webstack: {e}. No host was touched.") from None


def environment_file(state: str, name: str):
    return files.template(name=name, src="templates/etcd/etcd.default.j2", dest=etcd.ENV_FILE,
                          mode="644", **etcd.environment(s, member, cluster, state))


# On a systemd host the package starts etcd at once with its defaults; restarted below.
apt.packages(name="etcd", packages=["etcd-server", "etcd-client"], no_recommends=True)

cert, key = tls.issue_host(s.stack_env, host.name, s.address)
files.directory(name="etcd certificate directory", path=etcd.MEMBER_PKI, user="root",
                group="etcd", mode="750")
certificates = [
    files.put(name="etcd: the stack CA", src=str(tls.ca_dir(s.stack_env) / "ca.crt"),
              dest=pki["ca"], mode="644"),
    files.put(name="etcd: this member's certificate", src=str(cert), dest=pki["cert"],
              mode="644"),
    files.put(name="etcd: this member's key", src=str(key), dest=pki["key"], user="root",
              group="etcd", mode="640"),
]
files.directory(name="etcd data directory", path=s.etcd_data_dir, user="etcd", group="etcd",
                mode="700")
dropin = files.put(name="etcd starts after the network and restarts after a failure",
                   src="templates/etcd/etcd.service.conf",
                   dest="/etc/systemd/system/etcd.service.d/ha-webstack.conf")
config = environment_file(state, f"{etcd.ENV_FILE} (initial cluster state: {state})")

if state == "new":
    # Each member's start waits for a majority (the unit is Type=notify): all start together.
    systemd.service(name="Start etcd: create the cluster", service="etcd", running=True,
                    restarted=True, enabled=True, daemon_reload=True)
    environment_file("existing", f"{etcd.ENV_FILE}: the cluster exists, later starts join it")
else:
    systemd.service(name="Restart etcd, one member at a time (its configuration changed)",
                    service="etcd", running=True, restarted=True, daemon_reload=True,
                    _serial=True, _if=any_changed(config, dropin, *certificates))
systemd.service(name="etcd running and enabled", service="etcd", running=True, enabled=True)
# What the package's first start bootstrapped: a one-member cluster nothing uses.
files.directory(name="Remove the package's default etcd data", path=etcd.PACKAGE_DATA_DIR,
                present=False)
