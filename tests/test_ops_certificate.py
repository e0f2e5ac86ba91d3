"""ops/rotate_certificate.py: a new certificate on both balancers, under HTTPS requests."""

import ssl

import pytest
from cryptography import x509

from lab.toolkit.deploy import changed_operations, run_deploy
from lab.toolkit.hosts import group, haproxy_runtime
from lab.toolkit.streams import Stream
from webstack.haproxy import PEM_PATH

pytestmark = pytest.mark.lab
BALANCERS = group("loadbalancers")


def served_serial(lab) -> int:
    """The serial of the certificate the floating IP presents to a client."""
    pem = ssl.get_server_certificate((lab.floating_ip, 443))
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def loaded_serial(lb: str) -> int:
    """The serial of the certificate a balancer's running HAProxy has loaded."""
    out = haproxy_runtime(lb, f"show ssl cert {PEM_PATH}")
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("Serial:")), 16)


def test_rotation_drops_no_request_and_both_balancers_serve_the_new_certificate(lab):
    before = served_serial(lab)
    # The stream spans the rotation: answers under the old certificate before the deploy and
    # under the new one after it (the deploy alone may take under two seconds).
    with Stream("/healthz", rate=10) as stream:
        assert stream.wait_for(10)
        result = run_deploy(deploy="ops/rotate_certificate.py")
        assert stream.wait_for(10)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"\ncertificate rotation: {len(stream.records)} HTTPS requests (each a new TLS "
          f"connection), {len(stream.failures)} failed")
    assert stream.failures == []
    after = served_serial(lab)
    assert after != before
    assert {lb: loaded_serial(lb) for lb in BALANCERS} == dict.fromkeys(BALANCERS, after)
    # The deploy keeps the rotated certificate (other drift, e.g. the apt cache, is not ours).
    changed = changed_operations(run_deploy("--json", "--limit", "loadbalancers"))
    assert [op for op in changed if "site.pem" in op or "HAProxy" in op] == []
