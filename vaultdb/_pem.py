"""The validity dates of a PEM certificate, with the standard library only.

Used by :class:`vaultdb.auth.CertAuth` to say "your certificate expired at ..." before Vault
answers with a generic refusal. Only the outer DER structure is walked (Certificate ->
TBSCertificate -> Validity); anything unexpected returns ``None`` and Vault decides.
"""

from __future__ import annotations

import re
import ssl
from datetime import datetime, timezone

__all__ = ["certificate_validity"]

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``at``."""
    tag, size = der[at], der[at + 1]
    at += 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(der[at:at + count], "big")
        at += count
    if at + size > len(der):
        raise ValueError("truncated")
    return tag, at, at + size


def _time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSS: 50-99 are 19xx (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


def certificate_validity(pem: bytes) -> tuple[datetime, datetime] | None:
    """``(not_before, not_after)`` of the first certificate in ``pem``; ``None`` if unreadable."""
    found = _PEM.search(pem)
    if found is None:
        return None
    try:
        der = ssl.PEM_cert_to_DER_cert(found.group(0).decode("ascii"))
        _, cert, _ = _element(der, 0)
        _, tbs, _ = _element(der, cert)
        at = tbs
        tag, _, end = _element(der, at)
        if tag == 0xA0:  # explicit version
            at = end
        for _ in range(3):  # serial number, signature algorithm, issuer
            _, _, at = _element(der, at)
        _, validity, _ = _element(der, at)
        tag1, s1, e1 = _element(der, validity)
        tag2, s2, e2 = _element(der, e1)
        return _time(tag1, der[s1:e1]), _time(tag2, der[s2:e2])
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
