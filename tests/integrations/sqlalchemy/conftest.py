"""Fixtures for the sqlalchemy integration: providers on the real stack with short TTLs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vaultdb import CredentialProvider
from vaultdb.testing import VaultDBStack


@pytest.fixture
def make_provider(vaultdb_provider_factory: Callable[..., CredentialProvider]
                  ) -> Callable[..., CredentialProvider]:
    """Token login, 4 s / 6 s leases: each lease rotates about 4.5 s after it was issued.

    Tighter TTLs leave the renewer too little slack on a loaded machine: Vault refuses to renew
    a lease with less than a second before its max TTL.
    """
    return vaultdb_provider_factory


@pytest.fixture
def pg_url(vaultdb_stack: VaultDBStack) -> Callable[[str], str]:
    """``pg_url("postgresql+psycopg")``: a URL without user or password."""
    pg = vaultdb_stack.postgres
    return lambda driver: f"{driver}://{pg.host}:{pg.port}/{pg.database}"
