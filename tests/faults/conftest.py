"""Fault scenarios: a provider, a SQLAlchemy engine and continuous queries on the real stack.

Each scenario builds a :class:`faultkit.Scenario`: database and Kubernetes roles of its own, a
provider logging in with a projected-style service-account token file (optionally through a
:class:`~vaultdb.testing.FaultProxy`), an engine from ``vaultdb.integrations.sqlalchemy`` and a
:class:`faultkit.QueryLoad` running ``SELECT 1`` on a few threads. ``Scenario.finish`` stops the
load, disposes of the engine, closes the provider and checks that no database user of the
scenario's role is left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faultkit import QueryLoad, Scenario
from vaultdb.integrations.sqlalchemy import create_engine

from vaultdb import CredentialProvider, KubernetesAuth
from vaultdb.testing import FaultProxy, VaultDBStack


@pytest.fixture
def proxy(vaultdb_stack: VaultDBStack) -> Iterator[FaultProxy]:
    with FaultProxy(vaultdb_stack.vault_addr, upstream_timeout=10) as p:
        yield p


@pytest.fixture
def scenario(vaultdb_stack: VaultDBStack, vaultdb_role_name: str, tmp_path: Path,
             caplog: pytest.LogCaptureFixture) -> Iterator[Callable[..., Scenario]]:
    caplog.set_level(logging.INFO, logger="vaultdb")
    caplog.set_level(logging.DEBUG, logger="vaultdb.integrations.sqlalchemy")
    made: list[Scenario] = []

    def make(*, default_ttl: int = 9, max_ttl: int = 60, token_ttl: int = 60,
             token_max_ttl: int = 0, vault_addr: str | None = None, threads: int = 3,
             **kwargs: Any) -> Scenario:
        role = vaultdb_role_name
        stack = vaultdb_stack
        stack.create_database_role(role, default_ttl=default_ttl, max_ttl=max_ttl)
        stack.create_kubernetes_role(role, token_ttl=token_ttl, token_max_ttl=token_max_ttl)
        token_path = stack.write_service_account_token(tmp_path / "sa" / "token")
        kwargs.setdefault("drain_seconds", 1.0)
        kwargs.setdefault("request_timeout", 1.0)
        provider = CredentialProvider(
            role, auth=KubernetesAuth(role=role, token_path=str(token_path)),
            vault_addr=vault_addr or stack.vault_addr, handle_sigterm=False, **kwargs)
        pg = stack.postgres
        engine = create_engine(f"postgresql+psycopg://{pg.host}:{pg.port}/{pg.database}",
                               provider=provider, pool_size=threads, max_overflow=2,
                               pool_pre_ping=True, pool_timeout=10,
                               connect_args={"connect_timeout": 5})
        provider.credentials()
        s = Scenario(stack, role, token_path, provider, engine, QueryLoad(engine, threads))
        made.append(s)
        s.load.start()
        return s

    yield make
    for s in made:
        s.cleanup()
