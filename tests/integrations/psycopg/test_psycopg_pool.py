"""psycopg-pool pools (sync and asyncio) and plain psycopg connections on rotating credentials.

Real OpenBao and PostgreSQL; leases rotate about every three seconds and the stack's
revocation terminates the old user's sessions, so zero failed queries proves that every
connection of a rotated-out lease was retired before its drain window ended.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
import pytest
from vaultdb.integrations.psycopg import ConnectionPool, connect

from vaultdb import CredentialProvider, LeaseCreated
from vaultdb.testing import VaultDBStack, assert_retired_users_gone, revoked_usernames, wait_for

ROTATIONS = 5
WORKERS = 4




@pytest.mark.slow
def test_pool_threads_see_no_error_across_rotations(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider], conninfo: str) -> None:
    provider = make_provider()
    revoked = revoked_usernames(provider)
    seen: set[str] = set()
    errors: list[BaseException] = []
    queries = [0] * WORKERS
    stop = threading.Event()
    with ConnectionPool(conninfo, provider=provider, min_size=2, max_size=WORKERS,
                        open=True) as pool:

        def work(i: int) -> None:
            while not stop.is_set():
                try:
                    with pool.connection() as conn:
                        row = conn.execute("SELECT session_user").fetchone()
                        assert row is not None
                        seen.add(row[0])
                        conn.execute("SELECT pg_sleep(0.002)")
                    queries[i] += 1
                except Exception as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: provider.status().rotations >= ROTATIONS
                     and len(revoked) >= ROTATIONS, timeout=45)
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert errors == []
    assert all(n > 0 for n in queries)
    assert_retired_users_gone(vaultdb_stack, provider, vaultdb_role_name, seen,
                              at_least=ROTATIONS - 1)


def test_idle_pool_connections_are_drained_on_rotation(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        conninfo: str) -> None:
    db = vaultdb_stack.postgres.database
    # Revocation that leaves sessions running: only the pool drain can close them.
    provider = make_provider(role_kwargs={"revocation_statements": [
        f'REVOKE ALL ON DATABASE "{db}" FROM "{{{{name}}}}";', 'DROP ROLE IF EXISTS "{{name}}";']})
    with ConnectionPool(conninfo, provider=provider, min_size=3, open=True) as pool:
        pool.wait()
        old = provider.credentials().username
        assert vaultdb_stack.session_users().get(old) == 3
        with pool.connection() as held:
            wait_for(lambda: provider.credentials().username != old, timeout=15)
            wait_for(lambda: vaultdb_stack.session_users().get(old) == 1, timeout=10)
            row = held.execute("SELECT session_user").fetchone()  # never closed under us
            assert row == (old,)
        wait_for(lambda: old not in vaultdb_stack.session_users(), timeout=10)
        with pool.connection() as conn:
            assert conn.execute("SELECT session_user").fetchone() != (old,)


def test_connect_retries_once_with_refreshed_credentials(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        conninfo: str, caplog: pytest.LogCaptureFixture) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)
    passwords: list[str] = []
    provider.subscribe(lambda e: passwords.append(e.credentials.password), LeaseCreated)
    before = provider.credentials()
    vaultdb_stack.root_client().write_data(
        "sys/leases/revoke", data={"lease_id": before.lease_id, "sync": True})
    wait_for(lambda: before.username not in vaultdb_stack.dynamic_db_roles(), timeout=10)
    caplog.set_level(logging.DEBUG)
    with connect(conninfo, provider=provider) as conn:
        row = conn.execute("SELECT session_user").fetchone()
    assert row is not None and row[0] != before.username
    assert provider.generation == before.generation + 1
    assert "retrying once" in caplog.text
    for password in [before.password, *passwords]:
        assert password not in caplog.text


def test_set_role_on_each_new_connection(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        conninfo: str) -> None:
    pg = vaultdb_stack.postgres
    provider = make_provider(default_ttl=60, max_ttl=120, role_kwargs={"creation_statements": [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
        f"VALID UNTIL '{{{{expiration}}}}' IN ROLE \"{pg.owner_role}\";",
        f'GRANT CONNECT ON DATABASE "{pg.database}" TO "{{{{name}}}}";']})
    with connect(conninfo, provider=provider, set_role=pg.owner_role) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (pg.owner_role,)
    with ConnectionPool(conninfo, provider=provider, set_role=pg.owner_role, min_size=1,
                        open=True) as pool, pool.connection() as conn:
        assert conn.execute("SELECT current_user").fetchone() == (pg.owner_role,)
        assert conn.execute("SELECT session_user").fetchone() != (pg.owner_role,)


def test_user_check_and_kwargs_still_apply(
        make_provider: Callable[..., CredentialProvider], conninfo: str) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)
    checked: list[psycopg.Connection[object]] = []
    with ConnectionPool(conninfo, provider=provider, min_size=1, open=True,
                        kwargs={"application_name": "vaultdb-test"},
                        check=checked.append) as pool, pool.connection() as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("vaultdb-test",)
        assert type(conn) is psycopg.Connection
    assert checked
