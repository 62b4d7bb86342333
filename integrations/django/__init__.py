"""Django integration: a PostgreSQL backend with Vault/OpenBao dynamic credentials.

``ENGINE = "vaultdb.integrations.django.postgresql"`` plus a ``VAULT`` dict in the
``DATABASES`` entry; add ``"vaultdb.integrations.django"`` to ``INSTALLED_APPS`` for the
system checks. See docs/django.md. Importing this package does not import Django.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaultdb import CredentialProvider

__all__ = ["provider_for"]


def provider_for(alias: str = "default") -> CredentialProvider:
    """The provider serving database ``alias`` (for health views, metrics, listeners)."""
    from .registry import provider_for as _provider_for

    return _provider_for(alias)
