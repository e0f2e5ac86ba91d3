"""tls.issue_host: one certificate per host from the stack CA, for servers and clients, kept
until its names, its expiry or its CA say otherwise (so a re-run uploads nothing new)."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from webstack import tls


@pytest.fixture(autouse=True)
def ca_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(tls, "ca_dir", lambda env: tmp_path / f"{env}-ca")


def cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_host_certificate_serves_and_authenticates_its_name_and_address():
    crt, key = tls.issue_host("unittest", "lb-01", "10.9.0.11")
    c = cert(crt)
    sans = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["lb-01"]
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["10.9.0.11"]
    usages = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert key.stat().st_mode & 0o777 == 0o600


def test_a_second_issue_keeps_certificate_and_key():
    first = [p.read_bytes() for p in tls.issue_host("unittest", "lb-01", "10.9.0.11")]
    again = [p.read_bytes() for p in tls.issue_host("unittest", "lb-01", "10.9.0.11")]
    assert first == again


def test_a_new_address_is_a_new_certificate_and_key():
    old = [p.read_bytes() for p in tls.issue_host("unittest", "lb-01", "10.9.0.11")]
    new = [p.read_bytes() for p in tls.issue_host("unittest", "lb-01", "10.9.0.99")]
    assert old[0] != new[0] and old[1] != new[1]


def test_nearing_expiry_is_reissued():
    crt, _ = tls.issue_host("unittest", "lb-01", "10.9.0.11", days=20)
    renewed, _ = tls.issue_host("unittest", "lb-01", "10.9.0.11")
    assert cert(renewed).not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)


def test_a_certificate_from_a_replaced_ca_is_reissued(tmp_path):
    crt, _ = tls.issue_host("unittest", "lb-01", "10.9.0.11")
    serial = cert(crt).serial_number
    for name in ("ca.crt", "ca.key"):
        (tmp_path / "unittest-ca" / name).unlink()
    reissued, _ = tls.issue_host("unittest", "lb-01", "10.9.0.11")
    assert cert(reissued).serial_number != serial
    ca = cert(tmp_path / "unittest-ca" / "ca.crt")
    cert(reissued).verify_directly_issued_by(ca)


def test_the_site_certificate_is_unchanged_by_host_certificates():
    site = tls.issue("unittest", ["shop.example"], ["10.9.0.10"]).read_bytes()
    tls.issue_host("unittest", "lb-01", "10.9.0.11")
    assert tls.issue("unittest", ["shop.example"], ["10.9.0.10"]).read_bytes() == site
