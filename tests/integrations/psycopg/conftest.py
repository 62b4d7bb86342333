"""Fixtures for the psycopg integration: providers on the real stack with short TTLs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from vaultdb import CredentialProvider, TokenAuth
from vaultdb.testing import VaultDBStack


@pytest.fixture
def make_provider(vaultdb_stack: VaultDBStack, vaultdb_role_name: str
                  ) -> Iterator[Callable[..., CredentialProvider]]:
    """Create the database role, then a provider for it logged in with an app-policy token.

    With ``default_ttl=4, max_ttl=6`` the first renewal (at about 2.7 s) is capped, so every
    lease rotates about 4.5 s after it was issued and is revoked a second later (the drain
    window). Tighter TTLs leave the renewer too little slack on a loaded machine: Vault refuses
    to renew a lease with less than a second before its max TTL.
    """
    made: list[CredentialProvider] = []

    def make(*, default_ttl: int = 4, max_ttl: int = 6, drain_seconds: float = 1.0,
             role_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> CredentialProvider:
        role = vaultdb_role_name
        vaultdb_stack.create_database_role(role, default_ttl=default_ttl, max_ttl=max_ttl,
                                           **(role_kwargs or {}))
        kwargs.setdefault("auth", TokenAuth(token=vaultdb_stack.create_token(ttl=600)))
        provider = CredentialProvider(role, vault_addr=vaultdb_stack.vault_addr,
                                      drain_seconds=drain_seconds, handle_sigterm=False,
                                      **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


@pytest.fixture
def conninfo(vaultdb_stack: VaultDBStack) -> str:
    """Where the database is, without user or password."""
    pg = vaultdb_stack.postgres
    return f"host={pg.host} port={pg.port} dbname={pg.database}"
