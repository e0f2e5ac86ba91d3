"""Rotate the load balancers' TLS certificate without dropping a connection.

When to use it
  Before the certificate expires (alert CertificateExpiresSoon), when its key may have leaked,
  or when you have a new certificate from your CA.

    pyinfra -y inventories/<env>.py ops/rotate_certificate.py

What it does
  - The certificate: with the stack's own CA (no haproxy_tls_pem_file secret), a new key and
    certificate are issued into secrets/<env>-ca/site.pem (webstack/tls.py). With your own
    certificate, replace the file haproxy_tls_pem_file names first; that file is installed.
  - On each load balancer: the new PEM is installed, `haproxy -c` checks it, and HAProxy is
    reloaded hitlessly (new workers take new connections, old ones finish theirs). If the check
    or the reload fails, the previous certificate is put back and keeps being served.
  - Then it checks that the running HAProxy serves the new certificate (runtime API
    `show ssl cert`: the serial number).

How to undo
  The previous certificate is not kept. To go back to a supplied one, point
  haproxy_tls_pem_file at it and run this again. Runbook: docs/runbooks.md, "Rotate the TLS
  certificate".
"""

from pathlib import Path

from pyinfra import host
from pyinfra.operations import server

from webstack import tls
from webstack.context import me, stack
from webstack.haproxy import CHECK, PEM_PATH, RELOAD, SOCKET
from webstack.ops import validated_file
from webstack.run_state import shared


def new_certificate(lb) -> Path:
    """The PEM to install: issued once per run (both balancers get the same one)."""
    supplied = stack().secrets.get("haproxy_tls_pem_file")
    if supplied:
        return Path(supplied)
    if "rotate_certificate" not in shared:
        shared["rotate_certificate"] = tls.issue(lb.stack_env, lb.haproxy_tls_names,
                                                 [str(lb.keepalived_floating_ip)], renew=True)
    return shared["rotate_certificate"]


if "loadbalancers" in host.groups:
    pem = new_certificate(me())
    serial = tls.serial_hex(pem)
    validated_file(str(pem), PEM_PATH, validate=CHECK, activate=RELOAD)
    served = (f"echo 'show ssl cert {PEM_PATH}' | socat stdio {SOCKET} "
              "| sed -n 's/^Serial: 0*//p'")
    server.shell(name=f"HAProxy serves the certificate with serial {serial}",
                 commands=[f'[ "$({served})" = {serial} ] || {{ echo "ha-webstack: HAProxy '
                           f'serves serial $({served}), not {serial}" >&2; exit 1; }}'])
