"""Fixtures for the sqlalchemy integration: providers on the real stack with short TTLs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


@pytest.fixture
def plugin_role(vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database role (4 s / 6 s leases) and the process environment the URL plugin reads.

    Shared providers the test makes are closed (and their leases revoked) at teardown.
    """
    from vaultdb import _registry

    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=4, max_ttl=6)
    for name, value in {"VAULT_ADDR": vaultdb_stack.vault_addr,
                        "VAULT_TOKEN": vaultdb_stack.create_token(ttl=600),
                        "VAULTDB_HANDLE_SIGTERM": "false", "VAULTDB_DRAIN_SECONDS": "1"}.items():
        monkeypatch.setenv(name, value)
    before = set(_registry._providers)
    yield vaultdb_role_name
    for key in set(_registry._providers) - before:
        _registry._providers.pop(key).close()
