"""vaultdb._pem.certificate_validity: the dates CertAuth checks before asking Vault."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vaultdb._pem import certificate_validity

UTC = datetime.timezone.utc


def pem(not_before: datetime.datetime, not_after: datetime.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_utctime_and_generalizedtime_dates() -> None:
    start = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    end = datetime.datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC)  # past 2049: GeneralizedTime
    assert certificate_validity(pem(start, end)) == (start, end)
    assert certificate_validity(b"junk\n" + pem(start, start) + b"more") == (start, start)


def test_anything_else_is_none() -> None:
    assert certificate_validity(b"") is None
    assert certificate_validity(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
                                ) is None
