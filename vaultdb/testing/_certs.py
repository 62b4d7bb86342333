"""A throwaway certificate authority for cert-auth tests (``cryptography``, a testing extra).

What cert-manager does in a cluster, done here: a CA that Vault's ``cert`` auth role trusts,
and client certificates it signs, written atomically so a reader never sees half a rotation.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path

__all__ = ["CertificateAuthority"]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pem-", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class CertificateAuthority:
    """A self-signed EC CA; :meth:`issue` writes a client certificate and its key."""

    def __init__(self, name: str = "vaultdb-test-ca") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self._cert = (
            x509.CertificateBuilder().subject_name(self._name).issuer_name(self._name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256()))

    @property
    def pem(self) -> str:
        """The CA certificate, to give to ``auth/cert/certs/<name>``."""
        from cryptography.hazmat.primitives import serialization

        return self._cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, common_name: str, cert_path: str | os.PathLike[str],
              key_path: str | os.PathLike[str], *, valid_for: float = 3600.0,
              valid_from: float = -300.0) -> tuple[Path, Path]:
        """Sign a client certificate for ``common_name``; ``valid_from``/``valid_for`` in
        seconds from now (negative: in the past, for an expired certificate)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        start = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=valid_from)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(seconds=valid_for))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(self._key, hashes.SHA256()))
        cert_file, key_file = Path(cert_path), Path(key_path)
        _write(key_file, key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        _write(cert_file, cert.public_bytes(serialization.Encoding.PEM))
        return cert_file, key_file
