"""Fixtures for the native asyncpg integration: the real stack, short TTLs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vaultdb import CredentialProvider
from vaultdb.testing import VaultDBStack


@pytest.fixture
def make_provider(vaultdb_provider_factory: Callable[..., CredentialProvider]
                  ) -> Callable[..., CredentialProvider]:
    return vaultdb_provider_factory


@pytest.fixture
def dsn(vaultdb_stack: VaultDBStack) -> str:
    pg = vaultdb_stack.postgres
    return f"postgresql://{pg.host}:{pg.port}/{pg.database}"
