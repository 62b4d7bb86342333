"""Prometheus: the ``mount`` label tells PostgreSQL and MySQL providers of one role name apart."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from vaultdb.integrations.prometheus import instrument, uninstrument_registry

from vaultdb import CredentialProvider, TokenAuth
from vaultdb.testing import MySQLTarget


def test_same_role_name_on_two_mounts_gives_two_series(
        vaultdb_mysql: MySQLTarget, vaultdb_role_name: str) -> None:
    stack = vaultdb_mysql.stack
    stack.create_database_role(vaultdb_role_name, default_ttl=60, max_ttl=120)
    vaultdb_mysql.create_role(vaultdb_role_name, default_ttl=60, max_ttl=120)
    auth = TokenAuth(token=vaultdb_mysql.create_token())
    registry = CollectorRegistry()
    providers = [CredentialProvider(vaultdb_role_name, auth=auth, vault_addr=stack.vault_addr,
                                    mount=mount, handle_sigterm=False)
                 for mount in ("database", vaultdb_mysql.mount)]
    try:
        for provider in providers:
            instrument(provider, registry=registry)
        providers[1].credentials()
        providers[1].refresh(providers[1].credentials())  # generation 2 on mysql only
        providers[0].credentials()
        for mount, generation in (("database", 1.0), ("mysql", 2.0)):
            labels = {"mount": mount, "role": vaultdb_role_name}
            assert registry.get_sample_value("vaultdb_generation", labels) == generation
            assert registry.get_sample_value("vaultdb_healthy", labels) == 1.0
    finally:
        for provider in providers:
            provider.close()
        uninstrument_registry(registry)
