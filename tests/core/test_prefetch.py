"""``start(wait=False)``: the first fetch runs in the background and is shared, never lost."""

from __future__ import annotations

import logging
import threading

import pytest

from vaultdb import ProviderClosedError, SecretPathError, TokenAuth
from vaultdb.testing import VaultDBStack, wait_for
from vaultdb.testing import database_users_of_role as roles_of


def test_start_without_waiting_returns_while_vault_is_frozen_and_shares_the_fetch(
        make_provider, vaultdb_stack: VaultDBStack) -> None:
    provider = make_provider(default_ttl=30, max_ttl=60)
    vaultdb_stack.pause_vault()
    try:
        # Returning at all while Vault is frozen shows it did not wait (a wait would hang here
        # until fetch_timeout, and the generation below would not be None).
        assert provider.start(wait=False) is provider
        assert provider.generation is None
    finally:
        vaultdb_stack.resume_vault()
    creds = provider.credentials()
    wait_for(lambda: provider.status().state == "running")
    assert roles_of(vaultdb_stack, provider.role) == {creds.username}  # one lease, not two
    assert provider.status().logins == 1
    provider.close()
    assert roles_of(vaultdb_stack, provider.role) == set()


def test_a_background_failure_is_logged_and_raised_by_the_first_call(
        vaultdb_stack: VaultDBStack, caplog: pytest.LogCaptureFixture) -> None:
    from vaultdb import CredentialProvider

    token = vaultdb_stack.create_token()
    caplog.set_level(logging.DEBUG)
    with CredentialProvider("no-such-role", vault_addr=vaultdb_stack.vault_addr,
                            auth=TokenAuth(token=token), handle_sigterm=False,
                            fetch_timeout=3) as provider:
        provider.start(wait=False)
        wait_for(lambda: any("in the background failed" in r.getMessage()
                             for r in caplog.records))
        with pytest.raises(SecretPathError) as info:
            provider.credentials()
    assert "no-such-role" in str(info.value)
    assert token not in caplog.text


def test_close_during_the_background_fetch_revokes_what_it_got(
        make_provider, vaultdb_stack: VaultDBStack) -> None:
    provider = make_provider(default_ttl=30, max_ttl=60)
    vaultdb_stack.pause_vault()
    try:
        provider.start(wait=False)
        closer = threading.Thread(target=provider.close)
        closer.start()
    finally:
        vaultdb_stack.resume_vault()
    closer.join(30)
    assert not closer.is_alive()
    with pytest.raises(ProviderClosedError):
        provider.credentials(timeout=0)
    # Whatever the in-flight fetch obtained was revoked by close(); nothing fetched after it.
    wait_for(lambda: roles_of(vaultdb_stack, provider.role) == set(), timeout=10)


def test_start_without_waiting_refuses_a_closed_provider(make_provider) -> None:
    provider = make_provider()
    provider.close()
    with pytest.raises(ProviderClosedError):
        provider.start(wait=False)
