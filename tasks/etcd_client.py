"""The database agents' side of etcd on every database host: a client certificate from the stack
CA (root only: it is what lets a process write the leader key) and etcdctl with its settings.

The database agent (tasks/db_agent.py) uses them where mysql_failover is "automatic". See
docs/etcd.md.
"""

from pyinfra import host
from pyinfra.operations import apt, files

from webstack import etcd, tls
from webstack.context import me, stack

s = me()
pki = etcd.pki_paths(etcd.CLIENT_PKI)
cert, key = tls.issue_host(s.stack_env, host.name, s.address)

apt.packages(name="etcdctl", packages=["etcd-client"], no_recommends=True)
files.directory(name="etcd client directory", path=etcd.CLIENT_PKI, user="root", group="root",
                mode="700")
files.put(name="etcd client: the stack CA", src=str(tls.ca_dir(s.stack_env) / "ca.crt"),
          dest=pki["ca"], mode="644")
files.put(name="etcd client: certificate", src=str(cert), dest=pki["cert"], mode="600")
files.put(name="etcd client: key", src=str(key), dest=pki["key"], mode="600")
files.template(name="etcd client: etcdctl settings", src="templates/etcd/etcdctl.env.j2",
               dest=f"{etcd.CLIENT_PKI}/etcdctl.env", mode="600", pki=pki,
               pki_dir=etcd.CLIENT_PKI, endpoints=etcd.endpoints(stack()))
