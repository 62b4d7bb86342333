"""asyncpg pools and connections on the real stack: rotation under load, refused logins."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg
import pytest
from vaultdb.integrations.asyncpg import connect, create_pool, generation_of

from vaultdb import CredentialProvider
from vaultdb.testing import VaultDBStack, assert_retired_users_gone, revoked_usernames, wait_for

TASKS = 8
ROTATIONS = 2


@pytest.mark.slow
def test_pool_serves_across_rotations_with_no_failed_query(
        vaultdb_stack: VaultDBStack, vaultdb_role_name: str,
        make_provider: Callable[..., CredentialProvider], dsn: str) -> None:
    provider = make_provider()
    revoked = revoked_usernames(provider)
    seen: set[str] = set()
    errors: list[BaseException] = []

    async def main() -> int:
        count = 0
        async with create_pool(dsn, provider=provider, min_size=2, max_size=TASKS // 2) as pool:
            stop = asyncio.Event()

            async def work() -> None:
                nonlocal count
                while not stop.is_set():
                    try:
                        async with pool.acquire() as conn:
                            seen.add(await conn.fetchval("SELECT session_user"))
                            await conn.execute("SELECT pg_sleep(0.002)")
                            assert generation_of(conn) is not None
                        count += 1
                    except Exception as exc:
                        errors.append(exc)

            tasks = [asyncio.create_task(work()) for _ in range(TASKS)]
            try:
                while not (provider.status().rotations >= ROTATIONS
                           and len(revoked) >= ROTATIONS):
                    await asyncio.sleep(0.05)
                    assert not errors
            finally:
                stop.set()
                await asyncio.gather(*tasks)
        return count

    count = asyncio.run(asyncio.wait_for(main(), timeout=60))
    assert errors == []
    assert count > 0 and len(seen) >= ROTATIONS + 1
    assert_retired_users_gone(vaultdb_stack, provider, vaultdb_role_name, seen,
                              at_least=ROTATIONS)


def test_idle_connections_are_replaced_after_a_rotation(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        dsn: str) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)

    async def main() -> tuple[str, str]:
        async with create_pool(dsn, provider=provider, min_size=1, max_size=1) as pool:
            first = await pool.fetchval("SELECT session_user")
            await asyncio.to_thread(provider.refresh, provider.credentials())  # a rotation
            await asyncio.to_thread(wait_for, lambda: provider.generation == 2, 10)
            await asyncio.sleep(0)  # let the loop run the expiry the event scheduled
            second = await pool.fetchval("SELECT session_user")
            return first, second

    first, second = asyncio.run(main())
    assert first != second == provider.credentials().username


def test_revoked_credentials_are_refreshed_once_at_connect(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider], dsn: str,
        caplog: pytest.LogCaptureFixture) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)
    before = provider.credentials()
    vaultdb_stack.root_client().write_data("sys/leases/revoke", data={
        "lease_id": before.lease_id, "sync": True})
    wait_for(lambda: before.username not in vaultdb_stack.dynamic_db_roles(), timeout=10)

    async def main() -> str:
        conn = await connect(dsn, provider=provider)
        try:
            return str(await conn.fetchval("SELECT session_user"))
        finally:
            await conn.close()

    with caplog.at_level(logging.WARNING, "vaultdb.integrations"):
        user = asyncio.run(main())
    assert user != before.username and "retrying once" in caplog.text
    assert before.password not in caplog.text


def test_login_refused_for_another_reason_does_not_fetch_leases_in_a_loop(
        vaultdb_stack: VaultDBStack, make_provider: Callable[..., CredentialProvider],
        dsn: str) -> None:
    db = vaultdb_stack.postgres.database
    provider = make_provider(default_ttl=60, max_ttl=120, role_kwargs={"creation_statements": [
        "CREATE ROLE \"{{name}}\" WITH NOLOGIN PASSWORD '{{password}}' "
        "VALID UNTIL '{{expiration}}';",
        f'GRANT CONNECT ON DATABASE "{db}" TO "{{{{name}}}}";']})

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
                await connect(dsn, provider=provider)

    asyncio.run(main())
    assert provider.status().rotations == 1


def test_set_role(make_provider: Callable[..., CredentialProvider], dsn: str) -> None:
    provider = make_provider(default_ttl=60, max_ttl=120)

    async def main() -> str:
        async with create_pool(dsn, provider=provider, set_role="app_owner", min_size=1,
                               max_size=1) as pool:
            return str(await pool.fetchval("SELECT current_user"))

    assert asyncio.run(main()) == "app_owner"
