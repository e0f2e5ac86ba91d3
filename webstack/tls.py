"""The stack's own CA and the load balancers' certificate, made on the control machine.

Used when no certificate is supplied (secret haproxy_tls_pem_file): the deploy creates a CA once
per environment in the ignored secrets/<env>-ca/ and issues an ECDSA P-256 certificate for the
floating IP and the configured names. Clients verify it with secrets/<env>-ca/ca.crt. The
certificate is re-issued only when its names change or it nears expiry, so re-runs change nothing.
The same CA issues each etcd host its own certificate (`issue_host`, docs/etcd.md).
Written with the `cryptography` library (already a dependency of paramiko) rather than shelling
out to openssl, so it behaves the same on every control machine.
"""

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webstack import ROOT

RENEW_BEFORE = dt.timedelta(days=30)


def ca_dir(env: str) -> Path:
    return ROOT / "secrets" / f"{env}-ca"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _has(cert: x509.Certificate, extension: type) -> bool:
    try:
        cert.extensions.get_extension_for_class(extension)
        return True
    except x509.ExtensionNotFound:
        return False


def ensure_ca(env: str):
    """The env's CA (certificate, key), made once. A CA certificate from before the key
    identifiers (which strict verifiers, Python 3.13's default among them, require) is
    re-issued with the same key, subject and lifetime: what it signed still verifies."""
    d = ca_dir(env)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = d / "ca.crt", d / "ca.key"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        if _has(cert, x509.SubjectKeyIdentifier):
            return cert, key
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(key_path, key)
        not_before = _now() - dt.timedelta(minutes=5)
        not_after = _now() + dt.timedelta(days=3650)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ha-webstack {env} CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _sans(names: list[str], ips: list[str]) -> list[x509.GeneralName]:
    return ([x509.DNSName(n) for n in names]
            + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips])


def _still_good(pem_path: Path, sans: list[x509.GeneralName], ca_cert=None) -> bool:
    """The certificate at pem_path has these names, is not near expiry, and (given ca_cert)
    was signed by that CA: one made anew would not verify it."""
    if not pem_path.exists():
        return False
    cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if not (set(have) == set(sans) and cert.not_valid_after_utc - _now() > RENEW_BEFORE
            and _has(cert, x509.AuthorityKeyIdentifier)):
        return False
    if ca_cert is None:
        return True
    issued_by = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return issued_by.key_identifier == ca_id.digest


def _leaf(ca_cert, ca_key, key, cn: str, sans: list[x509.GeneralName], usages: list,
          days: int) -> x509.Certificate:
    """An end-entity certificate for `key`, signed by the CA, for `usages` (extended key
    usages: server and/or client authentication)."""
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))


def issue(env: str, names: list[str], ips: list[str], days: int = 397,
          renew: bool = False) -> Path:
    """Path of a PEM (certificate, then key) for these names, issued by the env's CA.

    An existing one is kept unless its names changed, it nears expiry, or `renew` asks for a
    new key and certificate (ops/rotate_certificate.py)."""
    sans = _sans(names, ips)
    pem_path = ca_dir(env) / "site.pem"
    ca_cert, ca_key = ensure_ca(env)
    if _still_good(pem_path, sans) and not renew:
        return pem_path
    key = ec.generate_private_key(ec.SECP256R1())
    cn = names[0] if names else ips[0]
    cert = _leaf(ca_cert, ca_key, key, cn, sans, [ExtendedKeyUsageOID.SERVER_AUTH], days)
    pem_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                         + ca_cert.public_bytes(serialization.Encoding.PEM)
                         + key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    pem_path.chmod(0o600)
    return pem_path


def issue_host(env: str, name: str, address: str, days: int = 397,
               renew: bool = False) -> tuple[Path, Path]:
    """Paths of a certificate and its key for one host, issued by the env's CA: both server and
    client authentication, for the host's name and address (an etcd member serves clients and
    peers and is a client of its peers; a database agent is etcd's client).

    Kept in secrets/<env>-ca/hosts/<name>.crt and .key, re-issued (new key too) only when the
    names change, expiry nears, the CA is not the one that signed it, or `renew` asks."""
    ca_cert, ca_key = ensure_ca(env)
    sans = _sans([name], [address])
    d = ca_dir(env) / "hosts"
    d.mkdir(exist_ok=True, mode=0o700)
    stem = name.replace("/", "_")  # pyinfra's "@connector/name" host names
    cert_path, key_path = d / f"{stem}.crt", d / f"{stem}.key"
    if _still_good(cert_path, sans, ca_cert) and key_path.exists() and not renew:
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(ca_cert, ca_key, key, name, sans,
                 [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], days)
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def serial_hex(pem_path: Path) -> str:
    """The certificate's serial number as HAProxy prints it (`show ssl cert`): upper-case hex."""
    cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    return format(cert.serial_number, "X")
