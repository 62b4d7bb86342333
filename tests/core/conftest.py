"""Fixtures for core tests: providers logging in with Kubernetes auth, short TTLs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vaultdb import CredentialProvider
from vaultdb.testing import VaultDBStack


@pytest.fixture
def token_file(tmp_path: Path, vaultdb_stack: VaultDBStack) -> Path:
    """The service-account token file the Kubernetes login of ``make_provider`` reads."""
    return vaultdb_stack.write_service_account_token(tmp_path / "sa" / "token")


@pytest.fixture
def make_provider(vaultdb_provider_factory: Callable[..., CredentialProvider], token_file: Path
                  ) -> Callable[..., CredentialProvider]:
    """``vaultdb_provider_factory`` with Kubernetes login, 3 s / 9 s leases, 60 s tokens."""

    def make(*, default_ttl: int = 3, max_ttl: int = 9, token_ttl: int = 60,
             **kwargs: Any) -> CredentialProvider:
        return vaultdb_provider_factory(default_ttl=default_ttl, max_ttl=max_ttl,
                                        token_ttl=token_ttl, login="kubernetes", **kwargs)

    return make
