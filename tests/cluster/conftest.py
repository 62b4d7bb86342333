"""Fixtures for the failover tests: one shared 3-node cluster (``vaultdb_cluster``, healed
after every test) and a scenario builder.

All tests here share one cluster; under pytest-xdist they are grouped on one worker (run with
``--dist loadgroup``, as CI does) so the suite starts one cluster, not one per worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from clusterkit import ClusterScenario, Events, QueryLoad
from vaultdb.integrations.sqlalchemy import create_engine

from vaultdb import CredentialProvider, TokenAuth
from vaultdb.testing import VaultDBStack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("vaultdb-cluster"))


@pytest.fixture
def scenario(vaultdb_cluster: VaultDBStack, vaultdb_role_name: str
             ) -> Iterator[Callable[..., ClusterScenario]]:
    """``make(vault_addr, default_ttl=8, max_ttl=60, threads=3, before_start=None,
    **provider_kwargs)``; ``before_start()`` runs once the role and token are on every node,
    just before the first ``credentials()``."""
    made: list[ClusterScenario] = []

    def make(vault_addr: str, *, default_ttl: int = 8, max_ttl: int = 60, threads: int = 3,
             before_start: Callable[[], object] | None = None,
             **kwargs: Any) -> ClusterScenario:
        stack, role = vaultdb_cluster, vaultdb_role_name
        stack.create_database_role(role, default_ttl=default_ttl, max_ttl=max_ttl)
        kwargs.setdefault("drain_seconds", 1.0)
        kwargs.setdefault("request_timeout", 2.0)
        token = stack.create_token(ttl=600)
        # Failover, not read-after-write consistency, is under test here: start once the
        # role and the token reached every node.
        stack.cluster.wait_replicated()
        provider = CredentialProvider(role, auth=TokenAuth(token=token),
                                      vault_addr=vault_addr, handle_sigterm=False, **kwargs)
        events = Events()
        provider.subscribe(events)
        pg = stack.postgres
        engine = create_engine(f"postgresql+psycopg://{pg.host}:{pg.port}/{pg.database}",
                               provider=provider, pool_size=threads, max_overflow=2,
                               pool_pre_ping=True, pool_timeout=10,
                               connect_args={"connect_timeout": 5})
        if before_start is not None:
            before_start()
        provider.credentials(timeout=60)
        s = ClusterScenario(stack, role, provider, engine, QueryLoad(engine, provider, threads),
                            events)
        made.append(s)
        s.load.start()
        return s

    yield make
    for s in made:
        s.cleanup()
