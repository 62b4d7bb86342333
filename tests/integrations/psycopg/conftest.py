"""Fixtures for the psycopg integration: providers on the real stack with short TTLs."""

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
def conninfo(vaultdb_stack: VaultDBStack) -> str:
    """Where the database is, without user or password."""
    pg = vaultdb_stack.postgres
    return f"host={pg.host} port={pg.port} dbname={pg.database}"
