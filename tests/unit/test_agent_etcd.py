"""The agent's etcd side: the key layout (agent/keys.py) and the client (agent/etcd_client.py),
the client against a real three-member cluster on 127.0.0.1 with TLS client certificates both
ways, configured as the deploy configures one (tests/unit/etcd_cluster.py).

Checked live: a compare-and-swap race between two agents has exactly one winner; a lease not kept
alive expires and takes the leader key with it, one kept alive does not; compare-and-delete
leaves another's value alone; a member stopped or hanging costs nothing but one timeout; with
two members down a linearizable read fails instead of answering stale; a client without a
certificate, or with one from another CA, is refused. One cluster serves the whole module
(about 10-20 s); tests that stop members bring them back.
"""

import ipaddress
import socket
import ssl
import threading
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.etcd_client import Client, EtcdError, Lease, tls_context
from agent.keys import Keys, Stamp
from tests.unit.etcd_cluster import Cluster, needs_etcd, running_cluster
from tests.unit.stacks import secrets_in_environment
from webstack import tls

# The key layout: no cluster needed.

LAYOUT = Keys("lab")


@pytest.mark.parametrize(("key", "path"), [
    (LAYOUT.prefix, "/ha-webstack/lab/"),
    (LAYOUT.leader, "/ha-webstack/lab/leader"),
    (LAYOUT.sync_standby, "/ha-webstack/lab/sync_standby"),
    (LAYOUT.degraded, "/ha-webstack/lab/degraded"),
    (LAYOUT.last_failover, "/ha-webstack/lab/last_failover"),
    (LAYOUT.initialized, "/ha-webstack/lab/initialized"),
    (LAYOUT.gtid("db-02"), "/ha-webstack/lab/members/db-02/gtid"),
])
def test_the_key_layout(key, path):
    assert key == path


@pytest.mark.parametrize("name", ["", "a/b", " lab", "la b", "lab\n"])
def test_names_that_would_break_the_layout_are_refused(name):
    with pytest.raises(ValueError, match="no '/'"):
        Keys(name)
    with pytest.raises(ValueError, match="no '/'"):
        LAYOUT.gtid(name)


def test_published_gtids_are_read_from_a_prefix_read():
    kvs = {LAYOUT.leader: "db-01", LAYOUT.gtid("db-01"): "0-1-100",
           LAYOUT.gtid("db-02"): "0-1-98", LAYOUT.prefix + "members/db-03/other": "x",
           "/ha-webstack/other/members/db-09/gtid": "0-9-1"}
    assert LAYOUT.published_gtids(kvs) == {"db-01": "0-1-100", "db-02": "0-1-98"}


@pytest.mark.parametrize("text", ["", "db-02", '{"by": "db-02"}', '{"at": "soon", "by": "x"}',
                                  "[1, 2]"])
def test_a_value_that_is_not_a_stamp_is_refused(text):
    with pytest.raises(ValueError, match="not a stamp"):
        Stamp.decode(text)


def test_a_stamp_is_the_same_text_every_time():
    stamp = Stamp(by="db-02", at=1_800_000_000.25)
    assert stamp.encode() == '{"at":1800000000.25,"by":"db-02"}'
    assert Stamp.decode(stamp.encode()) == stamp


# Lease arithmetic: no cluster needed.

@pytest.mark.parametrize(("ttl", "now", "left"), [
    (5, 100.0, 5.0),  # just sent
    (5, 103.5, 1.5),
    (5, 105.0, 0.0),
    (5, 200.0, 0.0),  # long gone: never negative
    (0, 100.0, 0.0),  # etcd answered that the lease is gone
])
def test_lease_left_is_counted_from_when_the_request_was_sent(ttl, now, left):
    assert Lease(id=7, ttl=ttl, sent_at=100.0).left(now) == left


