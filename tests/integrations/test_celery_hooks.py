"""Celery's worker shutdown signals revoke (Celery keeps its own warm shutdown)."""

from __future__ import annotations

import pytest

from vaultdb import CredentialProvider, KubernetesAuth, ProviderState
from vaultdb.testing import database_users_of_role

celery_signals = pytest.importorskip("celery.signals")


@pytest.mark.parametrize("signal_name", ["worker_process_shutdown", "worker_shutdown"])
def test_shutdown_signals_revoke(vaultdb_stack, vaultdb_role_name, tmp_path, signal_name):
    from vaultdb.integrations import celery as vaultdb_celery

    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=6, max_ttl=18)
    vaultdb_stack.create_kubernetes_role(vaultdb_role_name)
    token = vaultdb_stack.write_service_account_token(tmp_path / "token")
    provider = CredentialProvider(
        vaultdb_role_name, vault_addr=vaultdb_stack.vault_addr, drain_seconds=1,
        auth=KubernetesAuth(role=vaultdb_role_name, token_path=str(token)), handle_sigterm=False)
    vaultdb_celery.install()
    vaultdb_celery.install()  # idempotent
    try:
        user = provider.credentials().username
        getattr(celery_signals, signal_name).send(sender=None, pid=0, exitcode=0)
        assert provider.state is ProviderState.CLOSED
        assert user not in database_users_of_role(vaultdb_stack, vaultdb_role_name)
    finally:
        vaultdb_celery.uninstall()
        provider.close()
