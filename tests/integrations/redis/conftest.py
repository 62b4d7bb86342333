"""Fixtures for the redis integration: one real redis-server per session, wired to the stack's
OpenBao, and providers for a Redis role of this test with short TTLs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from vaultdb import CredentialProvider, TokenAuth
from vaultdb.testing import VaultDBStack, VaultRedis


@pytest.fixture
def make_provider(vaultdb_redis: VaultRedis, vaultdb_stack: VaultDBStack,
                  vaultdb_role_name: str) -> Iterator[Callable[..., CredentialProvider]]:
    """``make(default_ttl=4, max_ttl=6, drain_seconds=1.0, acl_rules=..., **provider_kwargs)``:
    a Redis role named ``vaultdb_role_name`` and a token-login provider for it.

    With 4 s / 6 s leases the first renewal is capped, so each lease rotates about 4.5 s after
    it was issued (as in the SQL tests).
    """
    made: list[CredentialProvider] = []

    def make(*, default_ttl: int = 4, max_ttl: int = 6, drain_seconds: float = 1.0,
             acl_rules: tuple[str, ...] | None = None, **kwargs: Any) -> CredentialProvider:
        role_kwargs = {} if acl_rules is None else {"acl_rules": acl_rules}
        vaultdb_redis.create_role(vaultdb_role_name, default_ttl=default_ttl, max_ttl=max_ttl,
                                  **role_kwargs)
        kwargs.setdefault("auth", TokenAuth(token=vaultdb_stack.create_token(ttl=600)))
        kwargs.setdefault("handle_sigterm", False)
        provider = CredentialProvider(vaultdb_role_name, vault_addr=vaultdb_stack.vault_addr,
                                      drain_seconds=drain_seconds, **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()
