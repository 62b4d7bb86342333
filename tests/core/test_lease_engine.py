"""Renewal, rotation and recovery against the real OpenBao + PostgreSQL stack."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from vaultdb import (
    AppRoleAuth,
    CredentialProvider,
    Credentials,
    JWTAuth,
    LeaseCreated,
    LeaseRenewed,
    LeaseRevoked,
    LeaseRotated,
    LoginCreated,
    TokenAuth,
)
from vaultdb.events import LeaseEvent
from vaultdb.testing import VaultDBStack, wait_for
from vaultdb.testing import database_users_of_role as roles_of


def session_user(stack: VaultDBStack, creds: Credentials) -> str:
    with psycopg.connect(host=stack.postgres.host, port=stack.postgres.port,
                         dbname=stack.postgres.database, user=creds.username,
                         password=creds.password, connect_timeout=5) as conn:
        row = conn.execute("SELECT session_user").fetchone()
        assert row is not None
        return str(row[0])


def test_credentials_log_in_and_are_renewed_in_place(make_provider, vaultdb_stack):
    provider = make_provider(default_ttl=3, max_ttl=60)
    seen: list[LeaseEvent] = []
    provider.subscribe(seen.append)
    creds = provider.credentials()
    assert creds.generation == 1
    assert session_user(vaultdb_stack, creds) == creds.username
    assert provider.credentials() is creds  # the hot path hands back the same snapshot
    wait_for(lambda: provider.status().renewals >= 2, timeout=15)
    assert provider.credentials().generation == 1
    assert provider.credentials().username == creds.username
    assert provider.credentials().deadline > creds.deadline  # renewal moved the deadline
    assert any(isinstance(e, LeaseRenewed) for e in seen)
    # About 1.5 renewals per TTL: never a tight loop.
    assert provider.status().renewals <= 6


def test_rotates_before_max_ttl_and_revokes_the_old_user_after_the_drain(
        make_provider, vaultdb_stack, vaultdb_role_name):
    provider = make_provider(default_ttl=3, max_ttl=6, drain_seconds=1)
    rotated: list[LeaseRotated] = []
    revoked: list[LeaseRevoked] = []
    provider.subscribe(rotated.append, LeaseRotated)
    provider.subscribe(revoked.append, LeaseRevoked)
    first = provider.credentials()
    wait_for(lambda: rotated, timeout=15)
    event = rotated[0]
    assert event.previous.username == first.username
    assert event.credentials.generation == first.generation + 1
    # The new credentials arrived while the old ones were still valid: no gap.
    assert event.previous.seconds_left() > -0.5
    assert session_user(vaultdb_stack, event.credentials) == event.credentials.username
    wait_for(lambda: any(r.credentials.username == first.username for r in revoked), timeout=10)
    assert first.username not in roles_of(vaultdb_stack, vaultdb_role_name)
    # Every rotation is one credential fetch.
    status = provider.status()
    assert status.rotations >= 1


def test_rotates_and_logs_in_again_before_the_login_token_dies(make_provider, vaultdb_stack,
                                                                vaultdb_role_name):
    # The token cannot outlive 6 s; the lease (60 s) would die with it.
    provider = make_provider(default_ttl=60, max_ttl=120, token_ttl=6, token_max_ttl=6)
    logins: list[LoginCreated] = []
    rotated: list[LeaseRotated] = []
    provider.subscribe(logins.append, LoginCreated)
    provider.subscribe(rotated.append, LeaseRotated)
    first = provider.credentials()
    assert first.seconds_left() <= 6.5  # the deadline is the token's, not the lease's
    wait_for(lambda: rotated, timeout=15)
    assert len(logins) >= 2
    new = rotated[0].credentials
    assert new.username != first.username
    assert session_user(vaultdb_stack, new) == new.username
    # The new credentials outlive the old token.
    time.sleep(max(0.0, first.seconds_left()) + 0.5)
    assert session_user(vaultdb_stack, provider.credentials()) == provider.credentials().username


def test_recovers_when_vault_restarts_empty(make_provider, vaultdb_stack):
    provider = make_provider(default_ttl=4, max_ttl=60)
    first = provider.credentials()
    vaultdb_stack.restart_vault(reconfigure=True)
    # The old lease and token are gone: the next renewal fails with 403 / lease not found,
    # and the provider logs in again and rotates.
    wait_for(lambda: provider.credentials().generation > first.generation, timeout=20)
    creds = provider.credentials()
    assert session_user(vaultdb_stack, creds) == creds.username


def test_keeps_serving_while_vault_is_frozen(make_provider, vaultdb_stack):
    provider = make_provider(default_ttl=9, max_ttl=60, request_timeout=1.0)
    creds = provider.credentials()
    vaultdb_stack.pause_vault()
    try:
        # Credentials stay valid; credentials() must not block on the frozen Vault.
        done = threading.Event()
        result: list[Credentials] = []

        def call() -> None:
            result.append(provider.credentials())
            done.set()

        threading.Thread(target=call, daemon=True).start()
        assert done.wait(1.0), "credentials() blocked on a frozen Vault"
        assert result[0].username == creds.username
        time.sleep(3)  # past the renewal point: the renewer is now retrying
    finally:
        vaultdb_stack.resume_vault()
    wait_for(lambda: provider.status().renewals >= 1 and provider.status().healthy, timeout=20)
    assert provider.credentials().username == creds.username


def test_static_role_is_reread_and_a_new_password_is_a_new_generation(vaultdb_stack,
                                                                         vaultdb_role_name):
    role = vaultdb_role_name
    username = f"static_{role[1:9]}"
    vaultdb_stack.create_static_role(role, username=username, rotation_period=5)
    token = vaultdb_stack.create_token(ttl=120)
    with CredentialProvider(role, static=True, auth=TokenAuth(token=token),
                            vault_addr=vaultdb_stack.vault_addr, handle_sigterm=False) as p:
        creds = p.credentials()
        assert creds.static and creds.lease_id is None and creds.username == username
        assert session_user(vaultdb_stack, creds) == username
        wait_for(lambda: p.credentials().generation > creds.generation, timeout=20)
        new = p.credentials()
        assert new.password != creds.password
        assert session_user(vaultdb_stack, new) == username


def test_jwt_login(vaultdb_stack, vaultdb_role_name, tmp_path: Path):
    role = vaultdb_role_name
    vaultdb_stack.create_database_role(role, default_ttl=30, max_ttl=60)
    vaultdb_stack.create_jwt_role(role, audience="vault")
    path = vaultdb_stack.write_service_account_token(tmp_path / "jwt", audiences=("vault",))
    with CredentialProvider(role, auth=JWTAuth(role=role, token_path=str(path)),
                            vault_addr=vaultdb_stack.vault_addr, handle_sigterm=False) as p:
        creds = p.credentials()
        assert session_user(vaultdb_stack, creds) == creds.username


def test_approle_login(vaultdb_stack, vaultdb_role_name, tmp_path: Path):
    role = vaultdb_role_name
    vaultdb_stack.create_database_role(role, default_ttl=30, max_ttl=60)
    role_id, secret_id = vaultdb_stack.create_approle(role)
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(secret_id)
    auth = AppRoleAuth(role_id=role_id, secret_id_path=str(secret_file))
    with CredentialProvider(role, auth=auth, vault_addr=vaultdb_stack.vault_addr,
                            handle_sigterm=False) as p:
        creds = p.credentials()
        assert session_user(vaultdb_stack, creds) == creds.username


def test_token_auth_never_revokes_the_token_it_was_given(vaultdb_stack, vaultdb_role_name):
    role = vaultdb_role_name
    vaultdb_stack.create_database_role(role, default_ttl=30, max_ttl=60)
    token = vaultdb_stack.create_token(ttl=120)
    with CredentialProvider(role, auth=TokenAuth(token=token),
                            vault_addr=vaultdb_stack.vault_addr, handle_sigterm=False) as p:
        p.credentials()
    client = vaultdb_stack.root_client()
    assert client.auth.token.lookup(token)["data"]["ttl"] > 0  # still alive


def test_projected_token_file_is_reread_at_each_login(make_provider, vaultdb_stack, token_file):
    # A non-renewable 4 s login token forces re-logins; the kubelet rewrites the file meanwhile.
    provider = make_provider(default_ttl=30, max_ttl=60, token_ttl=4, token_max_ttl=4)
    logins: list[LoginCreated] = []
    provider.subscribe(logins.append, LoginCreated)
    provider.credentials()
    # Replace the file with a token for the same account that was minted later, and revoke
    # (deny) the original at the stand-in: only a re-read file can log in now.
    original = token_file.read_text()
    vaultdb_stack.write_service_account_token(token_file)
    vaultdb_stack.kube.revoke_token(original)
    wait_for(lambda: len(logins) >= 2, timeout=15)
    # The login event comes before the fetch under the new token: wait for that too.
    wait_for(lambda: provider.status().healthy and provider.status().generation >= 2,
             timeout=15)


def test_listener_that_raises_does_not_stop_the_renewer(make_provider):
    provider = make_provider(default_ttl=3, max_ttl=60)

    def bad(_event: LeaseEvent) -> None:
        raise RuntimeError("listener bug")

    provider.subscribe(bad)
    created: list[LeaseCreated] = []
    provider.subscribe(created.append, LeaseCreated)
    provider.credentials()
    assert created
    wait_for(lambda: provider.status().renewals >= 2, timeout=15)


def test_concurrent_first_calls_share_one_fetch(make_provider):
    provider = make_provider(default_ttl=30, max_ttl=60)
    results: list[Credentials] = []
    threads = [threading.Thread(target=lambda: results.append(provider.credentials()))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({c.username for c in results}) == 1
    assert provider.status().rotations == 0


def test_refresh_after_the_database_user_was_dropped(make_provider, vaultdb_stack):
    provider = make_provider(default_ttl=30, max_ttl=60)
    creds = provider.credentials()
    # Someone revokes the lease out of band: the user is gone.
    vaultdb_stack.root_client().sys.revoke_lease(creds.lease_id)
    wait_for(lambda: creds.username not in vaultdb_stack.dynamic_db_roles(), timeout=10)
    with pytest.raises(psycopg.OperationalError):
        session_user(vaultdb_stack, creds)
    fresh = provider.refresh(creds)
    assert fresh.generation == creds.generation + 1
    assert session_user(vaultdb_stack, fresh) == fresh.username
    assert provider.refresh(creds) is provider.credentials()  # already replaced: no new fetch


def test_token_revoked_right_after_login_is_logged_in_again_not_reported_as_policy(
        make_provider, vaultdb_stack):
    """A 403 is a dead token when lookup-self fails too, however young the token is."""
    provider = make_provider(default_ttl=30, max_ttl=60)
    first = provider.credentials()
    token = provider._engine.session.token
    assert token is not None
    vaultdb_stack.root_client().auth.token.revoke_accessor(token.accessor)
    fresh = provider.refresh(failed=first)
    assert fresh.generation > first.generation
    assert provider.status().logins == 2


def test_policy_denial_is_reported_without_a_new_login(vaultdb_stack, vaultdb_role_name):
    """lookup-self works, so the 403 is the policy's: no second login, a typed error."""
    from vaultdb import CredentialProvider, PermissionDeniedError, TokenAuth

    vaultdb_stack.create_database_role(vaultdb_role_name, default_ttl=30, max_ttl=60)
    token = vaultdb_stack.create_token(policies=("default",))
    with CredentialProvider(vaultdb_role_name, auth=TokenAuth(token=token), fetch_timeout=3,
                            vault_addr=vaultdb_stack.vault_addr, handle_sigterm=False) as p:
        with pytest.raises(PermissionDeniedError):
            p.credentials()
        assert p.status().logins == 1