@pytest.fixture
def stack_pki(tmp_path, monkeypatch) -> tuple[str, str, str]:
    """A stack CA in tmp_path: its certificate, and a host certificate and key it issued."""
    monkeypatch.setattr(tls, "ca_dir", lambda env: tmp_path / f"{env}-ca")
    cert, key = tls.issue_host("unittest", "db-01", "127.0.0.1")
    return str(tls.ca_dir("unittest") / "ca.crt"), str(cert), str(key)


def test_strict_verification_on_every_python(stack_pki):
    context = tls_context(*stack_pki)
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize("url", ["http://127.0.0.1:2379", "https://127.0.0.1", "127.0.0.1:2379"])
def test_an_endpoint_must_be_https_with_a_port(url):
    with pytest.raises(ValueError, match="https://address:port"):
        Client([url], ssl.create_default_context())


def test_a_member_certificate_that_fails_strict_verification_is_reported(tmp_path, stack_pki):
    """What Python 3.13 refuses by default (here a certificate without an authority key
    identifier) is refused on 3.11 too, and the error says why: never relaxed in silence."""
    ca_cert, ca_key = tls.ensure_ca("unittest")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lax")])
    lax = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject)
           .public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(ca_cert.not_valid_before_utc)
           .not_valid_after(ca_cert.not_valid_after_utc)
           .add_extension(x509.SubjectAlternativeName(
               [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    pem = tmp_path / "lax.pem"
    pem.write_bytes(lax.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pem)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=_handshake_once, args=(listener, server), daemon=True).start()
        client = Client([f"https://127.0.0.1:{listener.getsockname()[1]}"],
                        tls_context(*stack_pki))
        with pytest.raises(EtcdError, match="Missing Authority Key Identifier"):
            client.get("x")


def _handshake_once(listener: socket.socket, context: ssl.SSLContext) -> None:
    conn, _ = listener.accept()
    try:
        context.wrap_socket(conn, server_side=True).close()
    except (ssl.SSLError, OSError):
        conn.close()  # the client refused our certificate: what the test wants


# Against a real cluster.

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        secrets_in_environment(mp)
        with running_cluster(tmp_path_factory.mktemp("etcd"), mp) as c:
            c.wait_healthy()
            yield c


def _client(c: Cluster, members=None, timeout: float = 1.0) -> Client:
    """The agent's client as db-01 has it: its certificate, every member (or `members`)."""
    urls = [m.client_url for m in (members or c.members)]
    return Client.from_files(urls, c.client["ca"], c.client["cert"], c.client["key"], timeout)


@pytest.fixture
def keys() -> Keys:
    """A cluster prefix of this test's own."""
    return Keys(f"test-{uuid.uuid4().hex[:8]}")


def _until(predicate, timeout: float, pause: float = 0.1):
    """Poll `predicate` until it returns something true or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(pause)
    return result


@needs_etcd
def test_keys_are_written_read_and_deleted(cluster, keys):
    client = _client(cluster)
    assert client.get(keys.leader) is None
    client.put(keys.sync_standby, "db-02")
    client.put(keys.gtid("db-01"), "0-1-100")
    # Neighbours of the prefix, outside it: the cluster's name alone, and the first key after.
    client.put(keys.prefix.rstrip("/"), "not in the prefix")
    client.put(keys.prefix.rstrip("/") + "0", "not in the prefix")
    assert client.get(keys.sync_standby) == "db-02"
    assert client.get(keys.sync_standby, linearizable=False) == "db-02"
    assert client.get_prefix(keys.prefix) == {keys.sync_standby: "db-02",
                                              keys.gtid("db-01"): "0-1-100"}
    assert client.delete(keys.sync_standby) is True
    assert client.delete(keys.sync_standby) is False  # a retried delete: still done
    assert client.get_prefix(keys.prefix) == {keys.gtid("db-01"): "0-1-100"}


@needs_etcd
def test_a_compare_and_swap_race_has_exactly_one_winner(cluster, keys):
    agents = {name: _client(cluster) for name in ("db-01", "db-02")}
    leases = {name: client.grant(10) for name, client in agents.items()}
    for round_ in range(20):
        key = f"{keys.leader}-{round_}"
        start, won = threading.Barrier(len(agents)), {}

        def race(name, key=key, start=start, won=won):
            start.wait()
            won[name] = agents[name].create(key, name, leases[name].id)

        threads = [threading.Thread(target=race, args=(name,)) for name in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        winners = [name for name, w in won.items() if w]
        assert len(winners) == 1, won
        assert agents["db-01"].get(key) == winners[0]
    for name, client in agents.items():
        client.revoke(leases[name].id)


@needs_etcd
@pytest.mark.parametrize(("again", "won"), [
    pytest.param(dict(same_value=True, same_lease=True), True,
                 id="my own write, its answer lost: retried, it is still mine"),
    pytest.param(dict(same_value=True, same_lease=False), False,
                 id="my name under another lease: not mine"),
    pytest.param(dict(same_value=False, same_lease=True), False,
                 id="another value under my lease: not mine"),
])
def test_create_recognises_only_its_own_earlier_write(cluster, keys, again, won):
    client = _client(cluster)
    mine, other = client.grant(10), client.grant(10)
    assert client.create(keys.leader, "db-01", mine.id) is True
    value = "db-01" if again["same_value"] else "db-02"
    lease = mine if again["same_lease"] else other
    assert client.create(keys.leader, value, lease.id) is won
    assert client.get(keys.leader) == "db-01"
    client.revoke(mine.id)
    client.revoke(other.id)


@needs_etcd
def test_a_lease_not_kept_alive_expires_and_takes_the_key_with_it(cluster, keys):
    client = _client(cluster)
    lease = client.grant(2)  # etcd's minimum with the deploy's raft timing
    assert client.create(keys.leader, "db-01", lease.id)
    assert client.get(keys.leader) == "db-01"
    # etcd revokes expired leases on a timer (every 0.5 s): a second after the ttl is plenty.
    assert _until(lambda: client.get(keys.leader) is None, timeout=lease.ttl + 3)
    assert lease.left() == 0  # my estimate had it gone before etcd did
    assert client.time_to_live(lease.id) is None
    assert client.keepalive(lease.id).ttl == 0  # too late: a holder must step down
    assert client.create(keys.leader, "db-02", client.grant(2).id)  # the key is free again


@needs_etcd
def test_keepalive_extends_the_lease(cluster, keys):
    client = _client(cluster)
    lease = client.grant(2)
    assert client.create(keys.leader, "db-01", lease.id)
    until = time.monotonic() + 3 * lease.ttl  # well past the first expiry
    while time.monotonic() < until:
        renewed = client.keepalive(lease.id)
        assert renewed.ttl == lease.ttl and renewed.sent_at > lease.sent_at
        assert 0 < renewed.left() <= renewed.ttl
        assert client.get(keys.leader) == "db-01"
        time.sleep(0.5)  # the renewal's pace, well inside the ttl
    assert client.time_to_live(lease.id) >= 1
    assert client.lease_keys(lease.id) == [keys.leader]  # what a restarted holder checks
    client.revoke(lease.id)
    assert client.lease_keys(lease.id) is None
    assert client.get(keys.leader) is None  # revoking deletes the key at once
    client.revoke(lease.id)  # a retried revoke: already done, no error


@needs_etcd
def test_compare_and_delete_refuses_a_foreign_value(cluster, keys):
    client = _client(cluster)
    client.put(keys.leader, "db-02")
    assert client.compare_and_delete(keys.leader, "db-01") is False
    assert client.get(keys.leader) == "db-02"
    assert client.compare_and_delete(keys.leader, "db-02") is True
    assert client.get(keys.leader) is None
    assert client.compare_and_delete(keys.leader, "db-02") is False  # nothing left to delete


@needs_etcd
def test_an_error_names_the_member_and_the_reason(cluster, keys):
    client = _client(cluster)
    with pytest.raises(EtcdError) as refused:
        client.put(keys.leader, "db-01", lease=12345)
    assert refused.value.endpoint in client.endpoints
    assert "lease not found" in refused.value.reason


@needs_etcd
def test_a_hanging_member_costs_one_timeout_then_the_next_answers(cluster, keys):
    """A member that accepts connections and never answers (frozen, or cut off after the
    handshake): the request goes on to the next member, and later ones go there first."""
    with socket.create_server(("127.0.0.1", 0)) as black_hole:  # accepts, never answers
        hanging = f"https://127.0.0.1:{black_hole.getsockname()[1]}"
        client = Client.from_files([hanging] + [m.client_url for m in cluster.members],
                                   cluster.client["ca"], cluster.client["cert"],
                                   cluster.client["key"], timeout=0.5)
        started = time.monotonic()
        client.put(keys.leader, "db-01")
        assert time.monotonic() - started >= 0.5  # it did wait for the hanging member
        started = time.monotonic()
        assert client.get(keys.leader) == "db-01"
        assert time.monotonic() - started < 0.5  # not again: the member that answered first


@needs_etcd
def test_one_member_stopped_operations_go_through_another(cluster, keys):
    first, rest = cluster.members[0], cluster.members[1:]
    cluster.kill(first.name)
    try:
        # If `first` led the cluster, the others elect a new leader (about a second); meanwhile
        # etcd answers nobody, and the agent's next tick asks again. Here: wait for it.
        assert _until(lambda: _answers(_client(cluster, members=rest)), timeout=10)
        client = _client(cluster)  # asks `first` first
        lease = client.grant(5)
        assert client.create(keys.leader, "db-01", lease.id)
        assert client.keepalive(lease.id).ttl == 5
        assert client.get(keys.leader) == "db-01"
        assert client.compare_and_delete(keys.leader, "db-01")
        client.revoke(lease.id)
    finally:
        _restart(cluster, first.name)


def _answers(client: Client) -> bool:
    try:
        client.get("/ha-webstack/")
        return True
    except EtcdError:
        return False


@needs_etcd
def test_two_members_stopped_a_linearizable_read_fails_rather_than_answer_stale(cluster, keys):
    client = _client(cluster, timeout=0.5)
    client.put(keys.leader, "db-01")
    survivor = cluster.members[2]
    for m in cluster.members[:2]:
        cluster.kill(m.name)
    try:
        with pytest.raises(EtcdError) as lost:
            client.get(keys.leader)
        assert "no member answered" in lost.value.reason
        assert all(m.client_url in lost.value.reason for m in cluster.members)
        # The survivor still has its local copy: what a serializable read returns.
        alone = _client(cluster, members=[survivor])
        assert alone.get(keys.leader, linearizable=False) == "db-01"
    finally:
        _restart(cluster, *(m.name for m in cluster.members[:2]))


def _restart(cluster: Cluster, *names: str) -> None:
    """Stopped members back, as the deploy leaves them (`existing`), and the cluster whole."""
    for name in names:
        cluster.start(name, "existing")
    assert len(cluster.wait_healthy()) == len(cluster.members)


@needs_etcd
def test_a_client_without_a_certificate_is_refused(cluster, keys):
    bare = Client([m.client_url for m in cluster.members],
                  ssl.create_default_context(cafile=cluster.client["ca"]))
    with pytest.raises(EtcdError) as refused:
        bare.get(keys.leader)
    assert all(m.client_url in refused.value.reason for m in cluster.members)
    assert any("client didn't provide a certificate" in cluster.log(m.name)
               for m in cluster.members)


@needs_etcd
def test_a_certificate_from_another_ca_is_refused(cluster, keys):
    stranger = cluster._install_pki("db-01", cluster.root / f"stranger-{keys.cluster}",
                                    env="stranger")
    client = Client.from_files([m.client_url for m in cluster.members], cluster.client["ca"],
                               stranger["cert"], stranger["key"])
    with pytest.raises(EtcdError, match="no member answered"):
        client.get(keys.leader)
