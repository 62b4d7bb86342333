"""Fixtures for core tests: a provider wired to the real stack with short TTLs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vaultdb import CredentialProvider, KubernetesAuth
from vaultdb.testing import VaultDBStack


@pytest.fixture
def token_file(tmp_path: Path, vaultdb_stack: VaultDBStack) -> Path:
    return vaultdb_stack.write_service_account_token(tmp_path / "sa" / "token")


@pytest.fixture
def make_provider(
    vaultdb_stack: VaultDBStack, vaultdb_role_name: str, token_file: Path
) -> Iterator[Callable[..., CredentialProvider]]:
    """Create the database + kubernetes roles, then a provider logging in with that role."""
    made: list[CredentialProvider] = []

    def make(*, default_ttl: int = 3, max_ttl: int = 9, token_ttl: int = 60,
             token_max_ttl: int = 0, drain_seconds: float = 1.0, **kwargs: Any
             ) -> CredentialProvider:
        role = vaultdb_role_name
        vaultdb_stack.create_database_role(role, default_ttl=default_ttl, max_ttl=max_ttl)
        vaultdb_stack.create_kubernetes_role(role, token_ttl=token_ttl,
                                             token_max_ttl=token_max_ttl)
        kwargs.setdefault("auth", KubernetesAuth(role=role, token_path=str(token_file)))
        provider = CredentialProvider(role, vault_addr=vaultdb_stack.vault_addr,
                                      drain_seconds=drain_seconds, handle_sigterm=False,
                                      **kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()
